"""``workload-ids cleanup``: read every identity we manage (one batch per account), judge
each, and (with ``apply``) act in reversible steps: transfer, quarantine, release, and
deletion after the grace period with a restore bundle written to the audit log first.

Everything is read and judged before anything is changed, so an unreachable owner
directory, a bad manifest or the blast-radius guard stops the run with nothing done.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import clock
from ..audit import Auditor, auditor_for, open_store
from ..calls import CallSeam
from ..clouds import Clouds
from ..config import Config
from ..errors import GuardrailError, UserError, WorkloadIdsError, one_line
from ..model import ADOPTED_BEFORE, MARK_TAG, WITHHELD_GRANTS, MarkError, ObservedIdentity, decode_mark
from ..provenance import WITHHOLD_ACTION, audit_trail, quarantine_believed
from ..providers.interface import LeaverBackend
from ..targets import Shard
from .judge import (
    CLASSES,
    DELETE,
    DESTRUCTIVE,
    DISOWN,
    ENFORCE,
    QUARANTINE,
    RELEASE,
    TRANSFER,
    TRANSFERRED,
    Facts,
    Finding,
    Rules,
    judge,
)

BUNDLE_ACTION = "restore-bundle"


@dataclass
class ActionResult:
    """What one action did."""

    finding: Finding
    action: str
    ok: bool = True
    error: str | None = None
    steps: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The action's outcome as ``cleanup --format json`` prints it."""
        return {"identity": self.finding.identity.name, "target": self.finding.identity.target,
                "action": self.action, "ok": self.ok, "error": self.error, "steps": self.steps}


@dataclass
class CleanupReport:
    """The judgement of every identity, and what ``--apply`` did about it."""

    findings: list[Finding]
    owner_checks: bool
    manifest_checks: bool
    applied: bool = False
    refusal: str | None = None
    results: list[ActionResult] = field(default_factory=list)
    transfers: dict[str, str] = field(default_factory=dict)  # identity -> manifest edit (a diff)
    # Grants of ours naming principals that no longer exist: removed by --apply.
    dead_grants: list[dict[str, str]] = field(default_factory=list)
    calls: int = 0
    notes: list[str] = field(default_factory=list)
    held: int = 0  # due deletions held for want of a durable audit sink
    shard: Shard | None = None  # the part of the targets this dry run judged (--shard I/N)
    # Declared workloads still holding grants of expired time-bound entries (expired.py).
    expired_grants: list[dict[str, Any]] = field(default_factory=list)

    @property
    def actions(self) -> list[Finding]:
        """The findings that call for an action (transfer, quarantine, delete...)."""
        return [f for f in self.findings if f.action]

    @property
    def ok(self) -> bool:
        """True when every action taken succeeded (also when none was taken)."""
        return all(r.ok for r in self.results) and all(
            g["status"] != "failed" for g in self.expired_grants)

    def summary(self) -> dict[str, Any]:
        """Counts per class and per planned action, what was held back or applied, and API calls made."""
        counts = {c: sum(1 for f in self.findings if f.status == c) for c in CLASSES}
        planned = {a: sum(1 for f in self.findings if f.action == a)
                   for a in (TRANSFER, QUARANTINE, ENFORCE, RELEASE, DELETE, DISOWN)}
        return {"identities": len(self.findings), "classes": counts, "actions": planned,
                "held": self.held, "applied": self.applied,
                "failed": sum(1 for r in self.results if not r.ok), "apiCalls": self.calls}

    def as_json(self) -> dict[str, Any]:
        """The whole report as ``cleanup --format json`` prints it."""
        return {
            "identities": [f.as_json() for f in self.findings],
            "results": [r.as_json() for r in self.results],
            "manifestEdits": self.transfers,
            "deadGrants": self.dead_grants,
            "expiredGrants": self.expired_grants,
            "ownerChecks": self.owner_checks, "manifestChecks": self.manifest_checks,
            "refusal": self.refusal, "notes": self.notes, "clock": clock.notice(),
            "shard": self.shard.as_json() if self.shard else None,
            "summary": self.summary(),
        }


