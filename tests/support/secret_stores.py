"""The key-mode workload's secret on AWS and GCP, as an attacker sees it: a principal to
open it to, the keys and secret versions the cloud holds, and fleets to apply it in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from google.iam.v1 import iam_policy_pb2, policy_pb2

from .aws import KEY_MODE as AWS_KEY_MODE
from .aws import SECRET, USER
from .gcp import KEY_MODE as GCP_KEY_MODE
from .trust import TEST_TRUST

GCP_SECRET = "projects/acme-prod/secrets/workload-ids_prod_vendor-sync"
MALLORY = "arn:aws:iam::123456789012:user/mallory"
OPEN_TO_MALLORY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": MALLORY}, "Action": "secretsmanager:GetSecretValue",
    "Resource": "*"}]})


def _sm() -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1")


def _aws_keys(iam: Any) -> list[str]:
    try:
        return [k["AccessKeyId"] for k in iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]]
    except iam.exceptions.NoSuchEntityException:
        return []


def _versions(name: str = SECRET) -> dict[str, Any]:
    return dict(_sm().describe_secret(SecretId=name).get("VersionIdsToStages") or {})


@pytest.fixture
def aws_vendor(aws: Any, manifests: Any) -> Path:
    Path("workload-ids.yaml").write_text("credentials: {verify: {interval: 0s}}\n")
    return Path(manifests({"vendor.yaml": AWS_KEY_MODE})) / "vendor.yaml"


@pytest.fixture
def gcp_local(manifests: Any) -> Iterator[tuple[Any, Path]]:
    from workload_ids.sandbox.gcp.local import start_local_gcp
    gcp = start_local_gcp()
    Path("workload-ids.yaml").write_text(gcp.config_block() + "credentials: {verify: {interval: 0s}}\n"
                                         + TEST_TRUST)
    folder = manifests({"vendor.yaml": GCP_KEY_MODE})
    try:
        yield gcp, folder
    finally:
        gcp.stop()


def _bind(client: Any, member: str) -> None:
    client.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(
        resource=GCP_SECRET, policy=policy_pb2.Policy(bindings=[policy_pb2.Binding(
            role="roles/secretmanager.secretAccessor", members=[member])])))
