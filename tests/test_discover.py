"""The discover judge, owners, the JSON document and the CSV, on hand-made facts (no
cloud): each finding code, when it is and is not raised, and the document round trip."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from workload_ids.config import load_config
from workload_ids.discover.document import from_document, to_document
from workload_ids.discover.findings import CATEGORIES, RULES, Settings, judge
from workload_ids.discover.owners import Ownership, check_directory, owner_of
from workload_ids.discover.render import render_csv, render_table
from workload_ids.discover.workflow import DiscoverReport, JudgedIdentity, TargetResult
from workload_ids.discovered import Credential, DiscoveredIdentity, Grant, Principal, UsageSignal
from workload_ids.errors import InputErrors, UserError
from workload_ids.owners.file import FileDirectory

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=365)
SETTINGS = Settings()


def ident(**kw: Any) -> DiscoveredIdentity:
    base: dict[str, Any] = dict(provider="aws", target="123456789012", kind="role",
                                id="arn:aws:iam::123456789012:role/x", name="x", created=OLD,
                                managed=False, tags={"owner": "team-a"},
                                usage=(UsageSignal("role last used", NOW - timedelta(days=1), 400),))
    base.update(kw)
    return DiscoveredIdentity(**base)


def codes(identity: DiscoveredIdentity, settings: Settings = SETTINGS) -> list[str]:
    return [f.code for f in judge(identity, settings, NOW)]


def test_the_table_of_codes_is_the_contract() -> None:
    table = {code: (r.category, r.severity) for code, r in RULES.items()}
    assert table == {
        "admin-grant": ("NHI5:2025", "high"), "wildcard-grant": ("NHI5:2025", "medium"),
        "escalation-grant": ("NHI5:2025", "high"), "key-too-old": ("NHI7:2025", "medium"),
        "secret-never-expires": ("NHI7:2025", "medium"), "unused": ("NHI1:2025", "low"),
        "no-owner": ("NHI1:2025", "low"), "external-trust": ("NHI3:2025", "medium"),
        "any-principal-trust": ("NHI6:2025", "high"), "human-use": ("NHI10:2025", "medium")}
    assert CATEGORIES["NHI5:2025"] == "Overprivileged NHI"
    assert CATEGORIES["NHI10:2025"] == "Human Use of NHI"


def test_a_clean_identity_has_no_finding() -> None:
    clean = ident(grants=(Grant(("s3:GetObject",), ("arn:aws:s3:::b/*",), "inline policy p"),),
                  principals=(Principal("aws-service", "ec2.amazonaws.com"),))
    assert codes(clean) == []


@pytest.mark.parametrize(("provider", "action"), [
    ("aws", "role:AdministratorAccess"), ("aws", "role:administratoraccess"), ("aws", "role:IAMFullAccess"),
    ("gcp", "role:roles/owner"), ("gcp", "role:roles/editor"), ("gcp", "role:roles/iam.securityAdmin"),
    ("azure", "role:Owner"), ("azure", "role:contributor"), ("azure", "role:User Access Administrator"),
])
def test_administrator_roles_by_name(provider: str, action: str) -> None:
    found = judge(ident(provider=provider, grants=(Grant((action,), ("*",), "binding b"),)), SETTINGS, NOW)
    assert [f.code for f in found] == ["admin-grant"]
    assert found[0].message == f"holds {action[5:]} (binding b)"


def test_gcp_role_names_are_exact() -> None:
    assert codes(ident(provider="gcp", grants=(Grant(("role:roles/Owner",), ("*",), "b"),))) == []


@pytest.mark.parametrize("action", ["*", "*:*"])
def test_star_on_star_is_admin_and_said_once(action: str) -> None:
    found = judge(ident(grants=(Grant((action,), ("*",), "inline policy all"),)), SETTINGS, NOW)
    assert [(f.code, f.message) for f in found] == [
        ("admin-grant", f"allows {action} on * (inline policy all)")]


def test_wildcards_and_non_read_actions_on_every_resource() -> None:
    assert codes(ident(grants=(Grant(("s3:Get*",), ("arn:aws:s3:::b/*",), "p"),))) == ["wildcard-grant"]
    assert codes(ident(grants=(Grant(("s3:GetObject",), ("*",), "p"),))) == []  # a read on everything
    assert codes(ident(grants=(Grant(("sqs:SendMessage",), ("*",), "p"),))) == ["wildcard-grant"]
    # NotAction as the provider reports it: everything but what it lists.
    assert codes(ident(grants=(Grant(("* except iam:*",), ("*",), "p"),))) == ["wildcard-grant"]
    assert codes(ident(grants=(Grant(("sqs:SendMessage",), ("* except arn:aws:sqs:*:*:q",), "p"),))) == \
        ["wildcard-grant"]


def test_escalation_names_any_case_and_under_wildcards() -> None:
    assert codes(ident(grants=(Grant(("iam:passrole",), ("arn:aws:iam::1:role/a",), "p"),))) == \
        ["escalation-grant"]
    found = judge(ident(grants=(Grant(("lambda:*",), ("arn:aws:lambda:*",), "p"),)), SETTINGS, NOW)
    assert [f.code for f in found] == ["wildcard-grant", "escalation-grant"]
    assert "lambda:* (covers lambda:AddPermission" in found[1].message
    # GCP compares exactly; Azure without regard to case.
    assert codes(ident(provider="gcp", grants=(Grant(("iam.serviceAccounts.actAs",), ("p",), "b"),))) == \
        ["escalation-grant"]
    assert codes(ident(provider="azure", grants=(Grant(
        ("microsoft.authorization/roleassignments/write",), ("/subscriptions/s",), "a"),))) == \
        ["escalation-grant"]


def test_keys_too_old_and_inactive_ones_not() -> None:
    old_key = Credential("AKIA1", "access-key", NOW - timedelta(days=91), None, NOW, True)
    assert codes(ident(kind="user", credentials=(old_key,))) == ["key-too-old"]
    assert codes(ident(kind="user", credentials=(old_key,)), Settings(max_key_age=timedelta(days=120))) == []
    inactive = Credential("AKIA2", "access-key", OLD, None, None, False)
    assert codes(ident(kind="user", credentials=(inactive,))) == []


def test_secrets_that_never_expire_or_expire_too_late() -> None:
    never = Credential("s1", "client-secret", NOW, None, None)
    late = Credential("c1", "certificate", NOW, NOW + timedelta(days=365), None)
    soon = Credential("k1", "service-account-key", NOW, NOW + timedelta(days=30), None)
    found = judge(ident(provider="azure", kind="application", credentials=(never, late, soon)), SETTINGS, NOW)
    assert [(f.code, f.message) for f in found] == [
        ("secret-never-expires", "client-secret s1 never expires"),
        ("secret-never-expires", "certificate c1 expires in 365d (beyond discover.maxKeyAge 90d)")]
    # AWS access keys cannot expire: their age is judged instead.
    assert codes(ident(kind="user", credentials=(Credential("AKIA", "access-key", NOW, None, NOW),))) == []


def test_unused_by_every_signal_never_when_young_or_unknown() -> None:
    stale = (UsageSignal("role last used", NOW - timedelta(days=120), 400),)
    assert codes(ident(usage=stale)) == ["unused"]
    assert judge(ident(usage=stale), SETTINGS, NOW)[0].message == \
        "last used 120d ago (role last used; discover.unusedAfter 90d)"
    # A credential's recent use counts as use of the identity.
    key = Credential("AKIA", "access-key", NOW - timedelta(days=10), None, NOW - timedelta(days=2))
    assert codes(ident(usage=stale, credentials=(key,))) == []
    young = NOW - timedelta(days=10)
    assert codes(ident(usage=(UsageSignal("role last used", None, 400),), created=young)) == []
    assert codes(ident(usage=())) == []  # the cloud offers no signal: unknown, not unused
    assert codes(ident(usage=(UsageSignal("role last used", None, 400),))) == ["unused"]


def test_trust_findings() -> None:
    def trusted(*p: Principal) -> list[str]:
        return codes(ident(principals=p))
    assert trusted(Principal("aws-account", "999999999999", external=True)) == ["external-trust", "human-use"]
    assert trusted(Principal("aws-account", "123456789012")) == ["human-use"]  # its own account's people
    assert trusted(Principal("aws-principal", "arn:aws:iam::123456789012:user/bob")) == ["human-use"]
    assert trusted(Principal("aws-principal", "arn:aws:iam::123456789012:role/ci")) == []
    assert trusted(Principal("saml", "arn:aws:iam::123456789012:saml-provider/okta")) == ["human-use"]
    assert trusted(Principal("any", "*", external=True, wildcard=True)) == ["any-principal-trust"]
    assert trusted(Principal("oidc", "token.actions.githubusercontent.com", "aud = sts.amazonaws.com",
                             wildcard=True)) == ["any-principal-trust"]
    assert trusted(Principal("oidc", "token.actions.githubusercontent.com",
                             "sub = repo:acme/api:ref:refs/heads/main")) == []


def test_owner_from_marker_only_when_managed_then_tags_in_order() -> None:
    marker = {"workload-ids:owner": "team-m", "team": "team-t"}
    assert owner_of(ident(managed=True, tags=marker), SETTINGS.owner_tags) == Ownership("team-m", "marker")
    # A copied marker on an identity we did not make names no owner: the tags decide.
    assert owner_of(ident(tags=marker), SETTINGS.owner_tags) == Ownership("team-t", "tag team")
    assert owner_of(ident(tags={"Owner": "x", "team": "y"}), ("owner", "team")).owner == "x"
    none = owner_of(ident(tags={"workload-ids:owner": "team-m"}), ("owner",))
    assert none.owner is None and none.problem is not None
    assert codes(ident(tags={})) == ["no-owner"]
    assert codes(ident(tags={"owner": "  "})) == ["no-owner"]


def test_owners_checked_against_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "owners.yaml"
    path.write_text("owners:\n  - {id: alice, kind: person, active: true}\n"
                    "  - {id: bob, kind: person, active: false, successor: alice}\n"
                    "  - {id: carol, kind: person, active: false}\n")
    directory = FileDirectory.load(path)
    checked = check_directory({"a": Ownership("alice", "tag owner"), "b": Ownership("bob", "tag owner"),
                               "c": Ownership("carol", "tag team"), "n": Ownership(None, None, "none")},
                              directory)
    assert checked["a"] == Ownership("alice", "tag owner")
    assert checked["b"].owner == "alice" and checked["b"].source == "directory"
    assert checked["b"].problem == ("owner bob (from tag owner): person bob is inactive (file); "
                                    "the directory names alice as successor")
    assert checked["c"] == Ownership("carol", "tag team", "owner carol (from tag team): person carol is "
                                                          "inactive (file)")
    assert checked["n"].problem == "none"


def _report() -> DiscoverReport:
    risky = ident(
        name="x", tags={"owner": "team-a", "note": "=HYPERLINK(\"http://evil\")"},
        principals=(Principal("oidc", "token.actions.githubusercontent.com", "aud = sts.amazonaws.com",
                              wildcard=True),),
        grants=(Grant(("s3:*",), ("*",), "inline policy p", conditional=True),),
        credentials=(Credential("access key 1", "access-key", OLD, None, None, True),),
        usage=(UsageSignal("role last used", None, 400),), unread=("something",), description="d")
    user = ident(kind="user", id="arn:aws:iam::123456789012:user/-u", name="-u", tags={}, usage=())
    judged = tuple(JudgedIdentity(i, owner_of(i, SETTINGS.owner_tags), tuple(judge(i, SETTINGS, NOW)))
                   for i in (risky, user))
    return DiscoverReport(NOW, SETTINGS, (TargetResult("aws", "123456789012", "read", 2),
                                          TargetResult("gcp", "p-1", "error", 0, "denied")),
                          judged, shard=(1, 2), notes=("a note",))


def test_document_round_trips_and_is_json() -> None:
    doc = to_document(_report())
    text = json.dumps(doc)
    assert to_document(from_document(json.loads(text))) == doc
    assert doc["generated"] == "2026-12-03T10:00:00Z"
    assert doc["settings"] == {"maxKeyAge": "90d", "unusedAfter": "90d"}
    assert doc["shard"] == {"index": 1, "count": 2}
    assert doc["targets"][1] == {"provider": "gcp", "target": "p-1", "status": "error", "identities": 0,
                                 "error": "denied"}
    first = doc["identities"][0]
    assert list(first) == ["provider", "target", "kind", "id", "name", "created", "managed", "serviceLinked",
                           "owner", "ownerSource", "lastUsed", "description", "tags", "principals",
                           "grants", "credentials", "usage", "unread", "findings"]
    assert first["credentials"][0] == {"id": "access key 1", "kind": "access-key",
                                       "created": "2025-12-03T10:00:00Z", "expires": None,
                                       "lastUsed": None, "active": True}
    assert doc["counts"]["owners"] == {"(none)": 1, "team-a": 1}
    assert doc["counts"]["categories"]["NHI5:2025"] == 2


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(kind="other"), "kind: expected 'workload-ids/discover'"),
    (lambda d: d.update(version=2), "version: expected 1"),
    (lambda d: d["identities"][0].update(managed="yes"), "identities[0].managed: expected true or false"),
    (lambda d: d["identities"][0]["findings"][0].update(code="bogus"),
     "identities[0].findings[0].code: unknown finding code 'bogus'"),
    (lambda d: d["identities"][1].update(created="yesterday"), "identities[1].created:"),
    (lambda d: d["targets"][0].update(status="maybe"), "targets[0].status: expected read or error"),
])
def test_a_bad_document_is_refused_with_where(change: Any, message: str) -> None:
    doc = to_document(_report())
    change(doc)
    with pytest.raises(UserError) as caught:
        from_document(doc, "shard-1.json")
    assert str(caught.value).startswith(f"shard-1.json: {message}")


def test_csv_neutralises_formulas_and_joins_findings() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(_report()))))
    assert [r["name"] for r in rows] == ["x", "'-u"]  # a name a spreadsheet would run
    assert rows[0]["findingCodes"] == \
        "wildcard-grant; escalation-grant; key-too-old; unused; any-principal-trust"
    assert rows[0]["severity"] == "high"
    assert rows[0]["findings"].startswith("wildcard-grant: allows s3:* on * (inline policy p, conditional)")
    assert rows[1]["findingCodes"] == "no-owner"


def test_table_puts_cloud_text_on_one_line() -> None:
    sneaky = ident(name="x\n::warning::forged", tags={"owner": "a\x1b[31mb"})
    report = DiscoverReport(NOW, SETTINGS, (TargetResult("aws", "123456789012", "read", 1),),
                            (JudgedIdentity(sneaky, owner_of(sneaky, ("owner",)), ()),))
    table = render_table(report)
    assert not any(line.startswith("::warning::") for line in table.splitlines())
    assert "\x1b" not in table


@pytest.mark.parametrize(("text", "where", "message"), [
    ("discover:\n  maxKeyAge: 12x\n", ":2:14:", "'12x' is not a duration"),
    ("discover:\n  unusedAfter: 3h\n", ":2:16:", "discover.unusedAfter must be at least 1d"),
    ("discover:\n  ownerTags: owner\n", ":2:14:", ""),
    ("discover:\n  owners: [a]\n", ":2:3:", ""),
])
def test_config_section_errors_are_positioned(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "workload-ids.yaml"
    path.write_text(text)
    with pytest.raises(InputErrors) as caught:
        load_config(path)
    said = str(caught.value)
    assert f"{path}{where}" in said and message in said


def test_config_section_defaults_and_values(tmp_path: Path) -> None:
    path = tmp_path / "workload-ids.yaml"
    path.write_text("discover:\n  ownerTags: [Team, owner]\n  maxKeyAge: 30d\n  unusedAfter: 2w\n")
    settings = Settings.from_config(load_config(path))
    assert settings == Settings(timedelta(days=30), timedelta(days=14), ("Team", "owner"))
    assert Settings.from_config(load_config(None)) == Settings()


def test_trust_messages_say_who_and_why() -> None:
    def said(p: Principal) -> str:
        return judge(ident(principals=(p,)), SETTINGS, NOW)[0].message
    assert said(Principal("any", "*", external=True, wildcard=True)) == \
        "anyone can use it: its trust admits *"
    assert said(Principal("oidc", "token.actions.githubusercontent.com", "aud = sts.amazonaws.com",
                          wildcard=True)) == (
        "can be used by oidc token.actions.githubusercontent.com (aud = sts.amazonaws.com): an OIDC "
        "issuer without a subject condition")
    assert said(Principal("oidc", "token.actions.githubusercontent.com", "sub like repo:acme/*",
                          wildcard=True)).endswith("a subject pattern that admits more than one caller")
    assert said(Principal("aws-account", "999999999999", external=True)) == \
        "can be used from outside 123456789012: aws-account 999999999999"


def _variants() -> list[dict[str, Any]]:
    from support.discover_documents import document
    plain = document()
    sharded = document(shard={"index": 2, "count": 3})
    noted = document()
    noted["notes"] = ["owners are not checked against a directory", "é \u2028 \"quoted\""]
    odd = document()
    first = odd["identities"][0]
    first["description"] = "naïve – \u2028 line\nbreak \\ back"
    first["tags"] = {"zeta": "1", "Älpha": "ü", "": ""}
    first["unread"] = ["one", "two é"]
    first["grants"].append({"actions": [], "resources": ["*"], "source": "empty", "conditional": True})
    empty = document()
    empty.update(identities=[], targets=[])
    return [plain, sharded, noted, odd, empty]


@pytest.mark.parametrize("doc", _variants(), ids=["plain", "sharded", "notes", "odd-text", "empty"])
def test_the_json_text_is_the_indented_document_byte_for_byte(doc: dict[str, Any]) -> None:
    """discover --output json writes its text straight from the report: it must be what
    json.dumps(to_document(report), indent=2) writes, every field of every kind."""
    from workload_ids.discover.document import to_json_text
    report = from_document(doc)
    assert to_json_text(report) == json.dumps(to_document(report), indent=2)
