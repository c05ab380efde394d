"""Leavers and orphans on AWS (moto): classification, quarantine, transfer, release, the
blast-radius guard, deletion after grace with a restore bundle, restore, and crash
safety of every step. State is asserted with boto3 reads."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.aws import snapshot, workload
from support.cli import run_cli
from support.leavers import (
    _START,
    AFTER_GRACE,
    CONFIG,
    DELETE_AFTER,
    OWNERS,
    START,
    WITHIN_GRACE,
    by_identity,
)
from support.trust import TEST_TRUST

from workload_ids.audit import records
from workload_ids.calls import CallSeam, FailAt, Killed, RetryPolicy
from workload_ids.cleanup.workflow import cleanup
from workload_ids.clock import format_time, parse_time
from workload_ids.config import load_config
from workload_ids.model import MARK_TAG, TRANSFERRED_FROM_TAG, QuarantineMark, decode_mark, encode_mark


def tags_of(iam: Any, role: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role)["Tags"]}


def policies_of(iam: Any, role: str) -> dict[str, Any]:
    return {p: iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
            for p in iam.list_role_policies(RoleName=role)["PolicyNames"]}


@pytest.fixture
def fleet(aws: Any, manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Four applied workloads (svc-d's manifest then removed), an owners file, and a decoy
    role with our path, name pattern and all our tags but managed-by."""
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({f"{n}.yaml": workload(n, owner=o) for n, o in
                        [("svc-a", "team-a"), ("svc-b", "alice"), ("svc-c", "team-payments"),
                         ("svc-d", "team-a")]})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    decoy_tags = {k: v for k, v in tags_of(aws, "wid_prod_svc-a").items()
                  if k != "workload-ids:managed-by"}
    aws.create_role(RoleName="wid_prod_decoy", Path="/workload-ids/",
                    AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
                    Tags=[{"Key": k, "Value": v} for k, v in {**decoy_tags,
                                                              "workload-ids:owner": "alice"}.items()])
    # A decoy user too, with an active key: ours in every way but the managed-by tag.
    aws.create_user(UserName="wid_prod_decoy-user", Path="/workload-ids/",
                    Tags=[{"Key": k, "Value": v} for k, v in {**decoy_tags, "workload-ids:owner": "alice",
                                                              "workload-ids:workload": "decoy-user"}.items()])
    aws.create_access_key(UserName="wid_prod_decoy-user")
    (folder / "svc-d.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    return folder


def decoys(iam: Any) -> dict[str, Any]:
    """Everything about the decoys that a command could change."""
    return {
        "role": iam.get_role(RoleName="wid_prod_decoy")["Role"],
        "role_policies": iam.list_role_policies(RoleName="wid_prod_decoy")["PolicyNames"],
        "user": iam.get_user(UserName="wid_prod_decoy-user")["User"],
        "user_tags": iam.list_user_tags(UserName="wid_prod_decoy-user")["Tags"],
        "keys": [(k["AccessKeyId"], k["Status"]) for k in
                 iam.list_access_keys(UserName="wid_prod_decoy-user")["AccessKeyMetadata"]],
    }


def test_dry_run_classifies_and_changes_nothing(aws: Any, fleet: Path) -> None:
    before = snapshot(aws)
    result = run_cli("cleanup", str(fleet), "--output", "json", "--detailed-exitcode")
    assert result.code == 2, result.err
    found = by_identity(json.loads(result.out))
    assert {k: (v["status"], v["action"]) for k, v in found.items()} == {
        "wid_prod_svc-a": ("active", None),
        "wid_prod_svc-b": ("owner-gone", "quarantine"),
        "wid_prod_svc-c": ("transferred", "transfer"),
        "wid_prod_svc-d": ("no-manifest", "quarantine"),
        "wid_prod_decoy": ("unmanaged", None),
        "wid_prod_decoy-user": ("unmanaged", None),
    }
    assert found["wid_prod_svc-b"]["reason"] == "person alice is inactive"
    assert found["wid_prod_svc-c"]["successor"] == "team-platform"
    assert snapshot(aws) == before
    text = run_cli("cleanup", str(fleet))
    assert text.code == 0
    assert "Dry run: 1 transfer, 2 quarantine" in text.out
    assert "Nothing was changed. Rerun with --apply to act." in text.out
    assert "-  owner: team-payments\n" in text.out and "+  owner: team-platform\n" in text.out
    assert [r for r in records(Path("audit.jsonl")) if r["command"] == "cleanup"] == []


def test_dry_run_reads_the_account_in_one_call(aws: Any, fleet: Path) -> None:
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    report = cleanup([fleet], load_config(), seam)
    assert seam.stats.calls == {"aws:iam.get_account_authorization_details": 1,
                                "aws:secretsmanager.get_secret_value": 1}  # the signing key
    assert report.calls == 2


def test_apply_quarantines_transfers_and_never_touches_the_decoy(aws: Any, fleet: Path) -> None:
    decoy = aws.get_role(RoleName="wid_prod_decoy")["Role"]
    untouched = decoys(aws)
    result = run_cli("cleanup", str(fleet), "--apply")
    assert result.code == 0, result.out + result.err
    assert "Cleanup applied: 1 transfer, 2 quarantine; 0 failed" in result.out
    for role, reason in (("wid_prod_svc-b", "owner-gone"), ("wid_prod_svc-d", "no-manifest")):
        assert tags_of(aws, role)[MARK_TAG] == (
            f"since={START} reason={reason} delete-after={DELETE_AFTER}")
        assert policies_of(aws, role)["workload-ids-quarantine"] == {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "WorkloadIdsQuarantineDenyAll", "Effect": "Deny", "Action": "*", "Resource": "*"},
                {"Sid": "WorkloadIdsRevokeOlderSessions", "Effect": "Deny", "Action": "*", "Resource": "*",
                 "Condition": {"DateLessThan": {"aws:TokenIssueTime": START}}},
            ],
        }
        assert "workload-ids" in policies_of(aws, role)  # disabled, not destroyed
    moved = tags_of(aws, "wid_prod_svc-c")
    assert moved["workload-ids:owner"] == "team-platform"
    assert moved[TRANSFERRED_FROM_TAG] == "team-payments"
    assert MARK_TAG not in moved and MARK_TAG not in tags_of(aws, "wid_prod_svc-a")
    assert aws.get_role(RoleName="wid_prod_decoy")["Role"] == decoy
    assert policies_of(aws, "wid_prod_decoy") == {}
    assert decoys(aws) == untouched
    # Apply must not undo the transfer while the manifest still names the old owner.
    plan = run_cli("plan", str(fleet), "--detailed-exitcode")
    assert plan.code == 0, plan.out
    # A second run finds nothing new to do.
    again = run_cli("cleanup", str(fleet), "--output", "json", "--detailed-exitcode")
    assert again.code == 0
    assert all(i["action"] is None for i in json.loads(again.out)["identities"])
    audit = [r for r in records(Path("audit.jsonl")) if r["command"] == "cleanup"]
    assert sorted((r["identity"], r["action"]) for r in audit) == [
        ("wid_prod_svc-b", "quarantine"), ("wid_prod_svc-c", "transfer"), ("wid_prod_svc-d", "quarantine")]
    transfer = next(r for r in audit if r["action"] == "transfer")
    assert transfer["before"] == {"owner": "team-payments"}
    assert transfer["after"] == {"owner": "team-platform"}
    # The actor names the cloud identity the run acted as, not only the local user.
    assert " as arn:aws:sts::123456789012:" in transfer["actor"]
    assert "+  owner: team-platform" in transfer["detail"]["manifestEdit"]
    assert run_cli("audit", "verify").code == 0


