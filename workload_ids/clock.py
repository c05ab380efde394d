"""The one place time is read. ``WORKLOAD_IDS_CLOCK`` (ISO-8601 UTC) overrides it for
drills and tests; every command that decides by time says so in its output when it is
set. Times are always timezone-aware UTC: marks written with a local time or none were
a source of deletion bugs in peers."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

ENV = "WORKLOAD_IDS_CLOCK"


class ClockError(ValueError):
    """The clock override is not a valid ISO-8601 UTC time."""


def override() -> datetime | None:
    """The overridden time, or None when the real clock is used."""
    text = os.environ.get(ENV)
    if not text:
        return None
    return parse_time(text, source=ENV)


def now() -> datetime:
    """The current time (UTC), or the override."""
    return override() or datetime.now(UTC)


_STARTED = time.monotonic()


def lease_now() -> datetime:
    """The time that lock leases are judged by: ``now()``, but ticking even while the
    clock is overridden, so a run that waits for a lease sees it run out in a drill too."""
    fixed = override()
    if fixed is None:
        return datetime.now(UTC)
    return fixed + timedelta(seconds=time.monotonic() - _STARTED)


def parse_time(text: str, *, source: str = "time") -> datetime:
    """Parse an ISO-8601 time with an explicit UTC offset (``Z`` or ``+00:00``)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ClockError(f"{source}={text!r} is not an ISO-8601 time such as "
                         "2026-11-25T12:00:00Z") from None
    if value.tzinfo is None:
        raise ClockError(f"{source}={text!r} has no UTC offset; write it as 2026-11-25T12:00:00Z")
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """UTC, seconds precision, ``Z`` suffix: the one form marks and journals use."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def notice() -> str | None:
    """A line for outputs when the clock is overridden."""
    value = override()
    return f"clock overridden by {ENV}: {format_time(value)}" if value else None
