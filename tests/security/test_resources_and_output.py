"""Attacks on what a manifest lists and on what the tool echoes (review findings M3, L1, L2,
L3): each test fails without its guard. AWS runs on moto, GCP on our emulators."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, workload
from support.cli import run_cli
from support.trust import TEST_TRUST

ROLE = "wid_prod_svc-a"


def _entry(head: str, *resources: str, extra: str = "") -> str:
    """An access entry whose resources are a block list, each at column 11 of its line."""
    items = "".join(f"        - {r}\n" for r in resources)
    return f"    - {head}\n      resources:\n{items}{extra}"


RAW = "actions: [dynamodb:GetItem]"
REASON = "      reason: reads the order table\n"


def _no_role(iam: Any) -> None:
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == []


# --- M3: IAM policy variables, accounts, S3 ---------------------------------------------------

@pytest.mark.parametrize("resource", [
    f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/${{aws:username}}",
    f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders-${{aws:PrincipalTag/team}}",
    f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders}}",
])
def test_policy_variable_in_a_raw_resource_is_refused(aws: Any, manifests: Any, resource: str) -> None:
    path = manifests({"a.yaml": workload(access=_entry(RAW, resource, extra=REASON))}) / "a.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 1, result
    assert f"{path}:19:11: resource " in result.err
    assert "IAM policy variables" in result.err
    assert "list each resource by its literal name" in result.err
    _no_role(aws)


def test_policy_variable_in_a_template_resource_is_refused(aws: Any, manifests: Any) -> None:
    queue = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:jobs-${{aws:PrincipalTag/team}}"
    path = manifests({"a.yaml": workload(access=_entry("template: queue.consume", queue))}) / "a.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 1, result
    assert f"{path}:19:11: resource " in result.err
    assert "IAM policy variables" in result.err
    _no_role(aws)


@pytest.mark.parametrize(("resource", "words"), [
    ("arn:aws:dynamodb:eu-west-1::table/orders", "has an empty account"),
    ("arn:aws:lambda:eu-west-1::function:fraud", "has an empty account"),
    ("arn:aws:dynamodb:eu-west-1:aws:table/orders", "names the account 'aws'"),
    ("arn:aws:iam::aws:role/admin", "names the account 'aws'"),
])
def test_raw_arn_with_an_empty_or_aws_account_is_refused(aws: Any, manifests: Any, resource: str,
                                                          words: str) -> None:
    path = manifests({"a.yaml": workload(access=_entry(RAW, resource, extra=REASON))}) / "a.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 1, result
    assert f"{path}:19:11: resource {resource!r} {words}" in result.err
    assert ACCOUNT in result.err  # the message says which account to write
    _no_role(aws)


@pytest.mark.parametrize("resource", [
    "arn:aws:iam::aws:policy/ReadOnlyAccess",         # AWS managed policies live in 'aws'
    "arn:aws:ec2:eu-west-1::image/ami-0abcdef1234567890",  # public AMIs belong to no account
    "arn:aws:ssm:eu-west-1::document/AWS-RunPatchBaseline",
])
def test_aws_owned_resources_keep_their_form(manifests: Any, resource: str) -> None:
    path = manifests({"a.yaml": workload(access=_entry(
        "actions: [iam:GetPolicy, ec2:DescribeImages, ssm:GetDocument]", resource,
        extra=REASON))}) / "a.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 0, result.err


def _policy(iam: Any) -> dict[str, Any]:
    doc: dict[str, Any] = iam.get_role_policy(RoleName=ROLE, PolicyName="workload-ids")["PolicyDocument"]
    return doc


def test_s3_statements_are_held_to_the_workload_account(aws: Any, manifests: Any) -> None:
    # S3 ARNs carry no account: without the condition, another organisation's bucket
    # (opened to "any principal in the org" by a bucket policy) would be reachable.
    access = (_entry("template: object-storage.read", "arn:aws:s3:::other-orgs-bucket")
              + _entry("actions: [s3:GetObject, dynamodb:GetItem]",
                       "arn:aws:s3:::other-orgs-bucket/reports/2026.csv",
                       f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders", extra=REASON))
    path = manifests({"a.yaml": workload(access=access)}) / "a.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 0, result.err
    held = {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}
    statements = _policy(aws)["Statement"]
    by_resource = {st["Resource"]: st for st in statements}
    assert by_resource["arn:aws:s3:::other-orgs-bucket"]["Condition"] == held
    assert by_resource["arn:aws:s3:::other-orgs-bucket/*"]["Condition"] == held
    assert by_resource["arn:aws:s3:::other-orgs-bucket/reports/2026.csv"]["Condition"] == held
    # The table shares the raw entry but not the S3 condition: its ARN names its account.
    assert "Condition" not in by_resource[f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders"]
    assert len(statements) == 4


def test_s3_condition_merges_with_a_template_condition() -> None:
    from workload_ids.model import Grant
    from workload_ids.providers.aws.render import policy_document
    condition = json.dumps({"StringEquals": {"s3:prefix": "reports/"},
                            "Bool": {"aws:SecureTransport": "true"}}, sort_keys=True)
    grant = Grant(source="t", entry=0, listed="arn:aws:s3:::b", resource="arn:aws:s3:::b",
                  kind="s3-bucket", actions=("s3:ListBucket",), condition=condition)
    (statement,) = policy_document([grant], ACCOUNT)["Statement"]
    assert statement["Condition"] == {
        "Bool": {"aws:SecureTransport": "true"},
        "StringEquals": {"aws:ResourceAccount": ACCOUNT, "s3:prefix": "reports/"}}


# --- L2: the audit file -----------------------------------------------------------------------

def _audited(where: str) -> None:
    """The working directory's config keeps an audit log at ``where``."""
    Path("workload-ids.yaml").write_text(f"audit:\n  path: {where}\ncredentials:\n"
                                         "  verify: {interval: 0s}\n" + TEST_TRUST)


