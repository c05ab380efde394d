"""Joiner and mover on AWS: real boto3 against moto; assertions read IAM back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.aws import ACCOUNT, PAYMENTS, workload
from support.cli import run_cli
from support.trust import TEST_TRUST

ROLE = "wid_prod_payments-api"

EXPECTED_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "ObjectStorageRead0", "Effect": "Allow",
         "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
         "Resource": "arn:aws:s3:::acme-invoices",
         # S3 ARNs carry no account: the bucket must be the workload account's own.
         "Condition": {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}},
        {"Sid": "ObjectStorageRead1", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": "arn:aws:s3:::acme-invoices/*",
         "Condition": {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}},
        {"Sid": "QueueConsume0", "Effect": "Allow",
         "Action": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
         "Resource": "arn:aws:sqs:eu-west-1:123456789012:payment-events"},
        {"Sid": "Raw0", "Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"],
         "Resource": "arn:aws:dynamodb:eu-west-1:123456789012:table/payments"},
    ],
}

EKS = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7"
GH = "token.actions.githubusercontent.com"


def _policy(iam, role: str = ROLE) -> dict:
    return iam.get_role_policy(RoleName=role, PolicyName="workload-ids")["PolicyDocument"]


def _write(manifests, text: str = PAYMENTS, name: str = "payments.yaml") -> Path:
    return manifests({name: text}) / name


def test_joiner_creates_exactly_the_manifest(aws, manifests):
    path = _write(manifests)
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 0, result.err

    role = aws.get_role(RoleName=ROLE)["Role"]
    assert role["Path"] == "/workload-ids/"
    assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/workload-ids/{ROLE}"
    assert role["MaxSessionDuration"] == 3600
    assert role["Description"] == "Public payments API"
    tags = {t["Key"]: t["Value"] for t in role["Tags"]}
    assert set(tags) == {"workload-ids:managed-by", "workload-ids:workload", "workload-ids:owner",
                         "workload-ids:environment", "workload-ids:manifest-sha256",
                         "workload-ids:source", "workload-ids:mac"}
    assert tags["workload-ids:managed-by"] == "workload-ids"
    # No config file and no git work tree: relative to the working directory.
    assert tags["workload-ids:source"] == "../manifests/payments.yaml"
    assert len(tags["workload-ids:mac"]) == 64
    assert tags["workload-ids:workload"] == "payments-api"
    assert tags["workload-ids:owner"] == "team-payments"
    assert tags["workload-ids:environment"] == "prod"
    assert len(tags["workload-ids:manifest-sha256"]) == 64

    assert _policy(aws) == EXPECTED_POLICY
    assert aws.list_role_policies(RoleName=ROLE)["PolicyNames"] == ["workload-ids"]
    assert aws.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"] == []

    trust = role["AssumeRolePolicyDocument"]
    by_sid = {s["Sid"]: s for s in trust["Statement"]}
    assert len(by_sid) == 3
    services = by_sid["AwsServices"]
    assert services["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert services["Action"] == "sts:AssumeRole"
    assert services["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    oidc = {s["Principal"]["Federated"]: s for s in trust["Statement"] if "Federated" in s["Principal"]}
    github = oidc[f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GH}"]
    assert github["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert github["Condition"] == {"StringEquals": {
        f"{GH}:aud": "sts.amazonaws.com", f"{GH}:sub": "repo:acme/payments:ref:refs/heads/main"}}
    eks = oidc[f"arn:aws:iam::{ACCOUNT}:oidc-provider/{EKS}"]
    assert eks["Condition"] == {"StringEquals": {
        f"{EKS}:aud": "sts.amazonaws.com", f"{EKS}:sub": "system:serviceaccount:payments:payments-api"}}

    assert f"role_arn=arn:aws:iam::{ACCOUNT}:role/workload-ids/{ROLE}" in result.out


def test_apply_is_idempotent_and_detailed_exitcode(aws, manifests):
    path = _write(manifests)
    before = run_cli("plan", "--detailed-exitcode", str(path))
    assert before.code == 2, before.err
    assert "create role wid_prod_payments-api" in before.out
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    after = run_cli("plan", "--detailed-exitcode", "--output", "json", str(path))
    assert after.code == 0, after.err
    doc = json.loads(after.out)
    assert doc["changes"] == []
    assert doc["summary"]["workloads"] == 1 and doc["summary"]["unchanged"] == 1
    again = run_cli("apply", "--auto-approve", str(path))
    assert again.code == 0 and "0 workload(s) changed" in again.out


def test_per_service_plan_reads_at_most_six_calls(aws, manifests):
    path = _write(manifests)
    run_cli("apply", "--auto-approve", str(path))
    doc = json.loads(run_cli("plan", "--output", "json", str(path)).out)
    # Five reads of the role and the account, and the marker signing key (once per run).
    assert doc["summary"]["apiCalls"] <= 6


def _plan_calls(path: Path) -> tuple[int, dict[str, int]]:
    from workload_ids.calls import CallSeam
    from workload_ids.config import load_config
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    config = load_config()
    checked = validate([path], config)
    checked.raise_for_errors()
    seam = CallSeam()
    plan = build_plan(checked.compiled, config, seam)
    return len(plan.changes), dict(seam.stats.calls)


def test_per_service_plan_of_an_unchanged_role_reads_five_calls(aws, manifests):
    """The benchmark's target (at most 5): the role, its policies and the signing key. The
    account's OIDC providers are asked only when a trust policy is to be written."""
    path = _write(manifests)
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    changes, calls = _plan_calls(path)
    assert changes == 0
    assert calls == {"aws:secretsmanager.get_secret_value": 1, "aws:iam.get_role": 1,
                     "aws:iam.list_role_policies": 1, "aws:iam.get_role_policy": 1,
                     "aws:iam.list_attached_role_policies": 1}


