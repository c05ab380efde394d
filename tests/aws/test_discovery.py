"""discover on AWS: real boto3 against moto, hand-made identities beside ones workload-ids
made; what the report says about each, read back from the CLI's JSON, CSV and table."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, workload
from support.cli import run_cli

from workload_ids.calls import CallSeam
from workload_ids.clouds import connect
from workload_ids.config import load_config
from workload_ids.model import (
    MANAGED_BY,
    TAG_DIGEST,
    TAG_ENVIRONMENT,
    TAG_MANAGED_BY,
    TAG_OWNER,
    TAG_WORKLOAD,
)

OTHER = "999999999999"
GH = "token.actions.githubusercontent.com"


def _trust(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(principal: Any, action: str = "sts:AssumeRole", **condition: Any) -> dict[str, Any]:
    st: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": action}
    if condition:
        st["Condition"] = condition
    return st


def _policy(action: Any, resource: Any) -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})


def _tags(**tags: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _hand_made(iam: Any) -> str:
    """The identities people made by hand; returns the old-key user's secret (to look for)."""
    iam.create_role(RoleName="admin-role", AssumeRolePolicyDocument=_trust(
        _allow({"Service": "ec2.amazonaws.com"})), Tags=_tags(owner="team-a"))
    iam.attach_role_policy(RoleName="admin-role", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    iam.create_role(RoleName="partner-role", AssumeRolePolicyDocument=_trust(
        _allow({"AWS": f"arn:aws:iam::{OTHER}:root"}, StringEquals={"sts:ExternalId": "acme-7"})))
    iam.put_role_policy(RoleName="partner-role", PolicyName="read-reports",
                        PolicyDocument=_policy("s3:GetObject", "arn:aws:s3:::reports/*"))
    iam.create_role(RoleName="open-role", AssumeRolePolicyDocument=_trust(_allow({"AWS": "*"})))
    iam.put_role_policy(RoleName="open-role", PolicyName="everything-s3",
                        PolicyDocument=_policy("s3:*", "*"))
    iam.create_role(RoleName="gh-role", AssumeRolePolicyDocument=_trust(_allow(
        {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GH}"}, "sts:AssumeRoleWithWebIdentity",
        StringEquals={f"{GH}:aud": "sts.amazonaws.com"})), Tags=_tags(Team="platform"))
    iam.put_role_policy(RoleName="gh-role", PolicyName="deploy", PolicyDocument=_policy(
        "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/app"))
    iam.create_service_linked_role(AWSServiceName="elasticbeanstalk.amazonaws.com")
    iam.create_user(UserName="old-key-user", Tags=_tags(owner="team-b"))
    secret = iam.create_access_key(UserName="old-key-user")["AccessKey"]["SecretAccessKey"]
    iam.create_user(UserName="no-key-user")  # no access key: not a non-human identity here
    return str(secret)


@pytest.fixture
def account(aws: Any, manifests: Any) -> dict[str, Any]:
    """moto with two workloads applied by workload-ids (one of them then replaced by a
    hand-made role wearing its copied tags) and the hand-made identities."""
    folder = manifests({"a.yaml": workload("svc-a"), "b.yaml": workload("svc-b")})
    result = run_cli("apply", "--auto-approve", str(folder))
    assert result.code == 0, result.err
    # The attack: svc-b's role is deleted and one made by hand at its path and name, wearing
    # every tag the real one had (its MAC too). Only the MAC over the role's id tells them apart.
    real = aws.get_role(RoleName="wid_prod_svc-b")["Role"]
    aws.delete_role_policy(RoleName="wid_prod_svc-b", PolicyName="workload-ids")
    aws.delete_role(RoleName="wid_prod_svc-b")
    aws.create_role(RoleName="wid_prod_svc-b", Path="/workload-ids/",
                    AssumeRolePolicyDocument=json.dumps(real["AssumeRolePolicyDocument"]),
                    Tags=real["Tags"])
    aws.put_role_policy(RoleName="wid_prod_svc-b", PolicyName="workload-ids",
                        PolicyDocument=_policy("sqs:ReceiveMessage", f"arn:aws:sqs:eu-west-1:{ACCOUNT}:b"))
    return {"iam": aws, "secret": _hand_made(aws)}


def _discover(*args: str) -> tuple[int, dict[str, Any], str]:
    result = run_cli("discover", "--output", "json", *args)
    return result.code, json.loads(result.out), result.err


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in doc["identities"]}


