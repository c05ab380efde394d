"""What an IAM role or user used, and when: access advisor, RoleLastUsed, key last use.

Per identity (AWS's access advisor jobs are per identity; there is no batch form):

- ``GenerateServiceLastAccessedDetails`` with ``Granularity=ACTION_LEVEL`` (1 call), then
  ``GetServiceLastAccessedDetails`` until the job is done (IAM makes the report in a
  few seconds: waited for with the seam's backoff, starting at ``base_delay * 2``,
  bounded by the seam's retry time), one more call per further page of 1,000 services;
- a role: ``GetRole`` for RoleLastUsed (1 call); a user: ``ListAccessKeys`` and
  ``GetAccessKeyLastUsed`` for each key (1 + keys, at most 3).

So a role costs ``2 + polls`` calls (4 with a 2 s job), a user with two keys ``4 + polls``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ... import clock
from ...calls import DENIED, NOT_FOUND
from ...errors import CloudError, UserError
from ...model import DesiredIdentity
from ...usage import ActionUse, IdentityUsage, KeyUse, ServiceUse
from ..interface import UsageBackend
from .clients import AwsClients, pages
from .discovery import ROLE_LAST_USED_DAYS

WINDOW = timedelta(days=ROLE_LAST_USED_DAYS)  # access advisor and RoleLastUsed: 400 days
PAGE = 1000  # GetServiceLastAccessedDetails' largest MaxItems
LIMITS = (
    "AWS tracks usage per service; actions one by one only for some services (access advisor's "
    "action-level list), and never per resource: an action used on one resource counts for all",
    "AWS reports use up to four hours late, and only within the last 400 days",
    "a service the identity's policies do not allow is not reported at all",
)
UNREAD_ADVISOR = ("service last accessed (access advisor): refused ({why}); it needs "
                  "iam:GenerateServiceLastAccessedDetails and iam:GetServiceLastAccessedDetails")


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def parse_arn(address: str) -> tuple[str, str, str]:
    """(account, kind, name) of a role or user ARN (the name without its path)."""
    parts = address.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam" or "/" not in parts[5]:
        raise UserError(f"{address!r} is not an IAM role or user ARN: give "
                        "arn:aws:iam::ACCOUNT:role/NAME or arn:aws:iam::ACCOUNT:user/NAME")
    kind, _, rest = parts[5].partition("/")
    if kind not in ("role", "user"):
        raise UserError(f"{address!r} names a {kind}, not a role or user: give a role or user ARN")
    return parts[4], kind, rest.rsplit("/", 1)[-1]


def _action(namespace: str, name: str) -> str:
    """IAM's ActionName (``SendMessage``) in the catalog's spelling (``sqs:SendMessage``)."""
    return name if ":" in name else f"{namespace}:{name}"


def services_of(answer: list[dict[str, Any]]) -> tuple[ServiceUse, ...]:
    """Access advisor's ``ServicesLastAccessed`` entries as our values."""
    out: list[ServiceUse] = []
    for s in answer:
        namespace = str(s.get("ServiceNamespace", "")).lower()
        tracked = s.get("TrackedActionsLastAccessed")
        actions = tuple(
            ActionUse(_action(namespace, str(a["ActionName"])), when is not None, when)
            for a in (tracked or []) if a.get("ActionName")
            for when in [_as_time(a.get("LastAccessedTime"))])
        out.append(ServiceUse(namespace, _as_time(s.get("LastAuthenticated")),
                              action_level=tracked is not None, actions=actions,
                              name=str(s.get("ServiceName", ""))))
    return tuple(sorted(out, key=lambda s: s.service))


