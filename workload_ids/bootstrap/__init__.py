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

import uuid
from dataclasses import dataclass

from ..config import TOOL_IDENTITIES as IDENTITIES

PROVIDERS = ("aws", "gcp", "azure")

# Names the clouds' listings and the audit sink's share (here, so neither imports the other).
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"  # nosec B105: a role name, not a secret
# Secret Manager annotation keys allow no ':'; the value says which bootstrap object it is.
KEY_ANNOTATION = "workload-ids-bootstrap"
KEY_ANNOTATION_VALUE = "signing-key"
_ROLE_NS = uuid.UUID("6f1d5b0e-0d51-4c8e-9a51-9d1a6f0e2b11")  # fixed: role ids stay the same across runs


def role_guid(subscription: str, identity: str) -> str:
    """An Azure custom role's GUID, derived from subscription and identity so reruns find the same role."""
    return str(uuid.uuid5(_ROLE_NS, f"{subscription}/{identity}"))
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
