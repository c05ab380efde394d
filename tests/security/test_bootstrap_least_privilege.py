"""Least privilege both ways, proven by running the tool: every AWS call each command
makes (recorded at the call seam while apply, rotate, cleanup and restore run against
moto) is allowed by the policy `workload-ids bootstrap` writes for that identity, with
the request's own context (boundary, tags, policy ARN); and each policy allows nothing
those runs did not use, apart from a short list of extras each with its reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.bootstrap_flows import ACCOUNT, Call, run_all_flows
from support.iam_eval import _arn, _context, allowed, granted

from workload_ids.bootstrap.aws import render
from workload_ids.config import Config, ConfigFile

# Allowed but not exercised by the flows above, each for a path they cannot reach
# without a crash, a long run or a cloud state moto does not produce.
EXTRAS: dict[str, dict[str, str]] = {
    "apply": {
        "iam:DeleteAccessKey": "recover: a key issued by a run that died before storing it",
        "iam:PutRolePermissionsBoundary": "update-boundary: a role made before the default boundary",
        "iam:PutUserPermissionsBoundary": "update-boundary: a user made before the default boundary",
        "secretsmanager:TagResource": "the key journal, written before a key is issued again",
        "secretsmanager:UpdateSecret": "lock lease renewal on a long run",
        "secretsmanager:ListSecrets": "fleet runs read every key secret in one list",
        "secretsmanager:GetResourcePolicy": "an existing key secret is checked before a key goes in (H6)",
    },
    "rotate": {
        "secretsmanager:PutResourcePolicy": "a key secret created by a run that died before locking it down",
        "secretsmanager:UpdateSecret": "lock lease renewal on a long run",
        "secretsmanager:ListSecrets": "fleet runs read every key secret in one list",
    },
    "cleanup": {
        "iam:ListAttachedRolePolicies": "teardown re-reads a role when IAM says DeleteConflict",
        "iam:ListInstanceProfilesForRole": "teardown re-reads a role when IAM says DeleteConflict",
        "iam:ListRolePolicies": "teardown re-reads a role when IAM says DeleteConflict",
        "iam:ListServiceSpecificCredentials": "teardown of a user IAM refuses (DeleteConflict)",
        "iam:DeleteServiceSpecificCredential": "teardown of a user IAM refuses (DeleteConflict)",
        "iam:DeleteSSHPublicKey": "teardown of a user someone gave an SSH key",
        "iam:DeleteSigningCertificate": "teardown of a user someone gave a signing certificate",
        "iam:DetachRolePolicy": "teardown of a role someone attached a policy to since apply",
        "iam:DetachUserPolicy": "teardown of a user someone attached a policy to since apply",
        "iam:RemoveUserFromGroup": "teardown of a user someone added to a group since apply",
        "iam:UntagUser": "release of a quarantined user",
    },
    "restore": {
        "iam:UntagUser": "a rerun that lifts a user's quarantine mark",
    },
    "discover": {},
}
@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[Call]:
    """One run of every flow for the whole module (it takes ~20 s)."""
    import os

    from support.aws import seed

    from workload_ids.sandbox.aws import in_process_aws
    base = tmp_path_factory.mktemp("flows")
    old = os.getcwd()
    work = base / "cwd"
    work.mkdir()
    os.chdir(work)
    mp = pytest.MonkeyPatch()
    # The module-scoped fixture runs before conftest's per-test one that clears CI, and
    # the CI machine sets CI=true (which refuses a working-directory config).
    mp.delenv("CI", raising=False)
    try:
        import boto3
        with in_process_aws():
            iam = boto3.client("iam", region_name="us-east-1")
            seed(iam)

            def manifests(files: dict[str, str]) -> Any:
                folder = base / "manifests"
                folder.mkdir(exist_ok=True)
                for name, text in files.items():
                    (folder / name).write_text(text, encoding="utf-8")
                return folder
            return run_all_flows(iam, manifests, mp).calls
    finally:
        mp.undo()
        os.chdir(old)


POLICIES = render(Config(ConfigFile(), __import__("pathlib").Path("."), None), ACCOUNT)


@pytest.mark.parametrize("identity", ["apply", "rotate", "cleanup", "restore", "discover"])
def test_every_call_a_command_makes_is_allowed_by_its_identity(recorded: list[Call], identity: str) -> None:
    policy = next(i.policy for i in POLICIES.identities if i.identity == identity)
    mine = [c for c in recorded if c.identity == identity]
    assert len(mine) > 10, "the flows recorded too little to prove anything"
    refused = sorted({f"{c.service}:{c.operation} on {_arn(c)} ({_context(c)})"
                      for c in mine if not allowed(policy, c)})
    assert refused == [], "\n".join(refused)


@pytest.mark.parametrize("identity", ["apply", "rotate", "cleanup", "restore", "discover"])
def test_each_policy_allows_nothing_its_command_does_not_use(recorded: list[Call], identity: str) -> None:
    policy = next(i.policy for i in POLICIES.identities if i.identity == identity)
    used = {f"{c.service}:{c.operation}" for c in recorded if c.identity == identity}
    unused = granted(policy) - used
    assert unused == set(EXTRAS[identity]), (
        f"granted but never called: {sorted(unused - set(EXTRAS[identity]))}; "
        f"listed as extras but called or not granted: {sorted(set(EXTRAS[identity]) - unused)}")


def test_a_call_outside_the_identity_is_refused_by_the_evaluator(recorded: list[Call]) -> None:
    """The evaluator itself refuses what it must (else the tests above prove nothing)."""
    apply_policy = next(i.policy for i in POLICIES.identities if i.identity == "apply")
    create = next(c for c in recorded if c.identity == "apply" and c.operation == "CreateRole")
    assert allowed(apply_policy, create)
    unbounded = Call("apply", "iam", "CreateRole", {**create.params, "PermissionsBoundary": None}, None)
    assert not allowed(apply_policy, unbounded)
    elsewhere = Call("apply", "iam", "CreateRole", {**create.params, "Path": "/admins/"}, None)
    assert not allowed(apply_policy, elsewhere)
    removal = Call("apply", "iam", "DeleteRolePermissionsBoundary", {"RoleName": "wid_prod_x"}, None)
    assert not allowed(apply_policy, removal)
    foreign_key = Call("rotate", "iam", "CreateAccessKey", {"UserName": "wid_prod_x"},
                       {"arn": f"arn:aws:iam::{ACCOUNT}:user/workload-ids/wid_prod_x", "tags": {}})
    rotate_policy = next(i.policy for i in POLICIES.identities if i.identity == "rotate")
    assert not allowed(rotate_policy, foreign_key)


def test_the_discover_identity_writes_nothing_and_no_identity_marks_a_role_outside_the_path() -> None:
    """discover reads every role of the account (that is its job) and may write nothing;
    adopt --apply's marker on a role outside aws.rolePath is granted to no tool identity
    (an administrator runs it): a tag write on any role would let a pipeline vouch for
    roles it was never shown."""
    discover = next(i.policy for i in POLICIES.identities if i.identity == "discover")
    assert all(a.split(":")[1].startswith(("Get", "List", "Generate")) for a in granted(discover)), \
        sorted(granted(discover))
    legacy = {"arn": f"arn:aws:iam::{ACCOUNT}:role/legacy/Legacy.Reader", "tags": {}}
    tags = [{"Key": "workload-ids:managed-by", "Value": "workload-ids"}]
    for tool in POLICIES.identities:
        for operation in ("TagRole", "UntagRole", "PutRolePolicy", "UpdateAssumeRolePolicy"):
            call = Call(tool.identity, "iam", operation, {"RoleName": "Legacy.Reader", "Tags": tags}, legacy)
            assert not allowed(tool.policy, call), (tool.identity, operation)


def test_discover_reaches_other_accounts_only_through_the_configured_roles() -> None:
    """With targets: the organization's member role and each roleArn, and listing the
    organization only when an entry names one; without targets, no sts:AssumeRole."""
    from pathlib import Path
    discover = next(i.policy for i in POLICIES.identities if i.identity == "discover")
    assert "sts:AssumeRole" not in granted(discover) and "organizations:ListAccounts" not in granted(discover)
    config = Config(ConfigFile.model_validate({"targets": {"aws": [
        {"organization": {"role": "OrgReader"}},
        {"account": "210987654321", "roleArn": "arn:aws:iam::210987654321:role/audit/Reader"}]}}),
        Path("."), None)
    policy = next(i.policy for i in render(config, ACCOUNT).identities if i.identity == "discover")
    assume = [s for s in policy["Statement"] if s["Sid"] == "ReachTargetAccounts"]
    assert assume == [{"Sid": "ReachTargetAccounts", "Effect": "Allow", "Action": "sts:AssumeRole",
                       "Resource": ["arn:aws:iam::210987654321:role/audit/Reader",
                                    "arn:aws:iam::*:role/OrgReader"]}]
    assert "organizations:ListAccounts" in granted(policy)
    for name, policy_of in (("apply", "apply"), ("cleanup", "cleanup")):
        other = next(i.policy for i in render(config, ACCOUNT).identities if i.identity == policy_of)
        assert "sts:AssumeRole" not in granted(other), name
    from parliament import analyze_policy_string
    assert analyze_policy_string(json.dumps(policy), include_community_auditors=False).findings == []
