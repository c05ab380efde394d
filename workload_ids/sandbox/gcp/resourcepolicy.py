"""The generic IAM policy service (``google.iam.v1.IAMPolicy``) over gRPC, in this process,
for the resources a workload identity is granted access to one by one.

On Google each service implements this same mixin at its own host (Pub/Sub at
``pubsub.googleapis.com:443``, Secret Manager at ``secretmanager.googleapis.com:443``...);
:class:`ResourcePolicyEmulator` serves all of them on one port, so a provider that talks
to them with the generic ``google.iam.v1.iam_policy_pb2_grpc.IAMPolicyStub(channel)``
runs unchanged. Requests and answers are the library's own messages
(``google.iam.v1.policy_pb2.Policy``, ``iam_policy_pb2.GetIamPolicyRequest``...);
refusals are gRPC status codes.

Resource names served (PROJECT is a project id or number, LOCATION a region such as
``us-central1`` or, for Artifact Registry, a multi-region such as ``us``):

- Pub/Sub ``projects/P/topics/T`` and ``projects/P/subscriptions/S``
- Secret Manager ``projects/P/secrets/S``
- Artifact Registry ``projects/P/locations/L/repositories/R``
- Cloud Run ``projects/P/locations/L/services/S``
- Cloud Functions ``projects/P/locations/L/functions/F``
- Cloud Tasks ``projects/P/locations/L/queues/Q``

The rules, shared with the service-account policies of the IAM Admin emulator
(:mod:`workload_ids.sandbox.gcp.iam`), which imports the helpers below:

- every policy has an etag; a policy never written has Google's ``ACAB``; a write with a
  stale etag is ``ABORTED`` (redo the whole read-modify-write); a write without one wins;
- conditional bindings only where Google accepts them (Secret Manager secrets and Cloud
  Run services, per cloud.google.com/iam/help/conditions/resource-policies), and then only
  in a version 3 policy; elsewhere a condition is ``INVALID_ARGUMENT``;
- members are checked: ``user:``, ``serviceAccount:``, ``group:`` (an email), ``domain:``,
  ``deleted:{user,serviceAccount,group}:EMAIL?uid=N``, workload and workforce identity
  federation ``principal://`` / ``principalSet://`` identifiers (project by *number*),
  and ``principal://goog/...`` forms; anything else is ``INVALID_ARGUMENT``;
- ``allUsers`` / ``allAuthenticatedUsers`` (and ``principalSet://goog/public:all``) are
  refused as the domain-restricted-sharing organization policy refuses them
  (``FAILED_PRECONDITION``) unless ``allow_public=True``;
- at most 1,500 principals in a policy; roles checked and bindings merged and sorted as
  Resource Manager does (:func:`~workload_ids.sandbox.gcp.resourcemanager.normalize_bindings`).

Where Google's code for a refusal is not documented, the choice is written beside it.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.iam.v1 import iam_policy_pb2, iam_policy_pb2_grpc, policy_pb2

from ..common.faults import FaultInjector
from ..common.grpc import GrpcEmulator
from .resourcemanager import (
    CONCURRENT_CHANGE,
    MAX_POLICY_MEMBERS,
    RpcError,
    has_conditions,
    normalize_bindings,
    render_policy,
    rpc_fault,
)

SERVICE = "google.iam.v1.IAMPolicy"
METHODS = ("GetIamPolicy", "SetIamPolicy", "TestIamPermissions")
# What Google answers for a policy never written (base64 "ACAB"); every write makes a new one.
EMPTY_POLICY_ETAG = b"\x00\x20\x01"
MASK_PATHS = frozenset({"bindings", "etag", "audit_configs", "version"})
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers", "principalSet://goog/public:all"})
DOMAIN_RESTRICTED = ("One or more users named in the policy do not belong to a permitted customer, "
                     "perhaps due to an organization policy.")

# --- members ----------------------------------------------------------------------------

_EMAIL = r"[^@\s:?/]+@[^@\s:?/]+\.[^@\s:?/]+"
_VALUE = r"\S+"  # a subject or attribute value: may hold '/' and ':' (GKE subjects, URLs)
_WORKLOAD_POOL = (r"projects/\d+/locations/global/workloadIdentityPools/"
                  r"(?:[a-z0-9-]{4,32}|[a-z][-a-z0-9]{4,28}[a-z0-9]\.svc\.id\.goog)")
_WORKFORCE_POOL = r"locations/global/workforcePools/[a-z][a-z0-9-]{4,61}[a-z0-9]"
_POOL = rf"(?:{_WORKLOAD_POOL}|{_WORKFORCE_POOL})"
_SET = (rf"(?:\*|group/{_VALUE}|attribute\.[a-z_][a-z0-9_]{{0,99}}/{_VALUE}"
        rf"|namespace/{_VALUE}|kubernetes\.(?:cluster|serviceaccount\.uid)/{_VALUE})")
MEMBER = re.compile(
    rf"(?:user|serviceAccount|group):{_EMAIL}"
    rf"|deleted:(?:user|serviceAccount|group):{_EMAIL}\?uid=\d+"
    r"|domain:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
    rf"|principal://iam\.googleapis\.com/{_POOL}/subject/{_VALUE}"
    rf"|principalSet://iam\.googleapis\.com/{_POOL}/{_SET}"
    rf"|principal://goog/subject/{_EMAIL}"
    rf"|principalSet://goog/group/{_EMAIL}"
    r"|principalSet://goog/cloudIdentityCustomerId/[A-Za-z0-9]+"
    r"|principalSet://cloudresourcemanager\.googleapis\.com/(?:projects|folders|organizations)/\d+"
    r"/type/[A-Za-z]+")
_POOL_BY_PROJECT_ID = re.compile(r"principal(?:Set)?://iam\.googleapis\.com/projects/([^/]*[^/0-9][^/]*)/")


def check_member(member: str, *, allow_public: bool = False) -> None:
    """Refuse a member IAM would refuse (:class:`RpcError`)."""
    if member in PUBLIC_MEMBERS:
        if allow_public:
            return
        raise RpcError("FAILED_PRECONDITION", DOMAIN_RESTRICTED)
    if MEMBER.fullmatch(member):
        return
    if match := _POOL_BY_PROJECT_ID.match(member):
        raise RpcError("INVALID_ARGUMENT",
                       f"Invalid principal {member!r}: identity pools are named by project number, "
                       f"not project id ({match.group(1)!r}).")
    raise RpcError("INVALID_ARGUMENT",
                   f'Invalid principal {member!r}: policy members must be of the form "<type>:<value>" '
                   "(user:, serviceAccount:, group:, domain:, deleted:...?uid=) or a principal:// or "
                   "principalSet:// identifier.")


# --- policy reads and writes (transport-neutral; callers hold their own lock) -----------

def read_policy(policy: policy_pb2.Policy, requested_version: int) -> policy_pb2.Policy:
    """GetIamPolicy's answer for the stored ``policy``."""
    if requested_version not in (0, 1, 3):
        raise RpcError("INVALID_ARGUMENT", f"Invalid requested policy version: {requested_version}. "
                       "Valid values are 0, 1 and 3.")
    return render_policy(policy, requested_version)


