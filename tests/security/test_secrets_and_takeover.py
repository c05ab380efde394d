"""Issue 14 items 2 and 3 (review H4, H6): a key goes only into a secret that is provably
ours and open to nobody else, and one team cannot take over another team's identity by
declaring the same environment and name. Real boto3 against moto, the real Google SDK
against our GCP emulators; every end state is read back from the cloud."""

# ruff: noqa: F811  (the shared fixtures clouds/emulated are imported, then named as arguments)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.attack_clouds import (  # noqa: F401  (clouds, emulated: fixtures)
    CONTAINER,
    CONTROLS,
    _run,
    clouds,
    emulated,
    github,
    manifest,
    template,
)
from support.aws import SECRET, USER
from support.cli import run_cli
from support.gcp import keys as gcp_keys
from support.secret_stores import (  # noqa: F401  (aws_vendor, gcp_local: fixtures)
    GCP_SECRET,
    MALLORY,
    OPEN_TO_MALLORY,
    _aws_keys,
    _bind,
    _sm,
    _versions,
    aws_vendor,
    gcp_local,
)

# --- H6 on AWS ---------------------------------------------------------------------------

def test_aws_pre_created_secret_with_a_planted_policy_gets_no_key(aws: Any, aws_vendor: Path) -> None:
    sm = _sm()
    sm.create_secret(Name=SECRET, Description="looks helpful")
    sm.put_resource_policy(SecretId=SECRET, ResourcePolicy=OPEN_TO_MALLORY)
    result = run_cli("apply", "--auto-approve", str(aws_vendor))
    assert result.code == 1, result.out + result.err
    assert f"secret {SECRET} was not made by workload-ids" in result.out + result.err
    assert "no key was issued" in result.out + result.err
    assert "delete it" in result.out + result.err
    assert _aws_keys(aws) == []
    assert _versions() == {}  # nothing stored
    planted = sm.get_resource_policy(SecretId=SECRET)["ResourcePolicy"]
    assert json.loads(planted) == json.loads(OPEN_TO_MALLORY)
    assert sm.describe_secret(SecretId=SECRET).get("Tags", []) == []  # not adopted, not tagged


def test_aws_pre_created_secret_without_our_marker_is_refused(aws: Any, aws_vendor: Path) -> None:
    _sm().create_secret(Name=SECRET, Tags=[{"Key": "team", "Value": "mallory"}])
    result = run_cli("apply", "--auto-approve", str(aws_vendor))
    assert result.code == 1
    assert "was not made by workload-ids" in result.out + result.err
    assert _aws_keys(aws) == [] and _versions() == {}


def test_aws_forged_marker_with_a_policy_or_a_foreign_kms_key_is_refused(aws: Any, aws_vendor: Path) -> None:
    """Tags are easy to copy: the marker alone is not enough."""
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    sm = _sm()
    tags = sm.describe_secret(SecretId=SECRET)["Tags"]
    [first] = _aws_keys(aws)
    # Someone opens our own secret to themselves: the next rotation refuses to store there.
    sm.put_resource_policy(SecretId=SECRET, ResourcePolicy=OPEN_TO_MALLORY)
    result = run_cli("rotate", "--now", "vendor-sync", str(aws_vendor))
    assert result.code == 1, result.out + result.err
    assert "has a resource policy that grants access" in result.out + result.err
    assert _aws_keys(aws) == [first]
    # A secret under another name with our tags copied and a KMS key the attacker holds.
    kms = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    sm.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
    aws.delete_access_key(UserName=USER, AccessKeyId=first)
    sm.create_secret(Name=SECRET, Tags=tags, KmsKeyId=kms)
    result = run_cli("apply", "--auto-approve", str(aws_vendor))
    assert result.code == 1
    assert f"is encrypted with KMS key {kms}" in result.out + result.err
    assert _aws_keys(aws) == [] and _versions() == {}


