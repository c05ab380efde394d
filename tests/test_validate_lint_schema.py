"""validate on folders and multi-document files, JSON output, the JSON Schema, lint, help,
and that the offline verbs import no cloud SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.aws import ACCOUNT, PAYMENTS, workload
from support.cli import CliResult, run_cli
from support.paths import EXAMPLES

EXAMPLE_WORKLOADS = {
    "prod/invoice-worker", "prod/ledger-export", "prod/payments-api",
    "prod/order-reconciliation", "prod/vendor-invoice-import",
    "prod/catalog-sync", "prod/order-analytics", "prod/partner-feed", "prod/checkout-api",
}


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def no_traceback(result: CliResult) -> CliResult:
    assert "Traceback" not in result.err
    assert "internal error" not in result.err
    return result


# --- validate: the examples, folders, skipped files -------------------------------------

def test_validate_examples_folder() -> None:
    result = no_traceback(run_cli("validate", str(EXAMPLES)))
    assert result.code == 0, result.err
    assert result.out.startswith("OK: 9 workload(s) in ")
    assert "(aws, azure, gcp)" in result.out
    assert result.err == ""


def test_validate_examples_folder_json() -> None:
    result = no_traceback(run_cli("validate", "--output", "json", str(EXAMPLES)))
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["valid"] is True
    assert doc["diagnostics"] == []
    assert sorted(doc["workloads"]) == sorted(EXAMPLE_WORKLOADS)
    assert len(doc["workloads"]) == 9


@pytest.mark.parametrize("name", ["owners.yaml", "workload-ids.yaml"])
def test_non_workload_yaml_in_a_folder_is_skipped(manifests: Any, name: str) -> None:
    other = (EXAMPLES / name).read_text(encoding="utf-8")
    folder = manifests({name: other, "svc.yaml": workload()})
    result = no_traceback(run_cli("validate", str(folder)))
    assert result.code == 0, result.err
    assert result.out.startswith("OK: 1 workload(s) in 2 file(s)")
    assert result.err == ""


@pytest.mark.parametrize(("name", "line", "column"), [
    ("owners.yaml", 1, 1),
    ("workload-ids.yaml", 5, 1),   # the first four lines are comments
])
def test_non_workload_yaml_given_explicitly_is_an_error(manifests: Any, name: str, line: int,
                                                        column: int) -> None:
    other = (EXAMPLES / name).read_text(encoding="utf-8")
    path = manifests({name: other}) / name
    result = no_traceback(run_cli("validate", str(path)))
    assert result.code == 1
    found = lines(result.err)
    assert len(found) == 1, found
    prefix = f"{path}:{line}:{column}: "
    assert found[0].startswith(prefix)
    assert "not a workload manifest" in found[0][len(prefix):]
    assert "kind: Workload" in found[0][len(prefix):]


def test_non_workload_kind_in_a_folder_is_skipped(manifests: Any) -> None:
    folder = manifests({"deploy.yml": "kind: Deployment\nspec: {}\n", "svc.yml": workload()})
    result = no_traceback(run_cli("validate", str(folder)))
    assert result.code == 0, result.err
    assert "OK: 1 workload(s)" in result.out


def test_folder_without_workloads_is_an_error(manifests: Any) -> None:
    folder = manifests({"owners.yaml": (EXAMPLES / "owners.yaml").read_text(encoding="utf-8")})
    result = no_traceback(run_cli("validate", str(folder)))
    assert result.code == 1
    assert f"{folder}:1:1: no workload manifest (kind: Workload) found here" in result.err


def test_hidden_folders_are_not_searched(manifests: Any) -> None:
    folder = manifests({"svc.yaml": workload(),
                        ".git/bad.yaml": workload(name="svc-b", env="Bad")})
    result = no_traceback(run_cli("validate", str(folder)))
    assert result.code == 0, result.err
    assert "OK: 1 workload(s)" in result.out


# --- multi-document files -------------------------------------------------------------------
# workload() is 18 lines, so with "---" between them the second document starts on line 20
# (its metadata.name on line 23, its environment on line 25).

def test_two_workloads_in_one_file(manifests: Any) -> None:
    path = manifests({"two.yaml": workload(name="svc-a") + "---\n" + workload(name="svc-b")})
    result = no_traceback(run_cli("validate", "--output", "json", str(path / "two.yaml")))
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["workloads"] == ["prod/svc-a", "prod/svc-b"]
    assert doc["files"] == 1


def test_error_in_the_second_document_is_positioned_in_the_file(manifests: Any) -> None:
    folder = manifests({"two.yaml": workload(name="svc-a") + "---\n" + workload(name="svc-b",
                                                                                env="Prod")})
    path = folder / "two.yaml"
    result = no_traceback(run_cli("validate", str(path)))
    assert result.code == 1
    found = lines(result.err)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:25:16: environment 'Prod' must be")


def test_duplicate_within_one_file(manifests: Any) -> None:
    path = manifests({"two.yaml": workload() + "---\n" + workload()}) / "two.yaml"
    result = no_traceback(run_cli("validate", str(path)))
    assert result.code == 1
    assert lines(result.err) == [f"{path}:23:9: workload prod/svc-a on aws {ACCOUNT} is already "
                                 f"declared at {path}:4:9; each workload is declared once"]


def test_other_kind_between_workloads(manifests: Any) -> None:
    text = workload(name="svc-a") + "---\nkind: Other\nfoo: 1\n---\n" + workload(name="svc-b")
    folder = manifests({"mixed.yaml": text})
    in_folder = no_traceback(run_cli("validate", str(folder)))
    assert in_folder.code == 0, in_folder.err
    assert "OK: 2 workload(s) in 1 file(s)" in in_folder.out
    explicit = no_traceback(run_cli("validate", str(folder / "mixed.yaml")))
    assert explicit.code == 1
    found = lines(explicit.err)
    assert len(found) == 1, found
    assert found[0].startswith(f"{folder / 'mixed.yaml'}:20:7: not a workload manifest "
                               "(kind: 'Other')")


def test_empty_documents_are_ignored(manifests: Any) -> None:
    path = manifests({"f.yaml": "---\n---\n" + workload() + "---\n"}) / "f.yaml"
    result = no_traceback(run_cli("validate", str(path)))
    assert result.code == 0, result.err
    assert "OK: 1 workload(s)" in result.out


# --- JSON output of errors -------------------------------------------------------------------

def test_json_errors_on_stdout_with_positions(manifests: Any) -> None:
    text = workload(env="Prod", access=("    - template: queue.consme\n"
                                        f"      resources: [arn:aws:sqs:eu-west-1:{ACCOUNT}:q]\n"))
    path = manifests({"bad.yaml": text.replace("  owner: team-a\n", "")}) / "bad.yaml"
    result = no_traceback(run_cli("validate", "--output", "json", str(path)))
    assert result.code == 1
    doc = json.loads(result.out)
    assert doc["exitCode"] == 1
    assert [(d["position"], d["severity"]) for d in doc["diagnostics"]] == [
        (f"{path}:4:3", "error"), (f"{path}:5:16", "error")]
    assert "missing required field 'owner'" in doc["diagnostics"][0]["message"]
    assert "environment 'Prod'" in doc["diagnostics"][1]["message"]
    # people still get the same lines on stderr
    assert lines(result.err) == [f"{d['position']}: {d['message']}" for d in doc["diagnostics"]]


def test_json_guardrail_refusal(manifests: Any) -> None:
    text = workload(access=("    - actions: [iam:PassRole]\n"
                            f"      resources: [arn:aws:iam::{ACCOUNT}:role/app]\n"
                            "      reason: launches ECS tasks\n"))
    path = manifests({"bad.yaml": text}) / "bad.yaml"
    result = no_traceback(run_cli("validate", "--output", "json", str(path)))
    assert result.code == 3
    doc = json.loads(result.out)
    assert doc["exitCode"] == 3
    assert [(d["position"], d["severity"]) for d in doc["diagnostics"]] == [
        (f"{path}:17:7", "guardrail")]
    assert "iam:PassRole" in doc["diagnostics"][0]["message"]


# --- schema ------------------------------------------------------------------------------------

def schema() -> dict[str, Any]:
    result = no_traceback(run_cli("schema"))
    assert result.code == 0, result.err
    doc: dict[str, Any] = json.loads(result.out)
    return doc


def test_schema_describes_a_workload() -> None:
    doc = schema()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(doc["properties"]) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(doc["required"]) == {"apiVersion", "kind", "metadata", "spec"}
    assert doc["additionalProperties"] is False


def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    doc = schema()
    cls = jsonschema.validators.validator_for(doc)
    cls.check_schema(doc)
    return cls(doc)


def test_schema_accepts_the_payments_example() -> None:
    check = validator()
    assert [e.message for e in check.iter_errors(yaml.safe_load(PAYMENTS))] == []


def test_schema_accepts_every_example_manifest() -> None:
    check = validator()
    files = [p for p in sorted(EXAMPLES.rglob("*.yaml"))
             if p.name not in ("owners.yaml", "workload-ids.yaml")
             and p.parent.name != "schedules"]
    assert len(files) == 9
    for path in files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert [e.message for e in check.iter_errors(doc)] == [], path


@pytest.mark.parametrize(("where", "field"), [
    ((), "spek"), (("metadata",), "ownr"), (("spec",), "bogus"),
    (("spec", "access", 0), "resource"),
])
def test_schema_rejects_an_unknown_field(where: tuple[Any, ...], field: str) -> None:
    check = validator()
    doc = yaml.safe_load(PAYMENTS)
    node = doc
    for part in where:
        node = node[part]
    node[field] = "x"
    messages = [e.message for e in check.iter_errors(doc)]
    assert any(f"'{field}' was unexpected" in m for m in messages), messages


def test_schema_rejects_a_wrong_kind_and_missing_spec() -> None:
    check = validator()
    doc = yaml.safe_load(PAYMENTS)
    doc["kind"] = "Workloads"
    del doc["spec"]
    messages = [e.message for e in check.iter_errors(doc)]
    assert any("'spec' is a required property" in m for m in messages), messages
    assert "'Workload' was expected" in messages, messages


# --- lint --------------------------------------------------------------------------------------

def lint(manifests: Any, text: str, *flags: str) -> tuple[Path, CliResult]:
    path = manifests({"svc.yaml": text}) / "svc.yaml"
    return path, no_traceback(run_cli("lint", *flags, str(path)))


RAW_CONSUME = ("    - actions: [sqs:ReceiveMessage, sqs:DeleteMessage]\n"
               f"      resources: [arn:aws:sqs:eu-west-1:{ACCOUNT}:jobs]\n"
               "      reason: consumes the jobs queue\n")
PASS_ROLE = ("    - actions: [iam:PassRole]\n"
             f"      resources: [arn:aws:iam::{ACCOUNT}:role/app]\n"
             "      reason: launches ECS tasks\n"
             '      escalation: {reason: "starts ECS tasks as the app role"}\n')


def test_lint_suggests_a_template_for_raw_actions(manifests: Any) -> None:
    # Exactly queue.consume's actions: a template granting more is never suggested (see
    # tests/test_lint_suggestions.py).
    every = "sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility, " \
            "sqs:GetQueueAttributes, sqs:GetQueueUrl"
    path, result = lint(manifests, workload(access=RAW_CONSUME.replace(
        "sqs:ReceiveMessage, sqs:DeleteMessage", every)))
    assert result.code == 0, result.err
    assert (f"{path}:17:7: suggestion: template queue.consume grants these actions on a "
            "sqs-queue; use it instead of raw actions") in lines(result.out)


def test_lint_does_not_suggest_a_template_that_does_not_cover_the_actions(manifests: Any) -> None:
    # SendMessage (queue.publish) with ReceiveMessage (queue.consume): no one template covers both
    text = workload(access=RAW_CONSUME.replace("sqs:DeleteMessage", "sqs:SendMessage"))
    _, result = lint(manifests, text)
    assert result.code == 0, result.err
    assert "use it instead of raw actions" not in result.out


def approve_pass_role() -> None:
    """The platform team's approval of PASS_ROLE, in the config of the working directory."""
    with open("workload-ids.yaml", "a", encoding="utf-8") as config:
        config.write("guardrails:\n  approvedEscalations:\n"
                     "    - workload: prod/svc-a\n      actions: [iam:PassRole]\n"
                     f"      resources: [arn:aws:iam::{ACCOUNT}:role/app]\n"
                     "      reason: OPS-42 approved by the platform team\n")


