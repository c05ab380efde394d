"""Discovery on Azure: every user-assigned managed identity of a subscription, and the
tenant's applications and service principals that hold credentials, ours or not, as
facts (:mod:`workload_ids.discovered`). Read-only.

What it reads, per subscription: the managed identities (paged), every role definition
at the subscription (built-in and custom, one answer) and every role assignment of the
subscription (one answer), then each identity's federated credentials (a call each).
From Microsoft Graph, once per run for the tenant: the applications with their federated
credentials (``$expand``, 999 a page), the service principals (999 a page), and the two
sign-in activity reports (beta). So ``3 + identities + 4`` calls for the first
subscription of a small tenant, ``3 + identities`` for every further one, plus one read
of the marker signing key when something claims to be ours.

Facts as Azure holds them:

- grants are the role assignments naming the principal (its own, not its groups'):
  a built-in role by name (``role:Owner``), a custom role as its ``actions`` and
  ``dataActions`` (its ``notActions`` named in the source: the grant is read as wider
  than it is, never narrower); a role definition not found at the subscription (one at a
  management group, or deleted) is ``role:GUID`` and said in ``unread``;
- who may obtain credentials: each federated identity credential (issuer, with subject
  and audience in words). Azure compares the subject exactly, so none is a wildcard,
  except a flexible credential of an application (no subject, a claims-matching
  expression instead).
  ``external`` is a credential whose issuer is neither Entra ID of the identity's own
  tenant (``login.microsoftonline.com/TENANT``, ``sts.windows.net/TENANT``), nor an AKS
  cluster of it (``*.oic.prod-aks.azure.com/TENANT/``), nor an issuer the config trusts
  (``trust.allowedIssuers``; GitHub's when ``trust.allowedGithubOwners`` lists owners).
  That is where AWS draws the line too: an OIDC provider registered in the account is
  the account's own federation, not a stranger. Another tenant, or an issuer nobody
  listed (anyone can write any issuer URL into a federated credential), is external;
- credentials: an application's (or a service principal's own) client secrets and
  certificates, by key id, with their start and end dates, never their secret;
- usage: Graph's sign-in activity of the service principal (by appId: a managed
  identity's client id is its appId) and of each client secret. Graph serves these only
  to tenants with Entra ID P1 and to callers holding AuditLog.Read.All: refused, every
  identity says so in ``unread`` instead.

An application belongs to the tenant, not to a subscription: it is reported in each
subscription where its service principal holds a role assignment or which our
``workload-ids:subscription`` tag names, and one tied to none of them (no such tag, no
assignment here) in every subscription read, so it is never missed. So is a service
principal holding credentials of its own (not a managed identity's, whose certificate
Azure keeps).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ... import clock
from ...calls import DENIED, NOT_FOUND
from ...discovered import Credential, CredentialKind, DiscoveredIdentity, Grant, Principal, UsageSignal
from ...errors import CloudError
from ...markers import NoSigningKey
from ...model import FORGED, UNAUTHENTICATED, Marker
from ...trust import normalize_issuer
from ..interface import DiscoveryBackend
from . import render
from .applications import tags_of
from .clients import AzureClients
from .render import GITHUB_ISSUER
from .roles import role_guid

GRAPH_PAGE = 999  # Graph's largest $top
SIGN_IN_SIGNAL = "sign-in (Graph servicePrincipalSignInActivities)"
UNREAD_SIGN_INS = ("sign-in activity (Microsoft Graph reports, beta): not read, because Graph refused it "
                   "({why}); it needs Entra ID P1 and AuditLog.Read.All")
# Token issuers of Entra ID itself and of AKS clusters, for the identity's tenant.
_OWN_ISSUERS = ("https://login.microsoftonline.com/{tenant}/", "https://sts.windows.net/{tenant}/")
_AKS_ISSUER = re.compile(r"https://[a-z0-9-]+\.oic\.prod-aks\.azure\.com/([0-9a-fA-F-]{36})/.*")


@dataclass(frozen=True, slots=True)
class Tenant:
    """What Graph says about the tenant, read once per run."""

    applications: tuple[dict[str, Any], ...]
    principals: tuple[dict[str, Any], ...]
    # appId -> last sign-in; keyId -> last use; None when the reports were refused.
    sign_ins: dict[str, datetime | None] | None
    key_uses: dict[str, datetime | None] | None
    unread: str  # why the sign-in reports were not read ("" when they were)


class AzureDiscovery(DiscoveryBackend):
    """Managed identities, applications and service principals (see the module docstring)."""

    def __init__(self, clients: AzureClients) -> None:
        self.clients = clients
        trust = clients.config.trust
        self._trusted = frozenset(normalize_issuer(i) for i in trust.allowedIssuers) | (
            {GITHUB_ISSUER} if trust.allowedGithubOwners else set())
        self._tenant: Tenant | None = None
        self._tenant_lock = threading.Lock()

    def discover(self, target: str, *, service_linked: bool = False) -> list[DiscoveredIdentity]:
        """Every managed identity of subscription ``target``, and the tenant's applications
        and service principals with credentials that belong to it (see the module
        docstring). ``service_linked`` changes nothing on Azure."""
        msi = self.clients.msi(target)
        authz = self.clients.authorization(target)
        identities = list(self.clients.pages("msi.user_assigned_identities.list_by_subscription",
                                             msi.user_assigned_identities.list_by_subscription()))
        definitions = {str(d.name).lower(): d for d in self.clients.pages(
            "authorization.role_definitions.list", authz.role_definitions.list(f"/subscriptions/{target}"))}
        by_principal: dict[str, list[Any]] = {}
        for a in self.clients.pages("authorization.role_assignments.list_for_subscription",
                                    authz.role_assignments.list_for_subscription()):
            by_principal.setdefault(str(a.principal_id).lower(), []).append(a)
        tenant = self._read_tenant()
        out = [self._managed_identity(target, identity, definitions, by_principal, tenant)
               for identity in identities]
        out += self._applications(target, definitions, by_principal, tenant)
        return out

    # --- the tenant (Graph), once per run ------------------------------------------------

    def _read_tenant(self) -> Tenant:
        with self._tenant_lock:
            if self._tenant is None:
                self._tenant = self._tenant_now()
            return self._tenant

    def _tenant_now(self) -> Tenant:
        return read_tenant(self.clients)

    # --- managed identities ----------------------------------------------------------

    def _managed_identity(self, target: str, identity: Any, definitions: Mapping[str, Any],
                          by_principal: Mapping[str, list[Any]], tenant: Tenant) -> DiscoveredIdentity:
        tags = {str(k): str(v) for k, v in (identity.tags or {}).items()}
        principal = str(identity.principal_id or "")
        name = str(identity.name)
        unread: list[str] = []
        group = str(identity.id).split("/")[4]
        msi = self.clients.msi(target)
        try:
            federated = list(self.clients.pages("msi.federated_identity_credentials.list",
                                                msi.federated_identity_credentials.list(group, name)))
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            federated = []
            unread.append(f"federated credentials of {name}: the identity was deleted while it was read")
        home = str(identity.tenant_id or self.clients.config.azure.tenantId or "")
        principals = tuple(sorted((_federated(str(c.issuer), c.subject, list(c.audiences or []),
                                              str(c.name), home, self._trusted) for c in federated),
                                  key=lambda p: (p.value, p.detail)))
        managed, why = self._managed(target, name, principal, tags)
        unread += [why] if why else []
        usage, signal_unread = _usage(tenant, str(identity.client_id or ""))
        unread += signal_unread
        system = getattr(identity, "system_data", None)
        return DiscoveredIdentity(
            provider="azure", target=target, kind="managed-identity", id=str(identity.id), name=name,
            created=_time(getattr(system, "created_at", None)), managed=managed, tags=tags,
            principals=principals,
            grants=_grants(target, by_principal.get(principal.lower(), []), definitions, unread),
            usage=usage, unread=tuple(dict.fromkeys(unread)))

    def _managed(self, subscription: str, name: str, immutable_id: str,
                 tags: Mapping[str, str]) -> tuple[bool, str]:
        """Whether the marker is authentic: the backends' own proof (our naming, and a MAC
        bound to the principal id or the application's object id)."""
        marker = Marker.from_tags(tags)
        if marker is None:
            return False, ""
        try:
            proof = self.clients.ownership(subscription, name, immutable_id, tags, marker)
        except NoSigningKey as exc:
            return False, f"its workload-ids marker could not be checked: {exc.where} does not exist"
        return proof[FORGED] is None and proof[UNAUTHENTICATED] is None, ""

    # --- applications and service principals ---------------------------------------------

    def _applications(self, target: str, definitions: Mapping[str, Any],
                      by_principal: Mapping[str, list[Any]], tenant: Tenant) -> list[DiscoveredIdentity]:
        sub = target.lower()
        principals = {str(p.get("appId")).lower(): p for p in tenant.principals}
        home = str(self.clients.config.azure.tenantId or "")
        out: list[DiscoveredIdentity] = []
        for app in tenant.applications:
            federated = app.get("federatedIdentityCredentials") or []
            if not (app.get("passwordCredentials") or app.get("keyCredentials") or federated):
                continue
            sp = principals.get(str(app.get("appId")).lower())
            assignments = by_principal.get(str(sp["id"]).lower(), []) if sp else []
            tags = _graph_tags(app.get("tags"))
            tied = tags.get(render.SUBSCRIPTION_TAG)
            if tied is not None and tied.lower() != sub and not assignments:
                continue  # another subscription's, holding nothing here
            unread: list[str] = []
            tenant_id = home or str((sp or {}).get("appOwnerOrganizationId") or "")
            managed, why = self._managed(tied or sub, str(app["displayName"]), str(app["id"]), tags)
            unread += [why] if why else []
            usage, signal_unread = _usage(tenant, str(app.get("appId") or ""))
            unread += signal_unread
            if sp is None:
                unread.append("it has no service principal in this tenant: nothing can sign in as it here")
            out.append(DiscoveredIdentity(
                provider="azure", target=target, kind="application", id=str(app["id"]),
                name=str(app["displayName"]), created=_time(app.get("createdDateTime")), managed=managed,
                tags=tags, principals=tuple(sorted(
                    (_federated(str(f["issuer"]), f.get("subject"), list(f.get("audiences") or []),
                                str(f["name"]), tenant_id, self._trusted) for f in federated),
                    key=lambda p: (p.value, p.detail))),
                grants=_grants(target, assignments, definitions, unread),
                credentials=_credentials(app, tenant), usage=usage,
                description=str(app.get("description") or app.get("notes") or ""),
                unread=tuple(dict.fromkeys(unread))))
        for sp in tenant.principals:
            # A service principal's own credentials (a SAML signing certificate, a secret
            # added to the principal rather than its application): an identity of its own.
            if not (sp.get("passwordCredentials") or sp.get("keyCredentials")) or \
                    sp.get("servicePrincipalType") == "ManagedIdentity":
                continue  # a managed identity's certificate is Azure's: the identity is shown above
            assignments = by_principal.get(str(sp["id"]).lower(), [])
            unread = []
            usage, signal_unread = _usage(tenant, str(sp.get("appId") or ""))
            out.append(DiscoveredIdentity(
                provider="azure", target=target, kind="service-principal", id=str(sp["id"]),
                name=str(sp.get("displayName") or sp["id"]), created=None, managed=False,
                tags=_graph_tags(sp.get("tags")), grants=_grants(target, assignments, definitions, unread),
                credentials=_credentials(sp, tenant), usage=usage,
                description=str(sp.get("description") or sp.get("notes") or ""),
                unread=tuple(dict.fromkeys(unread + signal_unread))))
        return out


