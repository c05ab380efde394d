"""Discover JSON documents built by hand, every field filled (the contract in issue 17):
the input of the HTML report and of ``report merge``, independent of the discover run that
produces them in production."""

from __future__ import annotations

import copy
from typing import Any

# A name, a tag and a description anyone allowed to tag the identity can write.
ATTACK_NAME = '<script>document.title="pwned"</script>'
ATTACK_TAG = '</script><img src=x onerror="document.title=\'pwned-tag\'">'
ATTACK_DESCRIPTION = "<b onmouseover=alert(1)>hi</b> & </script><script>alert(2)</script>"


def finding(code: str, category: str, name: str, severity: str, message: str) -> dict[str, Any]:
    return {"code": code, "category": category, "categoryName": name, "severity": severity,
            "message": message}


ADMIN = ("admin-grant", "NHI5:2025", "Overprivileged NHI", "high")
WILDCARD = ("wildcard-grant", "NHI5:2025", "Overprivileged NHI", "medium")
KEY_OLD = ("key-too-old", "NHI7:2025", "Long-Lived Secrets", "medium")
NEVER_EXPIRES = ("secret-never-expires", "NHI7:2025", "Long-Lived Secrets", "medium")
UNUSED = ("unused", "NHI1:2025", "Improper Offboarding", "low")
NO_OWNER = ("no-owner", "NHI1:2025", "Improper Offboarding", "low")
EXTERNAL = ("external-trust", "NHI3:2025", "Vulnerable Third-Party NHI", "medium")
ANY = ("any-principal-trust", "NHI6:2025", "Insecure Cloud Deployment Configurations", "high")
HUMAN = ("human-use", "NHI10:2025", "Human Use of NHI", "medium")


def _f(spec: tuple[str, str, str, str], message: str) -> dict[str, Any]:
    return finding(*spec, message)


def identity(provider: str, target: str, kind: str, name: str, *, id: str | None = None,
             created: str | None = "2025-01-10T08:00:00Z", managed: bool = False,
             owner: str | None = None, owner_source: str | None = None, last_used: str | None = None,
             description: str = "", tags: dict[str, str] | None = None,
             principals: list[dict[str, Any]] | None = None, grants: list[dict[str, Any]] | None = None,
             credentials: list[dict[str, Any]] | None = None, usage: list[dict[str, Any]] | None = None,
             unread: list[str] | None = None, findings: list[dict[str, Any]] | None = None,
             service_linked: bool = False) -> dict[str, Any]:
    return {"provider": provider, "target": target, "kind": kind, "id": id or f"{provider}:{target}:{name}",
            "name": name, "created": created, "managed": managed, "serviceLinked": service_linked,
            "owner": owner, "ownerSource": owner_source if owner else None, "lastUsed": last_used,
            "description": description, "tags": tags or {}, "principals": principals or [],
            "grants": grants or [], "credentials": credentials or [], "usage": usage or [],
            "unread": unread or [], "findings": findings or []}


