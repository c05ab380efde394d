"""Attestation on AWS (moto) through the CLI: naming workloads (ENV/NAME, a manifest,
did-you-mean), the owner directory's membership (file, and a real SCIM server), the
review's text, JSON and Markdown, and the ``review:`` config section's checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.aws import workload
from support.cli import run_cli
from support.scim_server import ScimServer
from support.trust import TEST_TRUST

from workload_ids.audit import records
from workload_ids.owners.file import FileDirectory
from workload_ids.owners.interface import membership
from workload_ids.owners.scim import ScimDirectory

OWNERS = """\
owners:
  - {id: team-a, kind: group, active: true, members: [bob, dora, team-b]}
  - {id: bob, kind: person, active: true}
  - {id: dora, kind: person, active: false}
  - {id: erin, kind: person, active: true}
  - {id: team-b, kind: group, active: true, members: [erin]}
  - {id: team-old, kind: group, active: false, members: [bob]}
"""
CONFIG = ("owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
          "credentials: {verify: {interval: 0s}}\n" + TEST_TRUST)


@pytest.fixture
def applied(aws: Any, manifests: Any) -> Path:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG + "review: {every: 90d}\n")
    folder = manifests({"orders.yaml": workload("orders"), "billing.yaml": workload("billing")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    return Path(folder)


def attest_records() -> list[dict[str, Any]]:
    return [r for r in records(Path("audit.jsonl")) if r["action"] == "attest"]


# --- membership, over both directories -------------------------------------------------

def test_membership_in_an_owners_file(tmp_path: Path) -> None:
    (tmp_path / "owners.yaml").write_text(OWNERS)
    d = FileDirectory.load(tmp_path / "owners.yaml")
    assert membership(d, "team-a", "bob").refused is None
    assert membership(d, "team-a", "BOB").refused is None  # user names compare as SCIM does
    assert membership(d, "bob", "bob").refused is None  # a workload owned by one person
    assert "is not erin, the person who owns it" in (membership(d, "erin", "bob").refused or "")
    assert "dora is inactive" in (membership(d, "team-a", "dora").refused or "")
    # A nested group's members do not speak for the outer group.
    assert "erin is not a member of team-a" in (membership(d, "team-a", "erin").refused or "")
    assert "team-b is not a member" in (membership(d, "team-a", "team-b").refused or "")
    assert "group team-old is inactive" in (membership(d, "team-old", "bob").refused or "")
    assert "not in the owner directory" in (membership(d, "team-zzz", "bob").refused or "")


@pytest.fixture(scope="module")
def scim() -> Iterator[ScimServer]:
    server = ScimServer()
    try:
        ids = {name: server.user(name, active, None)
               for name, active in (("alice", True), ("bob", False), ("carol", True))}
        server.group("team-payments", [ids["alice"], ids["bob"]])
        yield server
    finally:
        server.stop()


def test_membership_in_a_scim_directory(scim: ScimServer) -> None:
    d = ScimDirectory(scim.url, scim.token, 5)
    assert membership(d, "team-payments", "alice").refused is None
    assert membership(d, "team-payments", "Alice").refused is None
    assert "bob is inactive" in (membership(d, "team-payments", "bob").refused or "")
    assert "carol is not a member of team-payments" in (membership(d, "team-payments", "carol").refused or "")
    assert "alice is not carol" in (membership(d, "carol", "alice").refused or "")


def test_attest_over_a_scim_directory(scim: ScimServer, aws: Any, manifests: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_SCIM_TOKEN", scim.token)
    Path("workload-ids.yaml").write_text(
        f"owners: {{source: scim, url: '{scim.url}', tokenEnv: WORKLOAD_IDS_SCIM_TOKEN, "
        "allowInsecureLoopback: true}\n"
        "audit: {path: audit.jsonl}\ncredentials: {verify: {interval: 0s}}\n" + TEST_TRUST)
    folder = manifests({"orders.yaml": workload("orders", owner="team-payments")})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    refused = run_cli("attest", "prod/orders", "--by", "carol")
    assert refused.code == 3
    assert "carol is not a member of team-payments; ask an active member of team-payments to " \
           "attest, or add carol to team-payments in the owner directory (scim)" in refused.err
    assert attest_records() == []
    assert run_cli("attest", "prod/orders", "--by", "alice").code == 0
    assert [r["after"]["by"] for r in attest_records()] == ["alice"]


# --- naming workloads ------------------------------------------------------------------

def test_attest_by_name_and_by_manifest(applied: Path) -> None:
    by_name = run_cli("attest", "prod/orders", "--by", "bob", "--note", "orders still need the queue")
    assert by_name.code == 0, by_name.err
    assert "attested prod/orders (aws:123456789012 wid_prod_orders, owner team-a) by bob: orders " \
           "still need the queue" in by_name.out
    as_json = run_cli("attest", str(applied / "billing.yaml"), "--by", "bob", "--output", "json")
    assert as_json.code == 0
    doc = json.loads(as_json.out)
    assert [(a["workload"], a["identity"], a["by"], a["note"]) for a in doc["attested"]] == \
        [("prod/billing", "wid_prod_billing", "bob", "")]
    assert doc["auditTrail"].endswith("audit.jsonl")
    stored = attest_records()
    assert [(r["workload"], r["identity"], r["after"]["by"], r["after"]["owner"]) for r in stored] == \
        [("prod/orders", "wid_prod_orders", "bob", "team-a"),
         ("prod/billing", "wid_prod_billing", "bob", "team-a")]
    assert all(len(r["after"]["mac"]) == 64 and r["after"]["keyId"] for r in stored)
    assert run_cli("audit", "verify").code == 0


def test_a_workload_that_does_not_exist_is_refused_with_the_nearest_name(applied: Path) -> None:
    typo = run_cli("attest", "prod/ordres", "prod/billing", "--by", "bob")
    assert typo.code == 1
    assert "no workload 'prod/ordres' is managed in the targets read (1); did you mean " \
           "'prod/orders'?" in typo.err
    assert "nothing was recorded" in typo.err
    assert attest_records() == []  # prod/billing was not attested either: all or nothing
    missing = run_cli("attest", "prod/missing.yaml", "--by", "bob")
    assert missing.code == 1 and "prod/missing.yaml: no such manifest file" in missing.err
    (applied / "new.yaml").write_text(workload("new"))
    unapplied = run_cli("attest", str(applied / "new.yaml"), "--by", "bob")
    assert unapplied.code == 1
    assert "prod/new" in unapplied.err and "has no identity in aws:123456789012: run `workload-ids " \
                                           "apply` for it first" in unapplied.err
    json_error = run_cli("attest", "prod/ordres", "--by", "bob", "--output", "json")
    assert json.loads(json_error.out)["exitCode"] == 1


def test_attest_needs_an_owner_directory_and_an_audit_trail(applied: Path) -> None:
    Path("workload-ids.yaml").write_text("audit: {path: audit.jsonl}\ncredentials: {verify: {interval: 0s}}\n"
                                         + TEST_TRUST)
    no_owners = run_cli("attest", "prod/orders", "--by", "bob")
    assert no_owners.code == 1 and "add owners: (a file or SCIM)" in no_owners.err
    Path("workload-ids.yaml").write_text("owners: {source: file, path: owners.yaml}\n" + TEST_TRUST)
    no_audit = run_cli("attest", "prod/orders", "--by", "bob")
    assert no_audit.code == 1 and "set audit.path or audit.sink" in no_audit.err


def test_the_note_is_capped_and_the_person_is_one_name(applied: Path) -> None:
    long = run_cli("attest", "prod/orders", "--by", "bob", "--note", "x" * 501)
    assert long.code == 1 and "--note is 501 characters; an attestation note holds at most 500" in long.err
    assert run_cli("attest", "prod/orders", "--by", "bob", "--note", "x" * 500).code == 0
    spaced = run_cli("attest", "prod/orders", "--by", "bob smith")
    assert spaced.code == 1 and "is not a user name" in spaced.err
    assert len(attest_records()) == 1


def test_the_verbs_name_their_flags() -> None:
    usage = run_cli("attest", "prod/orders")
    assert usage.code == 1 and "--by" in usage.err
    assert run_cli("review", "--output", "html").code == 1


# --- the review ------------------------------------------------------------------------

def test_review_text_json_and_markdown(applied: Path) -> None:
    assert run_cli("attest", "prod/orders", "--by", "bob", "--note", "needed | for `orders`").code == 0
    text = run_cli("review", str(applied))
    assert text.code == 0
    lines = text.out.splitlines()
    assert lines[0] == "team-a:"
    assert [line.split()[0] for line in lines[2:4]] == ["prod/billing", "prod/orders"]
    assert "never attested" in lines[2] and " ok " in lines[3] and "bob at" in lines[3]
    assert "Review: 1 never attested, 1 ok (attest every 90d)" in text.out
    doc = json.loads(run_cli("review", str(applied), "--output", "json").out)
    assert doc["review"] == {"every": "90d", "window": "90d", "onExpiry": "report"}
    assert doc["owners"] == [{"owner": "team-a", "workloads": ["prod/billing", "prod/orders"],
                              "states": {"overdue": 0, "never attested": 1, "due soon": 0, "ok": 1}}]
    orders = doc["workloads"][1]
    assert [w["identity"] for w in doc["workloads"]] == ["wid_prod_billing", "wid_prod_orders"]
    # Just applied: younger than review.window, so usage is not judged yet.
    [entry] = orders["access"]
    keys = ("entry", "template", "resources", "lastUsed", "verdict", "suggestion")
    assert {k: entry[k] for k in keys} == {
        "entry": 0, "template": "queue.consume", "resources": ["arn:aws:sqs:eu-west-1:123456789012:orders"],
        "lastUsed": None, "verdict": "too new", "suggestion": None}
    assert "sqs:ReceiveMessage" in orders["access"][0]["actions"]
    md = run_cli("review", str(applied), "--output", "markdown").out
    assert md.startswith("## Access review\n")
    assert "### team-a" in md
    assert "| prod/billing | aws:123456789012 | **never attested** | - | - |" in md
    assert "needed \\| for \\`orders\\`" in md
    # Without manifests: the workloads of the targets, owners from their markers.
    fleet = json.loads(run_cli("review", "--output", "json").out)
    assert {(w["workload"], w["identity"], w["owner"]) for w in fleet["workloads"]} == \
        {("prod/orders", "wid_prod_orders", "team-a"), ("prod/billing", "wid_prod_billing", "team-a")}
    assert any("no manifests given" in n for n in fleet["notes"])


def test_review_states_move_with_the_clock(applied: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    from workload_ids.clock import format_time
    start = datetime.now(UTC).replace(microsecond=0)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(start))
    assert run_cli("attest", "prod/orders", "--by", "bob").code == 0

    def state() -> tuple[str, str]:
        doc = json.loads(run_cli("review", str(applied), "--output", "json").out)
        [orders] = [w for w in doc["workloads"] if w["workload"] == "prod/orders"]
        return orders["state"], orders["due"]
    due = format_time(start + timedelta(days=90))
    assert state() == ("ok", due)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(start + timedelta(days=80)))
    assert state() == ("due soon", due)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(start + timedelta(days=91)))
    assert state() == ("overdue", due)


def test_an_attestation_for_a_previous_owner_does_not_count(applied: Path) -> None:
    assert run_cli("attest", "prod/orders", "--by", "bob").code == 0
    (applied / "orders.yaml").write_text(workload("orders", owner="team-b"))
    Path("workload-ids.yaml").write_text(
        CONFIG + "review: {every: 90d}\nguardrails:\n  approvedTransfers:\n    - {workload: prod/orders, "
        "from: team-a, to: team-b, reason: reorg of the orders team}\n")
    assert run_cli("apply", "--auto-approve", str(applied)).code == 0
    doc = json.loads(run_cli("review", str(applied), "--output", "json").out)
    [orders] = [w for w in doc["workloads"] if w["workload"] == "prod/orders"]
    assert (orders["owner"], orders["state"], orders["lastAttestation"]) == ("team-b", "never attested", None)
    assert orders["note"] == "last attested by bob for team-a, its owner then; team-b has not attested"


# --- the config section ----------------------------------------------------------------

@pytest.mark.parametrize(("section", "message"), [
    ("review: {every: 90d, onExpiry: delete}", "onExpiry"),
    ("review: {every: 1h}", "review.every must be at least 1d"),
    ("review: {window: 12h}", "review.window must be at least 1d"),
    ("review: {every: ninety}", "is not a duration"),
    ("review: {evry: 90d}", "evry"),
])
def test_the_review_section_is_checked_with_positions(section: str, message: str) -> None:
    Path("workload-ids.yaml").write_text("audit: {path: audit.jsonl}\n" + section + "\n")
    result = run_cli("validate", "x.yaml")
    assert result.code == 1
    assert "workload-ids.yaml:2:" in result.err
    assert message in result.err


# --- cleanup's judgement (pure) --------------------------------------------------------

def _judged(attested: dict[Any, Any] | None, *, created_days: int | None = 200,
            quarantine: bool = False, mark: str | None = None,
            owner: str = "team-a") -> tuple[str, str | None, str]:
    from datetime import UTC, datetime, timedelta

    from workload_ids.cleanup.judge import Facts, Rules, judge
    from workload_ids.config import CleanupConfig, ReviewConfig
    from workload_ids.model import MARK_TAG, Marker, ObservedIdentity
    from workload_ids.owners.interface import OwnerStatus
    now = datetime(2026, 12, 1, tzinfo=UTC)
    tags = dict(Marker("orders", owner, "prod", "d" * 12).as_tags())
    if mark:
        tags[MARK_TAG] = mark
    extra = {"created": now - timedelta(days=created_days)} if created_days is not None else {}
    o = ObservedIdentity("aws", "123456789012", "role", "wid_prod_orders", "arn", tags, {}, {},
                         extra=extra)
    review = ReviewConfig(every="90d", onExpiry="quarantine" if quarantine else "report")
    rules = Rules.from_config(CleanupConfig(), review)
    used = {("123456789012", "wid_prod_orders"): now - timedelta(days=1)}  # in use: not "unused"
    facts = Facts(now, None, {owner: OwnerStatus(owner, False, "active")}, used, {}, attested)
    f = judge(o, facts, rules)
    return f.status, f.action, f.reason


def test_cleanup_judges_attestation_by_review_every() -> None:
    from datetime import UTC, datetime
    key = ("aws", "123456789012", "prod/orders")
    recent, old = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC)
    assert _judged({key: ("team-a", recent)})[:2] == ("active", None)
    status, action, reason = _judged({key: ("team-a", old)})
    assert (status, action) == ("unattested", None)
    assert reason.startswith("last attested 2026-08-01T00:00:00Z, more than 90d ago (review.every)")
    assert _judged({key: ("team-a", old)}, quarantine=True)[:2] == ("unattested", "quarantine")
    # Never attested: counted from creation; unknown creation counts as overdue.
    assert _judged({}, created_days=30)[:2] == ("active", None)
    assert _judged({}, created_days=None)[2].startswith("never attested (its creation time is unknown)")
    # An attestation for another owner does not count for this one.
    assert "never attested by team-a (attested for team-old before)" in \
        _judged({key: ("team-old", recent)})[2]
    # Attestation not judged (review.every unset): nothing is unattested.
    assert _judged(None)[:2] == ("active", None)


def test_an_unattested_quarantine_is_released_by_an_attestation_or_by_report_mode() -> None:
    from datetime import UTC, datetime
    key = ("aws", "123456789012", "prod/orders")
    mark = "since=2026-11-01T00:00:00Z reason=unattested"
    old = datetime(2026, 8, 1, tzinfo=UTC)
    assert _judged({key: ("team-a", old)}, quarantine=True, mark=mark)[:2] == ("unattested", "enforce")
    assert _judged({key: ("team-a", old)}, quarantine=False, mark=mark)[:2] == ("unattested", "release")
    assert _judged({key: ("team-a", datetime(2026, 11, 20, tzinfo=UTC))}, quarantine=True,
                   mark=mark)[:2] == ("active", "release")
