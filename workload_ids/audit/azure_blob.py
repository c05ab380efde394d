"""The audit sink on Azure Blob Storage: a container with an immutability policy.

Records are block blobs written create-only (``If-None-Match: *``); under a time-based
retention policy (or version-level immutability) no blob can be overwritten or deleted
before its retention ends, so what is read is what was written. The head anchor is the
last line of an append blob, ``PREFIX/head-NNNNNN`` (one per 40,000 records: an append
blob holds at most 50,000 blocks), which the policy lets us append to only with
``allowProtectedAppendWrites``.

Addresses: ``https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`` for Azure; for a
local emulator (Azurite, or ours) on loopback, path-style
``https://127.0.0.1:PORT/ACCOUNT/CONTAINER/PREFIX``.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from ..calls import CONFLICT, NOT_FOUND, ErrorInfo
from ..errors import CloudError, UserError
from .chain import Listing, listing_of, record_name

if TYPE_CHECKING:
    from ..calls import CallSeam

PROVIDER = "azblob"
HEAD_SPAN = 40_000  # records per head blob, under the 50,000 blocks of an append blob
_TAIL_BYTES = 4096


def classify(exc: BaseException) -> ErrorInfo | None:
    """azure-core's errors, as the Azure provider reads them."""
    from ..providers.azure.clients import classify as azure_classify
    return azure_classify(exc)


def make_fault(kind: str, operation: str) -> BaseException:
    """An azure-core exception for a fault injected into a sink call (tests, fault matrix)."""
    from ..providers.azure.clients import make_fault as azure_fault
    return azure_fault(kind, operation)


def register(seam: CallSeam) -> None:
    """Let ``seam`` classify and fault the blob sink's calls, so they retry like the provider's
    and leave it as CloudError of their kind (as the Azure provider's do)."""
    seam.register(PROVIDER, classify, make_fault, translate=True)