def counts(identities: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts as the contract defines them, computed independently of merge.py."""
    out: dict[str, dict[str, int]] = {"findings": {}, "categories": {}, "owners": {}}
    for i in identities:
        owner = i["owner"] or "(none)"
        out["owners"][owner] = out["owners"].get(owner, 0) + 1
        for f in i["findings"]:
            out["findings"][f["code"]] = out["findings"].get(f["code"], 0) + 1
            out["categories"][f["category"]] = out["categories"].get(f["category"], 0) + 1
    return out


AWS_A, AWS_B, GCP_P, AZ_S, AWS_DOWN = ("111111111111", "222222222222", "acme-prod",
                                       "00000000-0000-0000-0000-0000000000aa", "333333333333")
OTHER_SA = "ci@other.iam.gserviceaccount.com"


def identities() -> list[dict[str, Any]]:
    """Nine identities over three clouds, in the document's order (provider, target, kind, id)."""
    rows = [
        identity("aws", AWS_A, "role", "deploy-admin", id=f"arn:aws:iam::{AWS_A}:role/deploy-admin",
                 created="2024-03-01T00:00:00Z", owner="team-a", owner_source="tag owner",
                 last_used="2026-11-30T12:00:00Z", description="CI deploys",
                 tags={"owner": "team-a", "env": "prod"},
                 principals=[{"kind": "oidc", "value": "token.actions.githubusercontent.com",
                              "detail": "sub = repo:acme/api:ref:refs/heads/main", "external": False,
                              "wildcard": False}],
                 grants=[{"actions": ["*"], "resources": ["*"],
                          "source": "arn:aws:iam::aws:policy/AdministratorAccess", "conditional": False}],
                 usage=[{"signal": "role last used", "at": "2026-11-30T12:00:00Z", "windowDays": 400}],
                 findings=[_f(ADMIN, "holds AdministratorAccess "
                                     "(arn:aws:iam::aws:policy/AdministratorAccess)")]),
        identity("aws", AWS_A, "role", ATTACK_NAME, id=f"arn:aws:iam::{AWS_A}:role/evil",
                 created="2026-06-01T00:00:00Z", description=ATTACK_DESCRIPTION,
                 tags={"team": ATTACK_TAG}, owner=ATTACK_TAG, owner_source="tag team",
                 principals=[{"kind": "aws-account", "value": "999999999999", "detail": "",
                              "external": True, "wildcard": False}],
                 grants=[{"actions": ["s3:*"], "resources": ["arn:aws:s3:::logs/*"],
                          "source": "inline policy p", "conditional": False}],
                 usage=[{"signal": "role last used", "at": None, "windowDays": 400}],
                 findings=[_f(EXTERNAL, "account 999999999999 may assume it"),
                           _f(WILDCARD, "s3:* on arn:aws:s3:::logs/*")]),
        identity("aws", AWS_A, "role", "ci-runner", id=f"arn:aws:iam::{AWS_A}:role/ci-runner",
                 created="2023-05-05T00:00:00Z", managed=True, owner="team-b", owner_source="marker",
                 last_used="2026-12-01T09:00:00Z",
                 principals=[{"kind": "oidc", "value": "token.actions.githubusercontent.com",
                              "detail": "sub = repo:acme/*", "external": False, "wildcard": True}],
                 grants=[{"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::b/*"],
                          "source": "inline policy read", "conditional": True}],
                 usage=[{"signal": "role last used", "at": "2026-12-01T09:00:00Z", "windowDays": 400}],
                 findings=[_f(ANY, "the OIDC trust admits any subject matching repo:acme/*")]),
        identity("aws", AWS_A, "user", "legacy-uploader", id=f"arn:aws:iam::{AWS_A}:user/legacy-uploader",
                 created="2020-02-02T00:00:00Z", last_used="2025-01-01T00:00:00Z",
                 credentials=[{"id": "AKIAEXAMPLEOLD00001", "kind": "access-key",
                               "created": "2020-02-02T00:00:00Z", "expires": None,
                               "lastUsed": "2025-01-01T00:00:00Z", "active": True},
                              {"id": "AKIAEXAMPLEOFF00002", "kind": "access-key",
                               "created": "2019-01-01T00:00:00Z", "expires": None, "lastUsed": None,
                               "active": False}],
                 usage=[{"signal": "access key AKIAEXAMPLEOLD00001 last used",
                         "at": "2025-01-01T00:00:00Z", "windowDays": None}],
                 unread=["attached policies: AccessDenied on iam:ListAttachedUserPolicies"],
                 findings=[_f(KEY_OLD, "access key AKIAEXAMPLEOLD00001 is 2131 days old (max 90d)"),
                           _f(UNUSED, "no use since 2025-01-01"), _f(NO_OWNER, "no owner tag")]),
        identity("aws", AWS_B, "role", "AWSServiceRoleForSupport",
                 id=f"arn:aws:iam::{AWS_B}:role/aws-service-role/support.amazonaws.com/AWSServiceRoleForSupport",
                 created="2022-01-01T00:00:00Z", service_linked=True, last_used=None,
                 principals=[{"kind": "aws-service", "value": "support.amazonaws.com", "detail": "",
                              "external": False, "wildcard": False}],
                 findings=[_f(NO_OWNER, "no owner tag")]),
        identity("aws", AWS_B, "role", "saml-ops", id=f"arn:aws:iam::{AWS_B}:role/saml-ops",
                 created="2024-08-08T00:00:00Z", owner="ops", owner_source="directory",
                 last_used="2026-10-10T10:00:00Z",
                 principals=[{"kind": "saml", "value": f"arn:aws:iam::{AWS_B}:saml-provider/okta",
                              "detail": "SAML:aud = https://signin.aws.amazon.com/saml",
                              "external": False, "wildcard": False}],
                 grants=[{"actions": ["iam:PassRole"], "resources": ["*"], "source": "inline policy ops",
                          "conditional": False}],
                 findings=[_f(HUMAN, "people signing in through okta can assume it"),
                           finding("escalation-grant", "NHI5:2025", "Overprivileged NHI", "high",
                                   "iam:PassRole on *")]),
        identity("azure", AZ_S, "application", "billing-sync", id="11111111-2222-3333-4444-555555555555",
                 created="2025-06-06T00:00:00Z", owner="team-a", owner_source="tag owner",
                 tags={"owner": "team-a"},
                 credentials=[{"id": "c1f0", "kind": "client-secret", "created": "2025-06-06T00:00:00Z",
                               "expires": None, "lastUsed": None, "active": True}],
                 usage=[{"signal": "sign-in (Graph)", "at": None, "windowDays": 30}],
                 findings=[_f(NEVER_EXPIRES, "client secret c1f0 never expires"),
                           _f(KEY_OLD, "client secret c1f0 is 545 days old (max 90d)")]),
        identity("gcp", GCP_P, "service-account", "etl", id=f"etl@{GCP_P}.iam.gserviceaccount.com",
                 created=None, owner="data", owner_source="tag owner", tags={"owner": "data"},
                 last_used="2026-12-02T00:00:00Z",
                 principals=[{"kind": "gcp-member", "value": f"serviceAccount:{OTHER_SA}",
                              "detail": "roles/iam.serviceAccountTokenCreator", "external": True,
                              "wildcard": False}],
                 grants=[{"actions": ["role:roles/editor"], "resources": [f"projects/{GCP_P}"],
                          "source": "project binding roles/editor", "conditional": False}],
                 usage=[{"signal": "key last authenticated", "at": "2026-12-02T00:00:00Z",
                         "windowDays": None}],
                 findings=[_f(ADMIN, "holds roles/editor on the project"),
                           _f(EXTERNAL, f"serviceAccount:{OTHER_SA} may impersonate it")]),
        identity("gcp", GCP_P, "service-account", "quiet", id=f"quiet@{GCP_P}.iam.gserviceaccount.com",
                 created="2026-11-20T00:00:00Z", owner="data", owner_source="tag owner",
                 tags={"owner": "data"}),
    ]
    rows.sort(key=lambda i: (i["provider"], i["target"], i["kind"], i["id"]))
    return rows


