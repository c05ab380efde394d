"""Every IAM role and every IAM user with an access key in one account, ours or not, as
facts (``workload_ids.discovered``) for ``discover`` to judge.

Two batch reads, whatever the number of identities: the pages of
``GetAccountAuthorizationDetails`` (trust policies, inline and attached policies with the
default version of every managed policy, groups, tags, RoleLastUsed) and the credential
report (every user's access keys: when each was made, last used and whether it is active).
A per-role read would cost a call per identity; an organisation has thousands.

The credential report names keys by slot (key 1, key 2), not by id, and IAM makes a new
one at most every four hours: a user made since the report was generated is reported
with that fact in ``unread`` rather than as a user without keys.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ... import clock
from ...calls import SeamClient
from ...config import Config
from ...discovered import Credential, DiscoveredIdentity, Grant, Principal, UsageSignal
from ...errors import CloudError
from ...markers import NoSigningKey
from ...model import Marker
from ..interface import DiscoveryBackend
from . import render
from .clients import AwsClients, check_account, pages_of, tags_of

SERVICE_ROLE_PATH = "/aws-service-role/"
# Filters of the batch read: every identity kind and every policy they may hold.
DETAIL_FILTER = ["Role", "User", "Group", "LocalManagedPolicy", "AWSManagedPolicy"]
# How long AWS keeps a role's last use (RoleLastUsed covers this many days).
ROLE_LAST_USED_DAYS = 400
# What the credential report writes for "no value".
_NO_VALUE = frozenset({"", "N/A", "no_information", "not_supported"})
# Trust actions that hand out the role's credentials.
_ASSUME = ("sts:assumerole", "sts:assumerolewithwebidentity", "sts:assumerolewithsaml", "sts:*", "*")
# OIDC issuers whose subject is not the token's ``sub``: Cognito identity pools are
# narrowed by ``aud`` (the pool id).
_AUDIENCE_SCOPED = frozenset({"cognito-identity.amazonaws.com"})
# Condition operators in words.
_OPERATORS = {"StringEquals": "=", "StringEqualsIgnoreCase": "=", "StringLike": "like",
              "ForAnyValue:StringEquals": "= any of", "ForAnyValue:StringLike": "like any of",
              "ForAllValues:StringEquals": "= each of", "ForAllValues:StringLike": "like each of",
              "ArnEquals": "=", "ArnLike": "like"}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _document(value: Any) -> dict[str, Any]:
    """A policy document as a dict (botocore decodes IAM's; a string is parsed)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


# --- trust ---------------------------------------------------------------------------


def _conditions(statement: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(operator, key, values) of a statement's conditions, in the order written."""
    out: list[tuple[str, str, list[str]]] = []
    for operator, block in (statement.get("Condition") or {}).items():
        if isinstance(block, dict):
            for key, values in block.items():
                out.append((str(operator), str(key), [str(v) for v in _as_list(values)]))
    return out


def _words(conditions: Sequence[tuple[str, str, list[str]]], strip: str = "") -> str:
    """Conditions as people read them: ``sub = repo:acme/api:ref:refs/heads/main``."""
    said = []
    for operator, key, values in conditions:
        name = key[len(strip) + 1:] if strip and key.lower().startswith(strip.lower() + ":") else key
        shown = values[0] if len(values) == 1 else "[" + ", ".join(values) + "]"
        said.append(f"{name} {_OPERATORS.get(operator, operator)} {shown}")
    return "; ".join(said)


def _oidc_principal(value: str, target: str, conditions: list[tuple[str, str, list[str]]]) -> Principal:
    """An OIDC provider in a trust policy, with the subjects its conditions admit."""
    issuer = value.split(":oidc-provider/", 1)[1] if ":oidc-provider/" in value else value
    account = _account_of(value)
    scoping = "aud" if issuer in _AUDIENCE_SCOPED else "sub"
    subject = [(op, key, vals) for op, key, vals in conditions
               if key.lower() == f"{issuer.lower()}:{scoping}"]
    # A pattern admits more than one caller only under a *Like operator (StringEquals
    # compares '*' literally).
    wildcard = not subject or any(
        "like" in op.lower() and any("*" in v or "?" in v for v in vals) for op, _, vals in subject)
    return Principal("oidc", issuer, _words(conditions, issuer),
                     external=bool(account) and account != target, wildcard=wildcard)


def _aws_principal(value: str, target: str, detail: str) -> Principal:
    if value == "*":
        return Principal("any", "*", detail, external=True, wildcard=True)
    if value.isdigit():
        return Principal("aws-account", value, detail, external=value != target)
    if value.endswith(":root") and value.startswith("arn:"):
        account = _account_of(value)
        return Principal("aws-account", account, detail, external=account != target)
    if value.startswith("arn:"):
        account = _account_of(value)
        return Principal("aws-principal", value, detail, external=account != target)
    # A principal deleted since the policy was written: IAM shows its unique id.
    said = "; ".join(x for x in (detail, "a principal deleted since (IAM shows its unique id)") if x)
    return Principal("aws-principal", value, said)


def trust_principals(document: Any, target: str) -> tuple[Principal, ...]:
    """Who may assume a role, from its trust policy (Allow statements that hand out its
    credentials; ``NotPrincipal`` in an Allow admits everyone else, so it reads as ``*``)."""
    out: list[Principal] = []
    for st in _as_list(_document(document).get("Statement")):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        actions = [str(a).lower() for a in _as_list(st.get("Action"))]
        if "Action" in st and not any(a in _ASSUME or a.startswith("sts:assumerole") for a in actions):
            continue
        conditions = _conditions(st)
        detail = _words(conditions)
        if "NotPrincipal" in st:
            out.append(Principal("any", "*", "; ".join(x for x in (
                "everyone but NotPrincipal " + json.dumps(st["NotPrincipal"], sort_keys=True), detail)
                if x), external=True, wildcard=True))
            continue
        principal = st.get("Principal")
        if principal == "*" or not isinstance(principal, dict):
            out.append(Principal("any", str(principal), detail, external=True, wildcard=True))
            continue
        for kind, values in principal.items():
            for value in (str(v) for v in _as_list(values)):
                if kind == "AWS":
                    out.append(_aws_principal(value, target, detail))
                elif kind == "Service":
                    out.append(Principal("aws-service", value, detail))
                elif kind == "Federated" and ":saml-provider/" in value:
                    account = _account_of(value)
                    out.append(Principal("saml", value, detail, external=account != target))
                elif kind == "Federated":
                    out.append(_oidc_principal(value, target, conditions))
                else:  # CanonicalUser and whatever IAM adds later: shown as written
                    out.append(Principal("aws-principal", f"{kind}:{value}", detail))
    return tuple(out)


# --- grants --------------------------------------------------------------------------


def policy_grants(document: Any, source: str) -> list[Grant]:
    """The Allow statements of a permission policy as grants (Deny statements only take
    away). ``NotAction``/``NotResource`` allow everything but what they list: they are
    reported as wildcards that say so."""
    grants: list[Grant] = []
    for st in _as_list(_document(document).get("Statement")):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        actions: tuple[str, ...]
        resources: tuple[str, ...]
        if "NotAction" in st:
            actions = ("* except " + ", ".join(str(a) for a in _as_list(st["NotAction"])),)
        else:
            actions = tuple(str(a) for a in _as_list(st.get("Action")))
        if "NotResource" in st:
            resources = ("* except " + ", ".join(str(r) for r in _as_list(st["NotResource"])),)
        else:
            resources = tuple(str(r) for r in _as_list(st.get("Resource"))) or ("*",)
        if actions:
            grants.append(Grant(actions, resources, source, conditional=bool(st.get("Condition"))))
    return grants


@dataclass(frozen=True, slots=True)
class _Policy:
    """A managed policy as the batch read holds it."""

    arn: str
    name: str
    document: Any  # None: its default version was not in the read


def _managed(policies: Mapping[str, _Policy], arn: str, name: str,
             prefix: str) -> tuple[list[Grant], str | None]:
    """The grants of one attached managed policy, and what could not be read of it."""
    aws_managed = ":iam::aws:policy/" in arn
    source = f"{prefix}{'AWS managed' if aws_managed else 'managed'} policy {arn}"
    grants: list[Grant] = []
    if aws_managed:
        # The name people know it by: judged by name too (AdministratorAccess), the way a
        # predefined role is on the other clouds.
        grants.append(Grant((f"role:{name}",), ("*",), source))
    policy = policies.get(arn)
    if policy is None or policy.document is None:
        return grants, f"the document of {source} (not in the authorization details)"
    return grants + policy_grants(policy.document, source), None


# --- the credential report -----------------------------------------------------------


def _report_time(value: str | None) -> datetime | None:
    if value is None or value.strip() in _NO_VALUE:
        return None
    try:
        return clock.parse_time(value)
    except ValueError:
        return None


def parse_report(content: bytes | str) -> dict[str, dict[str, str]]:
    """The credential report's rows by user ARN."""
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    return {row.get("arn", ""): row for row in csv.DictReader(io.StringIO(text))}


def report_credentials(row: Mapping[str, str]) -> tuple[tuple[Credential, ...], tuple[UsageSignal, ...]]:
    """A user's access keys (by slot: the report does not name them) and their last use."""
    credentials: list[Credential] = []
    usage: list[UsageSignal] = []
    for slot in ("1", "2"):
        created = _report_time(row.get(f"access_key_{slot}_last_rotated"))
        if created is None:
            continue
        last = _report_time(row.get(f"access_key_{slot}_last_used_date"))
        active = row.get(f"access_key_{slot}_active", "").lower() == "true"
        credentials.append(Credential(f"access key {slot}", "access-key", created, None, last, active))
        usage.append(UsageSignal(f"access key {slot} last used", last))
    if row.get("password_enabled", "").lower() == "true":
        usage.append(UsageSignal("console sign-in", _report_time(row.get("password_last_used"))))
    return tuple(credentials), tuple(usage)


class AwsDiscovery(DiscoveryBackend):
    """Every IAM role (service-linked ones on request) and every IAM user with an access
    key, read in the batch calls the module docstring names."""

    def __init__(self, clients: AwsClients, config: Config) -> None:
        self.clients = clients
        self.config = config
        self._lock = threading.Lock()
        # Why an account's signing key could not be read (None: it was), asked once.
        self._key_problems: dict[str, str | None] = {}

    def discover(self, target: str, *, service_linked: bool = False) -> list[DiscoveredIdentity]:
        """Read ``target`` (an account id); never writes (GenerateCredentialReport makes
        IAM build a report, which changes nothing in the account)."""
        iam = self.clients.client(target, "iam")
        roles: list[dict[str, Any]] = []
        users: list[dict[str, Any]] = []
        groups: dict[str, dict[str, Any]] = {}
        policies: dict[str, _Policy] = {}
        for page in pages_of(iam, "get_account_authorization_details", Filter=DETAIL_FILTER,
                             MaxItems=1000):
            roles.extend(page.get("RoleDetailList", []))
            users.extend(page.get("UserDetailList", []))
            for group in page.get("GroupDetailList", []):
                groups[group["GroupName"]] = group
            for p in page.get("Policies", []):
                default = next((v for v in p.get("PolicyVersionList", [])
                                if v.get("IsDefaultVersion")), None)
                policies[p["Arn"]] = _Policy(p["Arn"], p.get("PolicyName", p["Arn"].rsplit("/", 1)[-1]),
                                             default.get("Document") if default else None)
        report, generated = self._credential_report(iam) if users else ({}, None)
        found: list[DiscoveredIdentity] = []
        for role in roles:
            check_account(target, role["Arn"])
            linked = str(role.get("Path", "")).startswith(SERVICE_ROLE_PATH)
            if linked and not service_linked:
                continue
            found.append(self._role(target, role, policies, linked))
        for user in users:
            check_account(target, user["Arn"])
            row = report.get(user["Arn"])
            if row is None and generated is not None:
                found.append(self._user(target, user, policies, groups, None, generated))
                continue
            credentials, usage = report_credentials(row or {})
            if credentials:
                found.append(self._user(target, user, policies, groups, (credentials, usage), generated))
        return found

    # --- the credential report ---------------------------------------------------

    def _credential_report(self, iam: SeamClient) -> tuple[dict[str, dict[str, str]], datetime | None]:
        """Ask IAM for the report, then read it: two calls when it is ready at once. While
        IAM is still making it, wait with the seam's backoff, bounded by its retry time."""
        policy = self.clients.seam.retry
        iam.generate_credential_report()
        waited, attempt = 0.0, 0
        while True:
            try:
                answer = iam.get_credential_report()
                return parse_report(answer.get("Content", b"")), _as_time(answer.get("GeneratedTime"))
            except CloudError as exc:
                if exc.code not in ("ReportInProgress", "ReportNotPresent", "ReportExpired"):
                    raise
                if exc.code != "ReportInProgress":  # made and gone again meanwhile: ask anew
                    iam.generate_credential_report()
            attempt += 1
            delay = min(policy.max_delay, policy.base_delay * (2 ** attempt))
            if waited + delay > policy.max_seconds:
                raise CloudError("iam.get_credential_report", "ReportInProgress",
                                 f"IAM was still making the credential report after {int(waited)} s",
                                 "rerun in a minute: IAM keeps a report it made for four hours",
                                 kind="transient")
            self.clients.seam.sleep(delay)
            waited += delay

    # --- one identity ------------------------------------------------------------

    def _managed(self, target: str, kind: str, entity: Mapping[str, Any], name: str,
                 immutable_id: str, tags: Mapping[str, str]) -> tuple[bool, str | None]:
        """Whether the identity is ours by the proof plan and cleanup use: our marker, at
        our path and name, with a MAC over this identity. A copied tag set fails the MAC."""
        marker = Marker.from_tags(tags)
        if marker is None:
            return False, None
        if render.not_ours(self.config, kind, name, str(entity.get("Path", "")), marker):
            return False, None
        problem = self._key_problem(target)
        if problem is not None:
            return False, f"whether workload-ids manages it: {problem}"
        return self.clients.unauthenticated(target, name, immutable_id, marker, tags) is None, None

    def _key_problem(self, target: str) -> str | None:
        """Why the account's marker signing key cannot be read, or None (asked once per
        account: a denied read must not be repeated for every marked identity)."""
        with self._lock:
            if target in self._key_problems:
                return self._key_problems[target]
        problem: str | None = None
        try:
            self.clients.signing_keys.get(target)
        except NoSigningKey as exc:
            problem = f"no marker signing key at {exc.where} (`workload-ids bootstrap --apply` creates it)"
        except CloudError as exc:
            problem = (f"the marker signing key could not be read ({exc.code}: {exc.message}); "
                       "discover needs secretsmanager:GetSecretValue on it")
        with self._lock:
            self._key_problems.setdefault(target, problem)
        return problem

    def _grants(self, entity: Mapping[str, Any], inline_key: str, policies: Mapping[str, _Policy],
                prefix: str = "") -> tuple[list[Grant], list[str]]:
        grants: list[Grant] = []
        unread: list[str] = []
        for p in entity.get(inline_key, []):
            grants += policy_grants(p.get("PolicyDocument"), f"{prefix}inline policy {p['PolicyName']}")
        for p in entity.get("AttachedManagedPolicies", []):
            more, missing = _managed(policies, p["PolicyArn"], p.get("PolicyName", ""), prefix)
            grants += more
            if missing:
                unread.append(missing)
        return grants, unread

    def _role(self, target: str, role: Mapping[str, Any], policies: Mapping[str, _Policy],
              linked: bool) -> DiscoveredIdentity:
        tags = tags_of(role.get("Tags"))
        name = str(role["RoleName"])
        grants, unread = self._grants(role, "RolePolicyList", policies)
        managed, why = self._managed(target, "role", role, name, str(role.get("RoleId") or ""), tags)
        last = (role.get("RoleLastUsed") or {}).get("LastUsedDate")
        return DiscoveredIdentity(
            provider="aws", target=target, kind="role", id=str(role["Arn"]), name=name,
            created=_as_time(role.get("CreateDate")), managed=managed, tags=tags,
            principals=trust_principals(role.get("AssumeRolePolicyDocument"), target),
            grants=tuple(grants), usage=(UsageSignal("role last used", _as_time(last), ROLE_LAST_USED_DAYS),),
            description=str(role.get("Description") or ""), service_linked=linked,
            unread=tuple(unread + ([why] if why else [])))

    def _user(self, target: str, user: Mapping[str, Any], policies: Mapping[str, _Policy],
              groups: Mapping[str, Mapping[str, Any]],
              keys: tuple[tuple[Credential, ...], tuple[UsageSignal, ...]] | None,
              generated: datetime | None) -> DiscoveredIdentity:
        tags = tags_of(user.get("Tags"))
        name = str(user["UserName"])
        grants, unread = self._grants(user, "UserPolicyList", policies)
        for group_name in user.get("GroupList", []):
            group = groups.get(group_name)
            if group is None:
                unread.append(f"the policies of group {group_name} (not in the authorization details)")
                continue
            more, missing = self._grants(group, "GroupPolicyList", policies, prefix=f"group {group_name}: ")
            grants += more
            unread += missing
        if keys is None:
            when = clock.format_time(generated) if generated else "?"
            unread.append(f"its access keys: the user is not in the credential report generated at "
                          f"{when} (IAM makes a new one at most every four hours)")
        managed, why = self._managed(target, "user", user, name, str(user.get("UserId") or ""), tags)
        credentials, usage = keys if keys is not None else ((), ())
        return DiscoveredIdentity(
            provider="aws", target=target, kind="user", id=str(user["Arn"]), name=name,
            created=_as_time(user.get("CreateDate")), managed=managed, tags=tags,
            grants=tuple(grants), credentials=credentials, usage=usage,
            unread=tuple(unread + ([why] if why else [])))


def _as_time(value: Any) -> datetime | None:
    """A time botocore parsed (or a string one), in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return clock.parse_time(value)
        except ValueError:
            return None
    return None