def _codes(identity: dict[str, Any]) -> list[str]:
    return [f["code"] for f in identity["findings"]]


def test_each_identity_is_found_and_judged_exactly(account: dict[str, Any]) -> None:
    code, doc, err = _discover()
    assert code == 0, err
    assert doc["kind"] == "workload-ids/discover" and doc["version"] == 1
    assert doc["targets"] == [{"provider": "aws", "target": ACCOUNT, "status": "read", "identities": 7}]
    found = _by_name(doc)
    assert sorted(found) == ["admin-role", "gh-role", "old-key-user", "open-role", "partner-role",
                             "wid_prod_svc-a", "wid_prod_svc-b"]
    expected = {
        "admin-role": ["admin-grant"],
        "partner-role": ["no-owner", "external-trust", "human-use"],
        "open-role": ["wildcard-grant", "escalation-grant", "no-owner", "any-principal-trust"],
        "gh-role": ["escalation-grant", "any-principal-trust"],
        "wid_prod_svc-a": [],
        "wid_prod_svc-b": ["no-owner"],
        "old-key-user": [],
    }
    assert {name: _codes(found[name]) for name in expected} == expected

    admin = found["admin-role"]["findings"][0]
    assert admin == {"code": "admin-grant", "category": "NHI5:2025", "categoryName": "Overprivileged NHI",
                     "severity": "high", "message": "holds AdministratorAccess (AWS managed policy "
                                                    "arn:aws:iam::aws:policy/AdministratorAccess)"}
    assert found["admin-role"]["owner"] == "team-a" and found["admin-role"]["ownerSource"] == "tag owner"
    assert found["gh-role"]["owner"] == "platform" and found["gh-role"]["ownerSource"] == "tag Team"
    gh = found["gh-role"]["principals"]
    assert gh == [{"kind": "oidc", "value": GH, "detail": "aud = sts.amazonaws.com", "external": False,
                   "wildcard": True}]
    partner = found["partner-role"]["principals"]
    assert partner == [{"kind": "aws-account", "value": OTHER, "detail": "sts:ExternalId = acme-7",
                        "external": True, "wildcard": False}]
    assert found["open-role"]["principals"][0]["kind"] == "any"
    assert [f["message"] for f in found["open-role"]["findings"]][:2] == [
        "allows s3:* on * (inline policy everything-s3): a wildcard action",
        "allows escalation-capable s3:* (covers s3:PutBucketAcl, s3:PutBucketPolicy, s3:PutObjectAcl) "
        "on * (inline policy everything-s3)"]

    # Ours, by the same proof cleanup uses; the copy wears every tag but fails the MAC.
    ours, copy = found["wid_prod_svc-a"], found["wid_prod_svc-b"]
    assert ours["managed"] is True and ours["owner"] == "team-a" and ours["ownerSource"] == "marker"
    assert copy["managed"] is False and copy["owner"] is None
    assert copy["tags"]["workload-ids:owner"] == "team-a"  # the copied tag is there, and not believed

    user = found["old-key-user"]
    assert user["kind"] == "user" and user["owner"] == "team-b"
    assert [(c["id"], c["kind"], c["active"], c["expires"]) for c in user["credentials"]] == [
        ("access key 1", "access-key", True, None)]
    assert "no-key-user" not in found
    assert all(not i["serviceLinked"] for i in doc["identities"])
    assert doc["counts"]["findings"]["admin-grant"] == 1
    assert doc["counts"]["owners"]["(none)"] == 3


def test_service_linked_roles_only_on_request(account: dict[str, Any]) -> None:
    code, doc, _ = _discover("--service-linked")
    assert code == 0
    linked = [i for i in doc["identities"] if i["serviceLinked"]]
    assert [i["name"] for i in linked] == ["AWSServiceRoleForElasticBeanstalk"]
    assert linked[0]["principals"][0] == {"kind": "aws-service", "value": "elasticbeanstalk.amazonaws.com",
                                          "detail": "", "external": False, "wildcard": False}


