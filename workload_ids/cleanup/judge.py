"""Judge one identity: which class it is in and what cleanup should do about it. Pure:
everything it needs (the batch read, the manifests, the owner directory's answers, the
time) is read before, so a dry run and an applying run decide the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import format_time
from ..config import CleanupConfig, ReviewConfig
from ..durations import format_duration, parse_duration
from ..model import MARK_TAG, CompiledWorkload, MarkError, ObservedIdentity, QuarantineMark, decode_mark
from ..owners.interface import OwnerStatus

# Classes, in the order the report lists them.
ACTIVE, NEW, NO_MANIFEST, OWNER_GONE, TRANSFERRED, UNUSED, UNMANAGED, FORGED = (
    "active", "new", "no-manifest", "owner-gone", "transferred", "unused", "unmanaged", "forged")
# Declared and owned, but its owner's attestation is overdue (review.every).
UNATTESTED = "unattested"
CLASSES = (FORGED, ACTIVE, NEW, NO_MANIFEST, OWNER_GONE, TRANSFERRED, UNUSED, UNATTESTED, UNMANAGED)

# Actions. Only quarantine and delete count against the blast-radius guard: the others
# restore access or change a tag.
TRANSFER, QUARANTINE, ENFORCE, RELEASE, DELETE = "transfer", "quarantine", "enforce", "release", "delete"
# deletionPolicy retain: the manifest is gone, so the identity is handed back: our marker
# (and any quarantine) is removed, nothing is deleted. It counts against the guard: a
# wrong manifest folder would otherwise let go of every retained identity at once.
DISOWN = "disown"
DESTRUCTIVE = (QUARANTINE, DELETE, DISOWN)


@dataclass(frozen=True, slots=True)
class Rules:
    """The cleanup settings a judgement uses, parsed once."""

    grace: timedelta
    min_age: timedelta
    unused_after: timedelta
    quarantine_unused: bool
    fallback_owner: dict[str, str]
    attest_every: timedelta | None = None  # review.every; None: attestation not required
    quarantine_unattested: bool = False  # review.onExpiry: quarantine

    @staticmethod
    def from_config(cleanup: CleanupConfig, review: ReviewConfig | None = None) -> Rules:
        """The rules with their durations parsed (``CleanupConfig`` holds them as text)."""
        every = review.every if review is not None else None
        return Rules(parse_duration(cleanup.grace), parse_duration(cleanup.minAge),
                     parse_duration(cleanup.unusedAfter), cleanup.quarantineUnused,
                     dict(cleanup.fallbackOwner), parse_duration(every) if every else None,
                     review is not None and review.onExpiry == "quarantine")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the run learnt outside the batch read."""

    now: datetime
    declared: dict[tuple[str, str, str], CompiledWorkload] | None  # None: no manifests given
    owners: dict[str, OwnerStatus] | None  # None: owner checks are off
    last_used: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    # (provider, target, identity) -> why its quarantine mark is not believed (see provenance)
    unbelieved: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # (provider, target, ENV/NAME) -> (owner, when) of the last believed attestation; None
    # when attestation is not judged (review.every unset)
    attested: dict[tuple[str, str, str], tuple[str, datetime]] | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One identity, its class, why, and the action (None: leave it as it is)."""

    identity: ObservedIdentity
    status: str
    reason: str
    action: str | None = None
    mark: QuarantineMark | None = None  # the mark it has now
    new_mark: QuarantineMark | None = None  # the mark a quarantine writes
    successor: str | None = None
    manifest: CompiledWorkload | None = None
    problem: str | None = None  # why the action is withheld (e.g. an unreadable mark)

    @property
    def label(self) -> str:
        """``environment/workload`` from the marker, or ``-`` for an identity without one."""
        marker = self.identity.marker
        return f"{marker.environment}/{marker.workload}" if marker else "-"

    @property
    def owner(self) -> str:
        """The marker's owner, or ``-`` for an identity without a marker."""
        marker = self.identity.marker
        return marker.owner if marker else "-"

    def state(self) -> str:
        """The quarantine state for the report: ``-``, ``quarantined``, or the due date."""
        if self.mark is None:
            return "-"
        if self.mark.delete_after is None:
            return f"quarantined since {format_time(self.mark.since)} (never deleted)"
        return f"quarantined, delete after {format_time(self.mark.delete_after)}"

    def as_json(self) -> dict[str, Any]:
        """The finding as ``cleanup --format json`` prints it."""
        o = self.identity
        marker = o.marker
        doc: dict[str, Any] = {
            "provider": o.provider, "target": o.target, "kind": o.kind, "identity": o.name,
            "workload": marker.workload if marker else None,
            "environment": marker.environment if marker else None,
            "owner": marker.owner if marker else None,
            "status": self.status, "reason": self.reason, "action": self.action,
            "quarantine": None if self.mark is None else {
                "since": format_time(self.mark.since), "reason": self.mark.reason,
                "deleteAfter": format_time(self.mark.delete_after) if self.mark.delete_after else None},
        }
        if self.successor:
            doc["successor"] = self.successor
        if self.problem:
            doc["problem"] = self.problem
        return doc


