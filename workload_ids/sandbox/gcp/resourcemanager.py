"""A local Resource Manager v3 (projects, their IAM policies, and the folders and
organizations above them) that the real ``google.cloud.resourcemanager_v3.ProjectsClient``
and ``FoldersClient`` talk to over REST. Listing is by parent, one level at a time, as on
GCP: ``projects.list`` and ``folders.list`` return a parent's direct children only.

It enforces what a provider must cope with on real GCP, because a looser fake hides
bugs: etags on every policy (a stale one is refused with 409 ABORTED, which the REST
client raises as ``google.api_core.exceptions.Conflict``), policy version 3 for
conditional bindings, version-1 reads of conditional policies that rename roles to
``ROLE_withcond_HASH``, the 1,500-principal limit, unknown projects, and (optionally)
policy changes that become visible to readers only after a propagation delay.

This module also holds the pieces the other GCP emulators share: :class:`RpcError`
(Google's canonical error codes, and :func:`rpc_fault` to inject one),
:class:`ProjectRegistry` (projects known to one or more emulators) and
:class:`JsonHttpServer` (a threaded HTTP server that answers in Google's JSON error format).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import json_format

from ..common.clock import Clock
from ..common.faults import FaultInjector
from ..common.http import Handler, HttpServer, Reply
from ..common.served import Served

if TYPE_CHECKING:
    from google.cloud.resourcemanager_v3 import ProjectsClient

log = logging.getLogger(__name__)

UnknownProjectStatus = Literal["NOT_FOUND", "PERMISSION_DENIED"]

# The HTTP status Google's REST front end gives each canonical (gRPC) code.
HTTP_STATUS: Mapping[str, int] = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
    "ABORTED": 409, "ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499,
    "INTERNAL": 500, "UNKNOWN": 500, "DATA_LOSS": 500, "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}

MAX_POLICY_MEMBERS = 1500
CONCURRENT_CHANGE = ("There were concurrent policy changes. Please retry the whole "
                     "read-modify-write with exponential backoff.")


class RpcError(Exception):
    """A failed call, carrying Google's canonical status (``ABORTED``, ``NOT_FOUND``...)."""

    def __init__(self, status: str, message: str) -> None:
        if status not in HTTP_STATUS:
            raise ValueError(f"unknown canonical status {status!r}")
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status the REST front end answers with."""
        return HTTP_STATUS[self.status]

    def json_body(self) -> str:
        """Google's JSON error body."""
        return json.dumps({"error": {"code": self.http_status, "message": self.message,
                                     "status": self.status}})


# --- projects -------------------------------------------------------------------------

_PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")


def project_number(project_id: str) -> int:
    """A stable 12-digit project number for ``project_id`` (the same in every emulator)."""
    digest = hashlib.sha256(project_id.encode()).digest()
    return 100_000_000_000 + int.from_bytes(digest[:8], "big") % 900_000_000_000


@dataclass(frozen=True)
class Project:
    """A project as the emulators know it."""

    project_id: str
    number: int
    create_time: float

    @property
    def name(self) -> str:
        """``projects/NUMBER``: the form real GCP puts in the names it returns."""
        return f"projects/{self.number}"


