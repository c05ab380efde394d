"""A local Azure Key Vault (secrets only) that the real ``azure.keyvault.secrets.SecretClient``
talks to over HTTPS.

It serves the secret operations of the data plane: set (``PUT /secrets/{name}``: a new
version), get (latest or one version), update properties (``PATCH``: tags, content type,
enabled), list secrets and list the versions of one (properties only, paged with
``nextLink``), delete, and the soft-delete life cycle (list and get deleted secrets,
recover, purge). It behaves as Key Vault does where a client must cope:

* **challenge authentication**: a request without a bearer token gets 401 with
  ``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/TENANT",
  resource="https://vault.azure.net"``, which the SDK's ``ChallengeAuthPolicy`` parses
  (``_shared/http_challenge.py``) before it sends the request again with a token. The
  resource is not a parent domain of 127.0.0.1, so clients pass
  ``verify_challenge_resource=False`` (see :meth:`KeyVaultEmulator.client_kwargs`);
* **api-version**: those of the SDK's ``ApiVersion`` enum (its default is 2026-04-01 in
  azure-keyvault-secrets 4.12) and 2016-10-01; another is ``400 BadParameter "The
  specified version (X) is not recognized. Consider using the latest supported version
  (Y)."`` (the text Key Vault answers: Azure/azure-sdk-for-net#14789,
  Azure/azure-sdk-for-python#28595);
* **names** ``^[0-9a-zA-Z-]{1,127}$``, compared without regard to case (``test2`` and
  ``Test2`` are one secret: microsoft/AzureKeyVaultExplorer#42); another name is
  ``400 BadParameter``;
* **limits**: at most 15 tags on a version and a 256-character tag value (both
  ``400 BadParameter "Property has invalid value"``, as hashicorp/terraform-provider-azurerm
  #16780 shows for a 16th tag; the Key Vault documentation now says values may be 512
  characters long, 256 is the older, stricter figure), tag names of at most 512
  characters, values of at most 25 KB (25,600 bytes), content types of at most 255;
* **errors** in Key Vault's body shape ``{"error": {"code", "message", "innererror"?}}``:
  404 ``SecretNotFound``; 403 ``Forbidden`` (inner ``SecretDisabled``) to read a disabled
  version; 409 ``Conflict`` (inner ``ObjectIsDeletedButRecoverable``) to set a secret
  that is deleted but not purged (external-secrets/external-secrets#3519);
* **soft delete** (on unless ``soft_delete=False``): a deleted secret keeps its versions,
  is listed under ``/deletedsecrets`` until it is recovered, purged, or its scheduled
  purge date (90 days, by the injectable clock) passes;
* **order**: versions are listed in the order of their ids, which are random, as in Key
  Vault, which promises no order; a client must not take the last one listed as the latest.

Messages not quoted from a source above are ours. ``calls`` counts what clients sent.
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
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from ..common.clock import Clock
from .https import Answer, HttpsEmulator

__all__ = ["KeyVaultEmulator", "KeyVaultError"]

log = logging.getLogger(__name__)

Query = Mapping[str, Sequence[str]]
Json = dict[str, Any]

LATEST_API_VERSION = "2026-04-01"
API_VERSIONS = frozenset({"2016-10-01", "7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01",
                          LATEST_API_VERSION})
AUTHORITY = "https://login.microsoftonline.com"
RESOURCE = "https://vault.azure.net"
MAX_TAGS = 15
MAX_TAG_NAME = 512
MAX_TAG_VALUE = 256
MAX_VALUE_BYTES = 25 * 1024
MAX_CONTENT_TYPE = 255
MAX_PAGE = 25
RETENTION_DAYS = 90

_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
_INVALID = "Property has invalid value"


class KeyVaultError(Exception):
    """A failed call: an HTTP status, Key Vault's error code and an optional inner code."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner

    def json_body(self) -> Json:
        """Key Vault's error body."""
        error: Json = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


def _not_found(name: str) -> KeyVaultError:
    return KeyVaultError(404, "SecretNotFound",
                         f"A secret with (name/id) {name} was not found in this key vault. If you recently "
                         "deleted this secret you may be able to recover it using the correct recovery "
                         "command. For help resolving this issue, please see "
                         "https://go.microsoft.com/fwlink/?linkid=2125182")


@dataclass
class _Version:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str]
    enabled: bool
    not_before: int | None
    expires: int | None
    created: int
    updated: int


@dataclass
class _Secret:
    name: str  # as first set; lookups ignore case
    versions: dict[str, _Version] = field(default_factory=dict)  # in creation order
    deleted: int | None = None
    scheduled_purge: int | None = None

    def latest(self) -> _Version:
        return next(reversed(self.versions.values()))


