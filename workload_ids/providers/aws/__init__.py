"""The AWS backend: IAM roles (keyless) and users (key mode), Secrets Manager for keys.

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
    """AWS's backends over ``seam``, sharing one set of clients."""
    from .lock import SecretsManagerLock
    from .provider import AwsProvider
    from .secret_store import SecretsManagerStore
    provider = AwsProvider(config, seam, transfers)
    return Backends(CLOUD, config, seam, identities=provider, leavers=provider, keys=provider,
                    store_for=lambda target: SecretsManagerStore(config, seam, target, provider),
                    lock_for=lambda target: SecretsManagerLock(config, seam, target, provider))


CLOUD = Cloud("aws", render.desired_identity, render.static_checks, connect)
