"""``workload-ids.yaml``: defaults and guardrails for a repository of manifests.

Found in the working directory, or given with ``--config`` (required in CI, see
:func:`load_config`). Paths inside it are relative to the file itself, so the same config
works from any working directory. What its endpoints and tokens may point at is checked
by :mod:`.trust` when it is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import Diagnostic, InputErrors, Position
from .manifest import Duration, _regex, shape_diagnostics
from .yamlpos import load_documents

if TYPE_CHECKING:
    from .catalogs import Extra

CONFIG_NAME = "workload-ids.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsAccountAccess(_Strict):
    """How to reach one AWS account: a named profile, or a role to assume."""

    profile: str | None = None
    roleArn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")] | None = None


GUID_PATTERN = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"


_AWS_ACCOUNT = _regex("account", r"\d{12}", "write the 12-digit AWS account id, quoted")
_GCP_NUMBER = _regex("number", r"\d{1,20}", "write the folder's or organization's number, quoted "
                     "(gcloud resource-manager folders list shows it), not its display name")


class AwsOrganization(_Strict):
    """The whole AWS Organization: its member accounts (Organizations ``ListAccounts``,
    suspended ones skipped), each reached by assuming ``role`` in it."""

    role: Annotated[str, _regex("role", r"[\w+=,.@-]{1,64}",
                                "write the name of the role every member account has for "
                                "workload-ids (e.g. OrganizationAccountAccessRole), not its ARN")]


class AwsTarget(_Strict):
    """One AWS account the tool manages (``targets.aws``), and how to reach it when the
    ambient credentials do not: a named profile, or a role in that account to assume. Or,
    instead of ``account``, ``organization``: every member account of the AWS Organization
    the ambient credentials list (less ``exclude``)."""

    account: Annotated[str, _AWS_ACCOUNT] | None = None
    profile: str | None = None
    roleArn: Annotated[str, _regex("roleArn", r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+",
                                   "write the ARN of a role in the account, "
                                   "arn:aws:iam::ACCOUNT:role/NAME")] | None = None
    organization: AwsOrganization | None = None
    exclude: list[Annotated[str, _AWS_ACCOUNT]] = []
    # Gone for good (the account was closed): not read, even though the audit log shows writes.
    retired: bool = False


_GCP_PROJECT = _regex("project", r"[a-z][a-z0-9-]{4,28}[a-z0-9]",
                      "write the project id (6-30 lowercase letters, digits, hyphens), "
                      "not its name or number")


class GcpTarget(_Strict):
    """One GCP project the tool manages (``targets.gcp``); or, instead of ``project``, every
    active project under a ``folder`` (its subfolders too) or an ``organization``, less
    ``exclude``."""

    project: Annotated[str, _GCP_PROJECT] | None = None
    folder: Annotated[str, _GCP_NUMBER] | None = None
    organization: Annotated[str, _GCP_NUMBER] | None = None
    exclude: list[Annotated[str, _GCP_PROJECT]] = []
    retired: bool = False


_AZURE_SUBSCRIPTION = _regex("subscription", GUID_PATTERN[1:-1],
                             "write the subscription id, a GUID such as "
                             "0b1f6471-1bf0-4dda-aec3-cb9272f09590")


class AzureTarget(_Strict):
    """One Azure subscription the tool manages (``targets.azure``); or, instead of
    ``subscription``, every subscription under a ``managementGroup`` (at any depth), less
    ``exclude``."""

    subscription: Annotated[str, _AZURE_SUBSCRIPTION] | None = None
    managementGroup: Annotated[str, _regex(
        "managementGroup", r"[A-Za-z0-9_().-]{1,90}",
        "write the management group's id (its name, e.g. mg-prod or the tenant root group's "
        "tenant id), not its display name")] | None = None
    exclude: list[Annotated[str, _AZURE_SUBSCRIPTION]] = []
    retired: bool = False


class TargetsConfig(_Strict):
    """Every account, project and subscription the tool manages. ``cleanup`` and
    ``inventory`` read each of them (and every target the audit log shows the tool wrote
    to), whatever manifests remain: the last workload of a target is judged too. One list
    per cloud, one mapping per entry: one target (``account``, ``project``,
    ``subscription``), or a group listed at run time (``organization``, ``folder``,
    ``managementGroup``; see :mod:`workload_ids.targets`)."""

    aws: list[AwsTarget] = []
    gcp: list[GcpTarget] = []
    azure: list[AzureTarget] = []


class AwsConfig(_Strict):
    """AWS settings."""

    endpointUrl: Annotated[str, Field(pattern=r"^https?://")] | None = None
    sandboxCredentials: bool = False
    rolePath: Annotated[str, Field(pattern=r"^/([\w+=,.@-]+/)*$", max_length=512)] = "/workload-ids/"
    namePrefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9+=,.@-]{0,20}$")] = "wid"
    # Unset: the boundary `workload-ids bootstrap` creates in each account (see
    # Config.aws_boundary); guardrails.requirePermissionsBoundary: false opts out.
    permissionsBoundary: Annotated[str, Field(
        pattern=r"^arn:aws[a-z-]*:iam::(\d{12}|\{account\}):policy/[\w+=,.@/-]+$")] | None = None
    # Roles a workload under the default boundary may still assume (sts:AssumeRole);
    # everything else is denied by the boundary.
    boundaryAssumableRoles: list[Annotated[str, Field(
        pattern=r"^arn:aws[a-z-]*:iam::(\d{12}|\{account\}|\*):role/[\w+=,.@/*-]+$")]] = []
    maxSessionDuration: Duration = "1h"
    accounts: dict[Annotated[str, Field(pattern=r"^\d{12}$")], AwsAccountAccess] = {}


class GcpConfig(_Strict):
    """GCP settings. Endpoints are for local emulators (the sandbox); unset, the client
    libraries' own endpoints and Application Default Credentials are used."""

    iamEndpoint: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+:\d{1,5}$")] | None = None
    resourceManagerEndpoint: Annotated[str, Field(pattern=r"^https?://")] | None = None
    secretManagerEndpoint: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+:\d{1,5}$")] | None = None
    resourcePolicyEndpoint: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+:\d{1,5}$")] | None = None
    # Cloud Storage's JSON API (the audit sink's emulator)
    storageEndpoint: Annotated[str, Field(pattern=r"^https?://")] | None = None
    # Policy Analyzer's activity query (discover's last-authentication signal)
    policyAnalyzerEndpoint: Annotated[str, Field(pattern=r"^https?://")] | None = None
    sandboxCredentials: bool = False
    namePrefix: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,5}$")] = "wid"


