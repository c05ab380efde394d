"""``workload-ids bootstrap``: the tool's own identities, least privilege, per cloud.

One module per cloud renders what that cloud needs as plain data (``aws``, ``gcp``,
``azure``: pure, no SDK imports); ``converge``, ``gcp_apply`` and ``azure_apply`` create
them through the call seam and the providers' clients (``--apply``); ``command`` is what
the CLI runs. The four identities are separate so that each pipeline holds only what its command calls:

- ``apply``: plan and apply (which also issues a key-mode workload's first key);
- ``rotate``: rotate, recover, ``lint --cloud`` and inventory;
- ``cleanup``: cleanup and inventory;
- ``restore``: restore, by a person (MFA), never a pipeline.
"""

from __future__ import annotations

IDENTITIES = ("apply", "rotate", "cleanup", "restore")
PROVIDERS = ("aws", "gcp", "azure")
# GCP service accounts and custom roles have no labels, so bootstrap's ownership marker
# is the description (an Azure role definition keeps it there too); distinct from the
# workloads' ``workload-ids:v1`` marker so that no workload command ever takes the
# tool's own identities for a workload's.
MARKER_PREFIX = "workload-ids:bootstrap"


def marker(identity: str) -> str:
    """The description that marks an object as bootstrap's, for one tool identity."""
    return f"{MARKER_PREFIX} identity={identity}"


__all__ = ["IDENTITIES", "MARKER_PREFIX", "PROVIDERS", "marker"]
