"""adopt --apply is an administrator's act on AWS (README 'Bootstrap'): no tool identity
may tag a role outside aws.rolePath, and when the cloud refuses the marker, adopt says so
and what to do, and the role stays unmarked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.leavers import CONFIG, OWNERS

from workload_ids import api
from workload_ids.calls import DENIED, CallRecord, CallSeam
from workload_ids.config import Config

ACCOUNT = "123456789012"


def test_a_refused_marker_names_the_administrator_and_marks_nothing(
        aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    arn = aws.create_role(RoleName="Legacy.Reader", Path="/legacy/", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                  "Principal": {"Service": "lambda.amazonaws.com"},
                                                  "Condition": {"StringEquals": {
                                                      "aws:SourceAccount": ACCOUNT}}}]}))["Role"]["Arn"]
    table = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/t"
    aws.put_role_policy(RoleName="Legacy.Reader", PolicyName="reads", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "dynamodb:GetItem",
                                                 "Resource": table}]}))
    made = api.seam_for

    def seam_for(config: Config) -> CallSeam:
        # The tool identity's credentials: IAM refuses the tag write on a role outside our path.
        seam = made(config)
        seam.inject(lambda call: DENIED if isinstance(call, CallRecord) and call.operation == "iam.tag_role"
                    else None)
        return seam
    monkeypatch.setattr(api, "seam_for", seam_for)
    result = run_cli("adopt", arn, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err
    assert "no identity `workload-ids bootstrap` makes may do (by design" in result.err
    assert "run `adopt --apply` with an administrator's credentials (iam:TagRole on that role)" in result.err
    tags = aws.list_role_tags(RoleName="Legacy.Reader")["Tags"]
    assert tags == []
    # Without --apply the same identity writes the manifest and marks nothing.
    monkeypatch.setattr(api, "seam_for", made)
    assert run_cli("adopt", arn, "--out", str(tmp_path / "b"), "--owner", "team-a").code == 0