def test_release_when_the_owner_and_the_manifest_come_back(aws: Any, fleet: Path) -> None:
    assert run_cli("cleanup", str(fleet), "--apply").code == 0
    Path("owners.yaml").write_text(OWNERS.replace("{id: alice, kind: person, active: false}",
                                                  "{id: alice, kind: person, active: true}"))
    (fleet / "svc-d.yaml").write_text(workload("svc-d", owner="team-a"))
    os.environ["WORKLOAD_IDS_CLOCK"] = WITHIN_GRACE
    result = run_cli("cleanup", str(fleet), "--apply", "--output", "json")
    assert result.code == 0, result.err
    assert {i["identity"]: i["action"] for i in json.loads(result.out)["identities"]
            if i["action"]} == {"wid_prod_svc-b": "release", "wid_prod_svc-d": "release"}
    for role in ("wid_prod_svc-b", "wid_prod_svc-d"):
        assert MARK_TAG not in tags_of(aws, role)
        assert list(policies_of(aws, role)) == ["workload-ids"]


def test_delete_after_grace_then_restore(aws: Any, fleet: Path) -> None:
    untouched = decoys(aws)
    assert run_cli("cleanup", str(fleet), "--apply").code == 0
    original = snapshot(aws)["wid_prod_svc-d"]
    early = run_cli("cleanup", str(fleet), "--apply", "--output", "json")
    assert [i["action"] for i in json.loads(early.out)["identities"] if i["action"]] == []
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    report = cleanup([fleet], load_config(), seam, apply=True, delete_with_local_audit=True)
    assert report.ok
    assert sorted(f.identity.name for f in report.actions) == ["wid_prod_svc-b", "wid_prod_svc-d"]
    # Two batch reads, the signing key, who-am-I, then three calls per role: its two inline
    # policies and the role.
    assert seam.stats.total == 2 + 1 + 1 + 2 * 3
    names = {r["RoleName"] for r in aws.list_roles()["Roles"]}
    assert names == {"wid_prod_svc-a", "wid_prod_svc-c", "wid_prod_decoy"}
    assert decoys(aws) == untouched
    log = list(records(Path("audit.jsonl")))
    bundle = next(r for r in log if r["action"] == "restore-bundle" and r["identity"] == "wid_prod_svc-d")
    assert bundle["before"]["inlinePolicies"] == {"workload-ids": original["policies"]["workload-ids"]}
    assert bundle["before"]["trust"] == original["trust"]
    assert MARK_TAG not in bundle["before"]["tags"]
    assert log.index(bundle) < log.index(next(r for r in log if r["action"] == "delete"
                                              and r["identity"] == "wid_prod_svc-d"))

    restored = run_cli("restore", "wid_prod_svc-d")
    assert restored.code == 0, restored.err
    assert "Restored role wid_prod_svc-d (prod/svc-d) in 123456789012" in restored.out
    after = snapshot(aws)["wid_prod_svc-d"]
    assert after["trust"] == original["trust"]
    assert after["policies"] == {"workload-ids": original["policies"]["workload-ids"]}
    assert after["tags"] == {k: v for k, v in original["tags"].items() if k != MARK_TAG}
    assert after["session"] == original["session"]
    assert run_cli("audit", "verify").code == 0
    # Restoring twice converges rather than failing.
    assert run_cli("restore", "wid_prod_svc-d").code == 0
    missing = run_cli("restore", "wid_prod_nothing")
    assert missing.code == 1 and "no restore bundle for wid_prod_nothing" in missing.err
    typo = run_cli("restore", "wid_prod_svc-e")  # one letter off the one that has a bundle
    assert typo.code == 1 and "did you mean wid_prod_svc-d?" in typo.err


