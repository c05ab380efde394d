"""The workload lock on GCP: an annotation on the workload's own Secret Manager secret.

Every write is a compare-and-swap on the secret's etag (``UpdateSecret`` refuses a stale
one with ABORTED), and a missing secret is created with the lock already in it
(``CreateSecret`` refuses an existing id), so exactly one run takes the lock. The
secret is created with the workload's tags, as the key store would create it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ... import clock
from ...calls import CONFLICT, NOT_FOUND
from ...errors import CloudError
from ..interface import LEASE, Holder, KeyLock, LockRecord
from .clients import ALREADY_EXISTS, GcpClients
from .render import secret_id
from .secret_store import annotation_key

LOCK_ANNOTATION = "workload-ids_lock"
_ATTEMPTS = 6


class SecretAnnotationLock(KeyLock):
    """Workload locks held on one project's Secret Manager secrets (see the module docstring)."""

    def __init__(self, clients: GcpClients, target: str) -> None:
        self.clients = clients
        self.project = target
        self.client = clients.secrets

    def _path(self, name: str) -> str:
        return f"projects/{self.project}/secrets/{secret_id(name)}"

    def _swap(self, name: str, change: Callable[[LockRecord | None], str | bool | None],
              create: Mapping[str, str] | None = None) -> bool | LockRecord:
        """Read the lock annotation and write ``change(record)`` back with the etag.

        ``change`` returns the new annotation value, None to remove it, or False to leave
        the secret alone (then the current record is returned). True when written."""
        for _ in range(_ATTEMPTS):
            try:
                secret = self.client.get_secret(name=self._path(name))
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
                if create is None:
                    return False
                value = change(None)
                annotations = {**create, "workload-ids_secret-name": name}
                if isinstance(value, str):
                    annotations[LOCK_ANNOTATION] = value
                try:
                    self.client.create_secret(request={
                        "parent": f"projects/{self.project}", "secret_id": secret_id(name),
                        "secret": {"replication": {"automatic": {}}, "annotations": annotations}})
                    return True
                except CloudError as taken:
                    if taken.code != ALREADY_EXISTS:
                        raise
                    continue  # created by another run a moment ago: read it
            annotations = dict(secret.annotations)
            text = annotations.get(LOCK_ANNOTATION)
            current = LockRecord.decode(text) if text else None
            value = change(current)
            if value is False:
                return current if current is not None else False
            if value is None:
                annotations.pop(LOCK_ANNOTATION, None)
            elif isinstance(value, str):
                annotations[LOCK_ANNOTATION] = value
            try:
                self.client.update_secret(request={
                    "secret": {"name": self._path(name), "annotations": annotations, "etag": secret.etag},
                    "update_mask": {"paths": ["annotations"]}})
                return True
            except CloudError as exc:
                if exc.kind != CONFLICT:
                    raise
                # Someone else wrote first (perhaps the lock): read again and decide again.
        return False

    def try_acquire(self, name: str, holder: Holder, tags: Mapping[str, str]) -> LockRecord | None:
        """KeyLock.try_acquire: an annotation on the workload's secret, written by etag compare-and-swap."""
        now = clock.lease_now()
        mine = LockRecord.new(holder).encode()

        def take(current: LockRecord | None) -> str | bool:
            if current is not None and current.live(now) and current.holder != holder.name:
                return False
            return mine
        result = self._swap(name, take, create={annotation_key(k): v for k, v in tags.items()})
        if result is True:
            return None
        if isinstance(result, LockRecord):
            return result
        # Lost every compare-and-swap to other runs: someone holds it.
        return LockRecord("another run (contended)", "?", None, None)

    def renew(self, name: str, holder: Holder) -> bool:
        """KeyLock.renew: moves the annotation's ``until`` on, by compare-and-swap."""
        def extend(current: LockRecord | None) -> str | bool:
            if current is None or current.holder != holder.name:
                return False
            return LockRecord(current.holder, current.command, current.since,
                              clock.lease_now() + LEASE).encode()
        return self._swap(name, extend) is True

    def release(self, name: str, holder: Holder) -> None:
        """KeyLock.release: removes the annotation if it still names us."""
        def free(current: LockRecord | None) -> str | bool | None:
            if current is None or current.holder != holder.name:
                return False
            return None
        self._swap(name, free)