def _usage(tenant: Tenant, app_id: str) -> tuple[tuple[UsageSignal, ...], list[str]]:
    """The sign-in signal of ``app_id`` (None: no sign-in in the report), or why it is missing."""
    if tenant.sign_ins is None:
        return (), [tenant.unread]
    return (UsageSignal(SIGN_IN_SIGNAL, tenant.sign_ins.get(app_id.lower())),), []


def _federated(issuer: str, subject: str | None, audiences: Sequence[str], name: str,
               tenant: str, trusted: frozenset[str] = frozenset()) -> Principal:
    """One federated identity credential in words. One without a subject is a flexible
    credential (Graph beta's claimsMatchingExpression, wildcards allowed): it may admit
    many callers, so it reads as a wildcard."""
    detail = f"sub = {subject}" if subject else "no subject: a claims-matching expression decides"
    if audiences:
        detail += f", aud = {', '.join(audiences)}"
    detail += f" (federated credential {name})"
    external = not _own_issuer(issuer, tenant) and normalize_issuer(issuer) not in trusted
    return Principal("federated-credential", issuer, detail, external=external,
                     wildcard=not subject)


def _own_issuer(issuer: str, tenant: str) -> bool:
    """Whether ``issuer`` is Entra ID of ``tenant`` or one of its AKS clusters."""
    if not tenant:
        return False
    text = issuer if issuer.endswith("/") else issuer + "/"
    if any(text.lower().startswith(i.format(tenant=tenant).lower()) for i in _OWN_ISSUERS):
        return True
    aks = _AKS_ISSUER.fullmatch(text)
    return aks is not None and aks.group(1).lower() == tenant.lower()