def _when(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def judge(o: ObservedIdentity, facts: Facts, rules: Rules) -> Finding:
    """See the module docstring; the rules are in the README's cleanup section."""
    marker = o.marker
    if marker is None:
        return Finding(o, UNMANAGED, "has our name or path but not our ownership tags: never touched")
    if o.forged:
        # Tags and descriptions are writable by far more people than the tool's location
        # and naming: a marker outside them (a forged one, or a copy) is never acted on.
        return Finding(o, FORGED, f"carries the workload-ids marker but {o.forged}: reported as "
                                  "forged and never touched; find out who tagged it")
    mark: QuarantineMark | None = None
    problem: str | None = None
    if MARK_TAG in o.tags:
        try:
            mark = decode_mark(o.tags[MARK_TAG])
        except MarkError as exc:
            problem = (f"{exc}; nothing is done to it until the tag {MARK_TAG} is fixed "
                       "or removed by hand")
    label = (o.provider, o.target, f"{marker.environment}/{marker.workload}")
    manifest = facts.declared.get(label) if facts.declared is not None else None
    owner = facts.owners.get(marker.owner) if facts.owners is not None else None

    # The class, before any quarantine is considered.
    successor: str | None = None
    if facts.declared is not None and manifest is None:
        status, reason = NO_MANIFEST, f"no manifest declares {label[2]} in {o.provider}:{o.target}"
    elif owner is not None and owner.gone:
        successor = owner.successor or rules.fallback_owner.get(marker.environment)
        if successor and successor != marker.owner:
            via = "the directory" if owner.successor else f"cleanup.fallbackOwner[{marker.environment}]"
            status, reason = TRANSFERRED, f"{owner.reason}; {successor} inherits it ({via})"
        else:
            status, reason, successor = OWNER_GONE, owner.reason, None
    else:
        status, reason = ACTIVE, "declared and owned" if facts.declared is not None else "owned"
        if facts.owners is None:
            reason = "declared (owner checks are off)" if facts.declared is not None else \
                "no manifests given and owner checks are off: not judged"
        created = _when(o.extra.get("created"))
        last = facts.last_used.get((o.target, o.name), _when(o.extra.get("lastUsed")))
        if last is not None and facts.now - last > rules.unused_after:
            status, reason = UNUSED, f"last used {format_time(last)}, more than " \
                                     f"{_days(rules.unused_after)} ago"
        elif last is None and created is not None and facts.now - created > rules.unused_after:
            status, reason = UNUSED, f"never used in the {_days(rules.unused_after)} since it was created"
        elif rules.attest_every is not None and facts.attested is not None:
            overdue = _unattested(facts.attested.get(label), marker.owner, created, facts.now,
                                  rules.attest_every)
            if overdue:
                status, reason = UNATTESTED, overdue

    def finding(action: str | None, **kw: Any) -> Finding:
        return Finding(o, status, reason, action, mark, successor=successor, manifest=manifest,
                       problem=problem, **kw)

    if problem is not None:
        return finding(None)
    created = _when(o.extra.get("created"))
    if mark is None and created is not None and facts.now - created < rules.min_age:
        return Finding(o, NEW, f"created {format_time(created)}, less than "
                               f"{format_duration(rules.min_age)} ago: not judged yet (cloud reads lag)",
                       manifest=manifest)
    if status == NO_MANIFEST and marker.retain:
        return Finding(o, status, f"{reason}; deletionPolicy retain: released (our marker is removed, "
                                  "the identity is kept and no longer managed)", DISOWN, mark,
                       manifest=manifest)
    distrust = facts.unbelieved.get((o.provider, o.target, o.name)) if mark is not None else None
    if mark is not None and distrust is not None and status in (NO_MANIFEST, OWNER_GONE):
        # A mark anyone could have written (or a quarantine the tool never finished) does
        # not shorten the grace period: it starts now, enforced by this run.
        return Finding(o, status, f"{reason}; {distrust}", QUARANTINE, mark, successor=successor,
                       manifest=manifest, new_mark=QuarantineMark(
                           facts.now, status, facts.now + rules.grace, mark.keys))
    if mark is not None:
        if status in (ACTIVE, TRANSFERRED):
            return finding(RELEASE)
        if status == UNUSED and mark.reason != "unused":
            return finding(RELEASE)  # its owner or manifest is back; unused is judged afresh next run
        if status == UNATTESTED and (mark.reason != UNATTESTED or not rules.quarantine_unattested):
            # Attested again, or review.onExpiry is back to report: the quarantine goes.
            return finding(RELEASE)
        if status in (NO_MANIFEST, OWNER_GONE):
            if mark.reason in ("unused", UNATTESTED):
                # Quarantined as unused, now orphaned too: the grace period starts now.
                return finding(QUARANTINE, new_mark=QuarantineMark(
                    facts.now, status, facts.now + rules.grace, mark.keys))
            if mark.due(facts.now) and not marker.retain:
                return finding(DELETE)
        return finding(ENFORCE)
    if status in (NO_MANIFEST, OWNER_GONE):
        return finding(QUARANTINE, new_mark=QuarantineMark(facts.now, status, facts.now + rules.grace))
    if status == TRANSFERRED:
        return finding(TRANSFER)
    if status == UNUSED and rules.quarantine_unused and facts.owners is not None:
        # Unused alone never leads to deletion: the mark carries no delete-after.
        return finding(QUARANTINE, new_mark=QuarantineMark(facts.now, "unused", None))
    if status == UNATTESTED and rules.quarantine_unattested and facts.owners is not None:
        # Like unused: an overdue attestation never leads to deletion (no delete-after);
        # an attestation releases it at the next run.
        return finding(QUARANTINE, new_mark=QuarantineMark(facts.now, UNATTESTED, None))
    return finding(None)


def _unattested(last: tuple[str, datetime] | None, owner: str, created: datetime | None,
                now: datetime, every: timedelta) -> str | None:
    """Why the identity's attestation is overdue, or None when it is not. A workload never
    attested by its current owner counts from its creation (when the cloud says)."""
    if last is not None and last[0] == owner:
        if now - last[1] <= every:
            return None
        return (f"last attested {format_time(last[1])}, more than {_days(every)} ago "
                "(review.every); its owner attests with `workload-ids attest`")
    if created is not None and now - created <= every:
        return None
    since = (f"in the {_days(every)} since it was created" if created is not None
             else "(its creation time is unknown)")
    previous = f" by {owner} (attested for {last[0]} before)" if last is not None else ""
    return (f"never attested{previous} {since} (review.every); its owner attests with "
            "`workload-ids attest`")


def _days(value: timedelta) -> str:
    return f"{value.days}d" if value.days else str(value)
