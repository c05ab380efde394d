"""The smaller points a newcomer met in the first week (issue 16, item 11): each fixed and
checked here where it is not checked beside its feature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.aws import KEY_MODE, workload
from support.cli import run_cli

from workload_ids.errors import Diagnostic, InputErrors, Position


def test_rotate_now_takes_the_printed_form_and_suggests_a_name(aws: Any, manifests: Any) -> None:
    folder = manifests({"key.yaml": KEY_MODE, "fed.yaml": workload("svc-a")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    by_label = run_cli("rotate", "--now", "prod/vendor-sync", str(folder))
    assert by_label.code == 0, by_label.err
    typo = run_cli("rotate", "--now", "vendor-snyc", str(folder))
    assert typo.code == 1
    assert "no key-mode workload named 'vendor-snyc'" in typo.err
    assert "did you mean 'vendor-sync'?" in typo.err
    keyless = run_cli("rotate", "--now", "prod/svc-a", str(folder))
    assert keyless.code == 1
    assert "prod/svc-a is keyless (it federates): it has no keys to replace" in keyless.err


def test_input_errors_say_what_is_wrong_when_printed() -> None:
    exc = InputErrors([Diagnostic(Position("m.yaml", 3, 5), "unknown field 'resouces'")])
    assert str(exc) == "1 problem(s) in the input:\nm.yaml:3:5: unknown field 'resouces'"


def test_a_misspelt_required_field_is_one_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(workload("svc-a").replace("      resources: [", "      resouces: ["))
    result = run_cli("validate", str(manifest))
    assert result.code == 1
    assert "unknown field 'resouces'; did you mean 'resources'?" in result.err
    assert "missing required field 'resources'" not in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_helm_template_beside_the_manifests_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "svc.yaml").write_text(workload("svc-a"))
    (tmp_path / "deploy" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Values.name }}\n"
        "  labels: {{- include \"chart.labels\" . | nindent 4 }}\n")
    result = run_cli("validate", str(tmp_path / "deploy"))
    assert result.code == 0, result.err
    # A broken workload in the folder is still reported, YAML error and all.
    (tmp_path / "deploy" / "broken.yaml").write_text(workload("svc-b") + "  bad: [unclosed\n")
    broken = run_cli("validate", str(tmp_path / "deploy"))
    assert broken.code == 1 and "broken.yaml" in broken.err


def test_cleanup_says_durations_as_the_tool_writes_them(aws: Any, manifests: Any, tmp_path: Path) -> None:
    folder = manifests({"a.yaml": workload("svc-a")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "a.yaml").unlink()
    (folder / "b.yaml").write_text(workload("svc-b"))
    report = run_cli("cleanup", str(folder))
    assert "less than 1h ago" in report.out, report.out
    assert "1:00:00" not in report.out


def test_gcp_keys_for_long_account_names_in_the_emulator() -> None:
    """A realistic name makes an email longer than a certificate's common name may be (64)."""
    from workload_ids.sandbox.gcp.iam import IamEmulator
    emulator = IamEmulator(sandbox=True)
    emulator.start()
    try:
        client = emulator.client()
        account_id = "wid-prod-loyalty-ledger-etl-" + "a" * 2  # 30 characters, the GCP maximum
        project = "acme-loyalty-platform-prod"
        made = client.create_service_account(request={"name": f"projects/{project}",
                                                      "account_id": account_id})
        assert len(made.email) > 64
        key = client.create_service_account_key(request={"name": made.name})
        assert key.name.startswith(made.name + "/keys/")
    finally:
        emulator.stop()


