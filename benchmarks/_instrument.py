"""Exclusive-time accounting for a breakdown of one run, by wrapping named functions.

The package is not edited: attributes are replaced on their modules/classes for the
length of a ``with Breakdown(...)`` block and put back afterwards. Times nest: a label's
*exclusive* time is its own time less that of the wrapped calls made inside it, so the
exclusive times of all labels plus "other" add up to the wall time.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from typing import Any


class Breakdown:
    def __init__(self, targets: list[tuple[Any, str, str]]) -> None:
        """``targets``: (owner object, attribute name, label) to time."""
        self.targets = targets
        self.inclusive: Counter[str] = Counter()
        self.exclusive: Counter[str] = Counter()
        self.count: Counter[str] = Counter()
        self._saved: list[tuple[Any, str, Any]] = []
        self._local = threading.local()

    def _wrap(self, fn: Any, label: str) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack = getattr(self._local, "stack", None)
            if stack is None:
                stack = self._local.stack = []
            stack.append(0.0)  # time spent in wrapped children
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                children = stack.pop()
                self.inclusive[label] += elapsed
                self.exclusive[label] += elapsed - children
                self.count[label] += 1
                if stack:
                    stack[-1] += elapsed
        return wrapper

    def __enter__(self) -> Breakdown:
        self.missing: list[str] = []
        for owner, attr, label in self.targets:
            holder = owner.__dict__ if isinstance(owner, type) else vars(owner)
            if attr not in holder:  # the package changed: time what still exists
                self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
                print(f"(breakdown: {self.missing[-1]} not found; '{label}' not timed)")
                continue
            original = holder[attr]
            self._saved.append((owner, attr, original))
            if isinstance(original, staticmethod):
                setattr(owner, attr, staticmethod(self._wrap(original.__func__, label)))
            else:
                setattr(owner, attr, self._wrap(original, label))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attr, original in reversed(self._saved):
            setattr(owner, attr, original)
        self._saved.clear()
