"""What an identity used, and when, as far as its cloud can tell, in our own values.

Each cloud tells a different amount, and a review must never read "the cloud does not
say" as "unused":

- AWS (access advisor): per service, and per action for the services AWS tracks at action
  level; the role's last use; each access key's last use. 400 days back.
- GCP (Policy Analyzer, IAM recommender): the account's and each key's last
  authentication; for project bindings, which permissions were exercised (insights,
  90 days), with no date per permission.
- Azure (Microsoft Graph sign-in reports): when the principal last signed in, and each
  client secret; nothing per permission or per service.

The providers read these (``UsageBackend``); :func:`was_used` answers the one question a
review asks of them, conservatively: whatever the cloud cannot rule out counts as used,
and the answer says on what it rests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from . import clock

# What an answer rests on, finest first.
Basis = Literal["action", "permission", "service", "identity", "none"]


@dataclass(frozen=True, slots=True)
class ActionUse:
    """One action (AWS) or permission (GCP) the cloud tracks on its own."""

    action: str  # the catalog's spelling: "sqs:SendMessage", "storage.objects.get"
    used: bool  # used within the window the cloud tracked
    # When, where the cloud says (AWS); None: not used, or the cloud only says "exercised"
    # (GCP insights).
    last_used: datetime | None = None
    # The scopes this observation is about (a GCP insight's target resource, full and short
    # names); empty: any resource (AWS tracks per action, never per resource).
    resources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceUse:
    """One service as the cloud tracks it."""

    service: str  # AWS namespace ("sqs"); GCP permission prefix ("storage")
    last_used: datetime | None  # None: not used in the window
    # True: the cloud tracks some actions of this service one by one, and ``actions`` holds
    # those it reported (AWS leaves out tracked actions nobody used; an action not listed is
    # judged by its service).
    action_level: bool = False
    actions: tuple[ActionUse, ...] = ()
    name: str = ""  # the cloud's display name ("Amazon SQS"), for reports


@dataclass(frozen=True, slots=True)
class KeyUse:
    """One long-lived credential's last use (never its secret)."""

    key_id: str  # access key id, service account key id, client secret keyId
    last_used: datetime | None
    service: str = ""  # what it was last used with, where the cloud says ("s3")
    active: bool = True


@dataclass(frozen=True, slots=True)
class IdentityUsage:
    """What one identity used and when, and what its cloud cannot tell."""

    provider: str
    target: str  # account, project or subscription
    address: str  # role or user ARN, account email, managed identity id or appId
    kind: str  # role | user | service-account | managed-identity | application | service-principal
    read_at: datetime
    window: timedelta  # how far back the cloud tracks
    tracked_since: datetime  # the earliest instant the answer covers
    last_used: datetime | None  # role last used, last authentication, last sign-in
    services: tuple[ServiceUse, ...] = ()
    keys: tuple[KeyUse, ...] = ()
    limits: tuple[str, ...] = ()  # what this cloud cannot tell, in words
    unread: tuple[str, ...] = ()  # what could not be read this time, in words
    workload: str = ""  # our workload's name when read for one we manage
    # False when the cloud refused the identity's own last use: ``last_used`` None then
    # means "unknown", not "never".
    last_used_known: bool = True

    def service(self, name: str) -> ServiceUse | None:
        """The usage of service ``name`` (case-insensitive), or None when not reported."""
        wanted = name.lower()
        return next((s for s in self.services if s.service.lower() == wanted), None)


@dataclass(frozen=True, slots=True)
class UseAnswer:
    """The answer to "was action A on resource R used since T?"."""

    used: bool  # conservative: True unless the cloud shows no use since T
    basis: Basis
    last_used: datetime | None  # the latest use the basis shows
    reason: str  # one sentence saying what the answer rests on


def service_of(provider: str, action: str) -> str:
    """The service an action belongs to: ``sqs:SendMessage`` -> ``sqs``,
    ``storage.objects.get`` -> ``storage``, ``Microsoft.Storage/...`` -> ``Microsoft.Storage``."""
    if provider == "aws":
        return action.split(":", 1)[0].lower()
    if provider == "azure":
        return action.split("/", 1)[0]
    return action.split(".", 1)[0]