class ProjectRegistry:
    """Projects known to one or more emulators (share one so a project exists in all).

    Thread-safe. A project is referred to by id or by number, as on real GCP.
    """

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Project] = {}
        self._by_number: dict[int, Project] = {}
        self._parents: dict[str, str] = {}  # project id -> folders/N or organizations/N
        self._states: dict[str, str] = {}  # project id -> DELETE_REQUESTED (ACTIVE when absent)
        self._folders: dict[str, tuple[str, str, str]] = {}  # folders/N -> (parent, display name, state)

    def add(self, project_id: str) -> Project:
        """Create ``project_id`` (idempotent) and return it."""
        if not _PROJECT_ID.fullmatch(project_id):
            raise ValueError(f"{project_id!r} is not a valid project id (6-30 characters: lowercase "
                             "letters, digits and hyphens, starting with a letter)")
        with self._lock:
            found = self._by_id.get(project_id)
            if found is None:
                found = Project(project_id, project_number(project_id), self._clock())
                self._by_id[project_id] = found
                self._by_number[found.number] = found
            return found

    # --- the resource hierarchy: organizations > folders > projects --------------------

    def add_folder(self, number: str, parent: str, display_name: str = "") -> str:
        """Create folder ``folders/NUMBER`` under ``parent`` (``organizations/N`` or
        ``folders/N``, which must exist unless it is an organization); its name."""
        name = f"folders/{number}"
        with self._lock:
            if not self._parent_known(parent):
                raise ValueError(f"unknown parent {parent!r}: add it first")
            self._folders[name] = (parent, display_name or name, "ACTIVE")
            return name

    def set_parent(self, project_id: str, parent: str) -> None:
        """Move ``project_id`` (created if needed) under ``parent``."""
        self.add(project_id)
        with self._lock:
            if not self._parent_known(parent):
                raise ValueError(f"unknown parent {parent!r}: add it first")
            self._parents[project_id] = parent

    def set_state(self, project_id: str, state: Literal["ACTIVE", "DELETE_REQUESTED"]) -> None:
        """Mark ``project_id`` shut down (DELETE_REQUESTED) or active again."""
        self.add(project_id)
        with self._lock:
            self._states[project_id] = state

    def parent_of(self, project_id: str) -> str:
        """``folders/N``, ``organizations/N``, or "" for a project outside any organization."""
        with self._lock:
            return self._parents.get(project_id, "")

    def state_of(self, project_id: str) -> str:
        """``ACTIVE`` or ``DELETE_REQUESTED``."""
        with self._lock:
            return self._states.get(project_id, "ACTIVE")

    def children(self, parent: str) -> tuple[list[Project], list[tuple[str, str, str, str]]]:
        """The projects and folders (name, parent, display name, state) directly under
        ``parent``, sorted; PERMISSION_DENIED for a parent nobody made, as GCP answers for
        one the caller cannot see."""
        with self._lock:
            if not self._parent_known(parent):
                raise RpcError("PERMISSION_DENIED", f"Permission denied on resource '{parent}' (or it "
                               "may not exist).")
            projects = sorted((p for i, p in self._by_id.items() if self._parents.get(i) == parent),
                              key=lambda p: p.project_id)
            folders = sorted((n, pa, d, st) for n, (pa, d, st) in self._folders.items() if pa == parent)
            return projects, folders

    def _parent_known(self, parent: str) -> bool:
        """(lock held) An organization is known once named; a folder once added."""
        if re.fullmatch(r"organizations/\d+", parent):
            return True
        return parent in self._folders

    def find(self, ref: str) -> Project | None:
        """The project whose id or number is ``ref``, if known."""
        with self._lock:
            if ref.isdigit():
                return self._by_number.get(int(ref))
            return self._by_id.get(ref)

    def resolve(self, ref: str, *, sandbox: bool, status: UnknownProjectStatus = "NOT_FOUND",
                permission: str = "resourcemanager.projects.get") -> Project:
        """The project ``ref`` (id or number); in sandbox mode an unknown id is created.

        Raises :class:`RpcError` for an unknown project: NOT_FOUND by default, or
        PERMISSION_DENIED, which is what real GCP usually answers so as not to reveal
        whether a project exists.
        """
        found = self.find(ref)
        if found is not None:
            return found
        if sandbox and _PROJECT_ID.fullmatch(ref):
            return self.add(ref)
        if status == "PERMISSION_DENIED":
            raise RpcError("PERMISSION_DENIED", f"Permission '{permission}' denied on resource "
                           f"'projects/{ref}' (or it may not exist).")
        raise RpcError("NOT_FOUND", f"Project 'projects/{ref}' not found.")


