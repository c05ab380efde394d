"""The npm tools CI installs beside the Python packages (tools/azurite,
tools/yaml-language-server): `.ci/run` installs them in the background while pip runs and
names, in ``WORKLOAD_IDS_TOOLS_READY``, the file it writes their install's exit status to.
A test that needs one waits here for that file, so the two installs overlap; elsewhere
(no such variable) the tools are either installed or not, and nothing waits."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

READY = "WORKLOAD_IDS_TOOLS_READY"
WAIT = 600.0  # seconds: an npm install on a slow network


def wait_for_install() -> None:
    """Block until the background install has finished; fail if it failed."""
    marker = os.environ.get(READY)
    if not marker:
        return
    path = Path(marker)
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the npm tools were not installed within {WAIT:.0f} s ({path} never appeared)")
        time.sleep(0.5)
    status = path.read_text().strip()
    if status != "0":
        pytest.fail(f"installing the npm tools failed (exit status {status}); see the CI log")
