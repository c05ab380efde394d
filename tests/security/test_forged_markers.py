"""Review H2 (issue 14 item 1): markers and marks that anyone able to tag can write.

An identity carrying our marker outside the tool's location or naming is reported as
``forged`` and never touched; a quarantine mark the tool's enforcement (and audit log)
does not prove gets a fresh grace period instead of a deletion; a ``transferred-from``
tag without a transfer record does not stop apply repairing the owner. On AWS (moto),
GCP and Azure (our emulators through the real SDKs). Legitimate cleanup still works.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.aws import workload
from support.cli import run_cli
from support.marked_fleets import (  # noqa: F401  (gcp_keyed: a fixture)
    _START,
    AFTER_GRACE,
    CONFIG,
    DUE,
    GRACE_RESTARTS,
    OWNERS,
    PAST_MARK,
    START,
    TRUST,
    by_identity,
    gcp_keyed,
    role_tags,
)
from support.trust import TEST_TRUST

from workload_ids.audit import auditor_for
from workload_ids.calls import CallSeam
from workload_ids.clock import format_time
from workload_ids.clouds import connect
from workload_ids.config import load_config
from workload_ids.errors import ConflictError
from workload_ids.model import MARK_TAG, TRANSFERRED_FROM_TAG, decode_mark

# --- AWS -----------------------------------------------------------------------------


@pytest.fixture
def aws_fleet(aws: Any, manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    """svc-a (declared) and svc-d (applied, its manifest then removed), at START."""
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({f"{n}.yaml": workload(n) for n in ("svc-a", "svc-d")})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    (folder / "svc-d.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    yield aws, folder


def forge_role(iam: Any, name: str, path: str, *, mark: str | None = PAST_MARK) -> None:
    """A role the tool never made, given svc-d's five marker tags (and a past mark)."""
    tags = role_tags(iam, "wid_prod_svc-d")
    tags.pop(MARK_TAG, None)
    if mark:
        tags[MARK_TAG] = mark
    iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=TRUST,
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


@pytest.mark.parametrize(("name", "path", "why"), [
    ("prod-db-admin", "/", "its path / is not aws.rolePath /workload-ids/"),
    ("wid_prod_ci-deployer", "/", "its path / is not aws.rolePath /workload-ids/"),
    ("prod-db-admin", "/workload-ids/", "its name is not wid_prod_svc-d"),
    ("wid_prod_svc-e", "/workload-ids/", "its name is not wid_prod_svc-d"),
])
@pytest.mark.parametrize("mark", [PAST_MARK, None])
def test_aws_forged_marker_is_reported_and_never_touched(
        aws_fleet: tuple[Any, Path], name: str, path: str, why: str, mark: str | None) -> None:
    iam, folder = aws_fleet
    forge_role(iam, name, path, mark=mark)
    before = role_tags(iam, name)
    dry = run_cli("cleanup", str(folder), "--output", "json")
    assert dry.code == 0, dry.err
    found = by_identity(dry.out)[name]
    assert (found["status"], found["action"]) == ("forged", None)
    assert why in found["reason"] and "never touched" in found["reason"]
    text = run_cli("cleanup", str(folder))
    assert f"{name}" in text.out and "forged" in text.out
    applied = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    assert applied.code == 0, applied.err + applied.out
    assert all(r["identity"] != name for r in json.loads(applied.out)["results"])
    # Still there, untouched: no deny policy, tags as the attacker left them.
    assert iam.get_role(RoleName=name)["Role"]["Path"] == path
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == []
    assert role_tags(iam, name) == before
    # The real svc-d is quarantined as usual, and the forged one is not counted as ours.
    assert decode_mark(role_tags(iam, "wid_prod_svc-d")[MARK_TAG]).since == _START
    # Past grace, still untouched (the real one is deleted).
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    assert role_tags(iam, name) == before
    inventory = run_cli("inventory", str(folder), "--output", "json")
    assert inventory.code == 0, inventory.err
    [row] = [r for r in json.loads(inventory.out)["identities"] if r["identity"] == name]
    assert row["state"] == "forged" and why in row["forged"]
    assert "FORGED" in run_cli("inventory", str(folder)).out