class AzureConfig(_Strict):
    """Azure settings. Endpoints and the CA bundle are for local emulators (the sandbox);
    unset, Azure's public endpoints and ``DefaultAzureCredential`` are used."""

    armEndpoint: Annotated[str, Field(pattern=r"^https://")] | None = None
    graphEndpoint: Annotated[str, Field(pattern=r"^https://")] | None = None
    authorityEndpoint: Annotated[str, Field(pattern=r"^https://")] | None = None
    keyVaultUrl: Annotated[str, Field(pattern=r"^https://")] | None = None
    # A blob container for key mode's workload locks (Key Vault has no conditional write)
    lockContainerUrl: Annotated[str, Field(pattern=r"^https://")] | None = None
    caBundle: str | None = None
    sandboxCredentials: bool = False
    tenantId: Annotated[str, Field(pattern=GUID_PATTERN)] | None = None
    namePrefix: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,9}$")] = "wid"


_APPROVED_WORKLOAD = _regex(
    "workload", r"[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?/[a-z0-9][a-z0-9-]{1,38}[a-z0-9]",
    "write ENVIRONMENT/NAME of the workload, e.g. prod/payments-api")


class ApprovedEscalation(_Strict):
    """One out-of-band approval: this workload may hold these escalation-capable actions (or
    a grant on a whole vault) on these exact resources. Held by the platform team in the
    config, never in a manifest: the requester cannot approve its own request."""

    workload: Annotated[str, _APPROVED_WORKLOAD]
    provider: Literal["aws", "gcp", "azure"] | None = None
    target: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    actions: Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=1)]
    resources: Annotated[list[Annotated[str, Field(min_length=1, max_length=2048)]], Field(min_length=1)]
    reason: Annotated[str, Field(min_length=10, max_length=500)]


class ApprovedTransfer(_Strict):
    """One approved change of owner: ``apply`` may move this workload's existing identity
    from owner ``from`` to owner ``to``. Held by the platform team in the config: a
    manifest alone cannot take over another team's identity (review H4)."""

    workload: Annotated[str, _APPROVED_WORKLOAD]
    from_: Annotated[str, Field(alias="from", min_length=1, max_length=128)]
    to: Annotated[str, Field(min_length=1, max_length=128)]
    # A move to another source (``team:NAME`` or a manifest path, as the identity's marker
    # records it): both or neither. ``from`` and ``to`` may name the same owner.
    fromSource: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    toSource: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    reason: Annotated[str, Field(min_length=10, max_length=500)]


_TEAM_NAME = _regex("team", r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?",
                    "lowercase letters, digits and hyphens, up to 40 characters")


class Team(_Strict):
    """A team whose identities are bound to the team rather than to one manifest file:
    every manifest whose path (relative to this config, ``/``-separated) matches one of
    ``manifests`` has source ``team:NAME``, so the team may move and split its files."""

    manifests: Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=1)]


