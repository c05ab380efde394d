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


# --- narrowing a template that is only partly used (pure: what AWS returns for a service
# it tracks per action, every tracked action listed, the unused ones without a date) ------

RECEIVE = ("name: queue.receive\ndescription: Receive and delete messages from one queue.\n"
           "aws:\n  sqs-queue:\n    - actions: [sqs:ReceiveMessage, sqs:DeleteMessage]\n"
           "      resource: \"{arn}\"\n")
CONSUME_ONLY = ("    - template: queue.consume  # the worker\n"
                f"      resources: [{QUEUE}]\n")


def _partly(templates: str = "") -> tuple[Any, ...]:
    from workload_ids.config import load_config
    from workload_ids.usage import ActionUse, IdentityUsage, ServiceUse
    from workload_ids.validate import validate
    (Path.cwd() / "workload-ids.yaml").write_text(
        "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + templates, encoding="utf-8")
    path = Path.cwd() / "svc-a.yaml"
    path.write_text(workload(access=CONSUME_ONLY), encoding="utf-8")
    config = load_config()
    checked = validate([path], config)
    [cw] = checked.compiled
    now = clock.now()
    tracked = {"ReceiveMessage": now - timedelta(days=3), "DeleteMessage": now - timedelta(days=3),
               "ChangeMessageVisibility": None, "GetQueueAttributes": None, "GetQueueUrl": None}
    usage = IdentityUsage(
        "aws", ACCOUNT, ROLE_ARN, "role", now, timedelta(days=400), now - timedelta(days=400),
        now - timedelta(days=3), services=(ServiceUse("sqs", now - timedelta(days=3), True, tuple(
            ActionUse(f"sqs:{a}", at is not None, at) for a, at in tracked.items())),))
    return path, config, checked, cw, usage, now


def _suggested(templates: str = "") -> tuple[dict[str, Any], str, Any]:
    from workload_ids.review_usage import FileEdits, apply_edits, checked, judge, suggest
    path, config, valid, cw, usage, now = _partly(templates)
    judged = judge(usage, cw.grants, now - timedelta(days=90), now - timedelta(days=200))
    edits = FileEdits(str(path))
    suggest(cw, 0, cw.grants, judged, valid.templates, edits)
    after = apply_edits(path.read_text(encoding="utf-8"), edits.edits)
    assert checked(str(path), after, config, [cw]) is None, after
    return judged, after, edits.says[(cw.label, 0)]


def test_a_partly_used_template_narrows_to_a_raw_entry_of_the_used_actions(aws: Any) -> None:
    judged, after, says = _suggested()
    assert judged["verdict"] == "partly used"
    assert judged["usedActions"] == ["sqs:DeleteMessage", "sqs:ReceiveMessage"]
    assert judged["unusedActions"] == ["sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
                                       "sqs:GetQueueUrl"]
    assert ('    - actions: ["sqs:DeleteMessage", "sqs:ReceiveMessage"]\n'
            '      reason: "narrowed by workload-ids review from template queue.consume (unused: '
            'sqs:ChangeMessageVisibility, sqs:GetQueueAttributes, sqs:GetQueueUrl)"  # the worker\n'
            f"      resources: [{QUEUE}]\n") in after
    assert says.startswith("narrow: replace template queue.consume by the used actions")


def test_a_partly_used_template_narrows_to_a_smaller_template_when_one_covers_the_use(aws: Any) -> None:
    folder = Path.cwd() / "templates"
    folder.mkdir()
    (folder / "queue.receive.yaml").write_text(RECEIVE, encoding="utf-8")
    _, after, says = _suggested("templates: [templates]\n")
    assert "    - template: queue.receive  # the worker\n" in after  # the comment stays
    assert says == "narrow: template queue.consume -> queue.receive (covers every used action)"


def test_a_narrowed_entry_is_never_narrower_than_its_use(aws: Any) -> None:
    """Every action counted as used stays in the suggestion: a template missing one is no candidate."""
    from workload_ids.review_usage import narrower_template
    from workload_ids.validate import validate
    folder = Path.cwd() / "templates"
    folder.mkdir()
    (folder / "queue.receive.yaml").write_text(RECEIVE, encoding="utf-8")
    _, config, *_ = _partly("templates: [templates]\n")
    templates = validate([], config).templates
    granted = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
               "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert narrower_template(templates, "queue.consume", "aws", {"sqs-queue"},
                             {"sqs:ReceiveMessage", "sqs:GetQueueUrl"}, granted) is None
    assert narrower_template(templates, "queue.consume", "aws", {"sqs-queue"},
                             {"sqs:ReceiveMessage"}, granted) == "queue.receive"


def test_diff_out_that_is_a_file_is_bad_input(reviewed: Path) -> None:
    Path("taken").write_text("x", encoding="utf-8")
    result = run_cli("review", "--diff-out", "taken", str(reviewed))
    assert result.code == 1
    assert "--diff-out taken: cannot write the suggested edits there" in result.err
    assert "Traceback" not in result.err


def test_a_raw_narrowing_that_would_move_an_action_to_another_resource_is_not_offered(aws: Any) -> None:
    """object-storage.read grants s3:GetObject on the bucket's objects (ARN/*); a raw entry
    on the bucket would grant it on the bucket itself: not narrowing, so not offered."""
    from workload_ids.config import load_config
    from workload_ids.review_usage import FileEdits, apply_edits, checked, suggest
    from workload_ids.validate import validate
    path = Path.cwd() / "svc-a.yaml"
    path.write_text(workload(access="    - template: object-storage.read\n"
                                    "      resources: [arn:aws:s3:::invoices]\n"), encoding="utf-8")
    config = load_config()
    valid = validate([path], config)
    [cw] = valid.compiled
    judged = {"verdict": "partly used", "usedActions": ["s3:GetObject"],
              "unusedActions": ["s3:GetBucketLocation", "s3:ListBucket", "s3:GetObjectVersion"]}
    edits = FileEdits(str(path))
    suggest(cw, 0, cw.grants, judged, valid.templates, edits)
    after = apply_edits(path.read_text(encoding="utf-8"), edits.edits)
    assert '- actions: ["s3:GetObject"]' in after
    problem = checked(str(path), after, config, [cw])
    assert problem == ("prod/svc-a would be granted s3:GetObject on arn:aws:s3:::invoices in a new form, "
                       "which is not narrowing")


def test_edits_of_two_workloads_in_one_file_combine(aws: Any) -> None:
    """A file of two documents: each workload's unused entry goes, the rest of the file stays."""
    from workload_ids.config import load_config
    from workload_ids.review_usage import FileEdits, apply_edits, checked, finish, suggest
    from workload_ids.validate import validate
    path = Path.cwd() / "both.yaml"
    path.write_text(workload("svc-a", access=OLD) + "---\n" + workload("svc-b", access=OLD), encoding="utf-8")
    config = load_config()
    valid = validate([path], config)
    edits = FileEdits(str(path))
    unused = {"verdict": "unused", "usedActions": [], "unusedActions": ["dynamodb:GetItem"]}
    for cw in valid.compiled:
        edits.workloads.append(cw)
        suggest(cw, 1, [g for g in cw.grants if g.entry == 1], unused, valid.templates, edits)
        finish(cw, edits)
    after = apply_edits(path.read_text(encoding="utf-8"), edits.edits)
    assert checked(str(path), after, config, edits.workloads) is None
    assert "dynamodb" not in after and after.count("template: queue.consume") == 2
    assert after.count("# the orders table") == 2 and "---\n" in after
