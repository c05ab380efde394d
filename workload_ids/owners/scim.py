"""An owner directory read from any SCIM 2.0 service provider (RFC 7643/7644).

Groups are matched by ``displayName``, people by ``userName``; a person's successor is
their manager (the enterprise extension's ``manager.value``, a SCIM user id), when set.
Both attributes are case-insensitive in SCIM (``caseExact: false``), so a match the
service reports is a match: an exact spelling is preferred when several resources match.
Queries use filters and paging (``startIndex``/``count``); the bearer token is read from
the environment variable the config names. Redirects are not followed, so the token is
only ever sent to ``owners.url``. Plain ``urllib``: no extra dependency.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from email.message import Message
from pathlib import Path
from typing import IO, Any

from ..config import OwnersConfig
from ..durations import parse_duration
from ..endpoints import VARIABLE_PREFIX, is_loopback
from ..errors import UserError, WorkloadIdsError
from .interface import Owner

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
# Resources asked for per request (the ``count`` of each page).
PAGE = 100
# Values per filter (``userName eq "a" or userName eq "b" ...``): keeps URLs short.
CHUNK = 20


class DirectoryUnavailable(WorkloadIdsError):
    """The owner directory could not be read. Never treated as "owner gone"."""

    def diagnostics(self) -> str:
        """The error with what to check, and that nothing was changed."""
        return (f"{self}\n  what to do: check owners.url, the token in the variable named by "
                "owners.tokenEnv, and that the directory is up; nothing was changed, because "
                "an unreachable directory never counts as an owner being gone")


def _quote(value: str) -> str:
    """A SCIM filter string literal (RFC 7644 §3.4.2.2: JSON string rules)."""
    return json.dumps(value, ensure_ascii=False)


def _active(value: Any) -> bool:
    """A user's ``active``: only an explicit false is inactive. Absent, the state is
    unknown, and an unknown state must never make an owner gone."""
    return value is not False


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would carry the Authorization header to any host."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        return None


class ScimDirectory:
    """See the module docstring."""

    name = "scim"

    def __init__(self, base_url: str, token: str, timeout: float, ca_bundle: str | None = None,
                 page_size: int = PAGE) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        if not token or _has_control(token):
            raise UserError("the SCIM bearer token is empty or holds a line break or another control "
                            "character; export the token alone, on one line")
        self.base = base_url.rstrip("/")
        try:
            parts = urllib.parse.urlsplit(self.base)
            parts.port  # noqa: B018 - raises on a port out of range or not a number
        except ValueError as exc:
            raise UserError(f"owners.url {self.base} is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or any(
                c.isspace() or _has_control(c) for c in self.base):
            raise UserError(f"owners.url {self.base} is not a valid URL: write the SCIM base URL, "
                            "e.g. https://idp.example.com/scim/v2")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise UserError(f"owners.url {self.base} is plain http: the bearer token would cross the "
                            "network in clear; use https")
        self._token = token
        self.timeout = timeout
        self.page_size = page_size
        self._context: ssl.SSLContext | None = None
        if ca_bundle:
            try:
                self._context = ssl.create_default_context(cafile=ca_bundle)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise UserError(f"cannot use the CA bundle {ca_bundle}: {exc}; fix owners.caBundle "
                                "(a PEM file, relative to the config file)") from None
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if self._context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=self._context))
        self._opener = urllib.request.build_opener(*handlers)
        self.requests = 0
        self._users_by_id: dict[str, Owner | None] = {}

    @staticmethod
    def from_config(config: OwnersConfig, base: Path | None = None) -> ScimDirectory:
        """The directory ``config`` describes; ``base`` is the folder relative paths
        (``caBundle``) start from: the config file's folder."""
        assert config.url and config.tokenEnv
        if not config.tokenEnv.startswith(VARIABLE_PREFIX):
            raise UserError(f"owners.tokenEnv is {config.tokenEnv}: the SCIM token is read only from a "
                            f"variable whose name starts with {VARIABLE_PREFIX}")
        raw = os.environ.get(config.tokenEnv)
        if raw is None:
            raise UserError(f"owners.tokenEnv names {config.tokenEnv}, but that variable is not set; "
                            "export the SCIM bearer token in it")
        token = raw.strip()
        if not token:
            raise UserError(f"owners.tokenEnv names {config.tokenEnv}, but that variable is empty; "
                            "export the SCIM bearer token in it")
        if _has_control(token):
            raise UserError(f"the variable {config.tokenEnv} holds a line break or another control "
                            "character; export the SCIM bearer token alone, on one line")
        timeout = parse_duration(config.timeout).total_seconds()
        if timeout <= 0:
            raise UserError(f"owners.timeout is {config.timeout}: give the SCIM directory at least 1s")
        ca_bundle = config.caBundle
        if ca_bundle and base is not None:
            ca_bundle = str(base / ca_bundle)
        return ScimDirectory(config.url, token, timeout, ca_bundle)

    # --- HTTP ---------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str | int]) -> dict[str, Any]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers={
            "Authorization": f"Bearer {self._token}", "Accept": "application/scim+json"})
        where = f"SCIM directory {self.base}"
        self.requests += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as response:  # nosec B310
                raw: bytes = response.read()
                content_type = response.headers.get("Content-Type") or "none"
        except urllib.error.HTTPError as exc:
            raise DirectoryUnavailable(self._http_error(path, exc)) from None
        except urllib.error.URLError as exc:
            raise DirectoryUnavailable(f"{where} is unreachable: {exc.reason}") from None
        except http.client.InvalidURL as exc:
            raise UserError(f"owners.url {self.base} is not a valid URL: {exc}") from None
        except http.client.HTTPException as exc:
            raise DirectoryUnavailable(f"{where} did not answer GET {path} with valid HTTP: "
                                       f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
        except OSError as exc:  # timeouts, resets, TLS errors while reading
            raise DirectoryUnavailable(f"{where} is unreachable: {exc or type(exc).__name__}") from None
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise DirectoryUnavailable(f"{where} did not answer GET {path} with JSON (Content-Type: "
                                       f"{content_type}); is owners.url the SCIM base URL?") from None
        if not isinstance(body, dict):
            raise DirectoryUnavailable(f"{where} answered GET {path} with JSON that is not a SCIM "
                                       "response object")
        return body

    def _http_error(self, path: str, exc: urllib.error.HTTPError) -> str:
        text = f"SCIM directory {self.base} answered HTTP {exc.code} ({exc.reason}) to GET {path}"
        if 300 <= exc.code < 400:
            location = exc.headers.get("Location") if exc.headers else None
            return (text + ": redirects are not followed, so the bearer token only goes to owners.url; "
                    "set owners.url to the SCIM base URL itself" + (f" (redirected to {location})"
                                                                    if location else ""))
        try:
            detail = json.loads(exc.read().decode("utf-8")).get("detail")
        except (ValueError, OSError, AttributeError, http.client.HTTPException):
            detail = None
        if isinstance(detail, str) and detail.strip():
            text += f": {' '.join(detail.split())[:300]}"
        return text

    def _search(self, path: str, scim_filter: str) -> list[dict[str, Any]]:
        """Every resource matching ``scim_filter``, page by page."""
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        start = 1
        while True:
            page = self._get(path, {"filter": scim_filter, "startIndex": start, "count": self.page_size})
            resources = page.get("Resources")
            resources = [] if resources is None else resources
            total = page.get("totalResults")
            if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources) or (
                    total is not None and (not isinstance(total, int) or isinstance(total, bool))):
                raise DirectoryUnavailable(f"SCIM directory {self.base} answered GET {path} with "
                                           "something that is not a SCIM list response")
            fresh = [r for r in resources if r.get("id") is None or str(r["id"]) not in seen]
            if resources and not fresh:
                raise DirectoryUnavailable(f"SCIM directory {self.base} answered GET {path} with the "
                                           f"same resources again at startIndex={start}: it does not "
                                           "page as RFC 7644 says")
            seen.update(str(r["id"]) for r in fresh if r.get("id") is not None)
            found.extend(fresh)
            start += len(resources)
            if not resources:
                return found
            if total is not None:
                if len(found) >= total:
                    return found
            elif len(resources) < self.page_size:
                # No totalResults (RFC 7644 requires it): read on until a short page, since
                # stopping early could make an owner look gone.
                return found

    def _match(self, path: str, attr: str, values: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Resources whose ``attr`` equals each value, as the service matches (case-insensitive
        for userName and displayName); exact spellings win over other cases."""
        out: dict[str, list[dict[str, Any]]] = {}
        for i in range(0, len(values), CHUNK):
            chunk = values[i:i + CHUNK]
            query = " or ".join(f"{attr} eq {_quote(v)}" for v in chunk)
            resources = self._search(path, query)
            for value in chunk:
                exact = [r for r in resources if r.get(attr) == value]
                folded = [r for r in resources
                          if isinstance(r.get(attr), str) and r[attr].casefold() == value.casefold()]
                if exact or folded:
                    out[value] = exact or folded
        return out

    # --- records ------------------------------------------------------------------------

    def _by_id(self, ids: Iterable[str]) -> dict[str, Owner | None]:
        """Users by SCIM id (ids are case-exact), without successors; cached."""
        wanted = list(dict.fromkeys(ids))
        todo = [i for i in wanted if i not in self._users_by_id]
        for i in range(0, len(todo), CHUNK):
            chunk = todo[i:i + CHUNK]
            query = " or ".join(f"id eq {_quote(v)}" for v in chunk)
            for user in self._search("/Users", query):
                user_id = str(user.get("id"))
                if user_id in chunk:
                    self._users_by_id[user_id] = Owner(str(user.get("userName") or user_id), "person",
                                                       _active(user.get("active")))
            for v in chunk:
                self._users_by_id.setdefault(v, None)
        return {i: self._users_by_id[i] for i in wanted}

    def owners(self, ids: Iterable[str]) -> dict[str, Owner | None]:
        """OwnerDirectory.owners: groups by displayName first, then users by userName with managers."""
        wanted = list(dict.fromkeys(ids))
        out: dict[str, Owner | None] = {}
        for name, found in self._match("/Groups", "displayName", wanted).items():
            # Several groups may share a displayName: their members together own the name.
            groups = sorted(found, key=lambda g: (str(g.get("displayName")), str(g.get("id"))))
            members = tuple(dict.fromkeys(
                str(m["value"]) for g in groups for m in (g.get("members") or [])
                if isinstance(m, dict) and m.get("value")))
            out[name] = Owner(str(groups[0].get("displayName")), "group", True, members)
        people = [i for i in wanted if i not in out]
        users = {name: found[0] for name, found in self._match("/Users", "userName", people).items()}
        bosses: dict[str, str] = {}
        for name, user in users.items():
            extension = user.get(ENTERPRISE)
            manager = extension.get("manager") if isinstance(extension, dict) else None
            if isinstance(manager, dict) and manager.get("value"):
                bosses[name] = str(manager["value"])
        managers = self._by_id(bosses.values())
        for name in people:
            if name not in users:
                out[name] = None
                continue
            user = users[name]
            boss = managers.get(bosses.get(name, ""))
            owner = Owner(str(user.get("userName") or name), "person", _active(user.get("active")), (),
                          boss.id if boss else None)
            out[name] = owner
            if user.get("id"):
                self._users_by_id[str(user["id"])] = Owner(owner.id, owner.kind, owner.active)
        return out

    def members(self, group: Owner) -> dict[str, Owner | None]:
        """Members are SCIM user ids."""
        return self._by_id(group.members)