def test_teardown_removes_what_was_attached_after_the_batch_read(aws: Any, fleet: Path) -> None:
    """Teardown works from the batch read; a policy attached and an instance profile
    joined since then make IAM refuse the delete (DeleteConflict). The table's
    on-conflict steps then list what is left, remove it and delete the role, instead of
    failing the cleanup with the role half torn down."""
    from workload_ids.clouds import connect
    cloud = connect("aws", load_config(), CallSeam(RetryPolicy(), sleep=lambda s: None))
    [role] = [i for i in cloud.identities.observe_scope("123456789012") if i.name == "wid_prod_svc-d"]
    late = aws.create_policy(PolicyName="attached-later", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",
                                                 "Resource": "arn:aws:s3:::x"}]}))["Policy"]["Arn"]
    aws.attach_role_policy(RoleName="wid_prod_svc-d", PolicyArn=late)
    aws.create_instance_profile(InstanceProfileName="joined-later")
    aws.add_role_to_instance_profile(InstanceProfileName="joined-later", RoleName="wid_prod_svc-d")
    steps = cloud.leavers.delete(role)
    assert steps == ["delete inline policy workload-ids", f"detach {late}",
                     "remove from instance profile joined-later", "delete role wid_prod_svc-d"]
    assert "wid_prod_svc-d" not in {r["RoleName"] for r in aws.list_roles()["Roles"]}
    # The profile itself is not ours: it stays, without the role.
    assert aws.get_instance_profile(InstanceProfileName="joined-later")["InstanceProfile"]["Roles"] == []


