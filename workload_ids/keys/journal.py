"""The marks a rotation keeps in the secret store's metadata: the journal written before a
key is created, and when each retired key's grace period started."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .. import clock


@dataclass(frozen=True, slots=True)
class Journal:
    """A rotation in progress: written before the key is created."""

    since: datetime
    previous: str | None
    existing: tuple[str, ...]  # keys on the identity when the entry was written

    def encode(self) -> str:
        """The journal as the text stored in the secret's journal tag."""
        return (f"create-key since={clock.format_time(self.since)} prev={self.previous or '-'} "
                f"keys={'/'.join(self.existing) or '-'}")

    @staticmethod
    def decode(text: str) -> Journal | None:
        """Parse a journal tag; None for text we did not write, which recovery then ignores."""
        parts = dict(p.split("=", 1) for p in text.split()[1:] if "=" in p)
        try:
            since = clock.parse_time(parts["since"])
        except (KeyError, ValueError):
            return None
        prev = parts.get("prev")
        existing = tuple(k for k in parts.get("keys", "-").split("/") if k and k != "-")
        return Journal(since=since, previous=None if prev in (None, "-") else prev, existing=existing)


def decode_retired(text: str) -> dict[str, datetime]:
    """``KEY=TIME KEY=TIME`` -> when each key's grace period started."""
    out: dict[str, datetime] = {}
    for part in text.split():
        key, _, when = part.partition("=")
        try:
            out[key] = clock.parse_time(when)
        except ValueError:
            continue
    return out


def encode_retired(marks: dict[str, datetime]) -> str:
    """Retirement marks as the text of the retired tag: ``KEY=TIME`` pairs sorted by key."""
    return " ".join(f"{k}={clock.format_time(v)}" for k, v in sorted(marks.items()))


__all__ = ["Journal", "decode_retired", "encode_retired"]
