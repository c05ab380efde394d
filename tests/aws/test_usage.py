"""AWS usage specifics: access advisor's job is polled by the tool's backoff until it is
COMPLETED (IN_PROGRESS first), a FAILED job is a CloudError that says what AWS said, a job
that never finishes is given up on within the seam's time, pages are followed, a user's
keys are read one by one, and a refused access advisor leaves RoleLastUsed to speak."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.aws import ACCOUNT

from workload_ids.calls import CallRecord, CallSeam, FailOperation, RetryPolicy
from workload_ids.clouds import connect
from workload_ids.config import load_config
from workload_ids.errors import CloudError, UserError
from workload_ids.providers.aws import usage as aws_usage
from workload_ids.providers.interface import Backends
from workload_ids.sandbox.common.clock import ManualClock
from workload_ids.sandbox.moto_access_advisor import advisor, fail_next_job, record_access
from workload_ids.usage import was_used

NOW = datetime.now(UTC).replace(microsecond=0)
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Resource": "*",
    "Action": ["sqs:ReceiveMessage", "s3:GetObject", "sns:Publish", "kms:Decrypt", "logs:PutLogEvents"]}]})
ADVISOR_POLL = "iam.get_service_last_accessed_details"


def _role(iam: Any, name: str = "billing-worker") -> str:
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="work", PolicyDocument=POLICY)
    return arn


def _cloud(retry: RetryPolicy | None = None) -> tuple[Backends, CallSeam, ManualClock, list[str]]:
    """AWS over a seam whose pauses move the advisor's clock; the answers' JobStatus in order."""
    ticking = ManualClock(NOW)
    advisor(ACCOUNT).clock = ticking
    seam = CallSeam(retry or RetryPolicy(), seed=1, sleep=ticking.advance)
    statuses: list[str] = []
    from workload_ids import calls

    def watch(record: CallRecord, result: Any) -> None:
        if record.operation == ADVISOR_POLL and isinstance(result, dict):
            statuses.append(str(result.get("JobStatus")))
    calls.RESULT_HOOKS.append(watch)
    return connect("aws", load_config(), seam), seam, ticking, statuses


@pytest.fixture(autouse=True)
def _no_hooks_left() -> Any:
    from workload_ids import calls
    before = list(calls.RESULT_HOOKS)
    yield
    calls.RESULT_HOOKS[:] = before


def test_the_job_is_polled_in_progress_then_completed(aws: Any) -> None:
    arn = _role(aws)
    record_access(ACCOUNT, arn, "sqs", action="ReceiveMessage", at=NOW - timedelta(hours=5))
    cloud, seam, ticking, statuses = _cloud()
    assert cloud.usage is not None
    found = cloud.usage.usage_of(ACCOUNT, arn)
    # A 2 s job, asked after 0.4 s, 1.2 s and 2.8 s by the tool's backoff.
    assert statuses == ["IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
    assert ticking.now - NOW.timestamp() == pytest.approx(2.8)
    assert seam.stats.calls["aws:iam.generate_service_last_accessed_details"] == 1
    assert [s.service for s in found.services] == ["kms", "logs", "s3", "sns", "sqs"]
    sqs = found.service("sqs")
    assert sqs is not None and sqs.last_used == NOW - timedelta(hours=5) and sqs.name == "Amazon SQS"
    assert found.last_used == NOW - timedelta(hours=5)  # RoleLastUsed moved with it


def test_a_quicker_job_takes_fewer_polls(aws: Any) -> None:
    arn = _role(aws)
    advisor(ACCOUNT).job_seconds = 0.3
    cloud, _, _, statuses = _cloud()
    assert cloud.usage is not None
    cloud.usage.usage_of(ACCOUNT, arn)
    assert statuses == ["COMPLETED"]


def test_a_failed_job_says_what_aws_said(aws: Any) -> None:
    arn = _role(aws)
    fail_next_job(ACCOUNT, arn, "ServiceFailure", "The report could not be generated.")
    cloud, _, _, statuses = _cloud()
    assert cloud.usage is not None
    with pytest.raises(CloudError) as caught:
        cloud.usage.usage_of(ACCOUNT, arn)
    assert caught.value.code == "ServiceFailure"
    assert caught.value.message.startswith(f"IAM could not make the access advisor report on {arn}: "
                                           "The report could not be generated. (job ")
    assert "rerun later" in caught.value.hint
    assert statuses[-1] == "FAILED"
    # The failure was for that job only: the next one completes.
    assert cloud.usage.usage_of(ACCOUNT, arn).services


def test_a_job_that_never_finishes_is_bounded(aws: Any) -> None:
    arn = _role(aws)
    advisor(ACCOUNT).job_seconds = 10_000
    cloud, seam, ticking, statuses = _cloud(RetryPolicy(max_seconds=30, max_delay=10))
    assert cloud.usage is not None
    with pytest.raises(CloudError) as caught:
        cloud.usage.usage_of(ACCOUNT, arn)
    assert caught.value.kind == "transient" and caught.value.code == "JobInProgress"
    assert "still making the access advisor report" in caught.value.message
    # Pauses of 0.4, 0.8, 1.6, 3.2, 6.4 and 10 s: 22.4 s waited; the next 10 s would pass 30.
    assert statuses == ["IN_PROGRESS"] * 6
    assert ticking.now - NOW.timestamp() == pytest.approx(22.4)
    assert seam.stats.calls[f"aws:{ADVISOR_POLL}"] == 6


def test_pages_are_followed(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = _role(aws)
    monkeypatch.setattr(aws_usage, "PAGE", 2)
    cloud, seam, _, _ = _cloud()
    assert cloud.usage is not None
    found = cloud.usage.usage_of(ACCOUNT, arn)
    assert [s.service for s in found.services] == ["kms", "logs", "s3", "sns", "sqs"]
    # Three polls until COMPLETED (the first page), then pages two and three.
    assert seam.stats.calls[f"aws:{ADVISOR_POLL}"] == 5


def test_a_users_keys_are_read_one_by_one(aws: Any) -> None:
    aws.create_user(UserName="vendor-sync")
    aws.put_user_policy(UserName="vendor-sync", PolicyName="work", PolicyDocument=POLICY)
    first = aws.create_access_key(UserName="vendor-sync")["AccessKey"]["AccessKeyId"]
    second = aws.create_access_key(UserName="vendor-sync")["AccessKey"]["AccessKeyId"]
    arn = aws.get_user(UserName="vendor-sync")["User"]["Arn"]
    record_access(ACCOUNT, arn, "s3", action="GetObject", at=NOW - timedelta(days=2), access_key_id=first)
    cloud, seam, _, _ = _cloud()
    assert cloud.usage is not None
    found = cloud.usage.usage_of(ACCOUNT, arn)
    assert found.kind == "user"
    assert {(k.key_id, k.last_used, k.service) for k in found.keys} == {
        (first, NOW - timedelta(days=2), "s3"), (second, None, "")}
    assert found.last_used == NOW - timedelta(days=2)
    assert seam.stats.calls["aws:iam.get_access_key_last_used"] == 2
    assert "SecretAccessKey" not in repr(found)


def test_a_refused_advisor_leaves_role_last_used_to_speak(aws: Any) -> None:
    arn = _role(aws)
    record_access(ACCOUNT, arn, "sqs", at=NOW - timedelta(days=40))
    cloud, seam, _, _ = _cloud()
    assert cloud.usage is not None
    seam.inject(FailOperation("iam.generate_service_last_accessed_details", "denied"))
    found = cloud.usage.usage_of(ACCOUNT, arn)
    assert found.services == () and found.last_used == NOW - timedelta(days=40)
    assert found.unread[0].startswith("service last accessed (access advisor): refused (AccessDenied")
    answer = was_used(found, "sqs:ReceiveMessage", "*", NOW - timedelta(days=30))
    assert (answer.used, answer.basis) == (False, "identity")


def test_a_bad_address_is_a_user_error(aws: Any) -> None:
    cloud, seam, _, _ = _cloud()
    assert cloud.usage is not None
    with pytest.raises(UserError, match="is not an IAM role or user ARN"):
        cloud.usage.usage_of(ACCOUNT, "billing-worker")
    with pytest.raises(UserError, match="names a group, not a role or user"):
        cloud.usage.usage_of(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:group/admins")
    assert seam.stats.total == 0