@dataclass(frozen=True, slots=True)
class PolicyWrite:
    """A SetIamPolicy request that passed the checks needing no state."""

    paths: frozenset[str]
    bindings: list[policy_pb2.Binding]
    policy: policy_pb2.Policy


def check_policy_write(request: iam_policy_pb2.SetIamPolicyRequest, *, conditions: bool,
                       allow_public: bool = False,
                       principal_exists: Callable[[str], bool] | None = None) -> PolicyWrite:
    """The checks of SetIamPolicy that need no state (call them outside any lock).

    ``conditions``: whether the resource type accepts conditional bindings.
    ``principal_exists``: when given, a ``serviceAccount:`` member it rejects is refused
    ("Service account ... does not exist"), as IAM does.
    """
    incoming = request.policy
    paths = frozenset(request.update_mask.paths) or frozenset({"bindings", "etag"})
    if unknown := paths - MASK_PATHS:
        raise RpcError("INVALID_ARGUMENT", f"Invalid update_mask paths: {sorted(unknown)}.")
    if incoming.version not in (0, 1, 3):
        raise RpcError("INVALID_ARGUMENT", f"Invalid policy version: {incoming.version}. "
                       "Valid values are 0, 1 and 3.")
    for binding in incoming.bindings:
        for member in binding.members:
            check_member(member, allow_public=allow_public)
    conditional = has_conditions(incoming.bindings)
    if conditional and not conditions:
        # Pub/Sub, Artifact Registry, Cloud Functions, Cloud Tasks: 400 INVALID_ARGUMENT.
        raise RpcError("INVALID_ARGUMENT", f"Conditions are not supported on {request.resource}: this "
                       "resource type does not accept conditional role bindings. See "
                       "https://cloud.google.com/iam/help/conditions/resource-policies")
    bindings = normalize_bindings(incoming.bindings, principal_exists)
    if conditional and incoming.version < 3:
        raise RpcError("INVALID_ARGUMENT", "Conditional role bindings require policy version 3; "
                       f"the policy says version {incoming.version}. For more information, please "
                       "refer to https://cloud.google.com/iam/docs/policies#versions")
    members = sum(len(b.members) for b in bindings)
    if members > MAX_POLICY_MEMBERS:
        raise RpcError("INVALID_ARGUMENT", f"The number of members in the policy ({members}) is "
                       f"larger than the maximum allowed size {MAX_POLICY_MEMBERS}.")
    return PolicyWrite(paths, bindings, incoming)


