"""Time-bound grants on every provider (AWS on moto, GCP and Azure on our emulators),
through the CLI: an entry with ``expires`` and ``approval`` is applied with the cloud's own
end where it has one; once the clock passes the end, validate warns, plan shows the removal
("expired at ..., removed by this apply"), apply removes it, and the next plan is clean."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.contract import Cloud

from workload_ids.clock import format_time

NOW = datetime.now(UTC).replace(microsecond=0)
ENDS = NOW + timedelta(days=7)
ENDS_TEXT = format_time(ENDS)


def _time_bound(cloud: Cloud, folder: Path) -> Path:
    """svc-a's read entry made time-bound (ending in 7 days, approved by CHG-4711)."""
    path = folder / "svc-a.yaml"
    entry = cloud.read_entry.format(name="svc-a")
    read = path.read_text().replace(entry, "")
    first = read.index("    - template:")
    text = read.replace(read[first:], read[first:].replace(
        "\n", f"\n      expires: {ENDS_TEXT}\n      approval: CHG-4711\n", 1)) + entry
    path.write_text(text)
    return path


def _at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(moment))


def _cloud_end(cloud: Cloud) -> list[Any]:
    """Where the cloud itself holds the end: AWS statements, GCP bindings with it."""
    if cloud.name == "aws":
        from workload_ids.providers.aws.render import identity_name
        doc = cloud.local.get_role_policy(RoleName=identity_name("wid", "prod", "svc-a"),
                                          PolicyName="workload-ids")["PolicyDocument"]
        return [st for st in doc["Statement"]
                if st.get("Condition", {}).get("DateLessThan") == {"aws:CurrentTime": ENDS_TEXT}]
    if cloud.name == "gcp":
        rm = cloud.local.emulators[1]
        return [b for b in rm.policy("acme-prod").bindings
                if f'request.time < timestamp("{ENDS_TEXT}")' in b.condition.expression]
    return []


def _granted(snapshot: Any) -> Any:
    if isinstance(snapshot, dict) and "resources" in snapshot:
        return {**snapshot, "resources": {k: v for k, v in snapshot["resources"].items() if v}}
    return snapshot


def test_an_expired_entry_is_reported_planned_and_removed(cloud: Cloud, folder: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _at(monkeypatch, NOW)
    path = _time_bound(cloud, folder)
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    if cloud.name == "azure":
        assert _cloud_end(cloud) == []  # Azure holds no end: the next apply is the end
    else:
        ends = _cloud_end(cloud)
        assert len(ends) == 1, ends
        if cloud.name == "gcp":
            assert "CHG-4711" in ends[0].condition.description
            assert ENDS_TEXT in ends[0].condition.title
    granted = cloud.snapshot()
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0

    _at(monkeypatch, ENDS + timedelta(seconds=1))
    checked = run_cli("validate", str(path))
    assert checked.code == 0, checked.out + checked.err
    assert f"expired at {ENDS_TEXT}; apply will remove it; delete the entry" in checked.out + checked.err
    plan = run_cli("plan", str(path), "--detailed-exitcode")
    assert plan.code == 2, plan.out + plan.err
    assert f"expired at {ENDS_TEXT}, removed by this apply" in plan.out
    assert "(approval CHG-4711)" in plan.out
    as_json = run_cli("plan", str(path), "--output", "json")
    expired = [e for c in json.loads(as_json.out)["changes"] for e in c.get("expired", [])]
    assert expired == [{"entry": 0, "expires": ENDS_TEXT, "approval": "CHG-4711",
                        "what": expired[0]["what"]}]
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    assert cloud.snapshot() != granted
    assert _cloud_end(cloud) == []
    again = run_cli("plan", str(folder), "--detailed-exitcode")
    assert again.code == 0, again.out
    assert "expired at" not in again.out  # nothing pending: no note


def test_a_time_bound_entry_within_the_cap_plans_like_any_other(cloud: Cloud, folder: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _at(monkeypatch, NOW)
    _time_bound(cloud, folder)
    plan = run_cli("plan", str(folder), "--detailed-exitcode")
    assert plan.code == 2, plan.err
    assert "expired" not in plan.out


def test_cleanup_removes_an_expired_grant_and_holds_other_changes(
        cloud: Cloud, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Azure has no time condition: a scheduled cleanup keeps the end where nobody runs
    apply (on AWS and GCP it tidies what IAM already ignores). It never applies the
    manifest's other changes."""
    _at(monkeypatch, NOW)
    _time_bound(cloud, folder)
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    granted = cloud.snapshot()
    _at(monkeypatch, ENDS + timedelta(minutes=5))
    dry = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    [pending] = dry["expiredGrants"]
    assert (pending["workload"], pending["status"]) == ("prod/svc-a", "pending")
    assert pending["expired"][0]["expires"] == ENDS_TEXT
    assert cloud.snapshot() == granted  # a dry run changes nothing
    text = run_cli("cleanup", str(folder)).out
    assert f"expired grant: prod/svc-a ({cloud.name}" in text and "(removed by --apply)" in text
    # Another unapplied change beside the removal (a new grant): held for apply.
    path = folder / "svc-a.yaml"
    before = path.read_text()
    path.write_text(before + cloud.read_entry.format(name="svc-extra"))
    held = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)["expiredGrants"]
    assert [h["status"] for h in held] == ["held"] and "run `workload-ids apply`" in held[0]["reason"]
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    # Held: nothing of the manifest's was applied (GCP's sandbox makes a resource it is
    # asked about, with an empty policy: reading it is no grant).
    assert _granted(cloud.snapshot()) == _granted(granted)
    path.write_text(before)
    applied = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    assert applied.code == 0, applied.out + applied.err
    [done] = json.loads(applied.out)["expiredGrants"]
    assert done["status"] == "removed"
    assert cloud.snapshot() != granted
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0
    assert json.loads(run_cli("cleanup", str(folder), "--output", "json").out)["expiredGrants"] == []
