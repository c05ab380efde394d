"""Workload locks, one per key store: where a run holds a workload while its keys change
(see :mod:`.interface`). Found by the secret store's name, SDKs imported on use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..calls import CallSeam
    from ..config import Config
    from .interface import KeyLock

REGISTRY = {"aws-secrets-manager": "workload_ids.locks.aws:SecretsManagerLock",
            "gcp-secret-manager": "workload_ids.locks.gcp:SecretAnnotationLock",
            "azure-key-vault": "workload_ids.locks.azure:BlobLeaseLock"}


def create_lock(store: str, config: Config, seam: CallSeam, target: str,
                provider: object | None = None) -> KeyLock:
    """The lock that goes with secret store ``store`` in account/project/subscription
    ``target`` (sharing ``provider``'s clients when given)."""
    path = REGISTRY.get(store)
    if path is None:
        raise UserError(f"no workload lock for secret store {store!r}; known: {', '.join(sorted(REGISTRY))}")
    module_name, factory = path.split(":")
    lock: KeyLock = getattr(importlib.import_module(module_name), factory)(config, seam, target, provider)
    return lock
