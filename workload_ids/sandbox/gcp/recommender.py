"""A local Recommender (``recommender.googleapis.com`` v1), the policy insights only: for
one role binding of one member, which of the role's permissions were exercised in the
observation period (90 days).

It serves ``GET /v1/projects/P/locations/global/insightTypes/google.iam.policy.Insight/insights``
(list; ``pageSize``, ``pageToken``, and a ``filter`` on ``stateInfo.state`` and
``insightSubtype``) and ``GET .../insights/ID`` with Google's JSON shape: ``name`` under
the project number, ``description``, ``content`` (``role``, ``member``,
``exercisedPermissions`` and ``inferredPermissions`` as ``{"permission": ...}`` objects,
``currentTotalPermissionsCount`` as a string, ``condition`` when the binding has one),
``lastRefreshTime``, ``observationPeriod`` (``7776000s``), ``stateInfo``, ``category``
``SECURITY``, ``insightSubtype`` ``PERMISSIONS_USAGE``, ``targetResources``, ``etag`` and
``severity``. Refusals are Google's: an unknown project NOT_FOUND, another location or
insight type INVALID_ARGUMENT, a project where the API is off PERMISSION_DENIED with
reason ``SERVICE_DISABLED``.

Tests and the sandbox say what Google concluded with :meth:`RecommenderEmulator.record_insight`.
The routes can be served on their own (:meth:`start`) or by the Resource Manager
emulator's server (:meth:`routes`), as Policy Analyzer's are in the sandbox.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..common.clock import Clock
from .resourcemanager import (
    HttpRoute,
    JsonHttpServer,
    ProjectRegistry,
    Query,
    RoutedEmulator,
    RpcError,
    rfc3339,
)

INSIGHT_TYPE = "google.iam.policy.Insight"
OBSERVATION_DAYS = 90
PAGE_SIZES = (50, 1000)  # (default, maximum)
_BASE = (r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/insightTypes/"
         r"(?P<type>[^/]+)/insights")
_LIST = re.compile(_BASE)
_ONE = re.compile(_BASE + r"/(?P<id>[^/]+)")
_CLAUSE = re.compile(r'\s*(stateInfo\.state|insightSubtype)\s*=\s*"?([A-Z_]+)"?\s*')


@dataclass(frozen=True, slots=True)
class _Insight:
    project: str  # project id
    id: str
    member: str
    role: str
    exercised: tuple[str, ...]
    inferred: tuple[str, ...]
    total: int
    resource: str  # the binding's resource, a full resource name ("" = the project)
    condition: str | None
    refreshed: float


class RecommenderEmulator(RoutedEmulator):
    """Policy insights over REST (see the module docstring)."""

    def __init__(self, *, projects: ProjectRegistry | None = None, sandbox: bool = False,
                 clock: Clock = time.time) -> None:
        self.projects = projects or ProjectRegistry(clock)
        self.sandbox = sandbox
        self.enabled = True  # False: the Recommender API is off in every project
        self._clock = clock
        self._lock = threading.Lock()
        self._insights: dict[tuple[str, str, str, str], _Insight] = {}
        self._http: JsonHttpServer | None = None

    def record_insight(self, project: str, member: str, role: str, *, exercised: Iterable[str],
                       inferred: Iterable[str] = (), total: int | None = None, resource: str = "",
                       condition: str | None = None) -> str:
        """Google concluded that ``member`` (``serviceAccount:EMAIL``) exercised
        ``exercised`` of ``role``'s ``total`` permissions on ``resource`` (the project by
        default) in the last 90 days; replaces the binding's previous insight. Returns its id."""
        used = tuple(sorted(set(exercised)))
        guessed = tuple(sorted(set(inferred) - set(used)))
        count = total if total is not None else len(used) + len(guessed)
        key = (project, member, role, resource)
        insight_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(key)))
        with self._lock:
            self._insights[key] = _Insight(project, insight_id, member, role, used, guessed, count,
                                           resource, condition, self._clock())
        return insight_id

    def routes(self) -> list[HttpRoute]:
        """The routes this API answers (served on the Resource Manager emulator's server)."""
        return [HttpRoute("GET", _ONE, self._get), HttpRoute("GET", _LIST, self._list)]

    # --- serving -----------------------------------------------------------------------

    def _scope(self, match: re.Match[str]) -> tuple[str, int]:
        project = self.projects.resolve(match["project"], sandbox=self.sandbox,
                                        permission="recommender.iamPolicyInsights.list")
        if not self.enabled:
            raise RpcError("PERMISSION_DENIED", f"Recommender API has not been used in project "
                           f"{project.number} before or it is disabled. Enable it by visiting the API "
                           "library, then retry. (reason: SERVICE_DISABLED)")
        if match["location"] != "global":
            raise RpcError("INVALID_ARGUMENT", f"Location {match['location']} is not supported for "
                           f"insight type {match['type']}.")
        if match["type"] != INSIGHT_TYPE:
            raise RpcError("INVALID_ARGUMENT", f"Insight type {match['type']} is not supported here; "
                           f"this emulator serves {INSIGHT_TYPE}.")
        return project.project_id, project.number

    def _list(self, match: re.Match[str], query: Query, body: bytes) -> str:
        project, number = self._scope(match)
        keep = _filter((query.get("filter") or [""])[0])
        size = _page_size((query.get("pageSize") or [""])[0])
        with self._lock:
            found = sorted((i for i in self._insights.values() if i.project == project),
                           key=lambda i: i.id)
        items = [_resource(i, number) for i in found]
        items = [i for i in items if keep(i)]
        token = (query.get("pageToken") or [""])[0]
        if token:
            try:
                after = base64.b64decode(token, altchars=b"-_", validate=True).decode("utf-8")
            except (ValueError, binascii.Error):
                raise RpcError("INVALID_ARGUMENT", "Invalid page token.") from None
            items = [i for i in items if str(i["name"]).rsplit("/", 1)[-1] > after]
        page: dict[str, object] = {"insights": items[:size]}
        if len(items) > size:
            page["nextPageToken"] = base64.urlsafe_b64encode(
                str(items[size - 1]["name"]).rsplit("/", 1)[-1].encode()).decode()
        return json.dumps(page)

    def _get(self, match: re.Match[str], query: Query, body: bytes) -> str:
        project, number = self._scope(match)
        with self._lock:
            found = next((i for i in self._insights.values()
                          if i.project == project and i.id == match["id"]), None)
        if found is None:
            raise RpcError("NOT_FOUND", f"Insight {match['id']} not found.")
        return json.dumps(_resource(found, number))