class Guardrails(_Strict):
    """Limits a platform team sets for every manifest in the repository. A manifest that
    breaks one is refused with exit code 3."""

    allowedTargets: list[str] = []
    allowedEnvironments: list[str] = []
    deniedActions: list[str] = []
    maxResourcesPerWorkload: Annotated[int, Field(ge=1)] | None = None
    # On by default: every AWS role and user gets a permissions boundary (aws.permissionsBoundary,
    # or the one `workload-ids bootstrap` creates). false opts out, and lint says so.
    requirePermissionsBoundary: bool = True
    approvedEscalations: list[ApprovedEscalation] = []
    approvedTransfers: list[ApprovedTransfer] = []
    # true: apply refuses a plan that removes a permission the workload used within
    # review.window (or that the cloud cannot rule out), unless --accept-breaking.
    refuseRemovingUsedAccess: bool = False
    # How far ahead of now an access entry's `expires` may lie: a time-bound grant is for a
    # separate, approved need, not a permanent one with a date in 9999.
    maxGrantDuration: Duration = "90d"


# Service principals that may assume a role when trust.allowedAwsServices is not set: the
# runtimes the manifest's runtime field names. Every other service must be listed (M2).
DEFAULT_AWS_SERVICES = ("ecs-tasks.amazonaws.com", "lambda.amazonaws.com")


