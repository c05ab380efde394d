"""Discovery on GCP: every service account of a project, ours or not, as facts
(:mod:`workload_ids.discovered`). Read-only.

What it reads, per project: the accounts (paged), the project (its number: workload
identity pools, default accounts and service agents are named by it), the project IAM
policy once for every account, and the project's custom roles (paged, with their
permissions), and Policy Analyzer's last authentication of its accounts and of their
keys (a query each, 1,000 a page); per account, its user-managed keys and its own IAM
policy. That is ``6 + 2 x accounts`` calls for a project of up to 100 accounts, plus one
read of the marker signing key when some account claims to be ours, plus one ``GetRole``
per organization custom role bound to an account.

Who can use an account: the members of its own policy holding a role that acts as it
(user, token creator, workload identity user, key admin, admin, owner, editor, or a
custom role with such a permission), and the members of the project policy holding one
of those roles on every account of the project. ``external`` is a member outside the
project: a service account of another project; a workload identity pool of another
project (the project's own number is GCP's, or the one trust.gcpProjectNumbers gives);
a user, group or domain whose domain none of the project's owners share (GCP names no
organisation domain a project could be compared with; its owners' are the closest);
and everyone (``allUsers``, ``allAuthenticatedUsers``). ``wildcard`` is everyone, or a
``principalSet`` over a whole pool.

Usage: the account's last authentication, and each key's, as Policy Analyzer reports
them (an account or key it does not list has not authenticated in what it observed).
Refused (the API not enabled, or no roles/policyanalyzer.activityAnalysisViewer), every
account says so in ``unread`` instead.

Not read, and said so in each identity's ``unread``: bindings on other resources
(buckets, topics, secrets: only Cloud Asset Inventory finds them all).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...calls import DENIED, NOT_FOUND
from ...discovered import Credential, DiscoveredIdentity, Grant, Principal, UsageSignal
from ...errors import CloudError
from ...markers import NoSigningKey
from ...model import Marker
from ..interface import DiscoveryBackend
from . import render
from .clients import GcpClients
from .identity import GcpIdentities
from .policies import GcpPolicies

# Roles on an account (or on its project) that let their holder act as the account: run
# as it, mint its tokens, federate into it, make keys for it, or rewrite who may.
USE_ROLES = frozenset({
    "roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator",
    "roles/iam.workloadIdentityUser", "roles/iam.serviceAccountKeyAdmin",
    "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountOpenIdTokenCreator",
    "roles/owner", "roles/editor"})
# Project-wide holders of these act as every account of the project. Owners and editors
# are left out there: they hold the whole project, which their own grants already show.
PROJECT_USE_ROLES = USE_ROLES - {"roles/owner", "roles/editor"}
# A custom role with one of these permissions acts as the account too.
USE_PERMISSIONS = frozenset({
    "iam.serviceAccounts.actAs", "iam.serviceAccounts.getAccessToken",
    "iam.serviceAccounts.getOpenIdToken", "iam.serviceAccounts.implicitDelegation",
    "iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt",
    "iam.serviceAccountKeys.create", "iam.serviceAccounts.setIamPolicy"})
# User-managed keys without an expiry say so with this date (Google's "never").
NEVER_YEAR = 9999
USER_MANAGED_KEYS = 1  # ListServiceAccountKeysRequest.KeyType.USER_MANAGED
EVERYONE = frozenset({"allUsers", "allAuthenticatedUsers", "principalSet://goog/public:all"})
_POOL = re.compile(r"principal(Set)?://iam\.googleapis\.com/projects/([^/]+)/locations/[^/]+/"
                   r"workloadIdentityPools/([^/]+)/(.*)")
# Workforce identity federation: people of an organisation's identity provider.
_WORKFORCE = re.compile(r"principal(Set)?://iam\.googleapis\.com/locations/[^/]+/workforcePools/([^/]+)/(.*)")
# Google's service agents of a project: service-NUMBER@gcp-sa-....iam.gserviceaccount.com,
# NUMBER@cloudservices.gserviceaccount.com.
_SERVICE_AGENT = re.compile(r"service-(\d+)@.*|(\d+)@cloudservices\.gserviceaccount\.com")
UNREAD_RESOURCE_BINDINGS = ("bindings on individual resources (buckets, topics, secrets...): "
                            "only Cloud Asset Inventory lists them, which discover does not read")
UNREAD_LAST_AUTHENTICATION = ("last authentication of the account and its keys: Policy Analyzer "
                              "refused its activity query ({why}); it needs the Policy Analyzer API "
                              "enabled and roles/policyanalyzer.activityAnalysisViewer")
SIGNAL = "last authentication (Policy Analyzer)"
ACCOUNT_ACTIVITY = "serviceAccountLastAuthentication"
KEY_ACTIVITY = "serviceAccountKeyLastAuthentication"


class GcpDiscovery(DiscoveryBackend):
    """Every service account of a project (see the module docstring)."""

    def __init__(self, clients: GcpClients, identities: GcpIdentities, policies: GcpPolicies) -> None:
        self.clients = clients
        self.identities = identities
        self.policies = policies
        self.prefix = clients.config.gcp.namePrefix
        # Organization custom roles read this run: name -> permissions, or why not. Targets
        # may be read side by side: one lock, so each role is read once.
        self._org_roles: dict[str, tuple[str, ...] | str] = {}
        self._org_lock = threading.Lock()

    def discover(self, target: str, *, service_linked: bool = False) -> list[DiscoveredIdentity]:
        """Every service account of project ``target``. ``service_linked`` changes nothing:
        Google's service agents live in Google's projects, not in this one's list."""
        accounts = self.identities.accounts_in(target)
        number = str(self.clients.projects.get_project(name=f"projects/{target}").name).rsplit("/", 1)[-1]
        bindings = render.policy_bindings(self.policies.project_policy(target))
        custom = self._custom_roles(target)
        seen = self._last_authentications(target)
        # The number the config gives the project (trust.gcpProjectNumbers) names its pools too.
        configured = self.clients.config.trust.gcpProjectNumbers.get(target)
        numbers = frozenset({number, *([str(configured)] if configured else [])})
        scope = _Project(target, number, numbers, _owner_domains(bindings))
        project_users = [p for b in bindings if str(b["role"]) in PROJECT_USE_ROLES
                         for p in _principals(b, scope, "project IAM policy")]
        return [self._identity(target, account, bindings, custom, scope, project_users, seen)
                for account in accounts]

    # --- reads -------------------------------------------------------------------------

    def _custom_roles(self, project: str) -> dict[str, tuple[str, ...]]:
        return custom_roles(self.clients, project)

    def _last_authentications(self, project: str) -> Seen:
        return last_authentications(self.clients, project)

    def _org_role(self, name: str) -> tuple[str, ...] | str:
        """An organization custom role's permissions (one read per role per run), or why
        they could not be read."""
        with self._org_lock:
            if name not in self._org_roles:
                try:
                    role = self.clients.iam.get_role(request={"name": name})
                    self._org_roles[name] = tuple(sorted(role.included_permissions))
                except CloudError as exc:
                    self._org_roles[name] = f"permissions of custom role {name} not read ({exc.kind}: {exc})"
            return self._org_roles[name]

    # --- one account -------------------------------------------------------------------

    def _identity(self, project: str, account: Any, bindings: list[dict[str, Any]],
                  custom: Mapping[str, tuple[str, ...]], scope: _Project,
                  project_users: list[Principal], seen: Seen) -> DiscoveredIdentity:
        email = str(account.email)
        address = f"projects/{project}/serviceAccounts/{email}"
        unread: list[str] = []
        credentials: tuple[Credential, ...] = ()
        principals: list[Principal] = []
        try:
            credentials = self._keys(address, email, seen)
            own = render.policy_bindings(self.policies.account_policy(address))
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            # Deleted between the list and these reads: what was read is reported.
            unread.append(f"keys and IAM policy of {email}: the account was deleted while it was read")
            own = []
        for b in own:
            if self._acts_as(str(b["role"]), custom, unread):
                principals.extend(_principals(b, scope, "its own IAM policy"))
        principals.extend(project_users)
        grants: list[Grant] = []
        member = f"serviceAccount:{email}"
        for b in bindings:
            if member in b["members"]:
                grants.append(self._grant(project, b, custom, unread))
        marker = Marker.from_text(account.description)
        managed, why = self._managed(project, account, marker)
        if why:
            unread.append(why)
        unread.append(UNREAD_RESOURCE_BINDINGS)
        usage: tuple[UsageSignal, ...] = ()
        if seen.unread:
            unread.append(seen.unread)
        else:
            usage = (UsageSignal(SIGNAL, seen.accounts.get(email)),)
        return DiscoveredIdentity(
            provider="gcp", target=project, kind="service-account", id=email,
            name=_name(email, project, scope.number), created=None, managed=managed,
            tags=self.identities.account_tags(account, marker) if managed else {},
            principals=tuple(sorted(set(principals), key=_principal_key)),
            grants=tuple(sorted(grants, key=lambda g: (g.source, g.actions))),
            credentials=credentials, usage=usage, description=str(account.description),
            unread=tuple(dict.fromkeys(unread)))

    def _keys(self, address: str, email: str, seen: Seen) -> tuple[Credential, ...]:
        answer = self.clients.iam.list_service_account_keys(request={
            "name": address, "key_types": [USER_MANAGED_KEYS]})
        out = []
        for k in answer.keys:
            key_id = str(k.name).rsplit("/", 1)[-1]
            out.append(Credential(id=key_id, kind="service-account-key", created=_utc(k.valid_after_time),
                                  expires=_expiry(k.valid_before_time),
                                  last_used=seen.keys.get(f"{email}/keys/{key_id}"), active=not k.disabled))
        return tuple(sorted(out, key=lambda c: c.id))

    def _acts_as(self, role: str, custom: Mapping[str, tuple[str, ...]], unread: list[str]) -> bool:
        if role in USE_ROLES:
            return True
        permissions = self._permissions(role, custom, unread)
        return permissions is not None and bool(USE_PERMISSIONS & set(permissions))

    def _permissions(self, role: str, custom: Mapping[str, tuple[str, ...]],
                     unread: list[str]) -> tuple[str, ...] | None:
        """A custom role's permissions; None for a predefined role (or one not read)."""
        if role in custom:
            return custom[role]
        if role.startswith("organizations/"):
            found = self._org_role(role)
            if isinstance(found, str):
                unread.append(found)
                return None
            return found
        if role.startswith("projects/"):
            # A role of another project, or one deleted since the list: GCP ignores
            # bindings of a deleted role, so it grants nothing now.
            unread.append(f"custom role {role} is not among the project's roles")
            return ()
        return None

    def _grant(self, project: str, binding: Mapping[str, Any], custom: Mapping[str, tuple[str, ...]],
               unread: list[str]) -> Grant:
        role = str(binding["role"])
        condition = binding.get("condition") or {}
        permissions = self._permissions(role, custom, unread)
        source = f"project IAM policy binding {role}"
        if condition.get("expression"):
            source += f" if {condition.get('title') or condition['expression']}"
        return Grant(actions=(f"role:{role}",) if permissions is None else permissions,
                     resources=(f"projects/{project}",), source=source,
                     conditional=bool(condition.get("expression")))

    def _managed(self, project: str, account: Any, marker: Marker | None) -> tuple[bool, str]:
        """Whether the account's marker is authentic (the identity backend's proof: our
        naming in this project, and a MAC over its email and unique id)."""
        if marker is None:
            return False, ""
        if render.not_ours(self.prefix, str(account.email), project, marker):
            return False, ""
        try:
            return self.identities.unauthenticated(project, account, marker) is None, ""
        except NoSigningKey as exc:
            return False, f"its workload-ids marker could not be checked: {exc.where} does not exist"


