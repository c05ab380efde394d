"""The provider contract: the same joiner, mover, crash-recovery and leaver behaviour,
run through the CLI and the library against every provider (AWS on moto, GCP and Azure on
our emulators). Each provider supplies manifests and a snapshot of what it holds; the
assertions are the same for all."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.contract import OWNERS, Cloud, _aws, _azure, _gcp
from support.trust import TEST_TRUST

from workload_ids.calls import CallSeam, FailAt, Killed, RetryPolicy
from workload_ids.clock import format_time
from workload_ids.config import load_config
from workload_ids.providers.interface import LEASE


@pytest.fixture(params=["aws", "gcp", "azure"])
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    if request.param == "aws":
        yield _aws(request.getfixturevalue("aws"))
    elif request.param == "gcp":
        yield from _gcp()
    else:
        yield from _azure()


@pytest.fixture
def folder(cloud: Cloud, manifests: Any) -> Path:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(
        cloud.config + "owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
        "cleanup: {grace: 7d, minAge: 1h, maxShare: 1, maxActions: 100}\n"
        "credentials: {verify: {interval: 0s}}\n" + TEST_TRUST)
    return Path(manifests({f"svc-{n}.yaml": cloud.manifest(f"svc-{n}", "") for n in ("a", "b")}))


def test_joiner_then_no_changes(cloud: Cloud, folder: Path) -> None:
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 2
    applied = run_cli("apply", "--auto-approve", str(folder), "--output", "json")
    assert applied.code == 0, applied.err
    assert len(json.loads(applied.out)["results"]) == 2
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0
    assert run_cli("plan", str(folder / "svc-a.yaml"), "--detailed-exitcode").code == 0


def test_mover_shows_the_removal_then_converges(cloud: Cloud, folder: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    path = folder / "svc-a.yaml"
    path.write_text(path.read_text().replace(cloud.read_entry.format(name="svc-a"), ""))
    plan = run_cli("plan", str(path), "--output", "json", "--detailed-exitcode")
    assert plan.code == 2
    removed = [r for c in json.loads(plan.out)["changes"]
               for r in (c.get("permissions") or c.get("bindings") or {}).get("removed", [])]
    assert removed, plan.out
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0


def test_apply_converges_after_a_kill_at_every_call(cloud: Cloud, folder: Path) -> None:
    from workload_ids.apply import apply_plan
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    path = folder / "svc-a.yaml"
    (folder / "svc-b.yaml").unlink()

    def run(fault: Any = None) -> int:
        seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
        if fault is not None:
            seam.inject(fault)
        config = load_config()
        checked = validate([path], config)
        with contextlib.suppress(Killed, Exception):  # the crash is the point
            apply_plan(build_plan(checked.compiled, config, seam), concurrency=1)
        return seam.stats.total

    clean_calls = run()
    assert clean_calls >= 5
    for k in range(1, clean_calls + 1, 3):  # every third call keeps the suite fast
        renamed = cloud.manifest(f"svc-k{k}", "")
        path.write_text(renamed)
        run(FailAt(k, "kill"))
        run()
        assert run_cli("plan", str(path), "--detailed-exitcode").code == 0, f"kill at call {k}"
    # The first workload, applied cleanly, was never touched by the crashes of the others.
    path.write_text(cloud.manifest("svc-a", ""))
    assert run_cli("plan", str(path), "--detailed-exitcode").code == 0


def test_leaver_quarantine_release_delete_restore(cloud: Cloud, folder: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "svc-b.yaml").unlink()
    start = datetime.now(UTC) + timedelta(hours=2)
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start)
    quarantined = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert [(r["action"], r["ok"]) for r in quarantined["results"]] == [("quarantine", True)]
    identity = quarantined["results"][0]["identity"]
    held = cloud.snapshot()
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start + timedelta(days=8))
    deleted = json.loads(run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit",
                                 "--output", "json").out)
    assert [(r["identity"], r["action"], r["ok"]) for r in deleted["results"]] == \
        [(identity, "delete", True)]
    assert cloud.snapshot() != held
    assert run_cli("restore", identity).code == 0
    assert run_cli("audit", "verify").code == 0
    # Restored, it is judged afresh: still without a manifest, it is quarantined again.
    again = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    assert {i["identity"]: i["status"] for i in again["identities"]}[identity] == "no-manifest"


KEY_MANIFESTS = {"aws": ("support.aws", "KEY_MODE", "vendor-sync"),
                 "gcp": ("support.gcp", "KEY_MODE", "vendor-sync"),
                 "azure": ("support.azure", "KEY_MODE", "vendor-sync")}
# A client secret cannot be disabled, only removed: on Azure the retired key is gone at
# the end of the overlap instead of kept inactive through the grace period.
RETIRED = {"aws": [("current", "active"), ("retired", "inactive")],
           "gcp": [("current", "active"), ("retired", "inactive")],
           "azure": [("current", "active")]}


def test_key_rotation_cycle(secret_hygiene: Any, cloud: Cloud, folder: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    module, attr, name = KEY_MANIFESTS[cloud.name]
    text = getattr(importlib.import_module(module), attr)
    for old in folder.glob("*.yaml"):
        old.unlink()
    (folder / "key.yaml").write_text(text)
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    start = datetime.now(UTC)

    def rotate(days: float) -> list[tuple[str, str]]:
        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(start + timedelta(days=days)))
        result = run_cli("rotate", str(folder), "--output", "json")
        assert result.code == 0, result.out + result.err
        [report] = json.loads(result.out)["workloads"]
        return sorted((k["role"], k["status"]) for k in report["keys"])

    assert rotate(10) == [("current", "active")]
    assert rotate(31) == [("current", "active"), ("previous", "active")]
    assert rotate(33.5) == RETIRED[cloud.name]
    assert rotate(41) == [("current", "active")]
    emergency = run_cli("rotate", str(folder), "--now", name, "--output", "json")
    assert emergency.code == 0
    keys = json.loads(emergency.out)["workloads"][0]["keys"]
    assert sorted((k["role"], k["status"]) for k in keys) == RETIRED[cloud.name]


def _key_manifest(cloud: Cloud, name: str) -> str:
    import importlib
    module, attr, original = KEY_MANIFESTS[cloud.name]
    return str(getattr(importlib.import_module(module), attr)).replace(original, name)


def _library_run(fn: Callable[[CallSeam], Any], fault: Any = None) -> int:
    """Run ``fn`` with a seam (no retries); swallow the injected kill; return the calls."""
    seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    if fault is not None:
        seam.inject(fault)
    with contextlib.suppress(Killed):
        fn(seam)
    return seam.stats.total


def test_rotation_converges_after_a_kill_at_every_call(secret_hygiene: Any, cloud: Cloud, folder: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from workload_ids.clouds import connect
    from workload_ids.keys.fleet import rotate_workloads
    from workload_ids.validate import validate
    for old in folder.glob("*.yaml"):
        old.unlink()
    start = datetime.now(UTC)

    def rotation(path: Path) -> Callable[[CallSeam], Any]:
        def run(seam: CallSeam) -> Any:
            config = load_config()
            return rotate_workloads(validate([path], config).compiled, config, seam)
        return run

    def check(path: Path) -> None:
        """One current active key; every key in the cloud is in the store (none exists
        only in the cloud); the store's current key exists in the cloud."""
        config = load_config()
        seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
        cw = validate([path], config).compiled[0]
        cloud = connect(cw.provider, config, seam)
        assert cloud.keys is not None
        in_cloud = {k.key_id: k.status for k in cloud.keys.list_keys(cloud.desired(cw))}
        stored = cloud.store_for(cw.target).describe(cw.secret_name)
        assert set(in_cloud) <= stored.issued(), (in_cloud, stored.versions)
        assert in_cloud.get(stored.current_key() or "") == "active"

    calls = 0
    k = 1
    while k == 1 or k <= calls:
        path = folder / "key.yaml"
        path.write_text(_key_manifest(cloud, f"vendor-k{k}"))
        monkeypatch.delenv("WORKLOAD_IDS_CLOCK", raising=False)
        assert run_cli("apply", "--auto-approve", str(path)).code == 0
        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(start + timedelta(days=31)))
        if k == 1:
            calls = _library_run(rotation(path))  # the clean run's length
            assert calls >= 5
        else:
            _library_run(rotation(path), FailAt(k, "kill"))
            # The killed run's lock frees itself after its lease, as a dead process's does.
            monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(start + timedelta(days=31) + LEASE
                                                                 + timedelta(seconds=1)))
            assert run_cli("recover", str(path)).code == 0
            assert run_cli("rotate", str(path)).code == 0
        check(path)
        k += 1