class TrustConfig(_Strict):
    """Trust roots a manifest may federate from. A manifest names its issuer, GitHub
    repository, identity pool or AWS service; only those the platform team lists here are
    accepted (refused with exit code 3 otherwise)."""

    allowedIssuers: list[Annotated[str, Field(
        pattern=r"^https://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~/-]*)?$")]] = []
    allowedGithubOwners: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,39}$")]] = []
    allowedPools: list[Annotated[str, Field(
        pattern=r"^projects/\d{1,20}(/locations/global/workloadIdentityPools/[a-z0-9-]{4,32})?/?$")]] = []
    gcpProjectNumbers: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")],
                            Annotated[int, Field(ge=1, lt=10**20)]] = {}
    allowedAwsServices: list[Annotated[str, Field(
        pattern=r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com$")]] | None = None
    # Who may attach a workload's identity to a runtime (spec.credentials.attachedTo[].deployers):
    # GCP members (serviceAccount:, user:, group: EMAIL) or Entra object ids. Whoever may
    # attach an identity may run code as it, so each is a trust root like an issuer.
    allowedDeployers: list[Annotated[str, Field(
        pattern=r"^((serviceAccount|user|group):[^\s@:]+@[A-Za-z0-9.-]+"
                r"|[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})$")]] = []

    def aws_services(self) -> tuple[str, ...]:
        """The service principals allowed: the configured list, or the documented default."""
        return tuple(self.allowedAwsServices) if self.allowedAwsServices is not None \
            else DEFAULT_AWS_SERVICES


class AzureCatalogExtra(_Strict):
    """Azure operations to accept though the shipped catalog lacks them, by list."""

    actions: list[str] = []
    dataActions: list[str] = []


class CatalogExtra(_Strict):
    """Names newer than the shipped permission catalogs, accepted as real."""

    aws: list[str] = []
    gcp: list[str] = []
    azure: AzureCatalogExtra = AzureCatalogExtra()


class CatalogConfig(_Strict):
    """The permission catalogs (see workload_ids/catalogs/PROVENANCE.md)."""

    extra: CatalogExtra = CatalogExtra()


class CallsConfig(_Strict):
    """Retries and concurrency of cloud calls."""

    maxAttempts: Annotated[int, Field(ge=1, le=20)] = 8
    maxRetrySeconds: Annotated[float, Field(gt=0, le=900)] = 60.0
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8


class FanoutConfig(_Strict):
    """How many targets of each cloud are read at once (``inventory``, ``cleanup``,
    ``discover``, a fleet ``plan``): one pool of threads per cloud, so one cloud's rate
    limits never slow another's reads. Every call still passes the one seam, which
    retries throttling."""

    aws: Annotated[int, Field(ge=1, le=64)] = 8
    gcp: Annotated[int, Field(ge=1, le=64)] = 8
    azure: Annotated[int, Field(ge=1, le=64)] = 4

    def budget(self, provider: str) -> int:
        """How many of ``provider``'s targets are read at once."""
        return {"aws": self.aws, "gcp": self.gcp, "azure": self.azure}.get(provider, 1)


class RotationDefaults(_Strict):
    """Key rotation defaults; a manifest's ``credentials.rotation`` overrides each field."""

    maxAge: Duration = "30d"
    overlap: Duration = "2d"
    grace: Duration = "7d"
    retireOnUse: bool = True


class VerifyConfig(_Strict):
    """How a new key is proven to work before anything depends on it."""

    successes: Annotated[int, Field(ge=1, le=20)] = 3
    interval: Duration = "2s"
    timeout: Duration = "120s"


class CredentialsConfig(_Strict):
    """Key mode: where keys are delivered and how they are rotated."""

    secretName: Annotated[str, Field(min_length=1, max_length=256)] = "workload-ids/{environment}/{name}"
    # AWS: principal ARNs (wildcards allowed) that may read key secrets besides the tool;
    # every other principal is denied by the secret's resource policy.
    secretReaders: list[Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:(iam|sts)::")]] = []
    rotation: RotationDefaults = RotationDefaults()
    verify: VerifyConfig = VerifyConfig()
    # How long a run waits for a workload another run is rotating before it gives up
    # with exit code 4; a little over the verification timeout, so one rotation fits.
    lockTimeout: Duration = "3m"


class OwnersConfig(_Strict):
    """Where owners are looked up: a file of owners, or a SCIM 2.0 service provider."""

    source: Literal["file", "scim"]
    path: str | None = None
    url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    # http (the token in clear) only to a test directory on this machine, and only on purpose
    allowInsecureLoopback: bool = False
    tokenEnv: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    caBundle: str | None = None
    timeout: Duration = "10s"


class AuditSinkConfig(_Strict):
    """A durable, signed audit trail in a cloud's append-only store (see
    :mod:`workload_ids.audit.sink`)."""

    # s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX
    url: Annotated[str, _regex("audit.sink.url", r"(s3|gs|https)://[^/?#\s]+(/[^?#\s]*)?",
                               "write s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or "
                               "https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX")]
    # AWS Secrets Manager name or ARN; GCP projects/P/secrets/S; Azure https://VAULT.vault.azure.net/secrets/NAME
    signingKey: Annotated[str, Field(min_length=1)]


class AuditConfig(_Strict):
    """The audit trail: a JSON Lines file relative to the config file (the sandbox,
    development), or a cloud sink (``sink``), which replaces the file."""

    path: Annotated[str, Field(min_length=1)] | None = None
    sink: AuditSinkConfig | None = None


class CleanupConfig(_Strict):
    """The orphan cleanup's grace period and guards."""

    grace: Duration = "7d"
    minAge: Duration = "1h"
    maxActions: Annotated[int, Field(ge=1)] = 10
    maxShare: Annotated[float, Field(gt=0, le=1)] = 0.10
    fallbackOwner: dict[str, str] = {}
    unusedAfter: Duration = "90d"
    quarantineUnused: bool = False


class ReviewConfig(_Strict):
    """Access review: how often owners attest their workloads (``every``; None: attestation
    is not required), the usage window later reviews judge by, and what cleanup does with
    a workload whose attestation is overdue (``report`` it, or ``quarantine`` it)."""

    every: Duration | None = None
    window: Duration = "90d"
    onExpiry: Literal["report", "quarantine"] = "report"


class DiscoverConfig(_Strict):
    """How ``discover`` judges identities it did not make: where owners are written, and
    when a key is too old or an identity unused."""

    # Tag (label) keys that name an identity's owner, tried in order.
    ownerTags: list[Annotated[str, Field(min_length=1, max_length=128)]] = [
        "owner", "team", "workload-ids-owner"]
    maxKeyAge: Duration = "90d"
    unusedAfter: Duration = "90d"


class DefaultsConfig(_Strict):
    """What a manifest gets when it does not say: ``spec.mode`` and ``spec.deletionPolicy``."""

    mode: Literal["manage", "observe"] = "manage"
    deletionPolicy: Literal["delete", "retain"] = "delete"


class ConfigFile(_Strict):
    """The file form of ``workload-ids.yaml``."""

    templates: list[str] = []
    aws: AwsConfig = AwsConfig()
    gcp: GcpConfig = GcpConfig()
    azure: AzureConfig = AzureConfig()
    guardrails: Guardrails = Guardrails()
    catalog: CatalogConfig = CatalogConfig()
    trust: TrustConfig = TrustConfig()
    calls: CallsConfig = CallsConfig()
    fanout: FanoutConfig = FanoutConfig()
    credentials: CredentialsConfig = CredentialsConfig()
    owners: OwnersConfig | None = None
    audit: AuditConfig | None = None
    cleanup: CleanupConfig = CleanupConfig()
    discover: DiscoverConfig = DiscoverConfig()
    review: ReviewConfig = ReviewConfig()
    targets: TargetsConfig = TargetsConfig()
    teams: dict[Annotated[str, _TEAM_NAME], Team] = {}
    defaults: DefaultsConfig = DefaultsConfig()


def default_boundary_arn(aws: AwsConfig) -> str:
    """``arn:aws:iam::{account}:policy/workload-ids/wid-workload-boundary``: the boundary
    policy `workload-ids bootstrap` creates, on the role path, named after the prefix."""
    name = f"{aws.namePrefix}-workload-boundary" if aws.namePrefix else "workload-ids-workload-boundary"
    return f"arn:aws:iam::{{account}}:policy{aws.rolePath}{name}"


# The tool's own identities, one per kind of command (``workload-ids bootstrap`` makes them);
# ``discover`` only reads (discover, and adopt without --apply).
TOOL_IDENTITIES = ("apply", "rotate", "cleanup", "restore", "discover")


class Config:
    """A loaded config and the folder its relative paths start from."""

    def __init__(self, data: ConfigFile, base: Path, path: Path | None,
                 positions: dict[str, Position] | None = None) -> None:
        self.data = data
        self.base = base
        self.path = path
        self.positions = positions or {}

    def position(self, dotted: str) -> Position | None:
        """Where ``aws.maxSessionDuration`` (say) is written in the file, if it is."""
        return self.positions.get(dotted)

    def template_dirs(self) -> list[Path]:
        """``templates:`` folders as absolute paths, relative ones read from the config's folder."""
        return [(self.base / p).resolve() for p in self.data.templates]

    @property
    def aws(self) -> AwsConfig:
        """The ``aws:`` section (its defaults when the file has none)."""
        return self.data.aws

    @property
    def gcp(self) -> GcpConfig:
        """The ``gcp:`` section (its defaults when the file has none)."""
        return self.data.gcp

    @property
    def azure(self) -> AzureConfig:
        """The ``azure:`` section (its defaults when the file has none)."""
        return self.data.azure

    def azure_ca_bundle(self) -> str | None:
        """The CA bundle for Azure endpoints (an emulator's), as an absolute path."""
        bundle = self.data.azure.caBundle
        return str((self.base / bundle).resolve()) if bundle else None

    def aws_tool_path(self) -> str:
        """Where the tool's own AWS roles and policies live (``workload-ids bootstrap``):
        beside the workloads' path, never under it, so no workload-ids identity can modify
        another one's (or its own) policy."""
        base = self.data.aws.rolePath.rstrip("/")
        return f"{base}-tool/" if base else "/workload-ids-tool/"

    def aws_tool_name(self, identity: str) -> str:
        """The name of the tool's own AWS role for ``identity`` (one of TOOL_IDENTITIES)."""
        prefix = self.data.aws.namePrefix or "workload-ids"
        return f"{prefix}-tool-{identity}"

    def aws_boundary(self) -> str:
        """The permissions boundary every AWS identity gets, ``{account}`` not yet
        substituted: aws.permissionsBoundary, else the bootstrap boundary; "" only when
        guardrails.requirePermissionsBoundary is false and no boundary is named."""
        if self.data.aws.permissionsBoundary:
            return self.data.aws.permissionsBoundary
        if not self.data.guardrails.requirePermissionsBoundary:
            return ""
        return default_boundary_arn(self.data.aws)

    def aws_access(self, account: str) -> AwsAccountAccess | None:
        """How to reach ``account``: its ``targets.aws`` entry's profile or role, else its
        ``aws.accounts`` mapping; None for the ambient credentials."""
        for entry in self.data.targets.aws:
            if entry.account is not None and entry.account == account and (entry.profile or entry.roleArn):
                return AwsAccountAccess(profile=entry.profile, roleArn=entry.roleArn)
        return self.data.aws.accounts.get(account)

    def aws_mapped_accounts(self) -> set[str]:
        """Accounts reached with their own profile or role (not the ambient credentials)."""
        return set(self.data.aws.accounts) | {e.account for e in self.data.targets.aws
                                              if e.account and (e.profile or e.roleArn)}

    def targets(self, *, retired: bool = False) -> set[tuple[str, str]]:
        """(provider, target) of every ``targets:`` entry; the retired ones with ``retired``."""
        t = self.data.targets
        entries = ([("aws", e.account, e.retired) for e in t.aws]
                   + [("gcp", e.project, e.retired) for e in t.gcp]
                   + [("azure", e.subscription.lower() if e.subscription else None, e.retired)
                      for e in t.azure])
        return {(p, k) for p, k, r in entries if k is not None and r == retired}

    @property
    def fanout(self) -> FanoutConfig:
        """The ``fanout:`` section: how many targets of each cloud are read at once."""
        return self.data.fanout

    @property
    def guardrails(self) -> Guardrails:
        """The ``guardrails:`` section (its defaults when the file has none)."""
        return self.data.guardrails

    @property
    def teams(self) -> dict[str, Team]:
        """The ``teams:`` section by team name; empty when the file has none."""
        return self.data.teams

    def catalog_extra(self) -> Extra:
        """``catalog.extra`` as a :class:`workload_ids.catalogs.Extra`."""
        from .catalogs import Extra
        extra = self.data.catalog.extra
        return Extra.of(extra.aws, extra.gcp, extra.azure.actions, extra.azure.dataActions)

    @property
    def trust(self) -> TrustConfig:
        """The ``trust:`` section (its defaults when the file has none)."""
        return self.data.trust

    @property
    def calls(self) -> CallsConfig:
        """The ``calls:`` section: retries and timeouts of cloud calls."""
        return self.data.calls

    @property
    def credentials(self) -> CredentialsConfig:
        """The ``credentials:`` section: key mode's rotation, secret names and lock timeout."""
        return self.data.credentials

    @property
    def cleanup(self) -> CleanupConfig:
        """The ``cleanup:`` section: grace periods and owner fallbacks, as text durations."""
        return self.data.cleanup

    @property
    def discover(self) -> DiscoverConfig:
        """The ``discover:`` section: owner tags, key age and unused window, as text durations."""
        return self.data.discover

    @property
    def review(self) -> ReviewConfig:
        """The ``review:`` section: attestation interval, usage window and what overdue means."""
        return self.data.review

    def audit_path(self) -> Path | None:
        """The local audit log file, or None when the config keeps none (no ``audit``, or
        a cloud sink and no ``audit.path``)."""
        audit = self.data.audit
        if audit is None or (audit.sink is not None and audit.path is None):
            return None
        # abspath, not resolve(): a symbolic link at the path must reach the audit log's own
        # O_NOFOLLOW check (and be refused), not be replaced by its target.
        return Path(os.path.abspath(self.base / (audit.path or "audit.jsonl")))


def running_in_ci() -> bool:
    """Whether the ``CI`` variable says this is a CI job (GitHub Actions, GitLab and most
    others set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def load_config(path: str | Path | Sequence[str | Path] | None = None) -> Config:
    """Load ``path`` (or several, each layered over the ones before it), or
    ``workload-ids.yaml`` in the working directory, or defaults.

    In CI a config found in the working directory is refused: there it is whatever the
    checked-out branch holds, so a pull request could rewrite the guardrails and endpoints
    it is checked against."""
    if path is None:
        candidate = Path.cwd() / CONFIG_NAME
        if not candidate.is_file():
            return Config(ConfigFile(), Path.cwd(), None)
        if running_in_ci():
            raise InputErrors([Diagnostic(Position(str(candidate)), (
                f"CI is set and this {CONFIG_NAME} was found in the working directory, which in CI "
                "is whatever the checked-out branch holds: the config is a trust root (guardrails, "
                "endpoints, owners). Pass --config with a config kept where pull requests cannot "
                "change it (another repository, or a path protected by CODEOWNERS and branch "
                "protection)"))])
        path = candidate
    files = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    layers = [_read_config(file) for file in files]
    file = files[-1]
    if len(layers) == 1:
        value, positions, data = layers[0]
    else:
        # Later files override earlier ones key by key (lists as a whole): a user's owners
        # and audit settings over the sandbox's generated endpoints, say. Each file's
        # relative paths keep meaning "from that file's folder".
        value, positions = {}, {}
        for layer_file, (layer, where, _) in zip(files, layers, strict=True):
            value = _layered(value, _with_absolute_paths(layer, layer_file.resolve().parent))
            positions.update(where)
        try:
            data = ConfigFile.model_validate(value)
        except ValidationError as exc:  # each layer alone was valid; say so rather than guess
            raise InputErrors([Diagnostic(Position(str(file)), (
                f"the config files {', '.join(str(f) for f in files)} are each valid but not "
                f"together: {exc.errors()[0]['msg']}; check what the later file overrides"))]) from None
    config = Config(data, file.resolve().parent, file, positions)
    problems = _semantic_problems(config)
    if problems:
        raise InputErrors(problems)
    return config


def _read_config(file: Path) -> tuple[dict[str, Any], dict[str, Position], ConfigFile]:
    """One config file: its mapping, where each key is written, and its validated form."""
    if not file.is_file():
        raise InputErrors([Diagnostic(Position(str(file)),
                                      "config file not found; check the --config path")])
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputErrors([Diagnostic(Position(str(file)), f"cannot read file: {exc}")]) from None
    docs, problems = load_documents(str(file), text)
    if problems:
        raise InputErrors(problems)
    value = docs[0].value if docs else None
    if len(docs) > 1:
        raise InputErrors([Diagnostic(docs[1].position(()), "the config holds one YAML document")])
    if value is None:
        value = {}
    try:
        data = ConfigFile.model_validate(value)
    except ValidationError as exc:
        raise InputErrors(shape_diagnostics(exc, docs[0], ConfigFile)) from None
    positions = {".".join(str(p) for p in k): v for k, v in docs[0].positions.items()} if docs else {}
    return (value if isinstance(value, dict) else {}), positions, data


# The settings that name a file, relative to the config that holds them.
_PATH_KEYS = (("owners", "path"), ("owners", "caBundle"), ("audit", "path"), ("azure", "caBundle"))


def _with_absolute_paths(value: dict[str, Any], base: Path) -> dict[str, Any]:
    """``value`` with its file settings made absolute from ``base``."""
    out = dict(value)
    if isinstance(out.get("templates"), list):
        out["templates"] = [str(base / t) if isinstance(t, str) else t for t in out["templates"]]
    for section, key in _PATH_KEYS:
        block = out.get(section)
        if isinstance(block, dict) and isinstance(block.get(key), str) and block[key]:
            out[section] = {**block, key: str(base / block[key])}
    return out


def _layered(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` layered on ``under``: mappings merge key by key, anything else is replaced."""
    out = dict(under)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _layered(out[key], value)
        else:
            out[key] = value
    return out


def _semantic_problems(config: Config) -> list[Diagnostic]:
    """What the shape allows but the tool cannot work with."""
    from datetime import timedelta

    from .durations import parse_duration
    out: list[Diagnostic] = []

    def at(dotted: str) -> Position:
        return config.position(dotted) or Position(str(config.path))

    paths = {f"templates.{i}": p for i, p in enumerate(config.data.templates)}
    owners = config.data.owners
    if owners is not None:
        paths.update({"owners.path": owners.path or "", "owners.caBundle": owners.caBundle or ""})
    paths.update({"audit.path": (config.data.audit.path or "") if config.data.audit else "",
                  "azure.caBundle": config.data.azure.caBundle or ""})
    for dotted, value in paths.items():
        if "\x00" in value:
            out.append(Diagnostic(at(dotted), f"{dotted} holds a NUL character, which no file name can "
                                              "hold; write the path again"))
    if owners is not None:
        if owners.source == "file" and not owners.path:
            out.append(Diagnostic(at("owners"), "owners.source is file: add owners.path "
                                                "(an owners YAML or CSV file, relative to this config)"))
        if owners.source == "scim" and (not owners.url or not owners.tokenEnv):
            out.append(Diagnostic(at("owners"), "owners.source is scim: add owners.url (the SCIM base "
                                                "URL) and owners.tokenEnv (the variable that holds the "
                                                "bearer token)"))
    out.extend(_catalog_extra_problems(config, at))
    out.extend(_target_problems(config, at))
    for i, approval in enumerate(config.guardrails.approvedEscalations):
        base = f"guardrails.approvedEscalations.{i}"
        for field in ("actions", "resources"):
            for j, value in enumerate(getattr(approval, field)):
                if "*" in value or "?" in value:
                    out.append(Diagnostic(at(f"{base}.{field}.{j}"),
                                          f"{field[:-1]} {value!r} has a wildcard; an approval names "
                                          f"exact {field}, as the manifest lists them"))
    for i, transfer in enumerate(config.guardrails.approvedTransfers):
        if (transfer.fromSource is None) != (transfer.toSource is None):
            out.append(Diagnostic(at(f"guardrails.approvedTransfers.{i}"),
                                  "an approved source move names both fromSource and toSource (the "
                                  "source the identity has, and the one the manifest gives it); add "
                                  "the missing one"))
    for team, declared in config.teams.items():
        for i, pattern in enumerate(declared.manifests):
            if pattern.startswith("/") or ".." in pattern.split("/") or "\\" in pattern:
                out.append(Diagnostic(at(f"teams.{team}.manifests.{i}"),
                                      f"{pattern!r} must be a path pattern relative to this config, "
                                      "with / between folders and no '..' (e.g. teams/payments/**)"))
    from .endpoints import config_problems
    out.extend(config_problems(config))
    for dotted in ("discover.maxKeyAge", "discover.unusedAfter"):
        if parse_duration(getattr(config.discover, dotted.split(".")[1])) < timedelta(days=1):
            out.append(Diagnostic(at(dotted), f"{dotted} must be at least 1d: the clouds date keys "
                                              "and last use by the day at best; write e.g. 90d"))
    windows: tuple[tuple[str, str | None], ...] = (("review.every", config.review.every),
                                                   ("review.window", config.review.window))
    for dotted, window in windows:
        if window is not None and parse_duration(window) < timedelta(days=1):
            out.append(Diagnostic(at(dotted), f"{dotted} must be at least 1d: attestations and use are "
                                              "judged by the day; write e.g. 90d"))
    if parse_duration(config.cleanup.grace) < timedelta(hours=1):
        out.append(Diagnostic(at("cleanup.grace"),
                              "cleanup.grace must be at least 1h: quarantined identities need time to "
                              "be claimed before they are deleted"))
    return out


def _catalog_extra_problems(config: Config, at: Any) -> list[Diagnostic]:
    """Each ``catalog.extra`` entry must be one exact name of its cloud (no wildcards):
    an extra entry widens what manifests may ask for, so it is read strictly."""
    from .catalogs import NAME_EXAMPLE, NAME_FORM
    extra = config.data.catalog.extra
    out: list[Diagnostic] = []
    lists = {"aws": ("aws", extra.aws), "gcp": ("gcp", extra.gcp),
             "azure.actions": ("azure", extra.azure.actions),
             "azure.dataActions": ("azure", extra.azure.dataActions)}
    for where, (provider, names) in lists.items():
        for i, name in enumerate(names):
            if not NAME_FORM[provider].fullmatch(name):
                out.append(Diagnostic(at(f"catalog.extra.{where}.{i}"),
                                      f"catalog.extra.{where} entry {name!r} is not one exact {provider} "
                                      f"name; write {NAME_EXAMPLE[provider]} (no wildcards)"))
    return out


def _target_problems(config: Config, at: Any) -> list[Diagnostic]:
    """A target listed twice, or reached two different ways, is ambiguous: say where."""
    out: list[Diagnostic] = []
    targets = config.data.targets
    keys = {"aws": "account", "gcp": "project", "azure": "subscription"}
    groups = {"aws": ("organization",), "gcp": ("folder", "organization"), "azure": ("managementGroup",)}
    for cloud, key in keys.items():
        seen: dict[str, int] = {}
        for i, entry in enumerate(getattr(targets, cloud)):
            where = f"targets.{cloud}.{i}"
            named = [k for k in (key, *groups[cloud]) if getattr(entry, k) is not None]
            forms = " or ".join(f"`{k}:`" for k in (key, *groups[cloud]))
            if len(named) != 1:
                out.append(Diagnostic(at(where), (
                    f"this targets.{cloud} entry names {' and '.join(named)}; " if named else
                    f"this targets.{cloud} entry names no target; ")
                    + f"give each entry exactly one of {forms} (one entry per target or group)"))
                continue
            if named[0] != key:
                # One AWS Organization answers the ambient credentials: a second entry is
                # the same organization again.
                group = named[0] if cloud == "aws" else f"{named[0]} {getattr(entry, named[0])}"
                if group in seen:
                    out.append(Diagnostic(at(f"{where}.{named[0]}"),
                                          f"{group} is listed twice under targets.{cloud} (first as "
                                          f"entry {seen[group] + 1}); keep one entry"))
                seen.setdefault(group, i)
                if entry.exclude and len(set(entry.exclude)) != len(entry.exclude):
                    out.append(Diagnostic(at(f"{where}.exclude"), "exclude lists a target twice; "
                                                                  "keep one"))
                continue
            if entry.exclude:
                out.append(Diagnostic(at(f"{where}.exclude"), (
                    f"exclude belongs to a group entry ({' or '.join(groups[cloud])}); this entry "
                    f"names one {key}: remove exclude, or the entry itself")))
            value = str(getattr(entry, key)).lower()
            if value in seen:
                out.append(Diagnostic(at(f"{where}.{key}"),
                                      f"{cloud} {key} {value} is listed twice under targets.{cloud} "
                                      f"(first as entry {seen[value] + 1}); keep one entry"))
            seen.setdefault(value, i)
    for i, entry in enumerate(targets.aws):
        where = f"targets.aws.{i}"
        if entry.account is None:
            if entry.organization is not None and (entry.profile or entry.roleArn):
                out.append(Diagnostic(at(where), (
                    "an organization entry reaches each member account through organization.role; "
                    "profile and roleArn name one account: list that account as an entry of its "
                    "own (it then takes precedence over the organization's role)")))
            continue
        role_account = entry.roleArn.split(":")[4] if entry.roleArn else entry.account
        if role_account != entry.account:
            out.append(Diagnostic(at(f"{where}.roleArn"),
                                  f"roleArn {entry.roleArn} is a role in account {role_account}, "
                                  f"not in {entry.account}; name the role to assume in {entry.account}"))
        mapped = config.data.aws.accounts.get(entry.account)
        if mapped is not None and (entry.profile or entry.roleArn) and \
                (mapped.profile, mapped.roleArn) != (entry.profile, entry.roleArn):
            out.append(Diagnostic(at(where),
                                  f"account {entry.account} is reached one way here and another way "
                                  f"under aws.accounts; keep its profile or roleArn in one place"))
    return out