def test_blast_radius_guard_refuses_with_exit_3_and_changes_nothing(aws: Any, fleet: Path) -> None:
    before = snapshot(aws)
    result = run_cli("cleanup", str(fleet), "--apply", "--max-actions", "1")
    assert result.code == 3
    assert "cleanup would quarantine 2 and delete 0 identities (2 in all), more than the limit of 1 " \
           "per run; nothing was done" in result.err
    assert "--max-actions 2" in result.err
    assert snapshot(aws) == before
    Path("workload-ids.yaml").write_text(CONFIG.replace("maxShare: 1", "maxShare: 0.1"))
    share = run_cli("cleanup", str(fleet), "--apply")
    assert share.code == 3 and "more than 10% of the 4 identities workload-ids manages" in share.err
    assert snapshot(aws) == before
    dry = run_cli("cleanup", str(fleet))
    assert dry.code == 0 and "--apply would be REFUSED" in dry.out


def test_identities_younger_than_min_age_are_not_judged(aws: Any, fleet: Path) -> None:
    os.environ.pop("WORKLOAD_IDS_CLOCK")
    result = run_cli("cleanup", str(fleet), "--output", "json")
    statuses = {i["identity"]: (i["status"], i["action"]) for i in json.loads(result.out)["identities"]}
    assert statuses["wid_prod_svc-d"] == ("new", None)
    assert statuses["wid_prod_svc-b"] == ("new", None)


def test_unused_is_reported_and_quarantined_only_when_configured_never_deleted(
        aws: Any, fleet: Path) -> None:
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(_START + timedelta(days=150))  # never used
    found = by_identity(json.loads(run_cli("cleanup", str(fleet), "--output", "json").out))
    assert (found["wid_prod_svc-a"]["status"], found["wid_prod_svc-a"]["action"]) == ("unused", None)
    Path("workload-ids.yaml").write_text(CONFIG.replace("maxShare: 1", "maxShare: 1, quarantineUnused: true"))
    assert run_cli("cleanup", str(fleet), "--apply").code == 0
    mark = decode_mark(tags_of(aws, "wid_prod_svc-a")[MARK_TAG])
    assert (mark.reason, mark.delete_after) == ("unused", None)
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(_START + timedelta(days=500))
    later = by_identity(json.loads(run_cli("cleanup", str(fleet), "--apply", "--output", "json").out))
    assert later["wid_prod_svc-a"]["action"] is None
    assert "wid_prod_svc-a" in {r["RoleName"] for r in aws.list_roles()["Roles"]}


def test_without_owner_directory_owner_checks_are_off(aws: Any, fleet: Path) -> None:
    Path("workload-ids.yaml").write_text("cleanup: {maxShare: 1}\n" + TEST_TRUST)
    result = run_cli("cleanup", str(fleet), "--output", "json")
    doc = json.loads(result.out)
    assert doc["ownerChecks"] is False
    assert any("owner checks are off" in n for n in doc["notes"])
    assert by_identity(doc)["wid_prod_svc-b"]["status"] == "active"
    assert by_identity(doc)["wid_prod_svc-d"]["status"] == "no-manifest"
    text = run_cli("cleanup", str(fleet))
    assert "note: owner checks are off" in text.out


