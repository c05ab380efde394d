"""Issue 14 items 1 and 2 (review H2, H4): markers are believed only with a MAC keyed by
the signing key the tool keeps in the cloud's own secret store, and an identity is bound
to its source (``team:NAME`` or the manifest's path).

At the tool's location and naming, with copied tags and no MAC, a wrong MAC, or a MAC
copied from another identity, an identity is reported ``forged`` and never touched by
cleanup; apply refuses a takeover from another source; without the key every command that
would act refuses with nothing changed. Legitimate flows (apply, quarantine then delete,
transfer, restore) still work. AWS on moto; GCP and Azure on our emulators.
"""

# ruff: noqa: F811  (the shared fixture gcp_keyed is imported, then named as an argument)
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.aws import workload
from support.cli import run_cli
from support.marked_fleets import (  # noqa: F401  (gcp_keyed: a fixture)
    AFTER_GRACE,
    CONFIG,
    OWNERS,
    PAST_MARK,
    START,
    TRUST,
    by_identity,
    gcp_keyed,
    role_tags,
)
from support.trust import TEST_TRUST

from workload_ids.audit import auditor_for, records
from workload_ids.markers import AWS_KEY_SECRET, NOT_AUTHENTICATED
from workload_ids.model import MARK_TAG

ACCOUNT = "123456789012"
NO_KEY = "no signing key at Secrets Manager secret workload-ids/signing-key in account 123456789012"


def _state(iam: Any, name: str) -> dict[str, Any]:
    """Everything cleanup could change on a role."""
    role = iam.get_role(RoleName=name)["Role"]
    return {"path": role["Path"], "trust": role["AssumeRolePolicyDocument"], "tags": role_tags(iam, name),
            "policies": iam.list_role_policies(RoleName=name)["PolicyNames"]}


def _plant(iam: Any, name: str, tags: dict[str, str], path: str = "/workload-ids/") -> None:
    iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=TRUST,
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def _copied(iam: Any, workload_name: str, mac: str | None) -> dict[str, str]:
    """svc-a's marker tags (a live, declared workload's), renamed to ``workload_name``,
    with ``mac`` (None: no MAC at all) and a quarantine mark due long ago."""
    tags = role_tags(iam, "wid_prod_svc-a")
    tags["workload-ids:workload"] = workload_name
    tags.pop("workload-ids:mac")
    if mac is not None:
        tags["workload-ids:mac"] = mac
    tags[MARK_TAG] = PAST_MARK
    return tags


# --- AWS -----------------------------------------------------------------------------