def test_lint_warns_about_escalation_held_with_an_approval(manifests: Any) -> None:
    approve_pass_role()
    path, result = lint(manifests, workload(access=PASS_ROLE))
    assert result.code == 0, result.err
    assert (f"{path}:17:7: warning: iam:PassRole can escalate privilege (approved in the config: "
            "'OPS-42 approved by the platform team'; the manifest says: 'starts ECS tasks as the "
            "app role'); review it on every change") in lines(result.out)
    assert "1 warning(s)" in result.out


def test_lint_strict_exits_1_on_warnings(manifests: Any) -> None:
    approve_pass_role()
    _, result = lint(manifests, workload(access=PASS_ROLE), "--strict")
    assert result.code == 1
    assert "1 warning(s)" in result.out


def test_lint_strict_exits_0_on_suggestions_only(manifests: Any) -> None:
    _, result = lint(manifests, workload(access=RAW_CONSUME), "--strict")
    assert result.code == 0, result.out
    assert "0 warning(s)" in result.out


def test_lint_json(manifests: Any) -> None:
    approve_pass_role()
    path, result = lint(manifests, workload(access=PASS_ROLE), "--output", "json", "--strict")
    assert result.code == 1
    findings = json.loads(result.out)["findings"]
    warnings = [f for f in findings if f["severity"] == "warning"]
    assert [(f["position"], f["message"].split(" ")[0]) for f in warnings] == [
        (f"{path}:17:7", "iam:PassRole")]


