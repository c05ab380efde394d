"""What every secret store checks before a key goes into a secret: that the secret is
ours, for this workload. A secret is writable by more people than the tool (anyone with
``secretsmanager:CreateSecret`` may pre-create one at our name), so its marker is
compared with the workload's before anything is issued."""

from __future__ import annotations

from collections.abc import Mapping


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
