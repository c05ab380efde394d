"""The quarantine mark: one tag value, written and read by one pair of functions.

``since=2026-11-26T10:00:00Z reason=owner-gone delete-after=2026-12-03T10:00:00Z``
(plus ``keys=AKIA…+AKIA…`` for users: the keys the quarantine deactivated, so a release
reactivates exactly those). Times are UTC with a ``Z``; IAM tag values allow letters,
digits, spaces and ``_.:/=+-@`` only, hence the separators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from ..clock import ClockError, format_time, parse_time

MARK_TAG = "workload-ids:quarantine"
# Set when cleanup hands an identity to a successor: the manifest still names the old
# owner until someone edits it, and apply must not undo the transfer meanwhile.
TRANSFERRED_FROM_TAG = "workload-ids:transferred-from"

REASONS = ("no-manifest", "owner-gone", "unused")
_FIELD = re.compile(r"^(since|reason|delete-after|keys)=([A-Za-z0-9_.:/+@-]*)$")


class MarkError(ValueError):
    """A quarantine tag that is not in our form (edited by hand, or truncated)."""


@dataclass(frozen=True, slots=True)
class QuarantineMark:
    """When and why an identity was quarantined, and when it may be deleted.

    ``delete_after`` is None for reasons that never lead to deletion (``unused``).
    """

    since: datetime
    reason: str
    delete_after: datetime | None
    keys: tuple[str, ...] = field(default=())

    def due(self, now: datetime) -> bool:
        return self.delete_after is not None and now >= self.delete_after


def encode_mark(mark: QuarantineMark) -> str:
    """The tag value for ``mark``; the inverse of :func:`decode_mark`."""
    if mark.reason not in REASONS:
        raise ValueError(f"unknown quarantine reason {mark.reason!r}")
    parts = [f"since={format_time(mark.since)}", f"reason={mark.reason}"]
    if mark.delete_after is not None:
        parts.append(f"delete-after={format_time(mark.delete_after)}")
    if mark.keys:
        parts.append("keys=" + "+".join(mark.keys))
    return " ".join(parts)


def decode_mark(text: str) -> QuarantineMark:
    """Parse a tag value written by :func:`encode_mark`; :class:`MarkError` otherwise."""
    fields: dict[str, str] = {}
    for part in text.split():
        m = _FIELD.match(part)
        if m is None or m[1] in fields:
            raise MarkError(f"quarantine mark {text!r}: cannot read {part!r}")
        fields[m[1]] = m[2]
    if "since" not in fields or fields.get("reason") not in REASONS:
        raise MarkError(f"quarantine mark {text!r}: needs since= and a reason= of "
                        f"{', '.join(REASONS)}")
    try:
        since = parse_time(fields["since"], source="since")
        delete_after = parse_time(fields["delete-after"], source="delete-after") \
            if fields.get("delete-after") else None
    except ClockError as exc:
        raise MarkError(f"quarantine mark {text!r}: {exc}") from None
    if delete_after is not None and delete_after < since:
        raise MarkError(f"quarantine mark {text!r}: delete-after is before since")
    keys = tuple(k for k in fields.get("keys", "").split("+") if k)
    return QuarantineMark(since, fields["reason"], delete_after, keys)
