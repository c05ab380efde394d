"""`explain` and `templates` (issue 16 item 4): what a manifest or a template grants, offline,
from the same compiler and renderers that plan uses; and the resource-kind table as data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, PAYMENTS, workload
from support.cli import CliResult, run_cli
from support.paths import EXAMPLES

CONFIG = str(EXAMPLES / "workload-ids.yaml")


def ok(result: CliResult, code: int = 0) -> CliResult:
    assert "Traceback" not in result.err
    assert "internal error" not in result.err
    assert result.code == code, (result.out, result.err)
    return result


def explained(*paths: Path | str) -> dict[str, Any]:
    result = ok(run_cli("explain", "--config", CONFIG, "--output", "json", *map(str, paths)))
    doc: dict[str, Any] = json.loads(result.out)
    return doc


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["workload"]: w for w in doc["workloads"]}


# --- explain: text -----------------------------------------------------------------------------

def test_explain_the_aws_example_entry_by_entry() -> None:
    path = EXAMPLES / "aws" / "payments-api.yaml"
    out = ok(run_cli("explain", "--config", CONFIG, str(path))).out
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[0] == f"prod/payments-api: aws account {ACCOUNT}, keyless ({path})"
    assert "  identity: role wid_prod_payments-api (arn:aws:iam::123456789012:role/workload-ids/" \
           "wid_prod_payments-api)" in lines
    # Who may obtain credentials, in words and as the trust policy says it.
    assert "    - GitHub Actions workflows of acme/payments on ref refs/heads/main" in lines
    assert "    - Kubernetes service account payments-api in namespace payments" in lines
    assert "    - the AWS service ecs-tasks.amazonaws.com, acting for account 123456789012 only" in lines
    assert "        sts:AssumeRole by ecs-tasks.amazonaws.com if aws:SourceAccount StringEquals " \
           "123456789012" in lines
    # Each entry: the exact actions, resources and conditions.
    at = lines.index(f"    [0] template object-storage.read ({path}:27:7)")
    assert lines[at + 1:at + 7] == [
        "        actions: s3:GetBucketLocation, s3:ListBucket",
        "          on arn:aws:s3:::acme-invoices",
        "          if aws:ResourceAccount StringEquals 123456789012",
        "        actions: s3:GetObject, s3:GetObjectVersion",
        "          on arn:aws:s3:::acme-invoices/*",
        "          if aws:ResourceAccount StringEquals 123456789012"]
    at = lines.index(f"    [2] raw actions ({path}:33:7)")
    assert lines[at + 1:at + 4] == [
        "        reason: reads the payments table directly",
        "        actions: dynamodb:GetItem, dynamodb:Query",
        "          on arn:aws:dynamodb:eu-west-1:123456789012:table/payments"]
    assert lines[-1].startswith("1 workload(s), 3 access entries; offline")


def test_explain_gcp_shows_bindings_conditions_and_the_federated_principal() -> None:
    path = EXAMPLES / "gcp" / "order-analytics.yaml"
    lines = ok(run_cli("explain", "--config", CONFIG, str(path))).out.splitlines()
    assert "    - Kubernetes service account order-analytics in namespace analytics" in lines
    assert any(line.startswith("        roles/iam.workloadIdentityUser on the service account for principal://"
                               "iam.googleapis.com/projects/123456789012/locations/global/"
                               "workloadIdentityPools/kubernetes/subject/system:serviceaccount:analytics:"
                               "order-analytics") for line in lines)
    assert '          if (resource.name == "projects/_/buckets/acme-catalog-feeds" || resource.name.' \
           'startsWith("projects/_/buckets/acme-catalog-feeds/objects/"))' in lines
    assert any(line.startswith("          bound on projects/acme-prod/subscriptions/order-events-analytics, "
                               "in its own IAM policy") for line in lines)
    assert any(line.startswith("          bound on the project projects/acme-prod, everywhere in it")
               for line in lines)


def test_explain_shows_an_attachment_and_who_may_attach_it(manifests: Any) -> None:
    path = EXAMPLES / "gcp" / "checkout-api.yaml"
    lines = ok(run_cli("explain", "--config", CONFIG, str(path))).out.splitlines()
    at = lines.index("  who may obtain credentials:")
    assert lines[at + 1:at + 3] == [
        "    - Cloud Run service checkout-api in europe-west1, which runs as this identity (attachedTo)",
        "        deployed by group:payments-deployers@acme.example: may attach it to any runtime "
        "(roles/iam.serviceAccountUser on the service account)"]
    (trust,) = by_name(explained(path))["prod/checkout-api"]["trust"]
    assert trust == {"kind": "attached", "runtime": "cloud-run", "name": "checkout-api",
                     "location": "europe-west1", "deployers": ["group:payments-deployers@acme.example"],
                     "runs": "Cloud Run service checkout-api in europe-west1",
                     "rendered": [{"role": "roles/iam.serviceAccountUser",
                                   "member": "group:payments-deployers@acme.example"}]}
    # AWS: the service's trust statement, and where the deployer's PassRole lives.
    aws = manifests({"fn.yaml": workload(federation="      - kind: aws-service\n"
                                                     "        service: ecs-tasks.amazonaws.com\n")
                     .replace("    federation:\n      - kind: aws-service\n        service: "
                              "ecs-tasks.amazonaws.com\n",
                              "    attachedTo:\n      - kind: lambda\n        function: svc-a\n")})
    text = ok(run_cli("explain", "--config", CONFIG, str(aws / "fn.yaml"))).out
    assert "    - Lambda function svc-a, which runs as this identity (attachedTo)" in text
    assert "(iam:PassRole, in the deployer's own policy)" in text
    assert f"sts:AssumeRole by lambda.amazonaws.com if aws:SourceAccount StringEquals {ACCOUNT}" in text


def test_explain_key_mode_names_the_secret_and_the_rotation() -> None:
    lines = ok(run_cli("explain", "--config", CONFIG, str(EXAMPLES / "aws" / "partner-feed.yaml"))).out
    assert ("whoever can read the secret workload-ids/prod/partner-feed (credentials.secretName): it "
            "holds a long-lived key (key mode), replaced every 30d; the old key stays active 2d beside "
            "the new one (less once the new key is seen in use), then is deactivated and deleted 1w "
            "later") in lines


# --- explain: JSON -----------------------------------------------------------------------------

def test_explain_json_is_one_document_over_every_cloud() -> None:
    doc = explained(EXAMPLES)
    assert doc["summary"] == {"workloads": 9, "entries": sum(len(w["access"]) for w in doc["workloads"])}
    workloads = by_name(doc)
    payments = workloads["prod/payments-api"]
    assert payments["identity"]["kind"] == "role"
    assert payments["access"][2] == {
        "entry": 2, "position": f"{EXAMPLES / 'aws' / 'payments-api.yaml'}:33:7", "template": None,
        "reason": "reads the payments table directly", "escalation": None,
        "resources": ["arn:aws:dynamodb:eu-west-1:123456789012:table/payments"],
        "grants": [{"actions": ["dynamodb:GetItem", "dynamodb:Query"], "dataActions": [],
                    "resources": ["arn:aws:dynamodb:eu-west-1:123456789012:table/payments"],
                    "condition": None, "binding": None, "role": None, "unscoped": False}]}
    github = payments["trust"][0]
    assert {k: github[k] for k in ("kind", "repository", "ref", "environment", "issuer", "subject")} == {
        "kind": "github-actions", "repository": "acme/payments", "ref": "refs/heads/main",
        "environment": None, "issuer": "https://token.actions.githubusercontent.com",
        "subject": "repo:acme/payments:ref:refs/heads/main"}
    assert github["rendered"]["Principal"] == {
        "Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"}
    recon = workloads["prod/order-reconciliation"]
    fic = recon["trust"][0]["rendered"]
    assert fic["name"] in recon["documents"]["federatedCredentials"]
    assert fic["subject"] == "repo:acme/order-reconciliation:environment:production"
    assert {g["binding"] for e in recon["access"] for g in e["grants"]} == {"assignment"}
    feed = workloads["prod/partner-feed"]
    retire = feed["key"]["rotation"]["retireOnUse"]
    assert feed["key"] == {"secret": "workload-ids/prod/partner-feed", "rotation": {
        "maxAge": "30d", "overlap": "2d", "grace": "1w", "retireOnUse": retire}}
    assert feed["trust"] == []


def test_explain_is_exactly_what_the_renderer_gives_plan() -> None:
    # The entries together are the policy the plan would write, statement for statement.
    doc = explained(EXAMPLES / "aws")
    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [value]

    for w in doc["workloads"]:
        statements = w["documents"]["policy"]["Statement"]
        rendered = sorted(json.dumps([listed(st["Action"]), listed(st["Resource"]), st.get("Condition")])
                          for st in statements)
        shown = sorted(json.dumps([g["actions"], g["resources"], g["condition"]])
                       for e in w["access"] for g in e["grants"])
        assert shown == rendered, w["workload"]


def test_explain_shows_an_unscoped_statement(manifests: Any) -> None:
    repo = f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/app"
    access = f"    - template: registry.pull\n      resources: [{repo}]\n"
    path = manifests({"svc.yaml": workload(access=access)})
    doc = json.loads(ok(run_cli("explain", "--output", "json", str(path / "svc.yaml"))).out)
    grants = doc["workloads"][0]["access"][0]["grants"]
    assert [(g["resources"], g["unscoped"]) for g in grants] == [([repo], False), (["*"], True)]


# --- explain: bad input, like validate --------------------------------------------------------

def test_explain_bad_input_is_positioned_and_exits_1(manifests: Any) -> None:
    path = manifests({"svc.yaml": workload(env="Prod")}) / "svc.yaml"
    result = ok(run_cli("explain", str(path)), code=1)
    assert result.err.startswith(f"{path}:6:16: ")
    assert result.out == ""


def test_explain_unknown_template_gets_the_same_message_as_validate(manifests: Any) -> None:
    path = manifests({"svc.yaml": PAYMENTS.replace("template: queue.consume", "template: queue.consum")})
    explain = ok(run_cli("explain", "--config", CONFIG, str(path)), code=1)
    validate = ok(run_cli("validate", "--config", CONFIG, str(path)), code=1)
    assert explain.err == validate.err
    assert "did you mean 'queue.consume'?" in explain.err


def test_explain_json_error_document(manifests: Any) -> None:
    path = manifests({"svc.yaml": workload(env="Prod")}) / "svc.yaml"
    doc = json.loads(ok(run_cli("explain", "--output", "json", str(path)), code=1).out)
    assert doc["exitCode"] == 1
    assert doc["diagnostics"][0]["position"] == f"{path}:6:16"


def test_explain_without_paths_is_a_usage_error() -> None:
    result = ok(run_cli("explain"), code=1)
    assert "the following arguments are required: PATH" in result.err


# --- offline: no cloud SDK ---------------------------------------------------------------------

PROBE = textwrap.dedent("""\
    import sys
    from workload_ids.cli import main
    rc = main({args!r})
    bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'moto', 'google', 'azure')]
    print(bad)
    sys.exit(rc)
    """)


@pytest.mark.parametrize("args", [
    ["explain", "--config", CONFIG, str(EXAMPLES)],
    ["templates"],
    ["templates", "queue.consume"],
], ids=["explain", "templates", "templates-name"])
def test_explain_and_templates_import_no_cloud_sdk(tmp_path: Path, args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- templates ---------------------------------------------------------------------------------

BUILTIN = ["function.invoke", "key.decrypt", "key.encrypt", "logs.write", "metrics.write",
           "object-storage.read", "object-storage.write", "queue.consume", "queue.publish",
           "registry.pull", "registry.push", "secret.read", "table.read", "table.write", "topic.publish"]


def test_templates_lists_every_builtin_with_its_kinds() -> None:
    result = ok(run_cli("templates"))
    lines = result.out.splitlines()
    for name in BUILTIN:
        assert name in lines
    at = lines.index("queue.consume")
    assert lines[at + 2] == ("    aws: sqs-queue   gcp: pubsub-subscription   "
                             "azure: servicebus-queue, storage-queue")
    assert lines[-1].startswith("15 template(s) (15 built-in, 0 from the config)")
    doc = json.loads(ok(run_cli("templates", "--output", "json")).out)
    assert [t["name"] for t in doc["templates"]] == BUILTIN
    assert doc["templates"][0]["providers"] == {"aws": ["lambda-function"],
                                                "gcp": ["cloud-function", "cloud-run-service"]}


def test_templates_for_one_provider_leaves_out_the_others() -> None:
    doc = json.loads(ok(run_cli("templates", "--provider", "azure", "--output", "json")).out)
    names = [t["name"] for t in doc["templates"]]
    assert "function.invoke" not in names  # no Azure definition
    assert all(list(t["providers"]) == ["azure"] for t in doc["templates"])


def test_templates_include_the_configs_own(tmp_path: Path) -> None:
    folder = tmp_path / "cwd" / "mine"
    folder.mkdir()
    (folder / "acme.reports.read.yaml").write_text(textwrap.dedent("""\
        name: acme.reports.read
        description: Read the reports bucket's objects.
        aws:
          s3-bucket:
            - actions: [s3:GetObject]
              resource: "{arn}/reports/*"
        """))
    with open("workload-ids.yaml", "a", encoding="utf-8") as config:
        config.write("templates: [mine]\n")
    doc = json.loads(ok(run_cli("templates", "--output", "json")).out)
    mine = [t for t in doc["templates"] if t["name"] == "acme.reports.read"]
    assert mine == [{"name": "acme.reports.read", "description": "Read the reports bucket's objects.",
                     "source": str(folder / "acme.reports.read.yaml"), "providers": {"aws": ["s3-bucket"]}}]
    detail = json.loads(ok(run_cli("templates", "acme.reports.read", "--output", "json")).out)["template"]
    grant = detail["providers"]["aws"][0]["grants"][0]
    assert (grant["resource"], grant["example"]["resource"]) == (
        "{arn}/reports/*", "arn:aws:s3:::acme-invoices/reports/*")
    assert "16 template(s) (15 built-in, 1 from the config)" in ok(run_cli("templates")).out


def test_templates_name_shows_grants_and_resource_forms_per_cloud() -> None:
    lines = ok(run_cli("templates", "object-storage.read")).out.splitlines()
    assert lines[0] == ("object-storage.read (built-in): Read and list the objects in one bucket or "
                        "blob container.")
    at = lines.index("aws")
    assert lines[at + 1:at + 7] == [
        "  s3-bucket: arn:aws:s3:::BUCKET",
        "    e.g. arn:aws:s3:::acme-invoices",
        "    actions: s3:GetBucketLocation, s3:ListBucket",
        "      on {arn} (e.g. arn:aws:s3:::acme-invoices)",
        "    actions: s3:GetObject, s3:GetObjectVersion",
        "      on {arn}/* (e.g. arn:aws:s3:::acme-invoices/*)"]
    at = lines.index("gcp")
    assert lines[at + 1:at + 5] == [
        "  gcs-bucket: projects/_/buckets/BUCKET",
        "    e.g. projects/_/buckets/acme-reports",
        "    permissions: storage.objects.get, storage.objects.list",
        "      bound on the project under an IAM condition naming the resource (and what it holds)"]
    assert "azure" in lines


def test_templates_name_json_for_one_provider() -> None:
    doc = json.loads(ok(run_cli("templates", "metrics.write", "--provider", "aws", "--output", "json")).out)
    detail = doc["template"]
    assert list(detail["providers"]) == ["aws"]
    [kind] = detail["providers"]["aws"]
    assert kind["kind"] == "cloudwatch-namespace"
    [grant] = kind["grants"]
    assert grant["unscoped"] is True and grant["resource"] == "*"
    assert grant["example"]["condition"] == {"StringEquals": {"cloudwatch:namespace": "Acme/Payments"}}


def test_templates_unknown_name_suggests_the_nearest_and_exits_1() -> None:
    result = ok(run_cli("templates", "queue.consum"), code=1)
    assert result.err.startswith("error: unknown template 'queue.consum'; did you mean 'queue.consume'?")


def test_templates_name_without_that_provider_exits_1() -> None:
    result = ok(run_cli("templates", "function.invoke", "--provider", "azure"), code=1)
    assert "template function.invoke has no azure definition (it has aws, gcp)" in result.err


def test_templates_unknown_provider_is_a_usage_error() -> None:
    result = ok(run_cli("templates", "--provider", "oracle"), code=1)
    assert "invalid choice: 'oracle'" in result.err


# --- the resource-kind table is data -----------------------------------------------------------

def test_resource_kinds_come_from_the_data_files() -> None:
    import yaml

    from workload_ids import resources
    from workload_ids.templates import builtin_template_dir
    folder = builtin_template_dir() / "kinds"
    seen = []
    for provider in ("aws", "gcp", "azure"):
        data = yaml.safe_load((folder / f"{provider}.yaml").read_text(encoding="utf-8"))
        assert list(data["kinds"]) == list(resources.KINDS_BY_PROVIDER[provider])
        for name, entry in data["kinds"].items():
            kind = resources.KINDS_BY_PROVIDER[provider][name]
            assert (kind.example, kind.form) == (entry["example"], entry["form"])
            assert kind.pattern.fullmatch(kind.example), name
            seen.append(name)
    assert len(seen) == len(resources.KINDS)
    # The patterns live only in the data: none is spelled out in the Python source.
    source = Path(resources.__file__).read_text(encoding="utf-8")
    assert "(?P<region>" not in source and "blobServices" not in source


def test_a_kind_added_to_the_data_is_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from workload_ids import bundled, resources
    from workload_ids.templates import builtin_template_dir
    copy = tmp_path / "templates"
    shutil.copytree(builtin_template_dir(), copy)
    with open(copy / "kinds" / "aws.yaml", "a", encoding="utf-8") as fh:
        fh.write("  kinesis-stream:\n    form: 'arn:aws:kinesis:REGION:ACCOUNT:stream/NAME'\n"
                 "    pattern: 'arn:aws:kinesis:(?P<region>${region}):(?P<account>${account}):"
                 "stream/(?P<name>[A-Za-z0-9_.-]{1,128})'\n"
                 "    example: 'arn:aws:kinesis:eu-west-1:123456789012:stream/clicks'\n")
    monkeypatch.setattr(bundled, "bundled_dir", lambda name: tmp_path / name)
    monkeypatch.setattr(resources, "bundled_dir", lambda name: tmp_path / name)
    _, kinds, _ = resources._load("aws")
    found = {k.name: k for k in kinds}["kinesis-stream"]
    assert found.pattern.fullmatch("arn:aws:kinesis:eu-west-1:123456789012:stream/clicks")


@pytest.mark.parametrize("verb", ["explain", "templates"])
def test_help_of_the_new_verbs(verb: str) -> None:
    result = ok(run_cli(verb, "--help"))
    assert result.out.startswith(f"usage: workload-ids {verb}")
    assert "offline" in result.out


def test_a_config_templates_text_cannot_start_a_line_of_its_own(tmp_path: Path) -> None:
    # In a CI log a line starting "::" is a command to the runner.
    folder = tmp_path / "cwd" / "mine"
    folder.mkdir()
    (folder / "acme.reports.read.yaml").write_text(
        'name: acme.reports.read\ndescription: "Reads reports.\\n::add-mask::x"\n'
        "aws:\n  s3-bucket:\n    - actions: [s3:GetObject]\n      resource: \"{arn}/*\"\n")
    with open("workload-ids.yaml", "a", encoding="utf-8") as config:
        config.write("templates: [mine]\n")
    for args in (["templates"], ["templates", "acme.reports.read"]):
        out = ok(run_cli(*args)).out
        assert "Reads reports.\\n::add-mask::x" in out
        assert not any(line.lstrip().startswith("::") for line in out.splitlines())


def test_explain_prints_no_marker_mac() -> None:
    # The marker's MAC is made at apply with the signing key, which explain never reads.
    result = ok(run_cli("explain", "--config", CONFIG, "--output", "json", str(EXAMPLES)))
    assert "mac=" not in result.out and "workload-ids:mac" not in result.out


def test_gcp_entries_on_one_resource_name_the_role_plan_binds_there(manifests: Any) -> None:
    from support.gcp import gcp_workload
    topic = "projects/acme-prod/topics/orders"
    path = manifests({"g.yaml": gcp_workload(access=(
        f"    - template: topic.publish\n      resources: [{topic}]\n"
        f"    - actions: [pubsub.topics.get]\n      resources: [{topic}]\n"
        "      reason: checks the topic exists\n"))}) / "g.yaml"
    doc = json.loads(ok(run_cli("explain", "--output", "json", str(path))).out)
    [w] = doc["workloads"]
    [binding] = w["documents"]["resourceBindings"]  # one role on the topic, for both entries
    items = [g for e in w["access"] for g in e["grants"]]
    assert [(g["actions"], g["role"], g["binding"]) for g in items] == [
        (["pubsub.topics.publish"], binding["role"], "resource"),
        (["pubsub.topics.get"], binding["role"], "resource")]
