"""Crash safety on every provider: apply, rotation and cleanup, killed at every call (or
every third) through the library, converge on the next run with nothing lost or left
behind."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.contract import OWNERS, Cloud, _key_manifest, _library_run

from workload_ids.calls import CallSeam, FailAt, Killed, RetryPolicy
from workload_ids.clock import format_time
from workload_ids.config import load_config
from workload_ids.providers.interface import LEASE


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


def _tear_down(path: Path) -> None:
    """Delete ``path``'s quarantined identity, so the next round's cleanup reads what the
    clean run read and its kill lands on the step it is meant for (not on a read of an
    earlier round's identity); it also keeps each round as fast as the first."""
    from workload_ids.clouds import connect
    from workload_ids.validate import validate
    config = load_config()
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    cw = validate([path], config).compiled[0]
    cloud = connect(cw.provider, config, seam)
    observed = cloud.identities.observe_one(cloud.desired(cw))
    assert observed is not None
    cloud.leavers.delete(observed)


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
                _tear_down(path)
            assert run_cli("audit", "verify").code == 0
            path.unlink()
            k += 1
