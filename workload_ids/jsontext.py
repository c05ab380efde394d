"""``json.dumps(value, indent=2)``, byte for byte, with less work.

With ``indent`` set, the standard library leaves its C encoder aside and walks the value
in Python generators, each piece of text handed up through every level above it: for
discover's document of 11,000 identities (18 MB) that is about a second, after the last
answer has arrived. Here a container holding only scalars (a tag set, a finding, a list
of actions) is written by the C encoder in one call, its item separator carrying the
line break and indentation, and the containers above them are walked once, without
generators: about a quarter less time on that document.

Anything the fast path does not know (a key that is not a string above the innermost
containers, a value that is not JSON's, a container that holds itself) hands the whole
value to ``json.dumps``, which then writes what it always wrote or raises what it raised.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

_INDENT = 2
_SCALARS = (str, int, float, bool, type(None))
_CONSTANTS = {None: "null", True: "true", False: "false"}


class _Fallback(Exception):
    """A value the fast path leaves to ``json.dumps``."""


def _refuse(value: Any) -> Any:
    raise _Fallback(type(value).__name__)


@cache
def _flat_encoder(level: int) -> Callable[[Any], str]:
    """The C encoder for a scalar-only container whose items sit at ``level``."""
    separator = ",\n" + " " * (_INDENT * level)
    if c_make_encoder is None:  # a Python built without the json accelerator
        return json.JSONEncoder(separators=(separator, ": ")).encode
    chunks = c_make_encoder(None, _refuse, encode_basestring_ascii, None, ": ", separator,
                            False, False, True)
    return lambda value: "".join(chunks(value, 0))


def _scalar(value: Any) -> str | None:
    """``value`` as JSON text when it is a scalar, else None."""
    if type(value) is str:
        return encode_basestring_ascii(value)
    if value is None or value is True or value is False:
        return _CONSTANTS[value]
    if isinstance(value, _SCALARS):
        return json.dumps(value)
    return None


def dumps_indented(value: Any) -> str:
    """Exactly ``json.dumps(value, indent=2)``."""
    out: list[str] = []
    try:
        _write(value, 0, out, set())
    except (_Fallback, RecursionError, TypeError, ValueError):
        return json.dumps(value, indent=_INDENT)
    return "".join(out)


def _flat(children: Any) -> bool:
    # A loop, not all(<generator>): this runs for every container.
    for v in children:  # noqa: SIM110
        if not isinstance(v, _SCALARS):
            return False
    return True


def _write(value: Any, level: int, out: list[str], open_ids: set[int]) -> None:
    """Append ``value`` (a dict, list or tuple; a scalar at the top only) to ``out``."""
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        children: Any = value.values()
        opening, ending = "{", "}"
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        children, opening, ending = value, "[", "]"
    else:
        text = _scalar(value)
        if text is None:
            raise _Fallback(type(value).__name__)
        out.append(text)
        return
    if _flat(children):  # keys as the Python encoder writes them, too
        text = _flat_encoder(level + 1)(value)
        out.append(f"{opening}\n{' ' * (_INDENT * (level + 1))}{text[1:-1]}"
                   f"\n{' ' * (_INDENT * level)}{ending}")
        return
    if id(value) in open_ids:
        raise _Fallback("a container that holds itself")
    open_ids.add(id(value))
    inner = ",\n" + " " * (_INDENT * (level + 1))
    lead = inner[1:]
    out.append(opening)
    if opening == "{":
        for key, item in value.items():
            if type(key) is not str:
                raise _Fallback("a key that is not a string")
            head = f"{lead}{encode_basestring_ascii(key)}: "
            lead = inner
            text = _scalar(item)
            if text is not None:
                out.append(head + text)
            else:
                out.append(head)
                _write(item, level + 1, out, open_ids)
    else:
        for item in value:
            text = _scalar(item)
            if text is not None:
                out.append(lead + text)
            else:
                out.append(lead)
                _write(item, level + 1, out, open_ids)
            lead = inner
    out.append(f"\n{' ' * (_INDENT * level)}{ending}")
    open_ids.discard(id(value))
