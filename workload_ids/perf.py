"""Runtime tuning shared by the CLI and the library."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# A fleet run builds hundreds of thousands of small, short-lived objects (YAML nodes,
# pydantic models, policy documents) and few reference cycles; the default thresholds
# spent about a quarter of a 1,000-workload plan in the collector.
RELAXED = (50_000, 50, 100)


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collect less often for the duration of a bulk step; restore the thresholds after."""
    saved = gc.get_threshold()
    if saved[0] >= RELAXED[0]:
        yield
        return
    gc.set_threshold(*RELAXED)
    try:
        yield
    finally:
        gc.set_threshold(*saved)
