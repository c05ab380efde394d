"""Key mode on AWS: issue, rotate, retire, delete; limits, foreign keys, crashes, and
secret hygiene. Real boto3 against moto; state is read back from IAM and Secrets Manager."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.aws import KEY_MODE, SECRET, USER
from support.cli import run_cli
from support.library import _rotate

from workload_ids.calls import CallRecord, CallSeam, FailAt, FailOperation, Killed, RandomFaults, RetryPolicy
from workload_ids.config import load_config
from workload_ids.errors import WorkloadIdsError
from workload_ids.providers.interface import LEASE
from workload_ids.validate import validate

AFTER_LEASE = (LEASE.total_seconds() + 1) / 86400  # days: a killed run's lock has run out
START = datetime.now(UTC).replace(microsecond=0)


def at(monkeypatch: pytest.MonkeyPatch, days: float) -> None:
    when = START + timedelta(days=days)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", when.strftime("%Y-%m-%dT%H:%M:%SZ"))


def keys(iam: Any, user: str = USER) -> dict[str, str]:
    return {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}


def stored(secret: str = SECRET) -> dict[str, Any]:
    """Key id in each staged version of the secret, read from Secrets Manager itself."""
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    out: dict[str, Any] = {}
    for stage in ("AWSCURRENT", "AWSPREVIOUS"):
        with contextlib.suppress(sm.exceptions.ResourceNotFoundException):
            value = json.loads(sm.get_secret_value(SecretId=secret, VersionStage=stage)["SecretString"])
            out[stage] = value["AccessKeyId"]
    return out


def invariant(iam: Any, user: str = USER, secret: str = SECRET) -> None:
    """Never a key that exists only in the cloud; the current stored key exists and works."""
    on_user = keys(iam, user)
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    try:
        versions = sm.list_secret_version_ids(SecretId=secret, IncludeDeprecated=True)["Versions"]
    except sm.exceptions.ResourceNotFoundException:
        versions = []
    held = set()
    for v in versions:
        value = sm.get_secret_value(SecretId=secret, VersionId=v["VersionId"])["SecretString"]
        held.add(json.loads(value)["AccessKeyId"])
    assert set(on_user) <= held, f"keys only in the cloud: {set(on_user) - held}"
    current = stored(secret).get("AWSCURRENT")
    if current is not None and current in on_user:
        assert on_user[current] == "Active", "the current key was deactivated"


@pytest.fixture
def vendor(aws, manifests, monkeypatch) -> Path:
    path = manifests({"vendor.yaml": KEY_MODE}) / "vendor.yaml"
    at(monkeypatch, 0)
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 0, result.err
    return path


def test_apply_creates_user_policy_and_one_stored_key(secret_hygiene, vendor, aws):
    user = aws.get_user(UserName=USER)["User"]
    assert user["Path"] == "/workload-ids/"
    tags = {t["Key"]: t["Value"] for t in user["Tags"]}
    assert tags["workload-ids:managed-by"] == "workload-ids"
    policy = aws.get_user_policy(UserName=USER, PolicyName="workload-ids")["PolicyDocument"]
    assert policy["Statement"][0]["Resource"] == "arn:aws:s3:::acme-vendor-drop/*"
    on_user = keys(aws)
    assert list(on_user.values()) == ["Active"]
    assert stored() == {"AWSCURRENT": next(iter(on_user))}
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    secret_tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=SECRET)["Tags"]}
    assert secret_tags["workload-ids:managed-by"] == "workload-ids"
    assert "workload-ids:journal" not in secret_tags
    assert run_cli("plan", "--detailed-exitcode", str(vendor)).code == 0
    inv = json.loads(run_cli("inventory", "--output", "json", str(vendor)).out)["identities"][0]
    assert inv["secret"] == SECRET and inv["keys"][0]["id"] == next(iter(on_user))
    assert inv["nextStep"].startswith("rotate ")


def test_full_rotation_cycle_with_the_clock_override(secret_hygiene, vendor, aws, monkeypatch):
    first = next(iter(keys(aws)))
    at(monkeypatch, 10)
    result = run_cli("rotate", str(vendor))
    assert result.code == 0 and "next: rotate" in result.out
    assert "clock overridden by WORKLOAD_IDS_CLOCK" in result.err
    assert keys(aws) == {first: "Active"}

    at(monkeypatch, 30.5)  # due: new key, stored as current, old one still active
    result = run_cli("rotate", "--output", "json", str(vendor))
    assert result.code == 0, result.err
    doc = json.loads(result.out)["workloads"][0]
    second = next(k for k in keys(aws) if k != first)
    assert keys(aws) == {first: "Active", second: "Active"}
    assert stored() == {"AWSCURRENT": second, "AWSPREVIOUS": first}
    assert doc["actions"] == [f"issued {second} into {SECRET}", f"verified {second}"]

    at(monkeypatch, 31.5)  # inside the overlap: nothing to do
    assert run_cli("rotate", str(vendor)).code == 0
    assert keys(aws) == {first: "Active", second: "Active"}

    at(monkeypatch, 32.6)  # overlap over: the old key is deactivated, not deleted
    assert run_cli("rotate", str(vendor)).code == 0
    assert keys(aws) == {first: "Inactive", second: "Active"}

    at(monkeypatch, 39.0)  # grace not yet over
    assert run_cli("rotate", str(vendor)).code == 0
    assert keys(aws) == {first: "Inactive", second: "Active"}

    at(monkeypatch, 39.7)  # grace over: deleted
    result = run_cli("rotate", str(vendor))
    assert f"deleted {first} (grace period over)" in result.out
    assert keys(aws) == {second: "Active"}
    invariant(aws)


def test_retire_early_once_the_new_key_is_used(secret_hygiene, vendor, aws, monkeypatch):
    first = next(iter(keys(aws)))
    at(monkeypatch, 30.5)
    run_cli("rotate", str(vendor))
    second = stored()["AWSCURRENT"]
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    secret = json.loads(sm.get_secret_value(SecretId=SECRET)["SecretString"])
    # The workload switches: it signs an S3 call with the new key.
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id=secret["AccessKeyId"],
                      aws_secret_access_key=secret["SecretAccessKey"])
    s3.list_buckets()
    used = aws.get_access_key_last_used(AccessKeyId=second)["AccessKeyLastUsed"]
    if "LastUsedDate" not in used or used.get("ServiceName") in (None, "N/A", "sts"):
        pytest.skip("this moto version does not record access key use by service")
    at(monkeypatch, 30.7)  # still inside the 2-day overlap
    assert run_cli("rotate", str(vendor)).code == 0
    assert keys(aws) == {first: "Inactive", second: "Active"}


def test_two_key_limit_waits_and_never_makes_a_third(secret_hygiene, vendor, aws, monkeypatch):
    fast = vendor.read_text().replace("rotation: {maxAge: 30d, overlap: 2d, grace: 7d}",
                                      "rotation: {maxAge: 4d, overlap: 1d, grace: 2d}")
    vendor.write_text(fast)
    at(monkeypatch, 4.1)
    run_cli("rotate", str(vendor))
    at(monkeypatch, 5.2)
    run_cli("rotate", str(vendor))  # old key retired at day 5.2; grace until 7.2
    old = next(k for k, status in keys(aws).items() if status == "Inactive")
    # The manifest shortens maxAge: a rotation is due while the old key is in its grace.
    vendor.write_text(fast.replace("maxAge: 4d, overlap: 1d, grace: 2d",
                                   "maxAge: 1d, overlap: 1h, grace: 2h"))
    at(monkeypatch, 5.25)
    result = run_cli("rotate", str(vendor))
    assert result.code == 0, result.err
    assert "the limit is 2" in result.out and "waits" in result.out
    assert len(keys(aws)) == 2 and keys(aws)[old] == "Inactive"
    at(monkeypatch, 5.3)  # grace over: the old key goes, then the new one comes
    result = run_cli("rotate", str(vendor))
    assert f"deleted {old}" in result.out and "issued" in result.out
    assert len(keys(aws)) == 2 and old not in keys(aws)
    invariant(aws)


def test_emergency_rotation_replaces_and_deactivates_at_once(secret_hygiene, vendor, aws, monkeypatch):
    leaked = next(iter(keys(aws)))
    at(monkeypatch, 1)
    result = run_cli("rotate", "--now", "vendor-sync", str(vendor))
    assert result.code == 0, result.err
    new = stored()["AWSCURRENT"]
    assert new != leaked
    assert keys(aws) == {leaked: "Inactive", new: "Active"}
    assert "(emergency)" in result.out
    assert run_cli("rotate", "--now", "nobody", str(vendor)).code == 1


def test_foreign_key_is_refused_and_others_continue(secret_hygiene, aws, manifests, monkeypatch):
    other = KEY_MODE.replace("vendor-sync", "ledger-feed")
    folder = manifests({"vendor.yaml": KEY_MODE, "ledger.yaml": other})
    at(monkeypatch, 0)
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    foreign = aws.create_access_key(UserName=USER)["AccessKey"]["AccessKeyId"]
    at(monkeypatch, 31)
    result = run_cli("rotate", str(folder))
    assert result.code == 1
    assert f"{foreign}" in result.out and "not issued by workload-ids" in result.out
    assert "REFUSED" in result.out
    assert keys(aws)[foreign] == "Active" and len(keys(aws)) == 2  # untouched
    assert len(keys(aws, "wid_prod_ledger-feed")) == 2  # the other workload rotated
    assert stored("workload-ids/prod/ledger-feed").keys() == {"AWSCURRENT", "AWSPREVIOUS"}


def test_throttling_and_transient_errors_during_rotation(secret_hygiene, vendor, aws, monkeypatch):
    at(monkeypatch, 31)
    seam = CallSeam(RetryPolicy(max_attempts=12), seed=3, sleep=lambda s: None)
    seam.inject(RandomFaults(throttle=0.3, transient=0.05, seed=11))
    reports = _rotate([vendor], seam)
    assert reports[0].error is None, reports[0].error
    assert len(keys(aws)) == 2 and sum(seam.stats.retries.values()) > 0
    invariant(aws)


@pytest.mark.parametrize("mode", ["kill", "error"])
def test_crash_at_every_call_of_a_rotation_then_recover(aws, manifests, monkeypatch, mode):
    """For every call k of a clean rotation: fail there (a hard kill, or an SDK error with
    no retry), then `recover`, then rotate again. Each k gets a fresh workload."""
    def fresh(k: int) -> tuple[Path, str, str]:
        name = f"vendor-{mode}-{k}"
        path = manifests({f"{name}.yaml": KEY_MODE.replace("vendor-sync", name)}) / f"{name}.yaml"
        at(monkeypatch, 0)
        assert run_cli("apply", "--auto-approve", str(path)).code == 0
        at(monkeypatch, 31)
        return path, f"wid_prod_{name}", f"workload-ids/prod/{name}"

    path, user, secret = fresh(0)
    probe = CallSeam(sleep=lambda s: None)
    assert _rotate([path], probe)[0].error is None
    calls = probe.stats.total
    assert calls >= 8
    for k in range(1, calls + 1):
        path, user, secret = fresh(k)
        first = next(iter(keys(aws, user)))
        seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
        seam.inject(FailAt(k, "kill" if mode == "kill" else "transient"))
        with contextlib.suppress(Killed, WorkloadIdsError):
            _rotate([path], seam)
        assert keys(aws, user)[first] == "Active", f"old key lost at call {k}"
        if _lock_held(secret):
            # A killed run leaves its lock held, as a dead process does: nothing runs
            # until its lease is over.
            before = keys(aws, user)
            busy = run_cli("rotate", "--lock-timeout", "0s", str(path))
            assert busy.code == 4 and "BUSY" in busy.out and "retry after" in busy.out, (k, busy.out)
            assert keys(aws, user) == before
        at(monkeypatch, 31 + AFTER_LEASE)
        recover = run_cli("recover", str(path))
        assert recover.code == 0, (k, recover.out, recover.err)
        invariant(aws, user, secret)
        again = _rotate([path], CallSeam(sleep=lambda s: None))
        assert again[0].error is None, (k, again[0].error)
        invariant(aws, user, secret)
        current = stored(secret)["AWSCURRENT"]
        assert current != first and keys(aws, user)[current] == "Active", f"no rotation after call {k}"
        assert len(keys(aws, user)) == 2


def _lock_held(secret: str) -> bool:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    try:
        client.describe_secret(SecretId=f"{secret}.lock")
    except client.exceptions.ResourceNotFoundException:
        return False
    return True


def test_recover_deletes_a_key_that_never_reached_the_store(secret_hygiene, vendor, aws, monkeypatch):
    at(monkeypatch, 31)
    seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    seam.inject(FailOperation("secretsmanager.put_secret_value", "kill"))
    with contextlib.suppress(Killed):
        _rotate([vendor], seam)
    assert len(keys(aws)) == 2  # the orphan exists only in IAM right now
    at(monkeypatch, 31 + AFTER_LEASE)
    result = run_cli("recover", str(vendor))
    assert result.code == 0
    assert "created by an interrupted run and never stored" in result.out
    assert len(keys(aws)) == 1
    invariant(aws)


def test_apply_also_recovers(secret_hygiene, vendor, aws, monkeypatch):
    at(monkeypatch, 31)
    seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    seam.inject(FailOperation("secretsmanager.put_secret_value", "kill"))
    with contextlib.suppress(Killed):
        _rotate([vendor], seam)
    at(monkeypatch, 31 + AFTER_LEASE)
    plan = json.loads(run_cli("plan", "--output", "json", str(vendor)).out)
    assert [c["action"] for c in plan["changes"]] == ["recover-keys"]
    assert run_cli("apply", "--auto-approve", str(vendor)).code == 0
    assert len(keys(aws)) == 1
    invariant(aws)


def test_verification_failure_keeps_the_old_key(vendor, aws, monkeypatch, tmp_path):
    at(monkeypatch, 31)
    first = next(iter(keys(aws)))
    seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    # The run's first STS call asks who the tool is (to check the secret's deny policy);
    # every later one is the new key verifying itself: those fail.
    seen: list[str] = []

    def new_key_denied(call: CallRecord) -> str | None:
        if call.operation != "sts.get_caller_identity":
            return None
        seen.append(call.operation)
        return "denied" if len(seen) > 1 else None
    seam.inject(new_key_denied)
    reports = _rotate([vendor], seam)
    assert reports[0].error and "did not work 3 times in a row" in reports[0].error
    assert keys(aws)[first] == "Active"
    # The next run verifies the stored key and only then goes on.
    reports = _rotate([vendor], CallSeam(sleep=lambda s: None))
    assert reports[0].error is None
    assert any(a.startswith("verified") for a in reports[0].actions)
    invariant(aws)


def test_rotate_against_moto_server(aws_server, manifests, monkeypatch):
    path = manifests({"vendor.yaml": KEY_MODE}) / "vendor.yaml"
    at(monkeypatch, 0)
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    at(monkeypatch, 31)
    result = run_cli("rotate", "--output", "json", str(path))
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["summary"]["changed"] == 1
    assert len(aws_server.list_access_keys(UserName=USER)["AccessKeyMetadata"]) == 2


def test_key_mode_user_without_our_tags_is_refused(aws, manifests, monkeypatch):
    aws.create_user(UserName=USER)
    path = manifests({"vendor.yaml": KEY_MODE}) / "vendor.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 1 and "ownership tags" in result.err
    result = run_cli("rotate", str(path))
    assert result.code == 1 and "never modified" in result.out
    assert keys(aws) == {}


def test_a_run_that_loses_its_lease_stops_before_its_next_change(vendor, aws, monkeypatch):
    """A holder frozen for longer than its lease: another run takes the lock over, the
    frozen run's next renewal fails, and it stops before creating a key."""
    import threading
    import time

    from workload_ids.clouds import connect
    from workload_ids.keys import lease
    from workload_ids.providers.interface import Holder
    monkeypatch.setattr(lease, "RENEW_EVERY", 0.05)
    at(monkeypatch, 31)
    first = next(iter(keys(aws)))
    config = load_config()
    seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    other = Holder.this_process("rotate")
    cloud = connect("aws", config, CallSeam(sleep=lambda s: None))
    lock = cloud.lock_for("123456789012")
    tags = cloud.desired(validate([vendor], config).compiled[0]).tags  # our marker
    taken = threading.Event()
    took_over = threading.Event()
    renewed = threading.Event()

    def freeze_then_lose_the_lease(record: CallRecord) -> None:
        if record.operation == "secretsmanager.update_secret" and taken.is_set():
            # The whole process is frozen, its lease keeper too: a renewal sent between the
            # clock's move and the takeover would extend a lease a frozen run cannot renew
            # (the cause of this test's rare failure under load).
            took_over.wait(30)
            renewed.set()  # the frozen run's keeper tries to renew (and will learn it lost)
        if record.operation == "secretsmanager.tag_resource" and not taken.is_set():
            taken.set()
            at(monkeypatch, 31 + AFTER_LEASE)  # this run stalls past its lease...
            assert lock.try_acquire(SECRET, other, tags) is None  # ...and another run takes over
            took_over.set()
            assert renewed.wait(30)
            time.sleep(0.5)  # the renewal's answer arrives
    seam.observers.append(freeze_then_lose_the_lease)
    [report] = _rotate([vendor], seam)
    assert taken.is_set()
    assert report.error and "lost its lock" in report.error, report.error
    assert not any(a.startswith("issued") for a in report.actions)
    assert list(keys(aws)) == [first]  # no key was created after the lease was lost
    held = lock.try_acquire(SECRET, Holder.this_process("apply"), tags)
    assert held is not None and held.holder == other.name  # the loser did not free it