def apply_policy_write(current: policy_pb2.Policy, write: PolicyWrite, etag: bytes) -> policy_pb2.Policy:
    """The policy that replaces ``current`` (checking the etag); it gets ``etag``."""
    incoming = write.policy
    if incoming.etag and incoming.etag != current.etag:
        raise RpcError("ABORTED", CONCURRENT_CHANGE)
    if incoming.etag and has_conditions(current.bindings) and incoming.version < 3:
        # Without an etag IAM lets a version-1 write replace a conditional policy
        # (conditions lost); with one it refuses, as documented.
        raise RpcError("INVALID_ARGUMENT", f"Specified policy version ({incoming.version}) cannot be "
                       "less than the existing policy version (3). For more information, please refer "
                       "to https://cloud.google.com/iam/docs/policies#versions")
    new = policy_pb2.Policy()
    new.bindings.extend(write.bindings if "bindings" in write.paths else current.bindings)
    new.audit_configs.extend(incoming.audit_configs if "audit_configs" in write.paths
                             else current.audit_configs)
    new.version = 3 if has_conditions(new.bindings) else 1
    new.etag = etag
    return new


def empty_policy() -> policy_pb2.Policy:
    """The policy of a resource nobody has granted anything on yet."""
    return policy_pb2.Policy(version=1, etag=EMPTY_POLICY_ETAG)


def new_etag() -> bytes:
    """An etag for a written policy: 8 opaque bytes, as Google's (``BwW...``)."""
    return b"\x07" + secrets.token_bytes(7)


def check_permissions(permissions: Sequence[str], prefixes: Sequence[str]) -> list[str]:
    """Validate TestIamPermissions' permissions for a resource type taking ``prefixes``."""
    for permission in permissions:
        if "*" in permission:
            raise RpcError("INVALID_ARGUMENT", f"Permissions with wildcards (such as '*' or "
                           f"'storage.*') are not allowed: {permission!r}.")
        if not _PERMISSION.fullmatch(permission):
            raise RpcError("INVALID_ARGUMENT", f"Invalid permission {permission!r}.")
        if not permission.startswith(tuple(prefixes)):
            # Google's code for a permission of another resource type is not documented.
            raise RpcError("INVALID_ARGUMENT",
                           f"Permission {permission} is not valid for this resource.")
    return list(dict.fromkeys(permissions))


_PERMISSION = re.compile(r"[a-z][a-z0-9]*(\.[a-zA-Z][a-zA-Z0-9_-]*){2,}")

# --- resource types ---------------------------------------------------------------------

_PROJECT = r"(?:[a-z][-a-z0-9]{4,28}[a-z0-9]|\d{1,19})"
_LOCATION = r"[a-z]+(?:-[a-z]+[0-9]+)?"


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """One resource type with its own IAM policy."""

    label: str
    pattern: re.Pattern[str]
    permission_prefixes: tuple[str, ...]
    conditions: bool  # accepts conditional role bindings


