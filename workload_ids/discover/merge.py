"""``workload-ids report merge``: the JSON documents of a sharded discover or inventory run
(``discover --shard I/N --output json``, ``inventory --shard I/N --output json``, one per
worker) combined into the one document an unsharded run of the same config writes.

Identities are deduplicated (discover's by provider and id, inventory's by provider,
target and name), targets unioned, the counts (discover) or summary (inventory)
recomputed, and the ``shard`` field is null again. Documents of the two kinds never mix.
A merge that could silently misreport is refused instead, naming the file: a document of
another kind or version, shards read with other settings, a shard missing or given twice,
a file that is not JSON. A missing shard is the dangerous one: the merged report would
look whole while a quarter of the organisation is absent from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import Diagnostic, InputErrors, Position
from .document import counts

KIND = "workload-ids/discover"
INVENTORY = "workload-ids/inventory"
VERSION = 1
# The command that writes each kind of document merge reads.
COMMANDS = {KIND: "discover", INVENTORY: "inventory"}
_WHAT = ("report merge combines the JSON documents `workload-ids discover --output json` (or "
         "`inventory --output json`) writes")


@dataclass(frozen=True, slots=True)
class Loaded:
    """One input document and where it came from (for positioned messages)."""

    path: str
    text: str
    document: dict[str, Any]

    def at(self, key: str) -> Position:
        """Where the document's top-level ``key`` is written (the file's start if nowhere)."""
        return key_position(self.path, self.text, key)

    @property
    def command(self) -> str:
        """``discover`` or ``inventory``: the command that wrote it (checked by :func:`load`)."""
        return COMMANDS[str(self.document["kind"])]

    @property
    def shard(self) -> tuple[int, int] | None:
        """(index, count), or None for a whole run."""
        shard = self.document.get("shard")
        return None if shard is None else (int(shard["index"]), int(shard["count"]))


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]]')


def key_position(path: str, text: str, key: str) -> Position:
    """The position of a top-level object key in a JSON text, found by scanning its tokens
    (strings and brackets) outside strings; the file's start if it is not there."""
    depth = 0
    for token in _TOKEN.finditer(text):
        value = token.group()
        if value in "{[":
            depth += 1
        elif value in "}]":
            depth -= 1
        elif depth == 1 and text[token.end():].lstrip()[:1] == ":" and json.loads(value) == key:
            start = token.start()
            line = text.count("\n", 0, start) + 1
            return Position(path, line, start - (text.rfind("\n", 0, start) + 1) + 1)
    return Position(path)


