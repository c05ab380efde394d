"""One lock per workload while its keys change, held in the cloud with a lease.

Two runs that change the same workload's keys at once would each issue a key (more keys
than the limit), and one run's recovery would delete the other's key before it is
stored. So every run that is about to change keys takes the workload's lock first, and
a run that finds it held waits for it (``credentials.lockTimeout``), then gives up with
exit code 4 ("busy, retry") and nothing changed. Runs with nothing to do take no lock.

The lock is a lease: its holder renews it every ``RENEW_EVERY`` while it works, and a
holder that dies stops renewing, so the lock frees itself ``LEASE`` after its last
renewal and the next run recovers what the dead one left (the rotation journal). Each
cloud holds it where it offers an atomic write:

- AWS: a lock secret in Secrets Manager, created only if absent (``CreateSecret`` fails
  on an existing name); a stale one is deleted by its exact ARN, so a breaker can never
  delete a newer lock.
- GCP: an annotation on the workload's own secret, written by etag compare-and-swap.
- Azure: a blob lease (Key Vault has no conditional write), 60 s, renewed by the holder;
  the blob's metadata names the holder.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from .. import clock
from ..calls import Killed
from ..errors import WorkloadIdsError

LEASE = timedelta(seconds=60)
RENEW_EVERY = 20.0  # seconds; three renewals fit in one lease
POLL = 2.0  # seconds between attempts while waiting for a held lock


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lock: host, process and a nonce, so two runs never share a name."""

    name: str
    command: str

    @staticmethod
    def this_process(command: str) -> Holder:
        """A holder for this process, named by host, pid and a random nonce."""
        host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:40]
        return Holder(f"{host or 'host'}/{os.getpid()}/{secrets.token_hex(3)}", command)


@dataclass(frozen=True, slots=True)
class LockRecord:
    """What a held lock says about its holder (``until`` is None where the cloud keeps
    the lease's end itself, as a blob lease does)."""

    holder: str
    command: str
    since: datetime | None
    until: datetime | None

    def encode(self) -> str:
        """The record as the text stored in the cloud (``-`` for a time it does not have)."""
        return (f"holder={self.holder} command={self.command} "
                f"since={clock.format_time(self.since) if self.since else '-'} "
                f"until={clock.format_time(self.until) if self.until else '-'}")

    @staticmethod
    def decode(text: str) -> LockRecord:
        """Parse a stored record; missing or bad times become None, so the lock reads as stale."""
        parts = dict(p.split("=", 1) for p in text.split() if "=" in p)

        def when(key: str) -> datetime | None:
            try:
                return clock.parse_time(parts.get(key, "-"))
            except ValueError:
                return None
        # An unreadable record has no end, so it counts as stale rather than held forever.
        return LockRecord(parts.get("holder", "unknown"), parts.get("command", "?"),
                          when("since"), when("until"))

    def live(self, now: datetime) -> bool:
        """True while the lease runs at ``now``; never when ``until`` is unknown."""
        return self.until is not None and now < self.until

    def describe(self) -> str:
        """Who holds the lock and until when, for the busy message."""
        since = f" since {clock.format_time(self.since)}" if self.since else ""
        until = (f", lease until {clock.format_time(self.until)}" if self.until
                 else f", lease renewed every {int(RENEW_EVERY)} s")
        return f"held by {self.holder} ({self.command}){since}{until}"


def new_record(holder: Holder) -> LockRecord:
    """A record for ``holder`` with a fresh lease from now (by the lease clock)."""
    now = clock.lease_now()
    return LockRecord(holder.name, holder.command, now, now + LEASE)


class KeyLock(Protocol):
    """A workload's lock in one cloud store. ``name`` is the workload's secret name."""

    def try_acquire(self, name: str, holder: Holder, tags: Mapping[str, str]) -> LockRecord | None:
        """Take the lock if it is free or its lease has run out: None when taken, else
        the record of whoever holds it. ``tags`` mark anything the lock creates as ours."""

    def renew(self, name: str, holder: Holder) -> bool:
        """Extend the lease; False when the lock is no longer ours."""

    def release(self, name: str, holder: Holder) -> None:
        """Free the lock if it is still ours."""


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