def document(*, shard: dict[str, int] | None = None) -> dict[str, Any]:
    """The whole (unsharded) run, one target unreadable."""
    rows = identities()
    targets = [
        {"provider": "aws", "target": AWS_A, "status": "read",
         "identities": sum(1 for i in rows if i["target"] == AWS_A)},
        {"provider": "aws", "target": AWS_B, "status": "read",
         "identities": sum(1 for i in rows if i["target"] == AWS_B)},
        {"provider": "aws", "target": AWS_DOWN, "status": "error", "identities": 0,
         "error": "AccessDenied: sts:AssumeRole on arn:aws:iam::333333333333:role/discover; "
                  "grant it <here> & retry"},
        {"provider": "azure", "target": AZ_S, "status": "read", "identities": 1},
        {"provider": "gcp", "target": GCP_P, "status": "read", "identities": 2},
    ]
    return {"kind": "workload-ids/discover", "version": 1, "generated": "2026-12-03T10:00:00Z",
            "settings": {"maxKeyAge": "90d", "unusedAfter": "90d"}, "shard": shard,
            "targets": targets, "identities": rows, "counts": counts(rows)}


def shards(whole: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """``whole`` split by target the way ``--shard I/N`` does (round robin over the sorted
    targets), each with its own counts, generated a few seconds apart."""
    out = []
    order = sorted(whole["targets"], key=lambda t: (t["provider"], t["target"]))
    for index in range(1, count + 1):
        mine = [t for n, t in enumerate(order) if n % count == index - 1]
        keys = {(t["provider"], t["target"]) for t in mine}
        rows = [copy.deepcopy(i) for i in whole["identities"] if (i["provider"], i["target"]) in keys]
        doc = copy.deepcopy(whole)
        doc.update(shard={"index": index, "count": count}, targets=copy.deepcopy(mine), identities=rows,
                   counts=counts(rows), generated=f"2026-12-03T10:00:0{index - 1}Z")
        out.append(doc)
    return out
