"""Attestation on every provider: an owner's attestation shows in the review; an overdue
one makes the workload unattested in cleanup, reported by default and quarantined (then
released by a new attestation) with review.onExpiry: quarantine."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.cli import run_cli
from support.contract import Cloud

from workload_ids.clock import format_time


def _labels() -> dict[str, str]:
    rows = json.loads(run_cli("inventory", "--output", "json").out)["identities"]
    return {r["workload"]: f"{r['environment']}/{r['workload']}" for r in rows}


def _classes(folder: Path, *extra: str) -> dict[str, tuple[str, str | None]]:
    report = json.loads(run_cli("cleanup", str(folder), *extra, "--output", "json").out)
    return {i["workload"]: (i["status"], i["action"]) for i in report["identities"]}


def test_attest_review_and_unattested_cleanup(cloud: Cloud, folder: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    config = Path("workload-ids.yaml")
    base = config.read_text()
    config.write_text(base + "review: {every: 30d}\n")
    labels = _labels()
    a, b = labels["svc-a"], labels["svc-b"]
    start = datetime.now(UTC) + timedelta(hours=2)
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start)
    attested = run_cli("attest", a, "--by", "bob", "--note", "still serves orders", "--output", "json")
    assert attested.code == 0, attested.err
    [record] = json.loads(attested.out)["attested"]
    assert (record["workload"], record["owner"], record["by"], record["believed"]) == \
        (a, "team-a", "bob", True)

    review = json.loads(run_cli("review", str(folder), "--output", "json").out)
    states = {w["workload"]: w for w in review["workloads"]}
    assert states[a]["state"] == "ok"
    assert states[a]["lastAttestation"]["by"] == "bob"
    assert states[a]["lastAttestation"]["note"] == "still serves orders"
    assert states[a]["due"] == format_time(start + timedelta(days=30))
    assert states[b]["state"] == "never attested"
    assert [o["owner"] for o in review["owners"]] == ["team-a"]
    # Just applied: younger than review.window, so no entry is judged yet.
    assert all(e["verdict"] == "too new" and e["lastUsed"] is None and e["resources"]
               for e in states[a]["access"])
    assert _classes(folder)["svc-a"] == ("active", None)

    # 40 days on: both overdue; reported by default, nothing done.
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start + timedelta(days=40))
    assert _classes(folder) == {"svc-a": ("unattested", None), "svc-b": ("unattested", None)}
    review = json.loads(run_cli("review", str(folder), "--output", "json").out)
    assert {w["workload"]: w["state"] for w in review["workloads"]} == {a: "overdue", b: "never attested"}

    # onExpiry: quarantine: cleanup quarantines them through the leaver path...
    config.write_text(base + "review: {every: 30d, onExpiry: quarantine}\n")
    applied = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert sorted((r["action"], r["ok"]) for r in applied["results"]) == [("quarantine", True)] * 2
    assert {i["workload"]: i["quarantine"]["reason"] for i in
            json.loads(run_cli("cleanup", str(folder), "--output", "json").out)["identities"]} == \
        {"svc-a": "unattested", "svc-b": "unattested"}
    # ...and an attestation releases them at the next run.
    assert run_cli("attest", a, b, "--by", "bob").code == 0
    released = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert sorted((r["action"], r["ok"]) for r in released["results"]) == [("release", True)] * 2
    assert _classes(folder) == {"svc-a": ("active", None), "svc-b": ("active", None)}
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0
    assert run_cli("audit", "verify").code == 0