def test_a_lock_secret_that_is_not_ours_is_never_touched(vendor, aws, monkeypatch):
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    decoy = sm.create_secret(Name=f"{SECRET}.lock", SecretString="someone else's",
                             Description="not a lock record")
    first = next(iter(keys(aws)))
    at(monkeypatch, 31)
    result = run_cli("rotate", str(vendor))
    assert result.code == 1, result.out
    assert "without the workload-ids ownership tags" in result.out and "what to do" in result.out
    assert list(keys(aws)) == [first]  # nothing rotated
    after = sm.describe_secret(SecretId=f"{SECRET}.lock")
    assert after["ARN"] == decoy["ARN"] and "DeletedDate" not in after
    assert sm.get_secret_value(SecretId=f"{SECRET}.lock")["SecretString"] == "someone else's"


def test_rotate_without_paths_lists_every_key_mode_identity_and_changes_nothing(vendor, aws, monkeypatch):
    """Without manifests rotate reads every target (here the audit trail's) but turns no key:
    the rotation settings and the secret are the manifest's."""
    before = keys(aws)
    at(monkeypatch, 40)  # past the manifest's maxAge: a run with the manifest would rotate
    result = run_cli("rotate", "--output", "json")
    assert result.code == 0, result.err + result.out
    doc = json.loads(result.out)
    assert doc["fleet"]["targets"] == ["aws:123456789012"] and doc["summary"]["changed"] == 0
    [row] = doc["fleet"]["identities"]
    assert row["identity"] == USER and [k["id"] for k in row["keys"]] == list(before)
    assert keys(aws) == before
    text = run_cli("rotate")
    assert "nothing changed" in text.out and "run `workload-ids rotate MANIFESTS` to act" in text.out
    now = run_cli("rotate", "--now", "vendor-sync")
    assert now.code == 1 and "needs the workload's manifest" in now.err
    assert keys(aws) == before


