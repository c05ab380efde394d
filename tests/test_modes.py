"""Modes per manifest (issue 17, item 4) on AWS (moto): ``spec.mode: observe`` plans drift
and never applies it; ``spec.deletionPolicy: retain`` releases an identity whose manifest
is gone (marker removed, nothing deleted, the audit trail says so); the config's
``defaults`` section; key rotation never runs for an observe workload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.aws import aws_mac_state, workload
from support.cli import run_cli
from support.leavers import CONFIG, OWNERS, START, by_identity

from workload_ids.audit import records
from workload_ids.config import load_config
from workload_ids.model import TAG_DELETION_POLICY, TAG_DIGEST, TAG_MAC

ROLE = "wid_prod_svc-a"
WIDER = ("    - template: queue.consume\n"
         "      resources: [arn:aws:sqs:eu-west-1:123456789012:svc-a]\n"
         "    - template: queue.consume\n"
         "      resources: [arn:aws:sqs:eu-west-1:123456789012:other]\n")


def with_spec(text: str, extra: str) -> str:
    """``text`` (a manifest from :func:`workload`) with ``extra`` lines added under spec."""
    return text.replace("spec:\n", "spec:\n" + extra, 1)


def tags_of(iam: Any, role: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role)["Tags"]}


def state(iam: Any, role: str) -> dict[str, Any]:
    """Everything apply or cleanup could change about a role."""
    r = iam.get_role(RoleName=role)["Role"]
    return {"trust": r["AssumeRolePolicyDocument"], "tags": tags_of(iam, role),
            "inline": {p: iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
                       for p in iam.list_role_policies(RoleName=role)["PolicyNames"]},
            "attached": iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"],
            "boundary": r.get("PermissionsBoundary"), "description": r.get("Description")}


# --- observe -----------------------------------------------------------------------------


def test_observe_reports_drift_and_apply_changes_nothing(aws: Any, manifests: Any) -> None:
    folder = manifests({"svc-a.yaml": workload()})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    before = state(aws, ROLE)
    (folder / "svc-a.yaml").write_text(with_spec(workload(access=WIDER), "  mode: observe\n"))

    plan = run_cli("plan", "--detailed-exitcode", str(folder))
    assert plan.code == 2, plan.err  # drift is what observe mode shows
    assert "[observe mode: drift only, apply changes nothing]" in plan.out
    assert "~ update-permissions (observe only: apply will not make this change)" in plan.out
    assert "+ sqs:ReceiveMessage  arn:aws:sqs:eu-west-1:123456789012:other" in plan.out
    assert "change(s) belong to observe-mode workloads" in plan.out
    doc = json.loads(run_cli("plan", "--output", "json", str(folder)).out)
    assert doc["changes"] and all(c["observeOnly"] is True for c in doc["changes"])
    assert all(c["note"] == "observe only: apply will not make this change" for c in doc["changes"])
    assert doc["summary"]["observeOnly"] == len(doc["changes"])

    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err
    assert "observe mode:" in applied.out and "none applied" in applied.out
    assert state(aws, ROLE) == before  # not even the digest tag or the MAC moved
    # Still drift: the plan says the same afterwards.
    assert run_cli("plan", "--detailed-exitcode", str(folder)).code == 2
    # Flipped to manage, apply converges it.
    (folder / "svc-a.yaml").write_text(workload(access=WIDER))
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert state(aws, ROLE) != before
    assert run_cli("plan", "--detailed-exitcode", str(folder)).code == 0


def test_observe_never_creates(aws: Any, manifests: Any) -> None:
    folder = manifests({"svc-a.yaml": with_spec(workload(), "  mode: observe\n")})
    plan = run_cli("plan", "--detailed-exitcode", str(folder))
    assert plan.code == 2
    assert "+ create (observe only: apply will not make this change)" in plan.out
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert not [r for r in aws.list_roles()["Roles"] if r["RoleName"] == ROLE]


def test_config_default_mode_applies_and_manifest_overrides(aws: Any, manifests: Any) -> None:
    Path("workload-ids.yaml").write_text(Path("workload-ids.yaml").read_text()
                                         + "defaults: {mode: observe, deletionPolicy: retain}\n")
    folder = manifests({"svc-a.yaml": workload(),
                        "svc-b.yaml": with_spec(workload("svc-b"), "  mode: manage\n"
                                                "  deletionPolicy: delete\n")})
    doc = json.loads(run_cli("plan", "--output", "json", str(folder)).out)
    observe = {c["workload"] for c in doc["changes"] if c.get("observeOnly")}
    assert observe == {"prod/svc-a"}
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert [r["RoleName"] for r in aws.list_roles(PathPrefix="/workload-ids/")["Roles"]] == ["wid_prod_svc-b"]
    assert TAG_DELETION_POLICY not in tags_of(aws, "wid_prod_svc-b")


def test_modes_reach_the_compiled_model(manifests: Any) -> None:
    from workload_ids.api import validate
    folder = manifests({"a.yaml": with_spec(workload(), "  mode: observe\n  deletionPolicy: retain\n"),
                        "b.yaml": workload("svc-b")})
    result = validate([str(folder)], load_config())
    by_name = {c.name: c for c in result.compiled}
    a, b = by_name["svc-a"], by_name["svc-b"]
    assert (a.management, a.deletion_policy, a.observe, a.marker.retain) == ("observe", "retain", True, True)
    assert (b.management, b.deletion_policy, b.observe, b.marker.retain) == ("manage", "delete", False, False)
    assert a.marker.as_tags()[TAG_DELETION_POLICY] == "retain"
    assert TAG_DELETION_POLICY not in b.marker.as_tags()


def test_bad_mode_is_positioned(manifests: Any) -> None:
    folder = manifests({"a.yaml": with_spec(workload(), "  mode: watch\n")})
    result = run_cli("validate", str(folder))
    assert result.code == 1
    assert "a.yaml:8:9: 'mode' must be one of 'manage' or 'observe', not 'watch'" in result.err


def test_rotation_never_runs_for_observe(aws: Any, manifests: Any) -> None:
    text = ("apiVersion: workload-ids/v1\nkind: Workload\n"
            "metadata: {name: legacy-batch, owner: team-a, environment: prod}\n"
            "spec:\n  provider: aws\n  mode: observe\n  runtime: on-premises\n"
            "  aws: {account: \"123456789012\", region: eu-west-1}\n"
            "  credentials: {mode: key}\n"
            "  access:\n    - template: queue.consume\n"
            "      resources: [arn:aws:sqs:eu-west-1:123456789012:q]\n")
    folder = manifests({"k.yaml": text})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    result = run_cli("rotate", str(folder))
    assert result.code == 0, result.err
    assert "rotation never runs" in result.out
    assert aws.list_users()["Users"] == []


# --- retain ------------------------------------------------------------------------------


def retained_fleet(aws: Any, manifests: Any, monkeypatch: Any) -> Path:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"svc-a.yaml": with_spec(workload(), "  deletionPolicy: retain\n"),
                        "svc-b.yaml": workload("svc-b")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    return folder


def test_retain_releases_the_identity_when_its_manifest_goes(aws: Any, manifests: Any,
                                                             monkeypatch: Any) -> None:
    folder = retained_fleet(aws, manifests, monkeypatch)
    role = aws.get_role(RoleName=ROLE)["Role"]
    assert tags_of(aws, ROLE)[TAG_DELETION_POLICY] == "retain"
    assert aws_mac_state(role) == "valid"  # the MAC covers the policy
    aws.tag_role(RoleName=ROLE, Tags=[{"Key": "team", "Value": "payments"}])  # someone else's tag
    before = state(aws, ROLE)
    (folder / "svc-a.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)

    dry = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    found = by_identity(dry)[ROLE]
    assert (found["status"], found["action"]) == ("no-manifest", "disown")
    assert "deletionPolicy retain: released" in found["reason"]
    assert by_identity(dry)["wid_prod_svc-b"]["action"] is None

    done = run_cli("cleanup", str(folder), "--apply")
    assert done.code == 0, done.err
    after = state(aws, ROLE)
    assert after["tags"] == {"team": "payments"}  # only our tags went
    assert {k: v for k, v in after.items() if k != "tags"} == \
        {k: v for k, v in before.items() if k != "tags"}  # trust, policies, boundary kept
    released = [r for r in records(Path("audit.jsonl")) if r["action"] == "release-identity"]
    assert len(released) == 1 and released[0]["identity"] == ROLE
    assert "marker was removed and the identity kept" in released[0]["detail"]["released"]
    assert released[0]["before"]["deletionPolicy"] == "retain"
    # No longer ours: later runs list it (our path) as unmanaged and never touch it.
    again = by_identity(json.loads(run_cli("cleanup", str(folder), "--output", "json").out))
    assert (again[ROLE]["status"], again[ROLE]["action"]) == ("unmanaged", None)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", "2099-01-01T00:00:00Z")
    run_cli("cleanup", str(folder), "--apply")
    assert state(aws, ROLE) == after


def test_retain_of_a_quarantined_identity_lifts_the_quarantine(aws: Any, manifests: Any,
                                                               monkeypatch: Any) -> None:
    """An identity quarantined while still marked delete, then given retain by a new apply
    before its manifest went: it is released enabled, not left denied."""
    folder = retained_fleet(aws, manifests, monkeypatch)
    aws.put_role_policy(RoleName=ROLE, PolicyName="workload-ids-quarantine", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}))
    (folder / "svc-a.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert "workload-ids-quarantine" not in aws.list_role_policies(RoleName=ROLE)["PolicyNames"]
    assert TAG_MAC not in tags_of(aws, ROLE)


def test_release_needs_an_audit_log(aws: Any, manifests: Any, monkeypatch: Any) -> None:
    folder = retained_fleet(aws, manifests, monkeypatch)
    Path("workload-ids.yaml").write_text(CONFIG.replace("audit: {path: audit.jsonl}\n", ""))
    (folder / "svc-a.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    before = state(aws, ROLE)
    result = run_cli("cleanup", str(folder), "--apply")
    assert result.code == 1
    assert "no audit log is configured to record it" in result.err
    assert state(aws, ROLE) == before


def test_retain_is_never_deleted_when_its_owner_leaves(aws: Any, manifests: Any,
                                                       monkeypatch: Any) -> None:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"svc-a.yaml": with_spec(workload(owner="alice"), "  deletionPolicy: retain\n")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    assert run_cli("cleanup", str(folder), "--apply").code == 0  # quarantined: owner gone
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", "2099-01-01T00:00:00Z")
    doc = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    assert by_identity(doc)[ROLE]["action"] != "delete"
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert aws.get_role(RoleName=ROLE)["Role"]["RoleName"] == ROLE
    assert tags_of(aws, ROLE)[TAG_DIGEST]
