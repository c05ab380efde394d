"""``workload-ids bootstrap``: the tool's own identities, least privilege, per cloud.

One module per cloud renders what that cloud needs as plain data (``aws``, ``gcp``,
``azure``: pure, no SDK imports); ``converge`` creates the AWS part through the call seam
and the provider's clients; ``command`` is what the CLI runs. The four identities are
separate so that each pipeline holds only what its command calls:

- ``apply``: plan and apply (which also issues a key-mode workload's first key);
- ``rotate``: rotate, recover, ``lint --cloud`` and inventory;
- ``cleanup``: cleanup and inventory;
- ``restore``: restore, by a person (MFA), never a pipeline.
"""

from __future__ import annotations

IDENTITIES = ("apply", "rotate", "cleanup", "restore")
PROVIDERS = ("aws", "gcp", "azure")

__all__ = ["IDENTITIES", "PROVIDERS"]
