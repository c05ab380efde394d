"""The usage contract on every provider (AWS on moto with access advisor taught to it, GCP
and Azure on our emulators): usage seeded in the emulator is read back through
``connect(...).usage`` with its exact values and a known number of calls, and
``was_used`` answers from it on the finest basis the cloud gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.contract import Cloud

from workload_ids import clock
from workload_ids.calls import CallSeam, RetryPolicy
from workload_ids.clouds import connect
from workload_ids.config import load_config
from workload_ids.providers.interface import Backends
from workload_ids.sandbox.common.clock import ManualClock
from workload_ids.usage import IdentityUsage, was_used
from workload_ids.validate import validate

ACCOUNT = "123456789012"
# A day ahead of the real time: the emulators date what apply made by the real clock, and
# the tool reads at NOW (a drill clock), after it.
NOW = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
USED = NOW - timedelta(days=3)
LONG_AGO = NOW - timedelta(days=20)


@pytest.fixture
def applied(cloud: Cloud, folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Both workloads applied; the tool's clock at NOW; their desired identities by name."""
    applied = run_cli("apply", "--auto-approve", str(folder), "--output", "json")
    assert applied.code == 0, applied.err
    monkeypatch.setenv(clock.ENV, clock.format_time(NOW))
    config = load_config()
    checked = validate([folder], config)
    return {cw.name: connect(cw.provider, config, CallSeam()).desired(cw) for cw in checked.compiled}


def _connected(cloud: Cloud) -> tuple[Backends, CallSeam, ManualClock]:
    """The cloud over a fresh seam whose pauses move a manual clock (AWS's access
    advisor jobs run by it), so waiting costs nothing and the polls are counted."""
    ticking = ManualClock(NOW)
    seam = CallSeam(RetryPolicy(), seed=1, sleep=ticking.advance)
    if cloud.name == "aws":
        from workload_ids.sandbox.moto_access_advisor import advisor
        advisor(ACCOUNT).clock = ticking
    return connect(cloud.name, load_config(), seam), seam, ticking


def _seed(cloud: Cloud, desired: Any) -> None:
    """``svc-a`` used: AWS saw sqs:ReceiveMessage; GCP saw the account authenticate and
    the insight of its bucket binding says storage.objects.get was exercised; Azure saw
    its managed identity sign in."""
    if cloud.name == "aws":
        from workload_ids.sandbox.moto_access_advisor import record_access
        record_access(ACCOUNT, desired.address, "sqs", action="ReceiveMessage", at=USED, region="eu-west-1")
        record_access(ACCOUNT, desired.address, "sqs", action="DeleteMessage", at=LONG_AGO)
    elif cloud.name == "gcp":
        iam = cloud.local.emulators[0]
        account = next(a for a in iam.service_accounts("acme-prod") if a.email == desired.name)
        cloud.local.analyzer.record("acme-prod", account.email, account.unique_id, at=USED)
        role = next(r for r in iam.roles("acme-prod") if "storage.objects.get" in r.permissions)
        cloud.local.recommender.record_insight(
            "acme-prod", f"serviceAccount:{account.email}", role.name, exercised=["storage.objects.get"],
            resource="//storage.googleapis.com/projects/_/buckets/svc-a-in")
    else:
        from support.azure import arm_clients
        msi, _ = arm_clients(cloud.local)
        identity = next(i for i in msi.user_assigned_identities.list_by_subscription()
                        if i.name == desired.name)
        cloud.local.graph.record_sign_in(identity.client_id, at=USED, managed_identity=True)


