"""Desired state -> AWS IAM documents. Pure functions: no boto3, no cloud calls, so
``validate`` can check names and size limits without credentials."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ...config import Config
from ...durations import parse_duration
from ...errors import Diagnostic
from ...model import (
    AttachedTrust,
    CompiledWorkload,
    DesiredIdentity,
    GithubTrust,
    Grant,
    KubernetesTrust,
    Marker,
    ServiceTrust,
    Trust,
)

POLICY_NAME = "workload-ids"
# The deny-all inline policy cleanup puts on a quarantined role (see leavers.py).
QUARANTINE_POLICY = "workload-ids-quarantine"
GITHUB_ISSUER = "token.actions.githubusercontent.com"
ROLE_NAME_MAX = 64
USER_NAME_MAX = 64
INLINE_POLICY_MAX = 10_240  # all inline policies of one role, whitespace excluded
TRUST_POLICY_MAX = 2_048
TAG_VALUE_MAX = 256
SESSION_MIN, SESSION_MAX = 3_600, 43_200


def canonical(doc: Any) -> str:
    """The one JSON form we write and compare: no whitespace, keys in our order."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def identity_name(prefix: str, environment: str, name: str, limit: int = ROLE_NAME_MAX) -> str:
    """``wid_prod_payments-api``: deterministic, and collision-safe when cut to ``limit``.

    Environment and workload names hold no underscore, so the separator keeps
    (env="a-b", name="c") apart from (env="a", name="b-c").
    """
    parts = [p for p in (prefix, environment, name) if p]
    full = "_".join(parts)
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: limit - 9]}-{digest}"


def not_ours(config: Config, kind: str, name: str, path: str, marker: Marker) -> str | None:
    """Why an IAM role or user carrying ``marker`` is not one the tool made, or None.

    Tags are writable by anyone with ``iam:TagRole``; the path and the name are fixed at
    creation, so only an identity at ``aws.rolePath`` with exactly the name we give its
    marker's workload is believed.
    """
    if marker.adopted and kind == "role":
        # An adopted role keeps the name and path it had: only the MAC (checked by the
        # read, which treats an unauthenticated adopted marker as forged) vouches for it.
        return None
    if path != config.aws.rolePath:
        return f"its path {path} is not aws.rolePath {config.aws.rolePath}"
    want = identity_name(config.aws.namePrefix, marker.environment, marker.workload,
                         USER_NAME_MAX if kind == "user" else ROLE_NAME_MAX)
    if name != want:
        return (f"its name is not {want}, the name workload-ids gives "
                f"{marker.environment}/{marker.workload}")
    return None


def _sid(source: str, used: dict[str, int]) -> str:
    base = "".join(part.capitalize() for part in source.replace("-", ".").split(".")) or "Grant"
    n = used.get(base, 0)
    used[base] = n + 1
    return f"{base}{n}"


# S3 bucket and object ARNs carry no account: arn:aws:s3:::name names that bucket in
# whichever account owns it, another organisation's included. Statements on them are held to
# the workload's account by aws:ResourceAccount, which S3 fills in with the bucket owner's.
_S3_GLOBAL = re.compile(r"arn:aws[a-z-]*:s3:::")


def _is_s3_global(resource: str) -> bool:
    return _S3_GLOBAL.match(resource) is not None


def _with_resource_account(condition: str | None, account: str) -> dict[str, Any]:
    """``condition`` (our canonical JSON, or None) with aws:ResourceAccount = ``account``
    added under StringEquals, next to whatever the template already states."""
    merged: dict[str, Any] = json.loads(condition) if condition else {}
    equals = dict(merged.get("StringEquals", {}))
    equals["aws:ResourceAccount"] = account
    merged["StringEquals"] = dict(sorted(equals.items()))
    return dict(sorted(merged.items()))


def _until(condition: dict[str, Any], expires: str) -> dict[str, Any]:
    """``condition`` with ``DateLessThan aws:CurrentTime`` = ``expires`` beside whatever it
    states: IAM itself stops honouring the statement at that instant."""
    merged = dict(condition)
    before = dict(merged.get("DateLessThan", {}))
    before["aws:CurrentTime"] = expires
    merged["DateLessThan"] = dict(sorted(before.items()))
    return dict(sorted(merged.items()))