def _filter(text: str) -> Callable[[dict[str, object]], bool]:
    """Google's insight filter, the clauses it documents for this type, joined by AND."""
    wanted: dict[str, str] = {}
    if text.strip():
        for clause in re.split(r"\s+AND\s+", text.strip()):
            match = _CLAUSE.fullmatch(clause)
            if match is None:
                raise RpcError("INVALID_ARGUMENT", f"Invalid filter: {text}. Supported: stateInfo.state "
                               "and insightSubtype, joined by AND.")
            wanted[match.group(1)] = match.group(2)

    def keep(item: dict[str, object]) -> bool:
        state = item["stateInfo"]
        assert isinstance(state, dict)
        return (wanted.get("stateInfo.state", state["state"]) == state["state"]
                and wanted.get("insightSubtype", item["insightSubtype"]) == item["insightSubtype"])
    return keep


def _page_size(text: str) -> int:
    if not text:
        return PAGE_SIZES[0]
    try:
        size = int(text)
    except ValueError:
        raise RpcError("INVALID_ARGUMENT", f"Invalid pageSize: {text}.") from None
    return min(size, PAGE_SIZES[1]) if size > 0 else PAGE_SIZES[0]


def _resource(insight: _Insight, number: int) -> dict[str, object]:
    target = insight.resource or f"//cloudresourcemanager.googleapis.com/projects/{number}"
    content: dict[str, object] = {
        "role": insight.role, "member": insight.member,
        "exercisedPermissions": [{"permission": p} for p in insight.exercised],
        "inferredPermissions": [{"permission": p} for p in insight.inferred],
        "currentTotalPermissionsCount": str(insight.total)}
    if insight.condition:
        content["condition"] = {"expression": insight.condition, "title": "", "description": "",
                                "location": ""}
    used = len(insight.exercised)
    etag = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "name": f"projects/{number}/locations/global/insightTypes/{INSIGHT_TYPE}/insights/{insight.id}",
        "description": f"{used} of the permissions in this role binding were used in the past "
                       f"{OBSERVATION_DAYS} days.",
        "content": content, "lastRefreshTime": rfc3339(insight.refreshed),
        "observationPeriod": f"{OBSERVATION_DAYS * 86400}s",
        "stateInfo": {"state": "ACTIVE"}, "category": "SECURITY", "insightSubtype": "PERMISSIONS_USAGE",
        "targetResources": [target], "etag": f'"{etag}"', "severity": "LOW",
        "associatedRecommendations": []}
