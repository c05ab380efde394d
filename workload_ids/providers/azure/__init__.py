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
    from .adoption import AzureAdoption
    from .applications import AzureApplications
    from .clients import AzureClients
    from .discovery import AzureDiscovery
    from .identity import AzureIdentities
    from .keys import AzureKeys
    from .leavers import AzureLeavers
    from .lock import BlobLeaseLock
    from .organization import AzureOrganization
    from .roles import AzureGrants
    from .secret_store import KeyVaultStore
    from .usage import AzureUsage
    clients = AzureClients(config, seam)
    grants = AzureGrants(clients)
    applications = AzureApplications(clients, config, transfers, grants)
    identities = AzureIdentities(clients, config, transfers, grants, applications)
    return Backends(CLOUD, config, seam, identities=identities,
                    leavers=AzureLeavers(clients, identities, applications, grants),
                    keys=AzureKeys(clients, config, applications),
                    store_for=lambda target: KeyVaultStore(clients, target),
                    lock_for=lambda target: BlobLeaseLock(clients, target),
                    discovery=AzureDiscovery(clients),
                    organization=AzureOrganization(clients), usage=AzureUsage(clients),
                    adoption=AzureAdoption(clients, config, grants, identities))


CLOUD = Cloud("azure", render.desired_identity, render.static_checks, connect)
