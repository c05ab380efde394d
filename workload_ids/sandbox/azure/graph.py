"""A local Microsoft Graph (v1.0 subset) and Entra token endpoint over HTTPS.

It serves what the Azure backend's key mode needs: application registrations, their
client secrets (``addPassword`` / ``removePassword``), service principals, the deleted
items of the directory, and the client credentials grant that proves a secret works.
Shapes follow Graph v1.0: camelCase, ``@odata.context``, ``value`` and
``@odata.nextLink`` paging, and Graph's error body
``{"error": {"code", "message", "innerError"}}``. The rules a client must cope with:

* a bearer token on every Graph call (401 ``InvalidAuthenticationToken`` otherwise);
* a bounded number of password credentials per application (the next one: 400
  ``Directory_ResourceSizeExceeded``, "The size of the object has exceeded its limit");
* ``removePassword`` of an unknown keyId: 400 ``Request_BadRequest``, "No password
  credential found with keyId ..." (Vault's Azure secrets engine treats that message as
  "already gone"; clients of the live API record it as a 400, not a 404);
* one service principal per application: a second is 409
  ``Request_MultipleObjectsWithSameKeyValue``;
* deletes are soft: applications and service principals go to deleted items for
  ``soft_delete_days``; restoring an application does *not* restore its service
  principal, which must be restored on its own (as Graph documents);
* optional ``replication_delay``: new objects and new secrets are invisible (404, or
  AADSTS7000215 at the token endpoint) for that many seconds, like Entra's replicas;
* certificates (``keyCredentials``) are set by PATCHing the application's whole collection
  (Graph's documented way for an application without a valid certificate; ``addKey`` needs
  a proof signed by one): each new entry carries the DER certificate in base64, its dates
  default to the certificate's validity, and ``key`` always reads back as null; an entry
  naming an existing ``keyId`` without ``key`` keeps that certificate;
* federated identity credentials of an application (``/federatedIdentityCredentials``,
  at most 20, names and issuer+subject pairs unique), listed alone or with
  ``$expand=federatedIdentityCredentials`` on the applications;
* sign-in activity reports (beta, ``/beta/reports/servicePrincipalSignInActivities`` and
  ``/beta/reports/appCredentialSignInActivities``), fed by the tokens the token endpoint
  issues; a tenant without Entra ID P1 (``premium=False``) is refused them with 403
  ``Authentication_RequestFromNonPremiumTenantOrB2CTenant``, as Graph refuses it.

Secrets are kept only as SHA-256 digests. A service principal's object id is registered
in an optional :class:`ArmEmulator` directory, so ARM role assignments to it work until
it is deleted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from ..common.clock import Clock
from ..common.faults import FaultInjector, contains
from .arm import ArmEmulator
from .https import Answer, HttpsEmulator

log = logging.getLogger(__name__)

Json = dict[str, Any]
Query = Mapping[str, Sequence[str]]

MAX_PASSWORD_CREDENTIALS = 100
MAX_TAG_LENGTH = 256
MAX_PAGE_SIZE = 999
DEFAULT_SECRET_DAYS = 730  # Graph's default endDateTime: two years after startDateTime
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# Entra secrets are 40 characters: a 3-character hint, a version marker, then random text.
_SECRET_ALPHABET = string.ascii_letters + string.digits + "_-.~"
_SECRET_MARKER = "8Q~"  # the format marker inside generated secrets, not a secret  # nosec B105
_APPLICATION_FIELDS = frozenset({"displayName", "tags", "notes", "description", "signInAudience"})
_SERVICE_PRINCIPAL_FIELDS = frozenset({"displayName", "tags", "notes", "description", "accountEnabled"})
_APPLICATION_FILTERABLE = frozenset({"id", "appId", "displayName", "tags", "identifierUris"})
_SERVICE_PRINCIPAL_FILTERABLE = frozenset({"id", "appId", "displayName", "tags", "accountEnabled",
                                           "servicePrincipalNames"})


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(value: object, name: str) -> float:
    if not isinstance(value, str):
        raise GraphError(400, "Request_BadRequest", f"Invalid value specified for property '{name}'.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(400, "Request_BadRequest",
                         f"Invalid value specified for property '{name}'.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> str:
    def pick(n: int) -> str:
        return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(n))

    return pick(3) + _SECRET_MARKER + pick(40 - 3 - len(_SECRET_MARKER))


class GraphError(Exception):
    """A failed Graph call: HTTP status and Graph's error code (``Request_ResourceNotFound``...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def json_body(self, now: float) -> Json:
        """Graph's error body."""
        request_id = str(uuid.uuid4())
        return {"error": {"code": self.code, "message": self.message,
                          "innerError": {"date": _iso(now), "request-id": request_id,
                                         "client-request-id": request_id}}}


def _not_found(key: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound",
                      f"Resource '{key}' does not exist or one of its queried reference-property objects "
                      "are not present.")


