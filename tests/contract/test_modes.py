"""Modes on every provider (issue 17, item 4): an observe-mode workload's drift is planned
and never applied, and a retained workload whose manifest is removed is released by
cleanup (marker gone, identity kept, a release-identity audit record), never deleted."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.cli import run_cli
from support.contract import Cloud

from workload_ids.audit import records
from workload_ids.clock import format_time


def _with(text: str, extra: str) -> str:
    return text.replace("spec:\n", "spec:\n" + extra, 1)


def test_observe_plans_drift_and_applies_nothing(cloud: Cloud, folder: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    held = cloud.snapshot()
    text = (folder / "svc-a.yaml").read_text()
    (folder / "svc-a.yaml").write_text(_with(text.replace(cloud.read_entry.format(name="svc-a"), ""),
                                             "  mode: observe\n"))
    plan = run_cli("plan", "--detailed-exitcode", "--output", "json", str(folder))
    assert plan.code == 2, plan.err
    changes = json.loads(plan.out)["changes"]
    assert changes and all(c["observeOnly"] for c in changes)
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err
    assert "none applied" in applied.out
    assert cloud.snapshot() == held


def test_retain_releases_and_never_deletes(cloud: Cloud, folder: Path) -> None:
    text = (folder / "svc-b.yaml").read_text()
    (folder / "svc-b.yaml").write_text(_with(text, "  deletionPolicy: retain\n"))
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "svc-b.yaml").unlink()
    start = datetime.now(UTC) + timedelta(hours=2)
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start)
    done = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert [(r["action"], r["ok"]) for r in done["results"]] == [("disown", True)], done["results"]
    identity = done["results"][0]["identity"]
    released = [r for r in records(Path("audit.jsonl")) if r["action"] == "release-identity"]
    assert [r["identity"] for r in released] == [identity]
    kept = cloud.snapshot()
    # Long after any grace period: still there, and no longer judged as ours.
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start + timedelta(days=30))
    later = json.loads(run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit",
                               "--output", "json").out)
    assert later["results"] == []
    assert {i["identity"]: i["status"] for i in later["identities"]}.get(identity, "unmanaged") == "unmanaged"
    assert cloud.snapshot() == kept
    assert identity in json.dumps(kept)
