"""The audit sink on S3: a bucket with Object Lock and a default retention.

Under Object Lock no version can be deleted or changed before its retention ends, but a
new version of a key can still be written over it, and a delete marker can hide it. So
records are read by listing *versions*: each record is read in its first version (the
one written create-only, which the lock keeps), and anything written over it since is
reported. Reading costs the same calls as listing objects.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import CloudError
from .chain import RECORD_NAME, Listing, record_name

if TYPE_CHECKING:
    import boto3

    from ..calls import CallSeam


def aws_session(config: Any) -> boto3.session.Session:
    """The session the sink uses: the ambient credentials (the sandbox's fake ones with
    ``aws.sandboxCredentials``), never another account's role."""
    import boto3

    from ..providers.aws.clients import share_models
    if config.aws.sandboxCredentials:
        session = boto3.session.Session(aws_access_key_id="testing",
                                        aws_secret_access_key="testing",  # sandbox only  # nosec B106
                                        region_name="us-east-1")
    else:
        from ..endpoints import require_sandbox_credentials
        require_sandbox_credentials(config, "aws")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        session = boto3.session.Session(region_name=region)
    share_models(session._session)
    return session


def boto_config() -> Any:
    """botocore settings for the sink: one attempt per call (the seam retries), short timeouts."""
    from botocore.config import Config as BotoConfig
    # The seam retries; botocore's own retries would multiply its attempts.
    return BotoConfig(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)


class S3Store:
    """``s3://BUCKET/PREFIX``; see the module docstring."""

    provider = "aws"

    def __init__(self, config: Any, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.where = f"s3://{bucket}/{prefix}"
        self._raw = aws_session(config).client("s3", endpoint_url=config.aws.endpointUrl,
                                               config=boto_config())

    def _call(self, seam: CallSeam, operation: str, **kwargs: Any) -> Any:
        # "aws" is registered translating (audit.sink._register): a failure arrives as a
        # CloudError, and the answers below are told apart by its code.
        return seam.call("aws", f"s3.{operation}", getattr(self._raw, operation), **kwargs)

    def append_only(self, seam: CallSeam) -> str | None:
        """ObjectStore.append_only: needs Object Lock with a default retention (mode and period)."""
        try:
            answer = self._call(seam, "get_object_lock_configuration", Bucket=self.bucket)
        except CloudError as exc:
            if exc.code != "ObjectLockConfigurationNotFoundError":
                raise
            answer = {}
        lock = answer.get("ObjectLockConfiguration") or {}
        retention = (lock.get("Rule") or {}).get("DefaultRetention") or {}
        if lock.get("ObjectLockEnabled") != "Enabled":
            return (f"bucket {self.bucket} does not have Object Lock enabled; create the bucket "
                    "with Object Lock (--object-lock-enabled-for-bucket) and a default retention "
                    "in COMPLIANCE mode")
        if not retention.get("Mode") or not (retention.get("Days") or retention.get("Years")):
            return (f"bucket {self.bucket} has Object Lock but no default retention, so records "
                    "are written unprotected; put-object-lock-configuration with a DefaultRetention "
                    "(Mode COMPLIANCE, Days or Years at least as long as restores must reach back)")
        return None

    def listing(self, seam: CallSeam) -> Listing:
        """ObjectStore.listing: every object version, so overwrites and delete markers show."""
        out = Listing()
        versions: dict[str, list[tuple[str, bool]]] = {}  # key -> [(version, is marker)] newest first
        folder = f"{self.prefix}records/"
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        while True:
            page = self._call(seam, "list_object_versions", **kwargs)
            for v in page.get("Versions", []):
                versions.setdefault(v["Key"], []).append((v["VersionId"], False))
            for m in page.get("DeleteMarkers", []):
                versions.setdefault(m["Key"], []).append((m["VersionId"], True))
            if not page.get("IsTruncated"):
                break
            kwargs.update(KeyMarker=page.get("NextKeyMarker"),
                          VersionIdMarker=page.get("NextVersionIdMarker"))
        # Record versions and delete markers outlive what list_objects shows: a trail whose
        # records were all hidden is not taken for a new one.
        out.history = any(key.startswith(folder) for key in versions)
        for key, entries in versions.items():
            if not key.startswith(folder):
                continue
            match = RECORD_NAME.match(key[len(folder):])
            originals = [v for v, marker in entries if not marker]
            if not match or not originals:
                out.strays.append(key)
                continue
            seq = int(match.group(1))
            # S3 lists a key's versions newest first (and moto keeps that order); the first
            # version written is the last listed. "null" is a version written before
            # versioning was on, which Object Lock cannot have kept.
            out.records[seq] = originals[-1]
            if len(entries) > 1:
                markers = sum(1 for _, marker in entries if marker)
                out.overwritten[seq] = (f"{len(originals) - 1} later version(s), "
                                        f"{markers} delete marker(s)")
        return out

    def read(self, seam: CallSeam, seq: int, handle: str) -> bytes:
        """ObjectStore.read: reads the exact version the listing saw."""
        answer = self._call(seam, "get_object", Bucket=self.bucket,
                            Key=f"{self.prefix}records/{record_name(seq)}", VersionId=handle)
        return bytes(answer["Body"].read())

    def create(self, seam: CallSeam, seq: int, data: bytes) -> bool:
        """ObjectStore.create: ``If-None-Match: *``; False when taken or a racing write holds it."""
        try:
            self._call(seam, "put_object", Bucket=self.bucket,
                       Key=f"{self.prefix}records/{record_name(seq)}", Body=data,
                       ContentType="application/json", IfNoneMatch="*")
        except CloudError as exc:
            # 412: the name is taken; 409: a concurrent conditional write to it is in flight.
            if exc.code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            return False
        return True

    def read_anchor(self, seam: CallSeam) -> bytes | None:
        """ObjectStore.read_anchor: the ``head.json`` object; None when there is none."""
        try:
            answer = self._call(seam, "get_object", Bucket=self.bucket, Key=f"{self.prefix}head.json")
        except CloudError as exc:
            if exc.code not in ("NoSuchKey", "404"):
                raise
            return None
        return bytes(answer["Body"].read())

    def write_anchor(self, seam: CallSeam, data: bytes) -> None:
        """ObjectStore.write_anchor: overwrites ``head.json``; Object Lock keeps the earlier versions."""
        self._call(seam, "put_object", Bucket=self.bucket, Key=f"{self.prefix}head.json", Body=data,
                   ContentType="application/json")