def policy_document(grants: Sequence[Grant], account: str | None = None) -> dict[str, Any]:
    """One Allow statement per (source, actions, condition), resources merged and sorted.

    Statement order follows the manifest's access entries, so the same manifest always
    gives the same bytes; Sids name the template they come from. With ``account``, S3
    bucket and object resources go in statements of their own, conditioned on
    ``aws:ResourceAccount`` being that account. A time-bound entry's grants get statements
    of their own (one Sid per entry, ``...Until20261231T180000Z``) carrying
    ``DateLessThan aws:CurrentTime``: merged with another entry's, an end would cut both.
    """
    groups: dict[tuple[str, tuple[str, ...], str | None, bool, int | None], list[str]] = {}
    ends: dict[int, str] = {}
    for g in grants:
        s3 = account is not None and _is_s3_global(g.resource)
        bound = g.entry if g.expires else None
        if g.expires:
            ends[g.entry] = g.expires
        resources = groups.setdefault((g.source, g.actions, g.condition, s3, bound), [])
        if g.resource not in resources:
            resources.append(g.resource)
    used: dict[str, int] = {}
    statements: list[dict[str, Any]] = []
    for (source, actions, condition, s3, bound), resources in groups.items():
        expires = ends.get(bound) if bound is not None else None
        label = source if expires is None else f"{source}.until.{re.sub(r'[^0-9TZ]', '', expires)}"
        st: dict[str, Any] = {
            "Sid": _sid(label, used),
            "Effect": "Allow",
            "Action": list(actions) if len(actions) > 1 else actions[0],
            "Resource": sorted(resources) if len(resources) > 1 else resources[0],
        }
        conditions: dict[str, Any] = {}
        if s3 and account is not None:
            conditions = _with_resource_account(condition, account)
        elif condition:
            conditions = json.loads(condition)
        if expires is not None:
            conditions = _until(conditions, expires)
        if conditions:
            st["Condition"] = conditions
        statements.append(st)
    return {"Version": "2012-10-17", "Statement": statements}


def oidc_provider_arn(account: str, issuer_host_path: str) -> str:
    """The ARN IAM gives the OIDC provider of ``issuer_host_path`` in ``account``."""
    return f"arn:aws:iam::{account}:oidc-provider/{issuer_host_path}"


def issuer_host_path(issuer: str) -> str:
    """``https://oidc.eks.../id/X`` -> ``oidc.eks.../id/X`` (how IAM names the provider)."""
    return issuer.removeprefix("https://").rstrip("/")