def rfc3339(seconds: float) -> str:
    """A UTC RFC 3339 timestamp with a ``Z`` suffix, as Google's JSON uses."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


# --- a threaded JSON HTTP server ------------------------------------------------------

Query = Mapping[str, Sequence[str]]
HttpHandler = Callable[[re.Match[str], Query, bytes], str]


@dataclass(frozen=True)
class HttpRoute:
    """``method`` and a full-match ``pattern`` on the unquoted path, and what answers it.

    The handler returns a JSON body (status 200) or raises :class:`RpcError`.
    """

    method: str
    pattern: re.Pattern[str]
    handler: HttpHandler


class _RoutingHandler(Handler):
    routes: ClassVar[Sequence[HttpRoute]] = ()

    def answer(self, body: bytes) -> Reply:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        status, payload = 501, RpcError(
            "UNIMPLEMENTED", f"{self.command} {path} is not emulated").json_body()
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None or route.method != self.command:
                continue
            try:
                status, payload = 200, route.handler(match, query, body)
            except RpcError as exc:
                status, payload = exc.http_status, exc.json_body()
            except Exception as exc:  # an emulator bug: answer as a server error, keep serving
                log.exception("emulator failed on %s %s", self.command, path)
                status, payload = 500, RpcError("INTERNAL", repr(exc)).json_body()
            break
        data = payload.encode()
        return status, [("Content-Type", "application/json; charset=UTF-8"),
                        ("Content-Length", str(len(data)))], data


class JsonHttpServer(HttpServer):
    """A threaded HTTP server on 127.0.0.1 that dispatches to ``routes``."""

    def __init__(self, routes: Sequence[HttpRoute]) -> None:
        super().__init__(type("Handler", (_RoutingHandler,), {"routes": tuple(routes)}),
                         thread_name="gcp-emulator-http")


class RoutedEmulator(Served):
    """A REST API whose routes another emulator's server may serve (``routes()``), or that
    serves them on a server of its own (``start``). Subclasses set ``self._http = None``."""

    _http: JsonHttpServer | None

    def routes(self) -> list[HttpRoute]:
        """The routes this API answers."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started on its own, else empty."""
        return self._http.url if self._http is not None else ""

    def start(self, port: int = 0) -> str:
        """Serve on its own server; return the endpoint URL."""
        if self._http is None:
            self._http = JsonHttpServer(self.routes())
        return self._http.start(port)

    def stop(self) -> None:
        """Stop its own server (state is kept)."""
        if self._http is not None:
            self._http.stop()


def parse_json_request(body: bytes, message: object) -> None:
    """Parse a JSON request body into the protobuf ``message``; INVALID_ARGUMENT if it is not."""
    try:
        json_format.Parse(body.decode() or "{}", message, ignore_unknown_fields=False)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise RpcError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from None


def rpc_fault(status: str, message: str) -> Callable[[], RpcError]:
    """What an injected fault answers: a fresh ``RpcError(status, message)`` per call. The
    status is checked now, so a typo fails the test's set-up rather than the call."""
    RpcError(status, message)
    return lambda: RpcError(status, message)


# --- IAM policy rules -----------------------------------------------------------------

_ROLE = re.compile(r"(?:roles|(?:projects|organizations)/[^/]+/roles)/[A-Za-z0-9_.]{1,64}")
_EMAIL = r"[^@\s:?]+@[^@\s:?]+"
_MEMBER = re.compile(
    rf"(?:user|serviceAccount|group):{_EMAIL}"
    rf"|deleted:(?:user|serviceAccount|group):{_EMAIL}\?uid=\d+"
    r"|domain:[A-Za-z0-9.-]+"
    r"|(?:projectOwner|projectEditor|projectViewer):[a-z][-a-z0-9]{4,28}[a-z0-9]"
    r"|principal(?:Set)?://\S+"
    r"|allUsers|allAuthenticatedUsers")
_MASK_PATHS = frozenset({"bindings", "etag", "audit_configs", "version"})


def _condition_key(binding: policy_pb2.Binding) -> tuple[str, str, str, str]:
    cond = binding.condition
    return (binding.role, cond.title, cond.description, cond.expression)


def _withcond_role(binding: policy_pb2.Binding) -> str:
    digest = hashlib.sha256("\0".join(_condition_key(binding)).encode()).hexdigest()
    return f"{binding.role}_withcond_{digest[:20]}"


def has_conditions(bindings: Sequence[policy_pb2.Binding]) -> bool:
    """Whether any binding is conditional."""
    return any(b.HasField("condition") for b in bindings)