def sandbox_token() -> str:
    """An unsigned JWT for local emulators: Azurite's ``--oauth basic`` reads (never checks
    the signature of) its issuer, audience and lifetime; our emulator only wants one."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    now = int(time.time())
    claims = {"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/sandbox/",
              "iat": now - 60, "nbf": now - 60, "exp": now + 365 * 24 * 3600}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def credential_and_connection(config: Any, url: str) -> tuple[Any, dict[str, Any]]:
    """The credential and azure-core keyword arguments for ``url`` (the sandbox's CA
    bundle only for a loopback emulator; the SDK's retries off: the seam retries)."""
    from ..endpoints import loopback_url
    from ..providers.azure.clients import StaticTokenCredential
    connection: dict[str, Any] = {"retry_total": 0}
    bundle = config.azure_ca_bundle()
    if bundle and loopback_url(url):
        connection["connection_verify"] = bundle
    if config.azure.sandboxCredentials:
        return StaticTokenCredential(sandbox_token()), connection
    from ..clock import check_real_credentials
    check_real_credentials("Azure", "azure.sandboxCredentials")
    from azure.identity import DefaultAzureCredential
    return DefaultAzureCredential(), connection


def split_url(url: str) -> tuple[str, str, str]:
    """(account URL, container, prefix) of a sink URL."""
    from ..endpoints import loopback_url
    parts = urllib.parse.urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    base = f"{parts.scheme}://{parts.netloc}"
    if loopback_url(url):  # path-style: the account is the first segment
        if len(segments) < 2:
            raise UserError(f"audit.sink.url {url}: write https://HOST:PORT/ACCOUNT/CONTAINER/PREFIX "
                            "for a local emulator")
        base, segments = f"{base}/{segments[0]}", segments[1:]
    if not segments:
        raise UserError(f"audit.sink.url {url} names no container; write "
                        "https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX")
    return base, segments[0], "/".join(segments[1:])


class BlobStore:
    """See the module docstring."""

    provider = PROVIDER

    def __init__(self, config: Any, url: str) -> None:
        from azure.storage.blob import ContainerClient
        self.where = url
        account, self.container_name, prefix = split_url(url)
        self.prefix = f"{prefix}/" if prefix else ""
        credential, connection = credential_and_connection(config, url)
        self.container = ContainerClient(account, self.container_name, credential=credential,
                                         **connection)

    def _call(self, seam: CallSeam, operation: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return seam.call(PROVIDER, f"blob.{operation}", fn, *args, **kwargs)

    def append_only(self, seam: CallSeam) -> str | None:
        """ObjectStore.append_only: needs an immutability policy or versioned WORM on the container."""
        props = self._call(seam, "get_container_properties", self.container.get_container_properties)
        if props.has_immutability_policy or getattr(props, "immutable_storage_with_versioning_enabled",
                                                    False):
            return None
        return (f"container {self.container_name} has no immutability policy; add a time-based "
                "retention policy that allows protected append writes (az storage container "
                "immutability-policy create --period DAYS --allow-protected-append-writes true), "
                "then lock it")

    def _names(self, seam: CallSeam, prefix: str) -> list[tuple[str, int]]:
        pages = self.container.list_blobs(name_starts_with=prefix).by_page()
        out: list[tuple[str, int]] = []
        while True:
            try:
                page = self._call(seam, "list_blobs", lambda: list(next(pages)))
            except StopIteration:
                return out
            out.extend((b.name, int(b.size or 0)) for b in page)

    def listing(self, seam: CallSeam) -> Listing:
        """ObjectStore.listing: a blob's name is its handle (immutability keeps it unreplaced)."""
        return listing_of(self.prefix, [(name, name) for name, _ in self._names(seam, self.prefix)])

    def read(self, seam: CallSeam, seq: int, handle: str) -> bytes:
        """ObjectStore.read: downloads the record blob named by ``handle``."""
        blob = self.container.get_blob_client(handle)
        return bytes(self._call(seam, "download_blob", lambda: blob.download_blob().readall()))

    def create(self, seam: CallSeam, seq: int, data: bytes) -> bool:
        """ObjectStore.create: an upload with overwrite off; False when the blob already exists."""
        from azure.storage.blob import ContentSettings
        blob = self.container.get_blob_client(f"{self.prefix}records/{record_name(seq)}")
        try:
            self._call(seam, "upload_blob", blob.upload_blob, data, overwrite=False,
                       content_settings=ContentSettings(content_type="application/json"))
        except CloudError as exc:
            if exc.kind != CONFLICT:
                raise
            return False
        return True

    def _heads(self, seam: CallSeam) -> list[tuple[str, int]]:
        return sorted((n, size) for n, size in self._names(seam, f"{self.prefix}head-")
                      if n[len(self.prefix) + 5:].isdigit())

    def read_anchor(self, seam: CallSeam) -> bytes | None:
        """ObjectStore.read_anchor: the last line of the newest head append blob (its tail only)."""
        heads = [(n, size) for n, size in self._heads(seam) if size]
        if not heads:
            return None
        name, size = heads[-1]
        blob = self.container.get_blob_client(name)
        start = max(0, size - _TAIL_BYTES)
        tail = bytes(self._call(seam, "download_blob",
                                lambda: blob.download_blob(offset=start, length=size - start).readall()))
        lines = [line for line in tail.split(b"\n") if line.strip()]
        return lines[-1] if lines else None

    def write_anchor(self, seam: CallSeam, data: bytes) -> None:
        """ObjectStore.write_anchor: a line appended to the span's head blob, made if missing."""
        from azure.core import MatchConditions
        seq = int(json.loads(data)["seq"])
        blob = self.container.get_blob_client(f"{self.prefix}head-{seq // HEAD_SPAN:06d}")
        try:
            self._call(seam, "append_block", blob.append_block, data + b"\n")
            return
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
        # The first anchor of this span: make its append blob (unless a concurrent run did).
        try:
            self._call(seam, "create_append_blob", blob.create_append_blob,
                       match_condition=MatchConditions.IfMissing)
        except CloudError as exc:
            if exc.kind != CONFLICT:
                raise
        self._call(seam, "append_block", blob.append_block, data + b"\n")