def _kind_of(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _shape(loaded: Loaded) -> list[Diagnostic]:
    """What makes this document unusable for a merge (its kind and version first)."""
    doc, problems = loaded.document, []
    if doc.get("kind") not in COMMANDS:
        return [Diagnostic(loaded.at("kind"), f"kind is {doc.get('kind')!r}, not {KIND!r} or {INVENTORY!r}: "
                           f"this is not a discover or inventory report; {_WHAT}")]
    command = COMMANDS[doc["kind"]]
    if doc.get("version") != VERSION:
        return [Diagnostic(loaded.at("version"), f"version {doc.get('version')!r} of the {command} document "
                           f"is not one this workload-ids reads ({VERSION}); merge documents written by "
                           "the same workload-ids version as this one, or run the merge with the version "
                           "that wrote them")]
    shapes = (("settings", dict), ("targets", list), ("identities", list)) if command == "discover" \
        else (("targets", list), ("identities", list), ("summary", dict))
    for key, kind in shapes:
        if not isinstance(doc.get(key), kind):
            problems.append(Diagnostic(
                loaded.at(key), f"{key} must be an {_kind_of(kind())}, not {_kind_of(doc.get(key))}: the "
                f"file is damaged or not a {command} document; write it again with `workload-ids "
                f"{command} --output json`"))
    shard = doc.get("shard")
    if shard is not None and not (
            isinstance(shard, dict) and all(type(shard.get(k)) is int for k in ("index", "count"))
            and 1 <= shard["index"] <= shard["count"]):
        problems.append(Diagnostic(loaded.at("shard"), f"shard must be null or {{\"index\": I, \"count\": "
                                   f"N}} with 1 <= I <= N, not {json.dumps(shard)}"))
    names = ("provider", "id") if command == "discover" else ("provider", "target", "identity")
    for n, identity in enumerate(doc.get("identities") or []):
        if not (isinstance(identity, dict) and all(isinstance(identity.get(k), str) for k in names)):
            problems.append(Diagnostic(loaded.at("identities"), f"identities[{n}] has no "
                                       f"{', '.join(names[:-1])} and {names[-1]}: the file is damaged; write "
                                       f"it again with `workload-ids {command} --output json`"))
            break
    for n, target in enumerate(doc.get("targets") or []):
        if not (isinstance(target, dict) and isinstance(target.get("provider"), str)
                and isinstance(target.get("target"), str)):
            problems.append(Diagnostic(loaded.at("targets"), f"targets[{n}] has no provider and target: "
                                       "the file is damaged; write it again"))
            break
    return problems


def load(path: str) -> Loaded:
    """Read one document; every problem raised as a positioned :class:`InputErrors`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise InputErrors([Diagnostic(Position(path), f"cannot read it ({reason}); {_WHAT}")]) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputErrors([Diagnostic(Position(path, exc.lineno, exc.colno),
                                      f"not JSON ({exc.msg}); {_WHAT}")]) from None
    if not isinstance(document, dict):
        raise InputErrors([Diagnostic(Position(path), f"a JSON {_kind_of(document)}, not a discover "
                                      f"or inventory document; {_WHAT}")])
    loaded = Loaded(path, text, document)
    problems = _shape(loaded)
    if problems:
        raise InputErrors(problems)
    return loaded


def _a(command: str) -> str:
    return ("an " if command[0] in "aeiou" else "a ") + command


def _label(shard: tuple[int, int]) -> str:
    return f"{shard[0]}/{shard[1]}"


def _together(loaded: Sequence[Loaded]) -> list[Diagnostic]:
    """What stops these documents from being one run: other settings, a mix of whole runs and
    shards, shards of different splits, a shard twice or missing."""
    first, problems = loaded[0], []
    mixed = [d for d in loaded if d.command != first.command]
    if mixed:
        # Before anything else: the other checks compare documents of one command.
        return [Diagnostic(d.at("kind"), f"{_a(d.command)} document, but {first.path} is {_a(first.command)} "
                           "document: report merge combines the shards of one run of one command; merge "
                           "the discover and the inventory documents separately") for d in mixed]
    command = first.command
    for other in loaded[1:]:
        if other.document.get("settings") != first.document.get("settings"):
            problems.append(Diagnostic(other.at("settings"), (
                f"settings {json.dumps(other.document['settings'], sort_keys=True)} differ from "
                f"{first.path}'s {json.dumps(first.document['settings'], sort_keys=True)}: the shards of "
                "one run are read with one config; rerun this shard with the same config")))
    whole = [d for d in loaded if d.shard is None]
    if whole:
        sharded = [d for d in loaded if d.shard is not None]
        if sharded:
            one = f"{sharded[0].path} is shard {_label(sharded[0].shard or (0, 0))}"
            problems += [Diagnostic(d.at("shard"), f"a whole run (shard: null), but {one}: report merge "
                                    f"combines the shards of one run (`{command} --shard I/N`), or renders "
                                    "one whole run alone") for d in whole]
        else:
            problems += [Diagnostic(d.at("shard"), f"a whole run (shard: null), as is {whole[0].path}: "
                                    f"report merge combines the shards of one run (`{command} --shard I/N`), "
                                    "or renders one whole run alone") for d in whole[1:]]
        return problems
    counts = {d.shard[1] for d in loaded if d.shard}
    if len(counts) > 1:
        return [*problems, *(Diagnostic(d.at("shard"), f"shard {_label(d.shard)}, but {first.path} is shard "
                                         f"{_label(first.shard or (0, 0))}: these are shards of different "
                                         "splits; merge the N shards of one run")
                             for d in loaded if d.shard and first.shard and d.shard[1] != first.shard[1])]
    seen: dict[int, Loaded] = {}
    for d in loaded:
        assert d.shard is not None
        if d.shard[0] in seen:
            earlier = seen[d.shard[0]].path
            said = "the same file, given twice" if earlier == d.path else f"{earlier} is shard " \
                f"{_label(d.shard)} too"
            problems.append(Diagnostic(d.at("shard"), f"shard {_label(d.shard)} again: {said}; pass "
                                       "each shard's document once"))
        seen.setdefault(d.shard[0], d)
    count = counts.pop()
    missing = [n for n in range(1, count + 1) if n not in seen]
    if missing:
        have = ", ".join(f"{n}/{count}" for n in sorted(seen))
        gone = ", ".join(f"{n}/{count}" for n in missing)
        problems.append(Diagnostic(None, f"have {have}: shard{'s' if len(missing) > 1 else ''} {gone} "
                                   f"{'are' if len(missing) > 1 else 'is'} missing; pass every shard's JSON "
                                   "document (rerun a shard whose job failed): a merge without it would "
                                   "look whole while its targets are absent"))
    return problems


_LONG_AGO = datetime.min.replace(tzinfo=UTC)


def _when(value: Any) -> datetime:
    """A document's time (naive ones read as UTC); an unreadable one sorts first."""
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else _LONG_AGO
    except ValueError:
        return _LONG_AGO
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def merge_documents(loaded: Sequence[Loaded]) -> dict[str, Any]:
    """One document from the shards of one run (checked by :func:`merge`)."""
    # The newest read of an identity or target wins where shards overlap (a project listed
    # under two folders): iterate oldest first.
    ordered = sorted(loaded, key=lambda d: (_when(d.document.get("generated")), d.shard or (0, 0)))
    inventory = loaded[0].command == "inventory"
    targets: dict[tuple[str, str], dict[str, Any]] = {}
    identities: dict[tuple[str, ...], dict[str, Any]] = {}
    for d in ordered:
        for t in d.document["targets"]:
            key = (t["provider"], t["target"])
            # A target some shard read beats one another shard failed to read.
            if key not in targets or t.get("status") == "read" or targets[key].get("status") != "read":
                targets[key] = t
        for i in d.document["identities"]:
            who: tuple[str, ...] = (i["provider"], i["target"], i["identity"]) if inventory \
                else (i["provider"], i["id"])
            identities[who] = i
    if inventory:
        # As `inventory --output json` writes it: rows by provider, target and name.
        found = [identities[k] for k in sorted(identities)]
        # The calls of every shard's run: what the whole took between them.
        spent = [d.document["summary"].get("apiCalls") for d in loaded]
        calls = sum(c for c in spent if type(c) is int)
        return {"kind": INVENTORY, "version": VERSION, "shard": None,
                "targets": [targets[k] for k in sorted(targets)], "identities": found,
                "summary": {"identities": len(found), "apiCalls": calls}}
    rows = sorted(identities.values(), key=lambda i: (i["provider"], i.get("target", ""), i.get("kind", ""),
                                                      i["id"]))
    # The run started when its first shard did.
    first = min(loaded, key=lambda d: (_when(d.document.get("generated")) is _LONG_AGO,
                                       _when(d.document.get("generated"))))
    merged = {"kind": KIND, "version": VERSION, "generated": first.document.get("generated"),
              "settings": loaded[0].document["settings"], "shard": None,
              "targets": [targets[k] for k in sorted(targets)], "identities": rows, "counts": counts(rows)}
    # Each shard's notes once (every shard says the same of the owner directory).
    notes = list(dict.fromkeys(n for d in ordered for n in d.document.get("notes") or ()))
    if notes:
        merged["notes"] = notes
    return merged


def merge(paths: Sequence[str]) -> dict[str, Any]:
    """Read, check and merge the documents at ``paths``; :class:`InputErrors` names each
    file that stops it (all of them at once)."""
    if not paths:
        raise InputErrors([Diagnostic(None, f"no file given; {_WHAT}")])
    loaded: list[Loaded] = []
    problems: list[Diagnostic] = []
    for path in paths:
        try:
            loaded.append(load(path))
        except InputErrors as exc:
            problems += exc.items
    if problems:
        raise InputErrors(problems)
    problems = _together(loaded)
    if problems:
        raise InputErrors(problems)
    return merge_documents(loaded)
