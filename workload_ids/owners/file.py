"""An owner directory kept as a file: YAML (``owners: [...]``) or CSV.

CSV columns: ``id,kind,active,members,successor`` (the first row names them; only
``id``, ``kind`` and ``active`` are required); members separated by spaces or
semicolons; active is true/false (or yes/no, 1/0). Every problem is reported with the
``FILE:LINE:COLUMN`` of the value that causes it.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import functools
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import Diagnostic, InputErrors, Position
from ..manifest import shape_diagnostics
from ..yamlpos import Document, load_documents
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


CSV_COLUMNS = ("id", "kind", "active", "members", "successor")
_CSV_REQUIRED = ("id", "kind", "active")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


@dataclass(frozen=True, slots=True)
class _Located:
    """An entry, and where each of its fields is written (looked up only for a message:
    a file of thousands of owners should not pay for a table of positions)."""

    entry: _OwnerEntry
    position: Callable[[str], Position]


class FileDirectory:
    """Owners from a YAML or CSV file, loaded once."""

    name = "file"

    def __init__(self, owners: dict[str, Owner], path: str) -> None:
        self._owners = owners
        self.path = path

    @staticmethod
    def load(path: Path) -> FileDirectory:
        """Read a YAML or CSV owners file; raises InputErrors with positions when it is bad."""
        shown = str(path)
        try:
            # utf-8-sig: spreadsheets save CSV with a byte order mark.
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
            raise InputErrors([Diagnostic(Position(shown), f"cannot read the owners file: {exc}; "
                                                           "fix owners.path in the config")]) from None
        entries, problems = _csv(text, shown) if path.suffix.lower() == ".csv" else _yaml(text, shown)
        owners: dict[str, Owner] = {}
        first: dict[str, _Located] = {}
        for located in entries:
            entry = located.entry
            if entry.id in owners:
                line = first[entry.id].position("id").line
                problems.append(Diagnostic(located.position("id"), f"owner {entry.id!r} is listed twice "
                                                                   f"(first at line {line})"))
                continue
            if entry.kind == "person" and entry.members:
                problems.append(Diagnostic(located.position("members"),
                                           f"person {entry.id!r} cannot have members; make it a group"))
            first[entry.id] = located
            owners[entry.id] = Owner(entry.id, entry.kind, entry.active, tuple(entry.members),
                                     entry.successor or None)
        if problems:
            raise InputErrors(sorted(problems, key=_reading_order))
        return FileDirectory(owners, shown)

    def owners(self, ids: Iterable[str]) -> dict[str, Owner | None]:
        """OwnerDirectory.owners, from the file read at load (no I/O)."""
        return {i: self._owners.get(i) for i in ids}

    def members(self, group: Owner) -> dict[str, Owner | None]:
        """OwnerDirectory.members, from the file read at load (no I/O)."""
        return {m: self._owners.get(m) for m in group.members}


def _reading_order(problem: Diagnostic) -> tuple[int, int]:
    where = problem.position
    return (where.line, where.column) if where else (0, 0)


def _yaml(text: str, shown: str) -> tuple[list[_Located], list[Diagnostic]]:
    """The valid entries, and the problems of the others (entries are checked one by one,
    so that a listed-twice id is found even next to an entry of the wrong shape)."""
    docs, problems = load_documents(shown, text)
    if problems:
        raise InputErrors(problems)
    if len(docs) != 1 or not isinstance(docs[0].value, dict):
        where = docs[1].position(()) if len(docs) > 1 else docs[0].position(()) if docs else Position(shown)
        raise InputErrors([Diagnostic(where, "an owners file holds one mapping with an 'owners' list")])
    doc = docs[0]
    shape: list[Diagnostic] = []
    try:
        valid = list(enumerate(OwnersFile.model_validate(doc.value).owners))
    except ValidationError as exc:
        shape = _shape(exc, doc, OwnersFile)
        raw = doc.value.get("owners")
        valid = []
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            with contextlib.suppress(ValidationError):  # reported above
                valid.append((i, _OwnerEntry.model_validate(item)))
    return [_Located(entry, functools.partial(_yaml_position, doc, i)) for i, entry in valid], shape


def _yaml_position(doc: Document, index: int, name: str) -> Position:
    return doc.position(("owners", index, name))


def _shape(exc: ValidationError, doc: Document, root: type[BaseModel]) -> list[Diagnostic]:
    """Positioned messages for validation errors, in the order pydantic gives them."""
    out = shape_diagnostics(exc, doc, root)
    for i, item in enumerate(exc.errors(include_url=False)):
        if item["type"] in ("bool_type", "bool_parsing"):
            out[i] = Diagnostic(out[i].position, f"'active' must be true or false, not {item['input']!r}")
    return out


def _csv(text: str, shown: str) -> tuple[list[_Located], list[Diagnostic]]:
    """The valid rows, and the problems of the others (a bad header stops at once)."""
    rows = _csv_rows(text, shown)
    if not rows:
        raise InputErrors([Diagnostic(Position(shown, 1, 1), "the owners file is empty: write a header "
                                                             f"row ({','.join(CSV_COLUMNS)}) and one row "
                                                             "per owner")])
    header_line, header = rows[0][0], [h.strip() for h in rows[0][1]]
    line_starts = [0, *(i + 1 for i, ch in enumerate(text) if ch == "\n")]

    def cell(line: int, index: int) -> Position:
        return _cell_position(text, line_starts, shown, line, index)

    problems: list[Diagnostic] = []
    for i, name in enumerate(header):
        if name not in CSV_COLUMNS:
            close = difflib.get_close_matches(name, CSV_COLUMNS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(Diagnostic(cell(header_line, i), f"unknown column {name!r}{hint} "
                                                             f"(allowed: {', '.join(CSV_COLUMNS)})"))
        elif name in header[:i]:
            problems.append(Diagnostic(cell(header_line, i), f"column {name!r} appears twice in the header"))
    missing = [c for c in _CSV_REQUIRED if c not in header]
    if missing:
        problems.append(Diagnostic(cell(header_line, 0), "the CSV header must have id, kind, active "
                                                         "(and optionally members, successor); missing: "
                                                         f"{', '.join(missing)}"))
    if problems:
        raise InputErrors(problems)
    columns = {name: i for i, name in enumerate(header)}
    out: list[_Located] = []
    for line, row in rows[1:]:
        def where(name: str, line: int = line) -> Position:
            return cell(line, columns.get(name, 0))

        if len(row) > len(header):
            problems.append(Diagnostic(cell(line, len(header)), f"this row has {len(row)} cells but the "
                                                                f"header names {len(header)} columns"))
            continue
        values = {name: row[i].strip() if i < len(row) else "" for i, name in enumerate(header)}
        active = values["active"].lower()
        if active not in _TRUE + _FALSE:
            problems.append(Diagnostic(where("active"), f"'active' must be true or false, not "
                                                        f"{values['active']!r}"))
            continue
        data: dict[str, Any] = {
            "id": values["id"], "kind": values["kind"], "active": active in _TRUE,
            "members": values.get("members", "").replace(";", " ").split(),
            "successor": values.get("successor") or None}
        try:
            entry = _OwnerEntry.model_validate(data)
        except ValidationError as exc:
            messages = _shape(exc, Document(shown, 0, data), _OwnerEntry)
            problems.extend(Diagnostic(where(str(item["loc"][0])), message.message)
                            for item, message in zip(exc.errors(include_url=False), messages, strict=True))
            continue
        out.append(_Located(entry, where))
    return out, problems


def _csv_rows(text: str, shown: str) -> list[tuple[int, list[str]]]:
    """The non-blank records: the line each starts on, and its cells."""
    reader = csv.reader(io.StringIO(text, newline=""))
    out: list[tuple[int, list[str]]] = []
    while True:
        line = reader.line_num + 1  # the first physical line of the next record
        try:
            row = next(reader)
        except StopIteration:
            return out
        except csv.Error as exc:
            raise InputErrors([Diagnostic(Position(shown, line, 1), f"invalid CSV: {exc}")]) from None
        if any(cell.strip() for cell in row):
            out.append((line, row))


def _cell_position(text: str, line_starts: list[int], shown: str, line: int, index: int) -> Position:
    """Where cell ``index`` of the record starting on ``line`` starts (quoted cells may span
    lines); the record's start when it has fewer cells."""
    start = Position(shown, line, 1)
    found, column, quoted = 0, 1, False
    for offset in range(line_starts[line - 1], len(text)):  # up to the record's end only
        if found == index:
            break
        ch = text[offset]
        if ch in "\r\n":
            if not quoted:
                return start
            if ch == "\n":
                line, column = line + 1, 1
            continue
        if ch == '"':
            quoted = not quoted  # a doubled quote inside quotes toggles twice
        elif ch == "," and not quoted:
            found += 1
            if found == index:
                return Position(shown, line, column + 1)
        column += 1
    return start