def test_lint_on_bad_input_exits_1(manifests: Any) -> None:
    path, result = lint(manifests, workload(env="Prod"))
    assert result.code == 1
    assert result.err.startswith(f"{path}:6:16: ")


def test_lint_examples() -> None:
    result = no_traceback(run_cli("lint", "--config", str(EXAMPLES / "workload-ids.yaml"), str(EXAMPLES)))
    assert result.code == 0, result.out
    # The two examples that trust a GitHub environment are told to protect it; nothing else.
    warnings = [ln for ln in lines(result.out) if ": warning: " in ln]
    assert [w.split(": warning: ")[1].split(" trusts ")[0] for w in warnings] == [
        "environment 'production'"] * 2
    assert "9 workload(s): 2 warning(s)" in result.out


# --- help ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--help"], ["validate", "--help"], ["lint", "--help"], ["schema", "--help"],
    ["plan", "--help"], ["apply", "--help"],
])
def test_help_exits_0(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.code == 0
    assert result.out.startswith("usage: workload-ids")


def test_lint_help_mentions_strict() -> None:
    assert "--strict" in run_cli("lint", "--help").out


def test_no_verb_prints_help_and_exits_1() -> None:
    result = run_cli()
    assert result.code == 1
    assert result.out.startswith("usage: workload-ids")


# --- offline verbs import no cloud SDK -----------------------------------------------------------

SDK_PROBE = textwrap.dedent("""\
    import sys
    {prelude}
    from workload_ids.cli import main
    try:
        rc = main({args!r})
    except SystemExit as exc:  # --help
        rc = int(exc.code or 0)
    bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'moto', 'google', 'azure')]
    print(bad)
    sys.exit(rc)
    """)


def probe(args: list[str], cwd: Path, prelude: str = "") -> tuple[int, str]:
    script = SDK_PROBE.format(prelude=prelude, args=args)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=cwd, timeout=120, check=False)
    return done.returncode, done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [
    ["validate", "--config", str(EXAMPLES / "workload-ids.yaml"), str(EXAMPLES)],
    ["lint", "--config", str(EXAMPLES / "workload-ids.yaml"), str(EXAMPLES)],
    ["schema"],
    ["--help"],
], ids=["validate", "lint", "schema", "help"])
def test_offline_verbs_import_no_cloud_sdk(tmp_path: Path, args: list[str]) -> None:
    code, imported = probe(args, tmp_path)
    assert code == 0
    assert imported == "[]"


