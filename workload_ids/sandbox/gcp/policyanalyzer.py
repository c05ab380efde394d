"""A local Policy Analyzer (``policyanalyzer.googleapis.com`` v1): the activity query that
says when each service account, and each of its keys, last authenticated.

It serves ``GET /v1/projects/P/locations/global/activityTypes/T/activities:query`` for
``T`` in ``serviceAccountLastAuthentication`` and ``serviceAccountKeyLastAuthentication``,
with Google's JSON shape (``activities``, ``nextPageToken``; each activity with its
``fullResourceName``, ``activityType``, ``observationPeriod`` and ``activity``), the
``activities.fullResourceName = "..."`` filter, and paging (10 a page unless asked, at
most 1,000). Only what authenticated is listed: an account or key never used is absent,
as in Google's answer. Refusals are Google's: an unknown project is NOT_FOUND, another
location or activity type INVALID_ARGUMENT, and a project where the API is not enabled
(``enabled=False``) PERMISSION_DENIED with reason ``SERVICE_DISABLED``.

Nothing here authenticates: tests and the sandbox say what Google would have observed
with :meth:`PolicyAnalyzerEmulator.record`. The routes can be served on their own
(:meth:`start`) or by the Resource Manager emulator's server (:meth:`routes`), which is
how the sandbox keeps its fixed ports.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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

ACCOUNT_ACTIVITY = "serviceAccountLastAuthentication"
KEY_ACTIVITY = "serviceAccountKeyLastAuthentication"
PAGE_SIZES = (10, 1000)  # (default, maximum)
_PATH = re.compile(r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/activityTypes/"
                   r"(?P<type>[^/]+)/activities:query")
_FILTER = re.compile(r'\s*activities\.fullResourceName\s*=\s*"([^"]+)"\s*')


@dataclass(frozen=True, slots=True)
class _Seen:
    """One account's (or key's) last authentication."""

    project: str
    email: str
    unique_id: str
    key_id: str | None
    at: float


class PolicyAnalyzerEmulator(RoutedEmulator):
    """Policy Analyzer's activity query over REST on 127.0.0.1 (see the module docstring)."""

    def __init__(self, *, projects: ProjectRegistry | None = None, sandbox: bool = False,
                 clock: Clock = time.time) -> None:
        self.projects = projects or ProjectRegistry(clock)
        self.sandbox = sandbox
        self.enabled = True  # the API is enabled in every project (False: SERVICE_DISABLED)
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str | None], _Seen] = {}
        self._http: JsonHttpServer | None = None

    # --- set-up ------------------------------------------------------------------------

    def record(self, project: str, email: str, unique_id: str, *, key_id: str | None = None,
               at: datetime | None = None) -> None:
        """Google observed ``email`` (with its key ``key_id``, if given) authenticate at
        ``at`` (now by the clock). A key's use is the account's too."""
        moment = at.timestamp() if at is not None else self._clock()
        with self._lock:
            for key in ((project, email, None), *([(project, email, key_id)] if key_id else [])):
                old = self._seen.get(key)
                if old is None or old.at < moment:
                    self._seen[key] = _Seen(project, email, unique_id, key[2], moment)

    # --- serving -----------------------------------------------------------------------

    def routes(self) -> list[HttpRoute]:
        """The routes this API answers (to serve them on another emulator's server)."""
        return [HttpRoute("GET", _PATH, self._query)]

    def _query(self, match: re.Match[str], query: Query, body: bytes) -> str:
        project = self.projects.resolve(match["project"], sandbox=self.sandbox,
                                        permission=f"policyanalyzer.{match['type']}Activities.query")
        if not self.enabled:
            raise RpcError("PERMISSION_DENIED", f"Policy Analyzer API has not been used in project "
                           f"{project.number} before or it is disabled. Enable it by visiting the API "
                           "library, then retry. (reason: SERVICE_DISABLED)")
        if match["location"] != "global":
            raise RpcError("INVALID_ARGUMENT", f"Location {match['location']} is not supported; use global.")
        kind = match["type"]
        if kind not in (ACCOUNT_ACTIVITY, KEY_ACTIVITY):
            raise RpcError("INVALID_ARGUMENT", f"Unsupported activity type: {kind}.")
        wanted = _filter((query.get("filter") or [""])[0])
        size = _page_size((query.get("pageSize") or [""])[0])
        with self._lock:
            seen = [s for s in self._seen.values() if s.project == project.project_id
                    and (s.key_id is not None) == (kind == KEY_ACTIVITY)]
        items = sorted((_activity(kind, s, project.project_id, project.number) for s in seen),
                       key=lambda a: str(a["fullResourceName"]))
        if wanted is not None:
            items = [a for a in items if a["fullResourceName"] == wanted]
        token = (query.get("pageToken") or [""])[0]
        if token:
            try:
                after = base64.b64decode(token, altchars=b"-_", validate=True).decode("utf-8")
            except (ValueError, binascii.Error):
                raise RpcError("INVALID_ARGUMENT", "Invalid page token.") from None
            items = [a for a in items if str(a["fullResourceName"]) > after]
        page: dict[str, object] = {"activities": items[:size]}
        if len(items) > size:
            page["nextPageToken"] = base64.urlsafe_b64encode(
                str(items[size - 1]["fullResourceName"]).encode()).decode()
        return json.dumps(page)


def _filter(text: str) -> str | None:
    if not text.strip():
        return None
    match = _FILTER.fullmatch(text)
    if match is None:
        raise RpcError("INVALID_ARGUMENT", f"Invalid filter: {text}. Only activities.fullResourceName = "
                       '"..." is supported.')
    return match.group(1)


def _page_size(text: str) -> int:
    if not text:
        return PAGE_SIZES[0]
    try:
        size = int(text)
    except ValueError:
        raise RpcError("INVALID_ARGUMENT", f"Invalid pageSize: {text}.") from None
    # Non-positive values are ignored, as Google documents.
    return min(size, PAGE_SIZES[1]) if size > 0 else PAGE_SIZES[0]


def _activity(kind: str, seen: _Seen, project: str, number: int) -> dict[str, object]:
    account = f"//iam.googleapis.com/projects/{project}/serviceAccounts/{seen.email}"
    name = f"{account}/keys/{seen.key_id}" if seen.key_id else account
    day = datetime.fromtimestamp(seen.at, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    subject = "serviceAccountKey" if seen.key_id else "serviceAccount"
    return {"fullResourceName": name, "activityType": kind,
            "observationPeriod": {"startTime": rfc3339(day.timestamp()),
                                  "endTime": rfc3339((day + timedelta(days=1)).timestamp())},
            "activity": {"lastAuthenticatedTime": rfc3339(seen.at),
                         subject: {"fullResourceName": name, "projectNumber": str(number),
                                   "serviceAccountId": seen.unique_id}}}
