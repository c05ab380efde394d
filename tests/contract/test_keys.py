"""The key contract on every provider: a key-mode workload's rotation cycle (a new key,
the overlap, the retirement, the grace period) by moving the clock, and an emergency
rotation; no secret value in any output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.contract import KEY_MANIFESTS, Cloud

from workload_ids.clock import format_time

# A client secret cannot be disabled, only removed: on Azure the retired key is gone at
# the end of the overlap instead of kept inactive through the grace period.
RETIRED = {"aws": [("current", "active"), ("retired", "inactive")],
           "gcp": [("current", "active"), ("retired", "inactive")],
           "azure": [("current", "active")]}


def test_key_rotation_cycle(secret_hygiene: Any, cloud: Cloud, folder: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    module, attr, name = KEY_MANIFESTS[cloud.name]
    text = getattr(importlib.import_module(module), attr)
    for old in folder.glob("*.yaml"):
        old.unlink()
    (folder / "key.yaml").write_text(text)
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    start = datetime.now(UTC)

    def rotate(days: float) -> list[tuple[str, str]]:
        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(start + timedelta(days=days)))
        result = run_cli("rotate", str(folder), "--output", "json")
        assert result.code == 0, result.out + result.err
        [report] = json.loads(result.out)["workloads"]
        return sorted((k["role"], k["status"]) for k in report["keys"])

    assert rotate(10) == [("current", "active")]
    assert rotate(31) == [("current", "active"), ("previous", "active")]
    assert rotate(33.5) == RETIRED[cloud.name]
    assert rotate(41) == [("current", "active")]
    emergency = run_cli("rotate", str(folder), "--now", name, "--output", "json")
    assert emergency.code == 0
    keys = json.loads(emergency.out)["workloads"][0]["keys"]
    assert sorted((k["role"], k["status"]) for k in keys) == RETIRED[cloud.name]