def test_aws_new_secret_is_deny_by_default_and_still_rotates(aws: Any, aws_vendor: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    policy = json.loads(_sm().get_resource_policy(SecretId=SECRET)["ResourcePolicy"])
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert "secretsmanager:GetSecretValue" in statement["Action"]
    allowed = statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert "arn:aws:iam::123456789012:root" in allowed and MALLORY not in allowed
    [first] = _aws_keys(aws)
    assert run_cli("rotate", "--now", "vendor-sync", str(aws_vendor)).code == 0  # ours: adopted
    assert len(_aws_keys(aws)) == 2 and first in _aws_keys(aws)


def test_aws_configured_readers_are_allowed_by_the_policy(aws: Any, aws_vendor: Path) -> None:
    reader = "arn:aws:iam::123456789012:role/external-secrets"
    Path("workload-ids.yaml").write_text("credentials: {verify: {interval: 0s}, "
                                         f"secretReaders: ['{reader}']}}\n")
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    policy = json.loads(_sm().get_resource_policy(SecretId=SECRET)["ResourcePolicy"])
    assert reader in policy["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]


def test_aws_crash_between_create_and_lock_down_converges(aws: Any, aws_vendor: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from support.contract import _after_lease
    from support.library import _rotate

    from workload_ids.calls import CallSeam, FailOperation, Killed
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    _sm().delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
    for key in _aws_keys(aws):
        aws.delete_access_key(UserName=USER, AccessKeyId=key)
    seam = CallSeam()
    seam.inject(FailOperation("secretsmanager.put_resource_policy", "kill"))
    with pytest.raises(Killed):
        _rotate([aws_vendor], seam)
    assert "ResourcePolicy" not in _sm().get_resource_policy(SecretId=SECRET)
    assert _aws_keys(aws) == []  # the policy comes before any key
    # The killed run still holds the workload's lease: the rerun comes after it ran out,
    # as it would in real life (rather than waiting out the lease in real time).
    _after_lease(monkeypatch)
    result = run_cli("apply", "--auto-approve", str(aws_vendor))
    assert result.code == 0, result.out + result.err
    assert len(_aws_keys(aws)) == 1
    policy = json.loads(_sm().get_resource_policy(SecretId=SECRET)["ResourcePolicy"])
    assert policy["Statement"][0]["Effect"] == "Deny"


# --- H6 on GCP ---------------------------------------------------------------------------


def test_gcp_pre_created_secret_with_a_binding_gets_no_key(gcp_local: tuple[Any, Path]) -> None:
    gcp, folder = gcp_local
    iam, _, sm, _ = gcp.emulators
    client = sm.client()
    client.create_secret(request={"parent": "projects/acme-prod", "secret_id": GCP_SECRET.rsplit("/", 1)[1],
                                  "secret": {"replication": {"automatic": {}}}})
    _bind(client, "user:mallory@example.com")
    result = run_cli("apply", "--auto-approve", str(folder))
    assert result.code == 1, result.out + result.err
    assert "was not made by workload-ids" in result.out + result.err
    assert gcp_keys(iam) == {}
    assert list(client.list_secret_versions(request={"parent": GCP_SECRET})) == []
    assert dict(client.get_secret(name=GCP_SECRET).annotations) == {}  # not adopted


def test_gcp_our_secret_with_an_extra_binding_gets_no_new_key(gcp_local: tuple[Any, Path]) -> None:
    gcp, folder = gcp_local
    iam, _, sm, _ = gcp.emulators
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    [first] = gcp_keys(iam)
    client = sm.client()
    assert list(client.get_iam_policy(request={"resource": GCP_SECRET}).bindings) == []  # we add none
    _bind(client, "user:mallory@example.com")
    result = run_cli("rotate", "--now", "vendor-sync", str(folder))
    assert result.code == 1, result.out + result.err
    assert "has IAM bindings for user:mallory@example.com" in result.out + result.err
    assert list(gcp_keys(iam)) == [first]
    client.set_iam_policy(request={"resource": GCP_SECRET, "policy": {"bindings": []}})
    assert run_cli("rotate", "--now", "vendor-sync", str(folder)).code == 0  # ours again: works
    assert len(gcp_keys(iam)) == 2


# --- H4: takeover by name, on every cloud ------------------------------------------------

def _team_b(provider: str) -> str:
    """Team B's own manifest: team A's environment and name, B's owner, repository and access."""
    access = {"aws": template("queue.consume", "arn:aws:sqs:eu-west-1:123456789012:evil"),
              "gcp": template("object-storage.write", "projects/_/buckets/evil-drop"),
              "azure": template("object-storage.write", CONTAINER)}[provider]
    evil = github(pool=provider == "gcp").replace("acme/sneaky", "acme/evil-tools")
    return manifest(provider, access, evil).replace("owner: team-a", "owner: team-evil")


def _identity_state(provider: str, aws: Any, emulated: dict[str, Any]) -> str:
    """Everything the identity is: trust, permissions, owner (read from the cloud)."""
    if provider == "aws":
        role = aws.get_role(RoleName="wid_prod_sneaky")["Role"]
        inline = {p: aws.get_role_policy(RoleName="wid_prod_sneaky", PolicyName=p)["PolicyDocument"]
                  for p in aws.list_role_policies(RoleName="wid_prod_sneaky")["PolicyNames"]}
        attached = aws.list_attached_role_policies(RoleName="wid_prod_sneaky")["AttachedPolicies"]
        return repr((role["AssumeRolePolicyDocument"], sorted((t["Key"], t["Value"]) for t in role["Tags"]),
                     inline, attached))
    if provider == "gcp":
        iam, rm, _, rp = emulated["gcp"].emulators
        return repr((iam.backend.accounts, iam.backend.roles, rm.policy("acme-prod"),
                     {r: rp.policy(r) for r in rp.resources()}))
    arm = emulated["azure"].arm
    return repr((arm._identities, arm._role_definitions, arm._role_assignments, arm._resources))


def _owner(provider: str, aws: Any, emulated: dict[str, Any]) -> str:
    state = _identity_state(provider, aws, emulated)
    return "team-evil" if "team-evil" in state else "team-a" if "team-a" in state else "?"


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_another_team_cannot_take_over_an_identity_by_name(provider: str, clouds: dict[str, Any],
                                                           aws: Any, emulated: dict[str, Any],
                                                           tmp_path: Path) -> None:
    cloud = clouds[provider]
    first, _ = _run(cloud, CONTROLS[provider], tmp_path)
    assert first.code == 0, first.err
    before = _identity_state(provider, aws, emulated)
    taken, path = _run(cloud, _team_b(provider), tmp_path)
    assert taken.code == 1, taken.out + taken.err
    assert f"{path}:" in taken.err  # positioned at the manifest's owner
    assert "belongs to owner team-a, and this manifest says owner team-evil" in taken.err
    assert "guardrails.approvedTransfers" in taken.err and "nothing was changed" in taken.err
    assert _identity_state(provider, aws, emulated) == before  # trust, permissions, owner as they were
    # Team A itself still applies.
    assert _run(cloud, CONTROLS[provider], tmp_path)[0].code == 0


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_an_approved_transfer_applies(provider: str, clouds: dict[str, Any], aws: Any,
                                      emulated: dict[str, Any], tmp_path: Path) -> None:
    cloud = clouds[provider]
    assert _run(cloud, CONTROLS[provider], tmp_path)[0].code == 0
    cloud = type(cloud)(cloud.config + "guardrails:\n  approvedTransfers:\n    - {workload: prod/sneaky, "
                        "from: team-a, to: team-evil, reason: \"ticket PLAT-42: tools team owns it now\"}\n",
                        cloud.holdings)
    moved, _ = _run(cloud, _team_b(provider), tmp_path)
    assert moved.code == 0, moved.out + moved.err
    assert _owner(provider, aws, emulated) == "team-evil"
    # The approval names one direction only: moving it back needs its own.
    back, _ = _run(cloud, CONTROLS[provider], tmp_path)
    assert back.code == 1 and "belongs to owner team-evil" in back.err


def test_a_rewritten_owner_tag_does_not_open_a_takeover(clouds: dict[str, Any], aws: Any,
                                                        emulated: dict[str, Any], tmp_path: Path) -> None:
    """Someone with iam:TagRole sets the owner tag to team B, then team B applies its own
    manifest: the audit log, not the tag, says whose the identity is, so it is refused;
    and team A's next apply repairs the tag as drift."""
    cloud = clouds["aws"]
    cloud = type(cloud)(cloud.config + "audit:\n  path: audit.jsonl\n", cloud.holdings)
    assert _run(cloud, CONTROLS["aws"], tmp_path)[0].code == 0
    aws.tag_role(RoleName="wid_prod_sneaky", Tags=[{"Key": "workload-ids:owner", "Value": "team-evil"}])
    before = _identity_state("aws", aws, emulated)
    taken, _ = _run(cloud, _team_b("aws"), tmp_path)
    assert taken.code == 1, taken.out + taken.err
    assert "belongs to owner team-a, and this manifest says owner team-evil" in taken.err
    assert _identity_state("aws", aws, emulated) == before
    assert _run(cloud, CONTROLS["aws"], tmp_path)[0].code == 0
    assert _owner("aws", aws, emulated) == "team-a"


# --- the proof taken from the run's own listing (rotate: no DescribeSecret) ---------------

def _stale_cycle(aws_vendor: Path) -> Any:
    """A rotation of vendor-sync whose view of the secret is the batched listing, read
    before the secret changes under it (as a fleet run's ListSecrets is)."""
    from workload_ids.calls import CallSeam
    from workload_ids.clouds import connect
    from workload_ids.config import load_config
    from workload_ids.keys.lifecycle import lifecycle
    from workload_ids.validate import validate
    config = load_config()
    seam = CallSeam(sleep=lambda s: None)
    [compiled] = validate([aws_vendor], config).compiled
    cloud = connect("aws", config, seam)
    cycle = lifecycle(cloud.desired(compiled), cloud)
    listed = cloud.store_for(compiled.target).describe_many("workload-ids/")
    assert listed[SECRET].kms_key == "" and listed[SECRET].address.startswith("arn:aws:secretsmanager:")
    cycle.prefetched = listed[SECRET]
    return cycle


def test_aws_secret_replaced_after_the_listing_is_proven_afresh(aws: Any, aws_vendor: Path) -> None:
    """Deleted and made again with our tags copied and the attacker's KMS key, after the
    listing said "ours, Secrets Manager's key": the new ARN sends the proof back to a
    fresh read, which refuses."""
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    cycle = _stale_cycle(aws_vendor)
    sm = _sm()
    tags = sm.describe_secret(SecretId=SECRET)["Tags"]
    [first] = _aws_keys(aws)
    kms = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    sm.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
    sm.create_secret(Name=SECRET, Tags=tags, KmsKeyId=kms)
    report = cycle.advance(emergency=True)
    assert report.error and f"is encrypted with KMS key {kms}" in report.error, report.error
    assert "no key was issued" in report.error
    assert _aws_keys(aws) == [first] and _versions() == {}


def test_aws_policy_opened_after_the_listing_is_still_refused(aws: Any, aws_vendor: Path) -> None:
    """The listing cannot show a resource policy: it is read under the lock, every time."""
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    cycle = _stale_cycle(aws_vendor)
    [first] = _aws_keys(aws)
    before = _versions()
    _sm().put_resource_policy(SecretId=SECRET, ResourcePolicy=OPEN_TO_MALLORY)
    report = cycle.advance(emergency=True)
    assert report.error and "has a resource policy that grants access" in report.error, report.error
    assert _aws_keys(aws) == [first] and _versions() == before
