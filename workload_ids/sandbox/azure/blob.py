"""A local Azure Blob Storage (block blobs and their leases) that the real
``azure.storage.blob`` clients talk to over HTTPS.

It serves what a lock built on blob leases needs: Create / Delete / Get Container
Properties, Put Blob (block blobs in one request), Get Blob, Get Blob Properties, Get and
Set Blob Metadata, Delete Blob and Lease Blob (acquire, renew, change, release, break).
Addressing is path-style, as Azurite's: ``https://127.0.0.1:PORT/{account}/{container}/{blob}``
(the SDK takes the first path segment for the account when the host is ``127.0.0.1``), so
clients are built on :attr:`BlobEmulator.account_url`. It behaves as Blob Storage does where
a client must cope:

* **authentication**: a request without a bearer token is ``401 NoAuthenticationInformation``
  with ``WWW-Authenticate: Bearer authorization_uri=https://login.microsoftonline.com/TENANT/
  oauth2/authorize resource_id=https://storage.azure.com``, which the SDK's
  ``StorageBearerTokenCredentialPolicy`` parses. The token itself is not checked;
* **x-ms-version** is required (``400 MissingRequiredHeader``), must be a date no older than
  2017-11-09, the first version that takes bearer tokens (``400 InvalidHeaderValue``), and is
  echoed back;
* **errors** are Storage's: an XML body ``<Error><Code/><Message/></Error>`` (the message
  ends with ``RequestId:`` and ``Time:`` lines, as Azure's do) and the ``x-ms-error-code``
  header; a HEAD answer carries no body, so clients read the code from the header;
* **leases** follow the state table of the Lease Blob reference (learn.microsoft.com
  rest/api/storageservices/lease-blob) and the Storage team's own client tests
  (``BlobAcquireLeaseStateTests``, ``BlobRenewLeaseStateTests``, ``BlobLeasedWriteTests``...
  in the legacy .NET library, tagged to run against the cloud), with Azurite's state
  classes (``src/blob/lease``) where those are silent:

  - states ``available``, ``leased``, ``expired``, ``breaking``, ``broken``, judged on the
    injectable ``clock`` at each request: a fixed lease (15 to 60 s) becomes ``expired`` at
    its end, a breaking one ``broken`` at its break time;
  - acquire: ``-1`` or 15..60 s, else ``400 InvalidHeaderValue``; a proposed id must be a
    GUID. Over a lease held under another id (or none proposed): ``409 LeaseAlreadyPresent``;
    under the same id it succeeds with the new duration (the SDK's ``BlobLeaseClient``
    always proposes its own id, so a retried acquire is idempotent). While breaking:
    ``409 LeaseIsBreakingAndCannotBeAcquired`` (same id) or ``LeaseAlreadyPresent``;
  - renew restarts the clock; it works on an expired lease unless the blob was written or
    leased since (writes reset an expired or broken lease to ``available``), else ``409
    LeaseIdMismatchWithLeaseOperation``; breaking or broken: ``409
    LeaseIsBrokenAndCannotBeRenewed`` (same id);
  - change (to the proposed id; idempotent when the lease already has it), release and
    break (``x-ms-lease-break-period`` 0..60; none: at the end of a fixed lease, at once
    for an infinite one; ``202`` with ``x-ms-lease-time``) as in the table: ``409
    LeaseNotPresentWithLeaseOperation`` without a lease, ``LeaseIdMismatchWithLeaseOperation``
    for another id, ``LeaseIsBreakingAndCannotBeChanged``;
  - writes (Put Blob, Set Blob Metadata, Delete Blob) on a leased or breaking blob need its
    id: ``412 LeaseIdMissing`` / ``LeaseIdMismatchWithBlobOperation``; a lease id where
    there is no lease is ``412 LeaseNotPresentWithBlobOperation`` (for an expired or broken
    one with Azurite's message "...the lease for the blob has expired"). Reads need no id,
    but a wrong one fails the same way;
  - lease operations change neither the ETag nor Last-Modified;
* **conditions**: ``If-Match``, ``If-None-Match``, ``If-Modified-Since`` and
  ``If-Unmodified-Since`` on every blob operation: ``412 ConditionNotMet`` for writes and
  leases, ``304`` for reads; ``If-None-Match: *`` on Put Blob over an existing blob is ``409
  BlobAlreadyExists`` (what ``upload_blob(..., overwrite=False)`` sends). Tag conditions
  (``x-ms-if-tags``) are refused with ``501``, never ignored;
* **containers** are named by Storage's rules (``400 InvalidResourceName``). With
  ``sandbox=True`` a blob operation creates its container on first reference; otherwise it
  is ``404 ContainerNotFound`` until Create Container (``409 ContainerAlreadyExists`` when it
  exists). Container operations never create one;
* **metadata** names must be C# identifiers (``400 InvalidMetadata``), 8 KiB in all
  (``400 MetadataTooLarge``); names keep the case they were set with.

* **append blobs** (what the audit sink's head anchor is): Put Blob with ``x-ms-blob-type:
  AppendBlob`` (no body) and Append Block (``comp=appendblock``, with the
  ``x-ms-blob-condition-appendpos`` / ``maxsize`` conditions, ``412
  AppendPositionConditionNotMet`` / ``MaxBlobSizeConditionNotMet``; at most 50,000 blocks,
  ``409 BlockCountExceedsLimit``; on a block blob ``409 InvalidBlobType``);
* **listing** (List Blobs, ``restype=container&comp=list``) with ``prefix``, ``maxresults``
  and ``marker`` / ``NextMarker`` paging, in name order;
* **immutability** (what Azurite lacks: it reports ``x-ms-has-immutability-policy: false``
  for every container and answers the immutability calls with ``501``). A container-level
  time-based retention policy is set with :meth:`BlobEmulator.set_immutability_policy`, as
  ARM's ``immutabilityPolicies`` call would (it is a management-plane setting, not a Blob
  Storage call). Then, as the "Store business-critical blob data with immutable storage"
  page lists: Get Container Properties says ``x-ms-has-immutability-policy: true``; Put Blob
  over an existing blob, Delete Blob and Set Blob Metadata are ``409
  BlobImmutableDueToPolicy``; Append Block works only with ``allowProtectedAppendWrites``;
  Delete Container of a container that holds blobs is ``409 ContainerImmutableStorage``...
  (our name: Storage's own code for it is not documented). New blobs can still be created.

What is not emulated (other comps and restypes, page blobs, block staging, SAS and shared
keys) answers ``501 NotImplemented``, which the SDK does not retry.
Messages not quoted from a source above are ours. ``calls`` counts the operations clients
sent, by the names :data:`OPERATIONS` lists; :meth:`BlobEmulator.inject_error` fails them.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import html
import logging
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..common.clock import Clock
from ..common.faults import Fault, FaultInjector
from .https import Answer, HttpsEmulator, RawBody

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

__all__ = ["OPERATIONS", "STORAGE_SCOPE", "BlobEmulator", "BlobError"]

log = logging.getLogger(__name__)

Headers = Mapping[str, str]

STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE_RESOURCE = "https://storage.azure.com"
AUTHORITY = "https://login.microsoftonline.com"
MIN_VERSION = "2017-11-09"  # the first x-ms-version that accepts OAuth bearer tokens
DEFAULT_VERSION = "2026-10-06"  # answered when a request names none (azure-storage-blob 12.31 sends it)
MIN_LEASE, MAX_LEASE, INFINITE = 15, 60, -1
MAX_BREAK_PERIOD = 60
MAX_METADATA_BYTES = 8 * 1024
MAX_APPEND_BLOCKS = 50_000
MAX_LIST_RESULTS = 5000
_IMMUTABLE = ("This operation is not permitted as the blob is immutable due to a policy.")

OPERATIONS = frozenset({
    "CreateContainer", "GetContainerProperties", "DeleteContainer", "ListBlobs", "AppendBlock",
    "PutBlob", "GetBlob", "GetBlobProperties", "GetBlobMetadata", "SetBlobMetadata", "DeleteBlob",
    "LeaseBlob:acquire", "LeaseBlob:renew", "LeaseBlob:change", "LeaseBlob:release", "LeaseBlob:break",
})
"""The operation names of :attr:`BlobEmulator.calls` and :meth:`BlobEmulator.inject_error`."""

AVAILABLE, LEASED, EXPIRED, BREAKING, BROKEN = "available", "leased", "expired", "breaking", "broken"

_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_METADATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_META = "x-ms-meta-"
_NOT_MET = "The condition specified using HTTP conditional header(s) is not met."
_BAD_HEADER = "The value for one of the HTTP headers is not in the correct format."
_MISSING_HEADER = "An HTTP header that's mandatory for this request is not specified."


class BlobError(Exception):
    """A failed call: an HTTP status, Storage's error code, and detail elements
    (``HeaderName``...) for the XML body."""

    def __init__(self, status: int, code: str, message: str, *, details: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def xml_body(self, request_id: str, now: float) -> bytes:
        """Storage's error body."""
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        message = f"{self.message}\nRequestId:{request_id}\nTime:{stamp}"
        extra = "".join(f"<{k}>{_text(v)}</{k}>" for k, v in self.details.items())
        return (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{_text(self.code)}</Code>'
                f"<Message>{_text(message)}</Message>{extra}</Error>").encode()