def _grants(subscription: str, assignments: Iterable[Any], definitions: Mapping[str, Any],
            unread: list[str]) -> tuple[Grant, ...]:
    out: list[Grant] = []
    for a in assignments:
        guid = role_guid(str(a.role_definition_id))
        role = definitions.get(guid)
        source = f"role assignment {a.name}"
        conditional = bool(getattr(a, "condition", None))
        if role is None:
            unread.append(f"role definition {guid} of assignment {a.name} is not visible at "
                          f"/subscriptions/{subscription}")
            out.append(Grant((f"role:{guid}",), (str(a.scope),), source, conditional))
            continue
        if str(role.role_type) == "BuiltInRole":
            out.append(Grant((f"role:{role.role_name}",), (str(a.scope),),
                             f"{source} ({role.role_name})", conditional))
            continue
        actions: list[str] = []
        excluded: list[str] = []
        for p in role.permissions or []:
            actions += [*(p.actions or []), *(p.data_actions or [])]
            excluded += [*(p.not_actions or []), *(p.not_data_actions or [])]
        source += f" (custom role {role.role_name}"
        source += f"; except {', '.join(sorted(excluded))})" if excluded else ")"
        out.append(Grant(tuple(sorted(set(actions))), (str(a.scope),), source, conditional))
    return tuple(sorted(out, key=lambda g: (g.source, g.actions)))


