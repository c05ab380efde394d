"""The Python API: the same steps and results as the CLI, for pipelines written in Python.

Every function raises :class:`workload_ids.errors.WorkloadIdsError` subclasses on bad
input or cloud failure, exactly where the CLI would exit non-zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .apply import ApplyResult, apply_plan
from .calls import CallSeam, RetryPolicy
from .config import Config, load_config
from .inventory import InventoryRow
from .inventory import inventory as _inventory
from .plan import Plan, ScopePrefetch, build_plan
from .validate import Validation
from .validate import validate as _validate


def _seam(config: Config) -> CallSeam:
    return CallSeam(RetryPolicy(max_attempts=config.calls.maxAttempts,
                                max_seconds=config.calls.maxRetrySeconds))


def validate(paths: Iterable[str | Path], config: Config | None = None) -> Validation:
    """Load and check manifests; raises InputErrors listing every problem."""
    result = _validate(paths, config or load_config())
    result.raise_for_errors()
    return result


def plan_paths(paths: Iterable[str | Path], config: Config | None = None, *,
               seam: CallSeam | None = None) -> Plan:
    """Validate and plan in one step, as ``workload-ids plan PATHS`` does: for a folder,
    the accounts are read while the manifests are still being checked."""
    config = config or load_config()
    seam = seam or _seam(config)
    path_list = list(paths)
    fleet = True if any(Path(p).is_dir() for p in path_list) else None
    prefetch = ScopePrefetch(config, seam) if fleet else None
    try:
        checked = _validate(path_list, config, on_target=prefetch)
        checked.raise_for_errors()
    except BaseException:
        if prefetch:
            prefetch.close()
        raise
    return build_plan(checked.compiled, config, seam, fleet=fleet, prefetch=prefetch)


def plan(checked: Validation, config: Config | None = None, *, seam: CallSeam | None = None,
         fleet: bool | None = None) -> Plan:
    """Read the cloud and compute the changes that apply would make."""
    config = config or load_config()
    if fleet is None and checked.directory_run:
        fleet = True
    return build_plan(checked.compiled, config, seam or _seam(config), fleet=fleet)


def apply(plan: Plan, config: Config | None = None) -> ApplyResult:
    """Carry out ``plan``; see :class:`ApplyResult` for outputs and per-workload errors."""
    config = config or load_config()
    return apply_plan(plan, concurrency=config.calls.concurrency)


def inventory(paths: Iterable[str | Path] = (), config: Config | None = None, *,
              provider: str = "aws", targets: Iterable[str] = (),
              seam: CallSeam | None = None) -> list[InventoryRow]:
    """What workload-ids manages in the targets of ``paths`` (or ``targets``)."""
    config = config or load_config()
    return _inventory(list(paths), config, seam or _seam(config), provider=provider,
                      targets=list(targets))


__all__ = ["ApplyResult", "CallSeam", "Plan", "Validation", "apply", "inventory", "load_config",
           "plan", "plan_paths", "validate"]
