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

Two of botocore's per-value steps are done here too, where the shape is known: IAM's
policy documents (URL-encoded JSON) are decoded as they are read, instead of by
botocore's after-call handler walking the whole answer again for them; and ISO 8601
timestamps in the form IAM writes them are read with ``datetime.fromisoformat``
(dateutil's general parser took a third of a fleet read). Both give what botocore gives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element  # a type only; botocore parses the XML  # nosec B405

from botocore import handlers, parsers
from botocore import utils as botocore_utils
from botocore.model import Shape

# Output shapes read the fast way; every other answer goes through botocore's parser.
FAST_SHAPES = frozenset({"GetAccountAuthorizationDetailsResponse", "ListRolesResponse"})

Converter = Callable[[Element], Any]

# IAM's policy documents: botocore decodes members of this shape (handlers.json_decode_policies).
POLICY_DOCUMENT = "policyDocumentType"
# The timestamps IAM writes (UTC, at most microseconds); others go to botocore's parser.
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
_UTC = botocore_utils.tzutc()  # type: ignore[attr-defined]  # botocore's (dateutil's) UTC
# botocore's walk over an answer for policy documents (private; its stubs leave it out).
_decode_policy_types: Callable[[Any, Shape], None] = handlers._decode_policy_types  # type: ignore[attr-defined]


class _Unsupported(Exception):
    """A shape feature the compiled reader leaves to botocore."""


def _tag(element: Element) -> str:
    tag = element.tag
    return tag[tag.index("}") + 1:] if tag[:1] == "{" else tag


# Compiled readers by output shape name (None: left to botocore); built once per process.
_COMPILED: dict[str, Converter | None] = {}


class FastQueryParser(parsers.QueryParser):
    """botocore's query-protocol parser with compiled readers for :data:`FAST_SHAPES`.

    (botocore's type stubs leave the parser's internals out, hence ``base`` below.)"""

    def _do_parse(self, response: dict[str, Any], shape: Shape | None) -> dict[str, Any]:
        base: Any = super()
        converter = self._converter(shape) if shape is not None and shape.name in FAST_SHAPES else None
        if converter is None or shape is None:
            parsed_slowly = dict(base._do_parse(response, shape))
            if shape is not None:  # what the after-call handler install() removes did
                _decode_policy_types(parsed_slowly, shape)
            return parsed_slowly
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

            def structure(node: Element) -> dict[str, Any]:
                out: dict[str, Any] = {}
                for child in node:
                    found = members.get(_tag(child))
                    if found is not None:
                        out[found[0]] = found[1](child)
                return out
            cell_list.append(structure)
            del seen[shape.name]
            return structure
        if kind == "list":
            item = self._compile(shape.member, seen)  # type: ignore[attr-defined]
            return lambda node: [item(child) for child in node]
        if kind == "string" and shape.name == POLICY_DOCUMENT:
            return lambda node: handlers.decode_quoted_jsondoc(node.text or "")
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

            def read_timestamp(node: Element) -> Any:
                text = node.text or ""
                if _ISO_UTC.fullmatch(text):
                    return datetime.fromisoformat(text[:-1]).replace(tzinfo=_UTC)
                return timestamp(text)
            return read_timestamp
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


def install(botocore_session: Any) -> None:
    """Make every client of ``botocore_session`` use the fast reader (which decodes IAM's
    policy documents itself: botocore's handler for that would walk every answer again)."""
    botocore_session.register_component("response_parser_factory", FastResponseParserFactory())
    botocore_session.unregister("after-call.iam", handlers.json_decode_policies)