def test_a_trust_change_still_needs_the_issuers_oidc_provider(aws, manifests):
    """The OIDC check moved after the read, not away: any trust policy the plan writes
    (here a changed subject) is refused while its issuer has no IAM identity provider."""
    path = _write(manifests)
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    trust = aws.get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"]
    aws.delete_open_id_connect_provider(
        OpenIDConnectProviderArn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GH}")
    # Nothing to write: nothing to check (the role's trust is what apply left).
    assert run_cli("plan", "--detailed-exitcode", str(path)).code == 0
    path.write_text(PAYMENTS.replace("ref: refs/heads/main", "ref: refs/heads/release"))
    for verb in (("plan",), ("apply", "--auto-approve")):
        result = run_cli(*verb, str(path))
        assert result.code == 1, result.out + result.err
        assert f"no IAM OIDC identity provider for https://{GH}" in result.err
        assert "create-open-id-connect-provider" in result.err and "Traceback" not in result.err
    assert aws.get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"] == trust


def test_policy_json_is_byte_identical_across_runs(aws, manifests):
    from workload_ids.config import load_config
    from workload_ids.providers.aws.render import desired_identity
    from workload_ids.validate import validate
    path = _write(manifests)
    config = load_config()
    first = desired_identity(validate([path], config).compiled[0], config).documents
    second = desired_identity(validate([path], config).compiled[0], config).documents
    assert first == second
    assert first["policy"] == json.dumps(EXPECTED_POLICY, separators=(",", ":"))


