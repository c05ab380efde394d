"""Frozen values that flow between the stages: compiled desired state, what a cloud
holds, and the changes that turn one into the other. No SDK types cross this line, and
no manifest: ``compile`` is the only reader of the pydantic models, and everything below
it (providers, key mode, cleanup) sees these values. The floor of the house: it imports
nothing of the package but the clock and the error types."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from .clock import ClockError, format_time, parse_time

if TYPE_CHECKING:
    from .errors import Position
    from .yamlpos import Document

MANAGED_BY = "workload-ids"
TAG_MANAGED_BY = "workload-ids:managed-by"
TAG_WORKLOAD = "workload-ids:workload"
TAG_OWNER = "workload-ids:owner"
TAG_ENVIRONMENT = "workload-ids:environment"
TAG_DIGEST = "workload-ids:manifest-sha256"
# Where the identity is declared (``team:NAME`` or the manifest's path), and the MAC that
# authenticates the whole marker (see workload_ids.markers).
TAG_SOURCE = "workload-ids:source"
TAG_MAC = "workload-ids:mac"
# Optional marker fields, written only when they differ from the default (so identities
# marked before them keep their MAC): ``retain`` (removing the manifest releases the
# identity instead of deleting it) and ``true`` for an identity workload-ids adopted
# rather than created (it keeps its own name and path). The MAC covers both, so a plain
# tag written by someone else turns neither a delete into a retain nor the reverse.
TAG_DELETION_POLICY = "workload-ids:deletion-policy"
TAG_ADOPTED = "workload-ids:adopted"
RETAIN = "retain"
# ObservedIdentity.extra key: why a marked identity is not ours (see ObservedIdentity.forged).
FORGED = "forged"
# ObservedIdentity.extra key: why a marker at our location and naming is not authenticated
# (no valid MAC). Cleanup and rotation treat it as forged; apply may re-mark it.
UNAUTHENTICATED = "unauthenticated"
# ObservedIdentity.extra key: the cloud's immutable id (AWS RoleId/UserId, GCP uniqueId,
# Azure principalId), which the MAC covers so a marker copied to another identity fails.
IMMUTABLE_ID = "immutableId"
# ObservedIdentity.extra key, set by cleanup for a release: the description adopt --apply
# replaced with its marker (GCP keeps markers in descriptions), from the audit trail.
ADOPTED_BEFORE = "adoptedBefore"
# ObservedIdentity.extra key, set by cleanup: the grants quarantine removes that the tool did
# not make (Azure: role assignments of other roles), as journalled in the audit trail. A
# quarantine removes exactly those; a release, a restore bundle and a restore give them back.
WITHHELD_GRANTS = "withheldGrants"
MARKER_KEYS = (TAG_MANAGED_BY, TAG_WORKLOAD, TAG_OWNER, TAG_ENVIRONMENT, TAG_DIGEST)
# Every tag the marker's MAC covers (the source is optional on identities marked before it).
SIGNED_KEYS = (*MARKER_KEYS, TAG_SOURCE, TAG_DELETION_POLICY, TAG_ADOPTED)
# Tags that make up our ownership of an identity: what releasing it (deletionPolicy
# retain) removes, and nothing else.
OWNERSHIP_KEYS = (*SIGNED_KEYS, TAG_MAC)


@dataclass(frozen=True, slots=True)
class Grant:
    """Permissions on one resource, as a template (or a raw entry) defines them.

    ``resource`` is the concrete expression the cloud sees (``arn:aws:s3:::b/*``);
    ``listed`` is what the manifest wrote, for messages and diffs.
    """

    source: str
    entry: int
    listed: str
    resource: str
    kind: str | None
    actions: tuple[str, ...]
    data_actions: tuple[str, ...] = ()
    condition: str | None = None  # canonical JSON
    unscoped: bool = False
    binding: str | None = None
    escalation_reason: str | None = None
    # A time-bound entry's end (UTC, ``Z``) and the change that approved it; None: no end.
    expires: str | None = None
    approval: str | None = None


@dataclass(frozen=True, slots=True)
class ExpiredEntry:
    """A time-bound access entry past its ``expires``: what it granted is removed."""

    entry: int
    expires: str  # UTC, ``Z``
    approval: str
    what: str  # "queue.consume on arn:..." for messages

    def as_json(self) -> dict[str, object]:
        """The entry as plan's JSON shows it."""
        return {"entry": self.entry, "expires": self.expires, "approval": self.approval,
                "what": self.what}


@dataclass(frozen=True, slots=True)
class Marker:
    """Our ownership marker: what every identity we create carries, and what we check
    before touching anything."""

    workload: str
    owner: str
    environment: str
    digest: str
    source: str = ""  # team:NAME or the manifest's path; "" on identities marked before sources
    deletion: str = ""  # "retain", or "" for the default (delete); any other value fails the MAC
    adopted: str = ""  # "true" for an identity adopted by `workload-ids adopt`, else ""

    @property
    def retain(self) -> bool:
        """Whether removing the manifest releases the identity rather than deleting it."""
        return self.deletion == RETAIN

    def as_tags(self) -> dict[str, str]:
        """The marker as the tags (labels, annotations) written on the identity."""
        tags = {
            TAG_MANAGED_BY: MANAGED_BY,
            TAG_WORKLOAD: self.workload,
            TAG_OWNER: self.owner,
            TAG_ENVIRONMENT: self.environment,
            TAG_DIGEST: self.digest,
        }
        if self.source:
            tags[TAG_SOURCE] = self.source
        if self.deletion:
            tags[TAG_DELETION_POLICY] = self.deletion
        if self.adopted:
            tags[TAG_ADOPTED] = self.adopted
        return tags

    def fields(self, provider: str, target: str, name: str, immutable_id: str) -> dict[str, str]:
        """What the marker's MAC covers: the marker bound to one identity of one target."""
        fields = {"provider": provider, "target": target, "name": name, "id": immutable_id,
                  "workload": self.workload, "environment": self.environment, "owner": self.owner,
                  "source": self.source, "digest": self.digest}
        # Only when set: markers written before these fields keep their MAC.
        if self.deletion:
            fields["deletion"] = self.deletion
        if self.adopted:
            fields["adopted"] = self.adopted
        return fields

    def replace(self, **changes: str) -> Marker:
        """This marker with some fields changed (a transfer's owner, a pending digest)."""
        values = {"workload": self.workload, "owner": self.owner, "environment": self.environment,
                  "digest": self.digest, "source": self.source, "deletion": self.deletion,
                  "adopted": self.adopted, **changes}
        return Marker(**values)

    TEXT_PREFIX = "workload-ids:v1"

    def as_text(self, mac: str = "") -> str:
        """The marker as one line, for clouds without tags on identities (a GCP service
        account's description, a custom role's description, a condition's description),
        with its MAC where one is given. The inverse of :meth:`from_text`."""
        text = (f"{self.TEXT_PREFIX} workload={self.workload} owner={self.owner} "
                f"environment={self.environment} sha256={self.digest}")
        if self.source:
            text += f" source={self.source}"
        if self.deletion:
            text += f" deletion={self.deletion}"
        if self.adopted:
            text += f" adopted={self.adopted}"
        return text + (f" mac={mac}" if mac else "")

    @staticmethod
    def from_text(text: str | None) -> Marker | None:
        """Read :meth:`as_text`'s form; None for anything else (an edited or forged
        description, or one missing the digest, is not ours)."""
        fields = _text_fields(text)
        if fields is None:
            return None
        return Marker(fields["workload"], fields["owner"], fields["environment"], fields["sha256"],
                      fields.get("source", ""), fields.get("deletion", ""), fields.get("adopted", ""))

    @staticmethod
    def mac_of_text(text: str | None) -> str:
        """The MAC :meth:`as_text` wrote into ``text``, or "" when it has none."""
        fields = _text_fields(text)
        return fields.get("mac", "") if fields is not None else ""

    @staticmethod
    def from_tags(tags: Mapping[str, str]) -> Marker | None:
        """Read our marker from tags; None unless every key is there and managed-by is ours."""
        if tags.get(TAG_MANAGED_BY) != MANAGED_BY:
            return None
        try:
            return Marker(tags[TAG_WORKLOAD], tags[TAG_OWNER], tags[TAG_ENVIRONMENT], tags[TAG_DIGEST],
                          tags.get(TAG_SOURCE, ""), tags.get(TAG_DELETION_POLICY, ""),
                          tags.get(TAG_ADOPTED, ""))
        except KeyError:
            return None


_TEXT_REQUIRED = frozenset({"workload", "owner", "environment", "sha256"})
_TEXT_OPTIONAL = frozenset({"source", "mac", "deletion", "adopted"})


def _text_fields(text: str | None) -> dict[str, str] | None:
    if not text or not text.startswith(Marker.TEXT_PREFIX + " "):
        return None
    fields: dict[str, str] = {}
    for part in text[len(Marker.TEXT_PREFIX) + 1:].split(" "):
        key, sep, value = part.partition("=")
        if not sep or not value or key in fields:
            return None
        fields[key] = value
    if not _TEXT_REQUIRED <= set(fields) <= _TEXT_REQUIRED | _TEXT_OPTIONAL or \
            len(fields["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in fields["sha256"]):
        return None
    return fields


@dataclass(frozen=True, slots=True)
class GithubTrust:
    """A GitHub Actions workflow of one repository, on one ref or in one environment."""

    kind: ClassVar[str] = "github-actions"
    repository: str
    ref: str | None = None
    environment: str | None = None
    pool: str | None = None  # a GCP workload identity pool
    # Immutable ids: a renamed or deleted repository frees its name, never its id.
    repository_id: int | None = None
    repository_owner_id: int | None = None

    def subject(self) -> str:
        """The OIDC ``sub`` claim GitHub issues for this entry."""
        if self.environment is not None:
            return f"repo:{self.repository}:environment:{self.environment}"
        return f"repo:{self.repository}:ref:{self.ref}"


@dataclass(frozen=True, slots=True)
class KubernetesTrust:
    """A Kubernetes service account, trusted through its cluster's OIDC issuer."""

    kind: ClassVar[str] = "kubernetes"
    issuer: str
    namespace: str
    service_account: str
    pool: str | None = None  # a GCP workload identity pool

    def subject(self) -> str:
        """The OIDC ``sub`` claim of the service account's tokens."""
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


@dataclass(frozen=True, slots=True)
class ServiceTrust:
    """An AWS service that assumes the role on the workload's behalf (ECS tasks, Lambda)."""

    kind: ClassVar[str] = "aws-service"
    service: str


# Runtime kinds in words, for plans and explain.
_RUNTIME_WORDS = {"cloud-run": "Cloud Run service", "compute-engine": "Compute Engine instance",
                  "app-service": "App Service site", "lambda": "Lambda function", "ecs": "ECS tasks"}


@dataclass(frozen=True, slots=True)
class AttachedTrust:
    """A runtime the identity is attached to (``spec.credentials.attachedTo``): the cloud
    gives that runtime the identity's credentials itself, with no federation.

    What the cloud enforces differs: AWS trusts the service (``service``, as aws-service
    does) for every function or task in the account; GCP and Azure trust whoever may
    attach the identity (``deployers``, granted roles/iam.serviceAccountUser or Managed
    Identity Operator on the identity alone) to any runtime. ``name`` and ``location``
    say which runtime is meant, for reviewers: no cloud ties the identity to it."""

    kind: ClassVar[str] = "attached"
    runtime: str  # cloud-run | compute-engine | app-service | lambda | ecs
    name: str = ""  # service, instance, site resource id, function or cluster ("" if not given)
    location: str = ""  # region or zone
    deployers: tuple[str, ...] = ()
    service: str = ""  # AWS: the service principal that assumes the role
    entry: int = 0  # its index in attachedTo, for positioned messages

    def describe(self) -> str:
        """The runtime in words: ``Cloud Run service payments-api in europe-west1``."""
        name = self.name.rsplit("/", 1)[-1] if self.runtime == "app-service" else self.name
        if self.runtime == "ecs":
            text = f"ECS tasks in cluster {name}" if name else "ECS tasks"
        elif self.runtime == "lambda" and not name:
            text = "Lambda functions"
        else:
            text = f"{_RUNTIME_WORDS.get(self.runtime, self.runtime)} {name}".rstrip()
        return text + (f" in {self.location}" if self.location else "")


# Who may obtain the workload's credentials: one entry per manifest federation entry, in
# order, then one per attachedTo entry.
Trust = GithubTrust | KubernetesTrust | ServiceTrust | AttachedTrust


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """When keys are replaced, retired and deleted."""

    max_age: timedelta
    overlap: timedelta
    grace: timedelta
    retire_on_use: bool
    verify_successes: int
    verify_interval: timedelta
    verify_timeout: timedelta


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Where a workload's manifest says each thing, for messages: positions without the
    manifest's model (a path of keys and indexes, as in the YAML)."""

    document: Document
    declared: frozenset[str] = frozenset()  # optional manifest sections present (e.g. "rotation")

    @property
    def path(self) -> str:
        """The manifest file."""
        return self.document.path

    def position(self, *loc: str | int, key: bool = False) -> Position:
        """Position of a node of the manifest (``key``: of its key rather than its value)."""
        return self.document.position(loc, key=key)


@dataclass(frozen=True, slots=True)
class CompiledWorkload:
    """A manifest turned into the provider-neutral state its identity should have."""

    provider: str
    target: str  # account, project or subscription (lower case)
    name: str
    environment: str
    owner: str
    description: str
    mode: str  # keyless | key
    trust: tuple[Trust, ...]
    grants: tuple[Grant, ...]
    marker: Marker
    source: SourceMap
    session_duration: str | None = None  # AWS maxSessionDuration as written
    # Provider placement beyond the target (Azure resourceGroup and location; AWS region).
    placement: Mapping[str, str] = field(default_factory=dict)
    # Key mode only: where the key goes (from credentials.secretName) and when it turns over
    # (the manifest's rotation over the config's defaults). Compiled here so that nothing
    # below compile needs the config's patterns.
    secret_name: str = ""
    rotation_policy: RotationPolicy | None = None
    # spec.mode (over the config's defaults.mode): "observe" plans drift and never applies it.
    management: str = "manage"
    # spec.deletionPolicy: "retain" releases the identity when the manifest goes (the
    # marker carries it, since cleanup then has no manifest to read).
    deletion_policy: str = "delete"
    # spec.adopted: the address of an existing identity `workload-ids adopt` took over; it
    # keeps its own name (and, on AWS, path). "" for identities workload-ids names itself.
    adopted: str = ""
    # Access entries whose ``expires`` has passed: they compile to no grant, and plan says
    # why their grants go.
    expired: tuple[ExpiredEntry, ...] = ()
    # Rendered identities by provider: validate's size checks and plan need the same one.
    rendered: dict[str, DesiredIdentity] = field(default_factory=dict, compare=False, hash=False,
                                                 repr=False)

    @property
    def label(self) -> str:
        """Short human name: ``environment/name``."""
        return f"{self.environment}/{self.name}"

    @property
    def key_mode(self) -> bool:
        """Whether the workload gets a long-lived key rather than federation."""
        return self.mode == "key"

    @property
    def observe(self) -> bool:
        """Whether plan only reports this identity's drift and apply never changes it."""
        return self.management == "observe"


@dataclass(frozen=True, slots=True)
class DesiredIdentity:
    """What a provider will create for a workload, rendered in the provider's terms but
    held as plain values: documents as canonical JSON text, settings as strings."""

    workload: CompiledWorkload
    kind: str  # role | user | service-account | managed-identity | application
    name: str
    documents: Mapping[str, str]  # e.g. {"policy": "...", "trust": "..."}
    tags: Mapping[str, str]
    settings: Mapping[str, str]
    address: str = ""  # ARN, email or resource id once known
    objects: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # parsed documents


@dataclass(frozen=True, slots=True)
class ObservedIdentity:
    """What the cloud holds for one identity we may manage."""

    provider: str
    target: str
    kind: str
    name: str
    address: str
    tags: Mapping[str, str]
    documents: Mapping[str, str]
    settings: Mapping[str, str]
    foreign: tuple[str, ...] = ()  # attachments we did not make (policy names or ARNs)
    extra: Mapping[str, Any] = field(default_factory=dict)
    # False when a batch read left out what only the diff of a changed identity needs
    # (Azure's federated credentials, a child of each identity): plan reads an identity
    # whose manifest changed again, alone, so a plan shows the same whatever else it reads.
    complete: bool = True

    @property
    def marker(self) -> Marker | None:
        """Our marker from the tags; None when the identity does not carry one."""
        return Marker.from_tags(self.tags)

    @property
    def forged(self) -> str | None:
        """Why an identity carrying our marker is still not ours (it sits outside the
        tool's location or naming, or its marker has no valid MAC), or None. Set by the
        provider's read; cleanup, rotation, release, transfer and restore refuse a forged
        one."""
        why = self.extra.get(FORGED) or self.extra.get(UNAUTHENTICATED)
        return str(why) if why else None

    @property
    def misplaced(self) -> str | None:
        """Why a marked identity sits outside the tool's location or naming, or None:
        unlike an unauthenticated marker, apply never converges such an identity."""
        why = self.extra.get(FORGED)
        return str(why) if why else None

    @property
    def unauthenticated(self) -> str | None:
        """Why a marker at our location and naming is not authenticated, or None."""
        why = self.extra.get(UNAUTHENTICATED)
        return str(why) if why else None

    @property
    def immutable_id(self) -> str:
        """The cloud's immutable id of the identity ("" when the read did not give it)."""
        return str(self.extra.get(IMMUTABLE_ID) or "")


# (permission in the cloud's comparison form, resource, condition as canonical text or "")
HeldPair = tuple[str, str, str]


@dataclass
class HeldPermissions:
    """What an existing identity's grants allow, split into what a manifest can state
    exactly (unconditional grants of exact permissions on exact resources) and what it
    cannot. Every cloud's adoption backend reads its own documents into this one shape,
    so ``adopt`` maps and proves them the same way everywhere."""

    # Permissions compare without regard to case on AWS and Azure, exactly on GCP.
    case_insensitive: bool = False
    # Every (permission, resource, condition) a grant names, exact or not; a statement a
    # manifest cannot hold as one opaque pair ("(statement)", its text, "").
    pairs: set[HeldPair] = field(default_factory=set)
    # Exact, unconditional pairs -> the policy or binding each came from (the first seen).
    exact: dict[tuple[str, str], str] = field(default_factory=dict)
    # The permission's spelling as the cloud wrote it, for the manifest.
    spelling: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # what a manifest would not keep, in words
    denies: list[str] = field(default_factory=list)  # deny rules (dropping one widens)
    # Keys that are data-plane operations (Azure dataActions): a manifest lists them under
    # ``dataActions``; empty on clouds without the split.
    data: set[str] = field(default_factory=set)

    def key(self, permission: str) -> str:
        """``permission`` in the form pairs compare in."""
        return permission.lower() if self.case_insensitive else permission

    def wanted(self, grants: Sequence[Grant]) -> set[HeldPair]:
        """What compiled ``grants`` give, in the same terms as :attr:`pairs`."""
        return {(self.key(a), g.resource, g.condition or "") for g in grants
                for a in (*g.actions, *g.data_actions)}

    def not_held(self, wanted: set[HeldPair]) -> list[HeldPair]:
        """Wanted pairs the identity does not hold today: an unconditional held pair covers a
        wanted one with or without a condition (a condition only narrows a grant)."""
        plain = {(a, r) for a, r, c in self.pairs if not c}
        return sorted(p for p in wanted if p not in self.pairs and (p[0], p[1]) not in plain)


@dataclass(frozen=True, slots=True)
class HeldIdentity:
    """An existing identity read whole for ``adopt``: who it trusts and every policy it
    holds, as the cloud keeps them (documents as canonical JSON text)."""

    provider: str
    target: str
    kind: str
    name: str
    address: str
    immutable_id: str
    tags: Mapping[str, str]
    trust: str  # the trust document ("" where the cloud has none)
    policies: tuple[tuple[str, str], ...]  # (where it comes from, document): inline and attached
    settings: Mapping[str, str]  # path, description, maxSessionDuration, boundary

    @property
    def marker(self) -> Marker | None:
        """Our marker from the tags (authenticated or not); None when there is none."""
        return Marker.from_tags(self.tags)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key of an identity, as the cloud lists it (never its secret)."""

    key_id: str
    status: str  # active | inactive
    created: datetime


@dataclass(frozen=True, slots=True)
class Change:
    """One step of a plan. ``details`` is JSON-ready and documented in the README."""

    workload: str
    provider: str
    target: str
    action: str
    identity: str
    details: Mapping[str, Any]
    desired: DesiredIdentity | None = None
    observed: ObservedIdentity | None = None
    # The cloud keeps no name unique for this kind of identity (an Entra application):
    # two runs making it at once would make two, so apply holds the workload's lock
    # (key mode's lease) around the change.
    exclusive: bool = False

    def as_json(self) -> dict[str, Any]:
        """The change as ``plan --format json`` prints it."""
        return {
            "workload": self.workload,
            "provider": self.provider,
            "target": self.target,
            "action": self.action,
            "identity": self.identity,
            **dict(self.details),
        }


# The quarantine mark: one tag value, written and read by one pair of functions.
# ``since=2026-11-26T10:00:00Z reason=owner-gone delete-after=2026-12-03T10:00:00Z``
# (plus ``keys=AKIA…+AKIA…`` for users: the keys the quarantine deactivated, so a release
# reactivates exactly those). Times are UTC with a ``Z``; IAM tag values allow letters,
# digits, spaces and ``_.:/=+-@`` only, hence the separators.

MARK_TAG = "workload-ids:quarantine"
# Set when cleanup hands an identity to a successor: the manifest still names the old
# owner until someone edits it, and apply must not undo the transfer meanwhile.
TRANSFERRED_FROM_TAG = "workload-ids:transferred-from"

REASONS = ("no-manifest", "owner-gone", "unused", "unattested")
_FIELD = re.compile(r"^(since|reason|delete-after|keys)=([A-Za-z0-9_.:/+@-]*)$")


class MarkError(ValueError):
    """A quarantine tag that is not in our form (edited by hand, or truncated)."""


@dataclass(frozen=True, slots=True)
class QuarantineMark:
    """When and why an identity was quarantined, and when it may be deleted.

    ``delete_after`` is None for reasons that never lead to deletion (``unused``, ``unattested``).
    """

    since: datetime
    reason: str
    delete_after: datetime | None
    keys: tuple[str, ...] = field(default=())

    def due(self, now: datetime) -> bool:
        """True when the identity may be deleted at ``now``; never for marks without a deadline."""
        return self.delete_after is not None and now >= self.delete_after


def encode_mark(mark: QuarantineMark) -> str:
    """The tag value for ``mark``; the inverse of :func:`decode_mark`."""
    if mark.reason not in REASONS:
        raise ValueError(f"unknown quarantine reason {mark.reason!r}")
    parts = [f"since={format_time(mark.since)}", f"reason={mark.reason}"]
    if mark.delete_after is not None:
        parts.append(f"delete-after={format_time(mark.delete_after)}")
    if mark.keys:
        parts.append("keys=" + "+".join(mark.keys))
    return " ".join(parts)


def decode_mark(text: str) -> QuarantineMark:
    """Parse a tag value written by :func:`encode_mark`; :class:`MarkError` otherwise."""
    fields: dict[str, str] = {}
    for part in text.split():
        m = _FIELD.match(part)
        if m is None or m[1] in fields:
            raise MarkError(f"quarantine mark {text!r}: cannot read {part!r}")
        fields[m[1]] = m[2]
    if "since" not in fields or fields.get("reason") not in REASONS:
        raise MarkError(f"quarantine mark {text!r}: needs since= and a reason= of "
                        f"{', '.join(REASONS)}")
    try:
        since = parse_time(fields["since"], source="since")
        delete_after = parse_time(fields["delete-after"], source="delete-after") \
            if fields.get("delete-after") else None
    except ClockError as exc:
        raise MarkError(f"quarantine mark {text!r}: {exc}") from None
    if delete_after is not None and delete_after < since:
        raise MarkError(f"quarantine mark {text!r}: delete-after is before since")
    keys = tuple(k for k in fields.get("keys", "").split("+") if k)
    return QuarantineMark(since, fields["reason"], delete_after, keys)


# --- key mode: what a key and its secret store hold ---------------------------------------
# Marks a rotation keeps in the secret store's metadata (see workload_ids.keys.journal).
JOURNAL_TAG = "workload-ids:journal"
RETIRED_TAG = "workload-ids:retired"


class SecretValue:
    """A secret held in memory. It never prints: ``str``, ``repr`` and f-strings show a
    placeholder, so a stray log line or exception message cannot leak it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "SecretValue(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created: its public id and its secret."""

    key_id: str
    secret: SecretValue
    issued: datetime  # by our clock, so drills with WORKLOAD_IDS_CLOCK stay consistent


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """What the store holds for one workload, without any secret value."""

    name: str
    exists: bool
    tags: Mapping[str, str] = field(default_factory=dict)
    versions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # key id -> stages
    issued_at: Mapping[str, datetime] = field(default_factory=dict)  # key id -> when we issued it
    # What a store's own read said about who else could open the secret, when the read
    # gave it (AWS: the KMS key, "" for Secrets Manager's own; None: not read), and the
    # secret's address (an ARN: a secret deleted and made again gets a new one). Only a
    # read of the cloud fills them, never a state the run put together itself.
    kms_key: str | None = field(default=None, compare=False)
    address: str = field(default="", compare=False)
    # Other regions holding a copy of the secret (AWS replication), as the same read said.
    replicas: tuple[str, ...] = field(default=(), compare=False)

    def current_key(self) -> str | None:
        """The key id of the current version (AWSCURRENT, or our stores' ``current``); None if none."""
        return next((k for k, stages in self.versions.items() if "AWSCURRENT" in stages
                     or "current" in stages), None)

    def previous_key(self) -> str | None:
        """The key id of the previous version (AWSPREVIOUS, or ``previous``); None if none."""
        return next((k for k, stages in self.versions.items() if "AWSPREVIOUS" in stages
                     or "previous" in stages), None)

    def issued(self) -> set[str]:
        """Every key id the store holds a version for."""
        return set(self.versions)