def test_fleet_rotation_step_reads_each_secret_once_in_the_batch(aws, manifests, monkeypatch):
    """The rotate benchmark's step, pinned per operation: 9 calls per workload besides the
    lock's two, because the ownership proof takes the secret's tags and KMS key from the
    batched ListSecrets (no DescribeSecret) and reads only its resource policy afresh."""
    names = [f"feed-{i}" for i in range(4)]  # more than 3: the batched fleet path
    folder = manifests({f"{n}.yaml": KEY_MODE.replace("vendor-sync", n) for n in names})
    Path("workload-ids.yaml").write_text("credentials: {verify: {interval: 0s}}\n")
    at(monkeypatch, 0)
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    at(monkeypatch, 31)
    seam = CallSeam(sleep=lambda s: None)
    reports = _rotate([folder], seam)
    assert [r.error for r in reports] == [None] * 4
    assert all(len(keys(aws, f"wid_prod_{n}")) == 2 for n in names)
    per_workload = {"iam.list_access_keys": 1, "secretsmanager.get_resource_policy": 1,
                    "secretsmanager.tag_resource": 1, "iam.create_access_key": 1,
                    "secretsmanager.put_secret_value": 1, "sts.get_caller_identity": 3,
                    "secretsmanager.untag_resource": 1,
                    # the workload lock's, counted apart by the benchmark
                    "secretsmanager.create_secret": 1, "secretsmanager.delete_secret": 1}
    once = {"secretsmanager.list_secrets": 1, "iam.get_account_authorization_details": 1,
            "iam.list_roles": 1, "secretsmanager.get_secret_value": 1,
            # who the tool is, for the secrets' deny policies (asked once per account,
            # however many workloads rotate at once)
            "sts.get_caller_identity": 1}
    expected = {f"aws:{op}": n * (4 if op in per_workload else 1) for op, n in per_workload.items()}
    for op, n in once.items():
        expected[f"aws:{op}"] = expected.get(f"aws:{op}", 0) + n
    assert seam.stats.calls == expected