KINDS: tuple[ResourceKind, ...] = (
    ResourceKind("Pub/Sub topic", re.compile(
        rf"projects/{_PROJECT}/topics/(?!goog)[A-Za-z][-A-Za-z0-9_.~+%]{{2,254}}"),
        ("pubsub.topics.",), conditions=False),
    ResourceKind("Pub/Sub subscription", re.compile(
        rf"projects/{_PROJECT}/subscriptions/(?!goog)[A-Za-z][-A-Za-z0-9_.~+%]{{2,254}}"),
        ("pubsub.subscriptions.",), conditions=False),
    ResourceKind("Secret Manager secret", re.compile(rf"projects/{_PROJECT}/secrets/[A-Za-z0-9_-]{{1,255}}"),
                 ("secretmanager.secrets.", "secretmanager.versions."), conditions=True),
    ResourceKind("Artifact Registry repository", re.compile(
        rf"projects/{_PROJECT}/locations/{_LOCATION}/repositories/[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?"),
        ("artifactregistry.",), conditions=False),
    ResourceKind("Cloud Run service", re.compile(
        rf"projects/{_PROJECT}/locations/{_LOCATION}/services/[a-z](?:[-a-z0-9]{{0,47}}[a-z0-9])?"),
        ("run.",), conditions=True),
    ResourceKind("Cloud Functions function", re.compile(
        rf"projects/{_PROJECT}/locations/{_LOCATION}/functions/[A-Za-z](?:[-A-Za-z0-9_]{{0,61}}[A-Za-z0-9])?"),
        ("cloudfunctions.functions.",), conditions=False),
    ResourceKind("Cloud Tasks queue", re.compile(
        rf"projects/{_PROJECT}/locations/{_LOCATION}/queues/[A-Za-z0-9-]{{1,100}}"),
        ("cloudtasks.queues.", "cloudtasks.tasks."), conditions=False),
)


def resource_kind(name: str) -> ResourceKind:
    """The type of the resource ``name``; INVALID_ARGUMENT (:class:`RpcError`) if none."""
    for kind in KINDS:
        if kind.pattern.fullmatch(name):
            return kind
    raise RpcError("INVALID_ARGUMENT", f"Invalid resource name {name!r}: not a Pub/Sub topic or "
                   "subscription, secret, Artifact Registry repository, Cloud Run service, Cloud "
                   "Functions function or Cloud Tasks queue name.")


# --- the emulator -----------------------------------------------------------------------