class AwsUsage(UsageBackend):
    """Access advisor (action level), RoleLastUsed and access key last use (see the module
    docstring for the calls)."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def usage_for(self, desired: DesiredIdentity) -> IdentityUsage:
        """The usage of a workload's role or user (its ARN from the render)."""
        return replace(self.usage_of(desired.workload.target, desired.address),
                       workload=desired.workload.name)

    def usage_of(self, target: str, address: str) -> IdentityUsage:
        """The usage of the role or user at ``address`` in account ``target``."""
        account, kind, name = parse_arn(address)
        if account and account != target:
            # Asked of one account's credentials, another account's ARN would be read as
            # that account's role of the same name (or refused): never a silent mix-up.
            raise UserError(f"{address} is in account {account}, not {target}: ask for its usage "
                            f"with target {account}")
        iam = self.clients.client(target, "iam")
        now = clock.now()
        unread: list[str] = []
        services: tuple[ServiceUse, ...] = ()
        try:
            services = self.advisor(iam, address)
        except CloudError as exc:
            if exc.kind == NOT_FOUND:
                # Not made yet (a workload not applied), or deleted: no use can be told.
                return IdentityUsage(provider="aws", target=account, address=address, kind=kind,
                                     read_at=now, window=WINDOW, tracked_since=now - WINDOW,
                                     last_used=None, limits=LIMITS, last_used_known=False,
                                     unread=(f"the {kind} {address} does not exist",))
            if exc.kind != DENIED:
                raise
            unread.append(UNREAD_ADVISOR.format(why=f"{exc.code}: {exc.message}"))
        keys: tuple[KeyUse, ...] = ()
        if kind == "role":
            role = iam.get_role(RoleName=name)["Role"]
            last = _as_time((role.get("RoleLastUsed") or {}).get("LastUsedDate"))
        else:
            keys = self._keys(iam, name)
            last = max((k.last_used for k in keys if k.last_used is not None), default=None)
        return IdentityUsage(provider="aws", target=account, address=address, kind=kind, read_at=now,
                             window=WINDOW, tracked_since=now - WINDOW, last_used=last,
                             services=services, keys=keys, limits=LIMITS, unread=tuple(unread))

    def advisor(self, iam: Any, arn: str) -> tuple[ServiceUse, ...]:
        """Ask IAM for an action-level report on ``arn``, wait for it, read every page."""
        job = iam.generate_service_last_accessed_details(Arn=arn, Granularity="ACTION_LEVEL")["JobId"]
        policy = self.clients.seam.retry
        waited, attempt = 0.0, 0
        while True:
            # IAM needs a few seconds: ask after a pause, each one longer (the seam's backoff).
            attempt += 1
            delay = min(policy.max_delay, policy.base_delay * (2 ** attempt))
            if waited + delay > policy.max_seconds:
                raise CloudError("iam.get_service_last_accessed_details", "JobInProgress",
                                 f"IAM was still making the access advisor report on {arn} after "
                                 f"{int(waited)} s (job {job})",
                                 "rerun later: AWS usually finishes one in seconds", kind="transient")
            self.clients.seam.sleep(delay)
            waited += delay
            first = iam.get_service_last_accessed_details(JobId=job, MaxItems=PAGE)
            status = first.get("JobStatus")
            if status == "IN_PROGRESS":
                continue
            if status == "FAILED":
                error = first.get("Error") or {}
                raise CloudError("iam.get_service_last_accessed_details", str(error.get("Code") or "Failed"),
                                 f"IAM could not make the access advisor report on {arn}: "
                                 f"{error.get('Message') or 'no reason given'} (job {job})",
                                 "rerun later; if it keeps failing, open the role in the IAM console's "
                                 "Last Accessed tab to see what AWS says")
            entries = list(first.get("ServicesLastAccessed", []))
            if first.get("IsTruncated"):
                for page in pages(iam, "get_service_last_accessed_details", "ServicesLastAccessed",
                                  JobId=job, MaxItems=PAGE, Marker=first.get("Marker")):
                    entries.extend(page)
            return services_of(entries)

    def _keys(self, iam: Any, name: str) -> tuple[KeyUse, ...]:
        try:
            listed = [k for page in pages(iam, "list_access_keys", "AccessKeyMetadata", UserName=name)
                      for k in page]
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return ()
        out = []
        for k in sorted(listed, key=lambda k: (k["CreateDate"], k["AccessKeyId"])):
            used = iam.get_access_key_last_used(AccessKeyId=k["AccessKeyId"])["AccessKeyLastUsed"]
            service = str(used.get("ServiceName") or "")
            out.append(KeyUse(k["AccessKeyId"], _as_time(used.get("LastUsedDate")),
                              "" if service == "N/A" else service, k["Status"] == "Active"))
        return tuple(out)