def test_sdk_probe_detects_an_import(tmp_path: Path) -> None:
    # The control for the test above: the probe does see an SDK module when one is loaded.
    pytest.importorskip("botocore")
    code, imported = probe(["schema"], tmp_path, prelude="import botocore")
    assert code == 0
    assert "'botocore'" in imported


# --- validate: spec.credentials.attachedTo ---------------------------------------------------

_GCP_HEAD = ("apiVersion: workload-ids/v1\nkind: Workload\nmetadata:\n  name: payments-api\n"
             "  owner: team-a\n  environment: prod\nspec:\n  provider: {provider}\n{target}"
             "  credentials:\n")
_TARGETS = {"gcp": "  gcp: {project: acme-prod}\n",
            "aws": f"  aws: {{account: \"{ACCOUNT}\", region: eu-west-1}}\n",
            "azure": "  azure: {subscription: \"0b1f6471-1bf0-4dda-aec3-cb9272f09590\", "
                     "resourceGroup: rg-orders, location: westeurope}\n"}
_ACCESS = {"gcp": "  access:\n    - template: secret.read\n"
                  "      resources: [projects/acme-prod/secrets/db]\n",
           "aws": "  access:\n    - template: queue.consume\n"
                  f"      resources: [arn:aws:sqs:eu-west-1:{ACCOUNT}:q]\n",
           "azure": "  access: []\n"}


