"""workload_ids: least-privilege cloud identities for services, from typed manifests.

The Python API mirrors the CLI (see :mod:`workload_ids.api`)::

    import workload_ids
    config = workload_ids.load_config("workload-ids.yaml")
    checked = workload_ids.validate(["manifests/"], config)
    plan = workload_ids.plan(checked, config)
    result = workload_ids.apply(plan, config)

Names are imported on first use, so ``import workload_ids`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("load_config", "validate", "plan", "apply", "inventory", "Plan", "ApplyResult",
        "Validation", "CallSeam")


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'workload_ids' has no attribute {name!r}")


__all__ = ["__version__", *_API]
