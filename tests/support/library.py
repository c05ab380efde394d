"""Calling the library directly, as the CLI does, with a call seam the test controls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workload_ids.calls import CallSeam
from workload_ids.config import load_config
from workload_ids.keys.fleet import rotate_workloads
from workload_ids.validate import validate


def _rotate(paths: list[Path], seam: CallSeam, **kw: Any) -> Any:
    config = load_config()
    checked = validate(paths, config)
    return rotate_workloads(checked.compiled, config, seam, **kw)
