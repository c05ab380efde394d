"""IAM conditions as the emulators evaluate them: a tiny, strict subset of CEL.

Only the forms workload-ids writes are understood (``render.condition_for_text`` and
``render.until_condition``)::

    resource.name == "NAME"
    resource.name.startsWith("PREFIX")
    request.time < timestamp("2026-12-31T18:00:00Z")
    A || B,  A && B,  ( A )

with string literals in JSON's escapes. Anything else is not understood and grants
nothing: a looser evaluator would let a test pass on a condition GCP reads differently.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

_TOKEN = re.compile(r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>\|\||&&|==|<|\(|\))"""
                    r"""|(?P<name>resource\.name\.startsWith|resource\.name|request\.time|timestamp))""")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")


class NotUnderstood(ValueError):
    """The expression is not one of the forms this evaluator knows."""


def _tokens(expression: str) -> list[str]:
    out: list[str] = []
    at = 0
    while at < len(expression):
        if not expression[at:].strip():
            break
        m = _TOKEN.match(expression, at)
        if m is None:
            raise NotUnderstood(f"unexpected text at {at}: {expression[at:at + 20]!r}")
        out.append(m.group(m.lastgroup or ""))
        at = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[str], resource: str, now: datetime) -> None:
        self.tokens, self.at, self.resource, self.now = tokens, 0, resource, now

    def take(self, want: str | None = None) -> str:
        if self.at >= len(self.tokens):
            raise NotUnderstood("the expression ends early")
        token = self.tokens[self.at]
        if want is not None and token != want:
            raise NotUnderstood(f"expected {want!r}, found {token!r}")
        self.at += 1
        return token

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def string(self) -> str:
        token = self.take()
        if not token.startswith('"'):
            raise NotUnderstood(f"expected a string, found {token!r}")
        value = json.loads(token)
        assert isinstance(value, str)
        return value

    def disjunction(self) -> bool:
        # Every operand is parsed (never short-circuited): a malformed tail is refused
        # whatever the head evaluates to.
        value = self.conjunction()
        while self.peek() == "||":
            self.take()
            value = self.conjunction() or value
        return value

    def conjunction(self) -> bool:
        value = self.atom()
        while self.peek() == "&&":
            self.take()
            value = self.atom() and value
        return value

    def atom(self) -> bool:
        word = self.take()
        if word == "(":
            value = self.disjunction()
            self.take(")")
            return value
        if word == "resource.name":
            self.take("==")
            return self.resource == self.string()
        if word == "resource.name.startsWith":
            self.take("(")
            prefix = self.string()
            self.take(")")
            return self.resource.startswith(prefix)
        if word == "request.time":
            self.take("<")
            self.take("timestamp")
            self.take("(")
            text = self.string()
            self.take(")")
            if not _TIMESTAMP.fullmatch(text):
                raise NotUnderstood(f"timestamp {text!r} is not UTC RFC 3339 with a Z")
            return self.now < datetime.fromisoformat(text.replace("Z", "+00:00"))
        raise NotUnderstood(f"unexpected {word!r}")


def evaluate(expression: str, *, resource: str, now: datetime) -> bool:
    """Whether ``expression`` holds for a request on ``resource`` at ``now`` (aware);
    False for anything outside the understood forms."""
    try:
        parser = _Parser(_tokens(expression), resource, now.astimezone(UTC))
        value = parser.disjunction()
        if parser.peek() is not None:
            raise NotUnderstood(f"unexpected {parser.peek()!r} after the expression")
        return value
    except (NotUnderstood, ValueError):
        return False
