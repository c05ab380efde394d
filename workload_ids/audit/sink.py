"""A durable, signed audit trail in a cloud's append-only object store.

``audit.sink.url`` names the store: ``s3://BUCKET/PREFIX`` (S3 with Object Lock),
``gs://BUCKET/PREFIX`` (a bucket with a retention policy) or
``https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`` (a container with an
immutability policy). The layout is the same on each:

- ``PREFIX/records/000000000001.json``, ``...002.json``...: one object per record, named by
  its zero-padded sequence number and written create-only (S3 ``If-None-Match: *``, GCS
  ``ifGenerationMatch=0``, Azure ``If-None-Match: *``). Two runs cannot both write record
  N: the loser reads the winner's record N, checks it, and chains onto it.
- each record is the local log's record plus ``seq``, ``keyId`` and ``sig``, an
  HMAC-SHA256 of (seq, hash) with the AUDIT key derived from ``audit.sink.signingKey``
  (a secret in the cloud's secret store). The hash chain finds edits, removals and
  reorders; the signature finds records written by anyone who lacks the key, even with a
  correct chain.
- the head anchor (``PREFIX/head.json`` on S3, ``head`` object metadata on GCS, the last
  line of the append blob ``PREFIX/head`` on Azure) names the last sequence number and
  hash, signed. It is written after each record, so it may lag one record after a crash
  (the next run's check repairs it), but never leads: a trail shorter than its anchor was
  truncated.

``prepare`` (the start of every run that changes anything) is cheap: the store's
append-only setting, the key, the anchor, one listing, and the records from the anchor
on (normally one). ``records`` (every reader of the trail) and ``verify`` (``audit
verify``, restore) check every record's chain link and signature as they read. A record
edited in the middle is therefore found by the first reader of the whole trail, not by
``prepare``; the cloud's own lock is what keeps the originals (S3 reads the first
version of each record, which Object Lock keeps, whatever was written over it since).

Fail closed: when the store cannot be read at ``prepare``, nothing changes; when an
append fails, the run's seam refuses every further cloud call, so the command stops
before its next change, as Vault does when no audit device can be written.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..endpoints import parse_sink_url
from ..errors import UserError
from .chain import GENESIS, Listing, ObjectStore, Verification, digest

if TYPE_CHECKING:
    from ..calls import CallRecord, CallSeam
    from ..signing import SigningKey

# How long a reader may take the trail's version (its anchor) as current: within a run
# a snapshot is what a reader gets from the local file too; our own appends reset it.
VERSION_TTL = 5.0


class AuditSinkError(UserError):
    """The audit sink cannot be read or written, or fails its check: nothing more changes."""


def encode(record: Mapping[str, Any]) -> bytes:
    """The exact bytes stored for a record: compact JSON with sorted keys."""
    return json.dumps(dict(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


@dataclass
class _Shared:
    """What every sink object of one config shares: the store, the key, the known tail."""

    store: ObjectStore
    load_key: Callable[[CallSeam], SigningKey]
    key: SigningKey | None = None
    tail: tuple[int, str] | None = None  # (seq, hash) of the last record, once checked
    cache: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    failed: str | None = None
    # (when read, what) of the last version(): plan asks once per identity it compares
    version: tuple[float, object] | None = None


class SignedSink:
    """An :class:`~workload_ids.audit.AuditSink` over an :class:`ObjectStore` (see the
    module docstring). Cheap to make: the store, key and tail are shared per config."""

    durable = True

    def __init__(self, shared: _Shared, seam: CallSeam) -> None:
        self._shared = shared
        self.seam = seam
        self.where = shared.store.where

    # --- the key and the store's calls, failing closed --------------------------------

    def _key(self) -> SigningKey:
        shared = self._shared
        with shared.lock:
            if shared.key is None:
                shared.key = shared.load_key(self.seam)
            return shared.key

    def _store(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        from ..errors import CloudError, WorkloadIdsError
        try:
            return fn(self.seam, *args)
        except CloudError as exc:  # the seam translates every store's failures: the sink is down
            raise self._down(what, f"{exc.code}: {exc.message}") from None
        except WorkloadIdsError:
            raise
        except Exception as exc:  # anything else (no credentials at all): fail closed, the sink is down
            raise self._down(what, f"{type(exc).__name__}: {exc}") from None

    def _down(self, what: str, reason: str) -> AuditSinkError:
        return AuditSinkError(
            f"the audit sink {self.where} cannot {what} ({reason}). Nothing more was "
            "changed: every change is recorded there first-hand, so no change is made "
            "that could not be. Check that the store is reachable and that the tool's "
            "identity may read and write it, then rerun (reruns converge)")

    def _refuse(self, problem: str, fix: str) -> AuditSinkError:
        return AuditSinkError(f"the audit trail in {self.where} fails its check: {problem}. "
                              f"Nothing was changed. {fix}")

    # --- records ----------------------------------------------------------------------

    def _read(self, listing: Listing, seq: int) -> dict[str, Any]:
        handle = listing.records[seq]
        cached = self._shared.cache.get((seq, handle))
        if cached is not None:
            return cached
        data = self._store("be read", self._shared.store.read, seq, handle)
        try:
            record = json.loads(data)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            record = {"unreadable": data[:200].decode("utf-8", "replace")}
        self._shared.cache[(seq, handle)] = record
        return record

    def _problem(self, record: Mapping[str, Any], seq: int, prev: str) -> str | None:
        """Why ``record`` (stored as number ``seq``, after a record hashed ``prev``) is not
        a genuine record of this trail; None when it is."""
        if "unreadable" in record:
            return "not a JSON record"
        if "hash" not in record or "prev" not in record:
            return "record without prev/hash"
        if record.get("seq") != seq:
            return (f"record stored as number {seq} says it is number {record.get('seq')}: "
                    "records were moved or reordered")
        if record["prev"] != prev:
            return "chain broken: a record before this one was removed, inserted or reordered"
        if digest(record) != record["hash"]:
            return "record edited: its hash does not match"
        if not record.get("sig"):
            return "unsigned record: it was not written by workload-ids"
        key = self._key()
        if record.get("keyId") != key.key_id or not key.verify(
                _purpose(), {"seq": seq, "hash": record["hash"]}, str(record["sig"])):
            return ("bad signature: the record was not written with the audit signing key "
                    f"(key id {record.get('keyId')!r}, the key in use is {key.key_id})")
        return None

    def _layout_problem(self, listing: Listing) -> str | None:
        if listing.strays:
            return (f"objects that are not records are stored among them "
                    f"({', '.join(sorted(listing.strays)[:3])})")
        if listing.overwritten:
            seq = min(listing.overwritten)
            return (f"record {seq} was overwritten or hidden after it was written "
                    f"({listing.overwritten[seq]}); the original is still kept and is what is read")
        if listing.records:
            last = max(listing.records)
            missing = [s for s in range(1, last + 1) if s not in listing.records]
            if missing:
                return (f"record {missing[0]} is missing: a gap in the trail (records up to {last} "
                        "exist, but not all of them)")
        return None

    def _prefetch(self, listing: Listing) -> None:
        """Read the records not read yet, eight at a time: a fresh runner reads the whole
        trail, one object per record, and round trips add up."""
        missing = [seq for seq, handle in listing.records.items()
                   if (seq, handle) not in self._shared.cache]
        if len(missing) < 4:
            return
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda seq: self._read(listing, seq), missing))

    def _walk(self, listing: Listing) -> Iterator[tuple[int, dict[str, Any], str | None]]:
        self._prefetch(listing)
        prev = GENESIS
        for seq in sorted(listing.records):
            record = self._read(listing, seq)
            problem = self._problem(record, seq, prev)
            yield seq, record, problem
            if problem:
                return
            prev = str(record["hash"])

    def records(self) -> Iterator[dict[str, Any]]:
        """AuditSink.records; raises a refusal at the first record that fails its checks."""
        listing = self._store("be read", self._shared.store.listing)
        problem = self._layout_problem(listing)
        if problem:
            raise self._refuse(problem, _VERIFY_FIX)
        for seq, record, problem in self._walk(listing):
            if problem:
                raise self._refuse(f"record {seq}: {problem}", _VERIFY_FIX)
            yield record

    def verify(self, expect_head: str | None = None) -> Verification:
        """AuditSink.verify: also checks the signed head anchor, so records removed from the end show."""
        listing = self._store("be read", self._shared.store.listing)
        count, head = 0, GENESIS
        layout = self._layout_problem(listing)
        for seq, record, problem in self._walk(listing):
            if problem:
                return Verification(False, count, head, seq, problem)
            count, head = seq, str(record["hash"])
        if layout:
            first = min([*listing.overwritten, *(s for s in range(1, count + 2)
                                                 if s not in listing.records)] or [count + 1])
            return Verification(False, count, head, first, layout)
        anchor_problem, anchor = self._anchor()
        if anchor_problem:
            return Verification(False, count, head, count + 1, anchor_problem)
        if anchor is not None and anchor[0] > count:
            return Verification(False, count, head, count + 1, _truncated(count, anchor[0]))
        if anchor is None and count:
            return Verification(False, count, head, count + 1, _NO_ANCHOR)
        if anchor is not None and anchor[0] and self._read(listing, anchor[0])["hash"] != anchor[1]:
            return Verification(False, count, head, anchor[0], "the head anchor names another record "
                                "at this number: the record was replaced")
        if expect_head and head != expect_head:
            return Verification(False, count, head, count + 1,
                                f"the trail ends at {head[:12]}…, not at the expected head "
                                f"{expect_head[:12]}…: records were removed from the end")
        return Verification(True, count, head)

    def version(self) -> object:
        """AuditSink.version: the signed head anchor, cached ``VERSION_TTL`` seconds."""
        import time
        shared = self._shared
        with shared.lock:
            if shared.version is not None and time.monotonic() - shared.version[0] < VERSION_TTL:
                return shared.version[1]
        problem, anchor = self._anchor()
        value = (self.where, problem, anchor)
        with shared.lock:
            shared.version = (time.monotonic(), value)
        return value

    # --- the head anchor ----------------------------------------------------------------

    def _anchor(self) -> tuple[str | None, tuple[int, str] | None]:
        """(problem, (seq, hash)) of the stored head anchor; (None, None) when none exists."""
        data = self._store("be read", self._shared.store.read_anchor)
        if data is None:
            return None, None
        try:
            anchor = json.loads(data)
            seq, head, sig = int(anchor["seq"]), str(anchor["hash"]), str(anchor["sig"])
        except (ValueError, KeyError, TypeError):
            return "the head anchor is not one workload-ids wrote (not its JSON form)", None
        if not self._key().verify(_purpose(), {"anchor": True, "seq": seq, "hash": head}, sig):
            return "the head anchor has a bad signature: it was not written by workload-ids", None
        return None, (seq, head)

    def _write_anchor(self, seq: int, head: str) -> None:
        key = self._key()
        data = encode({"seq": seq, "hash": head, "keyId": key.key_id,
                       "sig": key.mac(_purpose(), {"anchor": True, "seq": seq, "hash": head})})
        self._store("be written", self._shared.store.write_anchor, data)

    # --- the check before the first change ------------------------------------------------

    def prepare(self) -> None:
        """AuditSink.prepare: store append-only, trail sound to its anchor; anchors a new trail."""
        shared = self._shared
        with shared.lock:
            if shared.failed:
                raise AuditSinkError(shared.failed)
            problem = self._store("be read", shared.store.append_only)
            if problem:
                raise AuditSinkError(f"the audit sink {self.where} is not append-only: {problem}. "
                                     "Nothing was changed")
            self._key()
            anchor_problem, anchor = self._anchor()
            listing = self._store("be read", shared.store.listing)
            if anchor_problem:
                raise self._refuse(anchor_problem, _VERIFY_FIX)
            layout = self._layout_problem(listing)
            if layout:
                raise self._refuse(layout, _VERIFY_FIX)
            last = max(listing.records, default=0)
            if anchor is None:
                if last:
                    raise self._refuse(_NO_ANCHOR, _VERIFY_FIX)
                if listing.history:
                    raise self._refuse("the trail is empty but records were written here before "
                                       "(their versions or delete markers remain): it was wiped",
                                       _VERIFY_FIX)
                # A new trail: anchor it before its first record, so that from now on an
                # anchor is always there to lag behind (a crash between record 1 and its
                # anchor then looks like any other lag, never like a removed anchor).
                self._write_anchor(0, GENESIS)
                shared.tail = (0, GENESIS)
                return
            seq, head = anchor
            if seq > last:
                raise self._refuse(_truncated(last, seq), _VERIFY_FIX)
            prev = GENESIS
            if seq:
                record = self._read(listing, seq)
                if record.get("hash") != head:
                    raise self._refuse(f"record {seq} is not the one the head anchor names: it "
                                       "was replaced", _VERIFY_FIX)
                problem = self._problem(record, seq, str(record.get("prev")))
                if problem:
                    raise self._refuse(f"record {seq}: {problem}", _VERIFY_FIX)
                prev = head
            for later in range(seq + 1, last + 1):
                record = self._read(listing, later)
                problem = self._problem(record, later, prev)
                if problem:
                    raise self._refuse(f"record {later}: {problem}", _VERIFY_FIX)
                prev = str(record["hash"])
            if last > seq:
                # A run stopped between a record and its anchor (or a concurrent run's
                # anchor landed first): the records are signed and chained, so move it on.
                self._write_anchor(last, prev)
            shared.tail = (last, prev)

    # --- appending ------------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """AuditSink.append; after one failed write every later one is refused: no gaps."""
        shared = self._shared
        with shared.lock:
            if shared.failed:
                raise AuditSinkError(shared.failed)
            try:
                return self._append(record)
            except AuditSinkError as exc:
                shared.failed = str(exc)
                self._halt(str(exc))
                raise

    def _append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        shared = self._shared
        if shared.tail is None:
            self.prepare()
        assert shared.tail is not None
        key = self._key()
        for _ in range(100):
            seq, prev = shared.tail
            number = seq + 1
            stored = {k: v for k, v in record.items() if k not in ("seq", "prev", "hash", "sig", "keyId")}
            stored.update({"seq": number, "prev": prev, "keyId": key.key_id})
            stored["hash"] = digest(stored)
            stored["sig"] = key.mac(_purpose(), {"seq": number, "hash": stored["hash"]})
            if self._store("be written", shared.store.create, number, encode(stored)):
                shared.tail, shared.version = (number, stored["hash"]), None
                self._write_anchor(number, stored["hash"])
                return stored
            # Another run wrote record `number` first: check it and chain onto it.
            listing = self._store("be read", shared.store.listing)
            if number not in listing.records:
                raise self._refuse(f"record {number} exists but cannot be listed", _VERIFY_FIX)
            theirs = self._read(listing, number)
            problem = self._problem(theirs, number, prev)
            if problem:
                raise self._refuse(f"record {number}, written by another run: {problem}", _VERIFY_FIX)
            shared.tail = (number, str(theirs["hash"]))
        raise AuditSinkError(f"the audit sink {self.where} kept losing the race for the next record "
                             "to other runs; rerun")

    def _halt(self, reason: str) -> None:
        """Refuse every further cloud call of this run: the command stops before its next
        change (its threads too), since that change could not be recorded."""
        message = reason

        def halt(call: CallRecord) -> None:
            raise AuditSinkError(f"stopped before {call.provider}:{call.operation}: {message}")
        if halt not in self.seam.observers:
            self.seam.observers.append(halt)


def _purpose() -> str:
    from ..signing import AUDIT
    return AUDIT


def _truncated(last: int, anchored: int) -> str:
    return (f"the trail ends at record {last}, but the head anchor names record {anchored}: "
            "records were removed from the end (truncated)")


_NO_ANCHOR = ("records exist but the head anchor is missing: it was removed, so truncation "
              "cannot be ruled out")
_VERIFY_FIX = ("Run `workload-ids audit verify` for the first bad record, find who wrote to the "
               "store (the cloud's own access logs), and restore it from the versions the "
               "store's lock keeps; workload-ids refuses to change anything until the trail checks")


class SinkCache:
    """The per-config shared state of its sink (one key read, one known tail per run)."""

    def __init__(self) -> None:
        self.shared: _Shared | None = None
        # Making the store builds an SDK client (a few hundred ms): threads that opened the
        # sink at once each made their own, with its own lock and tail, so their appends
        # no longer excluded each other.
        self.lock = threading.Lock()


def open_sink(config: Any, seam: CallSeam | None, cache: SinkCache) -> SignedSink:
    """The sink ``config``'s ``audit.sink`` names, on ``seam`` (or a seam of its own)."""
    from ..calls import CallSeam, RetryPolicy
    if seam is None:
        seam = CallSeam(RetryPolicy(max_attempts=config.calls.maxAttempts,
                                    max_seconds=config.calls.maxRetrySeconds))
    with cache.lock:
        if cache.shared is None:
            sink = config.data.audit.sink
            store = _store_for(config, sink.url)
            from .keys import key_loader
            cache.shared = _Shared(store, key_loader(config, sink.signingKey))
        shared = cache.shared
    _register(seam, shared.store.provider)
    return SignedSink(shared, seam)


def _register(seam: CallSeam, provider: str) -> None:
    if provider == "aws":
        from ..providers.aws.clients import classify, make_fault
        # As AwsClients registers it: every registration of "aws" says the same.
        seam.register("aws", classify, make_fault, translate=True)
    elif provider == "gcp":
        from .gcs import register
        register(seam)
    else:
        from .azure_blob import register as register_blob
        register_blob(seam)


def _store_for(config: Any, url: str) -> ObjectStore:
    kind, bucket, prefix = parse_sink_url(url)
    if kind == "s3":
        from .s3 import S3Store
        return S3Store(config, bucket, prefix)
    if kind == "gs":
        from .gcs import GcsStore
        return GcsStore(config, bucket, prefix)
    from .azure_blob import BlobStore
    return BlobStore(config, url)
