"""The leaver contract on every provider: a workload without a manifest is quarantined,
deleted after its grace period with a restore bundle, restored, and judged afresh."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.cli import run_cli
from support.contract import Cloud

from workload_ids.clock import format_time


def test_leaver_quarantine_release_delete_restore(cloud: Cloud, folder: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "svc-b.yaml").unlink()
    start = datetime.now(UTC) + timedelta(hours=2)
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start)
    quarantined = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert [(r["action"], r["ok"]) for r in quarantined["results"]] == [("quarantine", True)]
    identity = quarantined["results"][0]["identity"]
    held = cloud.snapshot()
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start + timedelta(days=8))
    deleted = json.loads(run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit",
                                 "--output", "json").out)
    assert [(r["identity"], r["action"], r["ok"]) for r in deleted["results"]] == \
        [(identity, "delete", True)]
    assert cloud.snapshot() != held
    assert run_cli("restore", identity).code == 0
    assert run_cli("audit", "verify").code == 0
    # Restored, it is judged afresh: still without a manifest, it is quarantined again.
    again = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    assert {i["identity"]: i["status"] for i in again["identities"]}[identity] == "no-manifest"