def cleanup(paths: Sequence[str | Path], config: Config, seam: CallSeam, *, apply: bool = False,
            max_actions: int | None = None, provider: str | None = None, targets: Sequence[str] = (),
            progress: Callable[[int, int], None] | None = None,
            delete_with_local_audit: bool = False, shard: Shard | None = None) -> CleanupReport:
    """See the module docstring. Raises before any change when the input is bad, the
    owner directory cannot be read, or the guard refuses (GuardrailError, exit 3).

    Deletions are held (reported, not done) while the audit trail is not durable, unless
    ``delete_with_local_audit``: see :func:`_hold_deletions`."""
    from ..owners import open_directory
    from ..owners.interface import owner_status
    notes: list[str] = []
    declared = None
    declared_targets: set[tuple[str, str]] = set()
    time_bound: list[Any] = []
    if paths:
        from ..validate import validate
        checked = validate(paths, config)
        checked.raise_for_errors()
        declared = {(c.provider, c.target, f"{c.environment}/{c.name}"): c for c in checked.compiled}
        declared_targets = {(c.provider, c.target) for c in checked.compiled}
        time_bound = [c for c in checked.compiled if c.expired]
    else:
        notes.append("no manifests given: the no-manifest check is off (pass the manifest folder "
                     "to find decommissioned workloads)")
    if shard is not None and apply:
        # The blast-radius limit (cleanup.maxActions) and the held deletions are judged over
        # every target of one run: N shards applying at once would each get the whole limit.
        raise GuardrailError(f"cleanup --apply reads every target; --shard {shard.index}/{shard.count} is "
                        "for a dry run (a report per worker). Run `workload-ids cleanup --apply` "
                        "once, unsharded, so cleanup.maxActions bounds the whole run")
    clouds = Clouds(config, seam)
    from ..providers import CLOUDS
    from ..targets import fan_out, prove_readable, read_scopes
    unavailable = sorted({name for name, _ in declared_targets if name not in CLOUDS})
    if unavailable:
        # A manifest folder may hold workloads of clouds this version cannot act on yet:
        # say so and judge the rest, rather than refusing the whole run.
        skipped = sorted(t for n, t in declared_targets if n in unavailable)
        notes.append(f"the {', '.join(unavailable)} backend is not available in this version: "
                     f"{', '.join(skipped)} not read")
        declared_targets = {(n, t) for n, t in declared_targets if n in CLOUDS}
        if declared is not None:
            declared = {k: v for k, v in declared.items() if k[0] in CLOUDS}
    if provider is not None and provider not in CLOUDS:
        raise UserError(f"the {provider} backend is not available in this version of workload-ids; "
                        f"cleanup supports {', '.join(sorted(CLOUDS))}")
    judged = read_scopes(config, clouds, provider=provider, targets=targets, declared=declared_targets,
                         shard=shard).only(CLOUDS)
    notes.extend(judged.notes)
    # Before any read that could be mistaken for "nothing there": a configured or audited
    # target we cannot reach stops the run here.
    prove_readable(judged, clouds)

    def observe(name: str, target: str) -> tuple[list[tuple[LeaverBackend, ObservedIdentity]],
                                                 list[dict[str, str]]]:
        # A dry run judges by markers, marks and use; only deletions (restore bundles)
        # need every setting, so only an applying run pays for that second walk.
        cloud = clouds[name]
        seen = [(cloud.leavers, o) for o in cloud.identities.observe_scope(target, settings=apply)]
        return seen, [{"provider": name, "target": target, **g} for g in cloud.leavers.dead_grants(target)]
    observed: list[tuple[LeaverBackend, ObservedIdentity]] = []
    dead: list[dict[str, str]] = []
    for _, (seen, grants) in fan_out(config, judged.read, observe):
        observed.extend(seen)
        dead.extend(grants)

    # Roles beside an identity that carry a copied marker (GCP): never acted on, but said.
    notes.extend(f"custom role {rid} in {o.target} (at the naming of {o.name}) is forged ({why}): "
                 "left alone; find out who made it" for _, o in observed
                 for rid, why in (o.extra.get("forgedRoles") or {}).items())
    directory = open_directory(config)
    owners = None
    if directory is None:
        notes.append("owner checks are off: no owners source in the config (see README: owners)")
    else:
        ids = {o.marker.owner for _, o in observed if o.marker is not None and not o.forged}
        owners = owner_status(directory, ids)
    last_used = {(o.target, o.name): b.last_used(o) for b, o in observed
                 if o.marker is not None and o.kind != "role"}
    facts = Facts(clock.now(), declared, owners, last_used, _unbelieved(observed, config),
                  _attested(config, clouds))
    rules = Rules.from_config(config.cleanup, config.review)
    findings: list[Finding] = []
    for b, o in observed:
        f = judge(o, facts, rules)
        if f.action == ENFORCE and f.mark is not None and b.quarantine_enforced(o, f.mark) is not False:
            f = Finding(o, f.status, f.reason, None, f.mark, successor=f.successor,
                        manifest=f.manifest, problem=f.problem)
        findings.append(f)
    findings, held = _hold_deletions(findings, config, delete_with_local_audit, seam)
    if held:
        notes.append(f"{held} deletion(s) held: {DELETION_HELD}")
    findings.sort(key=lambda f: (CLASSES.index(f.status), f.identity.target, f.identity.name))
    report = CleanupReport(findings, owners is not None, declared is not None, notes=notes,
                           dead_grants=dead, held=held, shard=shard)
    report.transfers = {f.identity.name: _manifest_edit(f) for f in findings
                        if f.status == TRANSFERRED and f.manifest is not None and f.successor}
    report.refusal = _blast_radius(findings, config, max_actions)
    from .expired import end_expired
    time_bound = [c for c in time_bound if c.provider in CLOUDS and shard is None]
    if not apply:
        report.expired_grants = end_expired(time_bound, config, seam, apply=False)
        report.calls = seam.stats.total
        return report
    if report.refusal:
        raise GuardrailError(report.refusal)
    if any(f.action == DELETE for f in findings) and open_store(config, seam) is None:
        raise UserError("cleanup would delete identities, but no audit log is configured to keep "
                        "their restore bundles; set audit.path in workload-ids.yaml, then rerun")
    if any(f.action == DISOWN for f in findings) and open_store(config, seam) is None:
        # Once the marker is gone the audit trail is the only record that the tool let go.
        raise UserError("cleanup would release identities (deletionPolicy retain), but no audit "
                        "log is configured to record it; set audit.path in workload-ids.yaml, "
                        "then rerun; nothing was changed")
    report.applied = True
    auditor = auditor_for(config, "cleanup", seam)
    for name, target in sorted({(f.identity.provider, f.identity.target) for f in findings if f.action}):
        # Credentials must reach the account before anything there changes.
        auditor.callers[(name, target)] = clouds[name].identities.verify_target(target)
    report.results = _act(findings, clouds, auditor, config, seam, progress)
    for (name, target), grants in _by_scope(dead).items():
        clouds[name].leavers.remove_dead_grants(target, grants)
        for grant in grants:
            auditor.record(workload="-", provider=name, target=target, identity=grant["member"],
                           action="remove-dead-grant", before=grant, after=None)
    # Time-bound grants past their end (Azure holds no time condition): removed as apply
    # would, only where that is all the workload's plan does.
    report.expired_grants = end_expired(time_bound, config, seam, apply=True)
    report.calls = seam.stats.total
    return report


