"""The one place time is read. ``WORKLOAD_IDS_CLOCK`` (ISO-8601 UTC) overrides it for
drills and tests; every command that decides by time says so in its output when it is
set. Times are always timezone-aware UTC: marks written with a local time or none were
a source of deletion bugs in peers.

A moved clock makes cleanup delete what is still in its grace period and rotation retire
keys early, so the variable alone changes nothing: the override is honoured only after
:func:`enable_override` (the CLI calls it once, at startup, for ``--drill`` or a run on
sandbox credentials only; the demo and the tests call it for themselves). Library code
that merely reads the time cannot turn it on.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from .errors import UserError

ENV = "WORKLOAD_IDS_CLOCK"

Mode = Literal["drill", "sandbox"]
# None: the variable is ignored. "drill": honoured everywhere (--drill, the demo, tests).
# "sandbox": honoured, but a client about to use real credentials refuses to be built.
_mode: Mode | None = None


class ClockError(ValueError):
    """The clock override is not a valid ISO-8601 UTC time."""


class RealCredentialsWithTestClock(UserError):
    """A sandbox run with a moved clock was about to reach a cloud with real credentials."""


def requested() -> str | None:
    """The raw value of ``WORKLOAD_IDS_CLOCK`` (whether or not it is honoured)."""
    return os.environ.get(ENV) or None


def enable_override(mode: Mode | None) -> Mode | None:
    """Honour ``WORKLOAD_IDS_CLOCK`` from now on (``mode``), or stop (None); returns the
    previous mode, so a caller can put it back."""
    global _mode
    previous, _mode = _mode, mode
    return previous


def check_real_credentials(provider: str, setting: str) -> None:
    """Called where a client would use real credentials: refused while a sandbox run
    honours a moved clock (a drill against a real cloud needs ``--drill``)."""
    if _mode == "sandbox" and requested():
        raise RealCredentialsWithTestClock(
            f"{ENV} is set and {provider} would use real credentials ({setting} is false): the moved "
            "clock is honoured on sandbox credentials only. Unset the variable, or pass --drill to "
            "run a drill against the real cloud on purpose")


def override() -> datetime | None:
    """The overridden time, or None when the real clock is used (always, until
    :func:`enable_override`)."""
    if _mode is None:
        return None
    text = requested()
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