@pytest.fixture
def fleet(aws: Any, manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    """svc-a (declared) and svc-d (applied, its manifest then removed), at START (as in
    test_forged_markers)."""
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({f"{n}.yaml": workload(n) for n in ("svc-a", "svc-d")})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    (folder / "svc-d.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    yield aws, folder


@pytest.mark.parametrize("mac", ["none", "invalid", "copied"])
def test_aws_copied_marker_at_our_location_and_naming_is_forged_and_untouched(
        fleet: tuple[Any, Path], mac: str) -> None:
    """Path /workload-ids/, the name we would give prod/svc-x, the five marker tags and a
    past-due quarantine mark: without its own MAC it is forged, never quarantined or
    deleted (it would be deleted at once if its marker were believed)."""
    iam, folder = fleet
    value = {"none": None, "invalid": "0" * 64,
             "copied": role_tags(iam, "wid_prod_svc-a")["workload-ids:mac"]}[mac]
    _plant(iam, "wid_prod_svc-x", _copied(iam, "svc-x", value))
    before = _state(iam, "wid_prod_svc-x")
    dry = run_cli("cleanup", str(folder), "--output", "json")
    assert dry.code == 0, dry.err
    found = by_identity(dry.out)["wid_prod_svc-x"]
    assert (found["status"], found["action"]) == ("forged", None)
    assert NOT_AUTHENTICATED in found["reason"]
    for clock in (START, AFTER_GRACE):
        os.environ["WORKLOAD_IDS_CLOCK"] = clock
        applied = run_cli("cleanup", str(folder), "--apply", "--output", "json")
        assert applied.code == 0, applied.err + applied.out
        assert all(r["identity"] != "wid_prod_svc-x" for r in json.loads(applied.out)["results"])
        assert _state(iam, "wid_prod_svc-x") == before
    inventory = json.loads(run_cli("inventory", str(folder), "--output", "json").out)
    [row] = [r for r in inventory["identities"] if r["identity"] == "wid_prod_svc-x"]
    assert row["state"] == "forged" and NOT_AUTHENTICATED in row["forged"]


def test_aws_our_identity_recreated_with_its_own_tags_and_mac_is_forged(fleet: tuple[Any, Path]) -> None:
    """A MAC copied with every tag onto a role of the same name and path made anew (someone
    deleted ours and recreated it with their own trust): the immutable id differs."""
    iam, folder = fleet
    tags = role_tags(iam, "wid_prod_svc-d")
    for policy in iam.list_role_policies(RoleName="wid_prod_svc-d")["PolicyNames"]:
        iam.delete_role_policy(RoleName="wid_prod_svc-d", PolicyName=policy)
    iam.delete_role(RoleName="wid_prod_svc-d")
    _plant(iam, "wid_prod_svc-d", {**tags, MARK_TAG: PAST_MARK})
    before = _state(iam, "wid_prod_svc-d")
    found = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid_prod_svc-d"]
    assert found["status"] == "forged" and NOT_AUTHENTICATED in found["reason"]
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert _state(iam, "wid_prod_svc-d") == before


def test_aws_copied_marker_outside_our_location_is_forged_even_with_a_mac(fleet: tuple[Any, Path]) -> None:
    iam, folder = fleet
    tags = role_tags(iam, "wid_prod_svc-d")
    _plant(iam, "prod-db-admin", {**tags, MARK_TAG: PAST_MARK}, path="/")
    before = _state(iam, "prod-db-admin")
    found = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["prod-db-admin"]
    assert found["status"] == "forged"
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert _state(iam, "prod-db-admin") == before


def test_aws_provider_refuses_every_action_on_an_unauthenticated_identity(fleet: tuple[Any, Path]) -> None:
    """The last line, below the judge: quarantine, release, transfer and delete refuse."""
    from workload_ids.calls import CallSeam
    from workload_ids.clouds import connect
    from workload_ids.config import load_config
    from workload_ids.errors import ConflictError
    from workload_ids.model import decode_mark
    iam, _ = fleet
    _plant(iam, "wid_prod_svc-x", _copied(iam, "svc-x", None))
    cloud = connect("aws", load_config(), CallSeam())
    provider = cloud.leavers
    [forged] = [o for o in cloud.identities.observe_scope(ACCOUNT) if o.name == "wid_prod_svc-x"]
    mark = decode_mark(PAST_MARK)
    for act in (lambda: provider.quarantine(forged, mark), lambda: provider.release(forged, mark),
                lambda: provider.transfer(forged, "bob"), lambda: provider.delete(forged)):
        with pytest.raises(ConflictError, match="not authenticated"):
            act()
    assert iam.list_role_policies(RoleName="wid_prod_svc-x")["PolicyNames"] == []


def test_aws_rotate_refuses_a_user_whose_marker_is_not_authenticated(aws: Any, manifests: Any) -> None:
    from support.aws import KEY_MODE
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"vendor.yaml": KEY_MODE})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    keys = aws.list_access_keys(UserName="wid_prod_vendor-sync")["AccessKeyMetadata"]
    aws.tag_user(UserName="wid_prod_vendor-sync", Tags=[{"Key": "workload-ids:mac", "Value": "0" * 64}])
    rotated = run_cli("rotate", str(folder), "--now", "vendor-sync")
    assert rotated.code != 0, rotated.out + rotated.err
    assert aws.list_access_keys(UserName="wid_prod_vendor-sync")["AccessKeyMetadata"] == keys


def test_aws_takeover_from_another_source_is_refused_and_changes_nothing(aws: Any, tmp_path: Path) -> None:
    """Review H4: team B's own file declares team A's environment and name, even with
    team A's owner: a different source, refused (exit 1) naming owner and source."""
    Path("workload-ids.yaml").write_text(CONFIG)
    Path("owners.yaml").write_text(OWNERS)
    (tmp_path / "cwd" / "team-a").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cwd" / "team-b").mkdir(parents=True, exist_ok=True)
    Path("team-a/svc-a.yaml").write_text(workload("svc-a"))
    assert run_cli("apply", "--auto-approve", "team-a/svc-a.yaml").code == 0
    assert role_tags(aws, "wid_prod_svc-a")["workload-ids:source"] == "team-a/svc-a.yaml"
    before = _state(aws, "wid_prod_svc-a")
    Path("team-b/svc-a.yaml").write_text(workload("svc-a", access="""\
    - template: queue.consume
      resources: [arn:aws:sqs:eu-west-1:123456789012:team-b-queue]
"""))
    taken = run_cli("apply", "--auto-approve", "team-b/svc-a.yaml")
    assert taken.code == 1, taken.out + taken.err
    assert "belongs to owner team-a and is declared by team-a/svc-a.yaml, but this manifest is " \
           "team-b/svc-a.yaml" in taken.err
    assert "fromSource: team-a/svc-a.yaml, toSource: team-b/svc-a.yaml" in taken.err
    assert _state(aws, "wid_prod_svc-a") == before
    # The platform team approves the move: then it goes through, and is bound to B's file.
    Path("workload-ids.yaml").write_text(CONFIG + """\
guardrails:
  approvedTransfers:
    - {workload: prod/svc-a, from: team-a, to: team-a, fromSource: team-a/svc-a.yaml,
       toSource: team-b/svc-a.yaml, reason: team B takes over the queue consumer}
""")
    moved = run_cli("apply", "--auto-approve", "team-b/svc-a.yaml")
    assert moved.code == 0, moved.out + moved.err
    assert role_tags(aws, "wid_prod_svc-a")["workload-ids:source"] == "team-b/svc-a.yaml"
    assert run_cli("plan", "--detailed-exitcode", "team-b/svc-a.yaml").code == 0


