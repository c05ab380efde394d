"""What cleanup and apply may believe about an identity's history. Tags and descriptions
are writable by far more people than the tool (``iam:TagRole``, Tag Contributor,
``iam.serviceAccounts.update``), so a quarantine mark or a ``transferred-from`` tag is
believed only when something the tool alone wrote agrees: its own enforcement in the
cloud, and its audit log.

Where markers get authenticated later (a MAC keyed by a secret the tool keeps), the
check belongs next to these: :attr:`~workload_ids.model.ObservedIdentity.forged` for the
marker, :func:`quarantine_believed` for marks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .audit import open_store
from .clock import format_time
from .config import Config
from .model import TRANSFERRED_FROM_TAG, ObservedIdentity, QuarantineMark

# The audit record cleanup writes before quarantine removes grants the tool did not make.
WITHHOLD_ACTION = "withhold-grants"
NOT_PROVEN = "quarantine mark not proven by enforcement; grace restarts"
NOT_RECORDED = "quarantine mark has no matching quarantine record in the audit log; grace restarts"


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """The records of the local audit log that vouch for marks and transfers."""

    quarantines: frozenset[tuple[str, str, str, str]] = frozenset()  # provider, target, identity, since
    # The same, for deletions begun (a restore bundle written): the teardown removes the
    # enforcement, so a rerun after a crash believes the mark from here.
    deleting: frozenset[tuple[str, str, str, str]] = frozenset()
    # provider, target, identity -> (from owner, to owner) of each transfer, in order
    transfers: dict[tuple[str, str, str], tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # provider, target, identity -> the owner the tool last wrote (apply) or handed it to
    # (a cleanup transfer)
    owners: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # provider, target, identity -> the source apply last bound it to
    sources: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # provider, target, address -> the description adopt --apply replaced with its marker
    # (GCP keeps the marker there), which releasing the identity puts back
    adopted_descriptions: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # provider, target, identity -> the journals of grants quarantine removed that the tool
    # did not make (Azure), since its last release, deletion or restore: what the next
    # release gives back (each journal carries its own MAC, checked by the provider)
    withheld: dict[tuple[str, str, str], tuple[dict[str, Any], ...]] = field(default_factory=dict)

    def transfer_believed(self, provider: str, target: str, identity: str, manifest_owner: str,
                          current_owner: str) -> bool:
        """Whether the log shows cleanup handing this identity from ``manifest_owner``
        (possibly through others) to ``current_owner``."""
        owner, moved = manifest_owner, False
        for old, new in self.transfers.get((provider, target, identity), ()):
            if old == owner:
                owner, moved = new, True
        return moved and owner == current_owner


_cache: dict[object, AuditTrail] = {}
_lock = threading.Lock()


def audit_trail(config: Config) -> AuditTrail | None:
    """The trail of ``config``'s audit store; None when the config keeps none (an empty
    trail when it keeps one that holds nothing yet). Read once per version of the store."""
    store = open_store(config)
    if store is None:
        return None
    key = store.version()
    if key is None:
        return AuditTrail()
    with _lock:
        if key in _cache:
            return _cache[key]
    trail = _read(store.records())
    with _lock:
        _cache.clear()
        _cache[key] = trail
    return trail


def _read(items: Iterable[dict[str, Any]]) -> AuditTrail:
    quarantines: set[tuple[str, str, str, str]] = set()
    deleting: set[tuple[str, str, str, str]] = set()
    transfers: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    owners: dict[tuple[str, str, str], str] = {}
    sources: dict[tuple[str, str, str], str] = {}
    descriptions: dict[tuple[str, str, str], str] = {}
    withheld: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in _ok(items):
        where = (str(r.get("provider")), str(r.get("target")), str(r.get("identity")))
        before, after = r.get("before"), r.get("after")
        detail = r.get("detail")
        if r.get("action") == "adopt" and isinstance(before, dict) and isinstance(detail, dict) \
                and isinstance(before.get("description"), str):
            descriptions[(where[0], where[1], str(detail.get("address")))] = before["description"]
        if r.get("action") == WITHHOLD_ACTION and isinstance(before, dict):
            withheld.setdefault(where, []).append(before)
        elif r.get("action") in ("release", "release-identity", "delete", "restore"):
            # Given back (release, restore), or kept in the restore bundle (delete).
            withheld.pop(where, None)
        if r.get("action") == "quarantine" and isinstance(after, dict) and after.get("since"):
            quarantines.add((*where, str(after["since"])))
        elif r.get("action") == "restore-bundle" and isinstance(r.get("detail"), dict):
            deleting.add((*where, str(r["detail"].get("quarantinedSince"))))
        elif r.get("action") == "transfer" and isinstance(before, dict) and isinstance(after, dict):
            transfers.setdefault(where, []).append((str(before.get("owner")), str(after.get("owner"))))
            owners[where] = str(after.get("owner"))
        elif isinstance(r.get("detail"), dict) and r["detail"].get("owner"):
            owners[where] = str(r["detail"]["owner"])
            if r["detail"].get("source"):
                sources[where] = str(r["detail"]["source"])
    return AuditTrail(frozenset(quarantines), frozenset(deleting),
                      {k: tuple(v) for k, v in transfers.items()}, owners, sources, descriptions,
                      {k: tuple(v) for k, v in withheld.items()})


def _ok(items: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return (r for r in items if r.get("result") == "ok")


def quarantine_believed(provider: str, target: str, identity: str, mark: QuarantineMark,
                        enforced: bool, trail: AuditTrail | None) -> str | None:
    """None when the mark's start is believed, else why not (the report's words). Only
    the tool's own enforcement (with the same start) and, when the config keeps an audit
    log, its ``quarantine`` record prove a mark. A deletion the log shows begun (its
    restore bundle written) stands for the enforcement its teardown removed."""
    key = (provider, target, identity, format_time(mark.since))
    if not enforced and (trail is None or key not in trail.deleting):
        return NOT_PROVEN
    if trail is not None and key not in trail.quarantines:
        return NOT_RECORDED
    return None


def transfer_believed(config: Config, observed: ObservedIdentity, manifest_owner: str) -> bool:
    """Whether apply may leave ``observed``'s owner as it is although the manifest names
    ``manifest_owner``: its ``transferred-from`` tag says cleanup handed it on, and the
    audit log holds that transfer. Without the record the owner is drift (a forged tag
    must not keep apply from repairing a forged owner)."""
    marker = observed.marker
    if marker is None or observed.tags.get(TRANSFERRED_FROM_TAG) != manifest_owner:
        return False
    trail = audit_trail(config)
    return trail is not None and trail.transfer_believed(
        observed.provider, observed.target, observed.name, manifest_owner, marker.owner)


def recorded_owner(config: Config, observed: ObservedIdentity) -> str | None:
    """The owner the audit log says the tool last gave ``observed`` (by apply or by a
    cleanup transfer), or None when the config keeps no log or the log has none."""
    trail = audit_trail(config)
    if trail is None:
        return None
    return trail.owners.get((observed.provider, observed.target, observed.name))


def recorded_source(config: Config, observed: ObservedIdentity) -> str | None:
    """The source the audit log says apply last bound ``observed`` to, or None when the
    config keeps no log or the log has none (records from before sources were kept)."""
    trail = audit_trail(config)
    if trail is None:
        return None
    return trail.sources.get((observed.provider, observed.target, observed.name))


def bundle_not_ours(config: Config, bundle: dict[str, Any]) -> str | None:
    """Why a restore bundle describes an identity the tool would not have made (outside
    its location or naming, or without its marker), or None. ``restore`` refuses such a
    bundle: cleanup never deletes a forged identity, so no real bundle of one exists."""
    from .model import Marker
    provider, name = str(bundle.get("provider")), str(bundle.get("name"))
    raw = bundle.get("tags")
    tags: dict[str, str] = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    if provider == "aws":
        from .providers.aws import render as aws
        marker = Marker.from_tags(tags)
        return "it carries no workload-ids marker" if marker is None else aws.not_ours(
            config, str(bundle.get("kind")), name, str(bundle.get("path")), marker)
    if provider == "gcp":
        from .providers.gcp import render as gcp
        marker = Marker.from_text(str(bundle.get("description", "")))
        return "it carries no workload-ids marker" if marker is None else gcp.not_ours(
            config.gcp.namePrefix, name, str(bundle.get("target")), marker)
    if provider == "azure":
        from .providers.azure import render as azure
        marker = Marker.from_tags(tags)
        return "it carries no workload-ids marker" if marker is None else azure.not_ours(
            config.azure.namePrefix, name, marker)
    return f"its provider {provider!r} is not one workload-ids knows"