def _credentials(owner: Mapping[str, Any], tenant: Tenant) -> tuple[Credential, ...]:
    """Client secrets and certificates: ids and dates only (Graph never returns the
    secret after addPassword, and a certificate's ``key`` is public but of no use here)."""
    now = clock.now()
    out: list[Credential] = []
    kinds: list[tuple[str, CredentialKind]] = [("passwordCredentials", "client-secret"),
                                               ("keyCredentials", "certificate")]
    for field, kind in kinds:
        for c in owner.get(field) or []:
            key_id = str(c.get("keyId") or "").lower()
            end = _time(c.get("endDateTime"))
            uses = tenant.key_uses or {}
            out.append(Credential(key_id, kind, _time(c.get("startDateTime")), end,
                                  uses.get(key_id) if kind == "client-secret" else None,
                                  active=end is None or end > now))
    return tuple(sorted(out, key=lambda c: (c.kind, c.id)))


def _graph_tags(values: Sequence[str] | None) -> dict[str, str]:
    """Graph's tags: ``key=value`` strings as pairs, plain ones as keys with no value."""
    out = {str(v): "" for v in values or [] if "=" not in str(v)}
    out.update(tags_of(values))
    return out


def _time(value: Any) -> datetime | None:
    """An ISO 8601 text or a datetime, in UTC; None when absent."""
    if not value:
        return None
    moment = value if isinstance(value, datetime) else \
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


# --- the tenant's reads discover shares with usage (providers/azure/usage.py) -------------


def graph_pages(clients: AzureClients, operation: str, first: Callable[[], tuple[list[Any], str | None]],
                more: Callable[[str], tuple[list[Any], str | None]]) -> list[dict[str, Any]]:
    """Every item of a Graph list, one seam call per page."""
    items, link = clients.call(f"graph.{operation}", first)
    out = list(items)
    while link:
        items, link = clients.call(f"graph.{operation}", more, link)
        out.extend(items)
    return out


def read_tenant(clients: AzureClients) -> Tenant:
    """What Graph says about the tenant: applications (with their federated credentials),
    service principals and the two sign-in activity reports (or why Graph refused them)."""
    graph = clients.graph
    expand = "federatedIdentityCredentials"
    apps = graph_pages(
        clients, "list_applications_page",
        lambda: graph.list_applications_page(None, top=GRAPH_PAGE, expand=expand),
        lambda link: graph.list_applications_page(None, link))
    principals = graph_pages(
        clients, "list_service_principals_page",
        lambda: graph.list_service_principals_page(None, top=GRAPH_PAGE),
        lambda link: graph.list_service_principals_page(None, link))
    try:
        activity = graph_pages(
            clients, "sign_in_activity_page",
            lambda: graph.sign_in_activity_page("servicePrincipalSignInActivities"),
            lambda link: graph.sign_in_activity_page("servicePrincipalSignInActivities", link))
        keys = graph_pages(
            clients, "sign_in_activity_page",
            lambda: graph.sign_in_activity_page("appCredentialSignInActivities"),
            lambda link: graph.sign_in_activity_page("appCredentialSignInActivities", link))
    except CloudError as exc:
        if exc.kind != DENIED:
            raise
        return Tenant(tuple(apps), tuple(principals), None, None,
                      UNREAD_SIGN_INS.format(why=f"{exc.code}: {exc}"))
    sign_ins = {str(a.get("appId")).lower(): _time((a.get("lastSignInActivity") or {})
                                                   .get("lastSignInDateTime")) for a in activity}
    key_uses = {str(k.get("keyId")).lower(): _time((k.get("signInActivity") or {})
                                                   .get("lastSignInDateTime")) for k in keys}
    return Tenant(tuple(apps), tuple(principals), sign_ins, key_uses, "")