def test_aws_a_team_moves_its_own_files_freely(aws: Any, tmp_path: Path) -> None:
    Path("workload-ids.yaml").write_text(
        CONFIG + "teams:\n  payments:\n    manifests: ['teams/payments/**']\n")
    Path("owners.yaml").write_text(OWNERS)
    (tmp_path / "cwd" / "teams" / "payments" / "old").mkdir(parents=True)
    (tmp_path / "cwd" / "teams" / "payments" / "new").mkdir(parents=True)
    Path("teams/payments/old/svc-a.yaml").write_text(workload("svc-a"))
    assert run_cli("apply", "--auto-approve", "teams/payments/old/svc-a.yaml").code == 0
    assert role_tags(aws, "wid_prod_svc-a")["workload-ids:source"] == "team:payments"
    Path("teams/payments/old/svc-a.yaml").rename("teams/payments/new/svc-a.yaml")
    assert run_cli("plan", "--detailed-exitcode", "teams/payments/new/svc-a.yaml").code == 0
    # Outside the team's folders, the same workload is another source.
    Path("svc-a.yaml").write_text(workload("svc-a"))
    taken = run_cli("apply", "--auto-approve", "svc-a.yaml")
    assert taken.code == 1 and "is declared by team:payments" in taken.err


def test_teams_config_errors_are_positioned(tmp_path: Path) -> None:
    Path("svc.yaml").write_text(workload("svc-a"))
    Path("workload-ids.yaml").write_text("teams:\n  payments:\n    manifests: [a/*]\n"
                                         "  Bad_Name:\n    manifests: ['a/*']\n")
    result = run_cli("validate", "svc.yaml")
    assert result.code == 1
    assert "workload-ids.yaml:5:" in result.err and "team 'Bad_Name' is not valid" in result.err
    Path("workload-ids.yaml").write_text("teams:\n  payments:\n    manifests:\n      - a/**\n"
                                         "      - ../x/*\n")
    result = run_cli("validate", "svc.yaml")
    assert result.code == 1
    assert "workload-ids.yaml:5:" in result.err and "relative to this config" in result.err
    Path("workload-ids.yaml").write_text("teams:\n  a:\n    manifests: ['*.yaml']\n"
                                         "  b:\n    manifests: ['svc.yaml']\n")
    result = run_cli("validate", "svc.yaml")
    assert result.code == 1 and "matches the manifests of teams a, b" in result.err


def test_aws_unauthenticated_marker_is_re_marked_only_when_the_audit_log_agrees(
        fleet: tuple[Any, Path]) -> None:
    """The upgrade path: identities marked before MACs have none, and apply re-marks them
    (the manifest authorises it). When the audit log names another owner, it is a
    takeover and refused."""
    iam, folder = fleet
    iam.untag_role(RoleName="wid_prod_svc-a", TagKeys=["workload-ids:mac", "workload-ids:source"])
    plan = json.loads(run_cli("plan", str(folder), "--output", "json").out)
    [change] = [c for c in plan["changes"] if c["identity"] == "wid_prod_svc-a"]
    assert change["action"] == "update-tags" and "workload-ids:mac" in change["tags"]
    assert "workload-ids:source" in change["tags"]
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert run_cli("plan", "--detailed-exitcode", str(folder)).code == 0
    log = [json.loads(line) for line in Path("audit.jsonl").read_text().splitlines()]
    assert any(r["identity"] == "wid_prod_svc-a" and "workload-ids:source" in
               (r.get("detail") or {}).get("tags", {}) for r in log)
    # Another owner, the MAC stripped: the audit log says team-a.
    iam.untag_role(RoleName="wid_prod_svc-a", TagKeys=["workload-ids:mac"])
    before = _state(iam, "wid_prod_svc-a")
    (folder / "svc-a.yaml").write_text(workload("svc-a", owner="bob"))
    taken = run_cli("apply", "--auto-approve", str(folder))
    assert taken.code == 1, taken.out + taken.err
    assert "belongs to owner team-a, and this manifest says owner bob" in taken.err
    assert _state(iam, "wid_prod_svc-a") == before


def test_aws_identity_marked_before_sources_is_bound_by_apply(fleet: tuple[Any, Path]) -> None:
    """A valid MAC over a marker without a source (as the first signed version wrote):
    believed, and apply binds it to its manifest's source, recorded in the audit log."""
    import boto3

    from workload_ids.markers import sign
    from workload_ids.model import Marker
    from workload_ids.signing import SigningKey
    iam, folder = fleet
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    key = SigningKey.from_stored(sm.get_secret_value(SecretId=AWS_KEY_SECRET)["SecretString"], "test")
    role = iam.get_role(RoleName="wid_prod_svc-a")["Role"]
    marker = Marker.from_tags(role_tags(iam, "wid_prod_svc-a"))
    assert marker is not None and marker.source
    bare = marker.replace(source="")
    iam.untag_role(RoleName="wid_prod_svc-a", TagKeys=["workload-ids:source"])
    iam.tag_role(RoleName="wid_prod_svc-a", Tags=[{"Key": "workload-ids:mac", "Value": sign(
        key, "aws", ACCOUNT, "wid_prod_svc-a", role["RoleId"], bare)}])
    found = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid_prod_svc-a"]
    assert found["status"] != "forged", found
    plan = json.loads(run_cli("plan", str(folder), "--output", "json").out)
    [change] = [c for c in plan["changes"] if c["identity"] == "wid_prod_svc-a"]
    assert change["action"] == "update-tags" and set(change["tags"]) == {"workload-ids:source"}
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert role_tags(iam, "wid_prod_svc-a")["workload-ids:source"] == marker.source
    log = [json.loads(line) for line in Path("audit.jsonl").read_text().splitlines()]
    bound = [(r.get("detail") or {}).get("tags", {}).get("workload-ids:source", {}).get("to")
             for r in log if r["identity"] == "wid_prod_svc-a" and r["action"] == "update-tags"]
    assert marker.source in bound
    assert run_cli("plan", "--detailed-exitcode", str(folder)).code == 0


