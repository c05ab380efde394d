"""One lock per workload while its keys change, held in the cloud with a lease.

Two runs that change the same workload's keys at once would each issue a key (more keys
than the limit), and one run's recovery would delete the other's key before it is
stored. So every run that is about to change keys takes the workload's lock first, and
a run that finds it held waits for it (``credentials.lockTimeout``), then gives up with
exit code 4 ("busy, retry") and nothing changed. Runs with nothing to do take no lock.
Apply takes it too, around a change whose identity's name the cloud does not keep
unique (an Entra application), so two pipelines never create two.

The lock is a lease (:data:`~workload_ids.providers.interface.LEASE`): its holder renews
it in the background while it works, and a holder that dies stops renewing, so the lock
frees itself and the next run recovers what the dead one left (the rotation journal).
Each cloud keeps it where it offers an atomic write (its ``lock.py``).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from .. import clock
from ..calls import Killed
from ..errors import WorkloadIdsError
from ..providers.interface import LEASE, RENEW_EVERY, Holder, KeyLock, LockRecord

POLL = 2.0  # seconds between attempts while waiting for a held lock


class LockBusy(WorkloadIdsError):
    """Another run holds the workload's lock (exit code 4: retry later)."""

    def __init__(self, workload: str, record: LockRecord, waited: float) -> None:
        self.record = record
        after = (f"retry after {clock.format_time(record.until)}" if record.until
                 else f"retry in {int(LEASE.total_seconds())} s")
        super().__init__(f"{workload}: busy: its keys are being changed by another run, "
                         f"{record.describe()}; waited {waited:.0f} s and changed nothing. "
                         f"{after}, or wait longer with --lock-timeout")


class LockLost(WorkloadIdsError):
    """The lease ran out while this run held it (the process stalled for a minute)."""


class HeldLock:
    """A lock this run holds, renewed in the background until it is released."""

    def __init__(self, lock: KeyLock, name: str, holder: Holder) -> None:
        self.lock = lock
        self.name = name
        self.holder = holder
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name=f"lease {name}", daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                if not self.lock.renew(self.name, self.holder):
                    self.lost = True
                    return
            except Exception:  # a failed renewal is retried at the next tick  # nosec B112
                continue

    def check(self, workload: str) -> None:
        """Stop before a change if the lease was lost: another run may own the keys now."""
        if self.lost:
            raise LockLost(f"{workload}: this run lost its lock on {self.name} (its lease ran out "
                           "while the process stalled); it stopped before changing anything "
                           "else. Rerun: the next run recovers what this one left")

    def stop(self) -> None:
        """End the renewals, waiting for one under way: a renewal still in flight when the
        lock is released (or the command returns) races the release in the cloud and
        outlives the command's run."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


@contextlib.contextmanager
def hold(lock: KeyLock, name: str, holder: Holder, tags: Mapping[str, str], *, workload: str,
         wait: timedelta, sleep: Any) -> Iterator[HeldLock]:
    """Hold the workload's lock for the block, waiting up to ``wait`` for it.

    A run killed inside the block leaves the lock held, as a dead process would; the
    lease frees it. Any other way out releases it."""
    polls = int(wait.total_seconds() / POLL)
    waited = 0.0
    jitter = random.Random()  # spreads waiting runs apart; not a secret  # nosec B311
    while True:
        record = lock.try_acquire(name, holder, tags)
        if record is None:
            break
        if polls <= 0:
            raise LockBusy(workload, record, waited)
        polls -= 1
        pause = POLL * jitter.uniform(0.5, 1.0)
        sleep(pause)
        waited += pause
    held = HeldLock(lock, name, holder)
    try:
        yield held
    except Killed:
        held.stop()
        raise
    except BaseException:
        held.stop()
        with contextlib.suppress(Exception):  # the lease frees it if this fails too
            lock.release(name, holder)
        raise
    held.stop()
    with contextlib.suppress(Exception):  # nothing is lost: the lease frees it
        lock.release(name, holder)
