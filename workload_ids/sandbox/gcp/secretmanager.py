"""A local Secret Manager v1 that the real ``SecretManagerServiceClient`` talks to.

One state model, served two ways: over gRPC (the client's default transport, and the one
:meth:`SecretManagerEmulator.client` returns) and over REST. The transport matters to a
caller: over gRPC the client raises ``Aborted``, ``AlreadyExists`` and
``FailedPrecondition``; over REST it maps only the HTTP status, so both ABORTED and
ALREADY_EXISTS arrive as ``Conflict`` (409) and FAILED_PRECONDITION as ``BadRequest``
(400). The emulator reproduces both, because real GCP does.

Rules enforced as on GCP: secret ids, labels and annotations are validated; names in
answers carry the project *number* (``projects/123456789012/secrets/ID``) while requests
may use the id or the number; versions count from 1 and ``latest`` is the most recently
created version whatever its state (so a disabled latest fails with FAILED_PRECONDITION
rather than falling back); a destroyed version keeps its metadata but loses its payload;
payloads are at most 64 KiB and their optional CRC32C is checked; etags are checked on
update, delete, enable, disable and destroy (stale: ABORTED); lists are newest first,
paged, and filterable with the documented ``name:``, ``labels.KEY=``, ``labels.KEY:*``,
``state:`` forms joined by AND / OR / NOT. A replication's customer-managed key is
recorded as given, after the checks GCP makes on its name (a Cloud KMS crypto key; in
``global`` for automatic replication, in the replica's location otherwise); nothing is
encrypted with it. What is not emulated (regional secrets, rotation, topics, expiry, the
secret-level CMEK of regional secrets, delayed destruction, IAM on secrets) is refused
with UNIMPLEMENTED rather than silently accepted.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import grpc
from google.cloud.secretmanager_v1.types import resources, service
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import empty_pb2, json_format

from ..common.clock import Clock
from ..common.faults import FaultInjector
from ..common.grpc import GrpcServer
from ..common.served import Served
from .resourcemanager import (
    HttpRoute,
    JsonHttpServer,
    Project,
    ProjectRegistry,
    Query,
    RpcError,
    UnknownProjectStatus,
    rpc_fault,
)

# What workload_ids.markers.KEY_SECRET names (the sandbox seeds it; see _sandbox_signing_key).
SIGNING_KEY_SECRET = "workload-ids-signing-key"  # nosec B105: a name, not a value

if TYPE_CHECKING:
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
MAX_PAYLOAD_BYTES = 65536
MAX_LABELS = 64
MAX_ANNOTATIONS_BYTES = 16384
MAX_PAGE_SIZE = 25000

State = resources.SecretVersion.State
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_ANNOTATION_KEY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
_PROJECT_NAME = re.compile(r"projects/([^/]+)")
_KMS_KEY = re.compile(r"projects/[^/]+/locations/(?P<location>[^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+")
_SECRET_NAME = re.compile(r"projects/([^/]+)/secrets/([^/]+)")
_VERSION_NAME = re.compile(r"projects/([^/]+)/secrets/([^/]+)/versions/([^/]+)")
# Fields of a Secret this emulator does not model: refused, never silently dropped.
_UNEMULATED_FIELDS = ("rotation", "expire_time", "ttl", "version_destroy_ttl",
                      "customer_managed_encryption")
_UPDATABLE = frozenset({"labels", "annotations", "version_aliases"})
_IMMUTABLE = frozenset({"name", "create_time", "replication", "etag", "secret_type", "tags"})


def _check_kms_key(name: str, location: str) -> None:
    """A replication's customer-managed key: a crypto key's full name, in ``location``."""
    found = _KMS_KEY.fullmatch(name)
    if found is None:
        raise RpcError("INVALID_ARGUMENT", f"Invalid kms_key_name {name!r}: expected "
                       "projects/*/locations/*/keyRings/*/cryptoKeys/*.")
    if found["location"] != location:
        raise RpcError("INVALID_ARGUMENT", f"The Cloud KMS key {name} must be in location "
                       f"{location}.")


# --- CRC32C (Castagnoli), as Secret Manager computes it -------------------------------

def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """The CRC32C of ``data`` (what ``SecretPayload.data_crc32c`` carries)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- list filters ---------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|<=|>=|[=:<>])|(?P<paren>[()])'
                    r'|(?P<word>[^\s()=:!<>"]+))')
Lookup = Callable[[Any, str], str | Mapping[str, str] | None]
Predicate = Callable[[Any], bool]