def test_deletion_needs_an_audit_log(aws: Any, fleet: Path) -> None:
    assert run_cli("cleanup", str(fleet), "--apply").code == 0
    Path("workload-ids.yaml").write_text(CONFIG.replace("audit: {path: audit.jsonl}\n", ""))
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    before = snapshot(aws)
    result = run_cli("cleanup", str(fleet), "--apply")
    assert result.code == 1 and "no audit log is configured" in result.err
    assert snapshot(aws) == before


def test_unreachable_scim_directory_stops_before_any_change(aws: Any, fleet: Path) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    Path("workload-ids.yaml").write_text(
        f"owners: {{source: scim, url: 'http://127.0.0.1:{port}/scim/v2', allowInsecureLoopback: true, "
        "tokenEnv: WORKLOAD_IDS_SCIM_TOKEN, timeout: 2s}\naudit: {path: audit.jsonl}\n"
        "cleanup: {maxShare: 1}\n" + TEST_TRUST)
    os.environ["WORKLOAD_IDS_SCIM_TOKEN"] = "t0ken"
    try:
        before = snapshot(aws)
        result = run_cli("cleanup", str(fleet), "--apply")
    finally:
        del os.environ["WORKLOAD_IDS_SCIM_TOKEN"]
    assert result.code == 1
    assert "is unreachable" in result.err and "never counts as an owner being gone" in result.err
    assert snapshot(aws) == before


@pytest.mark.parametrize("grace, message", [
    ("0s", "cleanup.grace must be at least 1h"),
    ("-1d", "is not a duration"),
    ("''", "is not a duration"),
])
def test_bad_grace_period_is_refused(aws: Any, fleet: Path, grace: str, message: str) -> None:
    Path("workload-ids.yaml").write_text(CONFIG.replace("grace: 7d", f"grace: {grace}"))
    result = run_cli("cleanup", str(fleet), "--apply")
    assert result.code == 1
    assert "workload-ids.yaml:3:" in result.err and message in result.err


def test_broken_owners_file_is_a_positioned_error(aws: Any, fleet: Path) -> None:
    Path("owners.yaml").write_text("owners:\n  - {id: bob, kind: robot, active: true}\n")
    before = snapshot(aws)
    result = run_cli("cleanup", str(fleet), "--apply")
    assert result.code == 1 and "owners.yaml:2:" in result.err
    assert snapshot(aws) == before


