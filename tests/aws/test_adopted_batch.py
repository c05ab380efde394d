"""Adopted roles in a fleet plan (issue 17): the scope read leaves out what an adopted role
is compared by (every policy it holds, its session and description), and plan completes
them in one batch when that costs fewer calls than reading each alone. Either way the
plan shows the same rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.leavers import CONFIG, OWNERS

from workload_ids.model import ObservedIdentity
from workload_ids.providers.aws import identity

ACCOUNT = "123456789012"
GITHUB = "token.actions.githubusercontent.com"
TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/legacy"


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(actions: list[str], resource: str) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": [resource]}


def _trust(repo: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GITHUB}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{GITHUB}:aud": "sts.amazonaws.com",
                                       f"{GITHUB}:sub": f"repo:acme/{repo}:ref:refs/heads/main"}}}]})


@pytest.fixture
def adopted(aws: Any, tmp_path: Path) -> tuple[Any, Path]:
    """Twelve hand-made roles on three paths (inline policies; a managed policy shared by
    four, one of its own for one), adopted and marked; their manifests' folder."""
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    shared = aws.create_policy(PolicyName="shared-reads", PolicyDocument=_doc(
        _allow(["dynamodb:Query"], f"{TABLE}-shared")))["Policy"]["Arn"]
    own = aws.create_policy(PolicyName="own-reads", PolicyDocument=_doc(
        _allow(["sqs:SendMessage"], f"arn:aws:sqs:eu-west-1:{ACCOUNT}:results")))["Policy"]["Arn"]
    arns = []
    for i in range(12):
        name = f"legacy-{i:02d}"
        path = ("/legacy/", "/legacy/batch/", "/ops/")[i % 3]
        arns.append(aws.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=_trust(name),
                                    Description=f"made by hand, {i}",
                                    MaxSessionDuration=3600 + 600 * (i % 2))["Role"]["Arn"])
        aws.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=_doc(
            _allow(["dynamodb:GetItem"], f"{TABLE}-{i}")))
        if i % 3 == 0:
            aws.attach_role_policy(RoleName=name, PolicyArn=shared)
        if i == 4:
            aws.attach_role_policy(RoleName=name, PolicyArn=own)
    folder = tmp_path / "adopted"
    result = run_cli("adopt", *arns, "--out", str(folder), "--owner", "team-a", "--apply")
    assert result.code == 0, result.out + result.err
    return aws, folder


def _rows(doc: dict[str, Any]) -> list[str]:
    return sorted(json.dumps(c, sort_keys=True) for c in doc["changes"])


def _fleet(folder: Path) -> dict[str, Any]:
    result = run_cli("plan", "--output", "json", str(folder))
    assert result.code in (0, 2), result.err
    return dict(json.loads(result.out))


def _one_by_one(folder: Path) -> tuple[list[str], int]:
    """Each manifest planned alone (a per-service plan reads its role alone, whole)."""
    rows: list[str] = []
    calls = 0
    for path in sorted(folder.iterdir()):
        result = run_cli("plan", "--output", "json", str(path))
        assert result.code in (0, 2), result.err
        doc = json.loads(result.out)
        rows += _rows(doc)
        calls += doc["summary"]["apiCalls"]
    return sorted(rows), calls


def test_a_fleet_plan_reads_adopted_roles_in_one_batch_with_no_change(adopted: tuple[Any, Path]) -> None:
    _, folder = adopted
    doc = _fleet(folder)
    assert doc["changes"] == [], doc["changes"][:3]
    # Per account: the signing key, the authorization details and our path's roles (3),
    # and the boundary the manifests name (GetPolicy: it exists); then the batch:
    # ListRoles under /legacy/ (which holds /legacy/batch/) and /ops/, and
    # one page of the authorization details' managed policies (two distinct attached
    # policies: 4 calls one by one, the walk counted as 2 pages, moto answers in one).
    assert doc["summary"]["apiCalls"] == 4 + 2 + 1, doc["summary"]
    rows, calls = _one_by_one(folder)
    assert rows == []
    assert calls > 12 * 5