def test_cleanup_converges_after_a_kill_at_every_call(cloud: Cloud, folder: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from workload_ids.audit import records
    from workload_ids.cleanup.workflow import cleanup
    for old in folder.glob("*.yaml"):
        old.unlink()
    Path("owners.yaml").write_text(OWNERS + "  - {id: alice, kind: person, active: false}\n")
    start = datetime.now(UTC) + timedelta(hours=2)

    def run(phase_days: float) -> Callable[[CallSeam], Any]:
        def go(seam: CallSeam) -> Any:
            monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(start + timedelta(days=phase_days)))
            return cleanup([folder], load_config(), seam, apply=True, delete_with_local_audit=True)
        return go

    for phase_days in (0.0, 8.0):
        calls, k = 0, 1
        while k == 1 or k <= calls:
            name = f"gone-{int(phase_days)}-{k}"
            path = folder / f"{name}.yaml"
            path.write_text(cloud.manifest(name, "").replace("owner: team-a", "owner: alice"))
            monkeypatch.delenv("WORKLOAD_IDS_CLOCK", raising=False)
            assert run_cli("apply", "--auto-approve", str(path)).code == 0
            if phase_days:
                _library_run(run(0.0))  # quarantined cleanly first; the kill hits the deletion
            if k == 1:
                calls = _library_run(run(phase_days))
            else:
                _library_run(run(phase_days), FailAt(k, "kill"))
                _library_run(run(phase_days))
            report = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
            mine = [i for i in report["identities"] if i["workload"] == name]
            if phase_days:
                assert mine == [], f"delete: kill at call {k}"
                bundles = [r for r in records(Path("audit.jsonl")) if r["action"] == "restore-bundle"
                           and name in r["workload"]]
                assert len(bundles) == 1, f"delete: kill at call {k}"
            else:
                assert [(i["status"], i["action"]) for i in mine] == [("owner-gone", None)], k
                assert mine[0]["quarantine"]["reason"] == "owner-gone"
            assert run_cli("audit", "verify").code == 0
            path.unlink()
            k += 1


