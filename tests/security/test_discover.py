"""Attacks on discover (AWS on moto): a copied or misplaced marker claiming an identity
for us and a team, spreadsheet formulas in names and tags, and discover writing anything."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from support.aws import ACCOUNT, workload
from support.cli import run_cli

from workload_ids import calls

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def _found(*args: str) -> dict[str, dict[str, Any]]:
    result = run_cli("discover", "--output", "json", *args)
    assert result.code == 0, result.err
    return {i["name"]: i for i in json.loads(result.out)["identities"]}


def _apply(manifests: Any, name: str) -> dict[str, Any]:
    result = run_cli("apply", "--auto-approve", str(manifests({f"{name}.yaml": workload(name)})))
    assert result.code == 0, result.err
    return result.__dict__


def test_a_marker_copied_onto_a_role_at_our_path_and_name_is_not_believed(aws: Any, manifests: Any) -> None:
    _apply(manifests, "svc-a")
    real = aws.get_role(RoleName="wid_prod_svc-a")["Role"]
    aws.delete_role_policy(RoleName="wid_prod_svc-a", PolicyName="workload-ids")
    aws.delete_role(RoleName="wid_prod_svc-a")
    # Same path, same name, every tag (the MAC too): only the role's new id differs.
    aws.create_role(RoleName="wid_prod_svc-a", Path="/workload-ids/", AssumeRolePolicyDocument=TRUST,
                    Tags=real["Tags"])
    copy = _found()["wid_prod_svc-a"]
    assert copy["managed"] is False
    assert copy["owner"] is None and [f["code"] for f in copy["findings"]] == ["no-owner"]


def test_a_marker_copied_outside_our_path_is_not_believed(aws: Any, manifests: Any) -> None:
    _apply(manifests, "svc-a")
    tags = aws.get_role(RoleName="wid_prod_svc-a")["Role"]["Tags"]
    aws.create_role(RoleName="lookalike", AssumeRolePolicyDocument=TRUST, Tags=tags)
    found = _found()
    assert found["wid_prod_svc-a"]["managed"] is True
    assert found["lookalike"]["managed"] is False and found["lookalike"]["owner"] is None


def test_formulas_in_names_and_tags_do_not_run_in_a_spreadsheet(aws: Any) -> None:
    aws.create_role(RoleName="=HYPERLINK", AssumeRolePolicyDocument=TRUST,
                    Tags=[{"Key": "owner", "Value": "@SUM(1+1)"}])
    result = run_cli("discover", "--output", "csv")
    assert result.code == 0, result.err
    row = next(r for r in csv.DictReader(io.StringIO(result.out)) if "HYPERLINK" in r["name"])
    assert row["name"] == "'=HYPERLINK" and row["owner"] == "'@SUM(1+1)"
    assert row["id"] == f"arn:aws:iam::{ACCOUNT}:role/=HYPERLINK"  # starts with a letter: as is


def test_discover_only_reads(aws: Any, manifests: Any) -> None:
    _apply(manifests, "svc-a")
    aws.create_user(UserName="u")
    aws.create_access_key(UserName="u")
    seen: list[str] = []
    calls.CALL_HOOKS.append(lambda record: seen.append(record.operation))
    try:
        assert run_cli("discover", "--service-linked").code == 0
    finally:
        calls.CALL_HOOKS.pop()
    # GenerateCredentialReport asks IAM to build a report; it changes nothing in the account.
    assert set(seen) <= {"iam.get_account_authorization_details", "iam.generate_credential_report",
                         "iam.get_credential_report", "secretsmanager.get_secret_value",
                         "sts.get_caller_identity"}, seen
