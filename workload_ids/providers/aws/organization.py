"""The member accounts of the AWS Organization (``targets.aws`` entry ``organization:``).

Listed with the ambient credentials (the management account or a delegated administrator
may call ``organizations:ListAccounts``); each other active member is then reached by
assuming the entry's role in it (:meth:`.clients.AwsClients.organization_accounts`). The
ambient credentials' own account is reached as it is: a role assumed into one's own
account would only be another way in.
"""

from __future__ import annotations

from ...errors import UserError
from ..interface import Member, OrganizationBackend
from .clients import AwsClients


class AwsOrganization(OrganizationBackend):
    """Organizations ``ListAccounts``, page by page through the seam, once per run."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def members(self, kind: str, name: str, *, role: str | None = None) -> list[Member]:
        """Every account of the organization, suspended ones as inactive."""
        if kind != "organization":
            raise UserError(f"AWS has no {kind} targets; write `organization: {{role: NAME}}`")
        return sorted((Member(account, state == "ACTIVE", state)
                       for account, state in self.clients.organization_accounts(role)),
                      key=lambda m: m.target)
