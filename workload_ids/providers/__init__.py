"""Cloud backends, found by name. Each imports its SDK only when it is built."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..calls import CallSeam
    from ..config import Config
    from .interface import Provider

# provider name -> "module:factory"; the module is imported on first use only.
REGISTRY = {
    "aws": "workload_ids.providers.aws.provider:AwsProvider",
    "gcp": "workload_ids.providers.gcp.provider:GcpProvider",
    "azure": "workload_ids.providers.azure.provider:AzureProvider",
}
STATIC = {
    "aws": "workload_ids.providers.aws.render:static_checks",
    "gcp": "workload_ids.providers.gcp.render:static_checks",
    "azure": "workload_ids.providers.azure.render:static_checks",
}


def create_provider(name: str, config: Config, seam: CallSeam) -> Provider:
    """Build the backend for ``name``."""
    path = REGISTRY.get(name)
    if path is None:
        raise UserError(
            f"the {name} backend is not available in this version of workload-ids: "
            f"validate and lint check {name} manifests, but plan and apply support "
            f"{', '.join(sorted(REGISTRY))} only")
    module_name, factory = path.split(":")
    module = importlib.import_module(module_name)
    provider: Provider = getattr(module, factory)(config, seam)
    return provider


def static_checker(name: str) -> object | None:
    """The provider's pure static checks (no SDK import), if it has any."""
    path = STATIC.get(name)
    if path is None:
        return None
    module_name, attr = path.split(":")
    checker: object = getattr(importlib.import_module(module_name), attr)
    return checker