# --- the mark ----------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham"])
def test_mark_round_trips_across_timezones(tz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        since = parse_time("2026-11-26T23:30:00+05:30")  # a local time, written back as UTC
        mark = QuarantineMark(since, "owner-gone", parse_time("2026-12-03T18:00:00Z"), ("AKIA1", "AKIA2"))
        text = encode_mark(mark)
        assert text == ("since=2026-11-26T18:00:00Z reason=owner-gone "
                        "delete-after=2026-12-03T18:00:00Z keys=AKIA1+AKIA2")
        assert decode_mark(text) == mark
        assert decode_mark(text).due(parse_time("2026-12-03T23:30:00+05:30")) is True
        assert decode_mark(text).due(parse_time("2026-12-03T23:29:59+05:30")) is False
        assert decode_mark(text).due(parse_time("2026-12-03T10:00:00-08:00")) is True
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("text", [
    "since=2026-11-26T18:00:00 reason=owner-gone",  # no offset
    "reason=owner-gone delete-after=2026-12-03T18:00:00Z",  # no since
    "since=2026-11-26T18:00:00Z reason=bored",
    "since=2026-11-26T18:00:00Z reason=owner-gone delete-after=2026-11-01T00:00:00Z",
    "since=2026-11-26T18:00:00Z since=2026-11-27T18:00:00Z reason=owner-gone",
])
def test_unreadable_marks_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        decode_mark(text)


def test_an_edited_mark_withholds_every_action(aws: Any, fleet: Path) -> None:
    assert run_cli("cleanup", str(fleet), "--apply").code == 0
    aws.tag_role(RoleName="wid_prod_svc-d",
                 Tags=[{"Key": MARK_TAG, "Value": "since=yesterday reason=owner-gone"}])
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    result = run_cli("cleanup", str(fleet), "--apply", "--delete-with-local-audit", "--output", "json")
    found = by_identity(json.loads(result.out))["wid_prod_svc-d"]
    assert found["action"] is None and "fixed or removed by hand" in found["problem"]
    assert "wid_prod_svc-d" in {r["RoleName"] for r in aws.list_roles()["Roles"]}


# --- crash safety ------------------------------------------------------------------


def _cleanup(folder: Path, fault: Any = None) -> int:
    """One cleanup --apply through the library; returns its call count. Swallows the
    injected failure or kill: the rerun after it is what is judged."""
    seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    if fault is not None:
        seam.inject(fault)
    try:
        cleanup([folder], load_config(), seam, apply=True, delete_with_local_audit=True)
    except Killed:
        pass
    except Exception as exc:
        assert "injected" in str(exc), exc
    return seam.stats.total


def _fresh_fleet(aws: Any, folder: Path, phase: str) -> None:
    """Reset moto and rebuild the fleet; for the delete phase, quarantine it too."""
    from moto.moto_api._internal.models import moto_api_backend
    from support.aws import seed
    moto_api_backend.reset()
    seed(aws)
    (folder / "svc-d.yaml").write_text(workload("svc-d", owner="team-a"))
    os.environ.pop("WORKLOAD_IDS_CLOCK", None)
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "svc-d.yaml").unlink()
    Path("audit.jsonl").unlink(missing_ok=True)
    os.environ["WORKLOAD_IDS_CLOCK"] = START
    if phase == "delete":
        assert _cleanup(folder) > 0
        os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE


@pytest.mark.parametrize("phase", ["quarantine", "delete"])
def test_cleanup_converges_after_a_crash_at_every_call(aws: Any, fleet: Path, phase: str) -> None:
    _fresh_fleet(aws, fleet, phase)
    calls = _cleanup(fleet)
    expected = snapshot(aws)
    # Two batch reads, the signing key, who-am-I, then the actions.
    assert calls == (2 + 1 + 1 + 2 * 2 + 1 if phase == "quarantine" else 2 + 1 + 1 + 2 * 3)
    for k in range(1, calls + 1):
        for kind in ("transient", "kill"):
            _fresh_fleet(aws, fleet, phase)
            _cleanup(fleet, FailAt(k, kind))
            _cleanup(fleet)
            assert snapshot(aws) == expected, f"{phase}: {kind} at call {k}"
            assert run_cli("audit", "verify").code == 0
            if phase == "delete":
                # Every deleted identity has exactly one complete bundle to restore from.
                bundles = [r for r in records(Path("audit.jsonl")) if r["action"] == "restore-bundle"]
                assert sorted(b["identity"] for b in bundles) == ["wid_prod_svc-b", "wid_prod_svc-d"]
                assert all(b["before"]["inlinePolicies"].keys() == {"workload-ids"} for b in bundles)


# --- users (key mode) --------------------------------------------------------------

