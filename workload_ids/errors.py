"""One error hierarchy. User errors (bad input, conflicts, guardrails) are told apart from
system errors (a cloud that failed); the CLI is the only place that turns them into
messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """Where in which file a problem is: 1-based line and column."""

    path: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in the input, positioned at the node that causes it."""

    position: Position | None
    message: str
    severity: str = "error"  # error | guardrail | warning | suggestion

    def __str__(self) -> str:
        where = f"{self.position}: " if self.position else ""
        label = "" if self.severity == "error" else f"{self.severity}: "
        return f"{where}{label}{printable(self.message)}"


def printable(text: str, keep: str = "\n\t") -> str:
    """``text`` with control and line-separator characters escaped: a name copied from the
    input into a message must not start a new, unpositioned line or move the cursor.

    Escaped: C0 and C1 controls (ESC, so no ANSI sequence reaches a terminal; CR, which
    would overwrite the line), DEL, U+2028/U+2029 and every other character Python does not
    call printable, as ``\\x1b``, ``\\u2028``... Characters in ``keep`` pass through: by
    default the newlines and tabs of a multi-line message our own code wrote.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def one_line(text: str) -> str:
    """``text`` as exactly one line of printable characters, newlines and tabs escaped too.

    Every line of text output that holds a string from a manifest or from the cloud goes
    through this, so such a string cannot start a line of its own: in a CI log a line
    starting ``::add-mask::`` or ``::warning::`` is a command to the runner, and a forged
    plan line would mislead the reviewer.
    """
    return printable(text, keep="")


class WorkloadIdsError(Exception):
    """Base of every error this tool raises on purpose (exit codes: ``cli.exit_code``)."""

    def diagnostics(self) -> str:
        """Text for the user: what is wrong and what to do next."""
        return str(self)


class UserError(WorkloadIdsError):
    """The input or the request is wrong; nothing was changed in any cloud."""


class InputErrors(UserError):
    """Every problem found in the manifests, templates or config, all at once."""

    def __init__(self, items: list[Diagnostic]) -> None:
        self.items = items
        super().__init__(f"{len(items)} problem(s) in the input")

    def __str__(self) -> str:
        # A library caller that prints the exception sees what is wrong, not only how much.
        return "\n".join([f"{len(self.items)} problem(s) in the input:", *(str(d) for d in self.items)])

    def diagnostics(self) -> str:
        """Every diagnostic, one ``FILE:LINE:COLUMN`` line each, in the order found."""
        return "\n".join(str(d) for d in self.items)


class ConflictError(UserError):
    """A cloud object we would manage exists but does not carry our ownership marker."""

    def __init__(self, message: str, hint: str) -> None:
        self.hint = hint
        super().__init__(message)

    def diagnostics(self) -> str:
        """The conflict and what to do about it, as the CLI prints it."""
        return f"{self}\n  what to do: {self.hint}"


class GuardrailError(UserError):
    """A configured guardrail refused the request."""


class CloudError(WorkloadIdsError):
    """A cloud call failed after its retries (or with an error that is not retried).

    ``kind`` is the seam's word for it (``not-found``, ``conflict``, ``denied``,
    ``throttle``, ``transient``, ``other``: see :mod:`workload_ids.calls`), so a backend
    decides by kind, never by an SDK's exception class; the SDK's exception is the
    ``__cause__``."""

    def __init__(self, operation: str, code: str, message: str, hint: str = "",
                 kind: str = "other") -> None:
        self.operation = operation
        self.code = code
        self.message = message
        self.hint = hint
        self.kind = kind
        super().__init__(f"{operation} failed: {code}: {message}")

    def diagnostics(self) -> str:
        """The cloud's error and, when known, what to do about it, as the CLI prints it."""
        return f"{self}\n  what to do: {self.hint}" if self.hint else str(self)


class MissingDependencyError(UserError):
    """A cloud SDK needed for this command is not installed."""
