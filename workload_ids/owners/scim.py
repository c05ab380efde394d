"""An owner directory read from any SCIM 2.0 service provider (RFC 7643/7644).

Groups are matched by ``displayName``, people by ``userName``; a person's successor is
their manager (the enterprise extension's ``manager.value``), when set. Queries use
filters and paging (``startIndex``/``count``); the bearer token is read from the
environment variable the config names. Plain ``urllib``: no extra dependency.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from ..config import OwnersConfig
from ..durations import parse_duration
from ..errors import UserError, WorkloadIdsError
from .interface import Owner

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PAGE = 100


class DirectoryUnavailable(WorkloadIdsError):
    """The owner directory could not be read. Never treated as "owner gone"."""

    def diagnostics(self) -> str:
        return (f"{self}\n  what to do: check owners.url, the token in the variable named by "
                "owners.tokenEnv, and that the directory is up; nothing was changed, because "
                "an unreachable directory never counts as an owner being gone")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ScimDirectory:
    """See the module docstring."""

    name = "scim"

    def __init__(self, base_url: str, token: str, timeout: float, ca_bundle: str | None = None) -> None:
        self.base = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else None
        self.requests = 0
        self._users_by_id: dict[str, Owner | None] = {}

    @staticmethod
    def from_config(config: OwnersConfig) -> ScimDirectory:
        assert config.url and config.tokenEnv
        token = os.environ.get(config.tokenEnv)
        if not token:
            raise UserError(f"owners.tokenEnv names {config.tokenEnv}, but that variable is not set; "
                            "export the SCIM bearer token in it")
        return ScimDirectory(config.url, token, parse_duration(config.timeout).total_seconds(),
                             config.caBundle)

    def _get(self, path: str, params: dict[str, str | int]) -> dict[str, Any]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers={
            "Authorization": f"Bearer {self._token}", "Accept": "application/scim+json"})
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,  # nosec B310 - configured URL
                                        context=self._context) as response:
                body: dict[str, Any] = json.loads(response.read().decode("utf-8"))
                return body
        except urllib.error.HTTPError as exc:
            raise DirectoryUnavailable(f"SCIM {path} answered HTTP {exc.code} ({exc.reason})") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DirectoryUnavailable(f"SCIM directory {self.base} is unreachable: {reason}") from None
        except ValueError:
            raise DirectoryUnavailable(f"SCIM {path} did not answer with JSON") from None

    def _search(self, path: str, scim_filter: str) -> list[dict[str, Any]]:
        """Every resource matching ``scim_filter``, page by page."""
        found: list[dict[str, Any]] = []
        start = 1
        while True:
            page = self._get(path, {"filter": scim_filter, "startIndex": start, "count": PAGE})
            resources = page.get("Resources") or []
            found.extend(resources)
            total = int(page.get("totalResults", len(found)))
            if not resources or len(found) >= total:
                return found
            start += len(resources)

    def _person(self, user: dict[str, Any]) -> Owner:
        manager = (user.get(ENTERPRISE) or {}).get("manager") or {}
        successor = None
        if manager.get("value"):
            boss = self._users(["id"], [str(manager["value"])]).get(str(manager["value"]))
            successor = boss.id if boss else None
        return Owner(str(user.get("userName")), "person", bool(user.get("active", True)), (),
                     successor)

    def _users(self, attrs: list[str], values: list[str]) -> dict[str, Owner | None]:
        """Users by id (``attrs == ["id"]``) or userName, keyed by the value asked for."""
        out: dict[str, Owner | None] = {}
        attr = attrs[0]
        todo = [v for v in values if not (attr == "id" and v in self._users_by_id)]
        for v in values:
            if attr == "id" and v in self._users_by_id:
                out[v] = self._users_by_id[v]
        for i in range(0, len(todo), 20):  # keep filters short
            chunk = todo[i:i + 20]
            query = " or ".join(f"{attr} eq {_quote(v)}" for v in chunk)
            for user in self._search("/Users", query):
                key = str(user.get(attr))
                owner = Owner(str(user.get("userName")), "person", bool(user.get("active", True)))
                out[key] = owner
                self._users_by_id[str(user.get("id"))] = owner
            for v in chunk:
                out.setdefault(v, None)
        return out

    def owners(self, ids: Iterable[str]) -> dict[str, Owner | None]:
        wanted = list(ids)
        out: dict[str, Owner | None] = {}
        for i in range(0, len(wanted), 20):
            chunk = wanted[i:i + 20]
            query = " or ".join(f"displayName eq {_quote(v)}" for v in chunk)
            for group in self._search("/Groups", query):
                members = tuple(str(m.get("value")) for m in group.get("members") or [] if m.get("value"))
                out[str(group.get("displayName"))] = Owner(str(group.get("displayName")), "group",
                                                          True, members)
        people = [i for i in wanted if i not in out]
        for i in range(0, len(people), 20):
            chunk = people[i:i + 20]
            query = " or ".join(f"userName eq {_quote(v)}" for v in chunk)
            found = {str(u.get("userName")): u for u in self._search("/Users", query)}
            for name in chunk:
                out[name] = self._person(found[name]) if name in found else None
        return out

    def members(self, group: Owner) -> dict[str, Owner | None]:
        """Members are SCIM user ids."""
        return self._users(["id"], list(group.members))
