"""Issue 18 item 2: ``workload-ids review PATHS`` judges each access entry by its use
within review.window and suggests the manifest edit that drops or narrows what went unused.
Real boto3 against moto, whose IAM access advisor our sandbox extends; entry ages come from
the audit trail of applies made with a moved clock."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, workload
from support.cli import run_cli
from support.trust import TEST_TRUST

from workload_ids import clock
from workload_ids.sandbox.moto_access_advisor import advisor, record_access

ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_svc-a"
QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:svc-a"
TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders"
TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:orders"
OLD = ("    - template: queue.consume\n"
       f"      resources: [{QUEUE}]\n"
       "    # the orders table, read by the nightly report\n"
       "    - actions: [dynamodb:GetItem]\n"
       f"      resources: [{TABLE}]\n"
       "      reason: reads the orders table\n")
NEW = ("    - actions: [sns:Publish]\n"
       f"      resources: [{TOPIC}]\n"
       "      reason: announces orders\n")


def _config(extra: str = "") -> None:
    (Path.cwd() / "workload-ids.yaml").write_text(
        "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + "audit: {path: audit.jsonl}\n" + extra,
        encoding="utf-8")


@pytest.fixture
def reviewed(aws: Any, manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """svc-a: queue and table granted 200 days ago, the topic 10 days ago; the queue was
    received from 2 days ago, the table never read, the topic never published to."""
    _config()
    now = clock.now()
    del manifests
    # Inside the working directory, where `git apply` takes the patch.
    path = Path.cwd() / "manifests" / "svc-a.yaml"
    path.parent.mkdir()
    path.write_text(workload(access=OLD), encoding="utf-8")
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", clock.format_time(now - timedelta(days=200)))
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    path.write_text(workload(access=OLD + NEW), encoding="utf-8")
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", clock.format_time(now - timedelta(days=10)))
    applied = run_cli("apply", "--auto-approve", str(path))
    assert applied.code == 0, applied.err
    monkeypatch.delenv("WORKLOAD_IDS_CLOCK")
    advisor(ACCOUNT).job_seconds = 0
    record_access(ACCOUNT, ROLE_ARN, "sqs", action="ReceiveMessage", at=now - timedelta(days=2),
                  region="eu-west-1")
    return path


def _doc(*args: str) -> dict[str, Any]:
    result = run_cli("review", "--output", "json", *args)
    assert result.code == 0, result.err
    doc: dict[str, Any] = json.loads(result.out)
    return doc


def test_each_entry_gets_a_verdict_and_the_unused_one_a_diff(reviewed: Path) -> None:
    doc = _doc(str(reviewed))
    [w] = doc["workloads"]
    queue, table, topic = w["access"]
    assert queue["verdict"] == "used" and queue["lastUsed"] is not None
    assert "sqs:ReceiveMessage was used at" in queue["usage"] or "sqs was used at" in queue["usage"]
    assert queue["suggestion"] is None
    assert table["verdict"] == "unused" and table["lastUsed"] is None
    assert table["actions"] == ["dynamodb:GetItem"] and table["resources"] == [TABLE]
    assert table["suggestion"].startswith("drop this entry")
    assert table["grantedFrom"] == "the audit trail's first apply that granted it"
    # Granted 10 days ago, inside the 90-day window: never judged, even though never used.
    assert topic["verdict"] == "too new" and topic["suggestion"] is None
    assert doc["verdicts"] == {"unused": 1, "too new": 1, "used": 1}
    [suggestion] = doc["suggestions"]
    diff = suggestion["diff"]
    name = suggestion["path"]
    assert diff.startswith(f"--- a/{name}\n+++ b/{name}\n")
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert removed == ["    - actions: [dynamodb:GetItem]", f"      resources: [{TABLE}]",
                       "      reason: reads the orders table"]
    assert not [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    text = run_cli("review", str(reviewed)).out
    assert f"[1] dynamodb:GetItem on {TABLE}: UNUSED (no use on record)" in text
    assert "[2] sns:Publish" in text and "TOO NEW" in text
    assert "Access entries: 1 unused, 1 too new, 1 used (window 90d)" in text


def test_the_suggested_edit_applied_plans_as_narrowing_only(reviewed: Path, tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git applies the patch")
    out = tmp_path / "patches"
    result = run_cli("review", "--diff-out", str(out), str(reviewed))
    assert result.code == 0, result.err
    [patch] = list(out.glob("*.patch"))
    assert f"wrote {patch}" in result.err
    subprocess.run(["git", "apply", str(patch)], check=True, cwd=Path.cwd())
    assert "dynamodb" not in reviewed.read_text(encoding="utf-8")
    assert "# the orders table" in reviewed.read_text(encoding="utf-8")  # comments are kept
    plan = run_cli("plan", "--output", "json", str(reviewed))
    assert plan.code == 0, plan.err
    changes = json.loads(plan.out)["changes"]
    # Nothing widens: the permissions change narrows; the marker's manifest digest (a tag)
    # changes with any edit of the manifest, which is neutral.
    assert {c["action"]: c["class"] for c in changes} == {"update-permissions": "narrowing",
                                                          "update-tags": "neutral"}
    assert json.loads(plan.out)["summary"]["widening"] == 0
    removed = {r["action"] for c in changes for r in c.get("permissions", {}).get("removed", [])}
    assert removed == {"dynamodb:GetItem"}
    assert not [r for c in changes for r in c.get("permissions", {}).get("removed", []) if r.get("used")]


def test_a_used_entry_is_never_suggested_for_removal(reviewed: Path) -> None:
    now = clock.now()
    record_access(ACCOUNT, ROLE_ARN, "dynamodb", action="GetItem", at=now - timedelta(days=89),
                  region="eu-west-1")
    doc = _doc(str(reviewed))
    assert [a["verdict"] for a in doc["workloads"][0]["access"]] == ["used", "used", "too new"]
    assert doc["suggestions"] == []


def test_usage_the_cloud_cannot_read_is_not_judged(reviewed: Path) -> None:
    from workload_ids.sandbox.moto_access_advisor import fail_next_job
    fail_next_job(ACCOUNT, ROLE_ARN)
    doc = _doc(str(reviewed))
    assert [a["verdict"] for a in doc["workloads"][0]["access"]] == ["cannot tell", "cannot tell", "too new"]
    assert doc["suggestions"] == []


def test_without_an_audit_trail_the_identitys_age_decides(aws: Any, manifests: Any) -> None:
    """moto creates the role now: every entry is younger than the window, so none is judged."""
    path = manifests({}) / "svc-a.yaml"
    path.write_text(workload(access=OLD), encoding="utf-8")
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    doc = _doc(str(path))
    access = doc["workloads"][0]["access"]
    assert [a["verdict"] for a in access] == ["too new", "too new"]
    assert access[0]["grantedFrom"].startswith("the identity's creation time")


def test_a_shorter_window_makes_the_topic_judged(reviewed: Path) -> None:
    _config("review: {window: 5d}\n")
    doc = _doc(str(reviewed))
    assert [a["verdict"] for a in doc["workloads"][0]["access"]] == ["used", "unused", "unused"]
    assert "sns:Publish" in doc["suggestions"][0]["diff"]


def test_markdown_fences_the_diff(reviewed: Path) -> None:
    result = run_cli("review", "--output", "markdown", str(reviewed))
    assert result.code == 0, result.err
    assert "```diff\n--- a/" in result.out
    assert "| prod/svc-a | dynamodb:GetItem on " in result.out
    assert "**unused**" in result.out



def test_when_every_entry_goes_the_manifest_keeps_an_empty_list(reviewed: Path) -> None:
    _config("review: {window: 1d}\n")  # the queue was used 2 days ago: outside a 1-day window
    doc = _doc(str(reviewed))
    assert [a["verdict"] for a in doc["workloads"][0]["access"]] == ["unused"] * 3
    diff = doc["suggestions"][0]["diff"]
    assert "+  access: []" in diff and "-  access:" in diff
    assert "# the orders table" in diff  # a comment between entries goes with them


def test_html_output_is_the_review_page(reviewed: Path) -> None:
    result = run_cli("review", "--output", "html", str(reviewed))
    assert result.code == 0, result.err
    assert result.out.startswith("<!DOCTYPE html>") and 'data-verdict="unused"' in result.out
    assert "Content-Security-Policy" in result.out and "<pre class=\"diff\">" in result.out
