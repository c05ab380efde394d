"""Attacks on ``workload-ids adopt`` (issue 17, item 3): adoption must not launder a grant
the guardrails refuse into an approved manifest, must not take a managed identity's name,
and an adopted marker copied onto another role (outside the tool's path and naming, where
only the MAC vouches for it) is never believed, re-marked or acted on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.aws import workload
from support.cli import run_cli
from support.leavers import CONFIG, OWNERS, START, by_identity

ACCOUNT = "123456789012"
TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/legacy"
GITHUB = "token.actions.githubusercontent.com"
TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GITHUB}"},
    "Action": "sts:AssumeRoleWithWebIdentity",
    "Condition": {"StringEquals": {f"{GITHUB}:aud": "sts.amazonaws.com",
                                   f"{GITHUB}:sub": "repo:acme/legacy:ref:refs/heads/main"}}}]}


def role(iam: Any, name: str, actions: list[str], resources: list[str], path: str = "/legacy/") -> str:
    arn = iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    statement = {"Effect": "Allow", "Action": actions, "Resource": resources}
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [statement]}))
    return str(arn)


def tags(iam: Any, name: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]}


@pytest.fixture
def world(aws: Any) -> Any:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    return aws


def test_a_denied_action_is_not_laundered(world: Any, tmp_path: Path) -> None:
    Path("workload-ids.yaml").write_text(CONFIG + "guardrails: {deniedActions: [dynamodb:DeleteItem]}\n")
    arn = role(world, "legacy-writer", ["dynamodb:GetItem", "dynamodb:DeleteItem"], [TABLE])
    result = run_cli("adopt", arn, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "the identity holds what the config's guardrails refuse" in result.err
    assert "dynamodb:DeleteItem" in result.err and "nothing was written" in result.err
    assert list((tmp_path / "a").iterdir()) == []
    assert tags(world, "legacy-writer") == {}


def test_an_escalation_is_not_laundered(world: Any, tmp_path: Path) -> None:
    arn = role(world, "legacy-passer", ["iam:PassRole"], [f"arn:aws:iam::{ACCOUNT}:role/app"])
    result = run_cli("adopt", arn, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "iam:PassRole" in result.err and "approvedEscalations" in result.err
    assert list((tmp_path / "a").iterdir()) == []
    assert tags(world, "legacy-passer") == {}


def test_a_managed_workload_name_is_not_taken(world: Any, manifests: Any, tmp_path: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(manifests({"a.yaml": workload("svc-a")}))).code == 0
    managed = tags(world, "wid_prod_svc-a")
    arn = role(world, "svc-a", ["dynamodb:GetItem"], [TABLE])
    result = run_cli("adopt", arn, "--out", str(tmp_path / "a"), "--owner", "bob",
                     "--environment", "prod", "--apply")
    assert result.code == 1
    assert "already the identity of workload prod/svc-a (owner team-a)" in result.err
    assert list((tmp_path / "a").iterdir()) == []
    assert tags(world, "svc-a") == {} and tags(world, "wid_prod_svc-a") == managed


def test_a_copied_adopted_marker_is_never_believed(world: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone with iam:TagRole copies an adopted role's marker, MAC and all, onto another
    role outside the tool's path: the MAC binds the marker to the first role, so the copy
    is forged; plan refuses a manifest naming it (apply would otherwise re-mark it as
    ours), and cleanup never releases or quarantines it."""
    arn = role(world, "legacy-a", ["dynamodb:GetItem"], [TABLE])
    assert run_cli("adopt", arn, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply").code == 0
    copy = role(world, "legacy-b", ["dynamodb:GetItem"], [TABLE])
    # The copy names the workload and manifest the attacker's manifest declares, so only
    # the MAC tells it apart from an adopted role of ours.
    forged = {**tags(world, "legacy-a"), "workload-ids:workload": "legacy-b",
              "workload-ids:source": "b/b.yaml"}
    world.tag_role(RoleName="legacy-b", Tags=[{"Key": k, "Value": v} for k, v in forged.items()])
    stolen = tags(world, "legacy-b")
    manifest = (tmp_path / "a" / "adopted-legacy-a.yaml").read_text().replace(arn, copy)
    Path("b").mkdir()
    Path("b/b.yaml").write_text(manifest.replace('name: "legacy-a"', 'name: "legacy-b"'))
    plan = run_cli("plan", "b")
    assert plan.code == 1
    assert "it is marked as adopted but its marker is not authenticated" in plan.err
    assert run_cli("apply", "--auto-approve", "b").code == 1
    assert tags(world, "legacy-b") == stolen
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    found = by_identity(json.loads(run_cli("cleanup", "--output", "json").out))
    assert (found["legacy-b"]["status"], found["legacy-b"]["action"]) == ("forged", None)
    assert found["legacy-a"]["status"] == "active"
    assert run_cli("cleanup", "--apply").code == 0
    assert tags(world, "legacy-b") == stolen