# --- the workload lock (key mode) ----------------------------------------------------------

def _lock_for(path: Path) -> tuple[Any, str, Any]:
    """The real lock of ``path``'s workload (its provider's), its secret name and tags."""
    from workload_ids.clouds import connect
    from workload_ids.validate import validate
    config = load_config()
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    cw = validate([path], config).compiled[0]
    cloud = connect(cw.provider, config, seam)
    return cloud.lock_for(cw.target), cw.secret_name, cloud.desired(cw).tags


def _after_lease(monkeypatch: pytest.MonkeyPatch, leases: int = 1) -> None:
    """Move the clock past ``leases`` leases, as if that long passed without a renewal."""
    later = datetime.now(UTC) + leases * (LEASE + timedelta(seconds=2))
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(later))


def test_workload_lock_is_exclusive_expires_and_is_never_freed_by_a_stale_holder(
        cloud: Cloud, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workload_ids.providers.interface import Holder
    path = folder / "key.yaml"
    path.write_text(_key_manifest(cloud, "vendor-lock"))
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    lock, name, tags = _lock_for(path)
    a, b, c = (Holder.this_process(cmd) for cmd in ("rotate", "apply", "recover"))

    assert lock.try_acquire(name, a, tags) is None
    held = lock.try_acquire(name, b, tags)
    assert held is not None and held.holder == a.name and held.command == "rotate"
    assert lock.renew(name, a) is True
    assert lock.try_acquire(name, b, tags) is not None  # renewing kept it

    _after_lease(monkeypatch)  # a stopped renewing: its lease runs out
    assert lock.try_acquire(name, b, tags) is None
    assert lock.renew(name, a) is False  # a learns it lost the lock
    lock.release(name, a)  # and its release cannot free b's lock
    taken = lock.try_acquire(name, c, tags)
    assert taken is not None and taken.holder == b.name

    lock.release(name, b)
    assert lock.try_acquire(name, c, tags) is None
    lock.release(name, c)
    # The workload's keys are untouched by all of it, and a rotation runs normally.
    assert run_cli("rotate", "--now", "vendor-lock", str(path)).code == 0


def test_a_busy_workload_exits_4_and_changes_nothing_then_a_waiting_run_proceeds(
        secret_hygiene: Any, cloud: Cloud, folder: Path) -> None:
    import threading
    import time

    from workload_ids.providers.interface import Holder
    path = folder / "key.yaml"
    path.write_text(_key_manifest(cloud, "vendor-busy"))
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    lock, name, tags = _lock_for(path)
    other = Holder.this_process("rotate")
    assert lock.try_acquire(name, other, tags) is None

    def keys() -> list[dict[str, Any]]:
        listed = run_cli("rotate", str(path), "--output", "json")  # nothing due: no lock needed
        assert listed.code == 0, listed.out
        return list(json.loads(listed.out)["workloads"][0]["keys"])

    before = keys()
    busy = run_cli("rotate", "--now", "vendor-busy", "--lock-timeout", "0s", str(path), "--output", "json")
    assert busy.code == 4, busy.out + busy.err
    [report] = json.loads(busy.out)["workloads"]
    assert report["busy"] is True and report["actions"] == []
    assert other.name in report["error"] and "--lock-timeout" in report["error"]
    assert json.loads(busy.out)["summary"]["busy"] == 1
    text = run_cli("rotate", "--now", "vendor-busy", "--lock-timeout", "0s", str(path))
    assert text.code == 4 and "BUSY" in text.out and "1 busy" in text.out
    assert keys() == before

    threading.Timer(1.5, lock.release, (name, other)).start()
    started = time.monotonic()
    waited = run_cli("rotate", "--now", "vendor-busy", "--lock-timeout", "60s", str(path))
    assert waited.code == 0, waited.out + waited.err
    assert time.monotonic() - started >= 1.0  # it waited for the lock, then rotated
    assert [k["id"] for k in keys() if k["role"] == "current"] != \
        [k["id"] for k in before if k["role"] == "current"]