def test_aws_without_the_signing_key_every_command_refuses_and_changes_nothing(
        fleet: tuple[Any, Path]) -> None:
    import boto3
    iam, folder = fleet
    # svc-d deleted by cleanup (so there is a bundle to restore), svc-c quarantined.
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    assert "wid_prod_svc-d" not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    (folder / "svc-c.yaml").write_text(workload("svc-c"))
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "svc-c.yaml").unlink()
    boto3.client("secretsmanager", region_name="us-east-1").delete_secret(
        SecretId=AWS_KEY_SECRET, ForceDeleteWithoutRecovery=True)
    before = {name: _state(iam, name) for name in ("wid_prod_svc-a", "wid_prod_svc-c")}
    (folder / "svc-e.yaml").write_text(workload("svc-e"))
    for args in (("apply", "--auto-approve", str(folder)), ("cleanup", str(folder), "--apply"),
                 ("restore", "wid_prod_svc-d")):
        result = run_cli(*args)
        assert result.code == 1, (args, result.out, result.err)
        assert NO_KEY in result.err and "workload-ids bootstrap --apply" in result.err, (args, result.err)
    assert {name: _state(iam, name) for name in before} == before
    names = [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert "wid_prod_svc-e" not in names and "wid_prod_svc-d" not in names


def test_aws_rotate_without_the_signing_key_refuses(aws: Any, manifests: Any) -> None:
    import boto3
    from support.aws import KEY_MODE
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"vendor.yaml": KEY_MODE})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    keys = aws.list_access_keys(UserName="wid_prod_vendor-sync")["AccessKeyMetadata"]
    boto3.client("secretsmanager", region_name="us-east-1").delete_secret(
        SecretId=AWS_KEY_SECRET, ForceDeleteWithoutRecovery=True)
    rotated = run_cli("rotate", str(folder), "--now", "vendor-sync")
    assert rotated.code == 1 and NO_KEY in rotated.out + rotated.err, rotated.out + rotated.err
    assert aws.list_access_keys(UserName="wid_prod_vendor-sync")["AccessKeyMetadata"] == keys


def test_aws_restore_refuses_a_bundle_whose_marker_is_not_authenticated(fleet: tuple[Any, Path]) -> None:
    """A bundle at our location and naming, with a marker the tool never authenticated
    (anyone who can write the log can append one): nothing is created."""
    from workload_ids.config import load_config
    iam, _ = fleet
    tags = {k: v for k, v in role_tags(iam, "wid_prod_svc-d").items() if k != MARK_TAG}
    tags["workload-ids:workload"] = "svc-x"
    bundle = {"provider": "aws", "target": ACCOUNT, "kind": "role", "name": "wid_prod_svc-x",
              "address": f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_svc-x", "path": "/workload-ids/",
              "boundary": f"arn:aws:iam::{ACCOUNT}:policy/workload-ids/wid-workload-boundary",
              "tags": tags, "inlinePolicies": {}, "attachedPolicies": [], "groups": [],
              "trust": json.loads(TRUST), "description": "", "maxSessionDuration": 3600,
              "instanceProfiles": [], "immutableId": "AROAFORGED"}
    auditor_for(load_config(), "cleanup").record(
        workload="prod/svc-x", provider="aws", target=ACCOUNT, identity="wid_prod_svc-x",
        action="restore-bundle", before=bundle, detail={"quarantinedSince": START})
    refused = run_cli("restore", "wid_prod_svc-x")
    assert refused.code != 0, refused.out + refused.err
    assert "not authenticated" in refused.out + refused.err
    assert "wid_prod_svc-x" not in [r["RoleName"] for r in iam.list_roles()["Roles"]]


