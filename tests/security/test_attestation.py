"""Attacks on attestation (issue 18 item 3). An attestation is believed only when the
person was an active member of the owning group when it was recorded and its record
carries a MAC made with the target's signing key; each test makes the attack the way
someone without that key would (a non-member at the command line, a line appended to the
audit file, a field in a manifest, a note made to look like a CI command) and checks
that it fails: refused with nothing recorded, or shown as not believed and never
counted by review or cleanup."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.aws import workload
from support.cli import run_cli
from support.trust import TEST_TRUST

from workload_ids.audit import digest, records
from workload_ids.clock import format_time
from workload_ids.markers import AWS_KEY_SECRET
from workload_ids.signing import ATTESTATION, AUDIT, SigningKey, new_key_material

OWNERS = """\
owners:
  - {id: team-a, kind: group, active: true, members: [bob, mallory-old]}
  - {id: bob, kind: person, active: true}
  - {id: mallory, kind: person, active: true}
  - {id: mallory-old, kind: person, active: false}
"""
CONFIG = ("owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
          "credentials: {verify: {interval: 0s}}\nreview: {every: 30d, onExpiry: quarantine}\n"
          "cleanup: {maxShare: 1}\n" + TEST_TRUST)
AUDIT_FILE = Path("audit.jsonl")


@pytest.fixture
def applied(aws: Any, manifests: Any) -> Path:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder = manifests({"orders.yaml": workload("orders"), "billing.yaml": workload("billing")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    return Path(folder)


def _attestations() -> list[dict[str, Any]]:
    return [r for r in records(AUDIT_FILE) if r["action"] == "attest"]


def _append(record: dict[str, Any]) -> None:
    """What someone who can write the audit file does: a record chained correctly onto
    the last one (the chain's hash is no secret), so ``audit verify`` passes it."""
    last = list(records(AUDIT_FILE))[-1]
    stored = {"time": format_time(datetime.now(UTC)), "actor": "mallory", "command": "attest",
              "before": None, "result": "ok", **record, "prev": last["hash"]}
    stored["hash"] = digest(stored)
    with AUDIT_FILE.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(stored, sort_keys=True) + "\n")