def compile_filter(text: str, lookup: Lookup, fields: Iterable[str]) -> Predicate:
    """A predicate for the list-filter ``text`` (a subset of Google's filter language).

    ``name:abc`` (contains; ``*`` is a wildcard), ``name=FULL_NAME``, ``labels.KEY=VALUE``,
    ``labels.KEY:*`` or ``labels:KEY`` (has the label), ``!=``, ``NOT`` / ``-``, ``OR``
    (binds tighter than AND, as in AIP-160) and AND (or juxtaposition). Parentheses and
    ordering comparisons are refused with UNIMPLEMENTED: this is an emulator, and a
    filter it cannot evaluate exactly must not quietly return the wrong secrets.
    """
    allowed = set(fields)
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip():
                raise RpcError("INVALID_ARGUMENT", f"Invalid filter {text!r} at position {pos}.")
            break
        pos = match.end()
        kind = match.lastgroup
        if kind is None:
            continue
        tokens.append((kind, match.group(kind)))
    if any(kind == "paren" for kind, _ in tokens):
        raise RpcError("UNIMPLEMENTED", "Parentheses in list filters are not emulated.")

    def peek_word(word: str) -> bool:
        return bool(tokens) and tokens[0] == ("word", word)

    def comparison() -> Predicate:
        negate = False
        if peek_word("NOT"):
            tokens.pop(0)
            negate = True
        if len(tokens) < 3 or tokens[0][0] != "word" or tokens[1][0] != "op":
            raise RpcError("INVALID_ARGUMENT", f"Invalid filter {text!r}: expected FIELD OP VALUE.")
        name, op, (vkind, value) = tokens.pop(0)[1], tokens.pop(0)[1], tokens.pop(0)
        if name.startswith("-"):
            negate, name = not negate, name[1:]
        if vkind == "str":
            value = json.loads(value)
        elif vkind != "word":
            raise RpcError("INVALID_ARGUMENT", f"Invalid filter {text!r}: {value!r} is not a value.")
        base = name.split(".", 1)[0] if name.startswith("labels.") else name
        if base not in allowed:
            raise RpcError("INVALID_ARGUMENT", f"Invalid filter {text!r}: unknown field {name!r} "
                           f"(the emulator filters on {', '.join(sorted(allowed))}).")
        if op not in ("=", "!=", ":"):
            raise RpcError("UNIMPLEMENTED", f"Filter operator {op!r} is not emulated.")
        test = _comparison(name, op, value, lookup)
        return (lambda item: not test(item)) if negate else test

    def disjunction() -> Predicate:
        options = [comparison()]
        while peek_word("OR"):
            tokens.pop(0)
            options.append(comparison())
        return lambda item: any(option(item) for option in options)

    terms = [disjunction()] if tokens else []
    while tokens:
        if peek_word("AND"):
            tokens.pop(0)
        terms.append(disjunction())
    return lambda item: all(term(item) for term in terms)


def _comparison(name: str, op: str, value: str, lookup: Lookup) -> Predicate:
    def test(item: Any) -> bool:
        found = lookup(item, name)
        if isinstance(found, Mapping):  # labels:KEY
            result = op == ":" and (value == "*" or value in found)
        elif found is None:
            result = False
        elif op == ":":
            result = value == "*" or _contains(found, value)
        else:
            result = found == value
        return not result if op == "!=" else result
    return test


def _contains(haystack: str, needle: str) -> bool:
    if "*" not in needle:
        return needle in haystack
    return fnmatch.fnmatchcase(haystack, f"*{needle}*")


# --- validation -----------------------------------------------------------------------

