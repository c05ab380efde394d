"""The one clock type of the emulators, and the one clock tests move by hand.

Every emulator reads the time through a :data:`Clock`: seconds since the epoch, so
expiry windows, propagation and replication delays, leases and purge dates are plain
arithmetic, and a test moves time instead of sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], float]
"""Seconds since the epoch; ``time.time`` unless a test or the sandbox injects its own."""

_START = datetime(2026, 1, 1, tzinfo=UTC)


class ManualClock:
    """A clock for tests: stands still until told to move (thread-safe).

    Call it for the time in seconds since the epoch; :meth:`advance` moves it forward,
    and :attr:`now` reads or sets it directly."""

    def __init__(self, start: float | datetime = _START) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """The current time (seconds since the epoch) by this clock."""
        with self._lock:
            return self._now

    @property
    def now(self) -> float:
        """The time in seconds since the epoch."""
        with self._lock:
            return self._now

    @now.setter
    def now(self, value: float) -> None:
        with self._lock:
            self._now = float(value)

    def as_datetime(self) -> datetime:
        """The time as an aware UTC datetime."""
        return datetime.fromtimestamp(self(), UTC)

    def advance(self, seconds: float = 0.0, *, days: float = 0.0) -> float:
        """Move forward; returns the new time."""
        with self._lock:
            self._now += seconds + timedelta(days=days).total_seconds()
            return self._now