DELETION_HELD = ("deletion needs a durable audit sink (audit.sink in workload-ids.yaml) to keep "
                 "the restore bundle; the local audit file can vanish with the runner, and the "
                 "bundle with it. Set audit.sink, or rerun with --delete-with-local-audit if that "
                 "file is kept safe")


def _hold_deletions(findings: list[Finding], config: Config, local_ok: bool,
                    seam: CallSeam) -> tuple[list[Finding], int]:
    """Turn due deletions into held findings (no action, the reason as ``problem``) when
    the audit trail is a local file and the operator did not accept that: a deleted
    identity comes back only from its restore bundle, and a runner's or pod's file is
    gone when the job ends. Everything reversible (quarantine, release, transfer) still
    runs. A config with no trail at all is refused later, as before."""
    store = open_store(config, seam)
    if store is None or store.durable or local_ok:
        return findings, 0
    out: list[Finding] = []
    held = 0
    for f in findings:
        if f.action == DELETE:
            held += 1
            f = Finding(f.identity, f.status, f.reason, None, f.mark, successor=f.successor,
                        manifest=f.manifest, problem=DELETION_HELD)
        out.append(f)
    return out, held


def _unbelieved(observed: list[tuple[LeaverBackend, ObservedIdentity]],
                config: Config) -> dict[tuple[str, str, str], str]:
    """Why each quarantine mark that could lead to a deletion is not believed (see
    :mod:`.provenance`); marks that cannot be read are the judge's to report."""
    trail = audit_trail(config)
    out: dict[tuple[str, str, str], str] = {}
    for b, o in observed:
        if o.marker is None or o.forged or MARK_TAG not in o.tags:
            continue
        try:
            mark = decode_mark(o.tags[MARK_TAG])
        except MarkError:
            continue
        if mark.delete_after is None:
            continue  # an unused mark never leads to deletion
        why = quarantine_believed(o.provider, o.target, o.name, mark, b.quarantine_proven(o, mark), trail)
        if why is not None:
            out[(o.provider, o.target, o.name)] = why
    return out


