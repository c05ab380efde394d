"""The projects under a GCP folder or organization (``targets.gcp`` entries ``folder:``
and ``organization:``).

Resource Manager v3 lists only a parent's direct children: ``projects.list`` with the
parent, then ``folders.list`` with it, and the same again under each subfolder. Projects
that are not ACTIVE (DELETE_REQUESTED: shut down, deleted for good after 30 days) are
listed as inactive and never read.
"""

from __future__ import annotations

from typing import Any

from ...errors import UserError
from ..interface import Member, OrganizationBackend
from .clients import GcpClients

_ACTIVE = 1  # google.cloud.resourcemanager_v3 Project.State.ACTIVE (and Folder.State.ACTIVE)


class GcpOrganization(OrganizationBackend):
    """Every project under a folder (at any depth) or an organization."""

    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients

    def members(self, kind: str, name: str, *, role: str | None = None) -> list[Member]:
        """The projects under ``folders/NAME`` or ``organizations/NAME``, subfolders included."""
        if kind not in ("folder", "organization"):
            raise UserError(f"GCP has no {kind} targets; write `folder: NUMBER` or `organization: NUMBER`")
        found: dict[str, Member] = {}
        parents = [f"{kind}s/{name}"]
        seen: set[str] = set()
        while parents:
            parent = parents.pop()
            if parent in seen:  # a folder reached twice (never on GCP): read it once
                continue
            seen.add(parent)
            # Shut-down projects too (show_deleted), so the run can say which it skipped.
            for project in self._pages(self.clients.projects.list_projects, parent, "projects",
                                       show_deleted=True):
                state = int(project.state)
                found[project.project_id] = Member(project.project_id, state == _ACTIVE,
                                                   _state_name(project.state))
            for folder in self._pages(self.clients.folders.list_folders, parent, "folders"):
                if int(folder.state) == _ACTIVE:
                    parents.append(str(folder.name))
        return sorted(found.values(), key=lambda m: m.target)

    @staticmethod
    def _pages(method: Any, parent: str, key: str, **extra: Any) -> list[Any]:
        """Every item of a paged list under ``parent``, each page one seam call."""
        items: list[Any] = []
        token = ""  # a page token, not a secret  # nosec B105
        while True:
            page = method(request={"parent": parent, "page_size": 100, "page_token": token, **extra})
            items.extend(getattr(page, key))
            token = page.next_page_token
            if not token:
                return items


def _state_name(state: Any) -> str:
    name = getattr(state, "name", None)
    return str(name) if name else str(state)