def test_user_quarantine_release_and_ordered_teardown(secret_hygiene: Any, aws: Any, manifests: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from support.aws import KEY_MODE
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"vendor.yaml": KEY_MODE.replace("owner: team-a", "owner: alice")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    user = "wid_prod_vendor-sync"
    [key] = [k["AccessKeyId"] for k in aws.list_access_keys(UserName=user)["AccessKeyMetadata"]]
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)

    assert run_cli("cleanup", str(folder), "--apply").code == 0
    mark = decode_mark({t["Key"]: t["Value"] for t in aws.list_user_tags(UserName=user)["Tags"]}[MARK_TAG])
    assert (mark.reason, mark.keys) == ("owner-gone", (key,))
    assert {k["AccessKeyId"]: k["Status"] for k in
            aws.list_access_keys(UserName=user)["AccessKeyMetadata"]} == {key: "Inactive"}
    refused = run_cli("rotate", str(folder), "--now", "vendor-sync")
    assert refused.code == 1 and "is quarantined by cleanup" in refused.out
    assert [k["AccessKeyId"] for k in aws.list_access_keys(UserName=user)["AccessKeyMetadata"]] == [key]

    Path("owners.yaml").write_text(OWNERS.replace("{id: alice, kind: person, active: false}",
                                                  "{id: alice, kind: person, active: true}"))
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert {k["AccessKeyId"]: k["Status"] for k in
            aws.list_access_keys(UserName=user)["AccessKeyMetadata"]} == {key: "Active"}
    assert MARK_TAG not in {t["Key"] for t in aws.list_user_tags(UserName=user)["Tags"]}

    # Gone again, past grace: everything IAM would refuse to delete a user with is there.
    Path("owners.yaml").write_text(OWNERS)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    aws.create_login_profile(UserName=user, Password="Correct-Horse-9-battery")
    mfa = aws.create_virtual_mfa_device(VirtualMFADeviceName=user)["VirtualMFADevice"]["SerialNumber"]
    aws.enable_mfa_device(UserName=user, SerialNumber=mfa, AuthenticationCode1="123456",
                          AuthenticationCode2="654321")
    aws.upload_ssh_public_key(UserName=user, SSHPublicKeyBody="ssh-rsa AAAAB3NzaC1yc2E test")
    aws.create_group(GroupName="legacy-vendors")
    aws.add_user_to_group(GroupName="legacy-vendors", UserName=user)
    aws.put_user_policy(UserName=user, PolicyName="hand-made", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",
                                                 "Resource": "arn:aws:s3:::x"}]}))
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", AFTER_GRACE)
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    operations: list[str] = []
    seam.observers.append(lambda call: operations.append(call.operation))
    report = cleanup([folder], load_config(), seam, apply=True, delete_with_local_audit=True)
    assert report.ok, [r.error for r in report.results]
    mutations = [op.split(".", 1)[1] for op in operations
                 if not op.split(".", 1)[1].startswith(("list_", "get_"))]
    assert mutations[-1] == "delete_user"
    assert set(mutations[:-1]) == {
        "delete_access_key", "delete_login_profile", "deactivate_mfa_device", "delete_virtual_mfa_device",
        "delete_ssh_public_key", "delete_user_policy", "remove_user_from_group"}
    assert mutations.index("delete_access_key") < mutations.index("delete_login_profile") \
        < mutations.index("deactivate_mfa_device") < mutations.index("delete_user_policy") \
        < mutations.index("remove_user_from_group")
    assert user not in {u["UserName"] for u in aws.list_users()["Users"]}
    bundle = next(r for r in records(Path("audit.jsonl")) if r["action"] == "restore-bundle")
    assert set(bundle["before"]["inlinePolicies"]) == {"workload-ids", "hand-made"}
    assert bundle["before"]["groups"] == ["legacy-vendors"]
    # That bundle holds what workload-ids never writes (someone's inline policy, a group):
    # restore refuses it whole, and the way back is the manifest.
    refused = run_cli("restore", user)
    assert refused.code == 3, refused.out + refused.err
    assert "the inline policy 'hand-made'" in refused.err and "groups (legacy-vendors)" in refused.err
    assert user not in {u["UserName"] for u in aws.list_users()["Users"]}
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert run_cli("cleanup", str(folder), "--apply").code == 0  # its owner is still gone
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(parse_time(AFTER_GRACE) + timedelta(days=8)))
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    assert user not in {u["UserName"] for u in aws.list_users()["Users"]}
    restored = run_cli("restore", user)
    assert restored.code == 0, restored.out + restored.err
    assert "access keys cannot be restored" in restored.out and "--issue-key MANIFEST" in restored.out
    assert aws.list_access_keys(UserName=user)["AccessKeyMetadata"] == []
    assert aws.list_groups_for_user(UserName=user)["Groups"] == []
    # Rerun with a new key: restore converges, and the key is issued, verified and stored.
    again = run_cli("restore", user, "--issue-key", str(folder / "vendor.yaml"), "--output", "json")
    assert again.code == 0, again.err
    [new_key] = [k["AccessKeyId"] for k in aws.list_access_keys(UserName=user)["AccessKeyMetadata"]]
    assert new_key != key
    doc = json.loads(again.out)
    assert doc["key"]["keys"][0]["id"] == new_key
    stored = boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
        SecretId="workload-ids/prod/vendor-sync")
    assert json.loads(stored["SecretString"])["AccessKeyId"] == new_key
    secret_hygiene.append(Path("audit.jsonl").read_text())