def attached_manifest(provider: str, credentials: str) -> str:
    """A manifest whose credentials block (lines 11 on, under ``credentials:`` on line 10)
    is ``credentials``."""
    return (_GCP_HEAD.format(provider=provider, target=_TARGETS[provider]) + textwrap.indent(
        textwrap.dedent(credentials), "    ") + _ACCESS[provider])


ATTACHED_ERRORS = [
    # (provider, credentials block, line:column, fragments of the message)
    ("gcp", "attachedTo:\n  - kind: app-service\n    site: /subscriptions/x/resourceGroups/r/providers/"
            "Microsoft.Web/sites/web\n", "12:15",
     ["attachedTo kind app-service is a runtime on Azure, but the workload is on GCP",
      "kind: cloud-run with service and region"]),
    ("azure", "attachedTo:\n  - kind: cloud-run\n    service: api\n    region: europe-west1\n", "12:15",
     ["is a runtime on GCP, but the workload is on Azure", "kind: app-service with site"]),
    ("aws", "attachedTo:\n  - kind: app-service\n    site: /subscriptions/x/resourceGroups/r/providers/"
            "Microsoft.Web/sites/web\n", "12:15", ["there write kind: lambda or kind: ecs"]),
    ("azure", "attachedTo:\n  - kind: aks\n", "12:15",
     ["workload identity federation", "federation entry", "kind: kubernetes",
      "the cluster's OIDC issuer"]),
    ("gcp", "attachedTo:\n  - kind: kubernetes\n", "12:15", ["workload identity federation"]),
    ("aws", "attachedTo:\n  - kind: ec2\n", "12:15",
     ["instance profile, which workload-ids does not create", "aws-service",
      "ec2.amazonaws.com", "create the instance profile"]),
    ("gcp", "attachedTo:\n  - kind: cloud-run\n    service: api\n", "12:9",
     ["attachedTo kind cloud-run needs 'region' (it takes service, region, deployers)"]),
    ("gcp", "attachedTo:\n  - kind: compute-engine\n    instance: vm-1\n    zone: europe-west1-b\n"
            "    region: europe-west1\n", "15:9",
     ["'region' does not go with kind compute-engine, which takes instance, zone, deployers; remove it"]),
    ("azure", "attachedTo:\n  - kind: app-service\n    site: /subscriptions/11111111-2222-3333-4444-"
              "555555555555/resourceGroups/rg/providers/Microsoft.Web/sites/api\n", "13:15",
     ["is in subscription 11111111-2222-3333-4444-555555555555, but the workload is in "
      "0b1f6471-1bf0-4dda-aec3-cb9272f09590", "declare the workload in that subscription"]),
    ("gcp", "attachedTo:\n  - kind: cloud-run\n    service: api\n    region: europe-west1\n"
            "    deployers: [alice@acme.example]\n", "15:21",
     ["deployer 'alice@acme.example' is not a GCP member", "user:EMAIL"]),
    ("azure", "attachedTo:\n  - kind: app-service\n    site: /subscriptions/0b1f6471-1bf0-4dda-aec3-"
              "cb9272f09590/resourceGroups/rg/providers/Microsoft.Web/sites/api\n"
              "    deployers: [alice@acme.example]\n", "14:21",
     ["is not an Entra object id", "the object id (a GUID)"]),
    ("aws", "attachedTo:\n  - kind: lambda\n    function: payments\n"
            "    deployers: [arn:aws:iam::123456789012:role/ci]\n", "14:9",
     ["deployers cannot be granted on AWS", "iam:PassRole in the deployer's own policy, which "
      "workload-ids never edits", "Remove 'deployers'",
      '"Resource": "arn:aws:iam::123456789012:role/workload-ids/wid_prod_payments-api"',
      '"Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}']),
    ("gcp", "mode: key\nattachedTo:\n  - kind: cloud-run\n    service: api\n    region: europe-west1\n",
     "12:5", ["key mode takes no attachedTo entries", "use mode: keyless"]),
    ("gcp", "attachedTo:\n  - kind: cloud-run\n    service: payments-*\n    region: europe-west1\n", "13:18",
     ["service 'payments-*' is not valid", "no wildcards"]),
    ("gcp", "attachedTo:\n  - kind: lambada\n", "12:15", ["'kind' must be one of", "'cloud-run'"]),
]