@dataclass(frozen=True, slots=True)
class Seen:
    """Policy Analyzer's answers for one project: account (email) -> last authentication,
    ``EMAIL/keys/KEY`` -> the key's; or why they were not read."""

    accounts: dict[str, datetime | None]
    keys: dict[str, datetime | None]
    unread: str


class _Project:
    """What tells a member inside the project from one outside it."""

    def __init__(self, project: str, number: str, numbers: frozenset[str], domains: frozenset[str]) -> None:
        self.project = project
        self.number = number
        self.numbers = numbers
        self.domains = domains

    def own_account(self, email: str) -> bool:
        if email.endswith(f"@{self.project}.iam.gserviceaccount.com"):
            return True
        if email in (f"{self.number}-compute@developer.gserviceaccount.com",
                     f"{self.project}@appspot.gserviceaccount.com"):
            return True
        agent = _SERVICE_AGENT.fullmatch(email)
        return agent is not None and self.number in agent.groups()


def _owner_domains(bindings: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The domains of the project's owners (users, groups, domains)."""
    out: set[str] = set()
    for b in bindings:
        if b["role"] != "roles/owner":
            continue
        for member in b["members"]:
            kind, _, value = str(member).partition(":")
            if kind in ("user", "group"):
                out.add(value.rpartition("@")[2].lower())
            elif kind == "domain":
                out.add(value.lower())
    return frozenset(out)


def _principals(binding: Mapping[str, Any], scope: _Project, where: str) -> list[Principal]:
    """The members of one binding as principals (deleted members are no one)."""
    role = str(binding["role"])
    condition = binding.get("condition") or {}
    detail = f"{role} on {where}"
    if condition.get("expression"):
        detail += f", if {condition['expression']}"
    return [p for p in (_principal(str(m), scope, detail) for m in binding["members"]) if p is not None]


def _principal(member: str, scope: _Project, detail: str) -> Principal | None:
    if member.startswith("deleted:"):
        return None
    if member in EVERYONE:
        who = "anyone with a Google account" if member == "allAuthenticatedUsers" else \
            "anyone on the internet"
        return Principal("any", member, f"{who}: {detail}", external=True, wildcard=True)
    pool = _POOL.fullmatch(member)
    if pool is not None:
        is_set, number, name, rest = pool.groups()
        where = f"workload identity pool {name} of project {number}"
        if rest == "*":
            words, wildcard = f"every identity of {where}", True
        elif rest.startswith("subject/"):
            words, wildcard = f"{where}, subject = {rest.removeprefix('subject/')}", False
        elif rest.startswith("attribute."):
            attribute, _, value = rest.partition("/")
            words, wildcard = f"{where}, {attribute} = {value}", False
        else:
            words, wildcard = f"{where}, {rest.replace('/', ' ', 1)}", bool(is_set) and rest.endswith("*")
        return Principal("gcp-member", member, f"{words}: {detail}", external=number not in scope.numbers,
                         wildcard=wildcard)
    workforce = _WORKFORCE.fullmatch(member)
    if workforce is not None:
        _, name, rest = workforce.groups()
        who = "everyone" if rest == "*" else rest.replace("/", " = ", 1)
        return Principal("gcp-member", member, f"people of workforce identity pool {name}, {who}: {detail}",
                         wildcard=rest == "*")
    kind, _, value = member.partition(":")
    if kind == "serviceAccount":
        external = not scope.own_account(value)
    elif kind in ("user", "group"):
        external = value.rpartition("@")[2].lower() not in scope.domains
    elif kind == "domain":
        external = value.lower() not in scope.domains
    else:  # projectOwner:, principal kinds GCP adds later: not ours to judge
        external = False
    return Principal("gcp-member", member, detail, external=external)


def _principal_key(p: Principal) -> tuple[str, str, str]:
    return p.kind, p.value, p.detail


def _name(email: str, project: str, number: str) -> str:
    """The account id, or what Google calls a project's default accounts."""
    if email == f"{number}-compute@developer.gserviceaccount.com":
        return "Compute Engine default service account"
    if email == f"{project}@appspot.gserviceaccount.com":
        return "App Engine default service account"
    return email.split("@", 1)[0]


def _utc(value: Any) -> datetime | None:
    """A proto-plus timestamp (a datetime) in UTC; None when unset."""
    if not value:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value.timestamp(), UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _utc_text(value: Any) -> datetime | None:
    """An RFC 3339 text in UTC; None when absent."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def _expiry(value: Any) -> datetime | None:
    """When a key stops working; None for Google's "never" (9999-12-31) or no date."""
    moment = _utc(value)
    return None if moment is None or moment.year >= NEVER_YEAR else moment


# --- the reads discover shares with usage (providers/gcp/usage.py) ----------------------


def custom_roles(clients: GcpClients, project: str) -> dict[str, tuple[str, ...]]:
    """The project's custom roles by full name, with their permissions (paged)."""
    out: dict[str, tuple[str, ...]] = {}
    token = ""  # a page token, not a secret  # nosec B105
    while True:
        page = clients.iam.list_roles(request={
            "parent": f"projects/{project}", "view": 1, "page_size": 1000, "page_token": token})
        out.update({str(r.name): tuple(sorted(r.included_permissions)) for r in page.roles
                    if not r.deleted})
        token = page.next_page_token
        if not token:
            return out


def last_authentications(clients: GcpClients, project: str) -> Seen:
    """When each account and each key last authenticated, as Policy Analyzer reports
    (two queries, paged), or why it would not say."""
    gcp = clients.config.gcp
    if gcp.sandboxCredentials and not gcp.policyAnalyzerEndpoint:
        # Emulators without Policy Analyzer: Google's own endpoint is never asked anonymously.
        return Seen({}, {}, UNREAD_LAST_AUTHENTICATION.format(
            why="the config names no gcp.policyAnalyzerEndpoint for its emulators"))
    found: dict[str, dict[str, datetime | None]] = {}
    try:
        for kind in (ACCOUNT_ACTIVITY, KEY_ACTIVITY):
            found[kind] = {}
            token = ""  # a page token, not a secret  # nosec B105
            while True:
                page = clients.policy_analyzer.query_activity(project, kind, token)
                for item in page.get("activities") or []:
                    name = str(item.get("fullResourceName") or "").rsplit("/serviceAccounts/", 1)[-1]
                    activity = item.get("activity") or {}
                    found[kind][name] = _utc_text(activity.get("lastAuthenticatedTime"))
                token = str(page.get("nextPageToken") or "")
                if not token:
                    break
    except CloudError as exc:
        if exc.kind != DENIED:
            raise
        return Seen({}, {}, UNREAD_LAST_AUTHENTICATION.format(why=f"{exc.code}: {exc}"))
    return Seen(found[ACCOUNT_ACTIVITY], found[KEY_ACTIVITY], "")
