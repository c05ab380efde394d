"""Durations as people write them in manifests and config: ``90s``, ``15m``, ``12h``, ``30d``."""

from __future__ import annotations

import re
from datetime import timedelta

# The form in JSON Schema's (and JavaScript's) dialect too: workload_ids.schema shows it to editors.
DURATION = r"\d{1,6}[smhdw]"
_DURATION = re.compile(r"(?P<n>\d{1,6})(?P<unit>[smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: object) -> timedelta:
    """Parse ``text`` as a duration; raise ValueError with a message that shows the form."""
    if not isinstance(text, str):
        raise ValueError(f"a duration is a string like '12h' or '30d', not {text!r}")
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and one unit, "
            "s (seconds), m (minutes), h (hours), d (days) or w (weeks), e.g. '12h' or '30d'")
    return timedelta(seconds=int(m["n"]) * _UNIT_SECONDS[m["unit"]])


def format_duration(value: timedelta) -> str:
    """The shortest exact form of ``value`` (``timedelta(hours=36)`` -> ``36h``)."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