def test_audit_file_is_private(aws: Any, manifests: Any) -> None:
    _audited("logs/deep/audit.jsonl")
    path = manifests({"a.yaml": workload()}) / "a.yaml"
    # The usual umask: under a stricter one (077) the file would be private without the guard.
    umask = os.umask(0o022)
    try:
        result = run_cli("apply", "--auto-approve", str(path))
    finally:
        os.umask(umask)
    assert result.code == 0, result.err
    log = Path("logs/deep/audit.jsonl")
    assert log.read_text().count("\n") >= 1
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    for folder in (Path("logs"), Path("logs/deep")):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_symlinked_audit_path_is_refused_before_any_change(aws: Any, manifests: Any,
                                                            tmp_path: Path) -> None:
    # Whoever can plant a link where the log goes would get the records (identities, key ids,
    # restore bundles) written wherever it points, e.g. into a file they can read.
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched\n")
    target.chmod(0o644)
    Path("audit.jsonl").symlink_to(target)
    _audited("audit.jsonl")
    path = manifests({"a.yaml": workload()}) / "a.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 1, result
    assert "audit.jsonl is a symbolic link" in result.err
    assert "nothing was changed" in result.err
    assert "Traceback" not in result.err
    assert target.read_text() == "untouched\n"
    _no_role(aws)


# --- L1: what the tool echoes -----------------------------------------------------------------

INJECTED = "Payments\\n::add-mask::iam:PutRolePolicy\\n::warning::x"  # YAML escapes


def _commands_in(text: str) -> list[str]:
    """Lines a CI runner would take as workflow commands (or a terminal as ours)."""
    return [line for line in text.splitlines() if line.lstrip().startswith("::")]


def _with_description(description: str) -> str:
    return workload().replace("  environment: prod\n",
                              f"  environment: prod\n  description: \"{description}\"\n")


@pytest.mark.parametrize("verb", [("plan",), ("apply", "--auto-approve"), ("lint",), ("validate",)])
def test_description_cannot_inject_workflow_commands(aws: Any, manifests: Any,
                                                     verb: tuple[str, ...]) -> None:
    path = manifests({"a.yaml": _with_description(INJECTED)}) / "a.yaml"
    result = run_cli(*verb, str(path))
    assert _commands_in(result.out) == [] and _commands_in(result.err) == [], result
    assert result.code == 1, result
    assert f"{path}:7:16: description holds '\\n' (U+000A), a control or line-break character" \
        in result.err
    _no_role(aws)


