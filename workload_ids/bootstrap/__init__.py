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

from dataclasses import dataclass

from ..config import TOOL_IDENTITIES as IDENTITIES

PROVIDERS = ("aws", "gcp", "azure")
# GCP service accounts and custom roles have no labels, so bootstrap's ownership marker
# is their description (on Azure: a tag on the managed identity, and the role definition's
# fixed name and description at its fixed GUID); distinct from the workloads'
# ``workload-ids:v1`` marker so that no workload command takes the tool's own identities
# for a workload's.
MARKER_PREFIX = "workload-ids:bootstrap"


def marker(identity: str) -> str:
    """The description that marks an object as bootstrap's, for one tool identity."""
    return f"{MARKER_PREFIX} identity={identity}"


@dataclass(frozen=True, slots=True)
class Step:
    """One object and what bootstrap did to it: created, updated, unchanged, or a note
    about something it leaves alone."""

    action: str
    kind: str
    name: str
    detail: str = ""

    def line(self) -> str:
        """The step as one line of the bootstrap plan's text."""
        verb = "note:" if self.action == "note" else self.action
        return f"{verb} {self.kind} {self.name}" + (f" ({self.detail})" if self.detail else "")

    def as_json(self) -> dict[str, str]:
        """The step as ``bootstrap --format json`` prints it."""
        return {"action": self.action, "kind": self.kind, "name": self.name, "detail": self.detail}


__all__ = ["IDENTITIES", "MARKER_PREFIX", "PROVIDERS", "Step", "marker"]
