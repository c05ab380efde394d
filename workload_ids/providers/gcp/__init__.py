"""The GCP backend: service accounts, custom roles, conditional and resource bindings;
Secret Manager for keys.

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
    """GCP's backends over ``seam``, sharing one set of clients."""
    from .lock import SecretAnnotationLock
    from .provider import GcpProvider
    from .secret_store import SecretManagerStore
    provider = GcpProvider(config, seam, transfers)
    return Backends(CLOUD, config, seam, identities=provider, leavers=provider, keys=provider,
                    store_for=lambda target: SecretManagerStore(config, seam, target, provider),
                    lock_for=lambda target: SecretAnnotationLock(config, seam, target, provider))


CLOUD = Cloud("gcp", render.desired_identity, render.static_checks, connect)