def _text(value: str) -> str:
    """``value`` as XML character data."""
    return html.escape(value, quote=False)


def _bad_header(name: str, value: str) -> BlobError:
    return BlobError(400, "InvalidHeaderValue", _BAD_HEADER,
                     details={"HeaderName": name, "HeaderValue": value})


def _missing_header(name: str) -> BlobError:
    return BlobError(400, "MissingRequiredHeader", _MISSING_HEADER, details={"HeaderName": name})


def _not_implemented(what: str) -> BlobError:
    return BlobError(501, "NotImplemented", f"{what} is not emulated.")


def _http_date(seconds: float) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def _parse_http_date(name: str, value: str) -> float:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        raise _bad_header(name, value) from None


@dataclass
class _Lease:
    state: str = AVAILABLE
    lease_id: str | None = None
    duration: int = INFINITE  # seconds; kept while expired so that a renew restores it
    expires: float | None = None  # leased for a fixed duration
    breaks: float | None = None  # breaking: when it becomes broken

    def settle(self, now: float) -> None:
        """Let time act: a fixed lease past its end expires, a breaking one past its break
        time is broken."""
        if self.state == LEASED and self.expires is not None and now >= self.expires:
            self.state, self.expires = EXPIRED, None
        elif self.state == BREAKING and self.breaks is not None and now >= self.breaks:
            self.state, self.breaks = BROKEN, None

    def holds(self, lease_id: str | None) -> bool:
        """Whether the lease is held under ``lease_id`` (lease ids are GUIDs: case does not matter)."""
        if lease_id is None or self.lease_id is None:
            return False
        return lease_id.lower() == self.lease_id.lower()

    def take(self, lease_id: str, duration: int, now: float) -> None:
        self.state, self.lease_id, self.duration, self.breaks = LEASED, lease_id, duration, None
        self.expires = None if duration == INFINITE else now + duration

    def clear(self) -> None:
        self.state, self.lease_id, self.duration = AVAILABLE, None, INFINITE
        self.expires = self.breaks = None


