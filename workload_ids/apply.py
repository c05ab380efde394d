"""Carry out a plan through the providers. Idempotent: a rerun after a crash at any call
reads the cloud again and finishes what is missing."""

from __future__ import annotations

import concurrent.futures
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from .audit import auditor_for
from .config import Config
from .durations import parse_duration
from .errors import UserError, WorkloadIdsError
from .keys.lease import HeldLock, LockBusy, hold
from .keys.lifecycle import KeyReport, lifecycle
from .model import Change
from .plan import Plan, is_observe_only, refuse_breaking
from .providers.interface import Backends, Holder


@dataclass
class WorkloadResult:
    """What apply did for one workload, and what a deployment needs from it."""

    workload: str
    provider: str
    identity: str
    outputs: dict[str, str]
    applied: list[str] = field(default_factory=list)
    error: str | None = None
    busy: bool = False  # another run held the workload's key lock: nothing changed, retry
    key: KeyReport | None = None  # when a key was issued or recovered
    trace: str | None = None  # where an unexpected failure came from, for --verbose
    not_applied: int = 0  # drift of an observe-mode workload: reported, never applied

    def as_json(self) -> dict[str, object]:
        """The workload's outcome as ``apply --format json`` prints it (``key`` only in key mode)."""
        doc: dict[str, object] = {"workload": self.workload, "provider": self.provider,
                                  "identity": self.identity, "applied": self.applied,
                                  "outputs": self.outputs, "error": self.error, "busy": self.busy}
        if self.key is not None:
            doc["key"] = self.key.as_json()
        if self.not_applied:
            doc["observeOnly"] = self.not_applied
        return doc


@dataclass
class ApplyResult:
    """Every workload's result; ``ok`` when none failed."""

    results: list[WorkloadResult]
    calls: int = 0

    @property
    def ok(self) -> bool:
        """True when no workload failed (busy ones count as failed: they set ``error``)."""
        return all(r.error is None for r in self.results)

    @property
    def only_busy(self) -> bool:
        """Every failure was a workload another run was changing (exit code 4: retry)."""
        failed = [r for r in self.results if r.error is not None]
        return bool(failed) and all(r.busy for r in failed)

    def as_json(self) -> dict[str, object]:
        """The run as ``apply --format json`` prints it, with a summary of counts and API calls."""
        return {"results": [r.as_json() for r in self.results],
                "summary": {"workloads": len(self.results),
                            "changed": sum(1 for r in self.results if r.applied),
                            "failed": sum(1 for r in self.results if r.error),
                            "busy": sum(1 for r in self.results if r.busy),
                            "apiCalls": self.calls}}


KEY_ACTIONS = ("issue-key", "recover-keys")


def apply_plan(plan: Plan, *, concurrency: int = 8,
               progress: Callable[[int, int], None] | None = None,
               config: Config | None = None, accept_breaking: bool = False) -> ApplyResult:
    """Apply every change of ``plan``. Workloads run concurrently (bounded); the changes of
    one workload run in plan order. A failing workload does not stop the others. With
    ``guardrails.refuseRemovingUsedAccess`` a plan that removes used access is refused
    (GuardrailError, nothing changed) unless ``accept_breaking``."""
    config = config or plan.config
    if config.guardrails.refuseRemovingUsedAccess and not accept_breaking:
        refuse_breaking(plan)
    seam = plan.clouds.seam
    auditor = auditor_for(config, "apply", seam)
    seam_start = seam.stats.total
    by_workload: dict[str, list[Change]] = {}
    # Observe-mode workloads: their drift is reported by the plan and never applied, not
    # even the marker (the identity stays exactly as its owners keep it).
    applicable = plan.applicable
    for change in applicable:
        by_workload.setdefault(change.workload, []).append(change)
    # Confirm the credentials reach each target before the first change there.
    for provider_name, target in sorted({(c.provider, c.target) for c in applicable}):
        auditor.callers[(provider_name, target)] = plan.clouds[provider_name].identities.verify_target(target)
    # Outputs of an unchanged identity come from what the plan read; a changed one's are
    # taken once its changes are done (a new identity's ids exist only then).
    results = {d.workload.label: WorkloadResult(
        workload=d.workload.label, provider=d.workload.provider, identity=d.name,
        outputs=plan.clouds[d.workload.provider].identities.outputs(d, plan.observed.get(d.workload.label)))
        for d in plan.desired}
    for change in plan.changes:
        if is_observe_only(change):
            results[change.workload].not_applied += 1

    def run(workload: str, changes: list[Change]) -> None:
        result = results[workload]
        cloud = plan.clouds[changes[0].provider]
        change = changes[0]
        try:
            for change in changes:
                if change.action in KEY_ACTIONS:
                    assert change.desired is not None
                    report = lifecycle(change.desired, cloud, auditor,
                                       command="apply").advance(issue_only=True)
                    result.busy = report.busy
                    if report.error:
                        raise UserError(report.error)
                    result.key = report
                elif change.exclusive:
                    with _workload_lock(cloud, change):
                        cloud.identities.apply(change)
                else:
                    cloud.identities.apply(change)
                if change.action not in KEY_ACTIONS:
                    auditor.record(workload=change.workload, provider=change.provider,
                                   target=change.target, identity=change.identity,
                                   action=change.action, detail=_recorded(change))
                result.applied.append(change.action)
        except WorkloadIdsError as exc:
            result.busy = result.busy or isinstance(exc, LockBusy)
            result.error = exc.diagnostics()
        except Exception as exc:  # one workload's surprise must not hide the others' results
            result.error = (f"unexpected {type(exc).__name__}: {exc} (rerun converges; report it "
                            "with what --verbose prints)")
            result.trace = traceback.format_exc()
        if result.error:
            auditor.record(workload=change.workload, provider=change.provider, target=change.target,
                           identity=change.identity, action=change.action,
                           result=f"error: {result.error.splitlines()[0]}")
        elif changes[0].desired is not None and changes[0].action == "create":
            result.outputs = cloud.identities.outputs(changes[0].desired, None)

    done = 0
    total = len(by_workload)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(run, w, cs) for w, cs in by_workload.items()]
        for future in concurrent.futures.as_completed(futures):
            future.result()
            done += 1
            if progress:
                progress(done, total)
    return ApplyResult(results=list(results.values()), calls=seam.stats.total - seam_start)


def _workload_lock(cloud: Backends, change: Change) -> AbstractContextManager[HeldLock]:
    """The workload's lock, held around a change the cloud cannot make safely twice at
    once (see :attr:`~workload_ids.model.Change.exclusive`)."""
    assert change.desired is not None
    w = change.desired.workload
    return hold(cloud.lock_for(w.target), w.secret_name, Holder.this_process("apply"),
                change.desired.tags, workload=w.label,
                wait=parse_duration(cloud.config.credentials.lockTimeout), sleep=cloud.seam.sleep)


# Changes that write the identity's owner marker: their records name the owner and the
# source written, so the audit trail, not a tag anyone with tagging rights can edit, says
# whose an identity is and where it is declared (plan refuses a manifest that would take
# it over, even when its marker's MAC was stripped).
_WRITES_OWNER = frozenset({"create", "update-tags", "update-marker"})  # update-marker: GCP, Azure


def _recorded(change: Change) -> dict[str, Any]:
    if change.action in _WRITES_OWNER and change.desired is not None:
        marker = change.desired.workload.marker
        return {**change.details, "owner": marker.owner,
                **({"source": marker.source} if marker.source else {})}
    return dict(change.details)
