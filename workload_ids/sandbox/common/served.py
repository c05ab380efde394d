"""Start, stop and ``with``: the lifecycle every emulator shares, whatever it serves."""

from __future__ import annotations

from typing import Any, Self


class Served:
    """An emulator that listens on 127.0.0.1 once started; ``with`` starts it (on a free
    port unless it was given one) and stops it. State is kept across stop and start."""

    def start(self) -> Any:
        """Listen; return where (a URL or ``host:port``)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
