"""Issue 17's guards around organisation targets and shards (moto's AWS Organizations):

- an organization entry's role is assumed only in accounts the organization lists as
  active, never in an account a manifest or ``--target`` merely names, nor in a
  suspended or excluded member;
- ``cleanup --apply`` refuses ``--shard``: N shards applying at once would each get the
  whole ``cleanup.maxActions`` budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.aws import seed, workload
from support.cli import run_cli

from workload_ids import calls
from workload_ids.calls import CallRecord

ROLE = "OrgReader"
OUTSIDER = "999999999999"  # not a member of the organization


@pytest.fixture
def members(aws: Any) -> Iterator[dict[str, str]]:
    client = boto3.client("organizations", region_name="us-east-1")
    client.create_organization(FeatureSet="ALL")
    ids = {n: client.create_account(AccountName=n, Email=f"{n}@example.com")
           ["CreateAccountStatus"]["AccountId"] for n in ("active", "suspended", "excluded")}
    client.close_account(AccountId=ids["suspended"])
    creds = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{ids['active']}:role/{ROLE}", RoleSessionName="seed")["Credentials"]
    seed(boto3.client("iam", region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
                      aws_secret_access_key=creds["SecretAccessKey"],
                      aws_session_token=creds["SessionToken"]))
    base = Path("workload-ids.yaml").read_text()
    Path("workload-ids.yaml").write_text(
        base + f"targets:\n  aws:\n    - organization: {{role: {ROLE}}}\n"
        f"      exclude: ['{ids['excluded']}']\n")
    yield ids


@pytest.fixture
def assumed() -> Iterator[list[str]]:
    """Every role the tool tries to assume in this test."""
    seen: list[str] = []

    def record(call: CallRecord) -> None:
        if call.operation == "sts.assume_role":
            seen.append(str(call.params.get("RoleArn")))
    calls.CALL_HOOKS.append(record)
    yield seen
    calls.CALL_HOOKS.remove(record)


def test_the_organization_role_is_assumed_only_in_listed_active_members(
        members: dict[str, str], assumed: list[str], manifests: Any) -> None:
    folder = manifests({"outsider.yaml": workload("svc-out").replace("123456789012", OUTSIDER)})
    # A manifest naming an account outside the organization: the ambient credentials are
    # used there, and refused (they reach 123456789012), rather than the organization's role.
    planned = run_cli("plan", str(folder))
    assert planned.code == 1, planned.err + planned.out
    assert OUTSIDER in planned.err
    looked = run_cli("inventory", "--target", OUTSIDER)
    assert looked.code == 1 and OUTSIDER in looked.err
    # Every read: the active member only, never the suspended or excluded one
    listed = run_cli("inventory", "--output", "json")
    assert listed.code == 0, listed.err
    assert [t["target"] for t in json.loads(listed.out)["targets"]] == sorted(
        ["123456789012", members["active"]])
    assert assumed and set(assumed) == {f"arn:aws:iam::{members['active']}:role/{ROLE}"}


def test_cleanup_apply_refuses_a_shard(aws: Any, manifests: Any) -> None:
    folder = manifests({"a.yaml": workload("svc-a"), "b.yaml": workload("svc-b")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "b.yaml").unlink()
    refused = run_cli("cleanup", str(folder), "--apply", "--shard", "1/2")
    assert refused.code == 3, refused.err + refused.out
    assert "cleanup --apply reads every target" in refused.err
    tags = aws.list_role_tags(RoleName="wid_prod_svc-b")["Tags"]
    assert not any(t["Key"] == "workload-ids:quarantine" for t in tags)  # nothing changed
    # a dry run may be sharded: each worker reports its part
    dry = run_cli("cleanup", str(folder), "--shard", "1/1", "--output", "json")
    assert dry.code == 0, dry.err
    assert json.loads(dry.out)["shard"] == {"index": 1, "count": 1}
