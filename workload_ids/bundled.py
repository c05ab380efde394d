"""Data that ships with the tool: built-in templates and the demo's examples.

Inside a wheel they live in ``workload_ids/_bundled/``; in a checkout (editable install,
tests) they are the top-level ``templates/`` and ``examples/`` folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """``templates`` or ``examples``, wherever this installation keeps it."""
    inside = _PACKAGE / "_bundled" / name
    return inside if inside.is_dir() else _PACKAGE.parent / name