def test_aws_provider_refuses_to_act_on_a_forged_identity(aws_fleet: tuple[Any, Path]) -> None:
    """The last line: even handed a forged identity, the provider changes nothing."""
    iam, _ = aws_fleet
    forge_role(iam, "prod-db-admin", "/")
    cloud = connect("aws", load_config(), CallSeam())
    provider = cloud.leavers
    [forged] = [o for o in cloud.identities.observe_scope("123456789012") if o.name == "prod-db-admin"]
    assert forged.forged
    mark = decode_mark(PAST_MARK)
    for act in (lambda: provider.quarantine(forged, mark), lambda: provider.release(forged, mark),
                lambda: provider.transfer(forged, "bob"), lambda: provider.delete(forged)):
        with pytest.raises(ConflictError, match="carries the workload-ids marker but its path /"):
            act()
    assert iam.list_role_policies(RoleName="prod-db-admin")["PolicyNames"] == []
    assert iam.get_role(RoleName="prod-db-admin")["Role"]["RoleName"] == "prod-db-admin"


def test_aws_forged_quarantine_date_on_our_role_gets_a_fresh_grace(aws_fleet: tuple[Any, Path]) -> None:
    iam, folder = aws_fleet
    iam.tag_role(RoleName="wid_prod_svc-d", Tags=[{"Key": MARK_TAG, "Value": PAST_MARK}])
    dry = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid_prod_svc-d"]
    assert (dry["status"], dry["action"]) == ("no-manifest", "quarantine")
    assert GRACE_RESTARTS in dry["reason"]
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    mark = decode_mark(role_tags(iam, "wid_prod_svc-d")[MARK_TAG])
    assert (format_time(mark.since), format_time(mark.delete_after or _START)) == (START, DUE)
    assert "workload-ids-quarantine" in iam.list_role_policies(RoleName="wid_prod_svc-d")["PolicyNames"]
    # Within the new grace it stays; after it, the normal deletion happens.
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(_START + timedelta(days=3))
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert iam.get_role(RoleName="wid_prod_svc-d")
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    assert "wid_prod_svc-d" not in [r["RoleName"] for r in iam.list_roles()["Roles"]]


def test_aws_forged_mark_with_a_forged_deny_policy_needs_the_audit_record(
        aws_fleet: tuple[Any, Path]) -> None:
    """Someone who can also write inline policies forges our enforcement exactly: the
    audit log has no quarantine record for that start, so the grace restarts still."""
    from workload_ids.providers.aws.leavers import QUARANTINE_POLICY, quarantine_document
    iam, folder = aws_fleet
    iam.tag_role(RoleName="wid_prod_svc-d", Tags=[{"Key": MARK_TAG, "Value": PAST_MARK}])
    iam.put_role_policy(RoleName="wid_prod_svc-d", PolicyName=QUARANTINE_POLICY,
                        PolicyDocument=json.dumps(quarantine_document(datetime(2020, 1, 1, tzinfo=UTC))))
    dry = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid_prod_svc-d"]
    assert dry["action"] == "quarantine" and "no matching quarantine record in the audit log" in dry["reason"]
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert decode_mark(role_tags(iam, "wid_prod_svc-d")[MARK_TAG]).since == _START


def test_aws_mark_whose_date_does_not_match_the_deny_is_not_believed(aws_fleet: tuple[Any, Path]) -> None:
    """A real quarantine, then the mark's dates rewritten to the past: the deny's
    aws:TokenIssueTime still says when the tool really quarantined it."""
    iam, folder = aws_fleet
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    iam.tag_role(RoleName="wid_prod_svc-d", Tags=[{"Key": MARK_TAG, "Value": PAST_MARK}])
    dry = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid_prod_svc-d"]
    assert dry["action"] == "quarantine" and GRACE_RESTARTS in dry["reason"]
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert iam.get_role(RoleName="wid_prod_svc-d")


