"""A local Azure Resource Manager (ARM) that the real ``azure.mgmt.msi`` and
``azure.mgmt.authorization`` clients talk to over HTTPS.

It serves management groups' descendants (their subgroups and subscriptions, api-version
2020-05-01 and later), user-assigned managed identities (api-version 2024-11-30, the SDK
default, and 2018-11-30; ``systemData`` with its ``createdAt`` in every version but 2018's)
with their federated identity credentials, and custom role definitions and
role assignments (2022-04-01, the default of ``AuthorizationManagementClient``), and it
enforces the ARM rules a provider must cope with:

* 20 federated identity credentials per identity (the 21st: 400);
* a role assignment for the same principal, role and scope under another name, or a
  repeated PUT of one: 409 ``RoleAssignmentExists`` (the SDK raises ``ResourceExistsError``);
  a PUT of an existing one that changes its ``condition``, ``conditionVersion`` or
  ``description`` updates it in place (200); ``conditionVersion`` must be ``"2.0"`` and
  comes with a condition, and a condition needs it (400 ``InvalidConditionVersion``);
* a role not available at the scope (outside its ``assignableScopes``) or unknown:
  400 ``RoleDefinitionDoesNotExist``, which is what ARM answers because it resolves the
  role at the assignment's scope;
* 4,000 role assignments per subscription (``RoleAssignmentLimitExceeded``; configurable);
* ``PrincipalNotFound`` (400) for a principal the directory does not know, or one created
  less than ``replication_delay`` seconds ago when ``principalType`` is not set;
* unknown resource groups (404 ``ResourceGroupNotFound``), subscriptions
  (404 ``SubscriptionNotFound``) and target resources named in a scope (404
  ``ResourceNotFound``) unless ``sandbox=True``, which creates them on first use.

Bearer authentication in azure-core refuses plain HTTP, so the server speaks TLS with a
certificate from a throwaway ``trustme`` CA; clients trust it through
``connection_verify=emulator.ca_bundle_path`` (see :meth:`ArmEmulator.client_kwargs`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from ...providers.azure.clients import StaticTokenCredential
from ..common.clock import Clock
from .https import HttpsEmulator

__all__ = ["ArmEmulator", "ArmError", "StaticTokenCredential"]

log = logging.getLogger(__name__)

Query = Mapping[str, Sequence[str]]
Json = dict[str, Any]

MAX_FEDERATED_CREDENTIALS = 20
MAX_ROLE_ASSIGNMENTS_PER_SUBSCRIPTION = 4000
MSI_API_VERSIONS = frozenset({"2018-11-30", "2021-09-30-preview", "2022-01-31-preview", "2023-01-31",
                              "2023-07-31-preview", "2024-11-30"})
AUTHORIZATION_API_VERSIONS = frozenset({"2015-07-01", "2018-01-01-preview", "2018-09-01-preview",
                                        "2020-04-01-preview", "2020-10-01-preview", "2022-04-01"})
ARM_SCOPE = "https://management.azure.com/.default"
MANAGEMENT_GROUP_API_VERSIONS = frozenset({"2020-05-01", "2021-04-01", "2023-04-01"})

# A few built-in roles (assignable everywhere), by their real, well-known GUIDs.
BUILTIN_ROLES: Mapping[str, str] = {
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "f1a07417-d97a-45cb-824c-7a7467783830": "Managed Identity Operator",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
}
# Built-in roles whose operations are not everything, as Azure defines them (the
# permissions of iann0036/iam-dataset azure/built-in-roles-raw.json, the data the
# catalogs cite in workload_ids/catalogs/PROVENANCE.md, and Microsoft's built-in roles page).
BUILTIN_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": ("*/read",),
    "f1a07417-d97a-45cb-824c-7a7467783830": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
        "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
        "Microsoft.Authorization/*/read", "Microsoft.Insights/alertRules/*",
        "Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.Resources/deployments/*",
        "Microsoft.Support/*"),
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": (
        "Microsoft.Storage/storageAccounts/blobServices/containers/read",
        "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"),
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": (
        "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
        "Microsoft.Storage/storageAccounts/blobServices/containers/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/write",
        "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"),
}
BUILTIN_DATA_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": (
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",),
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": (
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action"),
}

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_IDENTITY_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}")
_FIC_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,119}")
_SUB_SCOPE = re.compile(r"/subscriptions/([^/]+)(?:/resourceGroups/([^/]+)(?:/.*)?)?", re.IGNORECASE)
_MI_SCOPE = re.compile(r"/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/"
                       r"microsoft\.managedidentity/userassignedidentities/([^/]+)(?:/.*)?")
_ROLE_DEF_ID = re.compile(r".*/providers/Microsoft\.Authorization/roleDefinitions/([^/]+)", re.IGNORECASE)


class ArmError(Exception):
    """A failed call: an HTTP status and ARM's error code (``RoleAssignmentExists``...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def json_body(self) -> Json:
        """ARM's error body."""
        return {"error": {"code": self.code, "message": self.message}}


