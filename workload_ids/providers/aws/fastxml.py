"""A faster reader for the two big IAM answers a fleet run gets: the pages of
``GetAccountAuthorizationDetails`` and ``ListRoles``.

botocore turns an XML answer into a dict by walking its service model node by node
(a dispatch, a child table and a handler per node): for a page of 1,000 roles that is
some 30,000 steps and most of a fleet plan's own CPU. Here each output shape is compiled
once into small closures that walk the element tree straight. The result is the same
dict botocore builds (tests compare the two on real answers); any shape feature these
closures do not handle (maps, flattened lists, XML attributes, header locations) makes
that operation fall back to botocore's own parser. Everything else about the call
(signing, HTTP, retries through our seam) is unchanged.

Two more costs of those answers are cut without changing what a caller gets:

- timestamps (a ``CreateDate`` per role and user): botocore hands each to dateutil's
  general parser (~140 us); the ISO 8601 form IAM writes is read directly, anything
  else still goes to botocore's parser;
- policy documents: botocore's ``after-call.iam`` handler finds them by walking the
  whole answer along its model (every member of every role) and URL-decodes each one
  (pure Python, ~30 us). :func:`install` swaps it for a walker compiled per output shape
  that visits only the paths that lead to a policy document (every IAM answer of a
  session with :func:`install`, not only the two above), and keeps the URL-decoded
  text of the policies seen lately (a trust policy is shared by hundreds of roles); the
  JSON is still parsed for each, so no two documents share a dict.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote
from xml.etree.ElementTree import Element  # a type only; botocore parses the XML  # nosec B405

from botocore import handlers, parsers
from botocore.model import Shape

# Output shapes read the fast way; every other answer goes through botocore's parser.
FAST_SHAPES = frozenset({"GetAccountAuthorizationDetailsResponse", "ListRolesResponse"})

Converter = Callable[[Element], Any]


class _Unsupported(Exception):
    """A shape feature the compiled reader leaves to botocore."""


def _tag(element: Element) -> str:
    tag = element.tag
    return tag[tag.index("}") + 1:] if tag[:1] == "{" else tag


# Compiled readers by output shape name (None: left to botocore); built once per process.
_COMPILED: dict[str, Converter | None] = {}

# IAM's timestamps: 2026-12-03T15:45:00Z, with up to 6 digits of fractions; another
# form, a seventh digit or an offset goes to botocore's parser.
_ISO_UTC = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:Z|\+00:?00)")


def iso_timestamp(text: str, fallback: Callable[[str], Any]) -> Any:
    """``text`` as an aware datetime in UTC, read directly when it is IAM's ISO 8601
    form (the same instant dateutil reads), else by ``fallback`` (botocore's parser)."""
    m = _ISO_UTC.fullmatch(text)
    if m is None:
        return fallback(text)
    try:
        return datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]),
                        int((m[7] or "0").ljust(6, "0")), tzinfo=UTC)
    except ValueError:  # a day or hour out of range: botocore says what it says
        return fallback(text)


class FastQueryParser(parsers.QueryParser):
    """botocore's query-protocol parser with compiled readers for :data:`FAST_SHAPES`.

    (botocore's type stubs leave the parser's internals out, hence ``base`` below.)"""

    def _do_parse(self, response: dict[str, Any], shape: Shape | None) -> dict[str, Any]:
        base: Any = super()
        converter = self._converter(shape) if shape is not None and shape.name in FAST_SHAPES else None
        if converter is None or shape is None:
            return dict(base._do_parse(response, shape))
        me: Any = self
        root = me._parse_xml_string_to_dom(response["body"])
        start = root
        if "resultWrapper" in shape.serialization:
            start = me._find_result_wrapped_shape(shape.serialization["resultWrapper"], root)
        parsed: dict[str, Any] = converter(start)
        me._inject_response_metadata(root, parsed)
        return parsed

    def _converter(self, shape: Shape) -> Converter | None:
        key = shape.name
        if key not in _COMPILED:
            try:
                _COMPILED[key] = self._compile(shape, {})
            except _Unsupported:
                _COMPILED[key] = None
        return _COMPILED[key]

    def _compile(self, shape: Shape, seen: dict[str, list[Converter]]) -> Converter:
        serialization = shape.serialization
        if serialization.get("flattened") or serialization.get("location") or \
                serialization.get("xmlAttribute") or serialization.get("eventheader"):
            raise _Unsupported(shape.name)
        kind = shape.type_name
        if kind == "structure":
            if shape.name in seen:  # a recursive shape: call through a cell filled below
                cell = seen[shape.name]
                return lambda node: cell[0](node)
            cell_list: list[Converter] = []
            seen[shape.name] = cell_list
            if shape.metadata.get("exception") or getattr(shape, "is_tagged_union", False):
                raise _Unsupported(shape.name)
            members: dict[str, tuple[str, Converter]] = {}
            for name, member in shape.members.items():  # type: ignore[attr-defined]
                xml_name = member.serialization.get("name") or name
                members[xml_name] = (name, self._compile(member, seen))

            # Members by the element's full tag, namespace and all, learnt as met: one
            # lookup per element instead of cutting the namespace off each one.
            by_tag: dict[str, tuple[str, Converter] | None] = {}

            def structure(node: Element) -> dict[str, Any]:
                out: dict[str, Any] = {}
                for child in node:
                    try:
                        found = by_tag[child.tag]
                    except KeyError:
                        found = by_tag.setdefault(child.tag, members.get(_tag(child)))
                    if found is not None:
                        out[found[0]] = found[1](child)
                return out
            cell_list.append(structure)
            del seen[shape.name]
            return structure
        if kind == "list":
            item = self._compile(shape.member, seen)  # type: ignore[attr-defined]
            return lambda node: [item(child) for child in node]
        if kind in ("string", "character"):
            return lambda node: node.text or ""
        if kind in ("integer", "long"):
            return lambda node: int(node.text or "")
        if kind == "boolean":
            return lambda node: node.text == "true"
        if kind in ("float", "double"):
            return lambda node: float(node.text or "")
        me: Any = self
        if kind == "timestamp":
            timestamp = me._timestamp_parser
            if timestamp is parsers.DEFAULT_TIMESTAMP_PARSER:
                return lambda node: iso_timestamp(node.text or "", timestamp)
            return lambda node: timestamp(node.text or "")
        if kind == "blob":
            blob = me._blob_parser
            return lambda node: blob(node.text or "")
        raise _Unsupported(f"{shape.name}: {kind}")


