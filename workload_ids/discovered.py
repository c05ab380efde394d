"""What discovery reads about any non-human identity, ours or not, in our own values.

These are facts as the cloud holds them: who may obtain the identity's credentials, what
it is granted, which long-lived credentials it holds, and every signal of its last use.
The providers only report them (``DiscoveryBackend.discover``); judging them (findings,
owners, OWASP categories) is ``workload_ids.discover``'s job, the same on every cloud.

Nothing here holds a secret: a credential is its id, dates and state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

IdentityKind = Literal["role", "user", "service-account", "managed-identity", "application",
                       "service-principal"]
CredentialKind = Literal["access-key", "service-account-key", "client-secret", "certificate"]
# How a principal reaches the identity: an AWS account or principal ARN in a trust policy,
# an AWS service, an OIDC or SAML provider (with the subject it admits), a GCP member
# bound to a role on the identity (token creator, user, workload identity user), an Azure
# federated credential, or anyone at all (a wildcard principal).
PrincipalKind = Literal["aws-account", "aws-principal", "aws-service", "oidc", "saml", "gcp-member",
                        "federated-credential", "any"]


@dataclass(frozen=True, slots=True)
class Credential:
    """A long-lived credential the identity holds (never its secret part)."""

    id: str  # access key id, key name, credential key id, certificate thumbprint
    kind: CredentialKind
    created: datetime | None
    expires: datetime | None  # None: never expires
    last_used: datetime | None  # None: never used, or the cloud does not say
    active: bool = True


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone who may obtain the identity's credentials, as its trust says."""

    kind: PrincipalKind
    value: str  # account id, principal ARN, service, issuer, member, credential subject
    # The conditions in words, e.g. "sub = repo:acme/api:ref:refs/heads/main"; empty if none.
    detail: str = ""
    external: bool = False  # outside the identity's own account, project or tenant
    wildcard: bool = False  # anyone, or a subject pattern that admits more than one caller


@dataclass(frozen=True, slots=True)
class Grant:
    """One permission grant as the cloud holds it."""

    # Actions, permissions or data operations; or, for a predefined or built-in role the
    # cloud expands itself, the role's name prefixed "role:" (``role:roles/editor``).
    actions: tuple[str, ...]
    resources: tuple[str, ...]  # "*" for everything
    source: str  # where it comes from: policy name or ARN, binding, role assignment id
    conditional: bool = False  # limited by a condition the judge cannot evaluate


@dataclass(frozen=True, slots=True)
class UsageSignal:
    """One signal of last use the cloud offers, and its value."""

    signal: str  # "role last used", "access key AKIA… last used", "sign-in (Graph)"
    at: datetime | None  # None: the signal exists and shows no use
    # What the cloud tracks: AWS keeps role last-used for 400 days, Graph sign-ins for 30.
    window_days: int | None = None


@dataclass(frozen=True, slots=True)
class DiscoveredIdentity:
    """One non-human identity in one account, project or subscription."""

    provider: str
    target: str
    kind: IdentityKind
    id: str  # unique and stable: the ARN, the account email, the ARM id, the object id
    name: str
    created: datetime | None
    # Carries our marker and the marker is authentic (the provider's own ownership proof);
    # a forged or copied tag is reported as not managed.
    managed: bool
    tags: Mapping[str, str] = field(default_factory=dict)
    principals: tuple[Principal, ...] = ()
    grants: tuple[Grant, ...] = ()
    credentials: tuple[Credential, ...] = ()
    usage: tuple[UsageSignal, ...] = ()
    description: str = ""
    service_linked: bool = False  # created and owned by a cloud service (AWS service-linked)
    # Facts the provider could not read (denied, throttled out), in words: the report
    # shows them, so a missing finding is never mistaken for a clean identity.
    unread: tuple[str, ...] = ()

    def last_used(self) -> datetime | None:
        """The latest use any signal or credential shows, or None."""
        seen = [s.at for s in self.usage if s.at is not None]
        seen += [c.last_used for c in self.credentials if c.last_used is not None]
        return max(seen, default=None)