def test_mover_removes_old_privileges_and_grants_new(aws, manifests):
    path = _write(manifests)
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    moved = PAYMENTS.replace(
        "    - template: queue.consume\n      resources:\n"
        "        - arn:aws:sqs:eu-west-1:123456789012:payment-events\n",
        "    - template: topic.publish\n      resources:\n"
        "        - arn:aws:sns:eu-west-1:123456789012:payment-completed\n"
    ).replace("ref: refs/heads/main", "environment: production")
    path.write_text(moved)
    plan = run_cli("plan", "--output", "json", str(path))
    doc = json.loads(plan.out)
    actions = [c["action"] for c in doc["changes"]]
    assert actions == ["update-trust", "update-permissions", "update-tags"]
    perms = doc["changes"][1]["permissions"]
    removed = {(r["action"], r["resource"]) for r in perms["removed"]}
    added = {(r["action"], r["resource"]) for r in perms["added"]}
    queue = "arn:aws:sqs:eu-west-1:123456789012:payment-events"
    assert ("sqs:ReceiveMessage", queue) in removed
    assert ("sns:Publish", "arn:aws:sns:eu-west-1:123456789012:payment-completed") in added
    trust = doc["changes"][0]["trust"]
    assert {r["subject"] for r in trust["removed"]} == {"repo:acme/payments:ref:refs/heads/main"}
    assert {r["subject"] for r in trust["added"]} == {"repo:acme/payments:environment:production"}
    text = run_cli("plan", str(path)).out
    assert f"- sqs:ReceiveMessage  {queue}" in text

    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    policy = json.dumps(_policy(aws))
    assert "sqs:" not in policy and "payment-events" not in policy
    assert "sns:Publish" in policy
    trust_doc = json.dumps(aws.get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"])
    assert "environment:production" in trust_doc and "refs/heads/main" not in trust_doc
    assert run_cli("plan", "--detailed-exitcode", str(path)).code == 0


def test_owner_change_retags(aws, manifests):
    path = _write(manifests)
    run_cli("apply", "--auto-approve", str(path))
    path.write_text(PAYMENTS.replace("owner: team-payments", "owner: team-platform"))
    refused = run_cli("plan", str(path))  # a manifest alone cannot move an identity (H4)
    assert refused.code == 1 and "belongs to owner team-payments" in refused.err
    Path("workload-ids.yaml").write_text(
        "guardrails:\n  approvedTransfers:\n    - {workload: prod/payments-api, from: team-payments, "
        "to: team-platform, reason: \"reorg: platform owns payments\"}\n" + TEST_TRUST)
    doc = json.loads(run_cli("plan", "--output", "json", str(path)).out)
    assert [c["action"] for c in doc["changes"]] == ["update-tags"]
    assert doc["changes"][0]["tags"]["workload-ids:owner"] == {"from": "team-payments",
                                                              "to": "team-platform"}
    run_cli("apply", "--auto-approve", str(path))
    tags = {t["Key"]: t["Value"] for t in aws.list_role_tags(RoleName=ROLE)["Tags"]}
    assert tags["workload-ids:owner"] == "team-platform"


def test_drift_on_our_role_is_removed(aws, manifests):
    path = _write(manifests)
    run_cli("apply", "--auto-approve", str(path))
    aws.put_role_policy(RoleName=ROLE, PolicyName="hand-added",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    managed = aws.create_policy(PolicyName="ReadOnlyAccess", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
    aws.attach_role_policy(RoleName=ROLE, PolicyArn=managed["Policy"]["Arn"])
    aws.put_role_policy(RoleName=ROLE, PolicyName="workload-ids",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}))
    doc = json.loads(run_cli("plan", "--output", "json", str(path)).out)
    assert [c["action"] for c in doc["changes"]] == [
        "update-permissions", "remove-foreign-policy", "remove-foreign-policy"]
    assert {c.get("policy") for c in doc["changes"][1:]} == {
        "inline:hand-added", f"attached:arn:aws:iam::{ACCOUNT}:policy/ReadOnlyAccess"}
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    assert aws.list_role_policies(RoleName=ROLE)["PolicyNames"] == ["workload-ids"]
    assert aws.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"] == []
    assert _policy(aws) == EXPECTED_POLICY


def test_role_without_our_tags_is_never_modified(aws, manifests):
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    aws.create_role(RoleName=ROLE, AssumeRolePolicyDocument=trust, Description="someone else's")
    path = _write(manifests)
    for verb in (("plan",), ("apply", "--auto-approve")):
        result = run_cli(*verb, str(path))
        assert result.code == 1
        assert "wid_prod_payments-api" in result.err and "ownership tags" in result.err
        assert "Traceback" not in result.err
    role = aws.get_role(RoleName=ROLE)["Role"]
    assert role["Description"] == "someone else's"
    assert "Tags" not in role or role["Tags"] == []
    assert aws.list_role_policies(RoleName=ROLE)["PolicyNames"] == []


def test_missing_oidc_provider_is_a_plan_error(bare_aws, manifests):
    path = _write(manifests)
    result = run_cli("plan", str(path))
    assert result.code == 1
    lines = result.err.replace(str(path.parent) + "/", "").splitlines()
    assert lines[0].startswith(f"{path.name}:16:9: account 123456789012 has no IAM OIDC identity")
    assert lines[1].startswith(f"{path.name}:19:9: account 123456789012 has no IAM OIDC identity")
    assert "no IAM OIDC identity provider for https://token.actions.githubusercontent.com" in result.err
    assert "create-open-id-connect-provider" in result.err
    assert run_cli("apply", "--auto-approve", str(path)).code == 1
    assert bare_aws.list_roles(PathPrefix="/workload-ids/")["Roles"] == []


def test_other_account_credentials_are_refused(aws, manifests):
    text = PAYMENTS.replace("123456789012", "210987654321")
    path = _write(manifests, text)
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 1
    assert "reach account 123456789012" in result.err and "210987654321" in result.err
    assert aws.list_roles(PathPrefix="/workload-ids/")["Roles"] == []


def test_removed_manifest_is_listed_never_deleted(aws, manifests):
    folder = manifests({"a.yaml": workload("svc-a"), "b.yaml": workload("svc-b")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "b.yaml").unlink()
    doc = json.loads(run_cli("plan", "--output", "json", str(folder)).out)
    assert doc["changes"] == []
    assert doc["noManifest"] == [{"provider": "aws", "target": ACCOUNT, "identity": "wid_prod_svc-b",
                                  "workload": "svc-b", "owner": "team-a"}]
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    aws.get_role(RoleName="wid_prod_svc-b")  # still there


def test_fleet_plan_reads_the_account_in_batches(aws, manifests):
    from workload_ids.calls import CallSeam
    from workload_ids.config import load_config
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    folder = manifests({f"w{i}.yaml": workload(f"svc-{i:03d}") for i in range(30)})
    config = load_config()
    seam = CallSeam()
    checked = validate([folder], config)
    plan = build_plan(checked.compiled, config, seam, fleet=True)
    assert len(plan.changes) == 30
    # get_policy: once per account, because roles are to be created with the boundary.
    assert set(seam.stats.calls) == {"aws:iam.list_open_id_connect_providers",
                                     "aws:iam.get_account_authorization_details",
                                     "aws:iam.list_roles", "aws:iam.get_policy",
                                     "aws:secretsmanager.get_secret_value"}
    assert seam.stats.calls["aws:iam.get_policy"] == 1


def test_apply_without_approval_in_a_pipeline_refuses(aws, manifests):
    path = _write(manifests)
    result = run_cli("apply", str(path))
    assert result.code == 1
    assert "--auto-approve" in result.err
    assert aws.list_roles(PathPrefix="/workload-ids/")["Roles"] == []


def test_github_output_and_json(aws, manifests, tmp_path, monkeypatch):
    out_file = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out_file))
    path = _write(manifests)
    result = run_cli("apply", "--auto-approve", "--output", "json", str(path))
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    arn = f"arn:aws:iam::{ACCOUNT}:role/workload-ids/{ROLE}"
    assert doc["results"][0]["outputs"]["role_arn"] == arn
    assert doc["plan"]["changes"][0]["action"] == "create"
    lines = out_file.read_text().splitlines()
    assert f"role_arn={arn}" in lines
    assert f"identity={ROLE}" in lines


