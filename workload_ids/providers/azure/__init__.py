"""The Azure backend: managed identities, custom role definitions, role assignments,
federated credentials; Entra applications and Key Vault for key mode.

Connecting imports the SDK; this record does not, so ``validate`` stays offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..interface import Backends, Cloud, TransferCheck
from . import render

if TYPE_CHECKING:
    from ...calls import CallSeam
    from ...config import Config


def connect(config: Config, seam: CallSeam, transfers: TransferCheck) -> Backends:
    """Azure's backends over ``seam``, sharing one set of clients."""
    from .lock import BlobLeaseLock
    from .provider import AzureProvider
    from .secret_store import KeyVaultStore
    provider = AzureProvider(config, seam, transfers)
    return Backends(CLOUD, config, seam, identities=provider, leavers=provider, keys=provider,
                    store_for=lambda target: KeyVaultStore(config, seam, target, provider),
                    lock_for=lambda target: BlobLeaseLock(config, seam, target, provider))


CLOUD = Cloud("azure", render.desired_identity, render.static_checks, connect)
