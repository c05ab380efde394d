"""The secret store interface: where an issued key goes, and nowhere else.

Each stored version is named after the key it holds, so which keys we issued, and which
is current, is read from version metadata alone: no secret value is read to plan. Two
marks live in the store's metadata beside the versions, so they survive the loss of the
machine that ran the command: the rotation journal (written before a key is created)
and the retirement of the previous key (when its grace period started).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..model import IssuedKey, SecretValue, StoredSecret


def foreign_marker(name: str, tags: Mapping[str, str], wanted: Mapping[str, str]) -> str | None:
    """Why ``tags`` (a secret's) are not our marker for the workload ``wanted`` names; None
    if they are."""
    from ..model import MANAGED_BY, TAG_ENVIRONMENT, TAG_MANAGED_BY, TAG_WORKLOAD
    if tags.get(TAG_MANAGED_BY) != MANAGED_BY:
        return f"secret {name} was not made by workload-ids (it has no {TAG_MANAGED_BY} marker)"
    for key in (TAG_WORKLOAD, TAG_ENVIRONMENT):
        if tags.get(key) != wanted.get(key):
            return (f"secret {name} belongs to another workload ({key} is "
                    f"{tags.get(key)!r}, not {wanted.get(key)!r})")
    return None


def refuse_secret(name: str, why: str) -> Exception:
    """The refusal for a secret we will not put a key into; nothing was issued."""
    from ..errors import ConflictError
    return ConflictError(
        f"{why}; no key was issued, because whoever set it up could read the key",
        f"if nothing uses secret {name}, delete it (and let it be purged) and rerun, so "
        "workload-ids creates it locked down; if something does, move it to another name or "
        "set credentials.secretName in workload-ids.yaml to a name nobody else can create")


class SecretStore(Protocol):
    """One secret per workload; versions named after the key they hold."""

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
