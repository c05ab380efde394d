"""What a service account used, and when: Policy Analyzer's last authentication (the
account's and each key's) and the IAM recommender's policy insights (which permissions of
each of its role bindings were exercised in the last 90 days).

Per project, once per run whatever the number of accounts read: Policy Analyzer's two
activity queries (1,000 a page, shared with discover), the project's active policy
insights (1,000 a page) and its custom roles (1,000 a page: an insight names the
exercised permissions only, the role says which it holds). Per account: its user-managed
keys (1 call). So ``4 + accounts`` calls for a project of up to 1,000 of each.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from ... import clock
from ...calls import DENIED, NOT_FOUND
from ...errors import CloudError, UserError
from ...model import DesiredIdentity
from ...usage import ActionUse, IdentityUsage, KeyUse, ServiceUse, service_of
from ..interface import UsageBackend
from .clients import GcpClients
from .discovery import USER_MANAGED_KEYS, Seen, custom_roles, last_authentications

WINDOW = timedelta(days=90)  # Policy Analyzer's activity and the insights' observation period
LIMITS = (
    "GCP gives no date per permission: a policy insight says only whether a permission of a role "
    "binding was exercised in the last 90 days",
    "policy insights cover role bindings on projects, folders and organizations; a grant on a single "
    "resource (bucket, topic, secret) is judged by the account's last authentication alone",
    "Policy Analyzer's last authentication says the account or key authenticated, not what it did",
)
UNREAD_INSIGHTS = ("policy insights (IAM recommender): refused ({why}); they need the Recommender API "
                   "enabled and roles/recommender.iamViewer")
UNREAD_NO_ENDPOINT = ("policy insights (IAM recommender): the config names no gcp.policyAnalyzerEndpoint "
                      "for its emulators")


@dataclass(frozen=True, slots=True)
class _Project:
    """What the project-wide reads said, once per run."""

    seen: Seen
    insights: tuple[dict[str, Any], ...]
    roles: dict[str, tuple[str, ...]]
    unread: tuple[str, ...]


def email_of(address: str) -> str:
    """The account email of ``EMAIL`` or ``projects/P/serviceAccounts/EMAIL``."""
    email = address.rsplit("/serviceAccounts/", 1)[-1]
    if "@" not in email or "/" in email:
        raise UserError(f"{address!r} is not a service account: give its email "
                        "(NAME@PROJECT.iam.gserviceaccount.com)")
    return email


def _scopes(resource: str, project: str) -> tuple[str, ...]:
    """An insight's target resource in the forms a grant may name it: the full resource
    name, the name without its service, and a project by id as well as by number."""
    short = resource.split("/", 3)[-1] if resource.startswith("//") else resource
    forms = [resource, short]
    if short.startswith("projects/") and short.count("/") == 1:
        forms.append(f"projects/{project}")
    return tuple(dict.fromkeys(forms))


class GcpUsage(UsageBackend):
    """Policy Analyzer and policy insights (see the module docstring for the calls)."""

    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients
        self._projects: dict[str, _Project] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def usage_for(self, desired: DesiredIdentity) -> IdentityUsage:
        """The usage of a workload's service account."""
        return replace(self.usage_of(desired.workload.target, desired.address),
                       workload=desired.workload.name)

    def usage_of(self, target: str, address: str) -> IdentityUsage:
        """The usage of the service account ``address`` (an email) of project ``target``."""
        email = email_of(address)
        project = self._project(target)
        now = clock.now()
        unread = list(project.unread)
        exists = True
        keys: tuple[KeyUse, ...] = ()
        try:
            answer = self.clients.iam.list_service_account_keys(request={
                "name": f"projects/{target}/serviceAccounts/{email}", "key_types": [USER_MANAGED_KEYS]})
            keys = tuple(sorted((KeyUse(k_id, project.seen.keys.get(f"{email}/keys/{k_id}"),
                                        active=not k.disabled)
                                 for k in answer.keys
                                 for k_id in [str(k.name).rsplit("/", 1)[-1]]), key=lambda k: k.key_id))
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            # Not made yet (a workload not applied), or deleted: no use can be told.
            unread.append(f"the service account {email} does not exist")
            exists = False
        return IdentityUsage(
            provider="gcp", target=target, address=email, kind="service-account", read_at=now,
            window=WINDOW, tracked_since=now - WINDOW, last_used=project.seen.accounts.get(email),
            services=self._services(project, target, f"serviceAccount:{email}"), keys=keys,
            limits=LIMITS, unread=tuple(unread), last_used_known=exists and not project.seen.unread)

    def _services(self, project: _Project, target: str, member: str) -> tuple[ServiceUse, ...]:
        """The account's insights as permissions used or not, grouped by service."""
        by_service: dict[str, list[ActionUse]] = {}
        for insight in project.insights:
            content = insight.get("content") or {}
            if content.get("member") != member:
                continue
            scopes = tuple(s for r in insight.get("targetResources") or [] for s in _scopes(str(r), target))
            exercised = {str(p.get("permission")) for p in content.get("exercisedPermissions") or []}
            # Google's guess at what the account will need: counted as used, to stay on the safe side.
            inferred = {str(p.get("permission")) for p in content.get("inferredPermissions") or []}
            held = set(project.roles.get(str(content.get("role")), ()))
            for permission in sorted(exercised | inferred | held):
                use = ActionUse(permission, permission in exercised | inferred, None, scopes)
                by_service.setdefault(service_of("gcp", permission), []).append(use)
        return tuple(ServiceUse(name, None, actions=tuple(uses)) for name, uses in sorted(by_service.items()))

    # --- the project-wide reads, once per project per run -------------------------------

    def _project(self, target: str) -> _Project:
        with self._lock:
            lock = self._locks.setdefault(target, threading.Lock())
        with lock:
            if target not in self._projects:
                self._projects[target] = self._read_project(target)
            return self._projects[target]

    def _read_project(self, target: str) -> _Project:
        seen = last_authentications(self.clients, target)
        unread = [seen.unread] if seen.unread else []
        insights: list[dict[str, Any]] = []
        roles: dict[str, tuple[str, ...]] = {}
        gcp = self.clients.config.gcp
        if gcp.sandboxCredentials and not gcp.policyAnalyzerEndpoint:
            unread.append(UNREAD_NO_ENDPOINT)
        else:
            try:
                token = ""  # a page token, not a secret  # nosec B105
                while True:
                    page = self.clients.recommender.list_insights(target, token)
                    insights.extend(page.get("insights") or [])
                    token = str(page.get("nextPageToken") or "")
                    if not token:
                        break
            except CloudError as exc:
                if exc.kind != DENIED:
                    raise
                unread.append(UNREAD_INSIGHTS.format(why=f"{exc.code}: {exc.message}"))
        if insights:
            roles = custom_roles(self.clients, target)
        return _Project(seen, tuple(insights), roles, tuple(unread))
