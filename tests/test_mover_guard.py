"""Issue 18 item 4: a mover that removes a permission the workload still uses is flagged in
the plan with when it was last used, and with guardrails.refuseRemovingUsedAccess apply
refuses it (exit 3, nothing changed) unless --accept-breaking. Real boto3 against moto,
whose IAM access advisor our sandbox extends (workload_ids/sandbox/moto_access_advisor.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, workload
from support.cli import run_cli
from support.trust import TEST_TRUST

from workload_ids import clock
from workload_ids.sandbox.moto_access_advisor import advisor, record_access

ROLE = "wid_prod_svc-a"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/workload-ids/{ROLE}"
QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:svc-a"
TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders"
TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:orders"
BOTH = ("    - template: queue.consume\n"
        f"      resources: [{QUEUE}]\n"
        "    - actions: [dynamodb:GetItem]\n"
        f"      resources: [{TABLE}]\n"
        "      reason: reads the orders table\n"
        "    - actions: [sns:Publish]\n"
        f"      resources: [{TOPIC}]\n"
        "      reason: announces orders\n")
QUEUE_ONLY = ("    - template: queue.consume\n"
              f"      resources: [{QUEUE}]\n")


def guarded(on: bool) -> None:
    (Path.cwd() / "workload-ids.yaml").write_text(
        "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST
        + (f"guardrails: {{refuseRemovingUsedAccess: {str(on).lower()}}}\n"), encoding="utf-8")


@pytest.fixture
def moved(aws: Any, manifests: Any) -> Path:
    """svc-a applied with queue, table and topic; DynamoDB used 2 days ago, SNS 200 days
    ago (outside the 90-day window); the manifest then drops both."""
    folder = manifests({})
    path = folder / "svc-a.yaml"
    path.write_text(workload(access=BOTH), encoding="utf-8")
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    advisor(ACCOUNT).job_seconds = 0
    now = clock.now()
    record_access(ACCOUNT, ROLE_ARN, "dynamodb", action="GetItem", at=now - timedelta(days=2),
                  region="eu-west-1")
    record_access(ACCOUNT, ROLE_ARN, "sns", action="Publish", at=now - timedelta(days=200),
                  region="eu-west-1")
    path.write_text(workload(access=QUEUE_ONLY), encoding="utf-8")
    return path


def actions_in_policy(aws: Any) -> set[str]:
    doc = aws.get_role_policy(RoleName=ROLE, PolicyName="workload-ids")["PolicyDocument"]
    return {a for st in doc["Statement"] for a in ([st["Action"]] if isinstance(st["Action"], str)
                                                    else st["Action"])}


def test_plan_says_which_removed_permission_is_still_used(moved: Path) -> None:
    text = run_cli("plan", str(moved))
    assert text.code == 0, text.err
    assert f"- dynamodb:GetItem  {TABLE}  (USED: last used 2 days ago)" in text.out
    assert f"- sns:Publish  {TOPIC}  (unused: last used 200 days ago)" in text.out
    doc = json.loads(run_cli("plan", "--output", "json", str(moved)).out)
    removed = {r["action"]: r for c in doc["changes"] for r in c.get("permissions", {}).get("removed", [])}
    assert removed["dynamodb:GetItem"]["used"] is True
    assert removed["dynamodb:GetItem"]["basis"] == "action"
    assert removed["sns:Publish"]["used"] is False
    assert "was last used at" in removed["sns:Publish"]["usage"]
    markdown = run_cli("plan", "--output", "markdown", str(moved)).out
    assert f"**STILL USED** `- dynamodb:GetItem  {TABLE}  (USED: last used 2 days ago)`" in markdown


def test_the_guardrail_refuses_removing_used_access(aws: Any, moved: Path) -> None:
    guarded(True)
    refused = run_cli("apply", "--auto-approve", str(moved))
    assert refused.code == 3
    assert "guardrails.refuseRemovingUsedAccess: this plan removes 1 permission(s)" in refused.err
    assert f"prod/svc-a: removing dynamodb:GetItem on {TABLE}, last used 2 days ago" in refused.err
    assert "sns:Publish" not in refused.err  # unused within the window: removing it breaks nothing
    assert "rerun with --accept-breaking" in refused.err
    assert {"dynamodb:GetItem", "sns:Publish"} <= actions_in_policy(aws)  # nothing changed

    accepted = run_cli("apply", "--auto-approve", "--accept-breaking", str(moved))
    assert accepted.code == 0, accepted.err
    assert not {"dynamodb:GetItem", "sns:Publish"} & actions_in_policy(aws)


def test_without_the_guardrail_the_mover_applies(aws: Any, moved: Path) -> None:
    guarded(False)
    assert run_cli("apply", "--auto-approve", str(moved)).code == 0
    assert not {"dynamodb:GetItem", "sns:Publish"} & actions_in_policy(aws)


def test_the_guardrail_lets_unused_access_go(aws: Any, moved: Path) -> None:
    guarded(True)
    keep_table = QUEUE_ONLY + ("    - actions: [dynamodb:GetItem]\n"
                               f"      resources: [{TABLE}]\n"
                               "      reason: reads the orders table\n")
    moved.write_text(workload(access=keep_table), encoding="utf-8")
    applied = run_cli("apply", "--auto-approve", str(moved))
    assert applied.code == 0, applied.err
    assert "dynamodb:GetItem" in actions_in_policy(aws) and "sns:Publish" not in actions_in_policy(aws)


def test_usage_the_cloud_cannot_read_counts_as_used(aws: Any, moved: Path) -> None:
    """A failed access advisor job does not make a removal look safe."""
    from workload_ids.sandbox.moto_access_advisor import fail_next_job
    fail_next_job(ACCOUNT, ROLE_ARN)
    guarded(True)
    refused = run_cli("apply", "--auto-approve", str(moved))
    assert refused.code == 3
    assert "sns:Publish" in refused.err and "dynamodb:GetItem" in refused.err