# What one workload's usage read costs, per cloud: AWS asks per identity (GetRole, the
# job, and its polls: IN_PROGRESS at 0.4 s and 1.2 s, COMPLETED at 2.8 s); GCP and Azure
# read the project or tenant once per run, then GCP lists the account's keys and Azure
# reads nothing more.
FIRST_READ = {
    "aws": {"aws:iam.generate_service_last_accessed_details": 1,
            "aws:iam.get_service_last_accessed_details": 3, "aws:iam.get_role": 1},
    "gcp": {"gcp:policyanalyzer.query_activity": 2, "gcp:recommender.list_insights": 1,
            "gcp:iam.list_roles": 1, "gcp:iam.list_service_account_keys": 1},
    "azure": {"azure:graph.list_applications_page": 1, "azure:graph.list_service_principals_page": 1,
              "azure:graph.sign_in_activity_page": 2,
              "azure:msi.user_assigned_identities.list_by_subscription": 1},
}
SECOND_READ = {"aws": 5, "gcp": 1, "azure": 0}


def test_seeded_usage_reads_back_exactly(cloud: Cloud, applied: dict[str, Any]) -> None:
    _seed(cloud, applied["svc-a"])
    backends, seam, _ = _connected(cloud)
    assert backends.usage is not None
    used = backends.usage.usage_for(applied["svc-a"])
    assert dict(seam.stats.calls) == FIRST_READ[cloud.name]
    before = seam.stats.total
    idle = backends.usage.usage_for(applied["svc-b"])
    assert seam.stats.total - before == SECOND_READ[cloud.name], seam.stats.calls

    assert (used.provider, used.workload, used.read_at) == (cloud.name, "svc-a", NOW)
    assert used.last_used == USED and idle.last_used is None
    assert used.tracked_since == NOW - used.window and used.limits and not used.unread
    assert idle.unread == ()
    if cloud.name == "aws":
        assert used.window == timedelta(days=400)
        sqs = used.service("sqs")
        assert sqs is not None and sqs.last_used == USED and sqs.action_level
        assert [(a.action, a.last_used) for a in sqs.actions] == [
            ("sqs:DeleteMessage", LONG_AGO), ("sqs:ReceiveMessage", USED)]
        assert [s.service for s in used.services] == ["sqs"]
        assert [(s.service, s.last_used) for s in idle.services] == [("sqs", None)]
    elif cloud.name == "gcp":
        assert used.window == timedelta(days=90) and used.address == applied["svc-a"].name
        storage = used.service("storage")
        assert storage is not None
        got = {a.action: a.used for a in storage.actions}
        assert got["storage.objects.get"] is True and set(got.values()) == {True, False}
        assert all("projects/_/buckets/svc-a-in" in a.resources for a in storage.actions)
        assert idle.services == ()
    else:
        assert used.window == timedelta(days=30) and used.kind == "managed-identity"
        assert used.services == () and used.keys == ()
        assert any("no per-permission" in line for line in used.limits)


def test_was_used_answers_on_the_finest_basis(cloud: Cloud, applied: dict[str, Any]) -> None:
    _seed(cloud, applied["svc-a"])
    backends, _, _ = _connected(cloud)
    assert backends.usage is not None
    used, idle = (backends.usage.usage_for(applied[n]) for n in ("svc-a", "svc-b"))
    week = NOW - timedelta(days=7)
    if cloud.name == "aws":
        queue = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:svc-a"
        assert was_used(used, "sqs:ReceiveMessage", queue, week).basis == "action"
        assert was_used(used, "sqs:ReceiveMessage", queue, week).used
        old = was_used(used, "sqs:DeleteMessage", queue, week)
        assert (old.used, old.basis, old.last_used) == (False, "action", LONG_AGO)
        # Not tracked on its own: its service was used, so it counts as used, and says so.
        other = was_used(used, "sqs:ChangeMessageVisibility", queue, week)
        assert (other.used, other.basis) == (True, "service")
        assert "counts as used" in other.reason
        never = was_used(idle, "sqs:ReceiveMessage", queue, week)
        assert (never.used, never.basis) == (False, "service")
    elif cloud.name == "gcp":
        bucket = "projects/_/buckets/svc-a-in"
        got = was_used(used, "storage.objects.get", bucket, week)
        assert (got.used, got.basis) == (True, "permission")
        unused = next(a.action for s in used.services for a in s.actions if not a.used)
        answer = was_used(used, unused, bucket, week)
        assert (answer.used, answer.basis) == (False, "permission")
        # Elsewhere only the account's authentication speaks.
        topic = was_used(used, "pubsub.topics.publish", "projects/acme-prod/topics/svc-a-out", week)
        assert (topic.used, topic.basis) == (True, "identity")
        idle_topic = "projects/acme-prod/topics/svc-b-out"
        assert was_used(idle, "pubsub.topics.publish", idle_topic, week).used is False
    else:
        action = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
        got = was_used(used, action, "/subscriptions/x", week)
        assert (got.used, got.basis) == (True, "identity")
        assert "keeps no usage per permission" in got.reason
        assert was_used(idle, action, "/subscriptions/x", week).used is False
    # Tracking that begins after the question's start cannot say "unused".
    blind = was_used(idle, "sqs:SendMessage" if cloud.name == "aws" else "x.y.z",
                     "*", NOW - used.window - timedelta(days=1))
    assert blind.used is True