def test_drift_of_adopted_roles_plans_the_same_rows_in_a_batch_as_one_by_one(
        adopted: tuple[Any, Path]) -> None:
    iam, folder = adopted
    iam.update_role(RoleName="legacy-00", Description="changed by hand", MaxSessionDuration=7200)
    iam.put_role_policy(RoleName="legacy-01", PolicyName="extra", PolicyDocument=_doc(
        _allow(["s3:GetObject"], "arn:aws:s3:::legacy-extra/*")))
    iam.update_assume_role_policy(RoleName="legacy-02", PolicyDocument=_trust("someone-else"))
    shared = f"arn:aws:iam::{ACCOUNT}:policy/shared-reads"
    iam.create_policy_version(PolicyArn=shared, SetAsDefault=True, PolicyDocument=_doc(
        _allow(["dynamodb:Query", "dynamodb:Scan"], f"{TABLE}-shared")))
    iam.detach_role_policy(RoleName="legacy-03", PolicyArn=shared)
    fleet = _rows(_fleet(folder))
    alone, _ = _one_by_one(folder)
    assert fleet == alone
    actions = sorted({(json.loads(r)["identity"], json.loads(r)["action"]) for r in fleet})
    assert actions == [("legacy-00", "update-permissions"), ("legacy-00", "update-settings"),
                       ("legacy-01", "update-permissions"),
                       ("legacy-02", "update-trust"), ("legacy-03", "update-permissions"),
                       ("legacy-06", "update-permissions"), ("legacy-09", "update-permissions")]
    # The new default version of the shared policy is what the batch compared.
    assert any("dynamodb:scan" in r.lower() for r in fleet)


def test_a_forged_adoption_marker_is_still_refused_in_a_fleet_plan(adopted: tuple[Any, Path]) -> None:
    iam, folder = adopted
    iam.tag_role(RoleName="legacy-05", Tags=[{"Key": "workload-ids:mac", "Value": "forged"}])
    result = run_cli("plan", str(folder))
    assert result.code != 0
    assert "legacy-05" in result.err and "will not be modified" in result.err


def _seen(path: str, inline: int = 1, attached: tuple[str, ...] = ()) -> ObservedIdentity:
    return ObservedIdentity(provider="aws", target=ACCOUNT, kind="role", name="r", address="a",
                            tags={}, documents={}, settings={"path": path},
                            extra={"inline": {f"p{i}": {} for i in range(inline)},
                                   "attached": list(attached)})


def test_the_crossover_is_counted_in_calls() -> None:
    """A role at / lists the whole account: in an account of 6,000 roles one adopted role
    there is read alone (6 calls either way: a tie keeps the one-by-one read); two are
    read in a batch (6 pages against 12 calls)."""
    account = ["/"] * 5000 + ["/legacy/"] * 1000
    one = [_seen("/")]
    assert identity._alone_cost(one[0]) == 6
    assert identity._batch_cost(one, account) == 6
    assert identity._batch_cost(one * 2, account) == 6 < 2 * identity._alone_cost(one[0])
    assert identity._batch_cost([_seen("/legacy/")], account) == 1
    # A role with attached policies costs 2 calls each alone; the batch reads each
    # distinct policy once, or walks the account's policies (counted as 2 pages).
    two = _seen("/legacy/", attached=("arn:aws:iam::123456789012:policy/a",))
    assert identity._alone_cost(two) == 8
    assert identity._batch_cost([two], account) == 3
    many = [_seen("/legacy/", attached=tuple(f"arn:aws:iam::123456789012:policy/{i}" for i in range(5)))]
    assert identity._batch_cost(many, account) == 1 + identity.POLICY_WALK_PAGES
    assert identity._path_prefixes(["/a/b/", "/a/", "/c/", "/a/"]) == ["/a/", "/c/"]