def test_aws_legitimate_quarantine_then_delete_after_grace(aws_fleet: tuple[Any, Path]) -> None:
    iam, folder = aws_fleet
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert decode_mark(role_tags(iam, "wid_prod_svc-d")[MARK_TAG]).since == _START
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    dry = by_identity(run_cli("cleanup", str(folder), "--delete-with-local-audit", "--output",
                              "json").out)["wid_prod_svc-d"]
    assert dry["action"] == "delete" and "grace restarts" not in dry["reason"]
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    assert "wid_prod_svc-d" not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert run_cli("restore", "wid_prod_svc-d").code == 0
    assert iam.get_role(RoleName="wid_prod_svc-d")


def test_aws_forged_transferred_from_is_repaired_by_apply(aws_fleet: tuple[Any, Path]) -> None:
    """Review H2 scenario 3: owner set to a departed user, transferred-from set to the
    manifest's owner so that apply would leave it; then a past mark."""
    iam, folder = aws_fleet
    iam.tag_role(RoleName="wid_prod_svc-a", Tags=[
        {"Key": "workload-ids:owner", "Value": "alice"}, {"Key": TRANSFERRED_FROM_TAG, "Value": "team-a"}])
    plan = run_cli("plan", str(folder), "--output", "json")
    assert any(c["action"] == "update-tags" and c["identity"] == "wid_prod_svc-a"
               for c in json.loads(plan.out)["changes"]), plan.out
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert role_tags(iam, "wid_prod_svc-a")["workload-ids:owner"] == "team-a"
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0