def test_an_old_key_and_no_use_in_the_future(account: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    later = datetime.now(UTC) + timedelta(days=200)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", later.strftime("%Y-%m-%dT%H:%M:%SZ"))
    code, doc, err = _discover()
    assert code == 0, err
    user = _by_name(doc)["old-key-user"]
    assert _codes(user) == ["key-too-old", "unused"]
    old = user["findings"][0]
    assert old["category"] == "NHI7:2025" and old["severity"] == "medium"
    assert old["message"].startswith("access-key access key 1 is 2")
    assert old["message"].endswith("d old (discover.maxKeyAge 90d)")
    assert user["findings"][1]["message"] == "no use shown by access key 1 last used"
    # Every role made today and never used is unused 200 days on; AWS keeps 400 days of it.
    assert "unused" in _codes(_by_name(doc)["admin-role"])


def test_role_last_used_is_read(account: dict[str, Any]) -> None:
    from moto.iam.models import iam_backends
    used = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    iam_backends[ACCOUNT]["aws"].get_role("admin-role").last_used = used
    _, doc, _ = _discover()
    admin = _by_name(doc)["admin-role"]
    assert admin["lastUsed"] == "2026-11-30T08:00:00Z"
    assert admin["usage"] == [{"signal": "role last used", "at": "2026-11-30T08:00:00Z", "windowDays": 400}]


def test_fail_on_high_exits_2_and_medium_floor(account: dict[str, Any]) -> None:
    assert run_cli("discover", "--fail-on", "high").code == 2
    assert run_cli("discover", "--provider", "aws", "--fail-on", "low").code == 2


def test_no_finding_of_that_severity_exits_0(aws: Any) -> None:
    aws.create_role(RoleName="quiet", Tags=_tags(owner="team-a"),
                    AssumeRolePolicyDocument=_trust(_allow({"Service": "lambda.amazonaws.com"})))
    result = run_cli("discover", "--fail-on", "high")
    assert result.code == 0, result.err
    assert "quiet" in result.out


def test_an_unreadable_target_is_an_error_row_and_exit_1(account: dict[str, Any]) -> None:
    # The credentials reach ACCOUNT only: another account's read is refused, the rest reported.
    code, doc, err = _discover("--target", ACCOUNT, "--target", "210987654321")
    assert code == 1
    rows = {t["target"]: t for t in doc["targets"]}
    assert rows[ACCOUNT]["status"] == "read"
    assert rows["210987654321"]["status"] == "error"
    assert "reach account 123456789012" in rows["210987654321"]["error"]
    assert {i["target"] for i in doc["identities"]} == {ACCOUNT}
    assert "error: aws 210987654321 could not be read" in err


def test_csv_has_a_header_and_one_row_per_identity(account: dict[str, Any]) -> None:
    result = run_cli("discover", "--output", "csv")
    assert result.code == 0, result.err
    rows = list(csv.reader(io.StringIO(result.out)))
    assert rows[0] == ["provider", "target", "kind", "id", "name", "managed", "serviceLinked", "owner",
                       "ownerSource", "created", "lastUsed", "principals", "credentials", "severity",
                       "findingCodes", "categories", "findings", "unread"]
    by_name = {r[4]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert len(rows) - 1 == len(by_name) == 7
    open_role = by_name["open-role"]
    assert open_role["severity"] == "high"
    assert open_role["findingCodes"] == "wildcard-grant; escalation-grant; no-owner; any-principal-trust"
    assert open_role["categories"] == "NHI1:2025; NHI5:2025; NHI6:2025"
    assert by_name["wid_prod_svc-a"]["managed"] == "true" and by_name["wid_prod_svc-a"]["findings"] == ""


def test_table_and_out_file(account: dict[str, Any], tmp_path: Path) -> None:
    table = run_cli("discover")
    assert table.code == 0
    assert table.out.splitlines()[0].split() == ["KIND", "NAME", "TARGET", "OWNER", "MANAGED", "LAST",
                                                 "USED", "FINDINGS"]
    assert "HIGH (" in table.out and "admin-grant [NHI5:2025 Overprivileged NHI]" in table.out
    assert "7 identities in 1 of 1 target(s)" in table.out
    out = tmp_path / "report.json"
    written = run_cli("discover", "--output", "json", "--out", str(out))
    assert written.code == 0 and written.out == ""
    assert json.loads(out.read_text())["kind"] == "workload-ids/discover"


def test_html_to_a_file_is_one_page_with_every_identity(account: dict[str, Any], tmp_path: Path) -> None:
    result = run_cli("discover", "--output", "html", "--out", str(tmp_path / "r.html"))
    assert result.code == 0, result.err
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") or page.lower().startswith("<!doctype html>")
    assert "wid_prod_" in page and account["secret"] not in page


def test_no_secret_in_any_output(account: dict[str, Any]) -> None:
    secret = account["secret"]
    outputs = [run_cli("discover", "--output", fmt, "--service-linked") for fmt in ("json", "csv", "table")]
    for result in outputs:
        text = result.out + result.err
        assert secret not in text and secret[:16] not in text
        assert "SecretAccessKey" not in text


def test_calls_per_account_page(account: dict[str, Any]) -> None:
    """One page of the authorization details, the credential report (generate, get), and
    the marker signing key once (the account holds marked identities): nothing per role."""
    seam = CallSeam()
    cloud = connect("aws", load_config(None), seam)
    assert cloud.discovery is not None
    found = cloud.discovery.discover(ACCOUNT)
    assert len(found) == 7
    assert dict(seam.stats.calls) == {
        "aws:iam.get_account_authorization_details": 1,
        "aws:iam.generate_credential_report": 1,
        "aws:iam.get_credential_report": 1,
        "aws:secretsmanager.get_secret_value": 1,
    }


def test_an_account_without_marked_identities_or_users_reads_one_call(aws: Any) -> None:
    aws.create_role(RoleName="r", AssumeRolePolicyDocument=_trust(_allow({"Service": "ec2.amazonaws.com"})))
    seam = CallSeam()
    backend = connect("aws", load_config(None), seam).discovery
    assert backend is not None
    found = backend.discover(ACCOUNT)
    assert [i.name for i in found] == ["r"]
    assert dict(seam.stats.calls) == {"aws:iam.get_account_authorization_details": 1}


def test_a_denied_signing_key_read_leaves_the_rest_and_says_why(account: dict[str, Any]) -> None:
    from workload_ids.calls import FailOperation
    seam = CallSeam()
    seam.inject(FailOperation("secretsmanager.get_secret_value", "denied"))
    backend = connect("aws", load_config(None), seam).discovery
    assert backend is not None
    found = {i.name: i for i in backend.discover(ACCOUNT)}
    assert found["wid_prod_svc-a"].managed is False
    assert found["wid_prod_svc-a"].unread == (
        "whether workload-ids manages it: the marker signing key could not be read (AccessDenied: "
        "injected denied); discover needs secretsmanager:GetSecretValue on it",)
    assert seam.stats.calls["aws:secretsmanager.get_secret_value"] == 1  # once for the account
    assert found["admin-role"].unread == ()  # unmarked identities need no key


def test_the_credential_report_is_waited_for_with_backoff(account: dict[str, Any]) -> None:
    from workload_ids.calls import FailOperation, RetryPolicy
    slept: list[float] = []
    seam = CallSeam(RetryPolicy(base_delay=0.5, max_delay=4.0), sleep=slept.append)
    seam.inject(FailOperation("iam.get_credential_report", "report-in-progress", times=3))
    backend = connect("aws", load_config(None), seam).discovery
    assert backend is not None
    found = {i.name: i for i in backend.discover(ACCOUNT)}
    assert found["old-key-user"].credentials[0].id == "access key 1"
    assert slept == [1.0, 2.0, 4.0]
    assert seam.stats.calls["aws:iam.get_credential_report"] == 4
    assert seam.stats.calls["aws:iam.generate_credential_report"] == 1


def test_a_report_that_never_comes_is_an_error_of_the_account(account: dict[str, Any]) -> None:
    from workload_ids.calls import FailOperation, RetryPolicy
    from workload_ids.errors import CloudError
    seam = CallSeam(RetryPolicy(base_delay=1.0, max_delay=10.0, max_seconds=20.0), sleep=lambda s: None)
    seam.inject(FailOperation("iam.get_credential_report", "report-in-progress"))
    backend = connect("aws", load_config(None), seam).discovery
    assert backend is not None
    with pytest.raises(CloudError, match="still making the credential report after 14 s"):
        backend.discover(ACCOUNT)


@pytest.mark.parametrize(("statement", "expected"), [
    (_allow({"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GH}"}, "sts:AssumeRoleWithWebIdentity",
            StringLike={f"{GH}:sub": "repo:acme/*"}),
     ("oidc", GH, "sub like repo:acme/*", False, True)),
    (_allow({"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GH}"}, "sts:AssumeRoleWithWebIdentity",
            StringEquals={f"{GH}:sub": "repo:acme/api:ref:refs/heads/main",
                          f"{GH}:aud": "sts.amazonaws.com"}),
     ("oidc", GH, "sub = repo:acme/api:ref:refs/heads/main; aud = sts.amazonaws.com", False, False)),
    # StringEquals compares '*' literally: one subject, however it is spelt.
    (_allow({"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GH}"}, "sts:AssumeRoleWithWebIdentity",
            StringEquals={f"{GH}:sub": "repo:acme/*"}),
     ("oidc", GH, "sub = repo:acme/*", False, False)),
    (_allow({"Federated": f"arn:aws:iam::{OTHER}:saml-provider/okta"}, "sts:AssumeRoleWithSAML"),
     ("saml", f"arn:aws:iam::{OTHER}:saml-provider/okta", "", True, False)),
    (_allow({"AWS": f"arn:aws:iam::{ACCOUNT}:role/ci"}), ("aws-principal", f"arn:aws:iam::{ACCOUNT}:role/ci",
                                                          "", False, False)),
    (_allow({"AWS": OTHER}), ("aws-account", OTHER, "", True, False)),
    (_allow("*"), ("any", "*", "", True, True)),
    ({"Effect": "Allow", "NotPrincipal": {"AWS": OTHER}, "Action": "sts:AssumeRole"},
     ("any", "*", 'everyone but NotPrincipal {"AWS": "999999999999"}', True, True)),
])
def test_trust_policy_principals(statement: dict[str, Any], expected: tuple[Any, ...]) -> None:
    from workload_ids.providers.aws.discovery import trust_principals
    (found,) = trust_principals(_trust(statement), ACCOUNT)
    assert (found.kind, found.value, found.detail, found.external, found.wildcard) == expected


def test_trust_ignores_deny_and_statements_that_hand_out_nothing() -> None:
    from workload_ids.providers.aws.discovery import trust_principals
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}
    tag_only = _allow({"AWS": OTHER}, "sts:TagSession")
    assert trust_principals(_trust(deny, tag_only), ACCOUNT) == ()


def test_policy_grants_expand_allow_only_and_say_not_action() -> None:
    from workload_ids.providers.aws.discovery import policy_grants
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::b/*",
         "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
        {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*"], "NotResource": "arn:aws:s3:::x"},
    ]}
    grants = policy_grants(doc, "inline policy p")
    assert [(g.actions, g.resources, g.conditional) for g in grants] == [
        (("s3:GetObject", "s3:PutObject"), ("arn:aws:s3:::b/*",), True),
        (("* except iam:*, organizations:*",), ("* except arn:aws:s3:::x",), False)]


def test_against_moto_server(aws_server: Any, manifests: Any) -> None:
    """Over HTTP, as the sandbox serves it: an AWS managed policy by name, and ours."""
    assert run_cli("apply", "--auto-approve", str(manifests({"a.yaml": workload("svc-a")}))).code == 0
    aws_server.create_role(RoleName="admin-role", AssumeRolePolicyDocument=_trust(
        _allow({"Service": "ec2.amazonaws.com"})), Tags=_tags(owner="team-a"))
    aws_server.attach_role_policy(RoleName="admin-role",
                                  PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    code, doc, err = _discover()
    assert code == 0, err
    found = _by_name(doc)
    assert _codes(found["admin-role"]) == ["admin-grant"]
    assert found["wid_prod_svc-a"]["managed"] is True


def test_group_policies_count_for_their_users(aws: Any) -> None:
    aws.create_group(GroupName="deployers")
    aws.put_group_policy(GroupName="deployers", PolicyName="ship",
                         PolicyDocument=_policy("iam:PassRole", "*"))
    aws.attach_group_policy(GroupName="deployers", PolicyArn="arn:aws:iam::aws:policy/IAMFullAccess")
    aws.create_user(UserName="ci", Tags=_tags(owner="team-a"))
    aws.add_user_to_group(GroupName="deployers", UserName="ci")
    aws.create_access_key(UserName="ci")
    _, doc, _ = _discover()
    ci = _by_name(doc)["ci"]
    assert [g["source"] for g in ci["grants"]][:2] == [
        "group deployers: inline policy ship", "group deployers: AWS managed policy "
                                               "arn:aws:iam::aws:policy/IAMFullAccess"]
    assert [(f["code"], f["message"]) for f in ci["findings"]][:2] == [
        ("admin-grant", "holds IAMFullAccess (group deployers: AWS managed policy "
                        "arn:aws:iam::aws:policy/IAMFullAccess)"),
        ("wildcard-grant", "allows iam:PassRole on * (group deployers: inline policy ship): a non-read "
                           "action on every resource")]


def test_a_user_made_after_the_credential_report_says_so(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """IAM makes a new report at most every four hours: a user made since is not in it."""
    from moto.iam import models
    aws.create_user(UserName="new-user")
    report = models.IAMBackend.get_credential_report

    def before_the_user(self: Any) -> str:
        return "\n".join(line for line in report(self).split("\n") if not line.startswith("new-user,"))
    monkeypatch.setattr(models.IAMBackend, "get_credential_report", before_the_user)
    _, doc, _ = _discover()
    user = _by_name(doc)["new-user"]
    assert user["credentials"] == []
    assert user["unread"] == ["its access keys: the user is not in the credential report generated at "
                              "2015-02-02T20:02:02Z (IAM makes a new one at most every four hours)"]


def test_every_configured_target_is_read_and_target_narrows(aws: Any) -> None:
    config = Path.cwd() / "workload-ids.yaml"
    config.write_text(config.read_text() + f'targets:\n  aws:\n    - account: "{ACCOUNT}"\n'
                                           '    - account: "210987654321"\n')
    aws.create_role(RoleName="r", AssumeRolePolicyDocument=_trust(_allow({"Service": "ec2.amazonaws.com"})),
                    Tags=_tags(owner="team-a"))
    code, doc, _ = _discover()
    assert code == 1
    assert [(t["target"], t["status"]) for t in doc["targets"]] == [("123456789012", "read"),
                                                                     ("210987654321", "error")]
    assert [i["name"] for i in doc["identities"]] == ["r"]
    code, doc, err = _discover("--target", ACCOUNT)
    assert code == 0, err
    assert [t["target"] for t in doc["targets"]] == [ACCOUNT]


def test_the_python_api_reads_what_the_cli_prints(account: dict[str, Any]) -> None:
    from workload_ids import api
    from workload_ids.discover.document import to_document
    report = api.discover(api.load_config(), service_linked=True)
    printed = json.loads(run_cli("discover", "--output", "json", "--service-linked").out)
    document = to_document(report)
    assert {k: v for k, v in document.items() if k != "generated"} == {
        k: v for k, v in printed.items() if k != "generated"}


def _in_account(account: str) -> Any:
    """An IAM client in ``account`` (moto gives an assumed role's session that account)."""
    import boto3
    creds = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/reader", RoleSessionName="seed")["Credentials"]
    return boto3.client("iam", region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def test_calls_per_account_do_not_grow_with_its_identities(aws: Any) -> None:
    """Three accounts reached through a role, holding 2, 10 and 40 roles: each costs one
    AssumeRole and one page of authorization details; the credential report (two calls)
    only where the page lists users, the signing key (one) only where an identity wears
    our marker. Nothing is read per identity."""
    from workload_ids.clouds import Clouds
    from workload_ids.discover.workflow import discover
    small, medium, large = "200000000001", "200000000002", "200000000003"
    config_path = Path.cwd() / "workload-ids.yaml"
    accounts = (small, medium, large)
    config_path.write_text(config_path.read_text() + "targets:\n  aws:\n" + "".join(
        f'    - {{account: "{a}", roleArn: "arn:aws:iam::{a}:role/reader"}}\n' for a in accounts))
    for account, roles, users, marked in ((small, 2, 0, False), (medium, 10, 3, False), (large, 40, 5, True)):
        iam = _in_account(account)
        for n in range(roles):
            ours = marked and n % 2 == 1  # at our path and name, wearing our marker (no MAC)
            name = f"wid_prod_w{n}" if ours else f"r{n}"
            iam.create_role(RoleName=name, Path="/workload-ids/" if ours else "/",
                            AssumeRolePolicyDocument=_trust(_allow({"Service": "ec2.amazonaws.com"})),
                            Tags=_tags(**{TAG_MANAGED_BY: MANAGED_BY, TAG_WORKLOAD: f"w{n}",
                                          TAG_OWNER: "team-a", TAG_ENVIRONMENT: "prod",
                                          TAG_DIGEST: "0" * 64}) if ours else [])
            iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=_policy("s3:GetObject", "*"))
        for n in range(users):
            iam.create_user(UserName=f"u{n}")
            iam.create_access_key(UserName=f"u{n}")
    config = load_config(config_path)
    seam = CallSeam()
    report = discover(config, Clouds(config, seam), [("aws", a) for a in accounts])
    assert [(t.target, t.status, t.identities) for t in report.targets] == [
        (small, "read", 2), (medium, "read", 13), (large, "read", 45)]
    assert dict(seam.stats.calls) == {
        "aws:sts.assume_role": 3,
        "aws:iam.get_account_authorization_details": 3,
        "aws:iam.generate_credential_report": 2,  # medium and large hold users
        "aws:iam.get_credential_report": 2,
        "aws:secretsmanager.get_secret_value": 1,  # only large holds marked roles
    }


def test_the_owner_directory_changes_the_findings_of_the_owners_it_knows_gone(aws: Any) -> None:
    """Identities are judged while other targets are still read, by the owner their tags
    name; the directory then says who is gone, and those (only those) are judged again."""
    (Path.cwd() / "owners.yaml").write_text("owners:\n  - {id: alice, kind: person, active: true}\n"
                                            "  - {id: bob, kind: person, active: false, successor: alice}\n"
                                            "  - {id: carol, kind: person, active: false}\n")
    config = Path.cwd() / "workload-ids.yaml"
    config.write_text(config.read_text() + "owners:\n  source: file\n  path: owners.yaml\n")
    trust = _trust(_allow({"Service": "ec2.amazonaws.com"}))
    for name, owner in (("kept", "alice"), ("moved", "bob"), ("orphan", "carol")):
        aws.create_role(RoleName=name, AssumeRolePolicyDocument=trust, Tags=_tags(owner=owner))
    code, doc, err = _discover()
    assert code == 0, err
    roles = _by_name(doc)
    assert (roles["kept"]["owner"], roles["kept"]["ownerSource"]) == ("alice", "tag owner")
    assert "no-owner" not in _codes(roles["kept"])
    assert (roles["moved"]["owner"], roles["moved"]["ownerSource"]) == ("alice", "directory")
    assert [f["message"] for f in roles["moved"]["findings"] if f["code"] == "no-owner"] == [
        "owner bob (from tag owner): person bob is inactive (file); the directory names alice as successor"]
    assert (roles["orphan"]["owner"], roles["orphan"]["ownerSource"]) == ("carol", "tag owner")
    assert [f["message"] for f in roles["orphan"]["findings"] if f["code"] == "no-owner"] == [
        "owner carol (from tag owner): person carol is inactive (file)"]
    assert doc["counts"]["findings"]["no-owner"] >= 2
    assert "notes" not in doc