def _check_labels(labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise RpcError("INVALID_ARGUMENT", f"A secret may have at most {MAX_LABELS} labels.")
    for key, value in labels.items():
        ok_key = (0 < len(key) <= 63 and len(key.encode()) <= 128
                  and unicodedata.category(key[0]) in ("Ll", "Lo")
                  and all(_label_char(c) for c in key))
        ok_value = len(value) <= 63 and len(value.encode()) <= 128 and all(_label_char(c) for c in value)
        if not ok_key or not ok_value:
            raise RpcError("INVALID_ARGUMENT", f"Invalid label {key!r}: {value!r}. Keys start with a "
                           "lowercase letter; keys and values use lowercase letters, digits, _ and -, "
                           "at most 63 characters.")


def _label_char(char: str) -> bool:
    return char in "_-" or unicodedata.category(char) in ("Ll", "Lo") or unicodedata.category(
        char).startswith("N")


def _check_annotations(annotations: Mapping[str, str]) -> None:
    total = 0
    for key, value in annotations.items():
        if not _ANNOTATION_KEY.fullmatch(key) or len(key.encode()) > 128:
            raise RpcError("INVALID_ARGUMENT", f"Invalid annotation key {key!r}: 1-63 characters, "
                           "alphanumeric at both ends, with - _ . in between.")
        total += len(key.encode()) + len(value.encode())
    if total >= MAX_ANNOTATIONS_BYTES:
        raise RpcError("INVALID_ARGUMENT", "The total size of annotation keys and values must be "
                       "less than 16KiB.")


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


M = TypeVar("M")


def _copy(message: M) -> M:
    kind: Any = type(message)
    copied: M = kind.deserialize(kind.serialize(message))
    return copied


# --- state ----------------------------------------------------------------------------

@dataclass
class _Version:
    number: int
    create_time: float
    etag: str
    data: bytes | None
    crc: int
    client_checksum: bool
    state: int = State.ENABLED
    destroy_time: float | None = None


@dataclass
class _Secret:
    project: Project
    secret_id: str
    seq: int
    message: resources.Secret  # as returned: name (with the number), times, etag, fields
    versions: list[_Version] = field(default_factory=list)
    policy: policy_pb2.Policy | None = None  # None: nobody was granted anything on it

    @property
    def name(self) -> str:
        return f"{self.project.name}/secrets/{self.secret_id}"


@dataclass(frozen=True)
class _Method:
    request: Any  # the proto-plus request class
    response: Any  # the proto-plus response class, or None for google.protobuf.Empty
    handler: Callable[[Any], Any]


class _Pb:
    """A raw protobuf request class with proto-plus's ``deserialize`` (the IAM calls)."""

    def __init__(self, kind: Any) -> None:
        self.deserialize = kind.FromString


@dataclass(frozen=True)
class _Rest:
    http_method: str
    pattern: str  # named groups are request fields; "a__b" sets field b inside a
    rpc: str
    body: str | None  # None, "*" (the whole request) or the request field the body fills


_P = r"(?:projects/[^/:]+)"
_S = rf"(?:{_P}/secrets/[^/:]+)"
_V = rf"(?:{_S}/versions/[^/:]+)"
_REST = (
    _Rest("GET", rf"/v1/(?P<parent>{_P})/secrets", "ListSecrets", None),
    _Rest("POST", rf"/v1/(?P<parent>{_P})/secrets", "CreateSecret", "secret"),
    _Rest("GET", rf"/v1/(?P<name>{_S})", "GetSecret", None),
    _Rest("PATCH", rf"/v1/(?P<secret__name>{_S})", "UpdateSecret", "secret"),
    _Rest("DELETE", rf"/v1/(?P<name>{_S})", "DeleteSecret", None),
    _Rest("POST", rf"/v1/(?P<parent>{_S}):addVersion", "AddSecretVersion", "*"),
    _Rest("GET", rf"/v1/(?P<parent>{_S})/versions", "ListSecretVersions", None),
    _Rest("GET", rf"/v1/(?P<name>{_V})", "GetSecretVersion", None),
    _Rest("GET", rf"/v1/(?P<name>{_V}):access", "AccessSecretVersion", None),
    _Rest("POST", rf"/v1/(?P<name>{_V}):disable", "DisableSecretVersion", "*"),
    _Rest("POST", rf"/v1/(?P<name>{_V}):enable", "EnableSecretVersion", "*"),
    _Rest("POST", rf"/v1/(?P<name>{_V}):destroy", "DestroySecretVersion", "*"),
)


class SecretManagerEmulator(Served):
    """Secret Manager v1 on 127.0.0.1, over gRPC and REST, in background threads.

    ``sandbox``: an unknown project is created on first reference (otherwise NOT_FOUND,
    or PERMISSION_DENIED with ``unknown_project_status``). ``clock`` stamps create and
    destroy times. Share ``projects`` with the other GCP emulators so a project added
    once exists in all. State is guarded by one lock: any number of client threads.
    """

    def __init__(self, *, sandbox: bool = False, clock: Clock = time.time,
                 projects: ProjectRegistry | None = None,
                 unknown_project_status: UnknownProjectStatus = "NOT_FOUND",
                 default_page_size: int = MAX_PAGE_SIZE) -> None:
        self.sandbox = sandbox
        self.unknown_project_status: UnknownProjectStatus = unknown_project_status
        self.default_page_size = default_page_size
        self.projects = projects or ProjectRegistry(clock)
        self.faults: FaultInjector[RpcError] = FaultInjector()
        self._clock = clock
        self._lock = threading.RLock()
        self._secrets: dict[tuple[str, str], _Secret] = {}
        self._seq = 0
        self._etags = 0
        self._methods: dict[str, _Method] = {
            "ListSecrets": _Method(service.ListSecretsRequest, service.ListSecretsResponse,
                                   self.list_secrets),
            "CreateSecret": _Method(service.CreateSecretRequest, resources.Secret, self.create_secret),
            "GetSecret": _Method(service.GetSecretRequest, resources.Secret, self.get_secret),
            "UpdateSecret": _Method(service.UpdateSecretRequest, resources.Secret, self.update_secret),
            "DeleteSecret": _Method(service.DeleteSecretRequest, None, self.delete_secret),
            "AddSecretVersion": _Method(service.AddSecretVersionRequest, resources.SecretVersion,
                                        self.add_secret_version),
            "ListSecretVersions": _Method(service.ListSecretVersionsRequest,
                                          service.ListSecretVersionsResponse, self.list_secret_versions),
            "GetSecretVersion": _Method(service.GetSecretVersionRequest, resources.SecretVersion,
                                        self.get_secret_version),
            "AccessSecretVersion": _Method(service.AccessSecretVersionRequest,
                                           service.AccessSecretVersionResponse,
                                           self.access_secret_version),
            "DisableSecretVersion": _Method(service.DisableSecretVersionRequest, resources.SecretVersion,
                                            self.disable_secret_version),
            "EnableSecretVersion": _Method(service.EnableSecretVersionRequest, resources.SecretVersion,
                                           self.enable_secret_version),
            "DestroySecretVersion": _Method(service.DestroySecretVersionRequest, resources.SecretVersion,
                                            self.destroy_secret_version),
            "GetIamPolicy": _Method(_Pb(iam_policy_pb2.GetIamPolicyRequest), None, self.get_iam_policy),
            "SetIamPolicy": _Method(_Pb(iam_policy_pb2.SetIamPolicyRequest), None, self.set_iam_policy),
        }
        self._grpc = GrpcServer(lambda: grpc.method_handlers_generic_handler(
            SERVICE, {name: self._grpc_handler(name, method) for name, method in self._methods.items()}),
            workers=16, thread_name="gcp-sm-emulator")
        self._channels: list[grpc.Channel] = []
        self._http = JsonHttpServer([
            HttpRoute(r.http_method, re.compile(r.pattern), self._rest_handler(r)) for r in _REST])
        self.grpc_target = ""

    # lifecycle

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:PORT`` for a REST client once started, else empty."""
        return self._http.url

    def start(self, port: int = 0, rest_port: int = 0) -> str:
        """Serve gRPC on ``port`` and REST on ``rest_port`` (0: free ones).

        Returns the gRPC endpoint ``127.0.0.1:PORT`` (see :attr:`rest_url` for REST).
        """
        self.grpc_target = self._grpc.start(port)
        self._http.start(rest_port)
        return self.grpc_target

    def stop(self) -> None:
        """Stop serving and close the channels of clients made by :meth:`client`."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._grpc.stop(wait=5)
        self.grpc_target = ""
        self._http.stop()

    def add_project(self, project_id: str) -> Project:
        """Create ``project_id`` (idempotent)."""
        return self.projects.add(project_id)

    def client(self, transport: Literal["grpc", "rest"] = "grpc") -> SecretManagerServiceClient:
        """A real ``SecretManagerServiceClient`` pointed at this emulator, anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.secretmanager_v1 import SecretManagerServiceClient
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )
        if not self.grpc_target:
            raise RuntimeError("start() the emulator before asking for a client")
        if transport == "rest":
            anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
            return SecretManagerServiceClient(transport="rest", credentials=anonymous,
                                              client_options={"api_endpoint": self.rest_url})
        # A plain-text channel: the client's own would insist on TLS and Google credentials.
        channel = grpc.insecure_channel(self.grpc_target)
        self._channels.append(channel)
        return SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))

    @property
    def calls(self) -> Counter[str]:
        """Calls served so far, by method name (``AccessSecretVersion``...)."""
        return self.faults.calls

    def inject_error(self, method: str, status: str, message: str = "injected by the emulator",
                     times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` fail with canonical ``status``."""
        self.faults.inject(method, rpc_fault(status, message), times)

    # secrets

    def create_secret(self, request: service.CreateSecretRequest) -> resources.Secret:
        """CreateSecret."""
        self.faults.enter("CreateSecret")
        project = self._project(request.parent, "secretmanager.secrets.create")
        if not _SECRET_ID.fullmatch(request.secret_id):
            raise RpcError("INVALID_ARGUMENT", f"Invalid secret id {request.secret_id!r}: 1-255 "
                           "letters, digits, - and _.")
        given = request.secret
        raw = resources.Secret.pb(given)
        for name in _UNEMULATED_FIELDS:
            if raw.HasField(name):
                raise RpcError("UNIMPLEMENTED", f"Secret.{name} is not emulated.")
        if raw.topics or raw.tags or raw.secret_type:
            raise RpcError("UNIMPLEMENTED", "Secret topics, tags and types are not emulated.")
        kind = resources.Replication.pb(given.replication).WhichOneof("replication")
        if kind is None:
            raise RpcError("INVALID_ARGUMENT", "Secret.replication must be specified.")
        if kind == "user_managed":
            replicas = given.replication.user_managed.replicas
            if not replicas or any(not r.location for r in replicas):
                raise RpcError("INVALID_ARGUMENT", "User-managed replication needs at least one "
                               "replica, each with a location.")
        replication = resources.Replication.pb(given.replication)
        if replication.automatic.HasField("customer_managed_encryption"):
            _check_kms_key(replication.automatic.customer_managed_encryption.kms_key_name, "global")
        for replica in replication.user_managed.replicas:
            if replica.HasField("customer_managed_encryption"):
                _check_kms_key(replica.customer_managed_encryption.kms_key_name, replica.location)
        _check_labels(given.labels)
        _check_annotations(given.annotations)
        with self._lock:
            key = (project.project_id, request.secret_id)
            name = f"{project.name}/secrets/{request.secret_id}"
            if key in self._secrets:
                raise RpcError("ALREADY_EXISTS", f"Secret [{name}] already exists.")
            self._check_aliases(given.version_aliases, [], name)
            self._seq += 1
            stored = resources.Secret(
                name=name, replication=given.replication, create_time=_timestamp(self._clock()),
                labels=dict(given.labels), annotations=dict(given.annotations),
                version_aliases=dict(given.version_aliases), etag=self._next_etag())
            secret = _Secret(project, request.secret_id, self._seq, stored)
            self._secrets[key] = secret
            return _copy(stored)

    def get_secret(self, request: service.GetSecretRequest) -> resources.Secret:
        """GetSecret."""
        self.faults.enter("GetSecret")
        with self._lock:
            return _copy(self._secret(request.name, "secretmanager.secrets.get").message)

    def update_secret(self, request: service.UpdateSecretRequest) -> resources.Secret:
        """UpdateSecret: labels, annotations and version aliases, by update mask and etag."""
        self.faults.enter("UpdateSecret")
        paths = list(request.update_mask.paths)
        if not paths:
            raise RpcError("INVALID_ARGUMENT", "update_mask is required.")
        for path in paths:
            if path in _IMMUTABLE:
                raise RpcError("INVALID_ARGUMENT", f"Secret.{path} cannot be updated.")
            if path not in _UPDATABLE:
                known = path in resources.Secret.meta.fields
                raise RpcError("UNIMPLEMENTED" if known else "INVALID_ARGUMENT",
                               f"Updating Secret.{path} is not emulated." if known
                               else f"Invalid update_mask path {path!r}.")
        given = request.secret
        if "labels" in paths:
            _check_labels(given.labels)
        if "annotations" in paths:
            _check_annotations(given.annotations)
        with self._lock:
            secret = self._secret(given.name, "secretmanager.secrets.update")
            self._check_etag(given.etag, secret.message.etag, f"Secret [{secret.name}]")
            if "version_aliases" in paths:
                self._check_aliases(given.version_aliases, secret.versions, secret.name)
            target, source = resources.Secret.pb(secret.message), resources.Secret.pb(given)
            for path in paths:
                getattr(target, path).clear()
                getattr(target, path).update(getattr(source, path))
            secret.message.etag = self._next_etag()
            return _copy(secret.message)

    def delete_secret(self, request: service.DeleteSecretRequest) -> empty_pb2.Empty:
        """DeleteSecret, with all its versions."""
        self.faults.enter("DeleteSecret")
        with self._lock:
            secret = self._secret(request.name, "secretmanager.secrets.delete")
            self._check_etag(request.etag, secret.message.etag, f"Secret [{secret.name}]")
            del self._secrets[(secret.project.project_id, secret.secret_id)]
            return empty_pb2.Empty()

    def list_secrets(self, request: service.ListSecretsRequest) -> service.ListSecretsResponse:
        """ListSecrets: newest first, paged, filtered."""
        self.faults.enter("ListSecrets")
        project = self._project(request.parent, "secretmanager.secrets.list")
        keep = compile_filter(request.filter, _secret_field, ("name", "labels")) \
            if request.filter else None
        with self._lock:
            mine = [s for s in self._secrets.values() if s.project == project]
            mine.sort(key=lambda s: s.seq, reverse=True)
            matching = [s for s in mine if keep is None or keep(s)]
            page, token = self._page(matching, request.page_size, request.page_token,
                                     f"{project.name}|{request.filter}", lambda s: s.seq)
            return service.ListSecretsResponse(
                secrets=[_copy(s.message) for s in page], next_page_token=token,
                total_size=0 if request.filter else len(mine))

    # IAM on one secret (gRPC only)

    def get_iam_policy(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        """GetIamPolicy of a secret."""
        from .resourcepolicy import empty_policy, read_policy
        self.faults.enter("GetIamPolicy")
        with self._lock:
            secret = self._secret(request.resource, "secretmanager.secrets.getIamPolicy")
            return read_policy(secret.policy or empty_policy(), request.options.requested_policy_version)

    def set_iam_policy(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        """SetIamPolicy of a secret (conditions allowed, as Secret Manager does)."""
        from .resourcepolicy import apply_policy_write, check_policy_write, empty_policy, new_etag
        self.faults.enter("SetIamPolicy")
        with self._lock:
            self._secret(request.resource, "secretmanager.secrets.setIamPolicy")
        write = check_policy_write(request, conditions=True)
        with self._lock:
            secret = self._secret(request.resource, "secretmanager.secrets.setIamPolicy")
            secret.policy = apply_policy_write(secret.policy or empty_policy(), write, new_etag())
            out = policy_pb2.Policy()
            out.CopyFrom(secret.policy)
            return out

    # versions

    def add_secret_version(self, request: service.AddSecretVersionRequest) -> resources.SecretVersion:
        """AddSecretVersion, checking the payload's size and optional CRC32C."""
        self.faults.enter("AddSecretVersion")
        data = request.payload.data
        if not data:
            raise RpcError("INVALID_ARGUMENT", "Secret Payload cannot be empty.")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise RpcError("INVALID_ARGUMENT", f"Secret Payload is {len(data)} bytes; the limit is "
                           f"{MAX_PAYLOAD_BYTES} bytes (64 KiB).")
        checksum = crc32c(data)
        given = "data_crc32c" in request.payload
        if given and request.payload.data_crc32c != checksum:
            raise RpcError("INVALID_ARGUMENT", "Checksum mismatch: data_crc32c does not match the "
                           "CRC32C of the received data; the payload may have been corrupted.")
        with self._lock:
            secret = self._secret(request.parent, "secretmanager.versions.add")
            version = _Version(len(secret.versions) + 1, self._clock(), self._next_etag(), bytes(data),
                               checksum, given)
            secret.versions.append(version)
            return self._version_message(secret, version)

    def get_secret_version(self, request: service.GetSecretVersionRequest) -> resources.SecretVersion:
        """GetSecretVersion (``latest`` and aliases allowed)."""
        self.faults.enter("GetSecretVersion")
        with self._lock:
            secret, version = self._version(request.name, "secretmanager.versions.get")
            return self._version_message(secret, version)

    def access_secret_version(
            self, request: service.AccessSecretVersionRequest) -> service.AccessSecretVersionResponse:
        """AccessSecretVersion: the payload of an ENABLED version (``latest`` and aliases allowed)."""
        self.faults.enter("AccessSecretVersion")
        with self._lock:
            secret, version = self._version(request.name, "secretmanager.versions.access")
            name = f"{secret.name}/versions/{version.number}"
            if version.state != State.ENABLED or version.data is None:
                raise RpcError("FAILED_PRECONDITION",
                               f"Secret Version [{name}] is in {State(version.state).name} state.")
            return service.AccessSecretVersionResponse(
                name=name, payload=resources.SecretPayload(data=version.data, data_crc32c=version.crc))

    def list_secret_versions(
            self, request: service.ListSecretVersionsRequest) -> service.ListSecretVersionsResponse:
        """ListSecretVersions: newest first, paged, filtered (``state:ENABLED``...)."""
        self.faults.enter("ListSecretVersions")
        keep = compile_filter(request.filter, _version_field, ("name", "state")) \
            if request.filter else None
        with self._lock:
            secret = self._secret(request.parent, "secretmanager.versions.list")
            rows = [(secret, v) for v in reversed(secret.versions)]
            matching = [row for row in rows if keep is None or keep(row)]
            page, token = self._page(matching, request.page_size, request.page_token,
                                     f"{secret.name}|{request.filter}", lambda row: row[1].number)
            return service.ListSecretVersionsResponse(
                versions=[self._version_message(s, v) for s, v in page], next_page_token=token,
                total_size=0 if request.filter else len(rows))

    def disable_secret_version(
            self, request: service.DisableSecretVersionRequest) -> resources.SecretVersion:
        """DisableSecretVersion: payload kept, access refused until enabled again."""
        self.faults.enter("DisableSecretVersion")
        return self._change_state(request.name, request.etag, State.DISABLED, "disable")

    def enable_secret_version(self, request: service.EnableSecretVersionRequest) -> resources.SecretVersion:
        """EnableSecretVersion."""
        self.faults.enter("EnableSecretVersion")
        return self._change_state(request.name, request.etag, State.ENABLED, "enable")

    def destroy_secret_version(
            self, request: service.DestroySecretVersionRequest) -> resources.SecretVersion:
        """DestroySecretVersion: the payload is gone for good; the version stays, DESTROYED."""
        self.faults.enter("DestroySecretVersion")
        return self._change_state(request.name, request.etag, State.DESTROYED, "destroy")

    # internals

    def _change_state(self, name: str, etag: str, state: int, verb: str) -> resources.SecretVersion:
        match = _VERSION_NAME.fullmatch(name)
        if match is not None and not match[3].isdigit():
            raise RpcError("INVALID_ARGUMENT", f"{verb} needs a version number, not {match[3]!r}.")
        with self._lock:
            secret, version = self._version(name, f"secretmanager.versions.{verb}")
            label = f"Secret Version [{secret.name}/versions/{version.number}]"
            self._check_etag(etag, version.etag, label)
            if version.state == State.DESTROYED:
                raise RpcError("FAILED_PRECONDITION", f"{label} is in DESTROYED state.")
            if version.state != state:
                version.state = state
                version.etag = self._next_etag()
                if state == State.DESTROYED:
                    version.data, version.destroy_time = None, self._clock()
            return self._version_message(secret, version)

    def _project(self, parent: str, permission: str) -> Project:
        if "/locations/" in parent:
            raise RpcError("UNIMPLEMENTED", "Regional secrets (projects/*/locations/*) are not emulated.")
        match = _PROJECT_NAME.fullmatch(parent)
        if match is None:
            raise RpcError("INVALID_ARGUMENT", f"Invalid parent {parent!r}; expected projects/PROJECT.")
        return self.projects.resolve(match[1], sandbox=self.sandbox,
                                     status=self.unknown_project_status, permission=permission)

    def _secret(self, name: str, permission: str) -> _Secret:
        """The secret ``name`` (lock held)."""
        if "/locations/" in name:
            raise RpcError("UNIMPLEMENTED", "Regional secrets (projects/*/locations/*) are not emulated.")
        match = _SECRET_NAME.fullmatch(name) or _VERSION_NAME.fullmatch(name)
        if match is None:
            raise RpcError("INVALID_ARGUMENT", f"Invalid resource name {name!r}.")
        project = self._project(f"projects/{match[1]}", permission)
        secret = self._secrets.get((project.project_id, match[2]))
        if secret is None and self.sandbox and match[2] == SIGNING_KEY_SECRET and \
                permission == "secretmanager.versions.access":
            # Seeded when the tool first reads it (bootstrap, which looks with GetSecret,
            # still finds none in a fresh sandbox project and makes it itself).
            secret = self._sandbox_signing_key(project)
        if secret is None:
            raise RpcError("NOT_FOUND", f"Secret [{project.name}/secrets/{match[2]}] not found.")
        return secret

    def _sandbox_signing_key(self, project: Project) -> _Secret:
        """The sandbox's projects appear on first use, so each gets the marker signing key
        `workload-ids bootstrap --apply` would make (the same annotation and IAM policy,
        for the default config) on first use too (lock held)."""
        from pathlib import Path

        from ...bootstrap.gcp import signing_key
        from ...config import Config, ConfigFile
        from ...signing import new_key_material
        key = signing_key(Config(ConfigFile(), Path.cwd(), None), project.project_id)
        self._seq += 1
        stored = resources.Secret(
            name=f"{project.name}/secrets/{SIGNING_KEY_SECRET}",
            replication=resources.Replication(automatic=resources.Replication.Automatic()),
            create_time=_timestamp(self._clock()), annotations=dict(key["annotations"]),
            etag=self._next_etag())
        secret = _Secret(project, SIGNING_KEY_SECRET, self._seq, stored)
        data = new_key_material().encode()
        secret.versions.append(_Version(1, self._clock(), self._next_etag(), data, crc32c(data), False))
        secret.policy = policy_pb2.Policy(version=1)
        for b in key["bindings"]:
            secret.policy.bindings.add(role=b["role"], members=b["members"])
        self._secrets[(project.project_id, SIGNING_KEY_SECRET)] = secret
        return secret

    def _version(self, name: str, permission: str) -> tuple[_Secret, _Version]:
        """The secret and version ``name`` points at (lock held)."""
        match = _VERSION_NAME.fullmatch(name)
        if match is None:
            raise RpcError("INVALID_ARGUMENT", f"Invalid secret version name {name!r}.")
        secret = self._secret(name, permission)
        ref = match[3]
        if ref == "latest":
            if not secret.versions:
                raise RpcError("NOT_FOUND", f"Secret [{secret.name}] not found or has no versions.")
            return secret, secret.versions[-1]
        number = int(ref) if ref.isdigit() else secret.message.version_aliases.get(ref, 0)
        if not 1 <= number <= len(secret.versions):
            raise RpcError("NOT_FOUND", f"Secret Version [{secret.name}/versions/{ref}] not found.")
        return secret, secret.versions[number - 1]

    def _version_message(self, secret: _Secret, version: _Version) -> resources.SecretVersion:
        replication = secret.message.replication
        if resources.Replication.pb(replication).WhichOneof("replication") == "user_managed":
            status = resources.ReplicationStatus(user_managed=resources.ReplicationStatus.UserManagedStatus(
                replicas=[resources.ReplicationStatus.UserManagedStatus.ReplicaStatus(location=r.location)
                          for r in replication.user_managed.replicas]))
        else:
            status = resources.ReplicationStatus(automatic=resources.ReplicationStatus.AutomaticStatus())
        message = resources.SecretVersion(
            name=f"{secret.name}/versions/{version.number}", create_time=_timestamp(version.create_time),
            state=version.state, etag=version.etag, replication_status=status,
            client_specified_payload_checksum=version.client_checksum)
        if version.destroy_time is not None:
            message.destroy_time = _timestamp(version.destroy_time)
        return message

    def _check_aliases(self, aliases: Mapping[str, int], versions: Sequence[_Version], name: str) -> None:
        if len(aliases) > 50:
            raise RpcError("INVALID_ARGUMENT", "A secret may have at most 50 version aliases.")
        for alias, number in aliases.items():
            if not _ALIAS.fullmatch(alias) or alias in ("latest", "NEW"):
                raise RpcError("INVALID_ARGUMENT", f"Invalid version alias {alias!r}.")
            if not 1 <= number <= len(versions):
                raise RpcError("INVALID_ARGUMENT", f"Version alias {alias!r} points at version {number}, "
                               f"which {name} does not have.")

    @staticmethod
    def _check_etag(given: str, current: str, what: str) -> None:
        if given and given != current:
            raise RpcError("ABORTED", f"The etag {given} does not match the current etag {current} of "
                           f"{what}; read it again and retry.")

    def _next_etag(self) -> str:
        self._etags += 1
        return f'"{self._etags:014x}"'  # real etags are quoted hex strings too

    def _page(self, items: list[M], size: int, token: str, scope: str,
              key: Callable[[M], int]) -> tuple[list[M], str]:
        """One page of ``items`` (sorted by ``key``, descending) and the next page's token.

        Tokens name the last item returned, so secrets created between pages neither
        repeat nor shift the next page; a token is only valid for the same list and filter.
        """
        if size < 0:
            raise RpcError("INVALID_ARGUMENT", "page_size must not be negative.")
        size = min(size or self.default_page_size, MAX_PAGE_SIZE)
        fingerprint = hashlib.sha256(scope.encode()).hexdigest()[:16]
        if token:
            try:
                after, scope_of_token = json.loads(base64.urlsafe_b64decode(token.encode()))
                valid = scope_of_token == fingerprint and isinstance(after, int)
            except ValueError:
                valid = False
            if not valid:
                raise RpcError("INVALID_ARGUMENT", "Invalid page token.")
            items = [item for item in items if key(item) < after]
        page = items[:size]
        if len(items) <= size:
            return page, ""
        next_token = json.dumps([key(page[-1]), fingerprint]).encode()
        return page, base64.urlsafe_b64encode(next_token).decode()

    # wire formats

    def _grpc_handler(self, name: str, method: _Method) -> grpc.RpcMethodHandler:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return method.handler(request)
            except RpcError as exc:
                context.abort(grpc.StatusCode[exc.status], exc.message)

        def serialize(message: Any) -> bytes:
            data: bytes = message.SerializeToString() if method.response is None \
                else method.response.serialize(message)
            return data

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=method.request.deserialize, response_serializer=serialize)

    def _rest_handler(self, rest: _Rest) -> Callable[[re.Match[str], Query, bytes], str]:
        method = self._methods[rest.rpc]

        def handle(match: re.Match[str], query: Query, body: bytes) -> str:
            fields: dict[str, Any] = {}
            if rest.body is not None:
                try:
                    parsed = json.loads(body or b"{}")
                except ValueError as exc:
                    raise RpcError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from None
                fields = parsed if rest.body == "*" else {rest.body: parsed}
            for key, values in query.items():
                if not key.startswith("$"):  # $alt: the client's choice of JSON and int enums
                    fields[key] = values[-1]
            for group, value in match.groupdict().items():
                *outer, last = group.split("__")
                target = fields
                for part in outer:
                    target = target.setdefault(part, {})
                target[last] = value
            try:
                request = method.request.from_json(json.dumps(fields), ignore_unknown_fields=False)
            except json_format.ParseError as exc:
                raise RpcError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from None
            response = method.handler(request)
            if method.response is None:
                return "{}"
            text: str = method.response.to_json(response, use_integers_for_enums=True)
            return text

        return handle


def _secret_field(secret: _Secret, name: str) -> str | Mapping[str, str] | None:
    labels = secret.message.labels
    if name == "name":
        return secret.name
    if name == "labels":
        return dict(labels)
    return labels.get(name.removeprefix("labels."))


def _version_field(row: tuple[_Secret, _Version], name: str) -> str | None:
    secret, version = row
    if name == "name":
        return f"{secret.name}/versions/{version.number}"
    state: str = State(version.state).name
    return state
