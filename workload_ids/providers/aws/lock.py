"""The workload lock on AWS: a secret ``NAME.lock`` in Secrets Manager.

``CreateSecret`` on a name that exists fails, so exactly one run creates the lock. Its
description is the lock record (holder, lease end). A stale lock is deleted by the ARN
it was read under: ARNs end in a random suffix per creation, so that delete can only
remove the stale lock, never a newer one made by a run that broke it first. A name just
deleted may not be reusable at once (deletion is asynchronous on AWS); that reads as
busy, and the waiting run tries again.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ... import clock
from ...calls import NOT_FOUND
from ...errors import CloudError, ConflictError
from ...model import Marker
from ..interface import LEASE, Holder, KeyLock, LockRecord
from .clients import AwsClients

_RELEASING = LockRecord("a run that just released it", "?", None, None)


def lock_name(name: str) -> str:
    """The lock secret's name: ``NAME.lock``, beside the workload's secret ``NAME``."""
    return f"{name}.lock"


class SecretsManagerLock(KeyLock):
    """Workload locks in one account's Secrets Manager (see the module docstring)."""

    def __init__(self, clients: AwsClients, target: str) -> None:
        self.client = clients.client(target, "secretsmanager")
        # (lock, holder) -> the ARN we created and the record it carries
        self._held: dict[tuple[str, str], tuple[str, LockRecord]] = {}
        self._mutex = threading.Lock()

    def _create(self, name: str, holder: Holder, tags: Mapping[str, str]) -> bool:
        """True when this run created the lock; False when a lock exists."""
        record = LockRecord.new(holder)
        try:
            made: Any = self.client.create_secret(
                Name=lock_name(name), Description=record.encode(),
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        except CloudError as exc:
            releasing = exc.code == "InvalidRequestException" and "deletion" in exc.message
            if exc.code == "ResourceExistsException" or releasing:
                return False  # held, or deleted a moment ago and not yet reusable
            raise
        with self._mutex:
            self._held[(name, holder.name)] = (str(made["ARN"]), record)
        return True

    def try_acquire(self, name: str, holder: Holder, tags: Mapping[str, str]) -> LockRecord | None:
        """KeyLock.try_acquire: a stale lock is deleted by its exact ARN, so never a newer lock."""
        if self._create(name, holder, tags):
            return None
        try:
            doc: Any = self.client.describe_secret(SecretId=lock_name(name))
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return _RELEASING  # released between our two calls: try again after a pause
        if doc.get("DeletedDate"):
            return _RELEASING
        if Marker.from_tags({t["Key"]: t["Value"] for t in doc.get("Tags") or []}) is None:
            raise ConflictError(f"secret {lock_name(name)} exists without the workload-ids ownership "
                                "tags, so it is not our lock and is never modified",
                                "rename or delete that secret, or change credentials.secretName")
        record = LockRecord.decode(str(doc.get("Description", "")))
        if record.live(clock.lease_now()):
            return record
        try:  # stale: delete exactly the lock we read, then contend again
            self.client.delete_secret(SecretId=doc["ARN"], ForceDeleteWithoutRecovery=True)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
        return None if self._create(name, holder, tags) else record

    def renew(self, name: str, holder: Holder) -> bool:
        """KeyLock.renew: rewrites the lock secret's description with a later ``until``."""
        held = self._held.get((name, holder.name))
        if held is None:
            return False
        arn, record = held
        try:
            self.client.update_secret(SecretId=arn, Description=LockRecord(
                record.holder, record.command, record.since, clock.lease_now() + LEASE).encode())
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return False  # broken by another run after our lease ran out
        return True

    def release(self, name: str, holder: Holder) -> None:
        """KeyLock.release: deletes the lock secret we created (by ARN) without a recovery window."""
        with self._mutex:
            held = self._held.pop((name, holder.name), None)
        if held is None:
            return
        arn = held[0]
        try:
            self.client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
