"""An owner directory kept as a file: YAML (``owners: [...]``) or CSV.

CSV columns: ``id,kind,active,members,successor``; members separated by spaces or
semicolons; active is true/false.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import Diagnostic, InputErrors, Position
from ..manifest import shape_diagnostics
from ..yamlpos import load_documents
from .interface import Owner


class _OwnerEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=128)]
    kind: Literal["person", "group"]
    active: bool
    members: list[str] = []
    successor: str | None = None


class OwnersFile(BaseModel):
    """The YAML form: ``owners:`` and a list of entries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owners: list[_OwnerEntry]


class FileDirectory:
    """Owners from a YAML or CSV file, loaded once."""

    name = "file"

    def __init__(self, owners: dict[str, Owner], path: str) -> None:
        self._owners = owners
        self.path = path

    @staticmethod
    def load(path: Path) -> FileDirectory:
        shown = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputErrors([Diagnostic(Position(shown), f"cannot read the owners file: {exc}; "
                                                           "fix owners.path in the config")]) from None
        entries = _csv(text, shown) if path.suffix.lower() == ".csv" else _yaml(text, shown)
        owners: dict[str, Owner] = {}
        problems: list[Diagnostic] = []
        for entry, where in entries:
            if entry.id in owners:
                problems.append(Diagnostic(where, f"owner {entry.id!r} is listed twice"))
                continue
            if entry.kind == "person" and entry.members:
                problems.append(Diagnostic(where, f"person {entry.id!r} cannot have members"))
            owners[entry.id] = Owner(entry.id, entry.kind, entry.active, tuple(entry.members),
                                     entry.successor)
        if problems:
            raise InputErrors(problems)
        return FileDirectory(owners, shown)

    def owners(self, ids: Iterable[str]) -> dict[str, Owner | None]:
        return {i: self._owners.get(i) for i in ids}

    def members(self, group: Owner) -> dict[str, Owner | None]:
        return {m: self._owners.get(m) for m in group.members}


def _yaml(text: str, shown: str) -> list[tuple[_OwnerEntry, Position]]:
    docs, problems = load_documents(shown, text)
    if problems:
        raise InputErrors(problems)
    if len(docs) != 1 or not isinstance(docs[0].value, dict):
        raise InputErrors([Diagnostic(Position(shown), "an owners file holds one mapping with an "
                                                       "'owners' list")])
    try:
        parsed = OwnersFile.model_validate(docs[0].value)
    except ValidationError as exc:
        raise InputErrors(shape_diagnostics(exc, docs[0], OwnersFile)) from None
    return [(entry, docs[0].position(("owners", i))) for i, entry in enumerate(parsed.owners)]


def _csv(text: str, shown: str) -> list[tuple[_OwnerEntry, Position]]:
    reader = csv.DictReader(io.StringIO(text))
    expected = {"id", "kind", "active"}
    if not reader.fieldnames or not expected <= set(reader.fieldnames):
        raise InputErrors([Diagnostic(Position(shown, 1, 1),
                                      "the CSV header must have id, kind, active (and optionally "
                                      "members, successor)")])
    out: list[tuple[_OwnerEntry, Position]] = []
    problems: list[Diagnostic] = []
    for number, row in enumerate(reader, 2):
        where = Position(shown, number, 1)
        active = (row.get("active") or "").strip().lower()
        if active not in ("true", "false", "yes", "no", "1", "0"):
            problems.append(Diagnostic(where, f"active must be true or false, not {row.get('active')!r}"))
            continue
        members = [m for m in (row.get("members") or "").replace(";", " ").split() if m]
        try:
            entry = _OwnerEntry(id=(row.get("id") or "").strip(), kind=(row.get("kind") or "").strip(),  # type: ignore[arg-type]
                                active=active in ("true", "yes", "1"), members=members,
                                successor=(row.get("successor") or "").strip() or None)
        except ValidationError as exc:
            problems.extend(Diagnostic(where, f"{'.'.join(map(str, e['loc']))}: {e['msg']}")
                            for e in exc.errors(include_url=False))
            continue
        out.append((entry, where))
    if problems:
        raise InputErrors(problems)
    return out
