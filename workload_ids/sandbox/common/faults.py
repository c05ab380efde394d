"""The one fault injector of the emulators: it counts calls by name and, on a test's
request, fails the next N calls of a name.

What a failure looks like on the wire belongs to each protocol, so the injector stores a
small callback that builds it: a canonical gRPC status (:class:`RpcError`) for the GCP
emulators, a Storage error for Blob Storage, a 429 with its ``Retry-After`` for Microsoft
Graph. The emulator answers with what :meth:`FaultInjector.record` hands back, or lets
:meth:`FaultInjector.enter` raise it. A fault may be *applied*: the call takes effect and
only its answer is the error, as when a response is lost on the way back.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

Match = Callable[[str | None, str], bool]
"""Whether a queued fault's name (None: any call) applies to a call of this name."""


def exact(name: str | None, call: str) -> bool:
    """A fault for ``name`` fails calls of exactly that name (None: every call)."""
    return name is None or name == call


def contains(name: str | None, call: str) -> bool:
    """A fault for ``name`` fails every call whose name contains it (None: every call)."""
    return name is None or name in call


@dataclass(frozen=True)
class Fault(Generic[T]):
    """One injected failure: what the emulator answers, and whether the call takes effect first."""

    answer: T
    applied: bool = False


@dataclass
class _Queued(Generic[T]):
    name: str | None
    make: Callable[[], T]
    remaining: int
    applied: bool


class FaultInjector(Generic[T]):
    """Counts calls by name and fails the next N calls of a name on request (thread-safe).

    Faults are served in the order they were injected; ``match`` says which names a
    queued fault applies to (:func:`exact` by default)."""

    def __init__(self, match: Match = exact) -> None:
        self._match = match
        self._lock = threading.Lock()
        self._queued: list[_Queued[T]] = []
        self.calls: Counter[str] = Counter()
        """Calls so far, by name."""

    def inject(self, name: str | None, answer: Callable[[], T], times: int = 1, *,
               applied: bool = False) -> None:
        """Make the next ``times`` calls of ``name`` fail with what ``answer`` builds."""
        if times <= 0:
            return
        with self._lock:
            self._queued.append(_Queued(name, answer, times, applied))

    def count(self, call: str) -> None:
        """Count a call that no fault applies to (say, an unauthenticated challenge)."""
        with self._lock:
            self.calls[call] += 1

    def record(self, call: str) -> Fault[T] | None:
        """Count a call of ``call``; the fault it must fail with, if one is queued."""
        with self._lock:
            self.calls[call] += 1
            for queued in self._queued:
                if self._match(queued.name, call):
                    queued.remaining -= 1
                    if queued.remaining <= 0:
                        self._queued.remove(queued)
                    return Fault(queued.make(), queued.applied)
            return None

    def enter(self: FaultInjector[E], call: str) -> None:
        """Count a call of ``call``; raise the error of a queued fault, if there is one."""
        fault = self.record(call)
        if fault is not None:
            raise fault.answer