def test_usage_of_any_identity_by_address(cloud: Cloud, applied: dict[str, Any]) -> None:
    """The same read for an identity by its address (as discover or a person names it)."""
    _seed(cloud, applied["svc-a"])
    backends, _, _ = _connected(cloud)
    assert backends.usage is not None
    desired = applied["svc-a"]
    address = desired.name if cloud.name == "gcp" else desired.address
    found = backends.usage.usage_of(desired.workload.target, address)
    assert found.workload == "" and found.last_used == USED


def test_usage_output_holds_no_secret(cloud: Cloud, applied: dict[str, Any]) -> None:
    """A key-holding identity's usage names its keys by id only."""
    _seed(cloud, applied["svc-a"])
    backends, _, _ = _connected(cloud)
    assert backends.usage is not None
    found: IdentityUsage = backends.usage.usage_for(applied["svc-a"])
    text = json.dumps([repr(found)])
    for word in ("SecretAccessKey", "secretText", "privateKeyData", "BEGIN PRIVATE KEY"):
        assert word not in text


def test_each_keys_last_use(cloud: Cloud, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key-mode workload's key, seen in use (after apply's own sign-in to verify it),
    reads back by its id with its last use."""
    import importlib

    from support.contract import KEY_MANIFESTS
    module, attr, name = KEY_MANIFESTS[cloud.name]
    for old in folder.glob("*.yaml"):
        old.unlink()
    (folder / "key.yaml").write_text(getattr(importlib.import_module(module), attr))
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    monkeypatch.setenv(clock.ENV, clock.format_time(NOW))
    config = load_config()
    [compiled] = validate([folder], config).compiled
    backends, _, _ = _connected(cloud)
    desired = backends.desired(compiled)
    assert backends.keys is not None and backends.usage is not None
    [key] = backends.keys.list_keys(desired)
    at = NOW - timedelta(hours=1)
    if cloud.name == "aws":
        from workload_ids.sandbox.moto_access_advisor import record_access
        record_access(ACCOUNT, desired.address, "s3", action="GetObject", at=at, access_key_id=key.key_id)
    elif cloud.name == "gcp":
        iam = cloud.local.emulators[0]
        account = next(a for a in iam.service_accounts("acme-prod") if a.email == desired.name)
        cloud.local.analyzer.record("acme-prod", account.email, account.unique_id, key_id=key.key_id, at=at)
    else:
        keys: Any = backends.keys
        app = keys.applications.find_app_named(compiled.target, desired.name)
        cloud.local.graph.record_sign_in(app["appId"], key_id=key.key_id, at=at)
    found = backends.usage.usage_for(desired)
    assert [(k.key_id, k.last_used) for k in found.keys] == [(key.key_id, at)]
    assert found.last_used == at and found.workload == name
    assert found.kind == {"aws": "user", "gcp": "service-account", "azure": "application"}[cloud.name]
