"""Restore refuses any bundle that fails policy (issue 14 item 4, review H3 scenario 1).

Anyone who can write the audit trail can append a correctly chained ``restore-bundle``
record: ``audit verify`` passes and, before this guard, ``restore`` created whatever it
held (an inline ``*:*``, trust to a foreign account, ``roles/owner``, a subscription-wide
role, an attacker's issuer). Each forgery below starts from the real bundle cleanup wrote
for a deleted identity and changes one thing; restore must refuse it (exit 3, positioned
at the record, naming what is wrong) and create nothing. The unchanged copy, appended the
same way, is restored: the forgery, not the way it was written, is what is refused.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.contract import OWNERS, Cloud, _aws, _azure, _gcp
from support.trust import TEST_TRUST

from workload_ids.audit import auditor_for, records
from workload_ids.clock import format_time
from workload_ids.config import load_config

LATER = "2099-01-01T00:00:00Z"  # a later quarantine episode: restore picks this bundle
EVIL = "999999999999"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


@pytest.fixture
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    if request.param == "aws":
        yield _aws(request.getfixturevalue("aws"))
    elif request.param == "gcp":
        yield from _gcp()
    else:
        yield from _azure()


@dataclass
class Deleted:
    """A workload cleanup deleted, and the bundle it wrote first."""

    cloud: Cloud
    identity: str
    record: dict[str, Any]


@pytest.fixture
def deleted(cloud: Cloud, manifests: Any) -> Deleted:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(
        cloud.config + "owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
        "cleanup: {grace: 7d, minAge: 1h, maxShare: 1, maxActions: 100}\n"
        "credentials: {verify: {interval: 0s}}\n" + TEST_TRUST)
    folder = Path(manifests({f"svc-{n}.yaml": cloud.manifest(f"svc-{n}", "") for n in ("a", "b")}))
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "svc-b.yaml").unlink()
    start = datetime.now(UTC) + timedelta(hours=2)
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start + timedelta(days=8))
    done = run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit", "--output", "json")
    [result] = json.loads(done.out)["results"]
    assert result["action"] == "delete" and result["ok"], done.out + done.err
    [record] = [r for r in records(Path("audit.jsonl")) if r["action"] == "restore-bundle"]
    return Deleted(cloud, result["identity"], record)


def _append(d: Deleted, bundle: dict[str, Any]) -> int:
    """Append a correctly chained bundle record, as anyone who can write the trail can;
    returns its line."""
    r = d.record
    auditor_for(load_config(), "cleanup").record(
        workload=r["workload"], provider=r["provider"], target=r["target"], identity=d.identity,
        action="restore-bundle", before=bundle, detail={"quarantinedSince": LATER})
    assert run_cli("audit", "verify").code == 0  # the chain holds: only policy can tell
    return len(list(records(Path("audit.jsonl"))))


# --- the forgeries, one change each ----------------------------------------------------------

Forgery = Callable[[dict[str, Any]], None]


def _aws_statement(st: dict[str, Any]) -> Forgery:
    return lambda b: b["inlinePolicies"]["workload-ids"]["Statement"].append(st)


def _aws_trust(st: dict[str, Any]) -> Forgery:
    return lambda b: b["trust"]["Statement"].append(st)


def _aws_github_owner(b: dict[str, Any]) -> None:
    for st in b["trust"]["Statement"]:
        cond = st["Condition"]["StringEquals"]
        for key in [k for k in cond if k.endswith(":sub")]:
            cond[key] = "repo:evil-org/app:ref:refs/heads/main"


def _gcp_role(permission: str) -> Forgery:
    def go(b: dict[str, Any]) -> None:
        next(iter(b["roles"].values()))["includedPermissions"].append(permission)
    return go


def _azure_role(change: Callable[[dict[str, Any]], None]) -> Forgery:
    def go(b: dict[str, Any]) -> None:
        change(next(iter(b["roles"].values())))
    return go


def _azure_issuer(b: dict[str, Any]) -> None:
    b["federatedCredentials"]["fic-evil"] = {"issuer": "https://attacker.example.net/oidc",
                                            "subject": "system:serviceaccount:evil:evil",
                                            "audiences": ["api://AzureADTokenExchange"]}


FORGERIES: dict[str, dict[str, tuple[Forgery, str]]] = {
    "aws": {
        "inline-star-star": (_aws_statement({"Effect": "Allow", "Action": "*:*", "Resource": "*"}),
                             "action '*:*': '*:*' is not an exact aws name"),
        "escalation-unapproved": (_aws_statement({"Effect": "Allow", "Action": "iam:PassRole",
                                                  "Resource": "arn:aws:iam::123456789012:role/x"}),
                                  "action iam:PassRole can escalate privilege"),
        "escalation-case-variant": (_aws_statement({"Effect": "Allow", "Action": "iam:putrolepolicy",
                                                    "Resource": "arn:aws:iam::123456789012:role/x"}),
                                    "action iam:PutRolePolicy can escalate privilege"),
        "resource-star": (_aws_statement({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}),
                          "it grants s3:GetObject on every resource (*)"),
        "other-account-resource": (_aws_statement({
            "Effect": "Allow", "Action": "sqs:SendMessage",
            "Resource": f"arn:aws:sqs:eu-west-1:{EVIL}:drop"}), f"is in account {EVIL}"),
        "s3-without-account": (_aws_statement({"Effect": "Allow", "Action": "s3:GetObject",
                                               "Resource": "arn:aws:s3:::attacker-drop/*"}),
                               "is an S3 ARN, which names no account"),
        "trust-foreign-account": (_aws_trust({"Effect": "Allow", "Action": "sts:AssumeRole",
                                              "Principal": {"AWS": f"arn:aws:iam::{EVIL}:root"}}),
                                  f"arn:aws:iam::{EVIL}:root"),
        "trust-foreign-issuer": (_aws_trust({
            "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
            "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/attacker.example.net"},
            "Condition": {"StringEquals": {"attacker.example.net:aud": "sts.amazonaws.com",
                                           "attacker.example.net:sub": "x"}}}),
                                 "issuer https://attacker.example.net, which is not in"),
        "trust-foreign-github-owner": (_aws_github_owner, "GitHub owner 'evil-org'"),
        "managed-policy": (lambda b: b["attachedPolicies"].append(ADMIN),
                           f"managed policies ({ADMIN})"),
        "other-inline-policy": (lambda b: b["inlinePolicies"].update(admin={
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                    "Resource": "arn:aws:s3:::x/*"}]}),
                                "the inline policy 'admin'"),
        "no-boundary": (lambda b: b.update(boundary=""), "its permissions boundary is none"),
        "outside-our-path": (lambda b: b.update(path="/"), "its path / is not aws.rolePath"),
        "another-account": (lambda b: b.update(target=EVIL),
                            f"has target '{EVIL}', but its record names '123456789012'"),
    },
    "gcp": {
        "basic-role": (lambda b: b["projectBindings"].append(
            {"role": "roles/owner", "members": [f"serviceAccount:{b['name']}"]}), "it binds roles/owner"),
        "token-creator-to-outsider": (lambda b: b["accountBindings"].append(
            {"role": "roles/iam.serviceAccountTokenCreator", "members": ["user:mallory@evil.example"]}),
            "it grants roles/iam.serviceAccountTokenCreator on the service account"),
        "escalating-permission": (_gcp_role("resourcemanager.projects.setIamPolicy"),
                                  "action resourcemanager.projects.setIamPolicy can escalate"),
        "foreign-pool": (lambda b: b["accountBindings"].append({
            "role": "roles/iam.workloadIdentityUser",
            "members": [f"principal://iam.googleapis.com/projects/{EVIL}/locations/global/"
                        "workloadIdentityPools/evil/subject/x"]}), f"is in project number {EVIL}"),
        "unlisted-deployer": (lambda b: b["accountBindings"].append(
            {"role": "roles/iam.serviceAccountUser", "members": ["user:mallory@evil.example"]}),
            "it lets user:mallory@evil.example attach the service account to a runtime"),
        "foreign-role": (lambda b: b["roles"].update(other_admin={
            "title": "x", "description": "x", "includedPermissions": ["storage.objects.get"],
            "stage": "GA"}), "it holds the role other_admin"),
    },
    "azure": {
        "subscription-scope": (_azure_role(lambda r: r["assignableScopes"].append(
            "/subscriptions/" + r["assignableScopes"][0].split("/")[2])),
            "may be assigned at /subscriptions/"),
        "star-action": (_azure_role(lambda r: r["permissions"][0]["actions"].append("*")),
                        "action '*': '*' is not an exact azure name"),
        "role-assignment-write": (_azure_role(lambda r: r["permissions"][0]["actions"].append(
            "Microsoft.Authorization/roleAssignments/write")),
            "action Microsoft.Authorization/roleAssignments/write can escalate"),
        "foreign-issuer": (_azure_issuer, "trusts the issuer https://attacker.example.net/oidc"),
        "unlisted-deployer": (lambda b: b.update(deployers=["9d3b0a10-0000-4000-8000-000000000bad"]),
                              "it lets 9d3b0a10-0000-4000-8000-000000000bad attach the managed "
                              "identity to a site (Managed Identity Operator), and it is not in "
                              "trust.allowedDeployers"),
    },
}

CASES = [pytest.param(c, name, id=f"{c}-{name}") for c, table in FORGERIES.items() for name in table]


@pytest.mark.parametrize(("cloud", "forgery"), CASES, indirect=["cloud"])
def test_a_forged_bundle_is_refused_and_nothing_is_created(deleted: Deleted, forgery: str) -> None:
    change, fragment = FORGERIES[deleted.cloud.name][forgery]
    bundle = copy.deepcopy(deleted.record["before"])
    change(bundle)
    line = _append(deleted, bundle)
    before = deleted.cloud.snapshot()
    result = run_cli("restore", deleted.identity)
    assert result.code == 3, result.out + result.err
    assert fragment in result.err, result.err
    assert f"audit.jsonl:{line}:1: guardrail: " in result.err and deleted.identity in result.err
    assert "nothing was restored" in result.err and "Traceback" not in result.err
    assert deleted.cloud.snapshot() == before
    assert not [r for r in records(Path("audit.jsonl")) if r["action"] == "restore"]


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"], indirect=True)
def test_the_unchanged_bundle_appended_the_same_way_is_restored(deleted: Deleted) -> None:
    _append(deleted, copy.deepcopy(deleted.record["before"]))
    result = run_cli("restore", deleted.identity)
    assert result.code == 0, result.out + result.err
    assert [r["identity"] for r in records(Path("audit.jsonl")) if r["action"] == "restore"] == \
        [deleted.identity]