def test_against_moto_server(aws_server, manifests):
    path = _write(manifests)
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    assert run_cli("plan", "--detailed-exitcode", str(path)).code == 0
    assert aws_server.get_role(RoleName=ROLE)["Role"]["Path"] == "/workload-ids/"
    inv = json.loads(run_cli("inventory", "--output", "json").out)
    assert [r["identity"] for r in inv["identities"]] == [ROLE]


def test_inventory_marks_undeclared(aws, manifests):
    folder = manifests({"a.yaml": workload("svc-a"), "b.yaml": workload("svc-b")})
    run_cli("apply", "--auto-approve", str(folder))
    (folder / "b.yaml").unlink()
    result = run_cli("inventory", str(folder))
    assert result.code == 0, result.err
    lines = {line.split()[0]: line for line in result.out.splitlines()[1:]}
    assert lines["wid_prod_svc-a"].split()[5] == "yes"
    assert lines["wid_prod_svc-b"].split()[5] == "NO"


@pytest.mark.parametrize("boundary", ["arn:aws:iam::{account}:policy/workload-boundary"])
def test_permissions_boundary_and_session_from_config(aws, manifests, tmp_path, boundary):
    config = tmp_path / "workload-ids.yaml"
    config.write_text(f"aws:\n  permissionsBoundary: \"{boundary}\"\n  maxSessionDuration: 2h\n" + TEST_TRUST)
    aws.create_policy(PolicyName="workload-boundary", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    path = _write(manifests)
    assert run_cli("apply", "--auto-approve", "--config", str(config), str(path)).code == 0
    role = aws.get_role(RoleName=ROLE)["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == \
        f"arn:aws:iam::{ACCOUNT}:policy/workload-boundary"
    assert role["MaxSessionDuration"] == 7200
    # Dropping it from config goes back to the default boundary (workload-ids bootstrap's).
    config.write_text("aws:\n  maxSessionDuration: 2h\n" + TEST_TRUST)
    doc = json.loads(run_cli("plan", "--output", "json", "--config", str(config), str(path)).out)
    assert [c["action"] for c in doc["changes"]] == ["update-boundary"]
    run_cli("apply", "--auto-approve", "--config", str(config), str(path))
    assert aws.get_role(RoleName=ROLE)["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == \
        f"arn:aws:iam::{ACCOUNT}:policy/workload-ids/wid-workload-boundary"
    # Only an explicit opt-out removes it; the deployer's own policy (bootstrap) would then
    # refuse DeleteRolePermissionsBoundary, which is the point: moto does not enforce it.
    config.write_text("aws:\n  maxSessionDuration: 2h\nguardrails:\n  requirePermissionsBoundary: false\n"
                      + TEST_TRUST)
    doc = json.loads(run_cli("plan", "--output", "json", "--config", str(config), str(path)).out)
    assert [c["action"] for c in doc["changes"]] == ["update-boundary"]
    run_cli("apply", "--auto-approve", "--config", str(config), str(path))
    assert "PermissionsBoundary" not in aws.get_role(RoleName=ROLE)["Role"]