def _review(folder: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads(run_cli("review", str(folder), "--output", "json").out)
    return {w["workload"]: w for w in doc["workloads"]}


def test_a_non_member_cannot_attest(applied: Path) -> None:
    before = AUDIT_FILE.read_bytes()
    for person, why in (("mallory", "mallory is not a member of team-a"),
                        ("mallory-old", "mallory-old is inactive in the owner directory"),
                        ("nobody", "nobody is not a member of team-a")):
        refused = run_cli("attest", "prod/orders", "--by", person)
        assert refused.code == 3, refused.err
        assert f"{person} may not attest: prod/orders (owned by team-a): {why}; ask an active member " \
               "of team-a to attest, or add" in refused.err
        assert "Nothing was recorded" in refused.err
    # One refused workload refuses the run: none of the others is recorded either.
    assert run_cli("attest", "prod/billing", "prod/orders", "--by", "mallory").code == 3
    assert AUDIT_FILE.read_bytes() == before
    assert _review(applied)["prod/orders"]["state"] == "never attested"


@pytest.mark.parametrize("forgery", ["unsigned", "own key", "copied", "edited"])
def test_a_record_appended_to_the_audit_file_is_not_believed(applied: Path, forgery: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone who can write the local audit file (a runner's disk, a shared volume)
    appends an attestation: without the target's signing key it is shown as not believed,
    and cleanup still finds the workload unattested."""
    assert run_cli("attest", "prod/billing", "--by", "bob").code == 0
    [genuine] = _attestations()
    after = dict(genuine["after"])
    at = format_time(datetime.now(UTC))
    if forgery == "unsigned":
        after = {"owner": "team-a", "by": "bob", "note": "", "at": at}
    elif forgery == "own key":
        mine = SigningKey.from_stored(new_key_material(), "mallory's")
        after = {"owner": "team-a", "by": "bob", "note": "", "at": at, "keyId": mine.key_id,
                 "mac": mine.mac(ATTESTATION, {"provider": "aws", "target": "123456789012",
                                               "identity": "wid_prod_orders", "workload": "prod/orders",
                                               "owner": "team-a", "by": "bob", "note": "", "at": at})}
    elif forgery == "edited":
        after["at"] = format_time(datetime.now(UTC) + timedelta(days=5))  # a genuine record, moved on
    # "copied": billing's genuine MAC, relabelled for orders
    workload_name = "prod/billing" if forgery == "edited" else "prod/orders"
    identity = "wid_prod_billing" if forgery == "edited" else "wid_prod_orders"
    _append({"workload": workload_name, "provider": "aws", "target": "123456789012",
             "identity": identity, "action": "attest", "after": after})
    assert run_cli("audit", "verify").code == 0  # the chain alone cannot tell

    review = _review(applied)
    forged = review[workload_name]
    problem = {"unsigned": "unsigned: it carries no attestation MAC",
               "own key": "bad signature: not made with the signing key of aws:123456789012",
               "copied": "bad signature", "edited": "bad signature"}[forgery]
    assert [(a["by"], a["believed"]) for a in forged["notBelieved"]] == [("bob", False)]
    assert problem in forged["notBelieved"][0]["problem"]
    if forgery == "edited":
        # The genuine record still counts, with its own time: the edit moved nothing.
        assert forged["lastAttestation"]["at"] == genuine["after"]["at"]
    else:
        assert (forged["state"], forged["lastAttestation"]) == ("never attested", None)
    text = run_cli("review", str(applied)).out
    assert f"{workload_name}: NOT BELIEVED: attestation by bob at " in text
    md = run_cli("review", str(applied), "--output", "markdown").out
    assert "**not believed**" in md

    if forgery != "edited":
        later = datetime.now(UTC) + timedelta(hours=2)
        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(later))
        judged = json.loads(run_cli("cleanup", str(applied), "--output", "json").out)
        classes = {i["workload"]: (i["status"], i["action"]) for i in judged["identities"]}
        # orders was created minutes ago and never (believably) attested: not due yet; 31
        # days on it is unattested, whatever the forged record says.
        assert classes["orders"] == ("active", None)
        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(later + timedelta(days=31)))
        judged = json.loads(run_cli("cleanup", str(applied), "--output", "json").out)
        classes = {i["workload"]: (i["status"], i["action"]) for i in judged["identities"]}
        assert classes["orders"] == ("unattested", "quarantine")


def test_a_forged_record_cannot_inject_lines_into_the_review(applied: Path) -> None:
    _append({"workload": "prod/orders\n::add-mask::x", "provider": "aws", "target": "123456789012",
             "identity": "wid_prod_orders", "action": "attest",
             "after": {"owner": "team-a", "by": "bob\n::warning::forged", "note": "n\r\n::add-mask::y",
                       "at": format_time(datetime.now(UTC)), "mac": "0" * 64}})
    for output in ("text", "markdown"):
        shown = run_cli("review", str(applied), "--output", output).out
        assert not [line for line in shown.splitlines() if line.lstrip().startswith("::")], shown
        assert "not believed" in shown.lower()


def test_a_manifest_cannot_set_its_own_attestation(applied: Path, aws: Any) -> None:
    """The attestation lives in the audit trail, signed; a manifest that claims one is
    refused with the field's position, and nothing in it counts."""
    before = aws.list_role_tags(RoleName="wid_prod_orders")["Tags"]
    claim = "  attestedBy: bob\n  attestedAt: 2026-12-01T00:00:00Z\n"
    text = workload("orders").replace("  environment: prod\n", "  environment: prod\n" + claim)
    (applied / "orders.yaml").write_text(text)
    for verb in (("validate",), ("review",), ("apply", "--auto-approve")):
        result = run_cli(*verb, str(applied))
        assert result.code == 1, verb
        assert "orders.yaml:7:3: unknown field 'attestedBy'" in result.err
    reviewed = run_cli("attest", str(applied / "orders.yaml"), "--by", "bob")
    assert reviewed.code == 1 and _attestations() == []
    # A tag on the identity (anyone with iam:TagRole) is not an attestation either.
    aws.tag_role(RoleName="wid_prod_orders", Tags=[{"Key": "workload-ids:attested-by", "Value": "bob"}])
    (applied / "orders.yaml").write_text(workload("orders"))
    assert _review(applied)["prod/orders"]["state"] == "never attested"
    aws.untag_role(RoleName="wid_prod_orders", TagKeys=["workload-ids:attested-by"])
    assert aws.list_role_tags(RoleName="wid_prod_orders")["Tags"] == before


def test_a_note_cannot_start_a_line_in_ci_logs(applied: Path) -> None:
    note = "still needed\n::add-mask::AKIAEXAMPLE\r::error::boom\x1b[2J"
    result = run_cli("attest", "prod/orders", "--by", "bob", "--note", note)
    assert result.code == 0, result.err
    [stored] = _attestations()
    assert stored["after"]["note"] == "still needed\\n::add-mask::AKIAEXAMPLE\\r::error::boom\\x1b[2J"
    outputs = [result.out, result.err]
    for fmt in ("text", "markdown", "json"):
        outputs.append(run_cli("review", str(applied), "--output", fmt).out)
    outputs.append(run_cli("attest", "prod/orders", "--by", "bob", "--note", note, "--output", "json").out)
    for shown in outputs:
        assert not [line for line in shown.splitlines() if line.lstrip().startswith("::")], shown
        assert "\x1b" not in shown and "\r" not in shown
    # The escaped note is what the MAC covers: it is believed as stored.
    believed = _review(applied)["prod/orders"]["lastAttestation"]
    assert believed["note"].startswith("still needed\\n::add-mask::")


def test_attestations_go_to_the_durable_sink_signed(aws: Any, manifests: Any) -> None:
    """With audit.sink set the attestation is one more signed record of the sink (no
    local file), and review reads it back from there."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="acme-audit", ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket="acme-audit", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    material = new_key_material()
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="workload-ids/audit-signing-key", SecretString=material)
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(
        "owners: {source: file, path: owners.yaml}\ncredentials: {verify: {interval: 0s}}\n"
        "audit:\n  sink: {url: 's3://acme-audit/wid', signingKey: workload-ids/audit-signing-key}\n"
        + TEST_TRUST)
    folder = manifests({"orders.yaml": workload("orders")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert run_cli("attest", "prod/orders", "--by", "bob", "--note", "ok").code == 0
    assert not AUDIT_FILE.exists()
    listed = s3.list_objects_v2(Bucket="acme-audit", Prefix="wid/records/")["Contents"]
    newest = sorted(o["Key"] for o in listed)[-1]
    last = json.loads(s3.get_object(Bucket="acme-audit", Key=newest)["Body"].read())
    key = SigningKey.from_stored(material, "sink")
    assert last["action"] == "attest" and last["after"]["by"] == "bob"
    assert key.verify(AUDIT, {"seq": last["seq"], "hash": last["hash"]}, last["sig"])
    # The attestation's own MAC is the target's marker key, not the sink's.
    marker_key = SigningKey.from_stored(boto3.client("secretsmanager", region_name="us-east-1")
                                        .get_secret_value(SecretId=AWS_KEY_SECRET)["SecretString"], "t")
    assert last["after"]["keyId"] == marker_key.key_id
    review = _review(folder)
    assert (review["prod/orders"]["state"], review["prod/orders"]["lastAttestation"]["note"]) == ("ok", "ok")


@pytest.mark.parametrize(("provider", "target"), [("azure", "0b1f6471-1bf0-4dda-aec3-cb9272f09590"),
                                                  ("gcp", "acme-prod"), ("aws", "999999999999"),
                                                  ("nowhere", "x")])
def test_a_forged_record_naming_a_cloud_it_cannot_check_stops_nothing(applied: Path, provider: str,
                                                                      target: str) -> None:
    """A record naming a cloud or target the run cannot read a key from is not believed,
    and neither review nor cleanup stops for it (appending one must not block them)."""
    assert run_cli("attest", "prod/orders", "--by", "bob").code == 0
    _append({"workload": "prod/orders", "provider": provider, "target": target,
             "identity": "wid_prod_orders", "action": "attest",
             "after": {"owner": "team-a", "by": "bob", "note": "", "at": format_time(datetime.now(UTC)),
                       "mac": "0" * 64}})
    result = run_cli("review", str(applied), "--output", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert [a["believed"] for a in doc["notBelieved"]] == [False]
    assert {w["workload"]: w["state"] for w in doc["workloads"]}["prod/orders"] == "ok"
    assert run_cli("cleanup", str(applied)).code == 0