@pytest.mark.parametrize("char", ["\\u2028", "\\e[2K", "\\x85", "\\r"])
def test_description_refuses_every_line_breaking_or_control_character(manifests: Any,
                                                                      char: str) -> None:
    path = manifests({"a.yaml": _with_description(f"Payments{char}::warning::x")}) / "a.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 1, result
    assert "a control or line-break character" in result.err
    assert "\x1b" not in result.err and "\u2028" not in result.err and "\r" not in result.err


@pytest.mark.parametrize("field", ["reason", "escalation"])
def test_reasons_are_one_printable_line(manifests: Any, field: str) -> None:
    reason = "\"reads the table\\n::add-mask::iam:PassRole\""
    extra = (f"      reason: {reason}\n" if field == "reason" else
             "      reason: reads the table\n"
             f"      escalation: {{reason: {reason}}}\n")
    path = manifests({"a.yaml": workload(access=_entry(
        RAW, f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders", extra=extra))}) / "a.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 1, result
    assert "holds '\\n' (U+000A)" in result.err
    assert _commands_in(result.err) == []


def test_resource_with_a_line_break_is_refused_and_echoed_escaped(aws: Any, manifests: Any) -> None:
    resource = f"\"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders\\u2028::add-mask::x\\e[31m\""
    path = manifests({"a.yaml": workload(access=_entry(RAW, resource, extra=REASON))}) / "a.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 1, result
    assert f"{path}:19:11: resource " in result.err
    assert "\\u2028" in result.err and "\u2028" not in result.err and "\x1b" not in result.err
    _no_role(aws)


def test_plan_escapes_what_it_reads_back_from_the_cloud(aws: Any, manifests: Any) -> None:
    # Another principal rewrites our role's description; plan shows the drift it will repair,
    # and the text it read must stay on its own line.
    path = manifests({"a.yaml": workload().replace(
        "  environment: prod\n", "  environment: prod\n  description: Orders worker\n")}) / "a.yaml"
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    aws.update_role(RoleName=ROLE, Description="x\n::add-mask::iam:PutRolePolicy\n::warning::y")
    result = run_cli("plan", str(path))
    assert result.code == 0, result.err
    assert _commands_in(result.out) == []
    assert "~ description: x\\n::add-mask::iam:PutRolePolicy\\n::warning::y -> Orders worker" \
        in result.out


def test_one_line_escapes_controls_separators_and_ansi() -> None:
    from workload_ids.errors import one_line, printable
    assert one_line("a\nb\rc\td\x1b[31me\x85f\u2028g\u2029h\x7f") == \
        "a\\nb\\rc\\td\\x1b[31me\\x85f\\u2028g\\u2029h\\x7f"
    assert printable("line one\n\tline two\x1b[2K") == "line one\n\tline two\\x1b[2K"
    assert one_line("Zürich ünïcode") == "Zürich ünïcode"


# --- L3: GCP raw entries are bound ------------------------------------------------------------

GCP_PROJECT = "acme-prod"
GCP_TOPIC = "projects/acme-prod/topics/catalog-updated"
GCP_RAW = (
    "    - actions: [bigquery.jobs.create]\n      resources: [projects/acme-prod]\n"
    "      reason: runs query jobs, which BigQuery checks on the project\n"
    "    - actions: [storage.objects.get]\n      resources: [projects/_/buckets/bucket-c]\n"
    "      reason: reads one object store the templates do not cover\n"
    "    - actions: [pubsub.topics.publish]\n      resources: [" + GCP_TOPIC + "]\n"
    "      reason: publishes catalog updates\n")


@pytest.fixture
def gcp_cli() -> Any:
    """The GCP emulators, and a config in the working directory that points the CLI at them."""
    from workload_ids.sandbox.gcp.iam import IamEmulator
    from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, ResourceManagerEmulator
    from workload_ids.sandbox.gcp.resourcepolicy import ResourcePolicyEmulator
    res = ResourcePolicyEmulator()
    res.add_resource(GCP_TOPIC)
    iam, rm = IamEmulator(), ResourceManagerEmulator(projects=ProjectRegistry())
    iam.add_project(GCP_PROJECT)
    rm.add_project(GCP_PROJECT)
    from workload_ids.sandbox.gcp.local import start_key_store
    keys, keys_url = start_key_store([GCP_PROJECT])
    Path("workload-ids.yaml").write_text(
        f"gcp: {{iamEndpoint: '{iam.start()}', resourceManagerEndpoint: '{rm.start()}', "
        f"resourcePolicyEndpoint: '{res.start()}', secretManagerEndpoint: '{keys_url}', "
        "sandboxCredentials: true}\n"
        "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST)
    yield iam, rm, res
    for emulator in (iam, rm, res, keys):
        emulator.stop()


def test_gcp_raw_entries_are_bound_as_templates_would_be(gcp_cli: Any, manifests: Any) -> None:
    from support.gcp import gcp_workload

    from workload_ids.providers.gcp import render
    iam, rm, res = gcp_cli
    path = manifests({"g.yaml": gcp_workload(access=GCP_RAW)}) / "g.yaml"
    plan = run_cli("plan", "--output", "json", str(path))
    assert plan.code == 0, plan.err
    # The plan shows each raw grant where it is bound, as it shows a template's.
    assert json.loads(plan.out)["changes"][0]["permissions"]["added"] == [
        {"action": "bigquery.jobs.create", "resource": "project"},
        {"action": "pubsub.topics.publish", "resource": GCP_TOPIC},
        {"action": "storage.objects.get",
         "resource": render.condition_for_text("gcs-bucket", "projects/_/buckets/bucket-c")}]
    applied = run_cli("apply", "--auto-approve", str(path))
    assert applied.code == 0, applied.err
    [account] = iam.service_accounts(GCP_PROJECT)
    member = f"serviceAccount:{account.email}"
    roles = {r.name: sorted(r.permissions) for r in iam.roles(GCP_PROJECT)}
    project = {b.role: b.condition.expression for b in rm.policy(GCP_PROJECT).bindings
               if member in b.members}
    # Every custom role the run made is bound: none is left for someone else to bind.
    on_topic = [b.role for b in res.policy(GCP_TOPIC).bindings if member in b.members]
    assert set(roles) == set(project) | set(on_topic)
    by_permissions = {tuple(p): name for name, p in roles.items()}
    assert project[by_permissions[("bigquery.jobs.create",)]] == ""  # plainly on the project
    assert project[by_permissions[("storage.objects.get",)]] == \
        render.condition_for_text("gcs-bucket", "projects/_/buckets/bucket-c")
    assert on_topic == [by_permissions[("pubsub.topics.publish",)]]


def test_gcp_raw_bindings_follow_the_builtin_templates() -> None:
    from workload_ids.resources import GCP_BINDING, KINDS_BY_PROVIDER
    from workload_ids.templates import load_templates
    templates = load_templates()
    used: dict[str, set[str]] = {}
    for name in templates.names():
        template = templates.get(name)
        assert template is not None
        for kind, grant in (template.spec.gcp or {}).items():
            used.setdefault(kind, set()).add(grant.binding)
    assert {k: {v} for k, v in GCP_BINDING.items()} == used
    assert set(GCP_BINDING) == set(KINDS_BY_PROVIDER["gcp"])


def test_gcp_raw_entry_on_a_kind_without_a_binding_is_refused(manifests: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from support.gcp import gcp_workload

    from workload_ids import resources
    monkeypatch.delitem(resources.GCP_BINDING, "bigtable-table")  # a kind added without one
    table = "projects/acme-prod/instances/orders-bt/tables/events"
    path = manifests({"g.yaml": gcp_workload(access=(
        "    - actions: [bigtable.tables.readRows]\n      resources:\n        - " + table + "\n"
        "      reason: reads the events table\n"))}) / "g.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 1, result
    assert f"{path}:17:11: raw permissions on a bigtable-table cannot be bound" in result.err
    assert "use a template that accepts it" in result.err