class TokenError(Exception):
    """A refused token request: HTTP status, OAuth error and AADSTS number."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"{status} {error}: AADSTS{aadsts}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description

    def json_body(self, now: float) -> Json:
        """The identity platform's error body."""
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {"error": self.error,
                "error_description": f"AADSTS{self.aadsts}: {self.description}\r\nTrace ID: {trace}\r\n"
                                     f"Correlation ID: {correlation}\r\nTimestamp: {stamp}",
                "error_codes": [self.aadsts], "timestamp": stamp, "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"https://login.microsoftonline.com/error?code={self.aadsts}"}


@dataclass
class _Password:
    key_id: str
    display_name: str | None
    start: float
    end: float
    hint: str
    secret_sha256: str
    created: float

    def resource(self) -> Json:
        return {"customKeyIdentifier": None, "displayName": self.display_name, "endDateTime": _iso(self.end),
                "hint": self.hint, "keyId": self.key_id, "secretText": None,
                "startDateTime": _iso(self.start)}


@dataclass
class _Certificate:
    key_id: str
    display_name: str | None
    start: float
    end: float
    thumbprint: bytes  # SHA-1 of the DER certificate, Graph's customKeyIdentifier
    type: str
    usage: str

    def resource(self) -> Json:
        return {"customKeyIdentifier": base64.b64encode(self.thumbprint).decode("ascii"),
                "displayName": self.display_name, "endDateTime": _iso(self.end), "key": None,
                "keyId": self.key_id, "startDateTime": _iso(self.start), "type": self.type,
                "usage": self.usage}


@dataclass
class _SignIn:
    """The last token issued to an application (and by which of its secrets)."""

    at: float
    request_id: str


@dataclass
class _Application:
    id: str
    app_id: str
    display_name: str
    created: float
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    description: str | None = None
    sign_in_audience: str = "AzureADMyOrg"
    passwords: list[_Password] = field(default_factory=list)
    certificates: list[_Certificate] = field(default_factory=list)
    federated: list[Json] = field(default_factory=list)  # federatedIdentityCredential resources
    deleted: float | None = None

    odata_type = "#microsoft.graph.application"

    def resource(self) -> Json:
        return {"id": self.id, "appId": self.app_id, "displayName": self.display_name,
                "description": self.description, "notes": self.notes, "tags": list(self.tags),
                "signInAudience": self.sign_in_audience, "identifierUris": [],
                "createdDateTime": _iso(self.created),
                "deletedDateTime": None if self.deleted is None else _iso(self.deleted),
                "keyCredentials": [c.resource() for c in self.certificates],
                "passwordCredentials": [p.resource() for p in self.passwords]}


@dataclass
class _ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    tenant_id: str
    created: float
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    description: str | None = None
    account_enabled: bool = True
    passwords: list[_Password] = field(default_factory=list)
    deleted: float | None = None

    odata_type = "#microsoft.graph.servicePrincipal"

    def resource(self) -> Json:
        return {"id": self.id, "appId": self.app_id, "displayName": self.display_name,
                "appDisplayName": self.display_name, "appOwnerOrganizationId": self.tenant_id,
                "accountEnabled": self.account_enabled, "servicePrincipalType": "Application",
                "servicePrincipalNames": [self.app_id], "tags": list(self.tags), "notes": self.notes,
                "description": self.description,
                "deletedDateTime": None if self.deleted is None else _iso(self.deleted),
                "keyCredentials": [], "passwordCredentials": [p.resource() for p in self.passwords]}


_Object = _Application | _ServicePrincipal
Handler = Callable[[str, re.Match[str], Query, bytes], Answer]


@dataclass(frozen=True)
class _Route:
    label: str
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler


# A filter clause: a lambda over a collection, ``field eq 'x'``, ``field eq true``, or startswith.
_STRING = r"'((?:[^']|'')*)'"
_CLAUSES = [
    ("any", re.compile(r"(\w+)/any\((\w+):\s*(\w+)\s+eq\s+" + _STRING + r"\)", re.IGNORECASE)),
    ("eq", re.compile(r"(\w+)\s+eq\s+" + _STRING, re.IGNORECASE)),
    ("bool", re.compile(r"(\w+)\s+eq\s+(true|false)", re.IGNORECASE)),
    ("startswith", re.compile(r"startswith\((\w+),\s*" + _STRING + r"\)", re.IGNORECASE)),
]
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


def _parse_filter(text: str, filterable: frozenset[str]) -> Callable[[Json], bool]:
    """The subset of OData ``$filter`` Graph clients use here, joined by ``and``; string
    comparisons are case-insensitive, as in the directory."""
    tests: list[Callable[[Json], bool]] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        for kind, pattern in _CLAUSES:
            m = pattern.match(text, pos)
            if m is None:
                continue
            name = m.group(1)
            if name not in filterable or (kind == "any" and m.group(2) != m.group(3)):
                raise GraphError(400, "Request_UnsupportedQuery", f"Unsupported or invalid query filter "
                                 f"clause specified for property '{name}' of resource.")
            tests.append(_clause(kind, name, m))
            pos = m.end()
            break
        else:
            raise GraphError(400, "Request_UnsupportedQuery", f"Invalid filter clause: '{text[pos:]}'.")
        if pos < len(text):
            joiner = _AND.match(text, pos)
            if joiner is None:
                raise GraphError(400, "Request_UnsupportedQuery", f"Invalid filter clause: '{text[pos:]}'.")
            pos = joiner.end()
    return lambda resource: all(test(resource) for test in tests)


def _clause(kind: str, name: str, m: re.Match[str]) -> Callable[[Json], bool]:
    if kind == "bool":
        wanted_bool = m.group(2).lower() == "true"
        return lambda r: r.get(name) is wanted_bool
    value = m.group(4 if kind == "any" else 2).replace("''", "'").lower()
    if kind == "any":
        return lambda r: any(isinstance(v, str) and v.lower() == value for v in r.get(name) or [])
    if kind == "eq":
        return lambda r: isinstance(r.get(name), str) and r[name].lower() == value
    return lambda r: isinstance(r.get(name), str) and r[name].lower().startswith(value)


_TARGET = r"(?:/(?P<id>[^/()]+)|\(appId='(?P<appid>(?:[^']|'')*)'\))"


class GraphEmulator(HttpsEmulator):
    """Applications, service principals, deleted items and the token endpoint behind one
    HTTPS endpoint on 127.0.0.1. Thread-safe; use as a context manager or call
    :meth:`start` / :meth:`stop`."""

    server_name = "graph-emulator"

    def __init__(self, *, directory: ArmEmulator | None = None, clock: Clock = time.time,
                 tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47", page_size: int = 100,
                 soft_delete_days: int = 30, replication_delay: float = 0.0,
                 max_password_credentials: int = MAX_PASSWORD_CREDENTIALS, premium: bool = True) -> None:
        self.directory = directory
        self.tenant_id = tenant_id
        self.page_size = page_size
        self.soft_delete_days = soft_delete_days
        self.replication_delay = replication_delay
        self.max_password_credentials = max_password_credentials
        self._clock = clock
        self._lock = threading.RLock()
        self._applications: dict[str, _Application] = {}  # object id -> live application
        self._service_principals: dict[str, _ServicePrincipal] = {}  # object id -> live principal
        self._deleted: dict[str, _Object] = {}  # object id -> soft-deleted object
        # A fault's answer is the Retry-After of a 429; it applies to calls whose label
        # contains the one given.
        self.faults: FaultInjector[int] = FaultInjector(match=contains)
        self.calls: Counter[str] = self.faults.calls
        """``"POST applications/{id}/addPassword"`` -> count: what the clients sent."""
        self.tokens_issued = 0
        # Entra ID P1 or P2: without it Graph refuses the sign-in activity reports.
        self.premium = premium
        self._app_sign_ins: dict[str, _SignIn] = {}  # appId -> last token issued
        self._key_sign_ins: dict[str, _SignIn] = {}  # password keyId -> last token it got
        self._managed_identities: set[str] = set()  # client ids of managed identities seen signing in
        self._routes = self._make_routes()

    # --- set-up and test hooks ---------------------------------------------------------

    def record_sign_in(self, app_id: str, *, at: datetime | None = None, key_id: str | None = None,
                       managed_identity: bool = False) -> None:
        """Entra saw ``app_id`` sign in at ``at`` (now by the clock), with its client secret
        ``key_id`` if given. ``managed_identity``: ``app_id`` is a managed identity's client
        id, whose service principal Azure keeps (it is not among this emulator's objects)
        and whose sign-ins the report lists all the same."""
        moment = at.timestamp() if at is not None else self._clock()
        seen = _SignIn(moment, str(uuid.uuid4()))
        with self._lock:
            key = app_id.lower()
            if key not in self._app_sign_ins or self._app_sign_ins[key].at < moment:
                self._app_sign_ins[key] = seen
            if managed_identity:
                self._managed_identities.add(key)
            if key_id is not None and (key_id not in self._key_sign_ins
                                       or self._key_sign_ins[key_id].at < moment):
                self._key_sign_ins[key_id] = seen

    def throttle(self, times: int = 1, *, retry_after: int = 1, label: str | None = None) -> None:
        """Answer the next ``times`` requests (those whose call label contains ``label``,
        if given) with 429 and ``Retry-After: retry_after``."""
        self.faults.inject(label, lambda: retry_after, times)

    def client_kwargs(self) -> dict[str, Any]:
        """What to pass to ``GraphClient`` (besides the credential) to use this emulator."""
        if not self.url:
            raise RuntimeError("the emulator is not started")
        return {"endpoint": self.url, "authority": self.url, "tenant_id": self.tenant_id,
                "connection_verify": self.ca_bundle_path}

    # --- server ------------------------------------------------------------------------


    # --- dispatch ----------------------------------------------------------------------

    def _make_routes(self) -> list[_Route]:
        def route(label: str, methods: str, pattern: str, handler: Handler) -> _Route:
            return _Route(label, frozenset(methods.split()), re.compile(pattern), handler)

        apps, sps = "/v1.0/applications", "/v1.0/servicePrincipals"
        deleted = "/v1.0/directory/deletedItems"
        return [
            route("applications", "GET POST", apps, self._applications_collection),
            route("applications/{id}/addPassword", "POST", apps + _TARGET + "/addPassword",
                  self._add_password),
            route("applications/{id}/removePassword", "POST", apps + _TARGET + "/removePassword",
                  self._remove_password),
            route("applications/{id}", "GET PATCH DELETE", apps + _TARGET, self._application),
            route("applications/{id}/federatedIdentityCredentials", "GET POST",
                  apps + _TARGET + "/federatedIdentityCredentials", self._federated_collection),
            route("applications/{id}/federatedIdentityCredentials/{fic}", "GET PATCH DELETE",
                  apps + _TARGET + r"/federatedIdentityCredentials/(?P<fic>[^/]+)", self._federated),
            route("servicePrincipals/{id}/addPassword", "POST", sps + _TARGET + "/addPassword",
                  self._add_principal_password),
            route("servicePrincipals", "GET POST", sps, self._service_principals_collection),
            route("servicePrincipals/{id}", "GET PATCH DELETE", sps + _TARGET, self._service_principal),
            route("deletedItems/{type}", "GET",
                  deleted + r"/microsoft\.graph\.(?P<type>application|servicePrincipal)", self._deleted_list),
            route("deletedItems/{id}/restore", "POST", deleted + r"/(?P<id>[^/]+)/restore", self._restore),
            route("deletedItems/{id}", "GET DELETE", deleted + r"/(?P<id>[^/]+)", self._deleted_item),
            route("reports/{activity}", "GET",
                  r"/beta/reports/(?P<report>servicePrincipalSignInActivities|appCredentialSignInActivities)",
                  self._sign_in_report),
            route("oauth2/v2.0/token", "POST", r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", self._token),
        ]

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one request: (status, JSON body or None[, extra headers])."""
        url = urlsplit(raw_path)
        path = unquote(url.path).rstrip("/") or "/"
        query = parse_qs(url.query, keep_blank_values=True)
        now = self._clock()
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            label = f"{method} {route.label}"
            throttled = self.faults.record(label)
            if throttled is not None:
                error = GraphError(429, "TooManyRequests", "Too many requests. Retry after the time given in "
                                   "the Retry-After header.")
                return 429, error.json_body(now), {"Retry-After": str(throttled.answer)}
            try:
                if route.label != "oauth2/v2.0/token":
                    self._check_bearer(headers)
                if method not in route.methods:
                    raise GraphError(405, "Request_BadRequest",
                                     "Specified HTTP method is not allowed for the request uri.")
                with self._lock:
                    self._purge_expired(now)
                    return route.handler(method, match, query, body)
            except GraphError as exc:
                return exc.status, exc.json_body(now)
            except TokenError as exc:
                return exc.status, exc.json_body(now)
            except Exception as exc:  # an emulator bug: answer as a server error, keep serving
                log.exception("emulator failed on %s %s", method, path)
                return 500, GraphError(500, "InternalServerError", repr(exc)).json_body(now)
        segment = path.rsplit("/", 1)[-1]
        error = GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        return 400, error.json_body(now)

    @staticmethod
    def _check_bearer(headers: Mapping[str, str]) -> None:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer "):].strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")

    # --- shared helpers ----------------------------------------------------------------

    def _context(self, fragment: str) -> str:
        return f"{self.url}/v1.0/$metadata#{fragment}"

    def _visible(self, obj: _Object) -> bool:
        """Whether Entra's replicas already know ``obj`` (see ``replication_delay``)."""
        return self._clock() - obj.created >= self.replication_delay

    def _purge_expired(self, now: float) -> None:
        horizon = now - self.soft_delete_days * 86400
        expired = [k for k, v in self._deleted.items() if v.deleted is not None and v.deleted < horizon]
        for object_id in expired:
            del self._deleted[object_id]

    def _find_application(self, m: re.Match[str]) -> _Application:
        key, found = self._lookup(m, list(self._applications.values()))
        if not isinstance(found, _Application) or not self._visible(found):
            raise _not_found(key)
        return found

    def _find_service_principal(self, m: re.Match[str]) -> _ServicePrincipal:
        key, found = self._lookup(m, list(self._service_principals.values()))
        if not isinstance(found, _ServicePrincipal) or not self._visible(found):
            raise _not_found(key)
        return found

    @staticmethod
    def _lookup(m: re.Match[str], objects: list[_Object]) -> tuple[str, _Object | None]:
        """The object a ``/{id}`` or ``(appId='...')`` path segment names, and the key as given."""
        object_id: str | None = m.group("id")
        if object_id is not None:
            if not _GUID.fullmatch(object_id):
                raise GraphError(400, "Request_BadRequest", f"Invalid object identifier '{object_id}'.")
            return object_id, next((o for o in objects if o.id == object_id.lower()), None)
        app_id = m.group("appid").replace("''", "'")
        return app_id, next((o for o in objects if o.app_id == app_id.lower()), None)

    def _principal_of(self, app_id: str) -> _ServicePrincipal | None:
        return next((sp for sp in self._service_principals.values() if sp.app_id == app_id), None)

    @staticmethod
    def _body(body: bytes) -> Json:
        try:
            parsed = json.loads(body.decode() or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please ensure "
                             "Content-Type header is set and payload is of valid JSON format.") from None
        if not isinstance(parsed, dict):
            raise GraphError(400, "BadRequest", "The request payload must be a JSON object.")
        return parsed

    @staticmethod
    def _check_fields(request: Json, allowed: frozenset[str], type_name: str) -> None:
        for name in request:
            if name in ("passwordCredentials", "keyCredentials"):
                raise GraphError(400, "Request_BadRequest", f"Property '{name}' is read-only here: use "
                                 "addPassword and removePassword to change credentials.")
            if name not in allowed:
                raise GraphError(400, "Request_BadRequest",
                                 f"Property '{name}' does not exist on type 'microsoft.graph.{type_name}'.")

    @staticmethod
    def _tags(value: object, type_name: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise GraphError(400, "Request_BadRequest",
                             f"Invalid value specified for property 'tags' of resource '{type_name}'.")
        for tag in value:
            if len(tag) > MAX_TAG_LENGTH:
                raise GraphError(400, "Request_BadRequest",
                                 f"Invalid value specified for property 'tags' of resource '{type_name}': "
                                 f"a tag is longer than {MAX_TAG_LENGTH} characters.")
        return list(value)

    @staticmethod
    def _optional_string(request: Json, name: str, type_name: str) -> str | None:
        value = request.get(name)
        if value is not None and not isinstance(value, str):
            raise GraphError(400, "Request_BadRequest",
                             f"Invalid value specified for property '{name}' of resource '{type_name}'.")
        return value

    @staticmethod
    def _select(resource: Json, query: Query) -> Json:
        wanted = [s.strip() for s in (query.get("$select") or [""])[0].split(",") if s.strip()]
        if not wanted:
            return resource
        return {k: v for k, v in resource.items() if k in wanted or k == "id"}

    def _page(self, path: str, query: Query, items: list[Json], context: str) -> Answer:
        """One page of ``items`` (sorted by id), with an opaque ``$skiptoken`` after the last id
        returned, so objects created or deleted between pages neither repeat nor shift."""
        top_text = (query.get("$top") or [""])[0]
        size = self.page_size
        if top_text:
            if not top_text.isdigit() or not 1 <= int(top_text) <= MAX_PAGE_SIZE:
                raise GraphError(400, "Request_BadRequest", f"Invalid page size specified: '{top_text}'. "
                                 f"Must be between 1 and {MAX_PAGE_SIZE} inclusive.")
            size = int(top_text)
        token = (query.get("$skiptoken") or [""])[0]
        items = sorted(items, key=lambda r: r["id"])
        if token:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise GraphError(400, "Request_BadRequest", "The specified page token value has expired "
                                 "or is invalid.") from None
            items = [r for r in items if r["id"] > after]
        page: Json = {"@odata.context": self._context(context),
                      "value": [self._select(r, query) for r in items[:size]]}
        if len(items) > size:
            params = {k: v[0] for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = base64.urlsafe_b64encode(items[size - 1]["id"].encode()).decode()
            page["@odata.nextLink"] = f"{self.url}{path}?{urlencode(params, quote_via=quote, safe='$')}"
        return 200, page

    def _filtered(self, objects: list[_Object], query: Query, filterable: frozenset[str]) -> list[Json]:
        text = (query.get("$filter") or [""])[0]
        keep = _parse_filter(text, filterable) if text.strip() else (lambda _r: True)
        resources = [obj.resource() for obj in objects if self._visible(obj)]
        return [r for r in resources if keep(r)]

    # --- applications ------------------------------------------------------------------

    def _applications_collection(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        if method == "GET":
            expand = self._expand(query)
            items = self._filtered(list(self._applications.values()), query, _APPLICATION_FILTERABLE)
            if expand:
                by_id = {a.id: a for a in self._applications.values()}
                items = [{**r, "federatedIdentityCredentials": list(by_id[r["id"]].federated)} for r in items]
            return self._page(m.group(0), query, items, "applications")
        request = self._body(body)
        self._check_fields(request, _APPLICATION_FIELDS, "application")
        display_name = request.get("displayName")
        if not isinstance(display_name, str) or not display_name.strip():
            raise GraphError(400, "Request_BadRequest",
                             "A value is required for property 'displayName' of resource 'Application'.")
        app = _Application(id=str(uuid.uuid4()), app_id=str(uuid.uuid4()), display_name=display_name,
                           created=self._clock(), tags=self._tags(request.get("tags"), "Application"),
                           notes=self._optional_string(request, "notes", "Application"),
                           description=self._optional_string(request, "description", "Application"))
        audience = self._optional_string(request, "signInAudience", "Application")
        if audience is not None:
            app.sign_in_audience = audience
        self._applications[app.id] = app
        return 201, {"@odata.context": self._context("applications/$entity"), **app.resource()}

    def _application(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        app = self._find_application(m)
        if method == "GET":
            resource = app.resource()
            if self._expand(query):
                resource["federatedIdentityCredentials"] = list(app.federated)
            return 200, {"@odata.context": self._context("applications/$entity"),
                         **self._select(resource, query)}
        if method == "DELETE":
            self._delete_application(app)
            return 204, None
        request = self._body(body)
        certificates = request.pop("keyCredentials", None)
        self._check_fields(request, _APPLICATION_FIELDS, "application")
        if certificates is not None:
            app.certificates = self._certificates(app, certificates)
        if "displayName" in request:
            name = request["displayName"]
            if not isinstance(name, str) or not name.strip():
                raise GraphError(400, "Request_BadRequest",
                                 "A value is required for property 'displayName' of resource 'Application'.")
            app.display_name = name
        if "tags" in request:
            app.tags = self._tags(request["tags"], "Application")
        for name in ("notes", "description"):
            if name in request:
                setattr(app, name, self._optional_string(request, name, "Application"))
        if "signInAudience" in request:
            app.sign_in_audience = self._optional_string(request, "signInAudience", "Application") or ""
        return 204, None

    def _delete_application(self, app: _Application) -> None:
        now = self._clock()
        del self._applications[app.id]
        app.deleted = now
        self._deleted[app.id] = app
        # Entra deletes the application's service principal with it (into deleted items too).
        sp = self._principal_of(app.app_id)
        if sp is not None:
            self._delete_service_principal(sp)

    @staticmethod
    def _expand(query: Query) -> bool:
        """Whether ``$expand`` asks for the federated credentials (the one navigation
        property served); anything else is refused as Graph refuses an unknown one."""
        wanted = [e.strip() for e in (query.get("$expand") or [""])[0].split(",") if e.strip()]
        for name in wanted:
            if name != "federatedIdentityCredentials":
                raise GraphError(400, "BadRequest", "Parsing OData Select and Expand failed: Could not find "
                                 f"a property named '{name}' on type 'microsoft.graph.application'.")
        return bool(wanted)

    def _certificates(self, app: _Application, given: object) -> list[_Certificate]:
        """The whole keyCredentials collection of a PATCH: new certificates parsed from
        their DER bytes, existing ones kept by keyId."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        if not isinstance(given, list) or not all(isinstance(c, dict) for c in given):
            raise GraphError(400, "Request_BadRequest",
                             "Invalid value specified for property 'keyCredentials'.")
        have = {c.key_id: c for c in app.certificates}
        out: list[_Certificate] = []
        for item in given:
            key_id = str(item.get("keyId") or "").lower()
            if not item.get("key"):
                if key_id not in have:
                    raise GraphError(400, "Request_BadRequest", "Invalid value specified for property 'key' "
                                     "of resource 'KeyCredential': a new key credential needs its key.")
                out.append(have[key_id])
                continue
            if item.get("type") not in ("AsymmetricX509Cert", "X509CertAndPassword") or \
                    item.get("usage") not in ("Verify", "Sign"):
                raise GraphError(400, "Request_BadRequest", "Invalid value specified for property 'type' or "
                                 "'usage' of resource 'KeyCredential'.")
            try:
                der = base64.b64decode(str(item["key"]), validate=True)
                cert = x509.load_der_x509_certificate(der)
            except (binascii.Error, ValueError):
                raise GraphError(400, "Request_BadRequest", "Key credential's key is not a valid "
                                 "certificate.") from None
            start = _parse_iso(item["startDateTime"], "startDateTime") if item.get("startDateTime") else \
                cert.not_valid_before_utc.timestamp()
            end = _parse_iso(item["endDateTime"], "endDateTime") if item.get("endDateTime") else \
                cert.not_valid_after_utc.timestamp()
            if end <= start:
                raise GraphError(400, "Request_BadRequest", "Invalid value specified for property "
                                 "'endDateTime': it must be after startDateTime.")
            name = item.get("displayName")
            out.append(_Certificate(
                key_id=key_id or str(uuid.uuid4()),
                display_name=str(name) if name is not None else cert.subject.rfc4514_string(),
                start=start, end=end, thumbprint=cert.fingerprint(hashes.SHA1()),  # nosec B303 - Graph's thumbprint
                type=str(item["type"]), usage=str(item["usage"])))
        return out

    # --- federated identity credentials of applications ----------------------------------

    def _federated_collection(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        app = self._find_application(m)
        context = f"applications('{app.id}')/federatedIdentityCredentials"
        if method == "GET":
            return self._page(m.group(0), query, list(app.federated), context)
        request = self._body(body)
        resource = self._federated_body(app, request, None)
        app.federated.append(resource)
        return 201, {"@odata.context": self._context(f"{context}/$entity"), **resource}

    def _federated_body(self, app: _Application, request: Json, existing: Json | None) -> Json:
        allowed = {"name", "issuer", "subject", "audiences", "description"}
        for name in request:
            if name not in allowed and name != "id":
                raise GraphError(400, "Request_BadRequest", f"Property '{name}' does not exist on type "
                                 "'microsoft.graph.federatedIdentityCredential'.")
        merged = {**(existing or {}), **request}
        for name in ("name", "issuer", "subject"):
            if not isinstance(merged.get(name), str) or not merged[name]:
                raise GraphError(400, "Request_BadRequest", f"A value is required for property '{name}' of "
                                 "resource 'federatedIdentityCredential'.")
        audiences = merged.get("audiences")
        if not isinstance(audiences, list) or len(audiences) != 1 or not isinstance(audiences[0], str):
            raise GraphError(400, "Request_BadRequest", "Exactly one audience is required for property "
                             "'audiences' of resource 'federatedIdentityCredential'.")
        others = [f for f in app.federated if f is not existing]
        if any(f["name"].lower() == merged["name"].lower() for f in others):
            raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue",
                             f"FederatedIdentityCredential with name {merged['name']} already exists.")
        if any((f["issuer"], f["subject"]) == (merged["issuer"], merged["subject"]) for f in others):
            raise GraphError(400, "Request_BadRequest", "FederatedIdentityCredential with the same issuer "
                             "and subject already exists.")
        if existing is None and len(app.federated) >= 20:
            raise GraphError(400, "Request_BadRequest", "Maximum number of federated identity credentials "
                             "(20) on the application reached.")
        return {"id": (existing or {}).get("id") or str(uuid.uuid4()), "name": merged["name"],
                "issuer": merged["issuer"], "subject": merged["subject"], "audiences": list(audiences),
                "description": merged.get("description")}

    def _federated(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        app = self._find_application(m)
        key = m.group("fic")
        found = next((f for f in app.federated if f["id"] == key.lower() or f["name"] == key), None)
        if found is None:
            raise _not_found(key)
        if method == "GET":
            return 200, {"@odata.context": self._context(
                f"applications('{app.id}')/federatedIdentityCredentials/$entity"), **found}
        if method == "DELETE":
            app.federated.remove(found)
            return 204, None
        request = self._body(body)
        if "name" in request and request["name"] != found["name"]:
            raise GraphError(400, "Request_BadRequest", "Property 'name' is read-only after creation.")
        found.update(self._federated_body(app, request, found))
        return 204, None

    # --- client secrets -------------------------------------------------------------------

    def _add_principal_password(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        return self._add_password_to(self._find_service_principal(m), body)

    def _add_password(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        return self._add_password_to(self._find_application(m), body)

    def _add_password_to(self, app: _Application | _ServicePrincipal, body: bytes) -> Answer:
        request = self._body(body).get("passwordCredential") or {}
        if not isinstance(request, dict):
            raise GraphError(400, "Request_BadRequest", "Invalid value specified for 'passwordCredential'.")
        if len(app.passwords) >= self.max_password_credentials:
            raise GraphError(400, "Directory_ResourceSizeExceeded", "The size of the object has exceeded its "
                             "limit. Please reduce the number of values and retry your request.")
        now = self._clock()
        start = _parse_iso(request["startDateTime"], "startDateTime") if request.get("startDateTime") else now
        end = (_parse_iso(request["endDateTime"], "endDateTime") if request.get("endDateTime")
               else start + DEFAULT_SECRET_DAYS * 86400)
        if end <= start:
            raise GraphError(400, "Request_BadRequest",
                             "Invalid value specified for property 'endDateTime': it must be after "
                             "startDateTime.")
        display_name = request.get("displayName")
        if display_name is not None and not isinstance(display_name, str):
            raise GraphError(400, "Request_BadRequest", "Invalid value specified for property 'displayName'.")
        secret = _new_secret()
        password = _Password(key_id=str(uuid.uuid4()), display_name=display_name, start=start, end=end,
                             hint=secret[:3], secret_sha256=_digest(secret), created=now)
        app.passwords.append(password)
        return 200, {"@odata.context": self._context("microsoft.graph.passwordCredential"),
                     **password.resource(), "secretText": secret}

    def _remove_password(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        app = self._find_application(m)
        key_id = self._body(body).get("keyId")
        if not isinstance(key_id, str) or not _GUID.fullmatch(key_id):
            raise GraphError(400, "Request_BadRequest", "Invalid value specified for property 'keyId'.")
        # Graph answers 400 (not 404) for a keyId the application does not hold; clients
        # recognise it by this message (Vault's Azure secrets engine does).
        found = next((p for p in app.passwords if p.key_id == key_id.lower()
                      and self._clock() - p.created >= self.replication_delay), None)
        if found is None:
            raise GraphError(400, "Request_BadRequest", f"No password credential found with keyId {key_id}.")
        app.passwords.remove(found)
        return 204, None

    # --- service principals ------------------------------------------------------------

    def _service_principals_collection(self, method: str, m: re.Match[str], query: Query,
                                       body: bytes) -> Answer:
        if method == "GET":
            items = self._filtered(list(self._service_principals.values()), query,
                                   _SERVICE_PRINCIPAL_FILTERABLE)
            return self._page(m.group(0), query, items, "servicePrincipals")
        request = self._body(body)
        self._check_fields(request, _SERVICE_PRINCIPAL_FIELDS | {"appId"}, "servicePrincipal")
        app_id = request.get("appId")
        if not isinstance(app_id, str) or not app_id:
            raise GraphError(400, "Request_BadRequest",
                             "A value is required for property 'appId' of resource 'ServicePrincipal'.")
        app = next((a for a in self._applications.values() if a.app_id == app_id.lower()), None)
        if app is None or not self._visible(app):
            raise GraphError(400, "Request_BadRequest", f"The appId '{app_id}' of the service principal does "
                             "not reference a valid application object.")
        if self._principal_of(app.app_id) is not None:
            raise self._principal_name_in_use(app.app_id)
        enabled = request.get("accountEnabled", True)
        if not isinstance(enabled, bool):
            raise GraphError(400, "Request_BadRequest",
                             "Invalid value specified for property 'accountEnabled'.")
        sp = _ServicePrincipal(id=str(uuid.uuid4()), app_id=app.app_id, display_name=app.display_name,
                               tenant_id=self.tenant_id, created=self._clock(),
                               tags=self._tags(request.get("tags"), "ServicePrincipal"),
                               notes=self._optional_string(request, "notes", "ServicePrincipal"),
                               description=self._optional_string(request, "description", "ServicePrincipal"),
                               account_enabled=enabled)
        self._service_principals[sp.id] = sp
        if self.directory is not None:
            self.directory.add_principal(sp.id, "ServicePrincipal", new=True)
        return 201, {"@odata.context": self._context("servicePrincipals/$entity"), **sp.resource()}

    @staticmethod
    def _principal_name_in_use(app_id: str) -> GraphError:
        return GraphError(409, "Request_MultipleObjectsWithSameKeyValue",
                          "The service principal cannot be created, updated, or restored because the service "
                          f"principal name {app_id} is already in use.")

    def _service_principal(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        sp = self._find_service_principal(m)
        if method == "GET":
            return 200, {"@odata.context": self._context("servicePrincipals/$entity"),
                         **self._select(sp.resource(), query)}
        if method == "DELETE":
            self._delete_service_principal(sp)
            return 204, None
        request = self._body(body)
        self._check_fields(request, _SERVICE_PRINCIPAL_FIELDS, "servicePrincipal")
        if "accountEnabled" in request:
            if not isinstance(request["accountEnabled"], bool):
                raise GraphError(400, "Request_BadRequest",
                                 "Invalid value specified for property 'accountEnabled'.")
            sp.account_enabled = request["accountEnabled"]
        if "tags" in request:
            sp.tags = self._tags(request["tags"], "ServicePrincipal")
        for name in ("notes", "description"):
            if name in request:
                setattr(sp, name, self._optional_string(request, name, "ServicePrincipal"))
        if "displayName" in request:
            new_name = self._optional_string(request, "displayName", "ServicePrincipal")
            sp.display_name = new_name or sp.display_name
        return 204, None

    def _delete_service_principal(self, sp: _ServicePrincipal) -> None:
        del self._service_principals[sp.id]
        sp.deleted = self._clock()
        self._deleted[sp.id] = sp
        if self.directory is not None:
            self.directory.remove_principal(sp.id)

    # --- deleted items -----------------------------------------------------------------

    def _deleted_list(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        kind = m.group("type")
        if kind == "application":
            objects: list[_Object] = [o for o in self._deleted.values() if isinstance(o, _Application)]
            filterable, context = _APPLICATION_FILTERABLE, "directoryObjects(microsoft.graph.application)"
        else:
            objects = [o for o in self._deleted.values() if isinstance(o, _ServicePrincipal)]
            filterable = _SERVICE_PRINCIPAL_FILTERABLE
            context = "directoryObjects(microsoft.graph.servicePrincipal)"
        return self._page(m.group(0), query, self._filtered(objects, query, filterable), context)

    def _deleted_object(self, object_id: str) -> _Object:
        if not _GUID.fullmatch(object_id):
            raise GraphError(400, "Request_BadRequest", f"Invalid object identifier '{object_id}'.")
        found = self._deleted.get(object_id.lower())
        if found is None:
            raise _not_found(object_id)
        return found

    def _deleted_item(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        obj = self._deleted_object(m.group("id"))
        if method == "DELETE":
            del self._deleted[obj.id]
            return 204, None
        return 200, {"@odata.context": self._context("directoryObjects/$entity"),
                     "@odata.type": obj.odata_type, **self._select(obj.resource(), query)}

    def _restore(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        obj = self._deleted_object(m.group("id"))
        if isinstance(obj, _ServicePrincipal):
            app = next((a for a in self._applications.values() if a.app_id == obj.app_id), None)
            if app is None:
                raise GraphError(400, "Request_BadRequest", f"The appId '{obj.app_id}' of the service "
                                 "principal does not reference a valid application object.")
            if self._principal_of(obj.app_id) is not None:
                raise self._principal_name_in_use(obj.app_id)
            obj.deleted = None
            self._service_principals[obj.id] = obj
            if self.directory is not None:
                self.directory.add_principal(obj.id, "ServicePrincipal", new=True)
        else:
            # The application comes back with its password credentials; its service principal
            # stays in deleted items until restored on its own, as in Entra.
            obj.deleted = None
            self._applications[obj.id] = obj
        del self._deleted[obj.id]
        return 200, {"@odata.context": self._context("directoryObjects/$entity"),
                     "@odata.type": obj.odata_type, **obj.resource()}

    # --- sign-in activity reports (beta) ------------------------------------------------

    def _sign_in_report(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        if not self.premium:
            raise GraphError(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                             "Neither tenant is B2C or tenant doesn't have premium license")
        if m.group("report") == "servicePrincipalSignInActivities":
            items = [self._principal_activity(sp.id, sp.app_id) for sp in self._service_principals.values()
                     if sp.app_id in self._app_sign_ins]
            items += [self._principal_activity(f"mi-{app_id}", app_id)
                      for app_id in sorted(self._managed_identities)]
        else:
            items = [self._credential_activity(app, p) for app in self._applications.values()
                     for p in app.passwords if p.key_id in self._key_sign_ins]
        text = (query.get("$filter") or [""])[0]
        if text.strip():
            keep = _parse_filter(text, frozenset({"appId", "keyId"}))
            items = [r for r in items if keep(r)]
        return self._page(m.group(0), query, items, f"reports/{m.group('report')}")

    def _principal_activity(self, sp_id: str, app_id: str) -> Json:
        seen = self._app_sign_ins[app_id]
        activity = {"lastSignInDateTime": _iso(seen.at), "lastSignInRequestId": seen.request_id}
        none = {"lastSignInDateTime": None, "lastSignInRequestId": None}
        # Activity ids are opaque; Graph's look like base64. The client credentials grant
        # is the application authenticating as a client: the only kind served here.
        return {"id": base64.urlsafe_b64encode(sp_id.encode()).decode().rstrip("="), "appId": app_id,
                "lastSignInActivity": activity, "delegatedClientSignInActivity": none,
                "delegatedResourceSignInActivity": none,
                "applicationAuthenticationClientSignInActivity": activity,
                "applicationAuthenticationResourceSignInActivity": none}

    def _credential_activity(self, app: _Application, password: _Password) -> Json:
        seen = self._key_sign_ins[password.key_id]
        sp = self._principal_of(app.app_id)
        return {"id": base64.urlsafe_b64encode(password.key_id.encode()).decode().rstrip("="),
                "keyId": password.key_id, "keyType": "clientSecret", "keyUsage": "sign",
                "appId": app.app_id, "appObjectId": app.id,
                "servicePrincipalObjectId": sp.id if sp is not None else None,
                "resourceId": None, "credentialOrigin": "application",
                "expirationDateTime": _iso(password.end), "createdDateTime": _iso(password.created),
                "signInActivity": {"lastSignInDateTime": _iso(seen.at),
                                   "lastSignInRequestId": seen.request_id}}

    # --- token endpoint ----------------------------------------------------------------

    def _token(self, method: str, m: re.Match[str], query: Query, body: bytes) -> Answer:
        """The client credentials grant: a token when ``client_secret`` is a live secret of
        an application whose service principal exists and is enabled."""
        form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()}
        tenant = m.group("tenant")
        if tenant.lower() != self.tenant_id.lower():
            raise TokenError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found. Check to make "
                             "sure you have the correct tenant ID and are signing into the correct cloud.")
        if form.get("grant_type") != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", 70003,
                             "The app requested an unsupported grant type.")
        scope = form.get("scope", "")
        if not scope:
            raise TokenError(400, "invalid_request", 900144,
                             "The request body must contain the following parameter: 'scope'.")
        if not scope.endswith("/.default"):
            raise TokenError(400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not "
                             "valid. Client credential flows must have a scope value with /.default suffixed "
                             "to the resource identifier (application ID URI).")
        app_id = form.get("client_id", "").lower()
        app = next((a for a in self._applications.values() if a.app_id == app_id and self._visible(a)), None)
        if app is None:
            raise TokenError(400, "unauthorized_client", 700016, f"Application with identifier "
                             f"'{app_id}' was not found in the directory '{tenant}'. This can happen if the "
                             "application has not been installed by the administrator of the tenant or "
                             "consented to by any user in the tenant. You may have sent your authentication "
                             "request to the wrong tenant.")
        secret = form.get("client_secret", "")
        if not secret:
            raise TokenError(401, "invalid_client", 7000218, "The request body must contain the following "
                             "parameter: 'client_assertion' or 'client_secret'.")
        sp = self._principal_of(app.app_id)
        if sp is None or not self._visible(sp):
            raise TokenError(401, "invalid_client", 7000229, f"The client application {app.app_id} is "
                             f"missing service principal in the tenant {self.tenant_id}.")
        now = self._clock()
        digest = _digest(secret)
        matches = [p for p in app.passwords if hmac.compare_digest(p.secret_sha256, digest)
                   and now - p.created >= self.replication_delay]
        if not any(p.start <= now < p.end for p in matches):
            if any(now >= p.end for p in matches):
                raise TokenError(401, "invalid_client", 7000222, f"The provided client secret keys for app "
                                 f"'{app.app_id}' are expired. Visit the Azure portal to create new keys for "
                                 "your app.")
            raise TokenError(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the "
                             "secret being sent in the request is the client secret value, not the client "
                             f"secret ID, for a secret added to app '{app.app_id}'.")
        if not sp.account_enabled:
            raise TokenError(400, "unauthorized_client", 7000112,
                             f"Application '{app.app_id}'({app.display_name}) is disabled.")
        self.tokens_issued += 1
        request_id = str(uuid.uuid4())
        self._app_sign_ins[app.app_id] = _SignIn(now, request_id)
        for password in matches:
            if password.start <= now < password.end:
                self._key_sign_ins[password.key_id] = _SignIn(now, request_id)
        return 200, {"token_type": "Bearer", "expires_in": 3599,  # a token type, not a secret  # nosec B105
                     "ext_expires_in": 3599,
                     "access_token": secrets.token_urlsafe(48)}
