"""The workload lock on Azure: a lease on the blob ``NAME.lock`` in a container.

Key Vault has no conditional write, so the lock lives in Blob Storage, whose leases are
made for this: acquiring a lease on a leased blob fails (409 ``LeaseAlreadyPresent``),
the lease runs out by itself 60 s after its last renewal, and the storage service keeps
the time, so no two machines' clocks are compared. The blob's metadata names the holder
for the busy message. The container is ``azure.lockContainerUrl``; the identity running
the tool needs *Storage Blob Data Contributor* on it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import Any

from ... import clock
from ...errors import CloudError, UserError
from ..interface import LEASE, Holder, KeyLock, LockRecord
from .clients import AzureClients

_HELD_BY_OTHERS = frozenset({"LeaseAlreadyPresent", "LeaseIsBreakingAndCannotBeAcquired"})
_LOST = frozenset({"LeaseIdMismatchWithLeaseOperation", "LeaseNotPresentWithLeaseOperation",
                   "LeaseIsBrokenAndCannotBeRenewed", "BlobNotFound"})


def _code(exc: CloudError) -> str:
    """Blob Storage's error code, read from the SDK's error (the cause): a string for
    404/409, an enum for other statuses."""
    cause = exc.__cause__ or exc
    code = getattr(cause, "error_code", None)
    return str(getattr(code, "value", code) or type(cause).__name__)


class BlobLeaseLock(KeyLock):
    """See the module docstring."""

    def __init__(self, clients: AzureClients, target: str) -> None:
        url = clients.config.azure.lockContainerUrl
        if not url:
            raise UserError("Azure key mode locks each workload while its keys change, with a blob "
                            "lease: set azure.lockContainerUrl in workload-ids.yaml "
                            "(https://ACCOUNT.blob.core.windows.net/CONTAINER) and grant the tool "
                            "Storage Blob Data Contributor on that container")
        self.seam = clients.seam
        self.clients = clients
        from azure.storage.blob import ContainerClient
        self.container = ContainerClient.from_container_url(
            url, credential=self.clients.credential, **self.clients.connection(url))
        self._leases: dict[tuple[str, str], Any] = {}
        self._mutex = threading.Lock()

    def _call(self, operation: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self.clients.call(operation, fn, *args, **kwargs)

    def try_acquire(self, name: str, holder: Holder, tags: Mapping[str, str]) -> LockRecord | None:
        """KeyLock.try_acquire: a 60 s blob lease, the blob made on first use; metadata names the holder."""
        from azure.storage.blob import BlobLeaseClient
        blob = self.container.get_blob_client(f"{name}.lock")
        lease = BlobLeaseClient(blob, lease_id=str(uuid.uuid4()))
        for _ in range(2):
            try:
                self._call("blob.acquire_lease", lease.acquire,
                           lease_duration=int(LEASE.total_seconds()))
                break
            except CloudError as exc:
                code = _code(exc)
                if code in _HELD_BY_OTHERS:
                    return self._holder_of(blob)
                if code != "BlobNotFound":
                    raise
            try:  # the first lock of this workload: make its blob, then lease it
                self._call("blob.upload_blob", blob.upload_blob, b"", overwrite=False,
                           metadata=_metadata(tags))
            except CloudError as exc:
                if _code(exc) != "BlobAlreadyExists":
                    raise
        else:
            return LockRecord("another run (contended)", "?", None, None)
        with self._mutex:
            self._leases[(name, holder.name)] = lease
        try:
            self._call("blob.set_blob_metadata", blob.set_blob_metadata,
                       {**_metadata(tags), "holder": holder.name, "command": holder.command,
                        "since": clock.format_time(clock.lease_now())}, lease=lease)
        except CloudError:
            self.release(name, holder)
            raise
        return None

    def _holder_of(self, blob: Any) -> LockRecord:
        try:
            props = self._call("blob.get_blob_properties", blob.get_blob_properties)
        except CloudError:
            return LockRecord("another run", "?", None, None)
        meta = props.metadata or {}
        try:
            since = clock.parse_time(meta.get("since", ""))
        except ValueError:
            since = None
        return LockRecord(meta.get("holder", "another run"), meta.get("command", "?"), since, None)

    def renew(self, name: str, holder: Holder) -> bool:
        """KeyLock.renew: renews the blob lease; False when Azure says it is lost."""
        lease = self._leases.get((name, holder.name))
        if lease is None:
            return False
        try:
            self._call("blob.renew_lease", lease.renew)
        except CloudError as exc:
            if _code(exc) in _LOST:
                return False
            raise
        return True

    def release(self, name: str, holder: Holder) -> None:
        """KeyLock.release: releases the blob lease; one already lost is fine."""
        with self._mutex:
            lease = self._leases.pop((name, holder.name), None)
        if lease is None:
            return
        try:
            self._call("blob.release_lease", lease.release)
        except CloudError as exc:
            if _code(exc) not in _LOST:
                raise


def _metadata(tags: Mapping[str, str]) -> dict[str, str]:
    """Our ownership tags as blob metadata (names must be C# identifiers)."""
    out: dict[str, str] = {}
    for key, value in tags.items():
        name = "".join(c if c.isalnum() else "_" for c in key)
        if name and not name[0].isdigit() and value.isascii():
            out[name] = value
    return out
