"""The identity contract on every provider (AWS on moto, GCP and Azure on our emulators),
through the CLI: a joiner is created and then planned as converged; a mover's removed
access is shown, then applied."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import run_cli
from support.contract import Cloud


def test_joiner_then_no_changes(cloud: Cloud, folder: Path) -> None:
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 2
    applied = run_cli("apply", "--auto-approve", str(folder), "--output", "json")
    assert applied.code == 0, applied.err
    assert len(json.loads(applied.out)["results"]) == 2
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0
    assert run_cli("plan", str(folder / "svc-a.yaml"), "--detailed-exitcode").code == 0


def test_mover_shows_the_removal_then_converges(cloud: Cloud, folder: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    path = folder / "svc-a.yaml"
    path.write_text(path.read_text().replace(cloud.read_entry.format(name="svc-a"), ""))
    plan = run_cli("plan", str(path), "--output", "json", "--detailed-exitcode")
    assert plan.code == 2
    removed = [r for c in json.loads(plan.out)["changes"]
               for r in (c.get("permissions") or c.get("bindings") or {}).get("removed", [])]
    assert removed, plan.out
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0