@pytest.mark.parametrize("mac", ["none", "invalid"])
def test_aws_restore_over_an_unsigned_role_with_the_bundles_marker(fleet: tuple[Any, Path],
                                                                   mac: str) -> None:
    """What a restore that died between CreateRole and signing leaves, or someone who
    planted a role with the bundle's tags in that name: with no MAC at all, restore makes
    it exactly the bundle's (the planted trust and policies go) and only then signs it;
    with a MAC that does not verify, it is someone else's and is refused untouched."""
    from support.aws import aws_mac_state
    iam, folder = fleet
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    bundle = next(r["before"] for r in records(Path("audit.jsonl"))
                  if r.get("action") == "restore-bundle" and r.get("identity") == "wid_prod_svc-d")
    tags = {k: v for k, v in bundle["tags"].items() if k not in (MARK_TAG, "workload-ids:mac")}
    if mac == "invalid":
        tags["workload-ids:mac"] = "0" * 64
    foreign_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
        "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="wid_prod_svc-d", Path="/workload-ids/",
                    AssumeRolePolicyDocument=json.dumps(foreign_trust),
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    iam.put_role_policy(RoleName="wid_prod_svc-d", PolicyName="planted",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    before = _state(iam, "wid_prod_svc-d")
    restored = run_cli("restore", "wid_prod_svc-d")
    if mac == "invalid":
        assert restored.code != 0 and NOT_AUTHENTICATED in restored.err, restored.out + restored.err
        assert _state(iam, "wid_prod_svc-d") == before
        return
    assert restored.code == 0, restored.out + restored.err
    role = iam.get_role(RoleName="wid_prod_svc-d")["Role"]
    assert role["AssumeRolePolicyDocument"] == bundle["trust"]
    inline = iam.list_role_policies(RoleName="wid_prod_svc-d")["PolicyNames"]
    assert inline == sorted(bundle["inlinePolicies"])
    assert aws_mac_state(role) == "valid"
    assert "interrupted restore" in restored.out


def test_aws_legitimate_transfer_re_signs_the_marker(aws: Any, manifests: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from support.aws import aws_mac_state
    Path("owners.yaml").write_text(OWNERS.replace(
        "{id: alice, kind: person, active: false}",
        "{id: alice, kind: person, active: false, successor: bob}"))
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"svc-a.yaml": workload("svc-a", owner="alice")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    role = aws.get_role(RoleName="wid_prod_svc-a")["Role"]
    assert role_tags(aws, "wid_prod_svc-a")["workload-ids:owner"] == "bob"
    assert aws_mac_state(role) == "valid"
    found = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid_prod_svc-a"]
    assert found["status"] != "forged"


def test_aws_tool_identities_may_read_but_never_write_the_signing_key() -> None:
    """Bootstrap's policies: every tool identity reads the key; none may replace it (the
    key-mode statements' ``workload-ids/*`` would otherwise cover it)."""
    from support.bootstrap_flows import Call
    from support.iam_eval import allowed

    from workload_ids.bootstrap.aws import render
    from workload_ids.config import Config, ConfigFile
    plan = render(Config(ConfigFile(), Path("."), None), ACCOUNT)
    arn = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{AWS_KEY_SECRET}-AbCdEf"
    entity = {"arn": arn, "tags": {"workload-ids:managed-by": "workload-ids"}}
    for ident in plan.identities:
        read = Call(ident.identity, "secretsmanager", "GetSecretValue", {"SecretId": AWS_KEY_SECRET}, entity)
        assert allowed(ident.policy, read), ident.identity
        for write in ("PutSecretValue", "UpdateSecret", "DeleteSecret", "PutResourcePolicy", "TagResource"):
            call = Call(ident.identity, "secretsmanager", write, {"SecretId": AWS_KEY_SECRET}, entity)
            assert not allowed(ident.policy, call), (ident.identity, write)
        create = Call(ident.identity, "secretsmanager", "CreateSecret",
                      {"Name": AWS_KEY_SECRET, "Tags": [{"Key": "workload-ids:managed-by",
                                                         "Value": "workload-ids"}]}, None)
        assert not allowed(ident.policy, create), ident.identity


def test_aws_bootstrap_creates_the_key_once_and_refuses_one_it_did_not_make(aws: Any) -> None:
    import boto3
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    sm.delete_secret(SecretId=AWS_KEY_SECRET, ForceDeleteWithoutRecovery=True)
    first = run_cli("bootstrap", "--provider", "aws", "--target", ACCOUNT, "--apply")
    assert first.code == 0, first.out + first.err
    assert f"created the marker signing key: Secrets Manager secret {AWS_KEY_SECRET}" in first.out
    value = sm.get_secret_value(SecretId=AWS_KEY_SECRET)["SecretString"]
    assert len(value) == 64 and value not in first.out + first.err
    policy = json.loads(sm.get_resource_policy(SecretId=AWS_KEY_SECRET)["ResourcePolicy"])
    assert all(st["Effect"] == "Deny" for st in policy["Statement"])
    again = run_cli("bootstrap", "--provider", "aws", "--target", ACCOUNT, "--apply")
    assert again.code == 0 and "signing key" not in again.out
    assert sm.get_secret_value(SecretId=AWS_KEY_SECRET)["SecretString"] == value
    # Someone else's secret under that name: refused, left as it is.
    sm.delete_secret(SecretId=AWS_KEY_SECRET, ForceDeleteWithoutRecovery=True)
    sm.create_secret(Name=AWS_KEY_SECRET, SecretString="ab" * 32,
                     Tags=[{"Key": "workload-ids:bootstrap", "Value": "signing-key"}])
    refused = run_cli("bootstrap", "--provider", "aws", "--target", ACCOUNT, "--apply")
    assert refused.code == 1, refused.out + refused.err
    assert "cannot show it made it" in refused.err
    assert sm.get_secret_value(SecretId=AWS_KEY_SECRET)["SecretString"] == "ab" * 32


# --- GCP -----------------------------------------------------------------------------


def _gcp_state(iam: Any, email: str) -> tuple[str, str, bool]:
    from support.gcp import accounts
    held = accounts(iam)[email]
    return held.description, held.display_name, held.disabled


@pytest.mark.parametrize("mac", ["none", "invalid", "copied"])
def test_gcp_copied_marker_at_our_naming_is_forged_and_untouched(gcp_keyed: tuple[Any, Any, Path],
                                                                 mac: str) -> None:
    """An account with the id we would give prod/svc-x, svc-a's marker renamed to svc-x,
    and a past-due mark: without its own MAC it is forged, never disabled or deleted."""
    from support.gcp import PROJECT, accounts
    from support.gcp import email as sa_email

    from workload_ids.model import Marker
    from workload_ids.providers.gcp import render
    iam, _, folder = gcp_keyed
    real = accounts(iam)[sa_email("svc-a")].description
    marker = Marker.from_text(real)
    assert marker is not None and len(Marker.mac_of_text(real)) == 32
    forged = marker.replace(workload="svc-x").as_text(
        {"none": "", "invalid": "0" * 32, "copied": Marker.mac_of_text(real)}[mac])
    made = iam.client().create_service_account(request={
        "name": f"projects/{PROJECT}", "account_id": render.account_id("wid", "prod", "svc-x"),
        "service_account": {"display_name": f"quarantine {PAST_MARK}", "description": forged}})
    before = _gcp_state(iam, made.email)
    found = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)[made.email]
    assert (found["status"], found["action"]) == ("forged", None)
    assert NOT_AUTHENTICATED in found["reason"]
    for clock in (START, AFTER_GRACE):
        os.environ["WORKLOAD_IDS_CLOCK"] = clock
        assert run_cli("cleanup", str(folder), "--apply").code == 0
        assert _gcp_state(iam, made.email) == before


def test_gcp_takeover_from_another_source_is_refused(gcp_keyed: tuple[Any, Any, Path],
                                                     tmp_path: Path) -> None:
    from support.gcp import email as sa_email
    from support.gcp import gcp_workload
    iam, _, _ = gcp_keyed
    before = _gcp_state(iam, sa_email("svc-a"))
    other = tmp_path / "team-b"
    other.mkdir()
    (other / "svc-a.yaml").write_text(gcp_workload(name="svc-a", owner="team-a"))
    taken = run_cli("apply", "--auto-approve", str(other / "svc-a.yaml"))
    assert taken.code == 1, taken.out + taken.err
    assert "is declared by ../manifests/svc-a.yaml, but this manifest is ../team-b/svc-a.yaml" in taken.err
    assert _gcp_state(iam, sa_email("svc-a")) == before


def test_gcp_without_the_signing_key_apply_and_cleanup_refuse(gcp_keyed: tuple[Any, Any, Path]) -> None:
    from support.gcp import PROJECT, gcp_workload
    from support.gcp import email as sa_email

    from workload_ids.markers import KEY_SECRET
    iam, keys, folder = gcp_keyed
    keys.client().delete_secret(name=f"projects/{PROJECT}/secrets/{KEY_SECRET}")
    before = {e: _gcp_state(iam, e) for e in (sa_email("svc-a"), sa_email("svc-d"))}
    (folder / "svc-e.yaml").write_text(gcp_workload(name="svc-e", owner="team-a"))
    for args in (("apply", "--auto-approve", str(folder)), ("cleanup", str(folder), "--apply")):
        result = run_cli(*args)
        assert result.code == 1, (args, result.out, result.err)
        assert f"no signing key at Secret Manager secret {KEY_SECRET} in project {PROJECT}" in result.err
    assert {e: _gcp_state(iam, e) for e in before} == before
    assert sa_email("svc-e") not in {a.email for a in iam.service_accounts(PROJECT)}


def test_gcp_unauthenticated_marker_is_re_marked_by_apply(gcp_keyed: tuple[Any, Any, Path]) -> None:
    """The upgrade path: a description without MAC (as every account had before) is
    marked anew by apply, and then believed."""
    from support.gcp import PROJECT, accounts
    from support.gcp import email as sa_email

    from workload_ids.model import Marker
    iam, _, folder = gcp_keyed
    old = Marker.from_text(accounts(iam)[sa_email("svc-a")].description)
    assert old is not None
    iam.client().patch_service_account(request={
        "service_account": {"name": f"projects/{PROJECT}/serviceAccounts/{sa_email('svc-a')}",
                            "description": old.replace(source="").as_text()},
        "update_mask": {"paths": ["description"]}})
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 2
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    now = accounts(iam)[sa_email("svc-a")].description
    assert Marker.mac_of_text(now) and Marker.from_text(now) == old
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0


def test_gcp_bootstrap_makes_the_key_and_refuses_one_it_did_not_make(tmp_path: Path) -> None:
    from workload_ids.markers import KEY_SECRET
    from workload_ids.sandbox.gcp.iam import IamEmulator
    from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, ResourceManagerEmulator
    from workload_ids.sandbox.gcp.secretmanager import SecretManagerEmulator
    registry = ProjectRegistry()
    iam, rm = IamEmulator(), ResourceManagerEmulator(projects=registry)
    sm = SecretManagerEmulator(projects=registry)
    project = "acme-boot"
    iam.add_project(project)
    rm.add_project(project)
    config = tmp_path / "boot.yaml"
    config.write_text(f"gcp: {{iamEndpoint: '{iam.start()}', resourceManagerEndpoint: '{rm.start()}', "
                      f"secretManagerEndpoint: '{sm.start()}', sandboxCredentials: true}}\n")
    try:
        args = ("bootstrap", "--provider", "gcp", "--target", project, "--apply", "--config", str(config))
        first = run_cli(*args)
        assert first.code == 0, first.out + first.err
        name = f"projects/{project}/secrets/{KEY_SECRET}"
        assert f"created secret {name}" in first.out
        client = sm.client()
        value = client.access_secret_version(name=f"{name}/versions/latest").payload.data.decode()
        assert len(value) == 64 and value not in first.out + first.err
        members = {m for b in client.get_iam_policy(request={"resource": name}).bindings for m in b.members}
        assert members == {f"serviceAccount:wid-tool-{i}@{project}.iam.gserviceaccount.com"
                           for i in ("apply", "rotate", "cleanup", "restore", "discover")}
        again = run_cli(*args)
        assert again.code == 0 and f"unchanged secret {name}" in again.out
        client.delete_secret(name=name)
        client.create_secret(request={"parent": f"projects/{project}", "secret_id": KEY_SECRET,
                                      "secret": {"replication": {"automatic": {}},
                                                 "annotations": {"workload-ids-bootstrap": "signing-key"}}})
        client.add_secret_version(request={"parent": name, "payload": {"data": b"ab" * 32}})
        refused = run_cli(*args)
        assert refused.code == 1, refused.out + refused.err
        assert "cannot show it made it" in refused.err
        assert client.access_secret_version(name=f"{name}/versions/latest").payload.data == b"ab" * 32
    finally:
        for emulator in (iam, rm, sm):
            emulator.stop()


# --- Azure ---------------------------------------------------------------------------

@pytest.fixture
def azure_keyed(manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path]]:
    """svc-a (declared) and svc-d (applied, its manifest then removed), at START."""
    from support.azure import CONTAINER, TOPIC, azure_workload

    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure(sandbox=False)
    for resource in (CONTAINER, TOPIC):
        local.arm.add_resource(resource)
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(
        local.config_block() + "owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
        "cleanup: {grace: 7d, minAge: 1h, maxShare: 1}\n" + TEST_TRUST)
    folder = manifests({f"{n}.yaml": azure_workload(name=n) for n in ("svc-a", "svc-d")})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    (folder / "svc-d.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    yield local, folder
    local.stop()


def _azure_identity(local: Any, name: str) -> tuple[dict[str, str], str]:
    from support.azure import RG, arm_clients
    msi, _ = arm_clients(local)
    found = msi.user_assigned_identities.get(RG, name)
    return dict(found.tags or {}), str(found.principal_id)


@pytest.mark.parametrize("mac", ["none", "invalid", "copied"])
def test_azure_copied_marker_at_our_naming_is_forged_and_untouched(azure_keyed: tuple[Any, Path],
                                                                   mac: str) -> None:
    from support.azure import RG, arm_clients
    local, folder = azure_keyed
    msi, _ = arm_clients(local)
    tags, _ = _azure_identity(local, "wid-prod-svc-a")
    tags["workload-ids:workload"] = "svc-x"
    value = tags.pop("workload-ids:mac")
    if mac != "none":
        tags["workload-ids:mac"] = "0" * 64 if mac == "invalid" else value
    msi.user_assigned_identities.create_or_update(RG, "wid-prod-svc-x", {
        "location": "westeurope", "tags": {**tags, MARK_TAG: PAST_MARK}})
    before = _azure_identity(local, "wid-prod-svc-x")
    found = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid-prod-svc-x"]
    assert (found["status"], found["action"]) == ("forged", None)
    assert NOT_AUTHENTICATED in found["reason"]
    for clock in (START, AFTER_GRACE):
        os.environ["WORKLOAD_IDS_CLOCK"] = clock
        assert run_cli("cleanup", str(folder), "--apply").code == 0
        assert _azure_identity(local, "wid-prod-svc-x") == before


def test_azure_our_identity_recreated_with_its_tags_and_mac_is_forged(azure_keyed: tuple[Any, Path]) -> None:
    """Deleted and made again under the same name with every tag and the MAC: a new
    principal, so the MAC does not verify and nothing is done to it."""
    from support.azure import RG, arm_clients
    local, folder = azure_keyed
    msi, _ = arm_clients(local)
    tags, principal = _azure_identity(local, "wid-prod-svc-d")
    msi.user_assigned_identities.delete(RG, "wid-prod-svc-d")
    msi.user_assigned_identities.create_or_update(RG, "wid-prod-svc-d", {
        "location": "westeurope", "tags": {**tags, MARK_TAG: PAST_MARK}})
    before = _azure_identity(local, "wid-prod-svc-d")
    assert before[1] != principal
    found = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid-prod-svc-d"]
    assert found["status"] == "forged" and NOT_AUTHENTICATED in found["reason"]
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert _azure_identity(local, "wid-prod-svc-d") == before


def test_azure_without_the_signing_key_apply_and_cleanup_refuse(azure_keyed: tuple[Any, Path]) -> None:
    from support.azure import azure_workload

    from workload_ids.calls import CallSeam
    from workload_ids.config import load_config
    from workload_ids.markers import KEY_SECRET
    from workload_ids.providers.azure.clients import AzureClients
    local, folder = azure_keyed
    vault = AzureClients(load_config(), CallSeam()).secrets
    vault.begin_delete_secret(KEY_SECRET).wait()
    before = {n: _azure_identity(local, n) for n in ("wid-prod-svc-a", "wid-prod-svc-d")}
    (folder / "svc-e.yaml").write_text(azure_workload(name="svc-e"))
    for args in (("apply", "--auto-approve", str(folder)), ("cleanup", str(folder), "--apply")):
        result = run_cli(*args)
        assert result.code == 1, (args, result.out, result.err)
        vault_url = local.settings["keyVaultUrl"]
        assert f"no signing key at Key Vault {vault_url} secret {KEY_SECRET}" in result.err
    assert {n: _azure_identity(local, n) for n in before} == before


def test_azure_legitimate_quarantine_delete_and_restore_re_signs(azure_keyed: tuple[Any, Path]) -> None:
    _, folder = azure_keyed
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    restored = run_cli("restore", "wid-prod-svc-d")
    assert restored.code == 0, restored.out + restored.err
    found = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid-prod-svc-d"]
    assert found["status"] != "forged", found


def test_azure_bootstrap_key_is_made_once_and_a_foreign_one_refused(tmp_path: Path) -> None:
    from workload_ids.bootstrap.azure_apply import ensure_signing_key
    from workload_ids.calls import CallSeam
    from workload_ids.config import Config, ConfigFile
    from workload_ids.errors import ConflictError
    from workload_ids.markers import KEY_SECRET
    from workload_ids.providers.azure.clients import AzureClients
    from workload_ids.sandbox.azure.keyvault import KeyVaultEmulator
    vault = KeyVaultEmulator()
    url = vault.start()
    try:
        clients = AzureClients(Config(ConfigFile.model_validate({"azure": {
            "keyVaultUrl": url, "caBundle": vault.ca_bundle_path, "sandboxCredentials": True}}),
            tmp_path, None), CallSeam())
        step = ensure_signing_key(clients, clients.secrets)
        assert step is not None and step.action == "created"
        value = clients.secrets.get_secret(KEY_SECRET).value
        again = ensure_signing_key(clients, clients.secrets)
        assert again is not None and again.action == "unchanged"
        assert clients.secrets.get_secret(KEY_SECRET).value == value
        clients.secrets.set_secret(KEY_SECRET, "ab" * 32)  # someone else's, under our name
        with pytest.raises(ConflictError, match="cannot show it made it"):
            ensure_signing_key(clients, clients.secrets)
        assert clients.secrets.get_secret(KEY_SECRET).value == "ab" * 32
    finally:
        vault.stop()


@pytest.mark.parametrize("mac", ["none", "invalid"])
def test_azure_restore_over_an_unsigned_identity_with_the_bundles_marker(
        azure_keyed: tuple[Any, Path], mac: str) -> None:
    """As on AWS: a managed identity left unsigned by an interrupted restore (or planted
    with the bundle's tags) gets exactly the bundle's federation before it is signed;
    one with a MAC that does not verify is refused untouched."""
    from support.azure import RG, arm_clients
    local, folder = azure_keyed
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    assert run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit").code == 0
    bundle = next(r["before"] for r in records(Path("audit.jsonl"))
                  if r.get("action") == "restore-bundle" and r.get("identity") == "wid-prod-svc-d")
    tags = {k: v for k, v in bundle["tags"].items() if k not in (MARK_TAG, "workload-ids:mac")}
    if mac == "invalid":
        tags["workload-ids:mac"] = "0" * 64
    msi, _ = arm_clients(local)
    msi.user_assigned_identities.create_or_update(RG, "wid-prod-svc-d", {
        "location": "westeurope", "tags": tags})
    msi.federated_identity_credentials.create_or_update(RG, "wid-prod-svc-d", "planted", {
        "issuer": "https://attacker.example", "subject": "me", "audiences": ["api://AzureADTokenExchange"]})
    before = _azure_identity(local, "wid-prod-svc-d")
    restored = run_cli("restore", "wid-prod-svc-d")
    federated = {f.name for f in msi.federated_identity_credentials.list(RG, "wid-prod-svc-d")}
    if mac == "invalid":
        assert restored.code != 0 and "not authenticated" in restored.err, restored.out + restored.err
        assert _azure_identity(local, "wid-prod-svc-d") == before and "planted" in federated
        return
    assert restored.code == 0, restored.out + restored.err
    assert federated == set(bundle["federatedCredentials"])
    assert "interrupted restore" in restored.out
    found = by_identity(run_cli("cleanup", str(folder), "--output", "json").out)["wid-prod-svc-d"]
    assert found["status"] != "forged", found
