"""The audit sink on Cloud Storage: a bucket with a retention policy (bucket lock).

Records are objects written create-only (``ifGenerationMatch=0``); under the retention
policy no object can be deleted or replaced before its retention ends, so what is read is
what was written. The head anchor cannot be an object overwritten on each append (that is
a replacement the policy refuses); it is the custom metadata of the object
``PREFIX/head``, which the policy lets us patch. In production the policy must be locked
(``gcloud storage buckets update --lock-retention-period``): an unlocked one can be
removed by a bucket admin, and then records deleted. With ``gcp.sandboxCredentials`` (the
local emulator) an unlocked policy is accepted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..calls import NOT_FOUND, ErrorInfo
from ..errors import CloudError
from .chain import Listing, listing_of, record_name

if TYPE_CHECKING:
    from ..calls import CallSeam

PROVIDER = "gcp"
ANCHOR_KEY = "workload-ids-head"


def classify(exc: BaseException) -> ErrorInfo | None:
    """google-api-core's errors, as the GCP provider reads them."""
    from ..providers.gcp.clients import classify as gcp_classify
    return gcp_classify(exc)


def make_fault(kind: str, operation: str) -> BaseException:
    """A google-api-core exception for a fault injected into a sink call (tests, fault matrix)."""
    from ..providers.gcp.clients import make_fault as gcp_fault
    return gcp_fault(kind, operation)


# A create-only insert (``ifGenerationMatch=0``) refused because the name is taken: the
# CloudError's code (HTTP 412; its kind is "other").
PRECONDITION_FAILED = "PreconditionFailed"


def register(seam: CallSeam) -> None:
    """Let ``seam`` classify and fault the GCS sink's calls, so they retry like the provider's;
    failures leave it as CloudError, as GcpClients registers "gcp" (every registration says
    the same)."""
    seam.register(PROVIDER, classify, make_fault, translate=True)


class GcsStore:
    """``gs://BUCKET/PREFIX``; see the module docstring."""

    provider = PROVIDER

    def __init__(self, config: Any, bucket: str, prefix: str) -> None:
        from google.cloud.storage import Client
        self.where = f"gs://{bucket}/{prefix}"
        self.prefix = f"{prefix}/" if prefix else ""
        self.sandbox = bool(config.gcp.sandboxCredentials)
        endpoint = config.gcp.storageEndpoint
        options = {"api_endpoint": endpoint} if endpoint else None
        if self.sandbox:
            from google.auth.credentials import AnonymousCredentials
            self.client = Client(project="sandbox", credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                                         client_options=options)
        else:
            from ..clock import check_real_credentials
            from ..endpoints import require_sandbox_credentials
            require_sandbox_credentials(config, "gcp")
            check_real_credentials("Google Cloud", "gcp.sandboxCredentials")
            self.client = Client(client_options=options)
        self.bucket = self.client.bucket(bucket)

    def _call(self, seam: CallSeam, operation: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        # retry=None: the seam retries, counted, within its budget.
        return seam.call(PROVIDER, f"storage.{operation}", fn, *args, retry=None, **kwargs)

    def append_only(self, seam: CallSeam) -> str | None:
        """ObjectStore.append_only: the bucket needs a retention policy, locked outside the sandbox."""
        bucket = self.client.bucket(self.bucket.name)
        self._call(seam, "buckets.get", bucket.reload)
        if not bucket.retention_period:
            return (f"bucket {bucket.name} has no retention policy; set one as long as restores must "
                    "reach back (gcloud storage buckets update gs://BUCKET --retention-period=DURATION) "
                    "and lock it (--lock-retention-period)")
        if not bucket.retention_policy_locked and not self.sandbox:
            return (f"bucket {bucket.name}'s retention policy is not locked, so a bucket admin can "
                    "remove it and delete records; lock it (gcloud storage buckets update "
                    "gs://BUCKET --lock-retention-period)")
        return None

    def _names(self, seam: CallSeam, prefix: str) -> list[tuple[str, int]]:
        pages = self.client.list_blobs(self.bucket, prefix=prefix, retry=None).pages
        out: list[tuple[str, int]] = []
        while True:
            try:
                page = seam.call(PROVIDER, "storage.objects.list", lambda: list(next(pages)))
            except StopIteration:
                return out
            out.extend((b.name, int(b.generation or 0)) for b in page)

    def listing(self, seam: CallSeam) -> Listing:
        """ObjectStore.listing: a record's handle is its generation, so a replacement shows."""
        return listing_of(self.prefix, [(name, str(generation))
                                        for name, generation in self._names(seam, self.prefix)])

    def read(self, seam: CallSeam, seq: int, handle: str) -> bytes:
        """ObjectStore.read: reads the exact generation the listing saw."""
        blob = self.bucket.blob(f"{self.prefix}records/{record_name(seq)}", generation=int(handle))
        return bytes(self._call(seam, "objects.get", blob.download_as_bytes))

    def create(self, seam: CallSeam, seq: int, data: bytes) -> bool:
        """ObjectStore.create: an insert conditional on no live generation; False when the name is taken."""
        blob = self.bucket.blob(f"{self.prefix}records/{record_name(seq)}")
        try:
            self._call(seam, "objects.insert", blob.upload_from_string, data,
                       content_type="application/json", if_generation_match=0)
        except CloudError as exc:
            if exc.code != PRECONDITION_FAILED:
                raise
            return False
        return True

    def read_anchor(self, seam: CallSeam) -> bytes | None:
        """ObjectStore.read_anchor: from the ``head`` object's metadata; None when it is missing."""
        blob = self.bucket.blob(f"{self.prefix}head")
        try:
            self._call(seam, "objects.get", blob.reload)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None
        value = (blob.metadata or {}).get(ANCHOR_KEY)
        return value.encode() if value else None

    def write_anchor(self, seam: CallSeam, data: bytes) -> None:
        """ObjectStore.write_anchor: patches ``head``'s metadata, making the object the first time."""
        blob = self.bucket.blob(f"{self.prefix}head")
        blob.metadata = {ANCHOR_KEY: data.decode()}
        try:
            self._call(seam, "objects.patch", blob.patch)
            return
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
        try:  # the first anchor: make the object (empty; the anchor is its metadata)
            self._call(seam, "objects.insert", blob.upload_from_string, b"",
                       content_type="application/octet-stream", if_generation_match=0)
        except CloudError as exc:
            if exc.code != PRECONDITION_FAILED:
                raise
            self._call(seam, "objects.patch", blob.patch)  # a concurrent run made it: patch that one
