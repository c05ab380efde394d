"""Access advisor as the local AWS serves it (moto taught the two operations from
workload_ids/sandbox/moto_access_advisor.py), through a plain boto3 client: AWS's shapes,
the job's life by the advisor's clock, paging and AWS's refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.aws import ACCOUNT

from workload_ids.sandbox.common.clock import ManualClock
from workload_ids.sandbox.moto_access_advisor import advisor, record_access

AT = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "sqs:SendMessage"], "Resource": "*"},
    {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}]})


@pytest.fixture
def role(aws: Any) -> str:
    arn: str = aws.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": []}))["Role"]["Arn"]
    aws.put_role_policy(RoleName="reader", PolicyName="p", PolicyDocument=POLICY)
    return arn


def test_a_job_runs_by_the_clock_then_answers_in_awss_shape(aws: Any, role: str) -> None:
    ticking = ManualClock(AT + timedelta(days=1))
    advisor(ACCOUNT).clock = ticking
    record_access(ACCOUNT, role, "s3", action="GetObject", at=AT, region="eu-west-1")
    job = aws.generate_service_last_accessed_details(Arn=role, Granularity="ACTION_LEVEL")["JobId"]
    waiting = aws.get_service_last_accessed_details(JobId=job)
    assert (waiting["JobStatus"], waiting["JobType"], waiting["ServicesLastAccessed"]) == (
        "IN_PROGRESS", "ACTION_LEVEL", [])
    ticking.advance(2)
    done = aws.get_service_last_accessed_details(JobId=job)
    assert done["JobStatus"] == "COMPLETED" and done["IsTruncated"] is False
    assert done["JobCompletionDate"] - done["JobCreationDate"] == timedelta(seconds=2)
    s3, sqs = done["ServicesLastAccessed"]  # iam is only denied: not reported
    assert s3 == {"ServiceName": "Amazon S3", "ServiceNamespace": "s3", "LastAuthenticated": AT,
                  "LastAuthenticatedEntity": role, "LastAuthenticatedRegion": "eu-west-1",
                  "TotalAuthenticatedEntities": 1,
                  "TrackedActionsLastAccessed": [{"ActionName": "GetObject", "LastAccessedEntity": role,
                                                  "LastAccessedTime": AT, "LastAccessedRegion": "eu-west-1"}]}
    assert sqs == {"ServiceName": "Amazon SQS", "ServiceNamespace": "sqs", "TotalAuthenticatedEntities": 0}
    assert aws.get_role(RoleName="reader")["Role"]["RoleLastUsed"]["LastUsedDate"] == AT


def test_service_level_jobs_leave_actions_out_and_pages_follow(aws: Any, role: str) -> None:
    advisor(ACCOUNT).job_seconds = 0
    record_access(ACCOUNT, role, "s3", action="GetObject", at=AT)
    job = aws.generate_service_last_accessed_details(Arn=role)["JobId"]
    first = aws.get_service_last_accessed_details(JobId=job, MaxItems=1)
    assert first["JobType"] == "SERVICE_LEVEL" and first["IsTruncated"] is True
    assert "TrackedActionsLastAccessed" not in first["ServicesLastAccessed"][0]
    rest = aws.get_service_last_accessed_details(JobId=job, MaxItems=1, Marker=first["Marker"])
    assert [s["ServiceNamespace"] for s in first["ServicesLastAccessed"] + rest["ServicesLastAccessed"]] == [
        "s3", "sqs"]
    assert rest["IsTruncated"] is False


def test_awss_refusals(aws: Any, role: str) -> None:
    def code(fn: Any, **kwargs: Any) -> str:
        with pytest.raises(ClientError) as caught:
            fn(**kwargs)
        return str(caught.value.response["Error"]["Code"])
    assert code(aws.generate_service_last_accessed_details,
                Arn=f"arn:aws:iam::{ACCOUNT}:role/nobody") == "NoSuchEntity"
    assert code(aws.get_service_last_accessed_details, JobId="00000000-0000-0000-0000-000000000000") == (
        "NoSuchEntity")
    assert code(aws.generate_service_last_accessed_details,
                Arn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/x") == "InvalidInput"
