"""Secret stores that receive issued keys: AWS Secrets Manager, GCP Secret Manager and
Azure Key Vault. Found by name, SDKs imported on use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..calls import CallSeam
    from ..config import Config
    from .interface import SecretStore

REGISTRY = {"aws-secrets-manager": "workload_ids.secrets.aws:SecretsManagerStore",
            "gcp-secret-manager": "workload_ids.secrets.gcp:SecretManagerStore",
            "azure-key-vault": "workload_ids.secrets.azure:KeyVaultStore"}


def create_store(name: str, config: Config, seam: CallSeam, target: str,
                 provider: object | None = None) -> SecretStore:
    """Build the secret store ``name`` for account/project/subscription ``target``
    (sharing ``provider``'s clients when given)."""
    path = REGISTRY.get(name)
    if path is None:
        raise UserError(f"unknown secret store {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module_name, factory = path.split(":")
    store: SecretStore = getattr(importlib.import_module(module_name), factory)(
        config, seam, target, provider)
    return store