def test_a_keyless_workload_with_nobody_to_trust_is_refused(tmp_path: Path) -> None:
    """Keyless with no federation made an identity nobody could use (an AWS role with an
    empty trust policy); now validate refuses it, positioned, and says what to add."""
    manifest = tmp_path / "nofed.yaml"
    manifest.write_text("apiVersion: workload-ids/v1\nkind: Workload\n"
                        "metadata: {name: nofed, owner: team-a, environment: prod}\nspec:\n"
                        '  provider: aws\n  aws: {account: "123456789012", region: eu-west-1}\n'
                        "  credentials: {mode: keyless}\n  access:\n"
                        "    - template: queue.consume\n"
                        "      resources: [arn:aws:sqs:eu-west-1:123456789012:q]\n")
    result = run_cli("validate", str(manifest))
    assert result.code == 1
    assert f"{manifest}:7:3: a keyless workload needs at least one federation or attachedTo entry" \
        in result.err
    assert "Add spec.credentials.federation or spec.credentials.attachedTo, or use mode: key" in result.err


def test_console_forms_of_resources_are_translated_and_foreign_names_not_guessed(tmp_path: Path) -> None:
    """The newcomer review's item 13: `projects/_/buckets/x` on AWS was "a
    cloudwatch-namespace", `gs://b` and blob URLs were not translated."""
    import shutil
    examples = Path(__file__).resolve().parents[1] / "examples"
    shutil.copy(examples / "workload-ids.yaml", tmp_path / "workload-ids.yaml")
    fed = "      - {kind: github-actions, repository: acme/thumbs, ref: refs/heads/main%s}\n"
    head = ("apiVersion: workload-ids/v1\nkind: Workload\nmetadata: {name: thumbs, owner: team-a, "
            "environment: prod}\nspec:\n  provider: %s\n  %s\n  credentials:\n    federation:\n" + fed
            + "  access:\n")
    pool = ", workloadIdentityPool: projects/123456789012/locations/global/workloadIdentityPools/github"
    docs = {
        "aws": (head % ("aws", 'aws: {account: "123456789012", region: eu-west-1}', "")
                + '    - {template: object-storage.read, resources: ["projects/_/buckets/x", "s3://acme-invoices"]}\n'
                + '    - {template: logs.write, resources: ["/aws/lambda/thumbnailer"]}\n'),
        "gcp": (head % ("gcp", "gcp: {project: acme-prod}", pool)
                + '    - {template: object-storage.read, resources: ["gs://acme-reports"]}\n'),
        "azure": (head % ("azure", "azure: {subscription: 0b1f6471-1bf0-4dda-aec3-cb9272f09590, "
                                   "resourceGroup: rg, location: westeurope}", "")
                  + '    - {template: object-storage.read, resources: '
                    '["https://acmemedia.blob.core.windows.net/thumbnails"]}\n'),
    }
    for cloud, text in docs.items():
        (tmp_path / f"{cloud}.yaml").write_text(text)
    result = run_cli("validate", "--config", str(tmp_path / "workload-ids.yaml"), *(
        str(tmp_path / f"{c}.yaml") for c in docs))
    assert result.code == 1
    lines = [line.split(": ", 1)[1] for line in result.err.strip().splitlines()]
    assert [line.split("; it accepts")[0] for line in lines] == [
        "object-storage.read does not accept 'projects/_/buckets/x': it is a GCP resource name, but AWS "
        "resources are named by ARNs (arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE)",
        "object-storage.read does not accept 's3://acme-invoices': written as consoles and CLIs show it; "
        "a policy names this s3-bucket arn:aws:s3:::acme-invoices",
        "logs.write does not accept '/aws/lambda/thumbnailer': written as consoles and CLIs show it; a "
        "policy names this logs-log-group "
        "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/thumbnailer",
        "object-storage.read does not accept 'https://acmemedia.blob.core.windows.net/thumbnails': written "
        "as consoles and CLIs show it; a policy names this storage-container /subscriptions/"
        "0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/RESOURCE_GROUP/providers/Microsoft.Storage/"
        "storageAccounts/acmemedia/blobServices/default/containers/thumbnails",
        "object-storage.read does not accept 'gs://acme-reports': written as consoles and CLIs show it; a "
        "policy names this gcs-bucket projects/_/buckets/acme-reports",
    ]  # files in path order: aws, azure, gcp