def test_plan_inventory_and_apply_see_a_quarantined_identity(aws: Any, fleet: Path) -> None:
    assert run_cli("cleanup", str(fleet), "--apply").code == 0
    # svc-b is still declared (its owner left): a pipeline's plan says so and apply keeps it disabled.
    plan = run_cli("plan", str(fleet / "svc-b.yaml"), "--output", "json")
    doc = json.loads(plan.out)
    assert doc["changes"] == []
    assert doc["quarantined"] == [{"workload": "prod/svc-b", "identity": "wid_prod_svc-b",
                                   "mark": tags_of(aws, "wid_prod_svc-b")[MARK_TAG]}]
    text = run_cli("plan", str(fleet / "svc-b.yaml"))
    assert "! prod/svc-b: wid_prod_svc-b is quarantined by cleanup" in text.out
    assert run_cli("apply", "--auto-approve", str(fleet / "svc-b.yaml")).code == 0
    assert "workload-ids-quarantine" in policies_of(aws, "wid_prod_svc-b")
    rows = {r["identity"]: r for r in json.loads(run_cli("inventory", str(fleet), "--output", "json").out)
            ["identities"]}
    assert rows["wid_prod_svc-b"]["quarantine"].startswith(f"since={START} reason=owner-gone")
    assert rows["wid_prod_svc-a"]["quarantine"] is None
    table = run_cli("inventory", str(fleet)).out
    assert any(line.startswith("wid_prod_svc-b") and line.rstrip().endswith("quarantined")
               for line in table.splitlines())


def test_apply_issues_no_key_to_a_quarantined_user(secret_hygiene: Any, aws: Any, manifests: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from support.aws import KEY_MODE
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"vendor.yaml": KEY_MODE.replace("owner: team-a", "owner: alice")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    user = "wid_prod_vendor-sync"
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    before = aws.list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert [k["Status"] for k in before] == ["Inactive"]
    result = run_cli("apply", "--auto-approve", str(folder))
    assert result.code == 0, result.err
    assert aws.list_access_keys(UserName=user)["AccessKeyMetadata"] == before


def test_a_folder_of_two_clouds_is_judged_across_both(aws: Any, fleet: Path) -> None:
    from support.paths import EXAMPLES

    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure()
    try:
        Path("workload-ids.yaml").write_text(CONFIG + local.config_block())
        text = (EXAMPLES / "azure" / "order-reconciliation.yaml").read_text()
        (fleet / "azure.yaml").write_text(text)
        (fleet / "azure-old.yaml").write_text(text.replace("name: order-reconciliation", "name: recon-old"))
        assert run_cli("apply", "--auto-approve", str(fleet)).code == 0
        (fleet / "azure-old.yaml").unlink()
        result = run_cli("cleanup", str(fleet), "--output", "json")
        assert result.code == 0, result.err
        found = by_identity(json.loads(result.out))
        assert found["wid-prod-recon-old"]["status"] == "no-manifest"
        # team-payments has no active member and names a successor, on either cloud
        assert found["wid-prod-order-reconciliation"]["status"] == "transferred"
        assert found["wid_prod_svc-c"]["status"] == "transferred"
        assert found["wid_prod_svc-d"]["status"] == "no-manifest"
        assert found["wid_prod_svc-a"]["status"] == "active"
    finally:
        local.stop()
