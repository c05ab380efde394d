"""Where the CLI's results go: text for people on stdout, notes and progress on stderr,
one JSON document for machines. The demo and the sandbox print through it too."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import printable

# SGR colours of a plan's lines, by their marker: added, removed, changed, attention.
_MARKS = {"+": "32", "-": "31", "~": "33", "!": "1;33"}


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is a person's terminal (a caller may have sent it nowhere:
    ``contextlib.redirect_stdout(None)``)."""
    return stream is not None and stream.isatty()


def colour_wanted(stream: TextIO | None) -> bool:
    """Colour only for a person at a terminal: never in a pipe or a CI log, never with
    NO_COLOR set (no-color.org) or on a dumb terminal."""
    return (is_terminal(stream) and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM", "") != "dumb")


class Output:
    """Where results go: text for people, one JSON document for machines."""

    def __init__(self, fmt: str, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.json = fmt == "json"
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.colour = colour_wanted(self.out)

    def changes(self, text: str) -> None:
        """Print a plan: like :meth:`text`, with each line coloured by its marker
        (``+`` added, ``-`` removed, ``~`` changed, ``!`` attention) on a terminal."""
        if self.json:
            return
        for line in printable(text).split("\n"):
            code = _MARKS.get(line.lstrip()[:1]) if self.colour else None
            print(f"\x1b[{code}m{line}\x1b[0m" if code else line, file=self.out)

    def text(self, line: str = "") -> None:
        """Print ``line`` (text format only). Control characters are escaped here for every
        caller; a string from a manifest or the cloud is put on one line by the renderer
        (``errors.one_line``), which knows where its lines end."""
        if not self.json:
            print(printable(line), file=self.out)

    def note(self, line: str) -> None:
        """Progress and notes: stderr, so stdout stays clean for JSON."""
        print(printable(line), file=self.err)

    def document(self, doc: dict[str, Any]) -> None:
        """Print ``doc`` as indented JSON (JSON format only; text-format callers print their own lines)."""
        if self.json:
            print(json.dumps(doc, indent=2, sort_keys=False), file=self.out)


class Progress:
    """A progress bar on a terminal; on a pipe (CI logs), a plain line every tenth of a
    large fleet run once it has taken a while, and nothing for small or quick ones."""

    PLAIN_FROM = 50
    PLAIN_AFTER = 2.0  # seconds: a run over sooner needs no progress in a log

    def __init__(self, label: str, stream: TextIO | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = is_terminal(self.stream)
        self.clock = clock
        self.started = clock()

    def __call__(self, done: int, total: int) -> None:
        """Redraw the bar on a terminal; on a pipe, a line every tenth of a large, slow run."""
        if not self.enabled:
            step = max(1, total // 10)
            if total >= self.PLAIN_FROM and (done % step == 0 or done == total) and \
                    self.clock() - self.started >= self.PLAIN_AFTER:
                print(f"{self.label}: {done}/{total}", file=self.stream, flush=True)
            return
        if total < 2:
            return
        width = 30
        filled = int(width * done / total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()
