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
    from .adoption import AwsAdoption
    from .clients import AwsClients
    from .discovery import AwsDiscovery
    from .identity import AwsIdentities
    from .keys import AwsKeys
    from .leavers import AwsLeavers
    from .lock import SecretsManagerLock
    from .organization import AwsOrganization
    from .secret_store import SecretsManagerStore
    from .usage import AwsUsage
    clients = AwsClients(config, seam)
    return Backends(CLOUD, config, seam, identities=AwsIdentities(clients, config, transfers),
                    leavers=AwsLeavers(clients), keys=AwsKeys(clients, config),
                    store_for=lambda target: SecretsManagerStore(clients, target),
                    lock_for=lambda target: SecretsManagerLock(clients, target),
                    discovery=AwsDiscovery(clients, config),
                    organization=AwsOrganization(clients),
                    adoption=AwsAdoption(clients), usage=AwsUsage(clients))


CLOUD = Cloud("aws", render.desired_identity, render.static_checks, connect)