class FastResponseParserFactory(parsers.ResponseParserFactory):
    """Hands out :class:`FastQueryParser` for the query protocol (IAM, STS)."""

    def create_parser(self, protocol_name: str) -> Any:
        """Our fast parser for the query protocol; botocore's own for every other."""
        if protocol_name == "query":
            defaults: dict[str, Any] = getattr(self, "_defaults", {})
            return FastQueryParser(**defaults)
        return super().create_parser(protocol_name)


# --- policy documents -------------------------------------------------------------------

# What botocore's IAM handler looks for: string members of this shape hold a policy document.
_POLICY_SHAPE = "policyDocumentType"
Walker = Callable[[Any], None]
# Decoders by output shape name (None: the shape holds no policy document).
_WALKERS: dict[str, Walker | None] = {}
_WALKERS_LOCK = threading.Lock()


class _Recursive(Exception):
    """A recursive shape: left to botocore's own walk."""


# The texts decoded lately: a trust policy shared by many roles stays in, a policy seen
# once passes through; bounded, since a policy document may be 10 KB.
@lru_cache(maxsize=2048)
def _unquoted(text: str) -> str:
    return unquote(text)


def decode_policy(value: Any) -> Any:
    """What botocore's ``decode_quoted_jsondoc`` returns for ``value``: the URL-encoded
    JSON as a dict, or ``value`` unchanged when it is not that."""
    if not isinstance(value, str):
        return handlers.decode_quoted_jsondoc(value)
    try:
        return json.loads(_unquoted(value))
    except (ValueError, TypeError):
        return value


def _walker(shape: Shape, seen: frozenset[str]) -> Walker | None:
    """Decode the policy documents under ``shape`` in place, visiting the members
    botocore's ``_decode_policy_types`` would (structures and lists) and only the ones
    that can lead to a document; None when none can."""
    if shape.type_name == "structure":
        if shape.name in seen:
            raise _Recursive(shape.name)
        inner = seen | {shape.name}
        documents: list[str] = []
        nested: list[tuple[str, Walker]] = []
        for name, member in shape.members.items():  # type: ignore[attr-defined]
            if member.type_name == "string" and member.name == _POLICY_SHAPE:
                documents.append(name)
            else:
                walk = _walker(member, inner)
                if walk is not None:
                    nested.append((name, walk))
        if not documents and not nested:
            return None

        def structure(parsed: Any) -> None:
            for name in documents:
                if name in parsed:
                    parsed[name] = decode_policy(parsed[name])
            for name, walk in nested:
                if name in parsed:
                    walk(parsed[name])
        return structure
    if shape.type_name == "list":
        item = _walker(shape.member, seen)  # type: ignore[attr-defined]
        if item is None:
            return None

        def each(parsed: Any) -> None:
            for value in parsed:
                item(value)
        return each
    return None


def _policy_walker(shape: Shape) -> Walker | None:
    """The compiled decoder of ``shape``, made once per process (None: it holds no
    policy document). A recursive shape keeps botocore's own walk."""
    with _WALKERS_LOCK:
        if shape.name in _WALKERS:
            return _WALKERS[shape.name]
    try:
        walk = _walker(shape, frozenset())
    except _Recursive:
        botocore_handlers: Any = handlers  # its type stubs leave the walk out

        def walk(parsed: Any) -> None:
            botocore_handlers._decode_policy_types(parsed, shape)
    with _WALKERS_LOCK:
        return _WALKERS.setdefault(shape.name, walk)


def decode_policies(parsed: Any, model: Any, **kwargs: Any) -> None:
    """What botocore's ``json_decode_policies`` (an ``after-call.iam`` handler) does, by
    the compiled walk."""
    if model.output_shape is not None:
        walk = _policy_walker(model.output_shape)
        if walk is not None:
            walk(parsed)


def install(botocore_session: Any) -> None:
    """Make every client of ``botocore_session`` use the fast reader and the compiled
    policy decoder (in place of botocore's ``json_decode_policies``)."""
    botocore_session.register_component("response_parser_factory", FastResponseParserFactory())
    botocore_session.unregister("after-call.iam", handlers.json_decode_policies)
    botocore_session.register("after-call.iam", decode_policies)