@pytest.mark.parametrize(("provider", "credentials", "where", "fragments"), ATTACHED_ERRORS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ATTACHED_ERRORS)])
def test_attached_to_mistakes_are_positioned_with_a_fix(manifests: Any, provider: str, credentials: str,
                                                        where: str, fragments: list[str]) -> None:
    path = manifests({"w.yaml": attached_manifest(provider, credentials)}) / "w.yaml"
    result = no_traceback(run_cli("validate", str(path)))
    assert result.code == 1, result.out + result.err
    found = [line for line in lines(result.err) if line.startswith(f"{path}:{where}: ")]
    assert found, result.err
    for fragment in fragments:
        assert fragment in found[0], found[0]


def test_a_keyless_workload_with_neither_federation_nor_attachment_says_both(manifests: Any) -> None:
    path = manifests({"w.yaml": attached_manifest("gcp", "mode: keyless\n")}) / "w.yaml"
    result = no_traceback(run_cli("validate", str(path)))
    assert result.code == 1
    assert f"{path}:10:3: a keyless workload needs at least one federation or attachedTo entry" in result.err
    assert "Add spec.credentials.federation or spec.credentials.attachedTo" in result.err


def test_an_attachment_alone_is_valid_trust(manifests: Any) -> None:
    from support.trust import TEST_TRUST_DATA
    trust = {**TEST_TRUST_DATA, "allowedDeployers": ["group:deployers@acme.example"]}
    Path("workload-ids.yaml").write_text("trust: " + json.dumps(trust) + "\n")
    folder = manifests({
        "gcp.yaml": attached_manifest("gcp", "attachedTo:\n  - kind: cloud-run\n    service: api\n"
                                             "    region: europe-west1\n"
                                             "    deployers: [group:deployers@acme.example]\n"),
        "aws.yaml": attached_manifest("aws", "attachedTo:\n  - kind: ecs\n    cluster: prod\n")
        .replace("payments-api", "payments-aws")})
    result = no_traceback(run_cli("validate", str(folder)))
    assert result.code == 0, result.err
