"""What an Azure identity used, and when: Microsoft Graph's sign-in activity reports (beta)
for the service principal (a managed identity's, or an application's) and for each
client secret. Azure keeps nothing finer: no usage per role assignment, permission or
service, which every answer says in ``limits``.

Calls, once per run for the tenant (shared with discover): the applications, the service
principals and the two sign-in reports, a page of 999 each (4 for a tenant of up to 999
of each); per subscription, its managed identities (a page of up to 100), to learn each
one's client id. Nothing per identity: a fleet of 1,000 managed identities in one
subscription costs 4 + 10 calls.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

from ... import clock
from ...errors import UserError
from ...model import DesiredIdentity
from ...usage import IdentityUsage, KeyUse
from ..interface import UsageBackend
from .clients import AzureClients
from .discovery import Tenant, read_tenant

# How far back this tool counts on the sign-in reports (Entra keeps sign-in logs 30 days
# with P1): an identity silent that long is judged on 30 days, never on more.
WINDOW = timedelta(days=30)
LIMITS = (
    "Azure keeps no per-permission or per-service usage for managed identities and service "
    "principals; only sign-ins: every role assignment of an identity that signed in counts as used",
    "a sign-in says the identity obtained a token, not which role assignment or resource it used",
    "sign-in activity comes from Microsoft Graph's beta reports API (Entra ID P1 and AuditLog.Read.All); "
    "this tool counts on its last 30 days only",
)
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_IDENTITY = re.compile(r"/subscriptions/([^/]+)/resourceGroups/[^/]+/providers/"
                       r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+", re.IGNORECASE)
_APPLICATION = re.compile(r"/subscriptions/[^/]+/applications/(.+)", re.IGNORECASE)


class AzureUsage(UsageBackend):
    """Sign-in activity from Graph (see the module docstring for the calls)."""

    def __init__(self, clients: AzureClients) -> None:
        self.clients = clients
        self._tenant: Tenant | None = None
        self._identities: dict[str, dict[str, str]] = {}  # subscription -> ARM id (lower) -> client id
        self._lock = threading.Lock()
        self._subscription_locks: dict[str, threading.Lock] = {}

    def usage_for(self, desired: DesiredIdentity) -> IdentityUsage:
        """The usage of a workload's managed identity or application."""
        return replace(self.usage_of(desired.workload.target, desired.address),
                       workload=desired.workload.name)

    def usage_of(self, target: str, address: str) -> IdentityUsage:
        """The usage of a managed identity (its resource id), an application (its appId, or
        ``/subscriptions/S/applications/NAME`` as the render writes it) or any service
        principal (its appId) in subscription ``target``."""
        tenant = self._read_tenant()
        unread = [tenant.unread] if tenant.unread else []
        keys: tuple[KeyUse, ...] = ()
        if _IDENTITY.fullmatch(address):
            kind = "managed-identity"
            app_id = self._client_ids(target).get(address.lower(), "")
            if not app_id:
                unread.append(f"the managed identity {address} does not exist in subscription {target}")
        elif (named := _APPLICATION.fullmatch(address)) or _GUID.fullmatch(address):
            app = next((a for a in tenant.applications
                        if (named and a.get("displayName") == named.group(1))
                        or str(a.get("appId", "")).lower() == address.lower()), None)
            kind = "application" if app is not None else "service-principal"
            app_id = str(app.get("appId", "")) if app is not None else address if not named else ""
            if not app_id:
                unread.append(f"no application named {named.group(1) if named else address} in the tenant")
            if app is not None:
                keys = tuple(sorted(
                    (KeyUse(str(p.get("keyId")), (tenant.key_uses or {}).get(str(p.get("keyId")).lower()))
                     for p in app.get("passwordCredentials") or []), key=lambda k: k.key_id))
        else:
            raise UserError(f"{address!r} is not an Azure identity: give a managed identity's resource id "
                            "(/subscriptions/S/resourceGroups/G/providers/Microsoft.ManagedIdentity/"
                            "userAssignedIdentities/NAME) or an application's appId")
        now = clock.now()
        last = (tenant.sign_ins or {}).get(app_id.lower()) if app_id else None
        return IdentityUsage(provider="azure", target=target, address=address, kind=kind, read_at=now,
                             window=WINDOW, tracked_since=now - WINDOW, last_used=last, keys=keys,
                             limits=LIMITS, unread=tuple(unread),
                             last_used_known=tenant.sign_ins is not None and bool(app_id))

    # --- reads shared by every identity of a run ----------------------------------------

    def _read_tenant(self) -> Tenant:
        with self._lock:
            if self._tenant is None:
                self._tenant = read_tenant(self.clients)
            return self._tenant

    def _client_ids(self, subscription: str) -> dict[str, str]:
        """Every managed identity of ``subscription``: resource id (lower case) -> client id."""
        with self._lock:
            lock = self._subscription_locks.setdefault(subscription, threading.Lock())
        with lock:
            if subscription not in self._identities:
                msi = self.clients.msi(subscription)
                found: list[Any] = list(self.clients.pages(
                    "msi.user_assigned_identities.list_by_subscription",
                    msi.user_assigned_identities.list_by_subscription()))
                self._identities[subscription] = {str(i.id).lower(): str(i.client_id or "") for i in found}
            return self._identities[subscription]
