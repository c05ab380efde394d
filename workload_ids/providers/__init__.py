"""The clouds, found by name in ONE registry. Each cloud's package builds its
:class:`~.interface.Cloud` record without importing its SDK; ``connect`` imports it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from .interface import Cloud

# cloud name -> "package:record"; the package is imported on first use only.
CLOUDS = {
    "aws": "workload_ids.providers.aws:CLOUD",
    "gcp": "workload_ids.providers.gcp:CLOUD",
    "azure": "workload_ids.providers.azure:CLOUD",
}


def get_cloud(name: str) -> Cloud:
    """The cloud registered as ``name``; a UserError naming the known ones otherwise."""
    path = CLOUDS.get(name)
    if path is None:
        raise UserError(
            f"the {name} backend is not available in this version of workload-ids: "
            f"validate and lint check {name} manifests, but plan and apply support "
            f"{', '.join(sorted(CLOUDS))} only")
    module_name, attr = path.split(":")
    cloud: Cloud = getattr(importlib.import_module(module_name), attr)
    return cloud
