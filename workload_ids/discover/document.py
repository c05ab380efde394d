"""The JSON document of a discover run (``--output json``): what ``report merge`` reads
and the HTML page is made from. Times are UTC with a trailing ``Z``; identities are sorted
by (provider, target, kind, id); nothing in it is a secret (a credential is its id, dates
and state).

:func:`from_document` reads a document back, checking its shape, so a merged or rendered
report never rests on a file that only looks like one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from ..clock import ClockError, format_time, parse_time
from ..discovered import Credential, DiscoveredIdentity, Grant, Principal, UsageSignal
from ..durations import parse_duration
from ..errors import UserError
from .findings import RULES, Finding, Settings
from .owners import Ownership
from .workflow import DiscoverReport, JudgedIdentity, TargetResult

KIND = "workload-ids/discover"
VERSION = 1
NO_OWNER = "(none)"


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def identity_json(j: JudgedIdentity) -> dict[str, Any]:
    """One identity as the document holds it."""
    i = j.identity
    return {
        "provider": i.provider, "target": i.target, "kind": i.kind, "id": i.id, "name": i.name,
        "created": _t(i.created), "managed": i.managed, "serviceLinked": i.service_linked,
        "owner": j.ownership.owner, "ownerSource": j.ownership.source,
        "lastUsed": _t(i.last_used()), "description": i.description,
        "tags": dict(sorted(i.tags.items())),
        "principals": [{"kind": p.kind, "value": p.value, "detail": p.detail, "external": p.external,
                        "wildcard": p.wildcard} for p in i.principals],
        "grants": [{"actions": list(g.actions), "resources": list(g.resources), "source": g.source,
                    "conditional": g.conditional} for g in i.grants],
        "credentials": [{"id": c.id, "kind": c.kind, "created": _t(c.created), "expires": _t(c.expires),
                         "lastUsed": _t(c.last_used), "active": c.active} for c in i.credentials],
        "usage": [{"signal": u.signal, "at": _t(u.at), "windowDays": u.window_days} for u in i.usage],
        "unread": list(i.unread),
        "findings": [f.as_json() for f in j.findings],
    }


def counts(identities: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """The document's ``counts`` from its identities: findings per code and per OWASP
    category (each finding once), identities per owner (``(none)`` for no owner); keys
    sorted. One function for a run's document and for merged shards, so the two agree."""
    findings: dict[str, int] = {}
    categories: dict[str, int] = {}
    owners: dict[str, int] = {}
    for identity in identities:
        owner = identity.get("owner") or NO_OWNER
        owners[owner] = owners.get(owner, 0) + 1
        for f in identity.get("findings") or []:
            findings[f["code"]] = findings.get(f["code"], 0) + 1
            categories[f["category"]] = categories.get(f["category"], 0) + 1
    return {"findings": dict(sorted(findings.items())), "categories": dict(sorted(categories.items())),
            "owners": dict(sorted(owners.items()))}


def _head(report: DiscoverReport) -> dict[str, Any]:
    """The document's fields before ``identities``."""
    targets = []
    for t in report.targets:
        entry: dict[str, Any] = {"provider": t.provider, "target": t.target, "status": t.status,
                                 "identities": t.identities}
        if t.error is not None:
            entry["error"] = t.error
        targets.append(entry)
    return {
        "kind": KIND, "version": VERSION, "generated": format_time(report.generated),
        "settings": report.settings.as_json(),
        "shard": {"index": report.shard[0], "count": report.shard[1]} if report.shard else None,
        "targets": targets,
    }


def to_document(report: DiscoverReport) -> dict[str, Any]:
    """The report as the JSON document (a dict ready for ``json.dumps``)."""
    doc = _head(report)
    doc["identities"] = [identity_json(j) for j in report.identities]
    doc["counts"] = counts(doc["identities"])
    if report.notes:
        doc["notes"] = list(report.notes)
    return doc


