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
    from .adoption import GcpAdoption
    from .clients import GcpClients
    from .discovery import GcpDiscovery
    from .identity import GcpIdentities
    from .keys import GcpKeys
    from .leavers import GcpLeavers
    from .lock import SecretAnnotationLock
    from .organization import GcpOrganization
    from .policies import GcpPolicies
    from .secret_store import SecretManagerStore
    from .usage import GcpUsage
    clients = GcpClients(config, seam)
    policies = GcpPolicies(clients)
    identities = GcpIdentities(config, clients, policies, transfers)
    return Backends(CLOUD, config, seam, identities=identities,
                    leavers=GcpLeavers(clients, policies, identities),
                    keys=GcpKeys(clients, identities),
                    store_for=lambda target: SecretManagerStore(clients, target),
                    lock_for=lambda target: SecretAnnotationLock(clients, target),
                    discovery=GcpDiscovery(clients, identities, policies),
                    organization=GcpOrganization(clients), usage=GcpUsage(clients),
                    adoption=GcpAdoption(config, clients, policies, identities))


CLOUD = Cloud("gcp", render.desired_identity, render.static_checks, connect)
