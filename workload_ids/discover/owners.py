"""Who owns an identity discover found: our marker's owner when the identity is provably
ours, else the first of ``discover.ownerTags`` its tags (labels) carry; then, when the
config names an owner directory, whether the directory knows that owner as active.

A marker tag copied onto an identity we did not make (``managed`` False) names no owner:
anyone allowed to tag an identity could otherwise claim it for a team.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..discovered import DiscoveredIdentity
from ..model import TAG_OWNER

if TYPE_CHECKING:
    from ..owners.interface import OwnerDirectory


@dataclass(frozen=True, slots=True)
class Ownership:
    """An identity's owner and where it came from, and why it counts as having none."""

    owner: str | None
    source: str | None  # "marker", "tag owner", "directory" (a successor it names)
    problem: str | None = None  # set: the no-owner finding's message


def owner_of(identity: DiscoveredIdentity, owner_tags: Iterable[str]) -> Ownership:
    """The owner from the marker or the tags alone (no directory)."""
    if identity.managed and identity.tags.get(TAG_OWNER):
        return Ownership(identity.tags[TAG_OWNER], "marker")
    tags = {k: v for k, v in identity.tags.items() if v.strip()}
    lowered = {k.lower(): k for k in tags}
    wanted = list(owner_tags)
    for key in wanted:
        # Tag keys are case-sensitive on AWS and Azure, but Owner and owner mean one thing.
        found = key if key in tags else lowered.get(key.lower())
        if found is not None:
            return Ownership(tags[found].strip(), f"tag {found}")
    return Ownership(None, None, f"no owner: none of the tags {', '.join(wanted) or '(none configured)'} "
                                 "(discover.ownerTags) and no workload-ids marker")


def check_directory(ownerships: Mapping[str, Ownership], directory: OwnerDirectory) -> dict[str, Ownership]:
    """Each identity's ownership (by identity id) after asking the directory about every
    owner once. A gone owner with an active successor is reported with the successor
    (source ``directory``) and still found: the identity needs a person to move it."""
    from ..owners.interface import owner_status
    ids = {o.owner for o in ownerships.values() if o.owner}
    status = owner_status(directory, ids)
    out: dict[str, Ownership] = {}
    for key, o in ownerships.items():
        answer = status.get(o.owner) if o.owner else None
        if answer is None or not answer.gone:
            out[key] = o
            continue
        said = f"owner {o.owner} (from {o.source}): {answer.reason} ({directory.name})"
        if answer.successor:
            out[key] = Ownership(answer.successor, "directory",
                                 f"{said}; the directory names {answer.successor} as successor")
        else:
            out[key] = replace(o, problem=said)
    return out
