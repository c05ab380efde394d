"""Everything a cloud implements, in our own values (never SDK types).

A cloud is a :class:`Cloud` record: its name, two pure functions that need no SDK
(``render`` a compiled workload into the identity it should be, ``static_checks`` for the
limits the cloud would enforce) and ``connect``, which imports the SDK and returns the
cloud's :class:`Backends`:

- :class:`IdentityBackend` reads what we manage, diffs it against the desired identity
  and converges it change by change (joiner and mover);
- :class:`LeaverBackend` quarantines, releases, transfers, tears down and restores
  (cleanup's and restore's steps);
- :class:`DiscoveryBackend` reads every non-human identity of a target, ours or not, as
  facts (``workload_ids.discovered``) for ``discover`` and ``adopt`` to judge;
- :class:`OrganizationBackend` lists the targets of an organisation, folder or
  management group (``targets:`` group entries);
- :class:`UsageBackend` reads what an identity used and when (``workload_ids.usage``),
  for access review (None on a cloud that cannot tell);
- :class:`KeyBackend` issues, disables and deletes keys for key-mode identities (None
  on a cloud without key mode);
- :class:`SecretStore` receives issued keys and keeps rotation's marks, and
  :class:`KeyLock` is the lease a run holds while a workload's keys change; both are
  per target (account, project, subscription).

The workflows (plan, apply, keys, cleanup, inventory) see only these names, so mypy
checks every call a workflow makes against what each cloud implements, and a cloud
without an ability says so with None, never by a missing attribute. Implementations
name the protocol they implement as a base class, so these docstrings are theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from .. import clock
from ..model import (
    Change,
    CompiledWorkload,
    DesiredIdentity,
    HeldIdentity,
    HeldPermissions,
    IssuedKey,
    KeyInfo,
    Marker,
    ObservedIdentity,
    Trust,
)

if TYPE_CHECKING:
    from ..calls import CallSeam
    from ..config import Config
    from ..discovered import DiscoveredIdentity
    from ..errors import Diagnostic
    from ..model import QuarantineMark, SecretValue, StoredSecret
    from ..signing import SigningKey
    from ..usage import IdentityUsage


class IdentityBackend(Protocol):
    """Joiner and mover: read, diff and converge the identities of one cloud."""

    def observe_one(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """What the cloud holds under the desired identity's name (a handful of calls)."""

    def observe_scope(self, target: str, *, settings: bool = True) -> list[ObservedIdentity]:
        """Every identity under our path/marker in one account/project/subscription, read in
        a few paged batch calls. Identities with our name pattern but no marker are
        included (their marker is None) so a plan can refuse to touch them. Without
        ``settings``, what only a diff or a restore bundle needs may be left out (a
        cleanup dry run judges by markers, marks and use alone)."""

    def observe_whole(self, target: str, incomplete: Sequence[tuple[DesiredIdentity, ObservedIdentity]]
                      ) -> dict[str, ObservedIdentity | None]:
        """Identities of ``target`` that :meth:`observe_scope` left incomplete, read whole
        (by name): by default one by one (:meth:`observe_one`); a backend may read many
        in a batch when that costs fewer calls, with the same result."""
        return {desired.name: self.observe_one(desired) for desired, _ in incomplete}

    def preflight(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
        """Checks made before anything is read (settings a run needs at all)."""

    def preflight_writes(self, changes: Sequence[Change]) -> list[Diagnostic]:
        """Checks that need the cloud but change nothing, for what the plan is about to
        write (e.g. the federation providers a new trust policy names exist). Asked only
        when there is something to write, so a plan that finds nothing to do reads no more."""

    def diff(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> list[Change]:
        """Ordered changes that make ``observed`` equal ``desired`` (empty when equal)."""

    def apply(self, change: Change) -> None:
        """Carry out one change. Idempotent: running it twice leaves the same state."""

    def verify_target(self, target: str) -> str:
        """Refuse to change anything unless the credentials reach ``target``; returns who
        the credentials are (an ARN, an email), for the audit log's actor."""

    def current_target(self) -> str:
        """The account/project/subscription the ambient credentials reach."""

    def signing_key(self, target: str) -> SigningKey:
        """The key that authenticates markers in ``target`` (read from the cloud's own
        secret store once per run), for records that must be believed beside them, such
        as an owner's attestation; raises :class:`~workload_ids.markers.NoSigningKey`
        when the target has none."""

    def outputs(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> dict[str, str]:
        """What a deployment needs after apply (role ARN, client id and the like).
        ``observed`` is what the plan read; None for an identity this run created, whose
        ids the backend kept from the create."""


class LeaverBackend(Protocol):
    """Leaver: cleanup's and restore's steps, each idempotent and checked for our marker."""

    def last_used(self, identity: ObservedIdentity) -> datetime | None:
        """When the identity was last used (from the batch read where the cloud has it)."""

    def quarantine_enforced(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool | None:
        """Whether a marked identity is really disabled; None when it cannot be told
        without extra calls."""

    def quarantine_proven(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool:
        """Whether the tool's own enforcement proves the mark's start (cleanup believes a
        mark only then; otherwise its grace period starts again)."""

    def grants_to_withhold(self, identity: ObservedIdentity) -> dict[str, Any] | None:
        """What :meth:`quarantine` must remove that the tool did not make, read now, as a
        journal (``grants``: a list) that cleanup appends to the audit trail first and
        passes back in ``extra[WITHHELD_GRANTS]``; :meth:`release`, :meth:`restore_bundle`
        and :meth:`restore` give exactly that back. None when quarantine cuts access
        without removing anything of anyone else's (an AWS deny policy, a disabled GCP
        account): Azure has no switch for a managed identity, only its assignments."""
        return None

    def quarantine(self, identity: ObservedIdentity, mark: QuarantineMark) -> QuarantineMark:
        """Write the mark, then disable the identity and revoke its sessions without
        destroying anything (removing exactly the grants passed in
        ``extra[WITHHELD_GRANTS]``, if any); returns the mark as written."""

    def release(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> None:
        """Undo :meth:`quarantine`: re-enable, then clear the mark."""

    def transfer(self, identity: ObservedIdentity, successor: str) -> None:
        """Hand the identity to ``successor`` (the owner in its marker)."""

    def disown(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> list[str]:
        """Let go of an identity whose marker says deletionPolicy retain: undo any
        quarantine, then remove our marker and nothing else (no policy, trust, key or tag
        of anyone else's is touched). Returns the steps taken."""

    def restore_bundle(self, identity: ObservedIdentity) -> dict[str, Any]:
        """Its full definition, enough for :meth:`restore` to recreate it."""

    def delete(self, identity: ObservedIdentity) -> list[str]:
        """Ordered teardown, tolerant of parts already gone; returns the steps taken."""

    def dead_grants(self, target: str) -> list[dict[str, str]]:
        """Grants of ours left pointing at principals that no longer exist (GCP's
        ``deleted:serviceAccount:`` members), from the last batch read; each a dict with
        at least ``member`` and ``role``."""

    def remove_dead_grants(self, target: str, grants: list[dict[str, str]]) -> None:
        """Remove those grants (read-modify-write; what is already gone is fine)."""

    def restore(self, bundle: dict[str, Any]) -> list[str]:
        """Recreate an identity from a bundle (converges when rerun); returns the steps."""


class DiscoveryBackend(Protocol):
    """Every non-human identity of one target, read-only, ours or not."""

    def discover(self, target: str, *, service_linked: bool = False) -> list[DiscoveredIdentity]:
        """Each identity of ``target`` with its trust, grants, credentials and usage
        signals (``service_linked``: AWS service-linked roles too). Never writes."""


class AdoptionBackend(Protocol):
    """Existing identities the tool did not create: read one whole, and mark it ours once
    ``adopt --apply`` has proven its manifest changes nothing."""

    def read(self, target: str, address: str) -> HeldIdentity | None:
        """The identity at ``address`` in ``target`` with its trust and every policy it
        holds; None when there is none. Never writes."""

    def permissions(self, held: HeldIdentity) -> HeldPermissions:
        """What ``held`` is granted, wherever the cloud keeps it, in manifest terms (resources
        as manifests name them); what a manifest cannot hold goes to ``dropped`` in words."""

    def federation(self, held: HeldIdentity) -> tuple[list[Trust], list[str]]:
        """The federation entries ``held``'s trust maps back to exactly, and in words what
        it trusts that no entry can express."""

    def spec(self, held: HeldIdentity, permissions: HeldPermissions,
             region: str | None = None) -> dict[str, str]:
        """The manifest's provider section (``spec.aws``, ``spec.gcp``, ``spec.azure``)
        that places a workload on ``held`` (``region``: the user's choice, where the cloud
        has regions)."""

    def trust_change(self, held: HeldIdentity, compiled: CompiledWorkload) -> list[str]:
        """Rows (``+ trust ...``, ``- trust ...``) by which ``compiled``'s trust differs from
        ``held``'s; empty when a plan would leave its trust as it is."""

    def mark(self, held: HeldIdentity, marker: Marker) -> None:
        """Write ``marker`` and its MAC on the identity, and nothing else; refuses
        (ConflictError) one that changed since ``held`` was read or already carries a marker."""


def unchanged_since_proof(now: HeldIdentity | None, held: HeldIdentity, noun: str, what: str) -> None:
    """``adopt --apply``'s last check before it marks ``held``: read again (``now``), it is
    the same identity (its immutable id), still unmarked, and holds what the proof read
    (``what`` names that in the cloud's words). ConflictError otherwise."""
    from ..errors import ConflictError
    if now is None or now.immutable_id != held.immutable_id:
        raise ConflictError(f"{noun} {held.address} changed (deleted or re-created) since it was read",
                            "rerun `workload-ids adopt`; nothing was marked")
    if now.marker is not None:
        raise ConflictError(f"{noun} {held.address} already carries a workload-ids marker",
                            "nothing was marked; see `workload-ids inventory` for whose it is")
    if now.trust != held.trust or now.policies != held.policies:
        raise ConflictError(f"{noun} {held.address} changed {what} since it was read",
                            "rerun `workload-ids adopt` to prove the manifest again; nothing was marked")


class KeyBackend(Protocol):
    """The credential operations of key-mode identities (the workflow is :mod:`workload_ids.keys`)."""

    # How many keys an identity may hold at once (the cloud's limit, or ours where lower).
    key_limit: int

    def list_keys(self, desired: DesiredIdentity) -> list[KeyInfo]:
        """Every key the identity holds, active or not, dated by the cloud."""

    def keys_of(self, target: str, name: str) -> list[KeyInfo]:
        """The same for an identity known only by name (inventory, without its manifest)."""

    def owned_tags(self, desired: DesiredIdentity) -> dict[str, str] | None:
        """The identity's tags when it exists and carries our authenticated marker (a
        forged one reads as ``{}``); None when it does not exist."""

    def create_key(self, desired: DesiredIdentity) -> IssuedKey:
        """Issue a new key; its secret exists only in the returned value."""

    def secret_document(self, key: IssuedKey) -> dict[str, str]:
        """What the secret store keeps for ``key`` (the fields a workload reads)."""

    def deactivate_key(self, desired: DesiredIdentity, key_id: str) -> None:
        """Stop ``key_id`` from working without destroying it where the cloud allows."""

    def delete_key(self, desired: DesiredIdentity, key_id: str) -> None:
        """Delete ``key_id``; one already gone is fine."""

    def key_last_used(self, desired: DesiredIdentity, key_id: str) -> datetime | None:
        """When ``key_id`` was last used, where the cloud tells."""

    def verify_key(self, desired: DesiredIdentity, key: IssuedKey) -> bool:
        """One sign-in with ``key``: True when the cloud accepts it."""


class SecretStore(Protocol):
    """Where an issued key goes, and nowhere else: one secret per workload, its versions
    named after the key they hold.

    So which keys we issued, and which is current, is read from version metadata alone:
    no secret value is read to plan. Two marks live in the store's metadata beside the
    versions, so they survive the loss of the machine that ran the command: the rotation
    journal (written before a key is created) and the retirement of the previous key."""

    def describe(self, name: str) -> StoredSecret:
        """Metadata of the secret (versions, tags); ``exists`` is False if there is none."""

    def describe_many(self, prefix: str) -> dict[str, StoredSecret]:
        """Every secret whose name starts with ``prefix``, in a few paged calls (fleet runs)."""

    def ensure(self, name: str, tags: Mapping[str, str]) -> None:
        """Create the secret with no value if it does not exist, set ``tags`` on it, and
        lock it down (AWS: a deny-by-default resource policy). A secret that already
        exists is first checked as :meth:`adopt` does."""

    def adopt(self, name: str, tags: Mapping[str, str], known: StoredSecret | None = None) -> None:
        """Before a key goes into an existing secret: raise ConflictError unless it carries
        our marker for this workload (``tags``) and nobody else was given a way in (a
        resource policy or IAM binding, a customer-managed key we were not told about).
        Finishes the lock-down :meth:`ensure` may not have reached before a crash.
        ``known`` is what this run already read of the secret; a store may take from it
        what it would otherwise read again (see the store for what it still reads)."""

    def put_key(self, name: str, key: IssuedKey, document: Mapping[str, str]) -> None:
        """Store ``document`` (which holds the key's secret) as the new current version."""

    def read_key(self, name: str, key_id: str) -> SecretValue:
        """The secret of ``key_id`` as stored (to verify a key after a crash)."""

    def set_tags(self, name: str, tags: Mapping[str, str]) -> None:
        """Set metadata tags (journal, retirement marks)."""

    def remove_tags(self, name: str, keys: list[str]) -> None:
        """Remove metadata tags; absent ones are fine."""


# A workload's lock is a lease: its holder renews it every RENEW_EVERY while it works,
# and a holder that dies stops renewing, so the lock frees itself LEASE after its last
# renewal (see workload_ids.keys.lease for why runs take it).
LEASE = timedelta(seconds=60)
RENEW_EVERY = 20.0  # seconds; three renewals fit in one lease


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lock: host, process and a nonce, so two runs never share a name."""

    name: str
    command: str

    @staticmethod
    def this_process(command: str) -> Holder:
        """A holder for this process, named by host, pid and a random nonce."""
        import os
        import secrets
        import socket
        host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:40]
        return Holder(f"{host or 'host'}/{os.getpid()}/{secrets.token_hex(3)}", command)


@dataclass(frozen=True, slots=True)
class LockRecord:
    """What a held lock says about its holder (``until`` is None where the cloud keeps
    the lease's end itself, as a blob lease does)."""

    holder: str
    command: str
    since: datetime | None
    until: datetime | None

    def encode(self) -> str:
        """The record as the text stored in the cloud (``-`` for a time it does not have)."""
        return (f"holder={self.holder} command={self.command} "
                f"since={clock.format_time(self.since) if self.since else '-'} "
                f"until={clock.format_time(self.until) if self.until else '-'}")

    @staticmethod
    def decode(text: str) -> LockRecord:
        """Parse a stored record; missing or bad times become None, so the lock reads as stale."""
        parts = dict(p.split("=", 1) for p in text.split() if "=" in p)

        def when(key: str) -> datetime | None:
            try:
                return clock.parse_time(parts.get(key, "-"))
            except ValueError:
                return None
        # An unreadable record has no end, so it counts as stale rather than held forever.
        return LockRecord(parts.get("holder", "unknown"), parts.get("command", "?"),
                          when("since"), when("until"))

    def live(self, now: datetime) -> bool:
        """True while the lease runs at ``now``; never when ``until`` is unknown."""
        return self.until is not None and now < self.until

    def describe(self) -> str:
        """Who holds the lock and until when, for the busy message."""
        since = f" since {clock.format_time(self.since)}" if self.since else ""
        until = (f", lease until {clock.format_time(self.until)}" if self.until
                 else f", lease renewed every {int(RENEW_EVERY)} s")
        return f"held by {self.holder} ({self.command}){since}{until}"

    @staticmethod
    def new(holder: Holder) -> LockRecord:
        """A record for ``holder`` with a fresh lease from now (by the lease clock)."""
        now = clock.lease_now()
        return LockRecord(holder.name, holder.command, now, now + LEASE)


class KeyLock(Protocol):
    """A workload's lock in one cloud store. ``name`` is the workload's secret name.

    Each cloud holds it where it offers an atomic write (AWS: a lock secret created only
    if absent; GCP: an annotation written by etag compare-and-swap; Azure: a blob lease)."""

    def try_acquire(self, name: str, holder: Holder, tags: Mapping[str, str]) -> LockRecord | None:
        """Take the lock if it is free or its lease has run out: None when taken, else
        the record of whoever holds it. ``tags`` mark anything the lock creates as ours."""

    def renew(self, name: str, holder: Holder) -> bool:
        """Extend the lease; False when the lock is no longer ours."""

    def release(self, name: str, holder: Holder) -> None:
        """Free the lock if it is still ours."""


# Whether apply may leave an identity's owner as the cloud holds it although the manifest
# names another (cleanup handed it on, and the audit trail shows it). The trail sits
# above the providers, so the workflows pass this in when they connect a cloud.
TransferCheck = Callable[[ObservedIdentity, str], bool]


@dataclass(frozen=True, slots=True)
class Member:
    """One target listed under a group (an AWS Organization, a GCP folder or
    organization, an Azure management group), active or not."""

    target: str  # the account id, project id, subscription id (lower case)
    active: bool  # False: suspended, closing, deleted: never read
    state: str = ""  # the cloud's own word for it (SUSPENDED, DELETE_REQUESTED), for messages


class OrganizationBackend(Protocol):
    """Lists the targets under a group of the cloud (``targets:`` entries such as
    ``organization:``, ``folder:``, ``managementGroup:``), so one config entry covers
    accounts, projects or subscriptions made after it was written."""

    def members(self, kind: str, name: str, *, role: str | None = None) -> list[Member]:
        """Every target under group ``kind`` (``organization``, ``folder``,
        ``managementGroup``) named ``name``, at any depth, sorted. ``role`` (AWS): the role
        every member account is reached through from now on in this run."""


class UsageBackend(Protocol):
    """What an identity used and when, as its cloud tells it; read-only. Every answer
    says in ``limits`` what the cloud cannot tell, and in ``unread`` what it refused."""

    def usage_of(self, target: str, address: str) -> IdentityUsage:
        """The usage of any identity of ``target`` by address (ours or not): a role or
        user ARN, a service account email, a managed identity's resource id or an
        application's appId. Never writes (AWS's access advisor job changes nothing)."""

    def usage_for(self, desired: DesiredIdentity) -> IdentityUsage:
        """The usage of the identity a workload the tool manages has (its address from
        the render), with ``workload`` set to the workload's name."""


@dataclass(frozen=True, slots=True)
class Backends:
    """One cloud, connected: its backends over one seam and one config."""

    cloud: Cloud
    config: Config
    seam: CallSeam
    identities: IdentityBackend
    leavers: LeaverBackend
    keys: KeyBackend | None  # None: this cloud has no key mode
    store_for: Callable[[str], SecretStore]  # target -> the secret store for its keys
    lock_for: Callable[[str], KeyLock]  # target -> the workload locks held there
    discovery: DiscoveryBackend
    organization: OrganizationBackend  # group entries (organisations, folders, management groups)
    adoption: AdoptionBackend | None = None  # None: adopt cannot take over this cloud's identities yet
    usage: UsageBackend | None = None  # None: this cloud's usage is not read

    @property
    def name(self) -> str:
        """The cloud's registry name (``aws``, ``gcp``, ``azure``)."""
        return self.cloud.name

    def desired(self, workload: CompiledWorkload) -> DesiredIdentity:
        """The identity ``workload`` should have (pure: no cloud calls)."""
        return self.cloud.render(workload, self.config)


@dataclass(frozen=True, slots=True)
class Cloud:
    """One cloud as the registry knows it. Building this record imports no SDK: only
    ``connect`` does, so ``validate`` and ``lint`` stay offline and fast to start."""

    name: str
    render: Callable[[CompiledWorkload, Config], DesiredIdentity]
    static_checks: Callable[[CompiledWorkload, Config], list[Diagnostic]]
    connect: Callable[[Config, CallSeam, TransferCheck], Backends]


def no_transfers(observed: ObservedIdentity, manifest_owner: str) -> bool:
    """The :data:`TransferCheck` of a run without an audit trail: no transfer is believed."""
    return False
