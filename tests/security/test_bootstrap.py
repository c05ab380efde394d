"""`workload-ids bootstrap` (H1, L4): the tool's own identities per cloud, the default
workload permissions boundary, and what apply does when that boundary is missing. AWS
runs against moto; every policy is also judged by parliament and cloudsplaining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, PAYMENTS
from support.bootstrap_flows import KEY_MODE, Call
from support.cli import run_cli
from support.iam_eval import allowed
from support.trust import TEST_TRUST

from workload_ids.bootstrap import aws as boot_aws
from workload_ids.bootstrap import azure as boot_azure
from workload_ids.config import Config, ConfigFile

BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/workload-ids/wid-workload-boundary"
PLAN = boot_aws.render(Config(ConfigFile(), Path("."), None), ACCOUNT)
POLICIES = {**{i.identity: i.policy for i in PLAN.identities}, "boundary": PLAN.boundary.document}


def _role_boundary(iam: Any, name: str) -> str | None:
    role = iam.get_role(RoleName=name)["Role"]
    return (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")


def _our_roles(iam: Any) -> list[str]:
    return sorted(r["RoleName"] for r in iam.list_roles(PathPrefix="/workload-ids/")["Roles"])


# --- printing -----------------------------------------------------------------------------

def test_bootstrap_prints_every_cloud_and_changes_nothing(cli: Any) -> None:
    result = cli("bootstrap")
    assert result.code == 0, result.err
    out = result.out
    for identity in ("apply", "rotate", "cleanup", "restore", "discover"):
        role = f"arn:aws:iam::ACCOUNT_ID:role/workload-ids-tool/wid-tool-{identity}"
        assert f"== {identity}: role {role}" in out
        assert f"projects/PROJECT_ID/roles/wid_tool_{identity}" in out
        assert f'"roleName": "wid-tool-{identity} (SUBSCRIPTION_ID)"' in out
    assert "== workload boundary: arn:aws:iam::{account}" not in out  # placeholders are substituted
    assert "arn:aws:iam::ACCOUNT_ID:policy/workload-ids/wid-workload-boundary" in out
    assert "hasOnly(['roles/iam.workloadIdentityUser'])" in out
    assert "Printed only; `workload-ids bootstrap --provider aws|gcp|azure --target ID --apply`" in out


def test_bootstrap_json_names_each_identity_per_cloud(cli: Any) -> None:
    result = cli("bootstrap", "--provider", "aws", "--provider", "azure", "--output", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert [i["identity"] for i in doc["aws"]["identities"]] == ["apply", "rotate", "cleanup", "restore",
                                                                 "discover"]
    assert doc["aws"]["boundary"]["policy"].endswith(":policy/workload-ids/wid-workload-boundary")
    assert [i["identity"] for i in doc["azure"]["identities"]] == ["apply", "rotate", "cleanup", "restore",
                                                                   "discover"]
    assert "gcp" not in doc and doc["applied"] == []


def test_azure_assignments_exclude_the_admin_roles_and_require_service_principals() -> None:
    plan = boot_azure.render(Config(ConfigFile(), Path("."), None), "00000000-0000-0000-0000-000000000001")
    by = {i["identity"]: i for i in plan["identities"]}
    condition = by["apply"]["roleAssignment"]["properties"]["condition"]
    assert by["apply"]["roleAssignment"]["properties"]["conditionVersion"] == "2.0"
    for guid in (boot_azure.OWNER, boot_azure.USER_ACCESS_ADMINISTRATOR, boot_azure.RBAC_ADMINISTRATOR):
        assert condition.count(guid) == 2  # on writes (the request) and deletes (the assignment)
    assert ("@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
            "ForAnyOfAllValues:GuidNotEquals") in condition
    assert ("@Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:"
            "StringEqualsIgnoreCase {'ServicePrincipal'}") in condition
    assert "@Resource[Microsoft.Authorization/roleAssignments:PrincipalType]" in condition
    # No role that can write role assignments goes without the condition.
    for ident in by.values():
        actions = ident["roleDefinition"]["properties"]["permissions"][0]["actions"]
        writes = [a for a in actions if a.startswith("Microsoft.Authorization/roleAssignments/")
                  and not a.endswith("/read")]
        assert bool(writes) == ("condition" in ident["roleAssignment"]["properties"])
        assert ident["roleDefinition"]["properties"]["assignableScopes"] == [
            "/subscriptions/00000000-0000-0000-0000-000000000001"]
        assert not any(a.endswith("/*") or a == "*" for a in actions)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--provider", "gcpx"], "--provider:1:1: unknown provider 'gcpx'; choose one of aws, gcp, azure"),
    (["--provider", "aws", "--target", "12345"], "--target:1:1: '12345' is not a 12-digit AWS account id"),
    (["--provider", "gcp", "--target", "Bad_Project"], "'Bad_Project' is not a GCP project id"),
    (["--provider", "azure", "--target", "nope"], "'nope' is not an Azure subscription id (a GUID)"),
    (["--target", ACCOUNT], "give exactly one --provider with it"),
    (["--provider", "gcp", "--gcp-role", "roles/owner"], "'roles/owner' is not a custom role name"),
])
def test_bad_input_is_refused_with_exit_1_and_no_traceback(cli: Any, args: list[str], fragment: str) -> None:
    result = cli("bootstrap", *args)
    assert result.code == 1
    assert fragment in result.err
    assert "Traceback" not in result.err and result.out == ""


def test_bootstrap_refuses_a_config_that_opted_out_of_boundaries(cli: Any) -> None:
    Path("workload-ids.yaml").write_text("guardrails:\n  requirePermissionsBoundary: false\n")
    result = cli("bootstrap", "--provider", "aws")
    assert result.code == 1
    assert "workload-ids.yaml:2:31: guardrails.requirePermissionsBoundary is false" in result.err


# --- --apply on moto ------------------------------------------------------------------------

def test_apply_creates_the_identities_and_a_rerun_changes_nothing(aws: Any, cli: Any) -> None:
    aws.delete_policy(PolicyArn=BOUNDARY)  # a fresh account: bootstrap makes it too
    first = cli("bootstrap", "--provider", "aws", "--apply", "--output", "json")
    assert first.code == 0, first.err
    applied = json.loads(first.out)["applied"]
    assert f"created policy {BOUNDARY}" in applied
    for ident in PLAN.identities:
        role = aws.get_role(RoleName=ident.role_name)["Role"]
        assert role["Path"] == "/workload-ids-tool/"
        attached = [p["PolicyArn"] for p in
                    aws.list_attached_role_policies(RoleName=ident.role_name)["AttachedPolicies"]]
        assert attached == [ident.policy_arn]
        policy = aws.get_policy(PolicyArn=ident.policy_arn)["Policy"]
        document = aws.get_policy_version(PolicyArn=ident.policy_arn,
                                          VersionId=policy["DefaultVersionId"])["PolicyVersion"]["Document"]
        assert document == ident.policy
    restore = aws.get_role(RoleName="wid-tool-restore")["Role"]["AssumeRolePolicyDocument"]
    assert restore["Statement"][0]["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    # The tool's roles live beside the workloads' path: no workload-ids identity can touch them.
    assert _our_roles(aws) == []

    again = cli("bootstrap", "--provider", "aws", "--apply")
    assert again.code == 0, again.err
    assert f"AWS account {ACCOUNT}: everything in place; nothing changed" in again.out


def test_a_rerun_converges_an_edited_policy_and_leaves_the_operators_trust(aws: Any, cli: Any) -> None:
    assert cli("bootstrap", "--provider", "aws", "--apply").code == 0
    apply_policy = PLAN.identities[0].policy_arn
    aws.create_policy_version(PolicyArn=apply_policy, SetAsDefault=True, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]}))
    github = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Principal": {"Federated": github}}]}
    aws.update_assume_role_policy(RoleName="wid-tool-apply", PolicyDocument=json.dumps(trust))
    result = cli("bootstrap", "--provider", "aws", "--apply")
    assert result.code == 0, result.err
    assert f"updated policy {apply_policy} (new default version)" in result.out
    policy = aws.get_policy(PolicyArn=apply_policy)["Policy"]
    current = aws.get_policy_version(PolicyArn=apply_policy, VersionId=policy["DefaultVersionId"])
    assert current["PolicyVersion"]["Document"] == PLAN.identities[0].policy
    assert aws.get_role(RoleName="wid-tool-apply")["Role"]["AssumeRolePolicyDocument"] == trust


def test_apply_without_iam_rights_stops_with_what_to_do(aws: Any) -> None:
    from workload_ids.bootstrap.command import bootstrap
    from workload_ids.calls import CallSeam, FailOperation, RetryPolicy
    from workload_ids.errors import CloudError
    aws.delete_policy(PolicyArn=BOUNDARY)
    seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    seam.inject(FailOperation("iam.create_policy", "denied"))
    with pytest.raises(CloudError) as caught:
        bootstrap(Config(ConfigFile(), Path("."), None), seam, ["aws"], None, apply=True)
    assert "bootstrap needs an administrator of the account" in caught.value.diagnostics()
    assert aws.list_policies(Scope="Local")["Policies"] == []


# --- the default boundary on workload identities -----------------------------------------------

def test_every_role_and_user_apply_creates_carries_the_default_boundary(aws: Any, manifests: Any) -> None:
    folder = manifests({"p.yaml": PAYMENTS, "k.yaml": KEY_MODE})
    result = run_cli("apply", "--auto-approve", str(folder))
    assert result.code == 0, result.err
    assert _role_boundary(aws, "wid_prod_payments-api") == BOUNDARY
    user = aws.get_user(UserName="wid_prod_vendor-sync")["User"]
    assert user["PermissionsBoundary"]["PermissionsBoundaryArn"] == BOUNDARY
    assert run_cli("plan", "--detailed-exitcode", str(folder)).code == 0


def test_apply_without_the_boundary_policy_fails_clearly_and_creates_nothing(aws: Any,
                                                                             manifests: Any) -> None:
    aws.delete_policy(PolicyArn=BOUNDARY)
    path = manifests({"p.yaml": PAYMENTS}) / "p.yaml"
    for verb in (["plan"], ["apply", "--auto-approve"]):
        result = run_cli(*verb, str(path))
        assert result.code == 1
        assert (f"p.yaml:11:5: the permissions boundary {BOUNDARY} does not exist in account {ACCOUNT}; "
                f"run `workload-ids bootstrap --provider aws --target {ACCOUNT} --apply`") in result.err
        assert "Traceback" not in result.err
    assert _our_roles(aws) == []


def test_a_named_boundary_that_is_missing_points_at_the_config(aws: Any, manifests: Any) -> None:
    Path("workload-ids.yaml").write_text(
        "aws:\n  permissionsBoundary: arn:aws:iam::{account}:policy/team-boundary\n" + TEST_TRUST)
    path = manifests({"p.yaml": PAYMENTS}) / "p.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 1
    assert ("workload-ids.yaml:2:24: the permissions boundary arn:aws:iam::123456789012:policy/team-boundary "
            "does not exist") in result.err
    assert _our_roles(aws) == []


def test_opting_out_is_explicit_and_lint_warns(aws: Any, manifests: Any) -> None:
    aws.delete_policy(PolicyArn=BOUNDARY)
    Path("workload-ids.yaml").write_text("guardrails:\n  requirePermissionsBoundary: false\n" + TEST_TRUST)
    path = manifests({"p.yaml": PAYMENTS}) / "p.yaml"
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    assert _role_boundary(aws, "wid_prod_payments-api") is None
    lint = run_cli("lint", "--strict", str(path))
    assert lint.code == 1
    assert ("workload-ids.yaml:2:31: warning: AWS roles and users get no permissions boundary "
            "(guardrails.requirePermissionsBoundary: false)") in lint.out + lint.err


def test_a_role_made_before_the_default_boundary_gets_it_first(aws: Any, manifests: Any) -> None:
    Path("workload-ids.yaml").write_text("guardrails:\n  requirePermissionsBoundary: false\n" + TEST_TRUST)
    path = manifests({"p.yaml": PAYMENTS}) / "p.yaml"
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    Path("workload-ids.yaml").write_text(TEST_TRUST)
    changed = path.read_text().replace("dynamodb:Query", "dynamodb:Scan")
    path.write_text(changed)
    doc = json.loads(run_cli("plan", "--output", "json", str(path)).out)
    # The deployer may write policies only on identities that carry the boundary: it goes first.
    assert [c["action"] for c in doc["changes"]][:2] == ["update-boundary", "update-permissions"]
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    assert _role_boundary(aws, "wid_prod_payments-api") == BOUNDARY


# --- the policies themselves ------------------------------------------------------------------

def test_every_policy_fits_a_managed_policy() -> None:
    for name, doc in POLICIES.items():
        size = len(boot_aws.compact(doc))
        assert size <= boot_aws.MANAGED_POLICY_MAX, f"{name}: {size} characters"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_parliament_finds_nothing(name: str) -> None:
    from parliament import analyze_policy_string, enhance_finding
    policy = analyze_policy_string(json.dumps(POLICIES[name]), include_community_auditors=False)
    findings = [enhance_finding(f) for f in policy.findings]
    assert [(f.issue, f.severity, f.detail) for f in findings] == []


@pytest.mark.parametrize("name", ["apply", "rotate", "cleanup", "restore", "discover"])
def test_cloudsplaining_finds_nothing(name: str) -> None:
    from cloudsplaining.scan.policy_document import PolicyDocument
    document = PolicyDocument(POLICIES[name])
    assert document.allows_privilege_escalation == []
    assert document.allows_data_exfiltration_actions == []
    assert document.credentials_exposure == []
    assert document.infrastructure_modification == []
    assert document.permissions_management_without_constraints == []
    assert document.write_actions_without_constraints == []
    assert document.tagging_actions_without_constraints == []
    assert document.service_wildcard == [] and document.all_allowed_unrestricted_actions == []


def _request(action: str, resource: str = "*") -> Call:
    service, _, operation = action.partition(":")
    return Call("workload", service, operation, {}, {"arn": resource, "tags": {}})


def test_the_boundary_denies_iam_organizations_account_and_foreign_roles() -> None:
    """Not for cloudsplaining: a boundary allows "*" by design (a ceiling, not a grant),
    and cloudsplaining reads the Allow without the Denies. Judged by evaluation instead."""
    boundary = POLICIES["boundary"]
    for action in ("iam:PassRole", "iam:PutRolePolicy", "iam:DeleteRolePermissionsBoundary", "iam:CreateUser",
                   "IAM:passrole", "organizations:LeaveOrganization", "account:PutAlternateContact",
                   "sts:AssumeRole", "sts:GetFederationToken"):
        assert not allowed(boundary, _request(action, f"arn:aws:iam::{ACCOUNT}:role/admin")), action
    for action in ("s3:GetObject", "sqs:ReceiveMessage", "dynamodb:Query", "sts:GetCallerIdentity"):
        assert allowed(boundary, _request(action, "arn:aws:s3:::bucket/key")), action
    assert boundary["Statement"][-1] == {"Sid": "DenyAssumeRoleOutsideAllowList", "Effect": "Deny",
                                         "Action": "sts:AssumeRole", "Resource": "*"}


def test_the_boundary_allow_list_lets_named_roles_be_assumed_and_no_others() -> None:
    config = Config(ConfigFile.model_validate({"aws": {"boundaryAssumableRoles": [
        "arn:aws:iam::{account}:role/shared/reader"]}}), Path("."), None)
    boundary = boot_aws.render(config, ACCOUNT).boundary.document
    assert allowed(boundary, _request("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/shared/reader"))
    assert not allowed(boundary, _request("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/admin"))


def test_no_identity_may_remove_a_boundary_pass_a_role_or_attach_a_managed_policy() -> None:
    for name in ("apply", "rotate", "cleanup", "restore"):
        policy = POLICIES[name]
        for action in ("iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary",
                       "iam:PassRole", "iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:AddUserToGroup"):
            request = Call(name, *action.split(":"), {"RoleName": "wid_prod_x"},
                           {"arn": f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_x",
                            "tags": {"workload-ids:managed-by": "workload-ids"}, "boundary": BOUNDARY})
            assert not allowed(policy, request), (name, action)
        assert '"iam:*"' not in json.dumps(policy)
        # role/* only for reads (apply's of adopted roles): GetAccountAuthorizationDetails,
        # granted on "*", gives the same facts of every role.
        for st in policy["Statement"]:
            if st["Effect"] == "Allow" and "arn:aws:iam::123456789012:role/*" in json.dumps(st["Resource"]):
                actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
                assert all(a.split(":")[1].startswith(("Get", "List")) for a in actions), (name, st)


def test_secrets_are_scoped_to_the_secret_name_prefix_and_only_locks_can_be_deleted() -> None:
    """L4: Secrets Manager ARNs end in -XXXXXX, so `workload-ids/*.lock` matched nothing;
    a lock is `NAME.lock-??????`, and a key secret can never be deleted."""
    policy = POLICIES["rotate"]
    ours = {"workload-ids:managed-by": "workload-ids"}

    def secret(operation: str, name: str) -> Call:
        return Call("rotate", "secretsmanager", operation, {"SecretId": name},
                    {"arn": f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:{name}-AbCdEf", "tags": ours})
    assert allowed(policy, secret("DeleteSecret", "workload-ids/prod/svc.lock"))
    assert not allowed(policy, secret("DeleteSecret", "workload-ids/prod/svc"))
    assert allowed(policy, secret("PutSecretValue", "workload-ids/prod/svc"))
    assert not allowed(policy, secret("GetSecretValue", "other-team/prod/svc"))


def test_attack_a_workload_role_cannot_reach_iam_through_its_boundary(aws: Any, manifests: Any) -> None:
    """A grant that got past review (here: iam:PassRole and iam:PutRolePolicy written into
    the role's policy by someone else) still stops at the boundary AWS evaluates with it:
    judged against the boundary document read back from the account."""
    path = manifests({"p.yaml": PAYMENTS}) / "p.yaml"
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    role = aws.get_role(RoleName="wid_prod_payments-api")["Role"]
    arn = role["PermissionsBoundary"]["PermissionsBoundaryArn"]
    version = aws.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    boundary = aws.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    own_role = f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_payments-api"
    for action in ("iam:PutRolePolicy", "iam:PassRole", "iam:DeleteRolePermissionsBoundary",
                   "iam:CreatePolicyVersion", "sts:AssumeRole"):
        assert not allowed(boundary, _request(action, own_role)), action
    queue = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:payment-events"
    assert allowed(boundary, _request("sqs:ReceiveMessage", queue))


def test_gcp_grant_condition_names_only_workload_roles(cli: Any) -> None:
    role = "projects/my-project/roles/wid_prod_svc_ab12cd_ef01"
    result = cli("bootstrap", "--provider", "gcp", "--target", "my-project", "--gcp-role", role,
                 "--output", "json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)["gcp"]
    conditional = [b for b in plan["bindings"] if "condition" in b]
    assert sorted(b["role"] for b in conditional) == [
        f"projects/my-project/roles/wid_tool_{i}_grants" for i in ("apply", "cleanup", "restore")]
    for binding in conditional:
        assert binding["condition"]["expression"] == (
            "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
            f".hasOnly(['roles/iam.workloadIdentityUser', '{role}'])")
    # setIamPolicy on the project only ever comes with that condition.
    for ident in plan["identities"]:
        assert "resourcemanager.projects.setIamPolicy" not in ident["role"]["includedPermissions"]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_action_the_policies_name_is_real_and_canonical(name: str) -> None:
    """Issue 13: every name the tool emits exists in the shipped catalogs, spelled as AWS
    spells it (a wildcard in a Deny, like the boundary's iam:*, must match real names)."""
    import fnmatch

    from workload_ids import catalogs
    from workload_ids.catalogs import check
    for statement in POLICIES[name]["Statement"]:
        actions = statement.get("Action") or statement.get("NotAction") or []
        for action in [actions] if isinstance(actions, str) else actions:
            if action == "*":
                continue
            if "*" in action or "?" in action:
                assert any(fnmatch.fnmatchcase(real, action) for real in catalogs.names("aws")), action
                continue
            assert check("aws", action).name == action, action


def test_every_name_the_gcp_and_azure_identities_hold_is_in_the_catalogs() -> None:
    """The same for the GCP custom roles and Azure role definitions: exact, catalogued names
    (GCP without a warning), each Azure operation in the list Azure reads it from. The Azure
    apply identity's roleDefinitions/write and /delete are in no built-in role, so only the
    transcribed Microsoft.Authorization page vouches for them."""
    from workload_ids import catalogs
    from workload_ids.bootstrap import gcp as boot_gcp
    from workload_ids.catalogs import check
    config = Config(ConfigFile(), Path("."), None)
    gcp = boot_gcp.render(config, "my-project", ["projects/my-project/roles/wid_prod_svc_ab12cd_ef01"])
    permissions = {p for ident in gcp["identities"] for role in (ident["role"], ident.get("grantRole"))
                   if role for p in role["includedPermissions"]}
    assert len(permissions) > 40
    assert [(p, check("gcp", p)) for p in sorted(permissions)
            if check("gcp", p) != catalogs.NameCheck(p, None, None)] == []
    azure = boot_azure.render(config, "00000000-0000-0000-0000-000000000001")
    checked = []
    for ident in azure["identities"]:
        for block in ident["roleDefinition"]["properties"]["permissions"]:
            for field, kind in (("actions", "A"), ("dataActions", "D")):
                for name in block[field]:
                    operation = catalogs.azure_operation(name)
                    assert operation is not None and operation.name == name, (ident["identity"], name)
                    assert kind in operation.classes, (ident["identity"], field, name)
                    assert check("azure", name, azure_field=field).severity is None, name
                    checked.append(name)
    assert "Microsoft.Authorization/roleDefinitions/write" in checked


def test_the_readmes_aws_excerpt_is_what_bootstrap_prints() -> None:
    """README's "Permissions the tool needs" shows bootstrap's output, abbreviated: its
    role line, sizes and statement names must be the command's, not an older draft's."""
    import re

    from support.paths import REPO
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Permissions the tool needs\n", 1)[1].split("\n### AWS\n", 1)[1]
    block = section.split("```\n", 2)[1]
    printed = boot_aws.render_text(PLAN)
    sizes = {i.identity: len(boot_aws.compact(i.policy)) for i in PLAN.identities}
    sizes["boundary"] = len(boot_aws.compact(PLAN.boundary.document))
    shown = {m[0]: int(m[1]) for m in re.findall(r"wid-tool-(\w+) \((\d+) of 6144 characters\)", block)}
    shown |= {m[0]: int(m[1]) for m in re.findall(r"^== (\w+)\s+\((\d+) characters\)", block, re.M)}
    [boundary] = re.findall(r"^== workload boundary: \S+ \((\d+) characters\)", block, re.M)
    shown["boundary"] = int(boundary)
    assert shown == sizes
    [role_line] = [line for line in block.splitlines() if line.startswith("== apply: role ")]
    assert role_line in printed.splitlines()
    apply_sids = {st["Sid"] for st in POLICIES["apply"]["Statement"]}
    named = re.findall(r"^   ([A-Z][A-Za-z]+) ", block, re.M)
    assert len(named) > 10 and set(named) <= apply_sids, set(named) - apply_sids