class ResourcePolicyEmulator(GrpcEmulator):
    """``google.iam.v1.IAMPolicy`` for many resource types on 127.0.0.1 over gRPC.

    ``sandbox``: any well-formed resource exists when first named; otherwise only those
    given to :meth:`add_resource` (or ``resources``) exist and others are NOT_FOUND.
    ``allow_public``: accept ``allUsers`` and ``allAuthenticatedUsers`` (refused by
    default, as under the domain-restricted-sharing organization policy).
    ``principal_exists``: when given, a ``serviceAccount:`` member it rejects is refused,
    e.g. :meth:`workload_ids.sandbox.gcp.iam.IamEmulator.principal_exists`.
    ``denied_permissions``: what TestIamPermissions says the caller lacks (everywhere).
    Thread-safe; state survives :meth:`stop` and :meth:`start`.
    """

    thread_name = "iam-policy-emulator"

    def __init__(self, *, sandbox: bool = False, resources: Iterable[str] = (),
                 allow_public: bool = False,
                 principal_exists: Callable[[str], bool] | None = None,
                 port: int = 0, workers: int = 8) -> None:
        self.sandbox = sandbox
        self.allow_public = allow_public
        self.principal_exists = principal_exists
        self.denied_permissions: set[str] = set()
        self.faults: FaultInjector[RpcError] = FaultInjector()
        self.host = ""
        self._port = port
        self._workers = workers
        self._lock = threading.Lock()
        self._policies: dict[str, policy_pb2.Policy] = {}  # existing resources only
        self._channels: list[grpc.Channel] = []
        for name in resources:
            self.add_resource(name)

    # -- life cycle --

    def stub(self) -> iam_policy_pb2_grpc.IAMPolicyStub:
        """A generic ``IAMPolicyStub`` on an insecure channel to this emulator."""
        if self._server is None:
            self.start()
        channel = grpc.insecure_channel(self.host)
        self._channels.append(channel)
        return iam_policy_pb2_grpc.IAMPolicyStub(channel)

    # -- set-up and inspection --

    @property
    def calls(self) -> Counter[str]:
        """Calls served so far, by method name (``GetIamPolicy``, ``SetIamPolicy``...)."""
        return self.faults.calls

    def inject_error(self, method: str, status_code: grpc.StatusCode | str, times: int = 1,
                     message: str = "injected by the emulator") -> None:
        """Make the next ``times`` calls of ``method`` fail with ``status_code``."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: one of {', '.join(METHODS)}")
        status = status_code.name if isinstance(status_code, grpc.StatusCode) else status_code
        self.faults.inject(method, rpc_fault(status, message), times)

    def add_resource(self, name: str) -> None:
        """Make ``name`` exist (idempotent; its policy is kept if it already did)."""
        try:
            resource_kind(name)
        except RpcError as exc:
            raise ValueError(exc.message) from None
        with self._lock:
            self._policies.setdefault(name, empty_policy())

    def remove_resource(self, name: str) -> None:
        """Delete ``name`` and its policy, as deleting the topic, secret... does."""
        with self._lock:
            del self._policies[name]

    def resources(self) -> list[str]:
        """The resources that exist (in sandbox mode: those named so far)."""
        with self._lock:
            return sorted(self._policies)

    def policy(self, resource: str) -> policy_pb2.Policy:
        """The stored policy of an existing resource, conditions included (for assertions)."""
        with self._lock:
            out = policy_pb2.Policy()
            out.CopyFrom(self._policies[resource])
            return out

    # -- the calls, transport-neutral (raise RpcError) --

    def get_iam_policy(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        """GetIamPolicy on a resource."""
        self.faults.enter("GetIamPolicy")
        resource_kind(request.resource)
        with self._lock:
            return read_policy(self._existing(request.resource), request.options.requested_policy_version)

    def set_iam_policy(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        """SetIamPolicy on a resource, checking the etag."""
        self.faults.enter("SetIamPolicy")
        kind = resource_kind(request.resource)
        with self._lock:
            self._existing(request.resource)  # NOT_FOUND before INVALID_ARGUMENT, as Google
        write = check_policy_write(request, conditions=kind.conditions, allow_public=self.allow_public,
                                   principal_exists=self.principal_exists)
        with self._lock:
            current = self._existing(request.resource)  # it may have gone meanwhile
            new = apply_policy_write(current, write, new_etag())
            self._policies[request.resource] = new
            return render_policy(new, 3)

    def test_iam_permissions(self, request: iam_policy_pb2.TestIamPermissionsRequest
                             ) -> iam_policy_pb2.TestIamPermissionsResponse:
        """TestIamPermissions on a resource."""
        self.faults.enter("TestIamPermissions")
        kind = resource_kind(request.resource)
        with self._lock:
            self._existing(request.resource)
        asked = check_permissions(list(request.permissions), kind.permission_prefixes)
        with self._lock:
            granted = [p for p in asked if p not in self.denied_permissions]
        return iam_policy_pb2.TestIamPermissionsResponse(permissions=granted)

    def _existing(self, name: str) -> policy_pb2.Policy:
        """The stored policy of ``name`` (lock held); NOT_FOUND if it does not exist."""
        policy = self._policies.get(name)
        if policy is None:
            if not self.sandbox:
                # Pub/Sub's words; the other services say much the same.
                raise RpcError("NOT_FOUND", f"Resource not found (resource={name}).")
            policy = self._policies[name] = empty_policy()
        return policy

    # -- the wire --

    def _handlers(self) -> grpc.GenericRpcHandler:
        table: dict[str, tuple[Callable[[Any], Any], Callable[[bytes], Any], Callable[[Any], bytes]]] = {
            "GetIamPolicy": (self.get_iam_policy, iam_policy_pb2.GetIamPolicyRequest.FromString,
                             policy_pb2.Policy.SerializeToString),
            "SetIamPolicy": (self.set_iam_policy, iam_policy_pb2.SetIamPolicyRequest.FromString,
                             policy_pb2.Policy.SerializeToString),
            "TestIamPermissions": (self.test_iam_permissions,
                                   iam_policy_pb2.TestIamPermissionsRequest.FromString,
                                   iam_policy_pb2.TestIamPermissionsResponse.SerializeToString),
        }
        return grpc.method_handlers_generic_handler(SERVICE, {
            method: grpc.unary_unary_rpc_method_handler(
                _behaviour(fn), request_deserializer=deserialize, response_serializer=serialize)
            for method, (fn, deserialize, serialize) in table.items()})


def _behaviour(fn: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request)
        except RpcError as exc:
            context.abort(grpc.StatusCode[exc.status], exc.message)
    return behaviour
