"""The workload lock (key mode) on every provider: exclusive, expiring after its lease and
never freed by a stale holder; a busy workload exits 4 and changes nothing, and a waiting
run proceeds once the lock is free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.contract import Cloud, _after_lease, _key_manifest, _lock_for


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