def _now_iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _norm_scope(scope: str) -> str:
    """``/a/b`` with single slashes; ``/`` for the root."""
    return "/" + "/".join(part for part in scope.split("/") if part)


def _is_under(child: str, parent: str) -> bool:
    """Whether scope ``child`` is ``parent`` or below it (ARM scopes are case-insensitive)."""
    c, p = _norm_scope(child).lower(), _norm_scope(parent).lower()
    return p == "/" or c == p or c.startswith(p + "/")


def _is_guid(value: str) -> bool:
    return _GUID.fullmatch(value) is not None


def _assignment_key(assignment: Json) -> tuple[str, str, str]:
    """(principal id, role definition GUID, scope), lower-case: what makes two assignments the same."""
    props = assignment["properties"]
    match = _ROLE_DEF_ID.fullmatch(props["roleDefinitionId"])
    role = match.group(1) if match else props["roleDefinitionId"]
    return props["principalId"].lower(), role.lower(), _norm_scope(props["scope"]).lower()


def _parse_body(body: bytes) -> Json:
    try:
        parsed = json.loads(body.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArmError(400, "InvalidRequestContent", f"The request content was invalid: {exc}") from None
    if not isinstance(parsed, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return parsed


@dataclass
class _Identity:
    subscription: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str]
    principal_id: str
    client_id: str
    tenant_id: str
    created: str = ""  # ISO 8601, ARM's systemData.createdAt
    modified: str = ""
    credentials: dict[str, Json] = field(default_factory=dict)  # lower-case name -> resource

    @property
    def id(self) -> str:
        return (f"/subscriptions/{self.subscription}/resourcegroups/{self.resource_group}"
                f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}")

    def resource(self, query: Query) -> Json:
        out: Json = {"id": self.id, "name": self.name,
                     "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
                     "location": self.location, "tags": dict(self.tags),
                     "properties": {"tenantId": self.tenant_id, "principalId": self.principal_id,
                                    "clientId": self.client_id, "isolationScope": "None"}}
        if (query.get("api-version") or [""])[0] != "2018-11-30":
            # Every api-version since 2021 answers who made the resource and when (the
            # caller here is always the sandbox's one principal).
            out["systemData"] = {"createdBy": "sandbox", "createdByType": "Application",
                                 "createdAt": self.created, "lastModifiedBy": "sandbox",
                                 "lastModifiedByType": "Application", "lastModifiedAt": self.modified}
        return out


@dataclass(frozen=True)
class _Principal:
    principal_type: str
    created: float


@dataclass(frozen=True)
class _Route:
    label: str
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Callable[[str, re.Match[str], Query, bytes], tuple[int, Json | None]]


_MANAGEMENT_GROUPS = "/providers/microsoft.management/managementgroups/"
_FIC_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
_MSI = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.ManagedIdentity"
_AUTHZ = r"(?P<scope>.*)/providers/Microsoft\.Authorization"


class ArmEmulator(HttpsEmulator):
    """Managed identities, federated credentials, role definitions and role assignments
    behind one HTTPS endpoint on 127.0.0.1. Thread-safe; use as a context manager or call
    :meth:`start` / :meth:`stop`."""

    server_name = "arm-emulator"

    def __init__(self, *, sandbox: bool = True, tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47",
                 clock: Clock = time.time, replication_delay: float = 0.0,
                 max_role_assignments_per_subscription: int = MAX_ROLE_ASSIGNMENTS_PER_SUBSCRIPTION,
                 max_federated_credentials: int = MAX_FEDERATED_CREDENTIALS, page_size: int = 100,
                 authorization_page_size: int = 5000) -> None:
        self.sandbox = sandbox
        self.tenant_id = tenant_id
        self.replication_delay = replication_delay
        self.max_role_assignments_per_subscription = max_role_assignments_per_subscription
        self.max_federated_credentials = max_federated_credentials
        self.page_size = page_size
        # ARM documents no page sizes. Role definitions come in one answer (azure-cli
        # #30579: one GET returns every definition), and we assume the same of role
        # assignments, whose 4,000 per subscription fit one answer; identities and
        # federated credentials are paged at ``page_size``. Tests set smaller sizes.
        self.authorization_page_size = authorization_page_size
        self._clock = clock
        self._lock = threading.RLock()
        self._subscriptions: set[str] = set()
        self._resource_groups: dict[tuple[str, str], str] = {}  # (sub, rg lower) -> rg as created
        self._resources: set[str] = set()  # lower-case ids of target resources
        self._identities: dict[tuple[str, str, str], _Identity] = {}
        self._principals: dict[str, _Principal] = {}
        self._role_definitions: dict[str, Json] = {}  # guid lower -> properties (custom roles only)
        self._role_assignments: dict[str, Json] = {}  # name lower -> resource
        # Management groups: id lower -> (id as created, parent id lower or None, display name);
        # subscription lower -> the id (lower) of the group that holds it.
        self._groups: dict[str, tuple[str, str | None, str]] = {}
        self._group_of: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        """``"PUT roleAssignments/{name} 2022-04-01"`` -> count: what the clients sent."""
        self._routes = self._make_routes()

    # --- set-up ----------------------------------------------------------------------

    def add_subscription(self, subscription: str) -> None:
        """Make ``subscription`` known (idempotent)."""
        with self._lock:
            self._subscriptions.add(subscription.lower())

    def remove_subscription(self, subscription: str) -> None:
        """Forget ``subscription`` (cancelled, or the caller lost access): every later
        call in it is answered 404 ``SubscriptionNotFound``, as Azure does."""
        with self._lock:
            self._subscriptions.discard(subscription.lower())

    def add_management_group(self, group_id: str, parent: str | None = None, display_name: str = "") -> None:
        """Create management group ``group_id`` under ``parent`` (a group made before), or at
        the top (under the tenant root group) without one."""
        with self._lock:
            if parent is not None and parent.lower() not in self._groups:
                raise ValueError(f"unknown parent management group {parent!r}: add it first")
            self._groups[group_id.lower()] = (group_id, parent.lower() if parent else None,
                                              display_name or group_id)

    def move_subscription(self, subscription: str, group_id: str) -> None:
        """Make ``subscription`` (created if needed) a child of management group ``group_id``."""
        with self._lock:
            if group_id.lower() not in self._groups:
                raise ValueError(f"unknown management group {group_id!r}: add it first")
            self.add_subscription(subscription)
            self._group_of[subscription.lower()] = group_id.lower()

    def add_resource(self, resource_id: str) -> None:
        """Make a target resource (a storage container, a topic) exist, with its group."""
        match = _SUB_SCOPE.fullmatch(_norm_scope(resource_id))
        if match is None or match.group(2) is None:
            raise ValueError(f"not a resource id: {resource_id}")
        with self._lock:
            self.add_resource_group(match.group(1), match.group(2))
            self._resources.add(_norm_scope(resource_id).lower())

    def _resource(self, scope: str) -> None:
        """A scope below a resource group names a resource: 404 unless it (or a resource it
        is part of) exists; the sandbox creates it on first reference."""
        lowered = scope.lower()
        if any(lowered == r or lowered.startswith(r + "/") for r in self._resources):
            return
        # A user-assigned managed identity is a resource too (a scope for assignments of
        # Managed Identity Operator, say), while it exists.
        mi = _MI_SCOPE.fullmatch(lowered)
        if mi is not None and (mi.group(1), mi.group(2), mi.group(3)) in self._identities:
            return
        if not self.sandbox:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{scope}' was not found.")
        self._resources.add(lowered)

    def add_resource_group(self, subscription: str, name: str) -> None:
        """Create resource group ``name`` (and its subscription) if needed."""
        with self._lock:
            self.add_subscription(subscription)
            self._resource_groups.setdefault((subscription.lower(), name.lower()), name)

    def add_principal(self, principal_id: str, principal_type: str = "User", *, new: bool = False) -> None:
        """Make a principal that is not a managed identity (a user, a group, an application's
        service principal) known to the directory; ``new`` ones are subject to the replication
        delay, like a just-created managed identity."""
        with self._lock:
            created = self._clock() if new else self._clock() - 1e9
            self._principals[principal_id.lower()] = _Principal(principal_type, created)

    def remove_principal(self, principal_id: str) -> None:
        """The directory forgets a principal (deleted): its role assignments stay, as in Azure."""
        with self._lock:
            self._principals.pop(principal_id.lower(), None)

    def principal_exists(self, principal_id: str) -> bool:
        """Whether the directory knows ``principal_id``."""
        with self._lock:
            return principal_id.lower() in self._principals

    def client_kwargs(self) -> dict[str, Any]:
        """What to pass to ``ManagedServiceIdentityClient`` and ``AuthorizationManagementClient``
        (besides the credential and subscription id) to use this emulator."""
        if not self.url:
            raise RuntimeError("the emulator is not started")
        return {"base_url": self.url, "connection_verify": self.ca_bundle_path,
                "credential_scopes": [ARM_SCOPE]}

    # --- server ----------------------------------------------------------------------


    # --- dispatch --------------------------------------------------------------------

    def _make_routes(self) -> list[_Route]:
        def route(methods: str, pattern: str,
                  handler: Callable[[str, re.Match[str], Query, bytes], tuple[int, Json | None]]) -> _Route:
            literal = re.findall(r"/([A-Za-z]+)", pattern)[-1]
            label = literal + ("/{name}" if pattern.endswith(")") else "")
            return _Route(label, frozenset(methods.split()), re.compile(pattern, re.IGNORECASE), handler)

        return [
            route("GET", r"/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.ManagedIdentity/"
                  r"userAssignedIdentities", self._list_identities),
            route("GET", _MSI + r"/userAssignedIdentities", self._list_identities),
            route("PUT GET DELETE", _MSI + r"/userAssignedIdentities/(?P<name>[^/]+)", self._identity),
            route("GET", _MSI + r"/userAssignedIdentities/(?P<name>[^/]+)/federatedIdentityCredentials",
                  self._list_credentials),
            route("PUT GET DELETE", _MSI + r"/userAssignedIdentities/(?P<name>[^/]+)"
                  r"/federatedIdentityCredentials/(?P<fic>[^/]+)", self._credential),
            route("GET", _AUTHZ + r"/roleDefinitions", self._list_role_definitions),
            route("PUT GET DELETE", _AUTHZ + r"/roleDefinitions/(?P<name>[^/]+)", self._role_definition),
            route("GET", _AUTHZ + r"/roleAssignments", self._list_role_assignments),
            route("PUT GET DELETE", _AUTHZ + r"/roleAssignments/(?P<name>[^/]+)", self._role_assignment),
            route("GET", r"/providers/Microsoft\.Management/managementGroups/(?P<group>[^/]+)/descendants",
                  self._descendants),
        ]

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, Json | None]:
        """Answer one request: (status, JSON body or None)."""
        url = urlsplit(raw_path)
        path = _norm_scope(unquote(url.path))
        query = parse_qs(url.query, keep_blank_values=True)
        if not (headers.get("Authorization") or "").startswith("Bearer "):
            return 401, ArmError(401, "AuthenticationFailed",
                                 "Authentication failed. The 'Authorization' header is missing.").json_body()
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            versions = (MSI_API_VERSIONS if "ManagedIdentity" in route.pattern.pattern else
                        MANAGEMENT_GROUP_API_VERSIONS if "managementGroups" in route.pattern.pattern else
                        AUTHORIZATION_API_VERSIONS)
            api_version = (query.get("api-version") or [""])[0]
            self.calls[f"{method} {route.label} {api_version}"] += 1
            try:
                if method not in route.methods:
                    raise ArmError(405, "MethodNotAllowed", f"The method {method} is not allowed.")
                if not api_version:
                    raise ArmError(400, "MissingApiVersionParameter",
                                   "The api-version query parameter (?api-version=) is required for all "
                                   "requests.")
                if api_version not in versions:
                    raise ArmError(400, "InvalidApiVersionParameter",
                                   f"The api-version '{api_version}' is invalid. The supported versions are "
                                   f"'{', '.join(sorted(versions))}'.")
                with self._lock:
                    return route.handler(method, match, query, body)
            except ArmError as exc:
                return exc.status, exc.json_body()
            except Exception as exc:  # an emulator bug: answer as a server error, keep serving
                log.exception("emulator failed on %s %s", method, path)
                return 500, ArmError(500, "InternalServerError", repr(exc)).json_body()
        return 404, ArmError(404, "InvalidResourceType", f"{method} {path} is not emulated.").json_body()

    def _page(self, path: str, query: Query, items: list[Json], size: int | None = None) -> tuple[int, Json]:
        size = size or self.page_size
        start = int((query.get("$skipToken") or ["0"])[0] or 0)
        page: Json = {"value": items[start:start + size]}
        if start + size < len(items):
            params = {k: v[0] for k, v in query.items() if k != "$skipToken"}
            params["$skipToken"] = str(start + size)
            page["nextLink"] = f"{self.url}{path}?{urlencode(params)}"
        return 200, page

    # --- management groups -----------------------------------------------------------

    def _descendants(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json]:
        """Every group and subscription below a management group, at any depth (groups
        before their children), paged as ARM pages: ``nextLink`` with ``$skiptoken``."""
        root = m["group"].lower()
        if root not in self._groups:
            # ARM answers 403 for a group the caller cannot read, existing or not.
            raise ArmError(403, "AuthorizationFailed", f"The client does not have authorization to "
                           f"perform action 'Microsoft.Management/managementGroups/descendants/read' "
                           f"over scope '/providers/Microsoft.Management/managementGroups/{m['group']}'.")
        items: list[Json] = []
        pending = [root]
        while pending:
            group = pending.pop(0)
            parent = {"id": f"/providers/Microsoft.Management/managementGroups/{self._groups[group][0]}"}
            for child in sorted(g for g, (_, p, _) in self._groups.items() if p == group):
                created, _, display = self._groups[child]
                items.append({"id": f"/providers/Microsoft.Management/managementGroups/{created}",
                              "type": "Microsoft.Management/managementGroups", "name": created,
                              "properties": {"displayName": display, "parent": parent}})
                pending.append(child)
            for sub in sorted(s for s, g in self._group_of.items() if g == group):
                items.append({"id": f"/subscriptions/{sub}", "type": "/subscriptions", "name": sub,
                              "properties": {"displayName": sub, "parent": parent}})
        size = self.page_size
        try:
            top = int((query.get("$top") or ["0"])[0] or 0)
        except ValueError:
            raise ArmError(400, "InvalidQueryParameter", "$top must be a number.") from None
        size = top or size
        start = int((query.get("$skiptoken") or ["0"])[0] or 0)
        page: Json = {"value": items[start:start + size]}
        if start + size < len(items):
            params = {k: v[0] for k, v in query.items() if k not in ("$skiptoken", "$top")}
            params["$skiptoken"] = str(start + size)
            page["nextLink"] = f"{self.url}{m.group(0)}?{urlencode(params)}"
        return 200, page

    # --- subscriptions, resource groups, scopes --------------------------------------

    def _resource_group(self, sub: str, rg: str) -> str:
        """The resource group's name as created; 404 if unknown (sandbox: create it)."""
        self._subscription(sub)
        found = self._resource_groups.get((sub.lower(), rg.lower()))
        if found is None:
            if not self.sandbox:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            found = self._resource_groups[(sub.lower(), rg.lower())] = rg
        return found

    def _subscription(self, sub: str) -> None:
        if sub.lower() not in self._subscriptions:
            if not self.sandbox:
                raise ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
            self._subscriptions.add(sub.lower())

    def _check_scope(self, scope: str) -> str:
        scope = _norm_scope(scope)
        match = _SUB_SCOPE.fullmatch(scope)
        if match is not None:
            if match.group(2) is not None:
                self._resource_group(match.group(1), match.group(2))
                if "/providers/" in scope.lower():
                    self._resource(scope)
            else:
                self._subscription(match.group(1))
        elif scope != "/" and not scope.lower().startswith(_MANAGEMENT_GROUPS):
            raise ArmError(400, "InvalidScope", f"The scope '{scope}' is not valid.")
        return scope

    # --- managed identities ----------------------------------------------------------

    def _list_identities(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json]:
        sub = m.group("sub")
        rg = m.groupdict().get("rg")
        if rg is not None:
            rg = self._resource_group(sub, rg).lower()
        else:
            self._subscription(sub)
        items = [ident.resource(query) for key, ident in sorted(self._identities.items())
                 if key[0] == sub.lower() and (rg is None or key[1] == rg)]
        return self._page(m.group(0), query, items)

    def _find_identity(self, m: re.Match[str]) -> _Identity:
        rg = self._resource_group(m.group("sub"), m.group("rg"))
        ident = self._identities.get((m.group("sub").lower(), rg.lower(), m.group("name").lower()))
        if ident is None:
            raise ArmError(404, "ResourceNotFound",
                           "The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/"
                           f"{m.group('name')}' under resource group '{m.group('rg')}' was not found.")
        return ident

    def _identity(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json | None]:
        sub, name = m.group("sub"), m.group("name")
        rg = self._resource_group(sub, m.group("rg"))
        key = (sub.lower(), rg.lower(), name.lower())
        if method == "GET":
            return 200, self._find_identity(m).resource(query)
        if method == "DELETE":
            ident = self._identities.pop(key, None)
            if ident is None:
                return 204, None
            # The service principal goes; role assignments naming it stay ("Identity not found").
            self._principals.pop(ident.principal_id, None)
            return 200, None
        request = _parse_body(body)
        if not _IDENTITY_NAME.fullmatch(name):
            raise ArmError(400, "InvalidResourceName",
                           f"Resource name {name} is invalid. The name can be 3-128 characters long and "
                           "may contain letters, digits, hyphens and underscores, starting with a letter "
                           "or digit.")
        location = request.get("location")
        if not isinstance(location, str) or not location:
            raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
        tags = request.get("tags") or {}
        existing = self._identities.get(key)
        if existing is not None:
            existing.tags = dict(tags)
            existing.modified = _now_iso(self._clock())
            return 200, existing.resource(query)
        now = _now_iso(self._clock())
        ident = _Identity(sub, rg, name, location, dict(tags), principal_id=str(uuid.uuid4()),
                          client_id=str(uuid.uuid4()), tenant_id=self.tenant_id, created=now, modified=now)
        self._identities[key] = ident
        self._principals[ident.principal_id] = _Principal("ServicePrincipal", self._clock())
        return 201, ident.resource(query)

    def _list_credentials(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json]:
        ident = self._find_identity(m)
        return self._page(m.group(0), query, [ident.credentials[k] for k in sorted(ident.credentials)])

    def _credential(self, method: str, m: re.Match[str], query: Query,
                    body: bytes) -> tuple[int, Json | None]:
        ident = self._find_identity(m)
        name = m.group("fic")
        if method == "GET":
            found = ident.credentials.get(name.lower())
            if found is None:
                raise ArmError(404, "NotFound", f"Federated identity credential '{name}' was not found.")
            return 200, found
        if method == "DELETE":
            return (200 if ident.credentials.pop(name.lower(), None) is not None else 204), None
        if not _FIC_NAME.fullmatch(name):
            raise ArmError(400, "BadRequest", f"The federated identity credential name '{name}' is invalid.")
        props = _parse_body(body).get("properties") or {}
        issuer, subject, audiences = props.get("issuer"), props.get("subject"), props.get("audiences")
        if not isinstance(issuer, str) or not issuer.startswith("https://"):
            raise ArmError(400, "BadRequest", "The issuer must be an https URL.")
        if not isinstance(subject, str) or not subject:
            raise ArmError(400, "BadRequest", "The subject is required.")
        if not isinstance(audiences, list) or len(audiences) != 1 or not isinstance(audiences[0], str):
            raise ArmError(400, "BadRequest", "Exactly one audience is required.")
        for other_name, other in ident.credentials.items():
            theirs = (other["properties"]["issuer"], other["properties"]["subject"])
            if other_name != name.lower() and theirs == (issuer, subject):
                raise ArmError(400, "BadRequest",
                               f"A federated identity credential with issuer '{issuer}' and subject "
                               f"'{subject}' already exists ('{other['name']}').")
        created = name.lower() not in ident.credentials
        if created and len(ident.credentials) >= self.max_federated_credentials:
            raise ArmError(400, "BadRequest",
                           f"Too many Federated Identity Credentials are written to Managed Identity "
                           f"'{ident.id}': the maximum is {self.max_federated_credentials}.")
        resource: Json = {"id": f"{ident.id}/federatedIdentityCredentials/{name}", "name": name,
                          "type": _FIC_TYPE,
                          "properties": {"issuer": issuer, "subject": subject, "audiences": list(audiences)}}
        ident.credentials[name.lower()] = resource
        return (201 if created else 200), resource

    # --- role definitions ------------------------------------------------------------

    def _role_properties(self, guid: str) -> Json | None:
        builtin = BUILTIN_ROLES.get(guid.lower())
        if builtin is not None:
            return {"roleName": builtin, "type": "BuiltInRole", "description": builtin,
                    "permissions": [{"actions": list(BUILTIN_ACTIONS.get(guid.lower(), ("*",))),
                                     "notActions": [],
                                     "dataActions": list(BUILTIN_DATA_ACTIONS.get(guid.lower(), ())),
                                     "notDataActions": []}],
                    "assignableScopes": ["/"]}
        return self._role_definitions.get(guid.lower())

    @staticmethod
    def _role_resource(scope: str, guid: str, props: Json) -> Json:
        prefix = "" if scope == "/" else scope
        return {"id": f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{guid}", "name": guid,
                "type": "Microsoft.Authorization/roleDefinitions", "properties": dict(props)}

    @staticmethod
    def _available_at(props: Json, scope: str) -> bool:
        return any(_is_under(scope, s) for s in props["assignableScopes"])

    def _role_definition(self, method: str, m: re.Match[str], query: Query,
                         body: bytes) -> tuple[int, Json | None]:
        scope = self._check_scope(m.group("scope"))
        guid = m.group("name")
        if not _is_guid(guid):
            raise ArmError(400, "InvalidRoleDefinitionId",
                           f"The role definition ID '{guid}' is not valid. It must be a GUID.")
        props = self._role_properties(guid)
        if method == "GET":
            if props is None:
                raise ArmError(404, "RoleDefinitionDoesNotExist",
                               f"The specified role definition with ID '{guid}' does not exist.")
            return 200, self._role_resource(scope, guid, props)
        if guid.lower() in BUILTIN_ROLES:
            raise ArmError(403, "AuthorizationFailed", "Built-in role definitions cannot be changed.")
        if method == "DELETE":
            if props is None:
                return 204, None
            if any(_assignment_key(a)[1] == guid.lower() for a in self._role_assignments.values()):
                raise ArmError(409, "RoleDefinitionHasAssignments",
                               "There are existing role assignments referencing role "
                               f"'{guid}'. Remove them before deleting the role definition.")
            del self._role_definitions[guid.lower()]
            return 200, self._role_resource(scope, guid, props)
        request = (_parse_body(body).get("properties") or {})
        role_name = request.get("roleName")
        scopes = request.get("assignableScopes")
        permissions = request.get("permissions")
        if not isinstance(role_name, str) or not role_name.strip():
            raise ArmError(400, "RoleDefinitionNameNullOrEmpty",
                           "The role definition name cannot be null or empty.")
        if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
            raise ArmError(400, "InvalidAssignableScopes", "At least one assignable scope is required.")
        if not isinstance(permissions, list):
            raise ArmError(400, "InvalidPermissions", "Permissions are required.")
        normalized = [self._check_scope(s) for s in scopes]
        if "/" in normalized:
            raise ArmError(400, "InvalidAssignableScopes",
                           "The root scope '/' is not allowed as an assignable scope of a custom role.")
        if not any(_is_under(scope, s) for s in normalized):
            raise ArmError(400, "InvalidCreateRoleDefinitionRequest",
                           f"The request scope '{scope}' must be one of the assignable scopes of the role.")
        for other_guid, other in self._role_definitions.items():
            if other_guid != guid.lower() and other["roleName"].lower() == role_name.lower():
                raise ArmError(409, "RoleDefinitionWithSameNameExists",
                               f"A custom role with the same name '{role_name}' already exists in this "
                               "directory.")
        now = _now_iso(self._clock())
        stored: Json = {"roleName": role_name, "type": "CustomRole",
                        "description": request.get("description") or "",
                        "permissions": permissions, "assignableScopes": normalized,
                        "createdOn": props["createdOn"] if props else now, "updatedOn": now,
                        "createdBy": None, "updatedBy": None}
        self._role_definitions[guid.lower()] = stored
        # ARM answers 201 to every PUT of a role definition, update or not; the SDK accepts
        # nothing else.
        return 201, self._role_resource(scope, guid, stored)

    def _list_role_definitions(self, method: str, m: re.Match[str], query: Query,
                               body: bytes) -> tuple[int, Json]:
        scope = self._check_scope(m.group("scope"))
        flt = (query.get("$filter") or [""])[0].strip()
        type_filter = name_filter = None
        if flt:
            fm = re.fullmatch(r"(type|roleName)\s+eq\s+'([^']*)'", flt, re.IGNORECASE)
            if fm is None:
                raise ArmError(400, "UnsupportedQuery", f"The filter '{flt}' is not supported.")
            if fm.group(1).lower() == "type":
                type_filter = fm.group(2).lower()
            else:
                name_filter = fm.group(2).lower()
        items: list[Json] = []
        for guid in [*BUILTIN_ROLES, *sorted(self._role_definitions)]:
            props = self._role_properties(guid)
            assert props is not None
            if type_filter is not None and props["type"].lower() != type_filter:
                continue
            if name_filter is not None and props["roleName"].lower() != name_filter:
                continue
            if not self._available_at(props, scope) and not any(
                    _is_under(s, scope) for s in props["assignableScopes"]):
                continue
            items.append(self._role_resource(scope, guid, props))
        return self._page(m.group(0), query, items, self.authorization_page_size)

    # --- role assignments ------------------------------------------------------------

    def _subscription_of(self, scope: str) -> str | None:
        match = _SUB_SCOPE.fullmatch(_norm_scope(scope))
        return match.group(1).lower() if match else None

    def _role_assignment(self, method: str, m: re.Match[str], query: Query,
                         body: bytes) -> tuple[int, Json | None]:
        scope = self._check_scope(m.group("scope"))
        name = m.group("name")
        existing = self._role_assignments.get(name.lower())
        if existing is not None and _norm_scope(existing["properties"]["scope"]).lower() != scope.lower():
            existing = None if method != "PUT" else existing
        if method == "GET":
            if existing is None:
                raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
            return 200, existing
        if method == "DELETE":
            if existing is None:
                return 204, None
            del self._role_assignments[name.lower()]
            return 200, existing
        if not _is_guid(name):
            raise ArmError(400, "InvalidRoleAssignmentId",
                           f"The role assignment ID '{name}' is not valid. The role assignment ID must be "
                           "a GUID.")
        props = _parse_body(body).get("properties") or {}
        role_id, principal_id = props.get("roleDefinitionId"), props.get("principalId")
        principal_type = props.get("principalType")
        if not isinstance(principal_id, str) or not _is_guid(principal_id):
            raise ArmError(400, "InvalidPrincipalId",
                           "A valid principal ID must be provided for role assignment.")
        role_match = _ROLE_DEF_ID.fullmatch(role_id) if isinstance(role_id, str) else None
        if role_match is None or not _is_guid(role_match.group(1)):
            raise ArmError(400, "InvalidRoleDefinitionId",
                           f"The role definition ID '{role_id}' is not valid.")
        guid = role_match.group(1).lower()
        condition, version = props.get("condition"), props.get("conditionVersion")
        if version is not None and version != "2.0":
            raise ArmError(400, "InvalidConditionVersion",
                           f"The condition version '{version}' is not supported. The only accepted value "
                           "is '2.0'.")
        if condition and version is None:
            raise ArmError(400, "InvalidConditionVersion",
                           "A condition version must be specified when a condition is set; the only "
                           "accepted value is '2.0'.")
        if version is not None and not condition:
            raise ArmError(400, "InvalidCondition",
                           "A condition version is set without a condition.")
        if existing is not None:
            if _assignment_key(existing) != (principal_id.lower(), guid, scope.lower()):
                raise ArmError(400, "RoleAssignmentUpdateNotPermitted",
                               "Tenant ID, application ID, principal ID, and scope are not allowed to be "
                               "updated.")
            stored = existing["properties"]
            if (stored.get("condition"), stored.get("conditionVersion"), stored.get("description")) == (
                    condition, version, props.get("description")):
                raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
            # A PUT of an existing assignment may change its condition and description only
            # (what `az role assignment update` sends); ARM answers 200.
            stored.update(condition=condition, conditionVersion=version, description=props.get("description"),
                          updatedOn=_now_iso(self._clock()))
            return 200, existing
        role = self._role_properties(guid)
        if role is None or not self._available_at(role, scope):
            # ARM resolves the role at the assignment's scope: outside assignableScopes it does not exist.
            raise ArmError(400, "RoleDefinitionDoesNotExist",
                           f"The specified role definition with ID '{guid}' does not exist.")
        principal = self._principals.get(principal_id.lower())
        replicated = principal is not None and (
            principal_type is not None or self._clock() - principal.created >= self.replication_delay)
        if not replicated:
            raise ArmError(400, "PrincipalNotFound",
                           f"Principal {principal_id.replace('-', '')} does not exist in the directory "
                           f"{self.tenant_id}. Check that you have the correct principal ID. If you are "
                           "creating this principal and then immediately assigning a role, this error might "
                           "be related to a replication delay. In this case, set the role assignment "
                           "principalType property to a value, such as ServicePrincipal, User, or Group. "
                           "See https://aka.ms/docs-principaltype")
        for other in self._role_assignments.values():
            if _assignment_key(other) == (principal_id.lower(), guid, scope.lower()):
                raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
        sub = self._subscription_of(scope)
        if sub is not None:
            count = sum(1 for a in self._role_assignments.values()
                        if self._subscription_of(a["properties"]["scope"]) == sub)
            if count >= self.max_role_assignments_per_subscription:
                raise ArmError(400, "RoleAssignmentLimitExceeded", "No more role assignments can be created.")
        now = _now_iso(self._clock())
        assert principal is not None
        prefix = "" if scope == "/" else scope
        resource: Json = {
            "id": f"{prefix}/providers/Microsoft.Authorization/roleAssignments/{name}", "name": name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {"roleDefinitionId": role_id, "principalId": principal_id,
                           "principalType": principal_type or principal.principal_type, "scope": scope,
                           "description": props.get("description"), "condition": props.get("condition"),
                           "conditionVersion": props.get("conditionVersion"), "createdOn": now,
                           "updatedOn": now, "createdBy": None, "updatedBy": None}}
        self._role_assignments[name.lower()] = resource
        return 201, resource

    def _list_role_assignments(self, method: str, m: re.Match[str], query: Query,
                               body: bytes) -> tuple[int, Json]:
        scope = self._check_scope(m.group("scope"))
        flt = (query.get("$filter") or [""])[0].strip()
        at_scope, principal = False, None
        for term in re.split(r"\s+and\s+", flt, flags=re.IGNORECASE) if flt else []:
            tm = re.fullmatch(r"principalId\s+eq\s+'([^']*)'|assignedTo\('([^']*)'\)", term, re.IGNORECASE)
            if term.lower() == "atscope()":
                at_scope = True
            elif tm is not None:
                principal = (tm.group(1) or tm.group(2) or "").lower()
            else:
                raise ArmError(400, "UnsupportedQuery", f"The filter '{flt}' is not supported.")
        items = []
        for name in sorted(self._role_assignments):
            a = self._role_assignments[name]
            a_scope = a["properties"]["scope"]
            if not (_is_under(scope, a_scope) or (not at_scope and _is_under(a_scope, scope))):
                continue
            if principal is not None and a["properties"]["principalId"].lower() != principal:
                continue
            items.append(a)
        return self._page(m.group(0), query, items, self.authorization_page_size)
