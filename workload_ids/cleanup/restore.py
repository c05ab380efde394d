"""``workload-ids restore IDENTITY``: recreate a deleted role or user from the restore
bundle cleanup wrote to the audit log before deleting it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..audit import auditor_for, open_store
from ..calls import CallSeam
from ..clouds import connect
from ..config import Config
from ..errors import Diagnostic, InputErrors, Position, UserError
from ..model import Marker
from .bundle_policy import bundle_problems
from .workflow import BUNDLE_ACTION


@dataclass
class RestoreResult:
    """What restoring one identity did (``steps``) and what the user should know (``notes``)."""
    identity: str
    kind: str
    target: str
    workload: str
    steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The result as ``restore --format json`` prints it."""
        return {"identity": self.identity, "kind": self.kind, "target": self.target,
                "workload": self.workload, "steps": self.steps, "notes": self.notes}


def find_bundle(config: Config, identity: str, target: str | None = None) -> dict[str, Any]:
    """The bundle of ``identity``'s latest deletion: of its latest quarantine episode, the
    first bundle written (a rerun after a crash never replaces it)."""
    return _find(config, identity, target)[1]


def _find(config: Config, identity: str, target: str | None,
          seam: CallSeam | None = None) -> tuple[Position, dict[str, Any]]:
    """:func:`find_bundle`, with where the record is in the trail (its 1-based number,
    the line of a JSON Lines file). A cloud sink is read through ``seam``."""
    store = open_store(config, seam)
    if store is None:
        raise UserError("no audit log is configured, so there are no restore bundles; "
                        "set audit.path in workload-ids.yaml")
    if store.version() is None:
        raise UserError(f"audit log {store.where} does not exist, so there are no restore bundles")
    check = store.verify()
    if not check.ok:
        raise UserError(f"audit log {store.where} fails verification at record {check.bad_line} "
                        f"({check.problem}); its bundles cannot be trusted. Run "
                        "`workload-ids audit verify` and restore the log from a copy first")
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    bundled: set[str] = set()
    for number, record in enumerate(store.records(), 1):
        if record.get("action") == BUNDLE_ACTION:
            bundled.add(str(record.get("identity")))
        if record.get("action") != BUNDLE_ACTION or record.get("identity") != identity:
            continue
        if target is not None and record.get("target") != target:
            continue
        since = str((record.get("detail") or {}).get("quarantinedSince"))
        found.setdefault(since, (number, record))
    if not found:
        where = f" in {target}" if target else ""
        import difflib
        close = difflib.get_close_matches(identity, sorted(bundled), n=1)
        raise UserError(f"no restore bundle for {identity}{where} in {store.where}; only identities that "
                        "cleanup deleted can be restored"
                        + (f"; did you mean {close[0]}?" if close else
                           f" ({len(bundled)} have a bundle there" + (f": {', '.join(sorted(bundled)[:5])}"
                                                                     if bundled else "") + ")"))
    targets = {str(r.get("target")) for _, r in found.values()}
    if target is None and len(targets) > 1:
        raise UserError(f"{identity} was deleted in several accounts ({', '.join(sorted(targets))}); "
                        "pass --target ACCOUNT")
    number, latest = found[max(found)]
    before = latest.get("before")
    if not isinstance(before, dict):
        raise InputErrors([Diagnostic(Position(store.where, number), f"the restore bundle of {identity} "
                                      "holds no identity; nothing was restored")])
    # The record is found by its identity and target; the bundle says what is created where.
    for key, want in (("name", identity), ("target", latest.get("target")),
                      ("provider", latest.get("provider"))):
        if before.get(key) != want:
            raise InputErrors([Diagnostic(
                Position(store.where, number), f"the restore bundle of {identity} has {key} "
                f"{before.get(key)!r}, but its record names {want!r}: workload-ids never writes "
                "such a record; nothing was restored. Find out who wrote it", severity="guardrail")])
    return Position(store.where, number), before


def restore(identity: str, config: Config, seam: CallSeam, *, target: str | None = None) -> RestoreResult:
    """Recreate ``identity`` from its bundle and record it in the audit log."""
    where, bundle = _find(config, identity, target, seam)
    problems = bundle_problems(config, bundle)
    if problems:
        # Before any call: the bundle is refused whole, so nothing of it is created.
        raise InputErrors([Diagnostic(where, f"restore bundle of {identity}: {p}", severity="guardrail")
                           for p in problems] + [Diagnostic(
            where, f"the restore bundle of {identity} holds what workload-ids would not grant, so "
            "nothing was restored. Find out who wrote that record (`workload-ids audit verify`, "
            "the trail's history); to bring the workload back, apply its manifest "
            "(`workload-ids apply MANIFEST`)", severity="guardrail")])
    cloud = connect(str(bundle["provider"]), config, seam)
    tags = dict(bundle.get("tags") or {})
    # The marker is in the tags (AWS, Azure) or in the description (GCP service accounts).
    marker = Marker.from_tags(tags) or Marker.from_text(str(bundle.get("description", "")))
    workload = f"{marker.environment}/{marker.workload}" if marker else "?/?"
    result = RestoreResult(identity, str(bundle["kind"]), str(bundle["target"]), workload)
    auditor = auditor_for(config, "restore", seam)
    auditor.callers[(str(bundle["provider"]), result.target)] = cloud.identities.verify_target(result.target)
    result.steps = cloud.leavers.restore(bundle)
    auditor.record(
        workload=workload, provider=str(bundle["provider"]), target=result.target, identity=identity,
        action="restore", before=None, after=bundle, detail={"steps": result.steps})
    if result.kind == "user":
        result.notes.append("access keys cannot be restored (AWS never shows a secret twice); issue a "
                            "new one now with `workload-ids restore --issue-key MANIFEST`, or later with "
                            f"`workload-ids rotate --now {workload} MANIFEST`; "
                            "either delivers it to the secret store")
    result.notes.append("the next cleanup judges it afresh: if its owner is still gone or no manifest "
                        "declares it, it is quarantined again; fix the owner or the manifest first")
    return result
