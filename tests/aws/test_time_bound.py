"""A time-bound grant on AWS ends by IAM's own condition: each time-bound entry gets
statements of its own carrying ``DateLessThan aws:CurrentTime``, merged with the other
conditions (the S3 ``aws:ResourceAccount`` one).

moto 5.2 cannot prove the end by itself: its IAM enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``)
evaluates ``StringEquals`` only and skips any other operator as if it held, and it has no
policy simulator. So the sandbox teaches moto IAM's ``SimulatePrincipalPolicy`` (a strict
evaluator over the role's stored policies and boundary, workload_ids/sandbox/moto_simulator.py),
and the tests ask it, through boto3, with ``aws:CurrentTime`` before and at the end; the
stored policy is also judged by the test suite's own evaluator (support/iam_eval.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.aws import workload
from support.cli import run_cli
from support.iam_eval import request_allowed

from workload_ids.clock import format_time
from workload_ids.providers.aws.render import identity_name

NOW = datetime.now(UTC).replace(microsecond=0)
ENDS = NOW + timedelta(days=5)
SOONER = NOW + timedelta(days=2)
QUEUE = "arn:aws:sqs:eu-west-1:123456789012:orders"
ACCOUNT = "123456789012"


def _manifest() -> str:
    return workload("svc-a", access=(
        f"    - template: queue.consume\n      resources: [{QUEUE}]\n"
        "    - template: object-storage.read\n      resources: [arn:aws:s3:::launch-assets]\n"
        f"      expires: {format_time(ENDS)}\n      approval: CHG-4711\n"
        "    - template: object-storage.read\n      resources: [arn:aws:s3:::press-kit]\n"
        f"      expires: {format_time(SOONER)}\n      approval: CHG-4712\n"))


def _policy(aws: Any) -> dict[str, Any]:
    doc: dict[str, Any] = aws.get_role_policy(RoleName=identity_name("wid", "prod", "svc-a"),
                                              PolicyName="workload-ids")["PolicyDocument"]
    return doc


def test_iam_stops_honouring_each_entry_at_its_own_end(aws: Any, manifests: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW))
    folder = manifests({"a.yaml": _manifest()})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    policy = _policy(aws)
    bound = [s for s in policy["Statement"] if "DateLessThan" in s.get("Condition", {})]
    # Two statements per entry (bucket and objects), one Sid each, never merged across entries.
    assert len(bound) == 4 and len({s["Sid"] for s in bound}) == 4
    for st in bound:
        assert st["Condition"]["StringEquals"] == {"aws:ResourceAccount": ACCOUNT}
    ends = {s["Condition"]["DateLessThan"]["aws:CurrentTime"] for s in bound}
    assert ends == {format_time(ENDS), format_time(SOONER)}

    def reads(bucket: str, at: datetime) -> bool:
        return request_allowed(policy, "s3:GetObject", f"arn:aws:s3:::{bucket}/a.txt",
                               {"aws:CurrentTime": format_time(at), "aws:ResourceAccount": ACCOUNT})

    def consumes(at: datetime) -> bool:
        return request_allowed(policy, "sqs:ReceiveMessage", QUEUE, {"aws:CurrentTime": format_time(at)})

    assert reads("launch-assets", NOW) and reads("press-kit", NOW) and consumes(NOW)
    assert reads("launch-assets", SOONER) and not reads("press-kit", SOONER)
    assert reads("launch-assets", ENDS - timedelta(seconds=1))
    assert not reads("launch-assets", ENDS)
    assert consumes(ENDS + timedelta(days=400))  # an entry without an end is not cut
    # Another account's bucket of the same name stays refused before the end too.
    assert not request_allowed(policy, "s3:GetObject", "arn:aws:s3:::launch-assets/a.txt",
                               {"aws:CurrentTime": format_time(NOW), "aws:ResourceAccount": "999999999999"})


def test_after_the_first_end_apply_drops_only_that_entry(aws: Any, manifests: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW))
    folder = manifests({"a.yaml": _manifest()})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(SOONER + timedelta(minutes=1)))
    plan = run_cli("plan", str(folder), "--output", "json")
    [change] = [c for c in json.loads(plan.out)["changes"] if c.get("expired")]
    assert [e["entry"] for e in change["expired"]] == [2]
    assert all("press-kit" in r["resource"] for r in change["permissions"]["removed"])
    assert change["permissions"]["added"] == []
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    text = json.dumps(_policy(aws))
    assert "press-kit" not in text and "launch-assets" in text
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0


def test_time_bound_entries_never_share_a_statement_with_others() -> None:
    from workload_ids.model import Grant
    from workload_ids.providers.aws.render import policy_document
    grants = [Grant(source="queue.consume", entry=i, listed=f"q{i}", resource=f"{QUEUE}{i}",
                    kind="sqs-queue", actions=("sqs:ReceiveMessage",),
                    expires=format_time(ENDS) if i % 2 else None, approval="CHG-1" if i % 2 else None)
               for i in range(4)]
    doc = policy_document(grants, ACCOUNT)
    plain = [s for s in doc["Statement"] if "Condition" not in s]
    assert len(plain) == 1 and plain[0]["Resource"] == [f"{QUEUE}0", f"{QUEUE}2"]
    assert sorted(s["Resource"] for s in doc["Statement"] if "Condition" in s) == [f"{QUEUE}1", f"{QUEUE}3"]


def _simulate(aws: Any, action: str, resource: str, **context: str) -> dict[str, Any]:
    entries = [{"ContextKeyName": k.replace("_", ":", 1), "ContextKeyValues": [v],
                "ContextKeyType": "date" if k == "aws_CurrentTime" else "string"}
               for k, v in context.items()]
    role = aws.get_role(RoleName=identity_name("wid", "prod", "svc-a"))["Role"]["Arn"]
    answer = aws.simulate_principal_policy(PolicySourceArn=role, ActionNames=[action],
                                           ResourceArns=[resource], ContextEntries=entries)
    [result] = answer["EvaluationResults"]
    return dict(result)


def test_the_policy_simulator_stops_allowing_at_the_end(aws: Any, manifests: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """IAM's own API for the question (SimulatePrincipalPolicy, taught to moto by the
    sandbox): the role's stored policies and its permissions boundary, judged with
    aws:CurrentTime before and at the end."""
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW))
    assert run_cli("apply", "--auto-approve", str(manifests({"a.yaml": _manifest()}))).code == 0
    obj = "arn:aws:s3:::launch-assets/a.txt"

    def decision(at: datetime, account: str = ACCOUNT) -> str:
        return str(_simulate(aws, "s3:GetObject", obj, aws_CurrentTime=format_time(at),
                             aws_ResourceAccount=account)["EvalDecision"])

    assert decision(NOW) == "allowed"
    assert decision(ENDS - timedelta(seconds=1)) == "allowed"
    assert decision(ENDS) == "implicitDeny"
    assert decision(NOW, account="999999999999") == "implicitDeny"
    # Without the time in the request the statement cannot hold: IAM always has it.
    missing = _simulate(aws, "s3:GetObject", obj, aws_ResourceAccount=ACCOUNT)
    assert missing["EvalDecision"] == "implicitDeny"
    assert "aws:CurrentTime" in missing["MissingContextValues"]
    # An entry without an end, and the boundary's own deny, are judged as IAM would.
    assert _simulate(aws, "sqs:ReceiveMessage", QUEUE)["EvalDecision"] == "allowed"
    assert _simulate(aws, "iam:PassRole", "*")["EvalDecision"] == "explicitDeny"