@dataclass(frozen=True)
class _Route:
    label: str
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Callable[[str, re.Match[str], Query, bytes], tuple[int, Json | None]]


class KeyVaultEmulator(HttpsEmulator):
    """Key Vault secrets behind one HTTPS endpoint on 127.0.0.1. Thread-safe; use as a
    context manager or call :meth:`start` / :meth:`stop`."""

    server_name = "keyvault-emulator"

    def __init__(self, *, clock: Clock = time.time, page_size: int = MAX_PAGE, soft_delete: bool = True,
                 max_tags: int = MAX_TAGS, max_tag_value: int = MAX_TAG_VALUE,
                 tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47") -> None:
        self.page_size = page_size
        self.soft_delete = soft_delete
        self.max_tags = max_tags
        self.max_tag_value = max_tag_value
        self.tenant_id = tenant_id
        self._clock = clock
        self._lock = threading.RLock()
        self._secrets: dict[str, _Secret] = {}  # lower-case name -> secret
        self._deleted: dict[str, _Secret] = {}
        self.calls: Counter[str] = Counter()
        """``"PUT secrets/{name} 2026-04-01"`` -> count; ``"401 challenge"`` for each
        unauthenticated request."""
        self._routes = self._make_routes()

    # --- server ----------------------------------------------------------------------


    def client_kwargs(self) -> dict[str, Any]:
        """What to pass to ``SecretClient(emulator.url, credential, **kwargs)``."""
        if not self.url:
            raise RuntimeError("the emulator is not started")
        return {"connection_verify": self.ca_bundle_path, "verify_challenge_resource": False}

    # --- dispatch --------------------------------------------------------------------

    def _make_routes(self) -> list[_Route]:
        def route(methods: str, label: str, pattern: str,
                  handler: Callable[[str, re.Match[str], Query, bytes], tuple[int, Json | None]]) -> _Route:
            return _Route(label, frozenset(methods.split()), re.compile(pattern), handler)

        return [
            route("GET", "secrets", r"/secrets/?", self._list_secrets),
            route("GET", "secrets/{name}/versions", r"/secrets/(?P<name>[^/]+)/versions/?",
                  self._list_versions),
            route("PUT DELETE", "secrets/{name}", r"/secrets/(?P<name>[^/]+)/?", self._secret),
            route("GET PATCH", "secrets/{name}/{version}",
                  r"/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?", self._version),
            route("GET", "deletedsecrets", r"/deletedsecrets/?", self._list_deleted),
            route("GET DELETE", "deletedsecrets/{name}", r"/deletedsecrets/(?P<name>[^/]+)/?",
                  self._deleted_secret),
            route("POST", "deletedsecrets/{name}/recover", r"/deletedsecrets/(?P<name>[^/]+)/recover/?",
                  self._recover),
        ]

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one request: (status, JSON body or None[, headers])."""
        url = urlsplit(raw_path)
        path = unquote(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer "):].strip():
            with self._lock:
                self.calls["401 challenge"] += 1
            challenge = (f'Bearer authorization="{AUTHORITY}/{self.tenant_id}", '
                         f'resource="{RESOURCE}"')
            return 401, KeyVaultError(401, "Unauthorized",
                                      "AKV10000: Request is missing a Bearer or PoP token.").json_body(), \
                {"WWW-Authenticate": challenge}
        matched = [r for r in self._routes if r.pattern.fullmatch(path)]
        if not matched:
            return 404, KeyVaultError(404, "NotFound", f"{method} {path} is not emulated.").json_body()
        candidate = next((r for r in matched if method in r.methods), matched[0])
        match = candidate.pattern.fullmatch(path)
        assert match is not None
        api_version = (query.get("api-version") or [""])[0]
        with self._lock:
            self.calls[f"{method} {candidate.label} {api_version}"] += 1
        try:
            if method not in candidate.methods:
                raise KeyVaultError(405, "MethodNotAllowed", f"The method {method} is not allowed.")
            if not api_version:
                raise KeyVaultError(400, "BadParameter", "The api-version query parameter is required.")
            if api_version not in API_VERSIONS:
                raise KeyVaultError(400, "BadParameter",
                                    f"The specified version ({api_version}) is not recognized. Consider "
                                    f"using the latest supported version ({LATEST_API_VERSION}).")
            with self._lock:
                self._purge_expired()
                return candidate.handler(method, match, query, body)
        except KeyVaultError as exc:
            return exc.status, exc.json_body()
        except Exception as exc:  # an emulator bug: answer as a server error, keep serving
            log.exception("emulator failed on %s %s", method, path)
            return 500, KeyVaultError(500, "InternalServerError", repr(exc)).json_body()

    # --- helpers ---------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _purge_expired(self) -> None:
        now = self._now()
        for key in [k for k, s in self._deleted.items() if s.scheduled_purge is not None
                    and s.scheduled_purge <= now]:
            del self._deleted[key]

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.fullmatch(name):
            raise KeyVaultError(400, "BadParameter", f"The request URI contains an invalid name: {name}")

    def _find(self, name: str) -> _Secret:
        self._check_name(name)
        secret = self._secrets.get(name.lower())
        if secret is None:
            raise _not_found(name)
        return secret

    def _attributes(self, v: _Version) -> Json:
        attributes: Json = {"enabled": v.enabled, "created": v.created, "updated": v.updated,
                            "recoveryLevel": "Recoverable+Purgeable" if self.soft_delete else "Purgeable"}
        if self.soft_delete:
            attributes["recoverableDays"] = RETENTION_DAYS
        if v.not_before is not None:
            attributes["nbf"] = v.not_before
        if v.expires is not None:
            attributes["exp"] = v.expires
        return attributes

    def _item(self, secret: _Secret, v: _Version, *, with_version: bool, value: bool = False) -> Json:
        sid = f"{self.url}/secrets/{secret.name}" + (f"/{v.version}" if with_version else "")
        out: Json = {"id": sid, "attributes": self._attributes(v)}
        if value:
            out["value"] = v.value
        if v.tags:
            out["tags"] = dict(v.tags)
        if v.content_type is not None:
            out["contentType"] = v.content_type
        return out

    def _deleted_item(self, secret: _Secret, *, bundle: bool) -> Json:
        out = self._item(secret, secret.latest(), with_version=bundle)
        out["recoveryId"] = f"{self.url}/deletedsecrets/{secret.name}"
        out["deletedDate"] = secret.deleted
        out["scheduledPurgeDate"] = secret.scheduled_purge
        return out

    def _page(self, path: str, query: Query, items: list[Json]) -> tuple[int, Json]:
        try:
            start = int((query.get("$skiptoken") or ["0"])[0] or 0)
            wanted = int((query.get("maxresults") or [str(self.page_size)])[0] or self.page_size)
        except ValueError:
            raise KeyVaultError(400, "BadParameter", "maxresults and $skiptoken must be integers.") from None
        if not 1 <= wanted <= MAX_PAGE:
            raise KeyVaultError(400, "BadParameter", f"maxresults must be between 1 and {MAX_PAGE}.")
        size = min(wanted, self.page_size)
        page: Json = {"value": items[start:start + size], "nextLink": None}
        if start + size < len(items):
            params = {"api-version": (query.get("api-version") or [LATEST_API_VERSION])[0],
                      "$skiptoken": str(start + size), "maxresults": str(wanted)}
            page["nextLink"] = f"{self.url}{quote(path)}?{urlencode(params)}"
        return 200, page

    @staticmethod
    def _body(body: bytes) -> Json:
        try:
            parsed = json.loads(body.decode() or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise KeyVaultError(400, "BadParameter", "The request body is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise KeyVaultError(400, "BadParameter", "The request body must be a JSON object.")
        return parsed

    def _check_tags(self, tags: Any) -> dict[str, str]:
        if tags is None:
            return {}
        if not isinstance(tags, dict) or len(tags) > self.max_tags or any(
                not isinstance(k, str) or not isinstance(v, str) or not k or len(k) > MAX_TAG_NAME
                or len(v) > self.max_tag_value for k, v in tags.items()):
            raise KeyVaultError(400, "BadParameter", _INVALID)
        return dict(tags)

    @staticmethod
    def _check_content_type(content_type: Any) -> str | None:
        if content_type is not None and (not isinstance(content_type, str)
                                         or len(content_type) > MAX_CONTENT_TYPE):
            raise KeyVaultError(400, "BadParameter", _INVALID)
        return content_type

    @staticmethod
    def _read_attributes(attributes: Any) -> Json:
        if attributes is None:
            return {}
        if not isinstance(attributes, dict):
            raise KeyVaultError(400, "BadParameter", _INVALID)
        out: Json = {}
        if attributes.get("enabled") is not None:
            if not isinstance(attributes["enabled"], bool):
                raise KeyVaultError(400, "BadParameter", _INVALID)
            out["enabled"] = attributes["enabled"]
        for key in ("nbf", "exp"):
            if attributes.get(key) is not None:
                if not isinstance(attributes[key], int):
                    raise KeyVaultError(400, "BadParameter", _INVALID)
                out[key] = attributes[key]
        return out

    # --- secrets ---------------------------------------------------------------------

    def _secret(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json]:
        name = m.group("name")
        self._check_name(name)
        if method == "DELETE":
            secret = self._find(name)
            del self._secrets[name.lower()]
            if not self.soft_delete:
                return 200, self._item(secret, secret.latest(), with_version=True)
            now = self._now()
            secret.deleted, secret.scheduled_purge = now, now + RETENTION_DAYS * 86400
            self._deleted[name.lower()] = secret
            return 200, self._deleted_item(secret, bundle=True)
        if name.lower() in self._deleted:
            raise KeyVaultError(
                409, "Conflict", f"Secret {name} is currently in a deleted but recoverable state, and its "
                "name cannot be reused; in this state, the secret can only be recovered or purged.",
                inner="ObjectIsDeletedButRecoverable")
        request = self._body(body)
        value = request.get("value")
        if not isinstance(value, str):
            raise KeyVaultError(400, "BadParameter", "The secret value is required.")
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            raise KeyVaultError(400, "BadParameter", _INVALID)
        tags = self._check_tags(request.get("tags"))
        content_type = self._check_content_type(request.get("contentType"))
        attributes = self._read_attributes(request.get("attributes"))
        now = self._now()
        secret = self._secrets.setdefault(name.lower(), _Secret(name))
        v = _Version(uuid.uuid4().hex, value, content_type, tags, attributes.get("enabled", True),
                     attributes.get("nbf"), attributes.get("exp"), now, now)
        secret.versions[v.version] = v
        return 200, self._item(secret, v, with_version=True, value=True)

    def _version(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json]:
        secret = self._find(m.group("name"))
        wanted = (m.group("version") or "").lower()
        v = secret.versions.get(wanted) if wanted else secret.latest()
        if v is None:
            raise KeyVaultError(404, "SecretNotFound", f"A secret with (name/id) {m.group('name')}/"
                                f"{m.group('version')} was not found in this key vault.")
        if method == "GET":
            if not v.enabled:
                raise KeyVaultError(403, "Forbidden", "Operation get is not allowed on a disabled secret.",
                                    inner="SecretDisabled")
            return 200, self._item(secret, v, with_version=True, value=True)
        request = self._body(body)
        if request.get("tags") is not None:
            v.tags = self._check_tags(request["tags"])
        if "contentType" in request and request["contentType"] is not None:
            v.content_type = self._check_content_type(request["contentType"])
        attributes = self._read_attributes(request.get("attributes"))
        v.enabled = attributes.get("enabled", v.enabled)
        v.not_before = attributes.get("nbf", v.not_before)
        v.expires = attributes.get("exp", v.expires)
        v.updated = self._now()
        return 200, self._item(secret, v, with_version=True)

    def _list_secrets(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json]:
        items = [self._item(s, s.latest(), with_version=False)
                 for _, s in sorted(self._secrets.items())]
        return self._page("/secrets", query, items)

    def _list_versions(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json]:
        secret = self._find(m.group("name"))
        items = [self._item(secret, secret.versions[k], with_version=True) for k in sorted(secret.versions)]
        return self._page(f"/secrets/{secret.name}/versions", query, items)

    # --- soft delete -----------------------------------------------------------------

    def _find_deleted(self, name: str) -> _Secret:
        self._check_name(name)
        secret = self._deleted.get(name.lower())
        if secret is None:
            raise KeyVaultError(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        return secret

    def _list_deleted(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json]:
        items = [self._deleted_item(s, bundle=False) for _, s in sorted(self._deleted.items())]
        return self._page("/deletedsecrets", query, items)

    def _deleted_secret(self, method: str, m: re.Match[str], query: Query,
                        body: bytes) -> tuple[int, Json | None]:
        secret = self._find_deleted(m.group("name"))
        if method == "GET":
            return 200, self._deleted_item(secret, bundle=True)
        del self._deleted[secret.name.lower()]  # purge: gone for good
        return 204, None

    def _recover(self, method: str, m: re.Match[str], query: Query, body: bytes) -> tuple[int, Json]:
        secret = self._find_deleted(m.group("name"))
        del self._deleted[secret.name.lower()]
        secret.deleted = secret.scheduled_purge = None
        self._secrets[secret.name.lower()] = secret
        return 200, self._item(secret, secret.latest(), with_version=True)
