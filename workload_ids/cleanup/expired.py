"""Time-bound grants past their end that a declared workload's identity still holds.

AWS and GCP stop honouring such a grant by their own condition; Azure role assignments have
none, so the grant works until a run removes it. ``apply`` does (an expired entry compiles to
nothing); ``cleanup`` does too, so a scheduled cleanup keeps the end even where nobody runs
apply. Cleanup never applies a manifest's other changes: a workload whose plan would add,
change or create anything besides the removal is held (reported) for apply, which a person
reviews.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..calls import CallSeam
from ..config import Config
from ..model import Change, CompiledWorkload

# What removing an expired entry's grants plans as, on each cloud.
_REMOVALS = frozenset({"update-permissions", "update-project-policy", "update-roles",
                       "update-resource-policies", "update-access"})


def _widens(value: Any) -> bool:
    """Whether a change's details add or change anything (a non-empty ``added`` or
    ``changed`` at any depth)."""
    if isinstance(value, dict):
        return bool(value.get("added")) or bool(value.get("changed")) or any(
            _widens(v) for v in value.values())
    return False


def _removal_only(changes: Sequence[Change]) -> bool:
    return all(c.action in _REMOVALS and not _widens(dict(c.details)) for c in changes)


def end_expired(compiled: Sequence[CompiledWorkload], config: Config, seam: CallSeam, *,
                apply: bool) -> list[dict[str, Any]]:
    """The declared workloads that still hold grants of expired entries: ``pending``
    (removed by ``--apply``), ``removed``, ``failed`` (with the error), or ``held`` (the
    manifest has other unapplied changes: run apply)."""
    from ..apply import apply_plan
    from ..errors import WorkloadIdsError
    from ..plan import build_plan
    due = [cw for cw in compiled if cw.expired and not cw.observe]
    if not due:
        return []
    try:
        plan = build_plan(due, config, seam, fleet=False)
    except WorkloadIdsError as exc:
        # What apply would refuse too (a conflict, a missing identity provider): said, and
        # left to apply, whose message tells what to do.
        return [{"workload": cw.label, "provider": cw.provider, "target": cw.target,
                 "expired": [e.as_json() for e in cw.expired], "status": "held",
                 "reason": f"cannot be planned ({str(exc).splitlines()[0]}): run `workload-ids plan`"}
                for cw in due]
    by_workload: dict[str, list[Change]] = {}
    for change in plan.applicable:
        by_workload.setdefault(change.workload, []).append(change)
    found: list[dict[str, Any]] = []
    for cw in due:
        changes = by_workload.get(cw.label, [])
        if not any(c.details.get("expired") for c in changes):
            continue  # nothing of the expired entries is held any more
        held = not _removal_only(changes)
        found.append({"workload": cw.label, "provider": cw.provider, "target": cw.target,
                      "expired": [e.as_json() for e in cw.expired],
                      "status": "held" if held else "pending",
                      **({"reason": "the manifest has other unapplied changes: run "
                                    "`workload-ids apply`, which removes the expired grants too"}
                         if held else {})})
    ready = {f["workload"] for f in found if f["status"] == "pending"}
    if not apply or not ready:
        return found
    result = apply_plan(replace(plan, changes=[c for c in plan.changes if c.workload in ready]),
                        config=config)
    outcome = {r.workload: r for r in result.results}
    for f in found:
        if f["workload"] in ready:
            error = outcome[f["workload"]].error if f["workload"] in outcome else None
            f["status"] = "failed" if error else "removed"
            if error:
                f["error"] = error
    return found


def expired_lines(found: Sequence[dict[str, Any]], applied: bool) -> list[str]:
    """The report's lines: one per workload, naming each expired entry and its end."""
    fate = {"pending": "removed by --apply" if not applied else "pending",
            "removed": "removed", "held": "held", "failed": "failed"}
    lines: list[str] = []
    for f in found:
        ends = ", ".join(f"entry {e['entry']} expired at {e['expires']}" for e in f["expired"])
        tail = f": {f['reason']}" if f.get("reason") else f": {f['error']}" if f.get("error") else ""
        lines.append(f"expired grant: {f['workload']} ({f['provider']} {f['target']}) still holds "
                     f"{ends} ({fate[f['status']]}){tail}")
    return lines