def normalize_bindings(bindings: Sequence[policy_pb2.Binding],
                       principal_exists: Callable[[str], bool] | None = None) -> list[policy_pb2.Binding]:
    """Validate ``bindings`` and return them as IAM stores them.

    Bindings with the same role and condition are merged, duplicate members dropped,
    and both sorted (roles, then members), so compare policies as sets, never by order.
    """
    merged: dict[tuple[str, str, str, str], tuple[policy_pb2.Binding, set[str]]] = {}
    for binding in bindings:
        if not _ROLE.fullmatch(binding.role) or "_withcond_" in binding.role:
            raise RpcError("INVALID_ARGUMENT", f"Role ({binding.role}) does not exist in the "
                           "resource's hierarchy.")
        if not binding.members:
            raise RpcError("INVALID_ARGUMENT", f"Binding for role {binding.role} has no members.")
        if binding.HasField("condition"):
            cond = binding.condition
            if not cond.expression.strip() or not cond.title.strip():
                raise RpcError("INVALID_ARGUMENT", f"Condition on role {binding.role} needs a title "
                               "and an expression.")
        for member in binding.members:
            if not _MEMBER.fullmatch(member):
                raise RpcError("INVALID_ARGUMENT",
                               f'Invalid principal {member!r}: policy members must be of the form '
                               '"<type>:<value>".')
            if (principal_exists is not None and member.startswith("serviceAccount:")
                    and not principal_exists(member)):
                raise RpcError("INVALID_ARGUMENT",
                               f"Service account {member.removeprefix('serviceAccount:')} does not exist.")
        key = _condition_key(binding)
        if key not in merged:
            stored = policy_pb2.Binding(role=binding.role)
            if binding.HasField("condition"):
                stored.condition.CopyFrom(binding.condition)
            merged[key] = (stored, set())
        merged[key][1].update(binding.members)
    result = []
    for key in sorted(merged, key=lambda k: (k[0], k != (k[0], "", "", ""), k[1:])):
        stored, members = merged[key]
        stored.members.extend(sorted(members))
        result.append(stored)
    return result


def render_policy(policy: policy_pb2.Policy, requested_version: int) -> policy_pb2.Policy:
    """``policy`` as a reader asking for ``requested_version`` sees it.

    A policy without conditions is version 1. A conditional policy read below version 3
    comes back as version 1 with each conditional role renamed ``ROLE_withcond_HASH``
    and its condition hidden, as real IAM does.
    """
    out = policy_pb2.Policy()
    out.CopyFrom(policy)
    conditional = has_conditions(policy.bindings)
    out.version = 3 if conditional and requested_version == 3 else 1
    if conditional and requested_version < 3:
        for binding in out.bindings:
            if binding.HasField("condition"):
                binding.role = _withcond_role(binding)
                binding.ClearField("condition")
    return out


@dataclass
class _PolicyState:
    current: policy_pb2.Policy
    # (visible from, policy), oldest first; the last entry is ``current``.
    history: list[tuple[float, policy_pb2.Policy]] = field(default_factory=list)


# --- the emulator ---------------------------------------------------------------------

_PROJECT_PATH = r"/v3/projects/(?P<project>[^/:]+)"


