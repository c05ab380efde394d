"""The provider interface: what every cloud backend does, in our values, never SDK types.

A backend reads what we manage (in one batch for a whole scope, or one identity by name),
renders a compiled workload into the identity it should be, converges an identity to that
state change by change, and says what its cloud's limits are so the plan can check them
before acting. Rotation and cleanup (later) are workflows over the same interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import Diagnostic
from ..model import Change, CompiledWorkload, DesiredIdentity, IssuedKey, KeyInfo, ObservedIdentity

if TYPE_CHECKING:
    from ..model import QuarantineMark


class Provider(Protocol):
    """One cloud."""

    name: str

    def desired(self, workload: CompiledWorkload) -> DesiredIdentity:
        """The identity ``workload`` should have (pure: no cloud calls)."""

    def static_checks(self, workload: CompiledWorkload) -> list[Diagnostic]:
        """Limits checked without the cloud: name lengths, document sizes."""

    def observe_one(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """What the cloud holds under the desired identity's name (a handful of calls)."""

    def observe_scope(self, target: str, *, settings: bool = True) -> list[ObservedIdentity]:
        """Every identity under our path/marker in one account/project/subscription, read in
        a few paged batch calls. Identities with our name pattern but no marker are
        included (their marker is None) so a plan can refuse to touch them. Without
        ``settings``, what only a diff or a restore bundle needs may be left out (a
        cleanup dry run judges by markers, marks and use alone)."""

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

    def outputs(self, desired: DesiredIdentity) -> dict[str, str]:
        """What a deployment needs after apply (role ARN and the like)."""

    def current_target(self) -> str:
        """The account/project/subscription the ambient credentials reach."""

    # --- leavers (cleanup and restore); each step idempotent, checked for our marker ---

    def last_used(self, identity: ObservedIdentity) -> datetime | None:
        """When the identity was last used (from the batch read where the cloud has it)."""

    def quarantine_enforced(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool | None:
        """Whether a marked identity is really disabled; None when it cannot be told
        without extra calls."""

    def quarantine_proven(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool:
        """Whether the tool's own enforcement proves the mark's start (cleanup believes a
        mark only then; otherwise its grace period starts again)."""

    def quarantine(self, identity: ObservedIdentity, mark: QuarantineMark) -> QuarantineMark:
        """Write the mark, then disable the identity and revoke its sessions without
        destroying anything; returns the mark as written."""

    def release(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> None:
        """Undo :meth:`quarantine`: re-enable, then clear the mark."""

    def transfer(self, identity: ObservedIdentity, successor: str) -> None:
        """Hand the identity to ``successor`` (the owner in its marker)."""

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


class KeyBackend(Protocol):
    """The credential operations a provider offers for key-mode identities."""

    key_limit: int

    def list_keys(self, desired: DesiredIdentity) -> list[KeyInfo]: ...

    def create_key(self, desired: DesiredIdentity) -> IssuedKey: ...

    def secret_document(self, key: IssuedKey) -> dict[str, str]: ...

    def deactivate_key(self, desired: DesiredIdentity, key_id: str) -> None: ...

    def delete_key(self, desired: DesiredIdentity, key_id: str) -> None: ...

    def key_last_used(self, desired: DesiredIdentity, key_id: str) -> datetime | None: ...

    def verify_key(self, desired: DesiredIdentity, key: IssuedKey) -> bool: ...

    def secret_store_name(self) -> str: ...
