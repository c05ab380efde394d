"""The owner directory interface, and the one rule for "owner gone"."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

# How far a chain of successors is followed (a -> b -> c) before giving up.
MAX_SUCCESSION = 5


@dataclass(frozen=True, slots=True)
class Owner:
    """One person or group as a directory knows it."""

    id: str
    kind: str  # person | group
    active: bool
    members: tuple[str, ...] = ()
    successor: str | None = None


@dataclass(frozen=True, slots=True)
class OwnerStatus:
    """Whether an owner is still here, why not, and who inherits if they are gone."""

    id: str
    gone: bool
    reason: str
    successor: str | None = None


class OwnerDirectory(Protocol):
    """Looks owners up by id (a group's id, or a person's user name)."""

    name: str

    def owners(self, ids: Iterable[str]) -> dict[str, Owner | None]:
        """Each id's owner record, or None when the directory does not know it. Raises
        :class:`~workload_ids.errors.CloudError`-like errors when the directory cannot be
        reached: an unreachable directory never counts as "owner gone"."""

    def members(self, group: Owner) -> dict[str, Owner | None]:
        """The records of a group's members."""


def owner_status(directory: OwnerDirectory, ids: Iterable[str]) -> dict[str, OwnerStatus]:
    """Judge every owner id: gone when missing, inactive, or a group with no active member;
    for gone owners, the first active successor along the chain."""
    wanted = sorted(set(ids))
    records = directory.owners(wanted)
    cache: dict[str, Owner | None] = dict(records)

    def lookup(owner_id: str) -> Owner | None:
        if owner_id not in cache:
            cache.update(directory.owners([owner_id]))
        return cache.get(owner_id)

    def judge(owner: Owner | None, owner_id: str) -> tuple[bool, str]:
        if owner is None:
            return True, f"{owner_id} is not in the owner directory"
        if not owner.active:
            return True, f"{owner.kind} {owner_id} is inactive"
        if owner.kind == "group":
            members = directory.members(owner)
            if not any(m is not None and m.active for m in members.values()):
                return True, f"group {owner_id} has no active member"
        return False, "active"

    out: dict[str, OwnerStatus] = {}
    for owner_id in wanted:
        gone, reason = judge(cache.get(owner_id), owner_id)
        successor = None
        if gone:
            current = cache.get(owner_id)
            seen = {owner_id}
            for _ in range(MAX_SUCCESSION):
                nxt = current.successor if current else None
                if not nxt or nxt in seen:
                    break
                seen.add(nxt)
                candidate = lookup(nxt)
                if not judge(candidate, nxt)[0]:
                    successor = nxt
                    break
                current = candidate
        out[owner_id] = OwnerStatus(owner_id, gone, reason, successor)
    return out


@dataclass(frozen=True, slots=True)
class Membership:
    """Whether ``person`` may speak for ``owner``: None as ``refused`` when they may, else
    why not, in words that say what to fix."""

    owner: str
    person: str
    refused: str | None


def membership(directory: OwnerDirectory, owner_id: str, person: str) -> Membership:
    """Whether ``person`` is an active member of the group ``owner_id`` (or is that
    person, for a workload owned by one person). Direct members only: a nested group's
    members do not speak for the outer group. User names compare case-insensitively, as
    SCIM directories match them; an unreachable directory raises, never answers no."""
    owner = directory.owners([owner_id]).get(owner_id)
    fix = (f"ask an active member of {owner_id} to attest, or add {person} to {owner_id} in the "
           f"owner directory ({directory.name})")
    if owner is None:
        return Membership(owner_id, person, f"the owner {owner_id} is not in the owner directory "
                                            f"({directory.name}); fix the directory or the "
                                            "workload's owner")
    if not owner.active:
        return Membership(owner_id, person, f"the owner {owner.kind} {owner_id} is inactive; "
                                            "cleanup hands its workloads to a successor first")
    if owner.kind == "person":
        if owner.id.casefold() == person.casefold():
            return Membership(owner_id, person, None)
        return Membership(owner_id, person, f"{person} is not {owner_id}, the person who owns it; "
                                            f"ask {owner_id} to attest, or make the owner a group "
                                            f"{person} is in")
    members = directory.members(owner)
    found = [m for m in members.values() if m is not None and m.kind == "person"
             and m.id.casefold() == person.casefold()]
    if not found:
        return Membership(owner_id, person, f"{person} is not a member of {owner_id}; {fix}")
    if not any(m.active for m in found):
        return Membership(owner_id, person, f"{person} is inactive in the owner directory; {fix}")
    return Membership(owner_id, person, None)