# --- the document as text --------------------------------------------------------------
#
# ``discover --output json`` writes ``json.dumps(to_document(report), indent=2)``. For
# 11,000 identities, building their dicts and then walking them again to indent them
# was most of the run's work after the last answer; :func:`to_json_text` writes the
# same bytes straight from the report (tests hold the two equal on documents with every
# field filled). A field added to :func:`identity_json` goes into :func:`_identity_text`.

_NL = "\n"


def _str(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _when(value: datetime | None) -> str:
    return "null" if value is None else encode_basestring_ascii(format_time(value))


def _object(fields: Iterable[tuple[str, str]], pad: str) -> str:
    """An object of already-written values whose closing brace sits at ``pad``."""
    inner = f",{_NL}{pad}  "
    body = inner.join(f"{encode_basestring_ascii(k)}: {v}" for k, v in fields)
    return f"{{{_NL}{pad}  {body}{_NL}{pad}}}" if body else "{}"


def _array(items: Iterable[str], pad: str) -> str:
    """An array of already-written values whose closing bracket sits at ``pad``."""
    body = f",{_NL}{pad}  ".join(items)
    return f"[{_NL}{pad}  {body}{_NL}{pad}]" if body else "[]"


def _identity_text(j: JudgedIdentity, pad: str) -> str:
    """``identity_json(j)`` as indented JSON, its closing brace at ``pad``: written out
    field by field (one template per kind of object: the fastest Python has)."""
    i = j.identity
    k1 = f",{_NL}{pad}  "  # between the identity's fields
    p1, p2 = pad + "  ", pad + "    "
    k3 = f",{_NL}{pad}      "  # between the fields of an object in one of its lists
    o3, c3 = f"{{{_NL}{pad}      ", f"{_NL}{p2}}}"  # such an object's opening and closing
    principals = _array((
        f'{o3}"kind": {_str(p.kind)}{k3}"value": {_str(p.value)}{k3}"detail": {_str(p.detail)}'
        f'{k3}"external": {_flag(p.external)}{k3}"wildcard": {_flag(p.wildcard)}{c3}'
        for p in i.principals), p1)
    grants = _array((
        f'{o3}"actions": {_array(map(_str, g.actions), pad + "      ")}'
        f'{k3}"resources": {_array(map(_str, g.resources), pad + "      ")}'
        f'{k3}"source": {_str(g.source)}{k3}"conditional": {_flag(g.conditional)}{c3}'
        for g in i.grants), p1)
    credentials = _array((
        f'{o3}"id": {_str(c.id)}{k3}"kind": {_str(c.kind)}{k3}"created": {_when(c.created)}'
        f'{k3}"expires": {_when(c.expires)}{k3}"lastUsed": {_when(c.last_used)}'
        f'{k3}"active": {_flag(c.active)}{c3}'
        for c in i.credentials), p1)
    usage = _array((
        f'{o3}"signal": {_str(u.signal)}{k3}"at": {_when(u.at)}'
        f'{k3}"windowDays": {"null" if u.window_days is None else int(u.window_days)}{c3}'
        for u in i.usage), p1)
    findings = _array((
        f'{o3}"code": {_str(f.code)}{k3}"category": {_str(f.category)}'
        f'{k3}"categoryName": {_str(f.category_name)}{k3}"severity": {_str(f.severity)}'
        f'{k3}"message": {_str(f.message)}{c3}'
        for f in j.findings), p1)
    tags = _object(((k, _str(v)) for k, v in sorted(i.tags.items())), p1)
    return (
        f'{{{_NL}{p1}"provider": {_str(i.provider)}{k1}"target": {_str(i.target)}{k1}"kind": {_str(i.kind)}'
        f'{k1}"id": {_str(i.id)}{k1}"name": {_str(i.name)}{k1}"created": {_when(i.created)}'
        f'{k1}"managed": {_flag(i.managed)}{k1}"serviceLinked": {_flag(i.service_linked)}'
        f'{k1}"owner": {_str(j.ownership.owner)}{k1}"ownerSource": {_str(j.ownership.source)}'
        f'{k1}"lastUsed": {_when(i.last_used())}{k1}"description": {_str(i.description)}'
        f'{k1}"tags": {tags}{k1}"principals": {principals}{k1}"grants": {grants}'
        f'{k1}"credentials": {credentials}{k1}"usage": {usage}'
        f'{k1}"unread": {_array(map(_str, i.unread), p1)}{k1}"findings": {findings}{_NL}{pad}}}')


def to_json_text(report: DiscoverReport) -> str:
    """Exactly ``json.dumps(to_document(report), indent=2)``, without the dicts."""
    from ..jsontext import dumps_indented

    def nested(value: Any) -> str:  # a value one level down: every line moved right by two
        return dumps_indented(value).replace(_NL, _NL + "  ")

    fields = [(k, nested(v)) for k, v in _head(report).items()]
    fields.append(("identities", _array((_identity_text(j, "    ") for j in report.identities), "  ")))
    brief = ({"owner": j.ownership.owner, "findings": [{"code": f.code, "category": f.category}
                                                         for f in j.findings]}
             for j in report.identities)
    fields.append(("counts", nested(counts(brief))))
    if report.notes:
        fields.append(("notes", nested(list(report.notes))))
    return _object(fields, "")


# --- reading a document back -----------------------------------------------------------


class _Reader:
    """Reads one document, naming where a value is wrong (``identities[3].kind``)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, message: str) -> UserError:
        return UserError(f"{self.where}: {path}: {message}; it is not a discover document "
                         "(`workload-ids discover --output json` writes one)")

    def obj(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "expected an object")
        return value

    def lst(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, "expected a list")
        return value

    def text(self, value: Any, path: str, *, optional: bool = False) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(path, "expected a string")
        return value

    def flag(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "expected true or false")
        return value

    def time(self, value: Any, path: str) -> datetime | None:
        if value is None:
            return None
        try:
            return parse_time(self.text(value, path), source=path)
        except ClockError as exc:
            raise self.fail(path, str(exc)) from None

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        return tuple(self.text(v, f"{path}[{n}]") for n, v in enumerate(self.lst(value, path)))


def from_document(doc: Any, where: str = "the document") -> DiscoverReport:
    """Read a document :func:`to_document` wrote (a UserError naming the bad field if not)."""
    r = _Reader(where)
    root = r.obj(doc, "(top)")
    if root.get("kind") != KIND:
        raise r.fail("kind", f"expected {KIND!r}")
    if root.get("version") != VERSION:
        raise r.fail("version", f"expected {VERSION} (this workload-ids reads version {VERSION})")
    settings_doc = r.obj(root.get("settings"), "settings")
    try:
        settings = Settings(parse_duration(settings_doc.get("maxKeyAge")),
                            parse_duration(settings_doc.get("unusedAfter")))
    except ValueError as exc:
        raise r.fail("settings", str(exc)) from None
    generated = r.time(root.get("generated"), "generated")
    if generated is None:
        raise r.fail("generated", "expected a time")
    shard_doc = root.get("shard")
    shard = None
    if shard_doc is not None:
        s = r.obj(shard_doc, "shard")
        if not (isinstance(s.get("index"), int) and isinstance(s.get("count"), int)):
            raise r.fail("shard", "expected {index, count} as whole numbers")
        shard = (int(s["index"]), int(s["count"]))
    targets = []
    for n, t in enumerate(r.lst(root.get("targets"), "targets")):
        path = f"targets[{n}]"
        t = r.obj(t, path)
        status = r.text(t.get("status"), f"{path}.status")
        if status not in ("read", "error"):
            raise r.fail(f"{path}.status", "expected read or error")
        if not isinstance(t.get("identities"), int):
            raise r.fail(f"{path}.identities", "expected a whole number")
        targets.append(TargetResult(r.text(t.get("provider"), f"{path}.provider"),
                                    r.text(t.get("target"), f"{path}.target"), status,
                                    int(t["identities"]), r.text(t.get("error"), f"{path}.error",
                                                                 optional=True)))
    identities = tuple(_identity(r, r.obj(i, f"identities[{n}]"), f"identities[{n}]")
                       for n, i in enumerate(r.lst(root.get("identities"), "identities")))
    notes = r.strings(root.get("notes", []), "notes")
    return DiscoverReport(generated, settings, tuple(targets), identities, shard, notes)


def _identity(r: _Reader, i: Mapping[str, Any], path: str) -> JudgedIdentity:
    tags = r.obj(i.get("tags", {}), f"{path}.tags")
    principals = []
    for n, p in enumerate(r.lst(i.get("principals", []), f"{path}.principals")):
        at = f"{path}.principals[{n}]"
        p = r.obj(p, at)
        principals.append(Principal(r.text(p.get("kind"), f"{at}.kind"),
                                    r.text(p.get("value"), f"{at}.value"),
                                    r.text(p.get("detail", ""), f"{at}.detail"),
                                    r.flag(p.get("external"), f"{at}.external"),
                                    r.flag(p.get("wildcard"), f"{at}.wildcard")))
    grants = []
    for n, g in enumerate(r.lst(i.get("grants", []), f"{path}.grants")):
        at = f"{path}.grants[{n}]"
        g = r.obj(g, at)
        grants.append(Grant(r.strings(g.get("actions"), f"{at}.actions"),
                            r.strings(g.get("resources"), f"{at}.resources"),
                            r.text(g.get("source"), f"{at}.source"),
                            r.flag(g.get("conditional", False), f"{at}.conditional")))
    credentials = []
    for n, c in enumerate(r.lst(i.get("credentials", []), f"{path}.credentials")):
        at = f"{path}.credentials[{n}]"
        c = r.obj(c, at)
        credentials.append(Credential(r.text(c.get("id"), f"{at}.id"), r.text(c.get("kind"), f"{at}.kind"),
                                      r.time(c.get("created"), f"{at}.created"),
                                      r.time(c.get("expires"), f"{at}.expires"),
                                      r.time(c.get("lastUsed"), f"{at}.lastUsed"),
                                      r.flag(c.get("active", True), f"{at}.active")))
    usage = []
    for n, u in enumerate(r.lst(i.get("usage", []), f"{path}.usage")):
        at = f"{path}.usage[{n}]"
        u = r.obj(u, at)
        window = u.get("windowDays")
        if window is not None and not isinstance(window, int):
            raise r.fail(f"{at}.windowDays", "expected a whole number or null")
        usage.append(UsageSignal(r.text(u.get("signal"), f"{at}.signal"), r.time(u.get("at"), f"{at}.at"),
                                 window))
    findings = []
    for n, f in enumerate(r.lst(i.get("findings", []), f"{path}.findings")):
        at = f"{path}.findings[{n}]"
        f = r.obj(f, at)
        code = r.text(f.get("code"), f"{at}.code")
        if code not in RULES:
            raise r.fail(f"{at}.code", f"unknown finding code {code!r}")
        findings.append(Finding(code, r.text(f.get("message"), f"{at}.message")))
    identity = DiscoveredIdentity(
        provider=r.text(i.get("provider"), f"{path}.provider"),
        target=r.text(i.get("target"), f"{path}.target"),
        kind=r.text(i.get("kind"), f"{path}.kind"), id=r.text(i.get("id"), f"{path}.id"),
        name=r.text(i.get("name"), f"{path}.name"), created=r.time(i.get("created"), f"{path}.created"),
        managed=r.flag(i.get("managed"), f"{path}.managed"),
        tags={str(k): r.text(v, f"{path}.tags.{k}") for k, v in tags.items()},
        principals=tuple(principals), grants=tuple(grants), credentials=tuple(credentials),
        usage=tuple(usage), description=r.text(i.get("description", ""), f"{path}.description"),
        service_linked=r.flag(i.get("serviceLinked", False), f"{path}.serviceLinked"),
        unread=r.strings(i.get("unread", []), f"{path}.unread"))
    problem = next((f.message for f in findings if f.code == "no-owner"), None)
    ownership = Ownership(r.text(i.get("owner"), f"{path}.owner", optional=True),
                          r.text(i.get("ownerSource"), f"{path}.ownerSource", optional=True), problem)
    return JudgedIdentity(identity, ownership, tuple(findings))
