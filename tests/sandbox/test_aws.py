"""The local AWS (moto in process, and the moto server) applies each request atomically,
as AWS does: concurrent creates never see moto's tables half-written. Apply's thread pool
once failed a workload with "dictionary changed size during iteration" from inside moto's
CreateRole (its duplicate-name scan of the role table raced another thread's insert)."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from support.aws import ACCOUNT

TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})
THREADS, EACH = 4, 3


class SlowScans(dict[str, Any]):
    """moto's role table with every step of a scan pausing, so that a scan and another
    thread's insert overlap on every run instead of once in many hundred. Only timing
    changes: the table holds the same roles and answers the same."""

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        for role in super().values():
            time.sleep(0.002)  # hands the interpreter to the other threads mid-scan
            yield role


def _slow_role_table() -> None:
    from moto.iam.models import iam_backends
    backend = iam_backends[ACCOUNT]["aws"]
    backend.roles = SlowScans(backend.roles)


def _create_concurrently(iam: Any) -> list[str]:
    """THREADS threads, each creating EACH roles at the same moment; the errors they met."""
    start = threading.Barrier(THREADS)

    def create(thread: int) -> list[str]:
        start.wait()
        errors = []
        for n in range(EACH):
            try:
                iam.create_role(RoleName=f"racer-{thread}-{n}", AssumeRolePolicyDocument=TRUST)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        return errors

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        return [e for f in [pool.submit(create, t) for t in range(THREADS)] for e in f.result()]


def _roles(iam: Any) -> set[str]:
    return {r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("racer-")}


@pytest.mark.parametrize("where", ["in-process", "server"])
def test_concurrent_creates_do_not_see_each_other_mid_request(where: str, request: pytest.FixtureRequest
                                                              ) -> None:
    fixture = request.getfixturevalue("aws" if where == "in-process" else "aws_server")
    # No retries: a request moto failed must show, not be hidden by a second attempt.
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=fixture.meta.endpoint_url,
                       config=Config(retries={"total_max_attempts": 1}))
    for n in range(5):  # something to scan
        iam.create_role(RoleName=f"existing-{n}", AssumeRolePolicyDocument=TRUST)
    _slow_role_table()
    assert _create_concurrently(iam) == []
    assert _roles(iam) == {f"racer-{t}-{n}" for t in range(THREADS) for n in range(EACH)}
