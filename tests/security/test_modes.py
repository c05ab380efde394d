"""Attacks on the deletion policy (issue 17, item 4): the policy lives in the marker and
its MAC covers it, so a plain tag written by someone with iam:TagRole turns neither a
delete into a retain (the identity would escape cleanup, released instead of deleted)
nor a retain into a delete (a kept identity would be quarantined and deleted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.aws import aws_mac_state, workload
from support.cli import run_cli
from support.leavers import CONFIG, OWNERS, START, by_identity

from workload_ids.model import TAG_DELETION_POLICY, TAG_MANAGED_BY

ROLE = "wid_prod_svc-a"


def tags_of(iam: Any, role: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role)["Tags"]}


def applied(manifests: Any, retain: bool) -> Path:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    text = workload()
    if retain:
        text = text.replace("spec:\n", "spec:\n  deletionPolicy: retain\n", 1)
    folder = manifests({"svc-a.yaml": text, "svc-b.yaml": workload("svc-b")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    return folder


def test_a_retain_tag_does_not_turn_a_delete_into_a_release(aws: Any, manifests: Any,
                                                            monkeypatch: Any) -> None:
    folder = applied(manifests, retain=False)
    aws.tag_role(RoleName=ROLE, Tags=[{"Key": TAG_DELETION_POLICY, "Value": "retain"}])
    (folder / "svc-a.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    found = by_identity(json.loads(run_cli("cleanup", str(folder), "--output", "json").out))[ROLE]
    assert (found["status"], found["action"]) == ("forged", None)
    before = tags_of(aws, ROLE)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert tags_of(aws, ROLE) == before  # never released: the marker is still there
    assert before[TAG_MANAGED_BY] == "workload-ids"


def test_removing_the_retain_tag_does_not_turn_a_release_into_a_delete(
        aws: Any, manifests: Any, monkeypatch: Any) -> None:
    folder = applied(manifests, retain=True)
    aws.untag_role(RoleName=ROLE, TagKeys=[TAG_DELETION_POLICY])
    (folder / "svc-a.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    found = by_identity(json.loads(run_cli("cleanup", str(folder), "--output", "json").out))[ROLE]
    assert (found["status"], found["action"]) == ("forged", None)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", "2099-01-01T00:00:00Z")
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert "workload-ids-quarantine" not in aws.list_role_policies(RoleName=ROLE)["PolicyNames"]
    assert aws.get_role(RoleName=ROLE)["Role"]["RoleName"] == ROLE


def test_apply_removes_a_retain_tag_it_did_not_write(aws: Any, manifests: Any,
                                                     monkeypatch: Any) -> None:
    """An identity whose MAC the stray tag broke is re-marked by apply (it sits at our path
    and name): the stray tag goes, it is never signed into the new marker."""
    folder = applied(manifests, retain=False)
    aws.tag_role(RoleName=ROLE, Tags=[{"Key": TAG_DELETION_POLICY, "Value": "retain"}])
    plan = run_cli("plan", str(folder))
    assert f"~ {TAG_DELETION_POLICY}: retain -> (none)" in plan.out
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert TAG_DELETION_POLICY not in tags_of(aws, ROLE)
    assert aws_mac_state(aws.get_role(RoleName=ROLE)["Role"]) == "valid"
    (folder / "svc-a.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    found = by_identity(json.loads(run_cli("cleanup", str(folder), "--output", "json").out))[ROLE]
    assert found["action"] == "quarantine"