def test_aws_legitimate_transfer_is_kept_by_apply(aws: Any, manifests: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A transfer cleanup made (and recorded) is not undone by apply."""
    Path("owners.yaml").write_text(OWNERS.replace(
        "{id: alice, kind: person, active: false}",
        "{id: alice, kind: person, active: false, successor: bob}"))
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"svc-a.yaml": workload("svc-a", owner="alice")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    applied = run_cli("cleanup", str(folder), "--apply")
    assert applied.code == 0, applied.out
    assert role_tags(aws, "wid_prod_svc-a")["workload-ids:owner"] == "bob"
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0


# --- GCP -----------------------------------------------------------------------------

@pytest.fixture
def gcp_fleet(gcp_keyed: tuple[Any, Any, Path]) -> tuple[Any, Path]:  # noqa: F811
    """The keyed GCP fleet of support.marked_fleets, as (IAM emulator, folder)."""
    iam, _, folder = gcp_keyed
    return iam, folder


def test_gcp_forged_marker_and_forged_quarantine_date(gcp_fleet: tuple[Any, Path]) -> None:
    from support.gcp import PROJECT, accounts
    from support.gcp import email as sa_email
    iam, folder = gcp_fleet
    real = accounts(iam)[sa_email("svc-d")]
    client = iam.client()
    # A production account the tool never made, its description set to svc-d's marker.
    made = client.create_service_account(request={
        "name": f"projects/{PROJECT}", "account_id": "ci-deployer",
        "service_account": {"display_name": f"quarantine {PAST_MARK}", "description": real.description}})
    # The real svc-d gets a past mark in its display name (not disabled: no enforcement).
    client.patch_service_account(request={
        "service_account": {"name": f"projects/{PROJECT}/serviceAccounts/{sa_email('svc-d')}",
                            "display_name": f"quarantine {PAST_MARK}"},
        "update_mask": {"paths": ["display_name"]}})
    dry = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)
    assert (dry[made.email]["status"], dry[made.email]["action"]) == ("forged", None)
    assert "its email is not" in dry[made.email]["reason"]
    assert dry[sa_email("svc-d")]["action"] == "quarantine"
    assert GRACE_RESTARTS in dry[sa_email("svc-d")]["reason"]
    applied = run_cli("cleanup", str(folder), "--apply")
    assert applied.code == 0, applied.err + applied.out
    held = accounts(iam)
    assert not held[made.email].disabled and held[made.email].display_name == f"quarantine {PAST_MARK}"
    assert held[sa_email("svc-d")].disabled
    assert held[sa_email("svc-d")].display_name == \
        f"quarantine since={START} reason=no-manifest delete-after={DUE}"
    # Past grace: the real one goes, the forged one stays as it was.
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    held = accounts(iam)
    assert sa_email("svc-d") not in held and not held[made.email].disabled


def test_gcp_forged_transferred_from_is_repaired(gcp_fleet: tuple[Any, Path]) -> None:
    from support.gcp import PROJECT, accounts
    from support.gcp import email as sa_email

    from workload_ids.model import Marker
    iam, folder = gcp_fleet
    real = Marker.from_text(accounts(iam)[sa_email("svc-a")].description)
    assert real is not None
    forged = Marker(real.workload, "alice", real.environment, real.digest)
    iam.client().patch_service_account(request={
        "service_account": {"name": f"projects/{PROJECT}/serviceAccounts/{sa_email('svc-a')}",
                            "description": forged.as_text(), "display_name": "transferred-from=team-a"},
        "update_mask": {"paths": ["description", "display_name"]}})
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 2
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    repaired = Marker.from_text(accounts(iam)[sa_email("svc-a")].description)
    assert repaired is not None and repaired.owner == "team-a"


# --- Azure ---------------------------------------------------------------------------

@pytest.fixture
def azure_fleet(manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    from support.azure import CONTAINER, TOPIC, azure_workload

    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure(sandbox=False)
    for resource in (CONTAINER, TOPIC):
        local.arm.add_resource(resource)
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(
        local.config_block() + "owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
        "cleanup: {grace: 7d, minAge: 1h, maxShare: 1}\n" + TEST_TRUST)
    folder = manifests({f"{n}.yaml": azure_workload(name=n) for n in ("svc-a", "svc-d")})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    (folder / "svc-d.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    yield local, folder
    local.stop()


def test_azure_forged_marker_and_forged_quarantine_date(azure_fleet: tuple[Any, Path]) -> None:
    from support.azure import RG, arm_clients, held
    local, folder = azure_fleet
    msi, _ = arm_clients(local)
    real = held(local)["wid-prod-svc-d"][0]
    # Anyone with Tag Contributor: our tags on an identity the tool never made...
    msi.user_assigned_identities.create_or_update(RG, "app-runtime", {
        "location": "westeurope", "tags": {**real, MARK_TAG: PAST_MARK}})
    # ...and a past mark on the real svc-d (its assignments are still in place).
    msi.user_assigned_identities.create_or_update(RG, "wid-prod-svc-d", {
        "location": "westeurope", "tags": {**real, MARK_TAG: PAST_MARK}})
    assert held(local)["wid-prod-svc-d"][1]
    dry = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)
    assert (dry["app-runtime"]["status"], dry["app-runtime"]["action"]) == ("forged", None)
    assert "its name is not wid-prod-svc-d" in dry["app-runtime"]["reason"]
    assert dry["wid-prod-svc-d"]["action"] == "quarantine"
    assert GRACE_RESTARTS in dry["wid-prod-svc-d"]["reason"]
    applied = run_cli("cleanup", str(folder), "--apply")
    assert applied.code == 0, applied.err + applied.out
    after = held(local)
    assert after["app-runtime"][0][MARK_TAG] == PAST_MARK
    assert after["wid-prod-svc-d"][0][MARK_TAG] == f"since={START} reason=no-manifest delete-after={DUE}"
    assert after["wid-prod-svc-d"][1] == []
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    after = held(local)
    assert "wid-prod-svc-d" not in after and after["app-runtime"][0][MARK_TAG] == PAST_MARK


def test_azure_forged_transferred_from_is_repaired(azure_fleet: tuple[Any, Path]) -> None:
    from support.azure import RG, arm_clients, held
    local, folder = azure_fleet
    msi, _ = arm_clients(local)
    tags = held(local)["wid-prod-svc-a"][0]
    owner = tags["workload-ids:owner"]
    msi.user_assigned_identities.create_or_update(RG, "wid-prod-svc-a", {"location": "westeurope", "tags": {
        **tags, "workload-ids:owner": "alice", TRANSFERRED_FROM_TAG: owner}})
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 2
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert held(local)["wid-prod-svc-a"][0]["workload-ids:owner"] == owner


def test_aws_apply_and_rotate_refuse_our_name_with_our_tags_outside_our_path(
        aws: Any, manifests: Any) -> None:
    """IAM names are unique across paths: a user (or role) made at ``/`` with the name and
    tags we would give a workload is not adopted by apply and never gets a key."""
    from support.aws import KEY_MODE
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"vendor.yaml": KEY_MODE, "svc-a.yaml": workload("svc-a")})
    tags = [{"Key": k, "Value": v} for k, v in {
        "workload-ids:managed-by": "workload-ids", "workload-ids:workload": "vendor-sync",
        "workload-ids:owner": "team-a", "workload-ids:environment": "prod",
        "workload-ids:manifest-sha256": "0" * 64}.items()]
    aws.create_user(UserName="wid_prod_vendor-sync", Path="/", Tags=tags)
    aws.create_role(RoleName="wid_prod_svc-a", Path="/", AssumeRolePolicyDocument=TRUST, Tags=[
        {**t, "Value": "svc-a"} if t["Key"] == "workload-ids:workload" else t for t in tags])
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 1, applied.out + applied.err
    assert "its path / is not aws.rolePath /workload-ids/" in applied.out + applied.err
    assert aws.list_role_policies(RoleName="wid_prod_svc-a")["PolicyNames"] == []
    rotated = run_cli("rotate", str(folder), "--now", "vendor-sync")
    assert rotated.code != 0 and "outside the tool's location" in rotated.out + rotated.err
    assert aws.list_access_keys(UserName="wid_prod_vendor-sync")["AccessKeyMetadata"] == []


def test_aws_restore_refuses_a_bundle_outside_our_location(aws_fleet: tuple[Any, Path]) -> None:
    """A correctly chained but forged bundle (anyone who can write the log can append one)
    for a role at ``/``: restore refuses it (exit 3) and creates nothing."""
    iam, _ = aws_fleet
    tags = role_tags(iam, "wid_prod_svc-d")
    bundle = {"provider": "aws", "target": "123456789012", "kind": "role", "name": "prod-db-admin",
              "address": "arn:aws:iam::123456789012:role/prod-db-admin", "path": "/", "boundary": "",
              "tags": tags, "inlinePolicies": {"workload-ids": {"Version": "2012-10-17", "Statement": [
                  {"Effect": "Allow", "Action": "*", "Resource": "*"}]}},
              "attachedPolicies": [], "groups": [], "trust": json.loads(TRUST), "description": "",
              "maxSessionDuration": 3600, "instanceProfiles": []}
    auditor_for(load_config(), "cleanup").record(
        workload="prod/svc-d", provider="aws", target="123456789012", identity="prod-db-admin",
        action="restore-bundle", before=bundle, detail={"quarantinedSince": START})
    refused = run_cli("restore", "prod-db-admin")
    assert refused.code == 3, refused.out + refused.err
    assert "its path / is not aws.rolePath /workload-ids/" in refused.out + refused.err
    assert "prod-db-admin" not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