def _covers(scopes: tuple[str, ...], resource: str) -> bool:
    if not scopes:
        return True
    return any(s == "*" or resource == s or resource.startswith(s.rstrip("/") + "/") for s in scopes)


def _when(value: datetime | None) -> str:
    return clock.format_time(value) if value is not None else "never"


def was_used(usage: IdentityUsage, action: str, resource: str, since: datetime) -> UseAnswer:
    """Whether ``action`` on ``resource`` was used at or after ``since``, on the finest
    basis the cloud gives: the action itself (where its observation covers ``resource``),
    a GCP permission insight, the action's service (an action counts as used when its
    service was), the identity's own last use (Azure's sign-ins). Anything the cloud
    cannot rule out is used: no data at all, or tracking that starts after ``since``."""
    who = usage.provider.upper() if usage.provider == "aws" else usage.provider.capitalize()
    # Tracking must reach back to ``since`` for "no use" to mean anything.
    blind = usage.tracked_since > since
    blind_words = (f"; {who} tracks only since {clock.format_time(usage.tracked_since)}, after "
                   f"{clock.format_time(since)}, so it cannot tell and {action} counts as used")
    name = service_of(usage.provider, action)
    service = usage.service(name)
    if service is not None:
        found = next((a for a in service.actions
                      if a.action.lower() == action.lower() and _covers(a.resources, resource)), None)
        if found is not None:
            basis: Basis = "action" if usage.provider == "aws" else "permission"
            if found.last_used is not None and found.last_used >= since:
                return UseAnswer(True, basis, found.last_used,
                                 f"{action} was used at {_when(found.last_used)}")
            if found.used and found.last_used is None:
                return UseAnswer(True, basis, None, f"{action} was exercised within the last "
                                 f"{usage.window.days} days ({who} gives no date per permission)")
            said = f"{action} was last used at {_when(found.last_used)}"
            if blind:
                return UseAnswer(True, basis, found.last_used, said + blind_words)
            return UseAnswer(False, basis, found.last_used, f"{said}, before {clock.format_time(since)}"
                             if found.last_used else f"{action} was not used since "
                             f"{clock.format_time(usage.tracked_since)}")
        if service.last_used is not None and service.last_used >= since:
            level = ("lists no use of this action itself (not every action is tracked on its own)"
                     if service.action_level else f"tracks {name} per service only")
            return UseAnswer(True, "service", service.last_used,
                             f"{name} was used at {_when(service.last_used)}; {who} {level}, so {action} "
                             "counts as used")
        if service.last_used is not None or usage.provider == "aws":
            # AWS lists every service the identity may use: absent use is a fact.
            said = f"{name} was last used at {_when(service.last_used)}"
            if blind:
                return UseAnswer(True, "service", service.last_used, said + blind_words)
            return UseAnswer(False, "service", service.last_used,
                             f"{said}, before {clock.format_time(since)}" if service.last_used
                             else f"{name} was not used since {clock.format_time(usage.tracked_since)}")
    if usage.provider == "aws" and not usage.unread:
        # Access advisor reports every service the identity's policies allow: one it does
        # not list is one this identity cannot use, so it was not used either, but that
        # says more about the grant than about use: stay conservative.
        return UseAnswer(True, "none", None, f"AWS reports no usage of {name} for this identity "
                         f"(its policies may not allow it yet), so {action} counts as used")
    if not usage.last_used_known:
        why = usage.unread[0] if usage.unread else "the cloud did not say"
        return UseAnswer(True, "none", None, f"usage could not be read ({why}), so {action} counts as used")
    # Only the identity's own last use is left (Azure's sign-ins, GCP's last authentication).
    if usage.last_used is not None and usage.last_used >= since:
        return UseAnswer(True, "identity", usage.last_used,
                         f"the identity signed in at {_when(usage.last_used)}; {who} keeps no usage per "
                         f"permission, so {action} counts as used")
    said = f"the identity last signed in at {_when(usage.last_used)}"
    if blind:
        return UseAnswer(True, "identity", usage.last_used, said + blind_words)
    return UseAnswer(False, "identity", usage.last_used,
                     f"{said}, so nothing it holds, {action} included, was used since "
                     f"{clock.format_time(since)}")
