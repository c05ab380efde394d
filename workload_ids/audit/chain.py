"""The trail's records as every store keeps them: their hash chain (the hashed text and
its digest, the genesis link), the outcome of a check, and what a cloud store lists and
must do. Below the local file and the signed sink alike, so neither imports the other
for these, and the stores import only this."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..calls import CallSeam

GENESIS = "0" * 64


# Left out of the hashed text: the hash itself, and the signature over it (a cloud sink's).
_UNHASHED = frozenset({"hash", "sig"})


def canonical(record: Mapping[str, Any]) -> str:
    """The exact text that is hashed: sorted keys, no whitespace, ``hash`` and ``sig`` left out."""
    body = {k: v for k, v in record.items() if k not in _UNHASHED}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the record's canonical text: the value stored as its ``hash``."""
    return hashlib.sha256(canonical(record).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of ``audit verify``."""

    ok: bool
    records: int
    head: str
    bad_line: int | None = None
    problem: str | None = None


RECORD_NAME = re.compile(r"^(\d{12})\.json$")
SEQ_WIDTH = 12


def record_name(seq: int) -> str:
    """A record's object name: its sequence number zero-padded, so names sort in chain order."""
    return f"{seq:0{SEQ_WIDTH}d}.json"


@dataclass
class Listing:
    """What an object store holds under ``PREFIX/records/``."""

    # seq -> what to read it by (an S3 version id, a GCS generation, a blob name)
    records: dict[int, str] = field(default_factory=dict)
    # object names under records/ that are not records
    strays: list[str] = field(default_factory=list)
    # seq -> what was written over the original since (S3: later versions, delete markers)
    overwritten: dict[int, str] = field(default_factory=dict)
    # whether a record was ever written, even if now hidden (S3 keeps versions and markers)
    history: bool = False


def listing_of(prefix: str, objects: list[tuple[str, str]]) -> Listing:
    """The :class:`Listing` of a store that keeps one version per name (GCS, Azure):
    ``objects`` are (name, what to read it by) under ``prefix``."""
    out = Listing()
    folder = f"{prefix}records/"
    out.history = any(name.startswith(folder) for name, _ in objects)
    for name, read_by in objects:
        if not name.startswith(folder):
            continue
        match = RECORD_NAME.match(name[len(folder):])
        if match is None:
            out.strays.append(name)
        else:
            out.records[int(match.group(1))] = read_by
    return out


class ObjectStore(Protocol):
    """One cloud's append-only store, as the signed sink needs it. Every method goes
    through ``seam`` and raises the SDK's own errors (the sink turns them into refusals)."""

    where: str
    provider: str

    def append_only(self, seam: CallSeam) -> str | None:
        """Why the store does not keep what is written (None when it does), with what to set."""

    def listing(self, seam: CallSeam) -> Listing:
        """The records (and anything else) under the prefix."""

    def read(self, seam: CallSeam, seq: int, handle: str) -> bytes:
        """Record ``seq``'s bytes, as the listing named it."""

    def create(self, seam: CallSeam, seq: int, data: bytes) -> bool:
        """Write record ``seq`` only if nothing has that name yet; False when something has."""

    def read_anchor(self, seam: CallSeam) -> bytes | None:
        """The latest head anchor, or None when none was written."""

    def write_anchor(self, seam: CallSeam, data: bytes) -> None:
        """Replace the head anchor (the store keeps the earlier ones where it can)."""