def trust_document(account: str, federation: Iterable[Trust]) -> dict[str, Any]:
    """Who may assume the role: one statement per OIDC issuer (subjects merged) and one
    for AWS services, each bound as tightly as the issuer allows."""
    # Keyed by issuer and, for GitHub entries that name one, the repository's immutable id:
    # a statement's conditions all hold at once, so entries of different repositories
    # cannot share a statement that checks an id.
    subjects: dict[tuple[str, int | None], list[str]] = {}
    services: list[str] = []
    for fed in federation:
        if isinstance(fed, GithubTrust):
            subjects.setdefault((GITHUB_ISSUER, fed.repository_id), []).append(fed.subject())
        elif isinstance(fed, KubernetesTrust):
            subjects.setdefault((issuer_host_path(fed.issuer), None), []).append(fed.subject())
        elif isinstance(fed, ServiceTrust | AttachedTrust) and fed.service and fed.service not in services:
            # An attachment (attachedTo: lambda, ecs) is trusted as its service is: IAM
            # cannot tie a role to one function or cluster, only to the service and account.
            services.append(fed.service)
    statements: list[dict[str, Any]] = []
    for issuer, repository_id in sorted(subjects, key=lambda k: (k[0], k[1] or 0)):
        subs = sorted(set(subjects[(issuer, repository_id)]))
        condition: dict[str, Any] = {
            f"{issuer}:aud": "sts.amazonaws.com",
            f"{issuer}:sub": subs if len(subs) > 1 else subs[0],
        }
        sid = issuer
        if repository_id is not None:
            # STS checks GitHub's repository_id claim as a condition key (since February 2026).
            condition[f"{issuer}:repository_id"] = str(repository_id)
            sid = f"{issuer}#{repository_id}"
        statements.append({
            "Sid": "Oidc" + hashlib.sha256(sid.encode()).hexdigest()[:8],
            "Effect": "Allow",
            "Principal": {"Federated": oidc_provider_arn(account, issuer)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": condition},
        })
    if services:
        # aws:SourceAccount stops another account's task or function from using the role
        # through the same service (the confused-deputy problem).
        statements.append({
            "Sid": "AwsServices",
            "Effect": "Allow",
            "Principal": {"Service": sorted(services) if len(services) > 1 else services[0]},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
        })
    return {"Version": "2012-10-17", "Statement": statements}


def oidc_issuers(workload: CompiledWorkload) -> list[str]:
    """The OIDC issuers (IAM host/path form) this workload's trust policy refers to."""
    found: set[str] = set()
    for fed in workload.trust:
        if isinstance(fed, GithubTrust):
            found.add(GITHUB_ISSUER)
        elif isinstance(fed, KubernetesTrust):
            found.add(issuer_host_path(fed.issuer))
    return sorted(found)


def session_seconds(workload: CompiledWorkload, config: Config) -> int:
    """The role's maximum session, in seconds: the workload's own, else the config's."""
    text = workload.session_duration or config.aws.maxSessionDuration
    return int(parse_duration(text).total_seconds())


def boundary_arn(workload: CompiledWorkload, config: Config) -> str:
    """The permissions boundary's ARN in the workload's account."""
    template = config.aws_boundary()
    return template.replace("{account}", workload.target)


def desired_identity(workload: CompiledWorkload, config: Config) -> DesiredIdentity:
    """The role (or user, for key mode) a workload should have, rendered for IAM."""
    cached = workload.rendered.get(f"aws:{id(config)}")
    if cached is not None:
        return cached
    desired = _render(workload, config)
    workload.rendered[f"aws:{id(config)}"] = desired
    return desired


def _render(workload: CompiledWorkload, config: Config) -> DesiredIdentity:
    key_mode = workload.key_mode
    kind = "user" if key_mode else "role"
    name = identity_name(config.aws.namePrefix, workload.environment, workload.name,
                         USER_NAME_MAX if key_mode else ROLE_NAME_MAX)
    path = config.aws.rolePath
    if workload.adopted:
        # arn:aws:iam::ACCOUNT:role/PATH/NAME (validate checked the form and the account)
        resource = workload.adopted.split(":", 5)[5].removeprefix("role")
        path, name = resource.rsplit("/", 1)[0] + "/", resource.rsplit("/", 1)[1]
    objects: dict[str, Any] = {"policy": policy_document(workload.grants, workload.target)}
    settings = {"path": path, "boundary": boundary_arn(workload, config)}
    if key_mode:
        settings["secretName"] = workload.secret_name
    if not key_mode:
        objects["trust"] = trust_document(workload.target, workload.trust)
        settings["maxSessionDuration"] = str(session_seconds(workload, config))
        settings["description"] = workload.description
    prefix = "role" if kind == "role" else "user"
    address = f"arn:aws:iam::{workload.target}:{prefix}{path}{name}"
    documents = {k: canonical(v) for k, v in objects.items()}
    return DesiredIdentity(workload=workload, kind=kind, name=name, documents=documents,
                           tags=workload.marker.as_tags(), settings=settings, address=address,
                           objects=objects)


def static_checks(workload: CompiledWorkload, config: Config) -> list[Diagnostic]:
    """Limits IAM would enforce at apply time, checked before any call."""
    lw = workload.source
    out: list[Diagnostic] = []
    desired = desired_identity(workload, config)
    policy_size = len(desired.documents["policy"])
    if policy_size > INLINE_POLICY_MAX:
        out.append(Diagnostic(lw.position("spec", "access", key=True),
                              f"workload {workload.label}: its IAM policy would be {policy_size} "
                              f"characters; AWS allows {INLINE_POLICY_MAX} of inline policy per "
                              "identity. Split the workload or list fewer resources"))
    trust = desired.documents.get("trust")
    if trust is not None and len(trust) > TRUST_POLICY_MAX:
        out.append(Diagnostic(lw.position("spec", "credentials", "federation", key=True),
                              f"workload {workload.label}: its trust policy would be {len(trust)} "
                              f"characters; AWS allows {TRUST_POLICY_MAX} (raisable to 4,096 by a "
                              "quota request). Use fewer federation entries"))
    seconds = session_seconds(workload, config)
    if not SESSION_MIN <= seconds <= SESSION_MAX:
        if workload.session_duration:
            where = lw.position("spec", "aws", "maxSessionDuration")
            value = workload.session_duration
        else:
            where = config.position("aws.maxSessionDuration") or lw.position("spec", "aws")
            value = config.aws.maxSessionDuration
        out.append(Diagnostic(where, f"maxSessionDuration must be between 1h and 12h, not {value}"))
    for key, value in desired.tags.items():
        if len(value) > TAG_VALUE_MAX:
            out.append(Diagnostic(lw.position("metadata"),
                                  f"tag {key} would be {len(value)} characters; AWS allows "
                                  f"{TAG_VALUE_MAX}"))
    return out


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def trust_pairs(doc_text: str) -> set[tuple[str, str]]:
    """(principal, subject) pairs a trust policy admits."""
    if not doc_text:
        return set()
    doc = json.loads(doc_text)
    pairs: set[tuple[str, str]] = set()
    for st in _listed(doc.get("Statement")):
        principal = st.get("Principal", {})
        condition = st.get("Condition", {}).get("StringEquals", {})
        subjects = [str(s) for k, v in condition.items() if k.endswith(":sub") for s in _listed(v)]
        if not isinstance(principal, dict):
            pairs.add((str(principal), "*"))
            continue
        for kind, values in principal.items():
            for value in _listed(values):
                who = f"{kind}:{value}"
                for subject in subjects or [
                        "account " + str(condition.get("aws:SourceAccount", "any"))]:
                    pairs.add((who, subject))
    return pairs