@dataclass
class _Blob:
    data: bytes
    metadata: dict[str, str]
    content_type: str
    etag: str
    created: float
    modified: float
    lease: _Lease = field(default_factory=_Lease)
    kind: str = "BlockBlob"
    blocks: int = 0  # committed blocks of an append blob


@dataclass
class _Container:
    name: str
    etag: str
    created: float
    blobs: dict[str, _Blob] = field(default_factory=dict)
    # a container-level time-based retention policy: (days, allowProtectedAppendWrites)
    immutability: tuple[int, bool] | None = None


@dataclass(frozen=True)
class _Request:
    method: str
    operation: str
    container: str
    blob: str | None
    headers: Headers  # names in lower case
    raw_headers: Headers  # names as sent (metadata keeps its case)
    body: bytes
    range: str | None
    query: Mapping[str, str] = field(default_factory=dict)


class BlobEmulator(HttpsEmulator):
    """Containers, block blobs, metadata and leases of one storage account behind one HTTPS
    endpoint on 127.0.0.1. Thread-safe; use as a context manager or call :meth:`start` /
    :meth:`stop`."""

    server_name = "blob-emulator"

    def __init__(self, *, sandbox: bool = True, clock: Clock = time.time, account: str = "sandbox",
                 tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47") -> None:
        self.sandbox = sandbox
        self.account = account
        self.tenant_id = tenant_id
        self._clock = clock
        self._lock = threading.RLock()
        self._containers: dict[str, _Container] = {}
        self.faults: FaultInjector[BlobError] = FaultInjector()
        self._etags = 0
        self.calls: Counter[str] = self.faults.calls
        """Operation name (``"PutBlob"``, ``"LeaseBlob:acquire"``; see :data:`OPERATIONS`) ->
        count; ``"401 challenge"`` for each request without a token."""

    # --- set-up and test hooks ---------------------------------------------------------

    @property
    def account_url(self) -> str:
        """``https://127.0.0.1:PORT/{account}``: the ``account_url`` of ``BlobServiceClient``
        and ``ContainerClient``."""
        if not self.url:
            raise RuntimeError("the emulator is not started")
        return f"{self.url}/{self.account}"

    def container_url(self, container: str) -> str:
        """``https://127.0.0.1:PORT/{account}/{container}``: what ``ContainerClient.from_container_url``
        takes (it finds the account in the path, as for ``account_url``)."""
        return f"{self.account_url}/{container}"

    def client_kwargs(self) -> dict[str, Any]:
        """What to pass to the ``azure.storage.blob`` clients (besides the account URL and a
        token credential) to use this emulator: its CA bundle, and no SDK retries, so that
        every error reaches the caller."""
        if not self.url:
            raise RuntimeError("the emulator is not started")
        return {"connection_verify": self.ca_bundle_path, "retry_total": 0}

    def container_client(self, container: str, credential: Any = None, **kwargs: Any) -> ContainerClient:
        """A ``ContainerClient`` for ``container`` with ``credential`` (default: the sandbox's
        static token) and :meth:`client_kwargs`, overridden by ``kwargs``."""
        from azure.storage.blob import ContainerClient

        from ...providers.azure.clients import StaticTokenCredential
        return ContainerClient(self.account_url, container, credential=credential or StaticTokenCredential(),
                               **{**self.client_kwargs(), **kwargs})

    def create_container(self, name: str) -> None:
        """Make container ``name`` exist (idempotent), as a test's set-up."""
        with self._lock:
            self._check_container_name(name)
            if name not in self._containers:
                self._containers[name] = _Container(name, self._new_etag(), self._clock())

    def inject_error(self, operation: str, status: int, code: str, message: str = "injected by the emulator",
                     *, times: int = 1, applied: bool = False) -> None:
        """Make the next ``times`` calls of ``operation`` (one of :data:`OPERATIONS`) fail
        with ``status`` and Storage error ``code``. With ``applied=True`` the operation
        takes effect first and only its answer is the error, as when a response is lost."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {sorted(OPERATIONS)}")
        self.faults.inject(operation, lambda: BlobError(status, code, message), times, applied=applied)

    def set_immutability_policy(self, container: str, days: int, *,
                                allow_protected_append_writes: bool = True) -> None:
        """Put a time-based retention policy on ``container`` (made if missing), as ARM's
        ``blobContainers/immutabilityPolicies`` PUT does: from now on its blobs can be
        created and, with ``allow_protected_append_writes``, appended to, never changed or
        deleted. (Retention never ends here: the emulator's runs are shorter than a day.)"""
        with self._lock:
            self.create_container(container)
            self._containers[container].immutability = (days, allow_protected_append_writes)

    def lease_state(self, container: str, blob: str) -> str | None:
        """The lease state of a blob now (``available``, ``leased``...), None if it does not
        exist: for assertions that do not go through a client."""
        with self._lock:
            found = self._containers.get(container)
            target = found.blobs.get(blob) if found else None
            if target is None:
                return None
            target.lease.settle(self._clock())
            return target.lease.state

    # --- dispatch ----------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one request: (status, XML or raw body or None, headers)."""
        request_id = str(uuid.uuid4())
        lower = {k.lower(): v for k, v in headers.items()}
        version = lower.get("x-ms-version", "")
        common = {"x-ms-request-id": request_id,
                  "x-ms-version": version if _VERSION.fullmatch(version) else DEFAULT_VERSION}
        if "x-ms-client-request-id" in lower:
            common["x-ms-client-request-id"] = lower["x-ms-client-request-id"]
        fault: Fault[BlobError] | None = None
        try:
            request = self._route(method, raw_path, lower, headers, body)
            auth = lower.get("authorization", "")
            if not auth.startswith("Bearer ") or not auth[len("Bearer "):].strip():
                self.faults.count("401 challenge")
                challenge = (f"Bearer authorization_uri={AUTHORITY}/{self.tenant_id}/oauth2/authorize "
                             f"resource_id={STORAGE_RESOURCE}")
                raise BlobError(401, "NoAuthenticationInformation", "Server failed to authenticate the "
                                "request. Please refer to the information in the www-authenticate header.",
                                headers={"WWW-Authenticate": challenge})
            fault = self.faults.record(request.operation)
            if fault is not None and not fault.applied:
                raise fault.answer
            self._check_version(version)
            if "x-ms-if-tags" in lower:
                raise _not_implemented("The x-ms-if-tags condition")
            with self._lock:
                status, payload, extra = self._dispatch(request)
            if fault is not None:
                raise fault.answer
            return status, payload, {**common, **extra}
        except BlobError as exc:
            return self._error(exc, method, request_id, common)
        except Exception as exc:  # an emulator bug: answer as a server error, keep serving
            log.exception("emulator failed on %s %s", method, raw_path)
            return self._error(BlobError(500, "InternalError", repr(exc)), method, request_id, common)

    def _error(self, exc: BlobError, method: str, request_id: str, common: Mapping[str, str]) -> Answer:
        headers = {**common, "x-ms-error-code": exc.code, **exc.headers}
        if method == "HEAD" or exc.status == 304:
            return exc.status, None, headers
        return exc.status, RawBody(exc.xml_body(request_id, self._clock()), "application/xml"), headers

    def _route(self, method: str, raw_path: str, lower: Headers, raw: Headers, body: bytes) -> _Request:
        url = urlsplit(raw_path)
        query = parse_qs(url.query, keep_blank_values=True)
        parts = unquote(url.path).lstrip("/").split("/", 2)
        account = parts[0]
        container = parts[1] if len(parts) > 1 and parts[1] else None
        blob = parts[2] if len(parts) > 2 and parts[2] else None
        if account != self.account:
            raise BlobError(400, "InvalidUri", "The requested URI does not represent any resource on the "
                            f"server (this emulator serves account {self.account!r}, addressed by path).")
        restype = (query.get("restype") or [""])[0] or None
        comp = (query.get("comp") or [""])[0] or None
        if container is None:
            raise _not_implemented(f"{method} of the account ({restype=}, {comp=})")
        if blob is None:
            if restype == "container" and comp == "list":
                operations = {"GET": "ListBlobs"}
            elif restype != "container" or comp is not None:
                raise _not_implemented(f"{method} {container} ({restype=}, {comp=})")
            else:
                operations = {"PUT": "CreateContainer", "GET": "GetContainerProperties",
                              "HEAD": "GetContainerProperties", "DELETE": "DeleteContainer"}
        elif restype is not None:
            raise _not_implemented(f"restype={restype} on a blob")
        elif comp is None:
            operations = {"PUT": "PutBlob", "GET": "GetBlob", "HEAD": "GetBlobProperties",
                          "DELETE": "DeleteBlob"}
        elif comp == "metadata":
            operations = {"PUT": "SetBlobMetadata", "GET": "GetBlobMetadata", "HEAD": "GetBlobMetadata"}
        elif comp == "appendblock":
            operations = {"PUT": "AppendBlock"}
        elif comp == "lease":
            action = lower.get("x-ms-lease-action", "")
            operations = {"PUT": f"LeaseBlob:{action}"} if f"LeaseBlob:{action}" in OPERATIONS else {}
            if method == "PUT" and not action:
                raise _missing_header("x-ms-lease-action")
            if method == "PUT" and not operations:
                raise _bad_header("x-ms-lease-action", action)
        else:
            raise _not_implemented(f"comp={comp} on a blob")
        operation = operations.get(method)
        if operation is None:
            raise BlobError(405, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
        self._check_container_name(container)
        return _Request(method, operation, container, blob, lower, raw, body, lower.get("x-ms-range")
                        or lower.get("range"), {k: v[0] for k, v in query.items() if v})

    @staticmethod
    def _check_version(version: str) -> None:
        if not version:
            raise _missing_header("x-ms-version")
        if not _VERSION.fullmatch(version) or version < MIN_VERSION:
            raise _bad_header("x-ms-version", version)

    @staticmethod
    def _check_container_name(name: str) -> None:
        if not _CONTAINER.fullmatch(name):
            # Storage's own spelling of the message.
            raise BlobError(400, "InvalidResourceName",
                            "The specifed resource name contains invalid characters.")

    def _dispatch(self, r: _Request) -> tuple[int, Any, dict[str, str]]:
        if r.blob is None:
            return self._container_operation(r)
        container = self._find_container(r.container, create=self.sandbox)
        blob = container.blobs.get(r.blob)
        now = self._clock()
        if blob is not None:
            blob.lease.settle(now)
        lease_id = r.headers.get("x-ms-lease-id")
        if lease_id is not None and not _GUID.fullmatch(lease_id):
            raise _bad_header("x-ms-lease-id", lease_id)
        if r.operation == "PutBlob":
            return self._put_blob(r, container, blob, lease_id, now)
        if blob is None:
            raise BlobError(404, "BlobNotFound", "The specified blob does not exist.")
        if r.operation == "AppendBlock":
            return self._append_block(r, container, blob, lease_id, now)
        if r.operation.startswith("LeaseBlob:"):
            self._check_conditions(blob, r.headers)
            return self._lease(r, blob, now)
        if r.method in ("GET", "HEAD"):
            self._check_conditions(blob, r.headers, read=True)
            self._check_read_lease(blob, lease_id)
            if r.operation == "GetBlobMetadata":
                return 200, None, {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
                                   **self._metadata_headers(blob)}
            if r.operation == "GetBlobProperties":
                return 200, None, {**self._properties(blob), "Content-Length": str(len(blob.data))}
            return self._get_blob(r, blob)
        self._check_conditions(blob, r.headers)
        self._check_write_lease(blob, lease_id)
        if container.immutability is not None:
            raise BlobError(409, "BlobImmutableDueToPolicy", _IMMUTABLE)
        if r.operation == "DeleteBlob":
            del container.blobs[r.blob]
            return 202, None, {"x-ms-delete-type-permanent": "true"}
        # SetBlobMetadata
        blob.metadata = self._read_metadata(r.raw_headers)
        self._touch(blob, now)
        return 200, None, {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
                           "x-ms-request-server-encrypted": "true"}

    # --- containers --------------------------------------------------------------------

    def _find_container(self, name: str, *, create: bool) -> _Container:
        found = self._containers.get(name)
        if found is None:
            if not create:
                raise BlobError(404, "ContainerNotFound", "The specified container does not exist.")
            found = self._containers[name] = _Container(name, self._new_etag(), self._clock())
        return found

    def _container_operation(self, r: _Request) -> tuple[int, Any, dict[str, str]]:
        if r.operation == "CreateContainer":
            if r.container in self._containers:
                raise BlobError(409, "ContainerAlreadyExists", "The specified container already exists.")
            created = self._containers[r.container] = _Container(r.container, self._new_etag(), self._clock())
            return 201, None, {"ETag": created.etag, "Last-Modified": _http_date(created.created)}
        container = self._find_container(r.container, create=False)
        if r.operation == "ListBlobs":
            return self._list_blobs(r, container)
        if r.operation == "DeleteContainer":
            if container.immutability is not None and container.blobs:
                raise BlobError(409, "ContainerImmutableStorage", "The container holds blobs under an "
                                "immutability policy and cannot be deleted.")
            del self._containers[r.container]
            return 202, None, {}
        immutable = "true" if container.immutability is not None else "false"
        return 200, None, {"ETag": container.etag, "Last-Modified": _http_date(container.created),
                           "x-ms-lease-state": AVAILABLE, "x-ms-lease-status": "unlocked",
                           "x-ms-has-immutability-policy": immutable, "x-ms-has-legal-hold": "false",
                           "x-ms-default-encryption-scope": "$account-encryption-key",
                           "x-ms-deny-encryption-scope-override": "false"}

    # --- blobs -------------------------------------------------------------------------

    def _new_etag(self) -> str:
        self._etags += 1
        return f'"0x8D{self._etags:013X}"'

    def _touch(self, blob: _Blob, now: float) -> None:
        """A write: new ETag and Last-Modified; an expired or broken lease is forgotten
        (it can no longer be renewed), as Azurite's ``BlobWriteLeaseSyncer`` does."""
        blob.etag = self._new_etag()
        blob.modified = now
        if blob.lease.state in (EXPIRED, BROKEN):
            blob.lease.clear()

    def _put_blob(self, r: _Request, container: _Container, blob: _Blob | None, lease_id: str | None,
                  now: float) -> tuple[int, Any, dict[str, str]]:
        blob_type = r.headers.get("x-ms-blob-type")
        if blob_type is None:
            raise _missing_header("x-ms-blob-type")
        if blob_type == "PageBlob":
            raise _not_implemented(f"x-ms-blob-type {blob_type}")
        if blob_type not in ("BlockBlob", "AppendBlob"):
            raise _bad_header("x-ms-blob-type", blob_type)
        if blob_type == "AppendBlob" and r.body:
            raise BlobError(400, "InvalidHeaderValue", "An append blob is created empty: append "
                            "blocks to it.", details={"HeaderName": "Content-Length"})
        self._check_conditions(blob, r.headers, create=True)
        self._check_write_lease(blob, lease_id)
        if blob is not None and container.immutability is not None:
            raise BlobError(409, "BlobImmutableDueToPolicy", _IMMUTABLE)
        metadata = self._read_metadata(r.raw_headers)
        content_type = (r.headers.get("x-ms-blob-content-type") or r.headers.get("content-type")
                        or "application/octet-stream")
        if blob is None:
            blob = container.blobs[r.blob or ""] = _Blob(r.body, metadata, content_type, "", now, now)
        else:
            blob.data, blob.metadata, blob.content_type = r.body, metadata, content_type
        blob.kind, blob.blocks = blob_type, 0
        self._touch(blob, now)
        return 201, None, {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
                           "Content-MD5": _md5(blob.data), "x-ms-request-server-encrypted": "true"}

    def _append_block(self, r: _Request, container: _Container, blob: _Blob, lease_id: str | None,
                      now: float) -> tuple[int, Any, dict[str, str]]:
        if blob.kind != "AppendBlob":
            raise BlobError(409, "InvalidBlobType", "The blob type is invalid for this operation.")
        self._check_conditions(blob, r.headers)
        self._check_write_lease(blob, lease_id)
        if container.immutability is not None and not container.immutability[1]:
            raise BlobError(409, "BlobImmutableDueToPolicy", _IMMUTABLE)
        position, limit = r.headers.get("x-ms-blob-condition-appendpos"), r.headers.get(
            "x-ms-blob-condition-maxsize")
        if position is not None and int(position) != len(blob.data):
            raise BlobError(412, "AppendPositionConditionNotMet",
                            "The append position condition specified was not met.")
        if limit is not None and len(blob.data) + len(r.body) > int(limit):
            raise BlobError(412, "MaxBlobSizeConditionNotMet",
                            "The max blob size condition specified was not met.")
        if blob.blocks >= MAX_APPEND_BLOCKS:
            raise BlobError(409, "BlockCountExceedsLimit",
                            "The committed block count cannot exceed the maximum limit of 50,000 blocks.")
        offset = len(blob.data)
        blob.data += r.body
        blob.blocks += 1
        self._touch(blob, now)
        return 201, None, {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
                           "x-ms-blob-append-offset": str(offset),
                           "x-ms-blob-committed-block-count": str(blob.blocks),
                           "x-ms-request-server-encrypted": "true"}

    def _list_blobs(self, r: _Request, container: _Container) -> tuple[int, Any, dict[str, str]]:
        prefix = r.query.get("prefix", "")
        marker = r.query.get("marker", "")
        try:
            limit = int(r.query.get("maxresults", MAX_LIST_RESULTS))
        except ValueError:
            raise BlobError(400, "InvalidQueryParameterValue", "Value for one of the query parameters "
                            "specified in the request URI is invalid.") from None
        limit = max(1, min(limit, MAX_LIST_RESULTS))
        names = sorted(n for n in container.blobs if n.startswith(prefix) and n >= marker)
        page, rest = names[:limit], names[limit:]
        items = []
        for name in page:
            blob = container.blobs[name]
            blob.lease.settle(self._clock())
            items.append(
                f"<Blob><Name>{_text(name)}</Name><Properties>"
                f"<Creation-Time>{_http_date(blob.created)}</Creation-Time>"
                f"<Last-Modified>{_http_date(blob.modified)}</Last-Modified>"
                f"<Etag>{_text(blob.etag)}</Etag><Content-Length>{len(blob.data)}</Content-Length>"
                f"<Content-Type>{_text(blob.content_type)}</Content-Type>"
                f"<BlobType>{blob.kind}</BlobType>"
                f"<LeaseStatus>{'locked' if blob.lease.state in (LEASED, BREAKING) else 'unlocked'}"
                f"</LeaseStatus><LeaseState>{blob.lease.state}</LeaseState>"
                "<ServerEncrypted>true</ServerEncrypted></Properties></Blob>")
        body = ('<?xml version="1.0" encoding="utf-8"?>'
                f'<EnumerationResults ServiceEndpoint="{_text(self.account_url)}/" '
                f'ContainerName="{_text(container.name)}">'
                f"<Prefix>{_text(prefix)}</Prefix><Marker>{_text(marker)}</Marker>"
                f"<MaxResults>{limit}</MaxResults><Blobs>{''.join(items)}</Blobs>"
                f"<NextMarker>{_text(rest[0]) if rest else ''}</NextMarker></EnumerationResults>")
        return 200, RawBody(body.encode(), "application/xml"), {}

    def _get_blob(self, r: _Request, blob: _Blob) -> tuple[int, Any, dict[str, str]]:
        headers = self._properties(blob)
        size = len(blob.data)
        if r.range is None:
            return 200, RawBody(blob.data, blob.content_type), headers
        match = _RANGE.fullmatch(r.range.strip())
        if match is None:
            return 200, RawBody(blob.data, blob.content_type), headers  # Storage ignores a malformed range
        start = int(match.group(1))
        end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
        if start >= size or end < start:
            raise BlobError(416, "InvalidRange", "The range specified is invalid for the current size of the "
                            "resource.", headers={"Content-Range": f"bytes */{size}"})
        headers.pop("Content-MD5", None)
        headers["x-ms-blob-content-md5"] = _md5(blob.data)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return 206, RawBody(blob.data[start:end + 1], blob.content_type), headers

    def _properties(self, blob: _Blob) -> dict[str, str]:
        lease = blob.lease
        headers = {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified),
                   "x-ms-creation-time": _http_date(blob.created), "x-ms-blob-type": blob.kind,
                   "Content-Type": blob.content_type, "Content-MD5": _md5(blob.data),
                   "Accept-Ranges": "bytes",
                   "x-ms-server-encrypted": "true", "x-ms-access-tier": "Hot",
                   "x-ms-access-tier-inferred": "true", "x-ms-lease-state": lease.state,
                   "x-ms-lease-status": "locked" if lease.state in (LEASED, BREAKING) else "unlocked"}
        if lease.state == LEASED:
            headers["x-ms-lease-duration"] = "infinite" if lease.duration == INFINITE else "fixed"
        if blob.kind == "AppendBlob":
            headers["x-ms-blob-committed-block-count"] = str(blob.blocks)
        headers.update(self._metadata_headers(blob))
        return headers

    @staticmethod
    def _metadata_headers(blob: _Blob) -> dict[str, str]:
        return {f"{_META}{name}": value for name, value in blob.metadata.items()}

    @staticmethod
    def _read_metadata(raw: Headers) -> dict[str, str]:
        metadata: dict[str, str] = {}
        for key, value in raw.items():
            if not key.lower().startswith(_META):
                continue
            name = key[len(_META):]
            if not _METADATA_NAME.fullmatch(name) or name.lower() in {n.lower() for n in metadata}:
                raise BlobError(400, "InvalidMetadata", "The metadata specified is invalid. It has "
                                "characters that are not permitted.", details={"MetadataName": name})
            metadata[name] = value
        if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_METADATA_BYTES:
            raise BlobError(400, "MetadataTooLarge",
                            "The size of the specified metadata exceeds the maximum size permitted.")
        return metadata

    # --- conditions --------------------------------------------------------------------

    @staticmethod
    def _check_conditions(blob: _Blob | None, headers: Headers, *, read: bool = False,
                          create: bool = False) -> None:
        """``If-*`` headers against ``blob`` (None: it does not exist yet, for Put Blob)."""
        if_match, if_none = headers.get("if-match"), headers.get("if-none-match")
        since, unmodified = headers.get("if-modified-since"), headers.get("if-unmodified-since")
        failed = BlobError(304 if read else 412, "ConditionNotMet", _NOT_MET)
        if blob is None:
            if if_match is not None:
                raise BlobError(412, "ConditionNotMet", _NOT_MET)
            return
        if if_match is not None and if_match.strip() != "*" and not _etag_in(blob.etag, if_match):
            raise BlobError(412, "ConditionNotMet", _NOT_MET)
        if unmodified is not None and int(blob.modified) > _parse_http_date("If-Unmodified-Since",
                                                                             unmodified):
            raise BlobError(412, "ConditionNotMet", _NOT_MET)
        if if_none is not None and (if_none.strip() == "*" or _etag_in(blob.etag, if_none)):
            if create and if_none.strip() == "*":
                raise BlobError(409, "BlobAlreadyExists", "The specified blob already exists.")
            raise failed
        if since is not None and int(blob.modified) <= _parse_http_date("If-Modified-Since", since):
            raise failed

    @staticmethod
    def _check_write_lease(blob: _Blob | None, lease_id: str | None) -> None:
        lease = blob.lease if blob is not None else _Lease()
        if lease.state in (LEASED, BREAKING):
            if lease_id is None:
                raise BlobError(412, "LeaseIdMissing", "There is currently a lease on the blob and no lease "
                                "ID was specified in the request.")
            if not lease.holds(lease_id):
                raise BlobError(412, "LeaseIdMismatchWithBlobOperation",
                                "The lease ID specified did not match the lease ID for the blob.")
        elif lease_id is not None:
            raise _lease_not_present(lease)

    @staticmethod
    def _check_read_lease(blob: _Blob, lease_id: str | None) -> None:
        if lease_id is None:
            return
        if blob.lease.state in (LEASED, BREAKING):
            if not blob.lease.holds(lease_id):
                raise BlobError(412, "LeaseIdMismatchWithBlobOperation",
                                "The lease ID specified did not match the lease ID for the blob.")
        else:
            raise _lease_not_present(blob.lease)

    # --- leases ------------------------------------------------------------------------

    def _lease(self, r: _Request, blob: _Blob, now: float) -> tuple[int, Any, dict[str, str]]:
        lease = blob.lease
        action = r.operation.split(":", 1)[1]
        lease_id = r.headers.get("x-ms-lease-id")
        proposed = r.headers.get("x-ms-proposed-lease-id")
        if proposed is not None and not _GUID.fullmatch(proposed):
            raise _bad_header("x-ms-proposed-lease-id", proposed)
        stamp = {"ETag": blob.etag, "Last-Modified": _http_date(blob.modified)}
        if action == "acquire":
            duration = self._lease_duration(r.headers.get("x-ms-lease-duration"))
            if lease.state == LEASED and not lease.holds(proposed):
                raise _lease_already_present()
            if lease.state == BREAKING:
                if lease.holds(proposed):
                    raise BlobError(409, "LeaseIsBreakingAndCannotBeAcquired",
                                    "The lease ID matched, but the lease is currently in breaking state and "
                                    "cannot be acquired until it is broken.")
                raise _lease_already_present()
            lease.take(proposed or str(uuid.uuid4()), duration, now)
            return 201, None, {**stamp, "x-ms-lease-id": lease.lease_id or ""}
        if action == "break":
            period = self._break_period(r.headers.get("x-ms-lease-break-period"))
            if lease.state == AVAILABLE:
                raise _lease_not_present_for_lease()
            if lease.state == EXPIRED or (period == 0 and lease.state in (LEASED, BREAKING)):
                lease.state, lease.expires, lease.breaks = BROKEN, None, None
            elif lease.state == LEASED:
                if lease.expires is None:  # infinite: at once, or after the period
                    breaks = now + (period or 0)
                else:  # fixed: at its end, or after the period if that comes first
                    breaks = lease.expires if period is None else min(lease.expires, now + period)
                lease.state, lease.expires, lease.breaks = BREAKING, None, breaks
                lease.settle(now)
            elif lease.state == BREAKING and period is not None and lease.breaks is not None:
                lease.breaks = min(lease.breaks, now + period)
                lease.settle(now)
            remaining = max(0, math.ceil(lease.breaks - now)) if lease.breaks is not None else 0
            return 202, None, {**stamp, "x-ms-lease-time": str(remaining)}
        if lease_id is None:
            raise _missing_header("x-ms-lease-id")
        if not _GUID.fullmatch(lease_id):
            raise _bad_header("x-ms-lease-id", lease_id)
        if action == "renew":
            if lease.state in (BREAKING, BROKEN) and lease.holds(lease_id):
                raise BlobError(409, "LeaseIsBrokenAndCannotBeRenewed", "The lease ID matched, but the lease "
                                "has been broken explicitly and cannot be renewed.")
            if lease.state not in (LEASED, EXPIRED) or not lease.holds(lease_id):
                raise _lease_id_mismatch()
            lease.take(lease.lease_id or lease_id, lease.duration, now)
            return 200, None, {**stamp, "x-ms-lease-id": lease.lease_id or ""}
        if action == "change":
            if proposed is None:
                raise _missing_header("x-ms-proposed-lease-id")
            if lease.state == BREAKING:
                if lease.holds(lease_id):
                    raise BlobError(409, "LeaseIsBreakingAndCannotBeChanged", "The lease ID matched, but the "
                                    "lease is currently in breaking state and cannot be changed.")
                raise _lease_id_mismatch()
            if lease.state != LEASED:
                raise _lease_not_present_for_lease()
            if not lease.holds(lease_id) and not lease.holds(proposed):
                raise _lease_id_mismatch()
            lease.lease_id = proposed
            return 200, None, {**stamp, "x-ms-lease-id": proposed}
        # release
        if lease.state == AVAILABLE or not lease.holds(lease_id):
            raise _lease_id_mismatch()
        lease.clear()
        return 200, None, stamp

    @staticmethod
    def _lease_duration(value: str | None) -> int:
        if value is None:
            raise _missing_header("x-ms-lease-duration")
        try:
            duration = int(value)
        except ValueError:
            raise _bad_header("x-ms-lease-duration", value) from None
        if duration != INFINITE and not MIN_LEASE <= duration <= MAX_LEASE:
            raise _bad_header("x-ms-lease-duration", value)
        return duration

    @staticmethod
    def _break_period(value: str | None) -> int | None:
        if value is None:
            return None
        try:
            period = int(value)
        except ValueError:
            raise _bad_header("x-ms-lease-break-period", value) from None
        if not 0 <= period <= MAX_BREAK_PERIOD:
            raise _bad_header("x-ms-lease-break-period", value)
        return period


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _etag_in(etag: str, header: str) -> bool:
    """Whether ``etag`` is one of the comma-separated (possibly weak) tags of ``header``."""
    tags = {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}
    return etag.strip('"') in tags


def _lease_already_present() -> BlobError:
    return BlobError(409, "LeaseAlreadyPresent", "There is already a lease present.")


def _lease_id_mismatch() -> BlobError:
    return BlobError(409, "LeaseIdMismatchWithLeaseOperation",
                     "The lease ID specified did not match the lease ID for the blob.")


def _lease_not_present_for_lease() -> BlobError:
    return BlobError(409, "LeaseNotPresentWithLeaseOperation", "There is currently no lease on the blob.")


def _lease_not_present(lease: _Lease) -> BlobError:
    if lease.state in (EXPIRED, BROKEN):
        return BlobError(412, "LeaseNotPresentWithBlobOperation",
                         "A lease ID was specified, but the lease for the blob has expired.")
    return BlobError(412, "LeaseNotPresentWithBlobOperation", "There is currently no lease on the blob.")