def _attested(config: Config, clouds: Clouds) -> dict[tuple[str, str, str], tuple[str, datetime]] | None:
    """The owner and time of each workload's last believed attestation (a record without
    a valid MAC never counts); None when review.every does not require attestation."""
    if config.review.every is None:
        return None
    from ..attestation import latest, read_attestations
    return {key: (a.owner, a.at) for key, a in latest(read_attestations(config, clouds)).items()
            if a.at is not None}


def _by_scope(grants: list[dict[str, str]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    out: dict[tuple[str, str], list[dict[str, str]]] = {}
    for g in grants:
        out.setdefault((g["provider"], g["target"]), []).append(g)
    return out


def _blast_radius(findings: list[Finding], config: Config, max_actions: int | None) -> str | None:
    """Refuse bulk quarantine or deletion: more than ``maxActions`` identities, or more
    than ``maxShare`` of those we manage (one action alone is never bulk)."""
    limit = max_actions if max_actions is not None else config.cleanup.maxActions
    managed = sum(1 for f in findings if f.identity.marker is not None and not f.identity.forged)
    acting = [f for f in findings if f.action in DESTRUCTIVE]
    count = len(acting)
    share = config.cleanup.maxShare
    too_many = count > limit
    too_large = count > 1 and count > share * managed
    if not (too_many or too_large):
        return None
    quarantines = sum(1 for f in acting if f.action == QUARANTINE)
    disowned = sum(1 for f in acting if f.action == DISOWN)
    why = (f"more than the limit of {limit} per run" if too_many
           else f"more than {share:.0%} of the {managed} identities workload-ids manages")
    released = f", release {disowned}" if disowned else ""
    return (f"cleanup would quarantine {quarantines}{released} and delete "
            f"{count - quarantines - disowned} identities ({count} in all), {why}; nothing was done. "
            "Check the dry run (`workload-ids cleanup` "
            "without --apply): an owner directory or manifest folder that is wrong or incomplete "
            "makes everything look orphaned. If the list is right, rerun with "
            f"--max-actions {count}" + ("" if not too_large else
                                          f" and cleanup.maxShare of at least {count / managed:.2f}"
                                          " in the config"))


class _Acting:
    """Carries out one finding's action on its cloud's leaver backend and records it.
    Each action is one method, found through :data:`_ACTIONS` by the judge's verdict."""

    def __init__(self, f: Finding, leavers: LeaverBackend, auditor: Auditor,
                 bundles: set[tuple[str, str, str]], config: Config) -> None:
        self.f, self.leavers, self.auditor, self.bundles = f, leavers, auditor, bundles
        self.config = config
        o = f.identity
        assert o.marker is not None
        self.marker = o.marker
        self.result = ActionResult(f, f.action or "")
        self.base = {"workload": f"{o.marker.environment}/{o.marker.workload}", "provider": o.provider,
                     "target": o.target, "identity": o.name}

    def transfer(self) -> None:
        f = self.f
        assert f.successor
        self.leavers.transfer(f.identity, f.successor)
        self.result.steps.append(f"owner {self.marker.owner} -> {f.successor}")
        # apply believes a transfer from this record, never from the tag alone.
        self.auditor.record(**self.base, action="transfer", before={"owner": self.marker.owner},
                            after={"owner": f.successor},
                            detail={"reason": f.reason, "manifestEdit": _manifest_edit(f)})

    def _with_withheld(self, identity: ObservedIdentity) -> ObservedIdentity:
        """``identity`` with the journals of grants its quarantines withheld since its last
        release (from the audit trail), for the provider to give back or bundle."""
        trail = audit_trail(self.config)
        journals = trail.withheld.get((identity.provider, identity.target, identity.name), ()) \
            if trail else ()
        if not journals:
            return identity
        return dataclasses.replace(identity, extra={**identity.extra, WITHHELD_GRANTS: list(journals)})

    def quarantine(self) -> None:
        f = self.f
        wanted = f.new_mark if f.action == QUARANTINE else f.mark  # ENFORCE: the mark as it is
        assert wanted is not None
        identity = f.identity
        journal = self.leavers.grants_to_withhold(identity)
        if journal is not None:
            # Journalled before anything is removed: release and restore give back exactly
            # this, from the trail (a crash after removing them must not lose them).
            self.auditor.record(**self.base, action=WITHHOLD_ACTION, before=journal, after=None,
                                detail={"reason": f.reason})
            identity = dataclasses.replace(identity, extra={**identity.extra, WITHHELD_GRANTS: [journal]})
            grants = journal["grants"]
            kept = "recorded in the audit log: release and restore put them back" if self.auditor.sink \
                else ("no audit log is configured, so nothing puts them back: set audit.path; they were "
                      + "; ".join(f"{g['roleDefinitionId']} at {g['scope']}" for g in grants))
            if grants:
                self.result.steps.append(f"removed {len(grants)} role assignment(s) workload-ids did not "
                                         f"make ({kept})")
            if journal.get("left"):
                self.result.steps.append(f"{len(journal['left'])} role assignment(s) stay, which "
                                         "workload-ids cannot remove: " + "; ".join(journal["left"])
                                         + "; remove them by hand")
        written = self.leavers.quarantine(identity, wanted)
        self.result.steps.append(f"quarantined ({written.reason})")
        self.auditor.record(**self.base, action="quarantine", before=_mark_json(f.mark),
                            after=_mark_json(written), detail={"reason": f.reason})

    def release(self) -> None:
        f = self.f
        self.leavers.release(self._with_withheld(f.identity), f.mark)
        self.result.steps.append("released")
        self.auditor.record(**self.base, action="release", before=_mark_json(f.mark), after=None,
                            detail={"reason": f.reason})
        if f.status == TRANSFERRED and f.successor:
            self.transfer()

    def disown(self) -> None:
        f = self.f
        identity = f.identity
        # What adopt --apply replaced with its marker (GCP keeps the marker in the account's
        # description), from the trail: the provider writes it back.
        trail = audit_trail(self.config)
        before = trail.adopted_descriptions.get((identity.provider, identity.target, identity.name), "") \
            if trail else ""
        if before:
            identity = dataclasses.replace(identity, extra={**identity.extra, ADOPTED_BEFORE: before})
        removed = self.leavers.disown(self._with_withheld(identity), f.mark)
        self.result.steps.extend(removed)
        # What says, once the marker is gone, that the tool let go of it on purpose.
        self.auditor.record(**self.base, action="release-identity", before={
            "owner": self.marker.owner, "deletionPolicy": "retain",
            "quarantine": _mark_json(f.mark)}, after=None, detail={
            "reason": f.reason, "released": "deletionPolicy retain: the workload-ids marker was "
                                            "removed and the identity kept; it is no longer managed",
            "steps": removed})

    def delete(self) -> None:
        f, o = self.f, self.f.identity
        assert f.mark is not None
        since = clock.format_time(f.mark.since)
        if (o.target, o.name, since) not in self.bundles:
            # The bundle of a first attempt is complete; a rerun after a crash sees a
            # half torn-down identity and must not replace it.
            self.auditor.record(**self.base, action=BUNDLE_ACTION,
                                before=self.leavers.restore_bundle(self._with_withheld(o)),
                                after=None, detail={"quarantinedSince": since})
        self.result.steps = self.leavers.delete(o)
        self.auditor.record(**self.base, action="delete", before={"quarantinedSince": since}, after=None,
                            detail={"steps": self.result.steps, "reason": f.reason})


_ACTIONS: dict[str, Callable[[_Acting], None]] = {
    TRANSFER: _Acting.transfer, QUARANTINE: _Acting.quarantine, ENFORCE: _Acting.quarantine,
    RELEASE: _Acting.release, DELETE: _Acting.delete, DISOWN: _Acting.disown,
}


def _act(findings: list[Finding], clouds: Clouds, auditor: Auditor, config: Config,
         seam: CallSeam, progress: Callable[[int, int], None] | None) -> list[ActionResult]:
    bundles = _bundled(config, seam)
    todo = [f for f in findings if f.action]

    def run(f: Finding) -> ActionResult:
        assert f.action is not None
        acting = _Acting(f, clouds[f.identity.provider].leavers, auditor, bundles, config)
        try:
            _ACTIONS[f.action](acting)
        except WorkloadIdsError as exc:
            acting.result.ok, acting.result.error = False, exc.diagnostics()
            auditor.record(**acting.base, action=f.action, result="failed", detail={"error": str(exc)})
        return acting.result

    results: list[ActionResult] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=config.calls.concurrency) as pool:
        for i, result in enumerate(pool.map(run, todo), 1):
            results.append(result)
            if progress:
                progress(i, len(todo))
    return results


def _bundled(config: Config, seam: CallSeam | None) -> set[tuple[str, str, str]]:
    """(target, identity, quarantinedSince) of every restore bundle already in the log."""
    store = open_store(config, seam)
    if store is None:
        return set()
    return {(str(r.get("target")), str(r.get("identity")),
             str((r.get("detail") or {}).get("quarantinedSince")))
            for r in store.records() if r.get("action") == BUNDLE_ACTION}


def _mark_json(mark: Any) -> dict[str, Any] | None:
    if mark is None:
        return None
    return {"since": clock.format_time(mark.since), "reason": mark.reason,
            "deleteAfter": clock.format_time(mark.delete_after) if mark.delete_after else None,
            "keys": list(mark.keys)}


def _manifest_edit(f: Finding) -> str:
    """The one-line manifest change that makes a transfer permanent, as a unified diff."""
    if f.manifest is None or not f.successor or f.identity.marker is None:
        return ""
    where = f.manifest.source.position("metadata", "owner")
    old_owner = f.manifest.owner
    try:
        line = Path(where.path).read_text(encoding="utf-8").splitlines()[where.line - 1]
    except (OSError, IndexError, UnicodeDecodeError):
        line = f"  owner: {old_owner}"
    new_line = re.sub(rf"(owner:\s*[\"']?){re.escape(old_owner)}", rf"\g<1>{f.successor}", line, count=1)
    return (f"--- {where.path}\n+++ {where.path}\n@@ -{where.line} +{where.line} @@\n"
            f"-{line}\n+{new_line}\n")


def render_report(report: CleanupReport) -> str:
    """The dry-run (or applied) table and what to do next."""
    lines: list[str] = []
    lines.extend(f"note: {n}" for n in report.notes)
    if not report.findings:
        lines.append("No identities managed by workload-ids were found.")
        return "\n".join(one_line(line) for line in lines)
    header = ("IDENTITY", "WORKLOAD", "OWNER", "STATUS", "ACTION", "REASON")
    # Cells are made one line before the widths are measured: names, owners and marks come
    # from the cloud and from manifests.
    rows = [header] + [tuple(one_line(cell) for cell in (
        f.identity.name, f.label, f.owner, f.status, f.action or "-",
        f.reason + (f"; {f.state()}" if f.mark else "")
        + (f"; WITHHELD: {f.problem}" if f.problem else ""))) for f in report.findings]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    for grant in report.dead_grants:
        fate = "removed" if report.applied else "removed by --apply"
        lines.append(f"dead grant: {grant['member']} still holds {grant['role']} in "
                     f"{grant['provider']}:{grant['target']} ({fate})")
    from .expired import expired_lines
    lines.extend(expired_lines(report.expired_grants, report.applied))
    for name, edit in report.transfers.items():
        lines.append("")
        lines.append(f"{name}: make the transfer permanent by editing its manifest:")
        lines.extend("    " + x for x in edit.rstrip("\n").split("\n"))
    for result in report.results:
        if not result.ok:
            lines.append(f"error: {result.finding.identity.name}: {result.action}: {result.error}")
    s = report.summary()
    classes = ", ".join(f"{n} {c}" for c, n in s["classes"].items() if n)
    acts = ", ".join(f"{n} {a}" for a, n in s["actions"].items() if n) or "nothing to do"
    lines.append("")
    if report.applied:
        lines.append(f"Cleanup applied: {acts}; {s['failed']} failed ({classes}; {s['apiCalls']} API calls).")
    else:
        lines.append(f"Dry run: {acts} ({classes}; {s['apiCalls']} API calls).")
        if report.refusal:
            lines.append(f"--apply would be REFUSED: {report.refusal}")
        elif report.actions:
            lines.append("Nothing was changed. Rerun with --apply to act.")
    return "\n".join(one_line(line) for line in lines)
