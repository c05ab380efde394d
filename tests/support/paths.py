"""Where the repository and the bundled examples are."""

from __future__ import annotations

from pathlib import Path

from workload_ids.bundled import bundled_dir

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLES = bundled_dir("examples")
