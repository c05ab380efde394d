"""State that the worker threads of one command share (apply, rotate and cleanup run up to
``calls.concurrency`` workloads at once on threads of one process), and threads that must
not outlive their command. Each test makes a missing guard show at once or within a second
or two (many threads released together, a switch interval of a microsecond, a slow step)
instead of once in many CI runs."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from workload_ids.audit import open_store
from workload_ids.calls import CallSeam
from workload_ids.config import Config, ConfigFile

THREADS = 8


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads switch every microsecond (CPython's default is 5 ms): a race shows often."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


MIN_TRIALS = 60


def _race(make: Callable[[], object], each: Callable[[object, int], None],
          lost: Callable[[object], bool], seconds: float = 2.0) -> tuple[int, int]:
    """Until ``seconds`` pass and at least MIN_TRIALS were run (a loaded machine runs fewer
    a second: the count, not the clock, is what makes a missing guard show): a fresh
    object, THREADS threads released at once running ``each(obj, i)``, then ``lost(obj)``.
    Returns (trials, trials that lost something)."""
    trials = failures = 0
    deadline = time.monotonic() + seconds
    while trials < MIN_TRIALS or time.monotonic() < deadline:
        obj = make()
        start = threading.Barrier(THREADS)

        def run(i: int, obj: object = obj, start: threading.Barrier = start) -> None:
            start.wait()
            each(obj, i)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        trials += 1
        failures += lost(obj)
    return trials, failures


def test_azure_key_mode_keeps_every_application_id_when_workloads_run_at_once(
        busy_switching: None) -> None:
    """Each key-mode workload remembers its application's ids on the key backend its thread
    shares with the others. The table used to be made on first use: two threads that both
    found none each made one and the later replaced the earlier, losing its entry, and the
    Key Vault secret written next held an empty clientId."""
    from workload_ids.clouds import connect
    from workload_ids.providers.azure.keys import AzureKeys
    config = Config(ConfigFile.model_validate({}), Path.cwd(), None)

    def remember(keys: object, i: int) -> None:
        assert isinstance(keys, AzureKeys)
        keys._remember({"displayName": f"wid-app-{i}", "appId": f"app-{i}", "id": f"object-{i}"})

    def lost(keys: object) -> bool:
        assert isinstance(keys, AzureKeys)
        return any(keys._app_ids.get(f"wid-app-{i}") != f"app-{i}" for i in range(THREADS))

    trials, failures = _race(lambda: connect("azure", config, CallSeam()).keys, remember, lost)
    assert trials >= MIN_TRIALS and failures == 0, f"{failures} of {trials} runs lost an application id"


def test_a_refused_fleet_plan_leaves_no_read_running(bare_aws: Any, manifests: Any) -> None:
    """A folder's plan reads each account on a background thread while the manifests are
    checked. When the plan is refused (here: no OIDC provider), that read used to go on
    after the command had returned, calling the cloud on threads that share the caller's
    seam and providers, and racing whatever the caller did next (a test resetting moto)."""
    from support.aws import workload
    from support.cli import run_cli

    from workload_ids import calls
    folder = manifests({f"svc-{i}.yaml": workload(f"svc-{i}") for i in range(3)})
    seen: list[tuple[float, str]] = []
    calls.CALL_HOOKS.append(lambda record: seen.append((time.monotonic(), record.operation)))
    try:
        for _ in range(5):
            result = run_cli("plan", str(folder))
            returned = time.monotonic()
            assert result.code == 1 and "has no IAM OIDC identity provider" in result.err, result.err
            time.sleep(0.1)
            late = [operation for at, operation in seen if at > returned]
            assert late == [], f"called after the command returned: {late}"
            seen.clear()
    finally:
        calls.CALL_HOOKS.pop()


def test_threads_that_open_the_audit_sink_at_once_share_one_trail_state() -> None:
    """The sink's state (its lock, the signing key, the known tail) is made once per config
    and shared by every command thread that writes records. Making it builds an SDK client,
    a few hundred ms: threads that opened the sink at once used to make one each (every
    time, measured), and appends under different locks no longer excluded each other."""
    from workload_ids.audit.sink import SignedSink

    def config() -> Config:
        return Config(ConfigFile.model_validate(
            {"audit": {"sink": {"url": "s3://audit-trail/prod", "signingKey": "workload-ids/audit-key"}}}),
            Path.cwd(), None)
    seam = CallSeam()
    open_store(config(), seam)  # imports done: the threads below all build a client at once
    fresh = config()
    sinks: list[SignedSink] = []
    start = threading.Barrier(4)

    def open_sink() -> None:
        start.wait()
        sinks.append(open_store(fresh, seam))
    threads = [threading.Thread(target=open_sink) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sinks) == 4 and len({id(s._shared) for s in sinks}) == 1


class _SlowRenewals:
    """A KeyLock whose renewals take a while, and which notes a release that overlaps one."""

    def __init__(self) -> None:
        self.renewing = threading.Event()
        self.in_flight = 0
        self.overlapped: list[str] = []

    def try_acquire(self, name: str, holder: Any, tags: Any) -> None:
        return None

    def renew(self, name: str, holder: Any) -> bool:
        self.in_flight += 1
        self.renewing.set()
        time.sleep(0.3)
        self.in_flight -= 1
        return True

    def release(self, name: str, holder: Any) -> None:
        if self.in_flight:
            self.overlapped.append("release")


def test_a_released_lock_is_renewed_no_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease keeper renews from its own thread. Its stop used to only raise a flag: a
    renewal under way went on while the lock was released and after the command returned."""
    from datetime import timedelta

    from workload_ids.keys import lease
    from workload_ids.providers.interface import Holder
    monkeypatch.setattr(lease, "RENEW_EVERY", 0.01)
    lock = _SlowRenewals()
    with lease.hold(lock, "wid/prod/vendor-sync", Holder("host/1/abc", "rotate"), {},
                        workload="prod/vendor-sync", wait=timedelta(0), sleep=time.sleep):
        assert lock.renewing.wait(5)
    assert (lock.overlapped, lock.in_flight) == ([], 0)