class ResourceManagerEmulator(Served):
    """Resource Manager v3 for projects and their IAM policies, over REST on 127.0.0.1.

    ``sandbox``: an unknown project is created on first reference (otherwise NOT_FOUND,
    or PERMISSION_DENIED with ``unknown_project_status``). ``propagation_delay``: seconds
    before a setIamPolicy becomes visible to getIamPolicy, read from ``clock`` (inject a
    fake one in tests: nothing here sleeps). ``principal_exists``: when given, a
    ``serviceAccount:`` member it rejects makes setIamPolicy fail as on GCP ("Service
    account ... does not exist"), e.g. wired to an IAM Admin emulator. ``extra_routes``:
    another API's routes served on the same port (the sandbox's Policy Analyzer).
    """

    def __init__(self, *, sandbox: bool = False, propagation_delay: float = 0.0,
                 clock: Clock = time.time, projects: ProjectRegistry | None = None,
                 unknown_project_status: UnknownProjectStatus = "NOT_FOUND",
                 principal_exists: Callable[[str], bool] | None = None,
                 extra_routes: Sequence[HttpRoute] = ()) -> None:
        self.sandbox = sandbox
        self.propagation_delay = propagation_delay
        self.unknown_project_status: UnknownProjectStatus = unknown_project_status
        self.principal_exists = principal_exists
        # A role's permissions by its name (the sandbox wires the IAM Admin emulator's
        # custom roles): what :meth:`permitted` grants through a binding. Unknown: none.
        self.role_permissions: Callable[[str], Sequence[str]] = lambda role: ()
        self.projects = projects or ProjectRegistry(clock)
        self.faults: FaultInjector[RpcError] = FaultInjector()
        self._clock = clock
        self._lock = threading.Lock()
        self._policies: dict[str, _PolicyState] = {}
        self._etag_counter = 0
        self._http = JsonHttpServer([
            HttpRoute("POST", re.compile(_PROJECT_PATH + ":getIamPolicy"), self._http_get_iam_policy),
            HttpRoute("POST", re.compile(_PROJECT_PATH + ":setIamPolicy"), self._http_set_iam_policy),
            HttpRoute("GET", re.compile(_PROJECT_PATH), self._http_get_project),
            HttpRoute("GET", re.compile(r"/v3/projects"), self._http_list_projects),
            HttpRoute("GET", re.compile(r"/v3/folders"), self._http_list_folders),
            *extra_routes,
        ])

    # lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started, else empty."""
        return self._http.url

    def start(self, port: int = 0) -> str:
        """Serve on ``port`` (0: a free one); return the endpoint URL."""
        return self._http.start(port)

    def stop(self) -> None:
        """Stop serving; state is kept (start again to serve it)."""
        self._http.stop()

    def add_project(self, project_id: str) -> Project:
        """Create ``project_id`` (idempotent)."""
        return self.projects.add(project_id)

    def client(self) -> ProjectsClient:
        """A real ``ProjectsClient`` (REST, anonymous credentials) pointed at this emulator."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.resourcemanager_v3 import ProjectsClient
        if not self.url:
            raise RuntimeError("start() the emulator before asking for a client")
        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return ProjectsClient(transport="rest", credentials=anonymous,
                              client_options={"api_endpoint": self.url})

    @property
    def calls(self) -> Counter[str]:
        """Calls served so far, by method name (``GetIamPolicy``, ``SetIamPolicy``, ``GetProject``,
        ``ListProjects``, ``ListFolders``)."""
        return self.faults.calls

    def inject_error(self, method: str, status: str, message: str = "injected by the emulator",
                     times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` fail with canonical ``status``."""
        self.faults.inject(method, rpc_fault(status, message), times)

    def policy(self, project_id: str) -> policy_pb2.Policy:
        """The latest policy of a known project, ignoring propagation (for assertions)."""
        project = self.projects.resolve(project_id, sandbox=False)
        with self._lock:
            current = self._state(project).current
            out = policy_pb2.Policy()
            out.CopyFrom(current)
            return out

    def permitted(self, project_id: str, member: str, permission: str, resource: str) -> bool:
        """IAM's access check on the project policy: whether a binding whose role holds
        ``permission`` names ``member`` and its condition (if any) holds for a request on
        ``resource`` (the name conditions see, e.g. ``projects/_/buckets/B/objects/O``) at
        this emulator's clock. Conditions are evaluated strictly (:mod:`.conditions`): a
        form we do not write grants nothing."""
        from .conditions import evaluate
        now = datetime.fromtimestamp(self._clock(), UTC)
        for binding in self.policy(project_id).bindings:
            if member not in binding.members or permission not in self.role_permissions(binding.role):
                continue
            if not binding.HasField("condition") or evaluate(binding.condition.expression,
                                                             resource=resource, now=now):
                return True
        return False

    # the calls, transport-neutral

    def get_project(self, name: str) -> dict[str, object]:
        """GetProject: the project as Resource Manager v3 JSON (a ``Project``)."""
        self.faults.enter("GetProject")
        project = self._project(name, "resourcemanager.projects.get")
        return self._project_json(project)

    def _project_json(self, project: Project) -> dict[str, object]:
        created = rfc3339(project.create_time)
        return {"name": project.name, "parent": self.projects.parent_of(project.project_id),
                "projectId": project.project_id,
                "state": _STATES[self.projects.state_of(project.project_id)],
                "displayName": project.project_id, "createTime": created,
                "updateTime": created, "etag": f'W/"{project.number:x}"', "labels": {}}

    def list_projects(self, parent: str, page_size: int, page_token: str,
                      show_deleted: bool) -> dict[str, object]:
        """ListProjects: the projects directly under ``parent`` (not below its subfolders),
        ACTIVE ones unless ``show_deleted``, a page at a time."""
        self.faults.enter("ListProjects")
        if not re.fullmatch(r"(folders|organizations)/\d+", parent):
            raise RpcError("INVALID_ARGUMENT", f"Invalid parent {parent!r}: expected folders/NUMBER "
                           "or organizations/NUMBER.")
        projects, _ = self.projects.children(parent)
        items = [self._project_json(p) for p in projects
                 if show_deleted or self.projects.state_of(p.project_id) == "ACTIVE"]
        return _paged("projects", items, page_size, page_token)

    def list_folders(self, parent: str, page_size: int, page_token: str,
                     show_deleted: bool) -> dict[str, object]:
        """ListFolders: the folders directly under ``parent``, a page at a time."""
        self.faults.enter("ListFolders")
        if not re.fullmatch(r"(folders|organizations)/\d+", parent):
            raise RpcError("INVALID_ARGUMENT", f"Invalid parent {parent!r}: expected folders/NUMBER "
                           "or organizations/NUMBER.")
        _, folders = self.projects.children(parent)
        items: list[dict[str, object]] = [
            {"name": name, "parent": pa, "displayName": display, "state": _STATES[state]}
            for name, pa, display, state in folders if show_deleted or state == "ACTIVE"]
        return _paged("folders", items, page_size, page_token)

    def get_iam_policy(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        """GetIamPolicy, honouring ``options.requested_policy_version`` and propagation."""
        self.faults.enter("GetIamPolicy")
        project = self._project(request.resource, "resourcemanager.projects.getIamPolicy")
        requested = request.options.requested_policy_version
        if requested not in (0, 1, 3):
            raise RpcError("INVALID_ARGUMENT", f"Invalid requested policy version: {requested}. "
                           "Valid values are 0, 1 and 3.")
        with self._lock:
            state = self._state(project)
            now = self._clock()
            visible = [i for i, (since, _) in enumerate(state.history) if since <= now]
            index = visible[-1] if visible else 0
            del state.history[:index]  # older versions can never be seen again
            return render_policy(state.history[0][1], requested)

    def set_iam_policy(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        """SetIamPolicy with IAM's checks; the answer is the stored policy (all of it)."""
        self.faults.enter("SetIamPolicy")
        project = self._project(request.resource, "resourcemanager.projects.setIamPolicy")
        incoming = request.policy
        paths = set(request.update_mask.paths) or {"bindings", "etag"}
        if unknown := paths - _MASK_PATHS:
            raise RpcError("INVALID_ARGUMENT", f"Invalid update_mask paths: {sorted(unknown)}.")
        if incoming.version not in (0, 1, 3):
            raise RpcError("INVALID_ARGUMENT", f"Invalid policy version: {incoming.version}. "
                           "Valid values are 0, 1 and 3.")
        bindings = normalize_bindings(incoming.bindings, self.principal_exists)
        if has_conditions(bindings) and incoming.version < 3:
            raise RpcError("INVALID_ARGUMENT", "Conditional role bindings require policy version 3; "
                           f"the policy says version {incoming.version}. For more information, please "
                           "refer to https://cloud.google.com/iam/docs/policies#versions")
        members = sum(len(b.members) for b in bindings)
        if members > MAX_POLICY_MEMBERS:
            raise RpcError("INVALID_ARGUMENT", f"The number of members in the policy ({members}) is "
                           f"larger than the maximum allowed size {MAX_POLICY_MEMBERS}.")
        with self._lock:
            state = self._state(project)
            current = state.current
            if incoming.etag and incoming.etag != current.etag:
                raise RpcError("ABORTED", f"{CONCURRENT_CHANGE} The request's ETag "
                               f"'{_b64(incoming.etag)}' did not match the current policy's ETag "
                               f"'{_b64(current.etag)}'.")
            if incoming.etag and has_conditions(current.bindings) and incoming.version < 3:
                # Without an etag IAM lets a version-1 write replace a conditional policy
                # (conditions lost); with one it refuses, as documented.
                raise RpcError("INVALID_ARGUMENT", f"Specified policy version ({incoming.version}) "
                               "cannot be less than the existing policy version (3). For more "
                               "information, please refer to "
                               "https://cloud.google.com/iam/docs/policies#versions")
            new = policy_pb2.Policy()
            new.bindings.extend(bindings if "bindings" in paths else current.bindings)
            new.audit_configs.extend(incoming.audit_configs if "audit_configs" in paths
                                     else current.audit_configs)
            new.version = 3 if has_conditions(new.bindings) else 1
            new.etag = self._next_etag()
            state.current = new
            state.history.append((self._clock() + self.propagation_delay, new))
            return render_policy(new, 3)

    # internals

    def _project(self, name: str, permission: str) -> Project:
        ref = name.removeprefix("projects/")
        if not name.startswith("projects/") or not ref or "/" in ref:
            raise RpcError("INVALID_ARGUMENT", f"Invalid resource name {name!r}; expected projects/ID.")
        return self.projects.resolve(ref, sandbox=self.sandbox, status=self.unknown_project_status,
                                     permission=permission)

    def _next_etag(self) -> bytes:
        self._etag_counter += 1
        return self._etag_counter.to_bytes(8, "big")

    def _state(self, project: Project) -> _PolicyState:
        """The policy state of ``project``, created empty on first use (lock held)."""
        state = self._policies.get(project.project_id)
        if state is None:
            empty = policy_pb2.Policy(version=1, etag=self._next_etag())
            state = _PolicyState(current=empty, history=[(float("-inf"), empty)])
            self._policies[project.project_id] = state
        return state

    # REST wire format

    def _http_get_iam_policy(self, match: re.Match[str], query: Query, body: bytes) -> str:
        request = iam_policy_pb2.GetIamPolicyRequest()
        parse_json_request(body, request)
        request.resource = f"projects/{match['project']}"
        return _to_json(self.get_iam_policy(request))

    def _http_set_iam_policy(self, match: re.Match[str], query: Query, body: bytes) -> str:
        request = iam_policy_pb2.SetIamPolicyRequest()
        parse_json_request(body, request)
        request.resource = f"projects/{match['project']}"
        return _to_json(self.set_iam_policy(request))

    def _http_get_project(self, match: re.Match[str], query: Query, body: bytes) -> str:
        return json.dumps(self.get_project(f"projects/{match['project']}"))

    def _http_list_projects(self, match: re.Match[str], query: Query, body: bytes) -> str:
        return json.dumps(self.list_projects(*_list_query(query)))

    def _http_list_folders(self, match: re.Match[str], query: Query, body: bytes) -> str:
        return json.dumps(self.list_folders(*_list_query(query)))


_STATES = {"ACTIVE": 1, "DELETE_REQUESTED": 2}
LIST_PAGE_SIZE = 50  # ListProjects' and ListFolders' default page size (at most 1,000)


def _list_query(query: Query) -> tuple[str, int, str, bool]:
    """(parent, page size, page token, show deleted) of a List call's query string."""
    def one(name: str) -> str:
        return (query.get(name) or [""])[0]
    try:
        size = int(one("pageSize") or LIST_PAGE_SIZE)
    except ValueError:
        raise RpcError("INVALID_ARGUMENT", f"Invalid pageSize {one('pageSize')!r}.") from None
    if not 0 <= size <= 1000:
        raise RpcError("INVALID_ARGUMENT", "pageSize must be between 0 and 1000.")
    return one("parent"), size or LIST_PAGE_SIZE, one("pageToken"), one("showDeleted") == "true"


def _paged(key: str, items: list[dict[str, object]], size: int, token: str) -> dict[str, object]:
    """One page of ``items`` under ``key``; the token is the offset of the next page."""
    if token and not token.isdigit():
        raise RpcError("INVALID_ARGUMENT", f"Invalid page token {token!r}.")
    start = int(token or 0)
    page: dict[str, object] = {key: items[start:start + size]}
    if start + size < len(items):
        page["nextPageToken"] = str(start + size)
    return page


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _to_json(message: object) -> str:
    # The client asks for integer enums ($alt=json;enum-encoding=int); policies have none.
    text: str = json_format.MessageToJson(message, use_integers_for_enums=True)
    return text
