"""Desired vs observed -> an ordered list of changes, rendered as text or stable JSON.

The cloud is the source of truth: there is no state file. A per-service run (manifest
files) reads only its workloads' identities; a fleet run (a directory, or many
workloads) reads each account in a few batch calls and also lists identities of ours
that no manifest declares, for the cleanup to handle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import clock
from .calls import CallSeam
from .clouds import Clouds
from .config import Config
from .durations import parse_duration
from .errors import CloudError, ConflictError, Diagnostic, GuardrailError, InputErrors, one_line
from .escalation import is_escalation
from .keys.lifecycle import lifecycle
from .model import JOURNAL_TAG, MARK_TAG, Change, CompiledWorkload, DesiredIdentity, ObservedIdentity
from .perf import relaxed_gc
from .providers import CLOUDS
from .providers.interface import Backends
from .usage import IdentityUsage, was_used

FLEET_THRESHOLD = 10


@dataclass(frozen=True, slots=True)
class Orphan:
    """An identity of ours that no manifest in this run declares."""

    provider: str
    target: str
    identity: str
    workload: str
    owner: str

    def as_json(self) -> dict[str, str]:
        """The identity without a manifest as ``plan --format json`` prints it."""
        return {"provider": self.provider, "target": self.target, "identity": self.identity,
                "workload": self.workload, "owner": self.owner}


@dataclass
class Plan:
    """What apply would do, and what it read to decide."""

    changes: list[Change]
    desired: list[DesiredIdentity]
    clouds: Clouds  # the connected clouds apply carries the changes out through
    config: Config
    # What was read of each workload's identity (by label; None: not there yet).
    observed: dict[str, ObservedIdentity | None] = field(default_factory=dict)
    no_manifest: list[Orphan] = field(default_factory=list)
    # Declared identities that cleanup has quarantined: apply leaves them disabled.
    quarantined: list[dict[str, str]] = field(default_factory=list)
    # Grants our identities hold through bindings we did not make: reported, never changed.
    foreign_grants: list[dict[str, Any]] = field(default_factory=list)
    # Objects at our naming whose marker's MAC does not verify (GCP custom roles that
    # apply does not want): reported, never changed.
    forged: list[dict[str, Any]] = field(default_factory=list)
    fleet: bool = False
    calls: int = 0

    @property
    def has_changes(self) -> bool:
        """True when the cloud differs from the manifests (``plan --detailed-exitcode``
        exits 2), observe-only drift included: drift is what observe mode reports."""
        return bool(self.changes)

    @property
    def applicable(self) -> list[Change]:
        """The changes apply carries out: all but those of observe-mode workloads."""
        return [c for c in self.changes if not is_observe_only(c)]

    def summary(self) -> dict[str, int]:
        """Counts of workloads created, updated and unchanged, changes and API calls."""
        touched = {c.workload for c in self.changes}
        created = {c.workload for c in self.changes if c.action == "create"}
        return {
            "workloads": len(self.desired),
            "create": len(created),
            "update": len(touched - created),
            "unchanged": len(self.desired) - len(touched),
            "changes": len(self.changes),
            "noManifest": len(self.no_manifest),
            "observeOnly": len(self.changes) - len(self.applicable),
            **{kind: sum(1 for c in self.changes if classify(c) == kind) for kind in CLASSES},
            "apiCalls": self.calls,
        }

    def as_json(self) -> dict[str, Any]:
        """The plan as ``plan --format json`` prints it."""
        return {
            "changes": [{**c.as_json(), "class": classify(c),
                         **({"escalating": rows} if (rows := escalating(c)) else {})}
                        for c in self.changes],
            "noManifest": [o.as_json() for o in self.no_manifest],
            "quarantined": self.quarantined,
            "foreignGrants": self.foreign_grants,
            "forged": self.forged,
            "summary": self.summary(),
        }


def _grouped(items: Sequence[DesiredIdentity]) -> dict[tuple[str, str], list[DesiredIdentity]]:
    groups: dict[tuple[str, str], list[DesiredIdentity]] = {}
    for d in items:
        groups.setdefault((d.workload.provider, d.workload.target), []).append(d)
    return groups


class ScopePrefetch:
    """Reads each account (project, subscription) in the background as soon as
    validation meets its first workload, so the cloud's answer overlaps local work.
    Only reads: nothing is changed, so a validation error later costs nothing."""

    def __init__(self, config: Config, seam: CallSeam) -> None:
        import concurrent.futures
        self.config = config
        self.seam = seam
        self.start_calls = seam.stats.total  # the plan's count includes the reads made ahead
        self.clouds = Clouds(config, seam)
        self._futures: dict[tuple[str, str], concurrent.futures.Future[list[ObservedIdentity]]] = {}
        # A pool per cloud, each as wide as the config's fan-out budget for it (fanout.aws,
        # .gcp, .azure): one cloud's throttling never holds back another's reads.
        self._pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}

    def __call__(self, provider_name: str, target: str) -> None:
        """Start reading ``target`` in the background unless it already is (or the provider is unknown)."""
        import concurrent.futures
        key = (provider_name, target)
        if key in self._futures or provider_name not in CLOUDS:
            return
        pool = self._pools.get(provider_name)
        if pool is None:
            pool = self._pools[provider_name] = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.config.fanout.budget(provider_name),
                thread_name_prefix=f"prefetch-{provider_name}")
        self._futures[key] = pool.submit(self.clouds[provider_name].identities.observe_scope, target)

    def scope(self, provider_name: str, target: str) -> list[ObservedIdentity] | None:
        """The scope read for ``target`` (waits for it); None when it was never started."""
        future = self._futures.get((provider_name, target))
        return future.result() if future is not None else None

    def close(self) -> None:
        """Drop the reads not started and wait for those under way. A read left running
        went on calling the cloud and counting on the seam after the command had returned
        (a plan refused by its preflight, a validation error), on threads sharing the
        caller's clouds; the CLI's exit waited for it all the same."""
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


def build_plan(compiled: Sequence[CompiledWorkload], config: Config, seam: CallSeam, *,
               fleet: bool | None = None,
               progress: Callable[[int, int], None] | None = None,
               prefetch: ScopePrefetch | None = None) -> Plan:
    """Read the cloud and diff it against ``compiled``. Raises InputErrors for problems
    only the cloud can reveal (a missing OIDC provider) and ConflictError for identities
    that exist without our marker."""
    with relaxed_gc():
        try:
            return _build_plan(compiled, config, seam, fleet, progress, prefetch)
        finally:
            if prefetch is not None:
                prefetch.close()


def _build_plan(compiled: Sequence[CompiledWorkload], config: Config, seam: CallSeam,
                fleet: bool | None, progress: Callable[[int, int], None] | None,
                prefetch: ScopePrefetch | None) -> Plan:
    clouds = prefetch.clouds if prefetch else Clouds(config, seam)
    desired = [clouds[cw.provider].desired(cw) for cw in compiled]
    start_calls = prefetch.start_calls if prefetch else seam.stats.total
    problems: list[Diagnostic] = []
    for name, cloud in clouds.connected().items():
        problems.extend(cloud.identities.preflight([d for d in desired if d.workload.provider == name]))
    if problems:
        raise InputErrors(sorted(problems, key=lambda d: (
            (d.position.path, d.position.line, d.position.column) if d.position else ("", 0, 0))))
    fleet = fleet if fleet is not None else len(desired) > FLEET_THRESHOLD
    changes: list[Change] = []
    conflicts: list[ConflictError] = []
    orphans: list[Orphan] = []
    quarantined: list[dict[str, str]] = []
    foreign: list[dict[str, Any]] = []
    forged: list[dict[str, Any]] = []
    done = 0
    seen_by_label: dict[str, ObservedIdentity | None] = {}
    for (provider_name, target), items in _grouped(desired).items():
        cloud = clouds[provider_name]
        provider = cloud.identities
        observed: dict[str, ObservedIdentity | None]
        if fleet:
            read = prefetch.scope(provider_name, target) if prefetch else None
            scope = {o.name: o for o in (read if read is not None else provider.observe_scope(target))}
            again = [(d, seen) for d in items
                     if (seen := scope.get(d.name)) is not None and _incomplete(d, seen)]
            whole = provider.observe_whole(target, again) if again else {}
            observed = {d.name: whole[d.name] if d.name in whole else scope.get(d.name) for d in items}
            wanted = {d.name for d in items}
            orphans.extend(
                Orphan(provider_name, target, o.name, o.marker.workload, o.marker.owner)
                for o in scope.values() if o.marker is not None and o.name not in wanted)
        else:
            observed = {d.name: provider.observe_one(d) for d in items}
        for d in items:
            seen = observed[d.name]
            seen_by_label[d.workload.label] = seen
            mark = seen.tags.get(MARK_TAG) if seen is not None and seen.marker is not None else None
            if mark is not None:
                quarantined.append({"workload": d.workload.label, "identity": d.name, "mark": mark})
            if seen is not None and seen.extra.get("foreignGrants"):
                foreign.append({"workload": d.workload.label, "identity": d.name,
                                "roles": list(seen.extra["foreignGrants"])})
            if seen is not None and seen.extra.get("forgedRoles"):
                wanted_roles = d.objects.get("roles") or {}
                forged.extend({"workload": d.workload.label, "identity": d.name, "role": rid, "reason": why}
                              for rid, why in seen.extra["forgedRoles"].items() if rid not in wanted_roles)
            try:
                _refuse_takeover(d, seen, config)
                found = provider.diff(d, observed[d.name])
                # A quarantined user's keys stay as cleanup left them: a new key would undo it.
                if d.workload.key_mode and mark is None:
                    found.extend(_key_changes(d, observed[d.name] is None, cloud))
                if d.workload.expired:
                    found = _with_expired(d, found)
                if d.workload.observe:
                    found = [observe_only(c) for c in found]
                changes.extend(found)
            except ConflictError as exc:
                conflicts.append(exc)
            done += 1
            if progress:
                progress(done, len(desired))
    for name, cloud in clouds.connected().items():
        writes = [c for c in changes if c.provider == name and not is_observe_only(c)]
        if writes:
            problems.extend(cloud.identities.preflight_writes(writes))
    if problems:
        raise InputErrors(sorted(problems, key=lambda d: (
            (d.position.path, d.position.line, d.position.column) if d.position else ("", 0, 0))))
    if conflicts:
        if len(conflicts) == 1:
            raise conflicts[0]
        raise ConflictError("\n".join(str(c) for c in conflicts), conflicts[0].hint)
    changes = _with_usage(changes, clouds, config)
    return Plan(changes=changes, desired=desired, clouds=clouds, config=config, observed=seen_by_label,
                no_manifest=sorted(orphans, key=lambda o: (o.provider, o.target, o.identity)),
                quarantined=quarantined, foreign_grants=foreign, forged=forged, fleet=fleet,
                calls=seam.stats.total - start_calls)


def _removes(value: Any) -> bool:
    """Whether a change's details take anything away (a non-empty ``removed`` list)."""
    if isinstance(value, dict):
        return bool(value.get("removed")) or any(_removes(v) for v in value.values())
    return False


def _with_expired(desired: DesiredIdentity, found: list[Change]) -> list[Change]:
    """``found`` with the workload's expired time-bound entries named on the first change
    that removes access: what plan shows as "expired at ..., removed by this apply". An
    entry whose grants are already gone is named nowhere (nothing is pending)."""
    from dataclasses import replace
    out = list(found)
    for i, c in enumerate(out):
        if c.action != "create" and _removes(dict(c.details)):
            out[i] = replace(c, details={**c.details, "expired": [
                e.as_json() for e in desired.workload.expired]})
            break
    return out


OBSERVE_ONLY = "observeOnly"
OBSERVE_NOTE = "observe only: apply will not make this change"


def _with_usage(changes: list[Change], clouds: Clouds, config: Config) -> list[Change]:
    """Each permission a change would remove, with whether the workload used it within
    ``review.window`` (``used``, ``lastUsed``, ``basis``, ``usage``: the sentence it rests on).
    One usage read per workload that loses a permission, none otherwise. Whatever the cloud
    cannot rule out counts as used (:func:`workload_ids.usage.was_used`)."""
    since = clock.now() - parse_duration(config.review.window)
    read: dict[str, IdentityUsage | str] = {}
    out: list[Change] = []
    for c in changes:
        removed = _rows(c, "permissions", "removed")
        if not removed or c.desired is None or is_observe_only(c):
            out.append(c)
            continue
        if c.workload not in read:
            backend = clouds[c.provider].usage
            try:
                read[c.workload] = (backend.usage_for(c.desired) if backend is not None else
                                    f"{c.provider} usage is not read by this version")
            except CloudError as exc:
                read[c.workload] = f"usage could not be read: {one_line(str(exc))}"
        usage = read[c.workload]
        rows: list[dict[str, Any]] = []
        for row in removed:
            if isinstance(usage, str):
                rows.append({**row, "used": True, "lastUsed": None, "basis": "none",
                             "usage": f"{usage}, so it counts as used"})
                continue
            answer = was_used(usage, str(row.get("action", "")), str(row.get("resource", "")), since)
            rows.append({**row, "used": answer.used, "basis": answer.basis, "usage": answer.reason,
                         "lastUsed": clock.format_time(answer.last_used) if answer.last_used else None})
        permissions = {**c.details["permissions"], "removed": rows}
        out.append(replace(c, details={**c.details, "permissions": permissions}))
    return out


def removes_used_access(c: Change) -> list[dict[str, Any]]:
    """The permissions ``c`` removes that were used within the window (or may have been)."""
    return [row for row in _rows(c, "permissions", "removed") if row.get("used")]


def refuse_breaking(plan: Plan) -> None:
    """GuardrailError (exit 3) naming every permission the plan would remove that its
    workload used within the window; apply calls it before the first change."""
    used = [(c, row) for c in plan.applicable for row in removes_used_access(c)]
    if not used:
        return
    rows = "\n".join(one_line(f"  {c.workload}: removing {row.get('action')} on {row.get('resource')}, "
                               + (f"last used {ago(row['lastUsed'])}" if row.get("lastUsed")
                                  else str(row.get("usage", "usage unknown"))))
                      for c, row in used)
    raise GuardrailError(
        f"guardrails.refuseRemovingUsedAccess: this plan removes {len(used)} permission(s) the "
        f"workload(s) used within review.window; nothing was changed:\n{rows}\nIf the service no "
        "longer needs them, rerun with --accept-breaking; otherwise keep the entries in the manifest")


def observe_only(change: Change) -> Change:
    """``change`` marked as drift of an observe-mode workload: reported, never applied."""
    return replace(change, details={**change.details, OBSERVE_ONLY: True, "note": OBSERVE_NOTE})


def is_observe_only(change: Change) -> bool:
    """Whether ``change`` belongs to an observe-mode workload (apply skips it)."""
    return bool(change.details.get(OBSERVE_ONLY))


def _incomplete(desired: DesiredIdentity, seen: ObservedIdentity) -> bool:
    """Whether the batch read of ``seen`` left out what the diff of ``desired`` needs, so
    it is read again whole (a workload plans the same in a fleet run as alone): an
    adopted identity (every policy it holds), or one whose manifest changed."""
    if seen.complete:
        return False
    if desired.workload.adopted:
        return True
    return seen.marker is not None and seen.marker.digest != desired.workload.marker.digest


def _refuse_takeover(desired: DesiredIdentity, seen: ObservedIdentity | None, config: Config) -> None:
    """An existing identity keeps its owner and its source unless the platform team
    approved the move (review H4): otherwise any team could re-declare another team's
    environment and name and inherit its trust, permissions and every resource policy
    naming it."""
    if seen is None or seen.marker is None:
        return
    from .markers import source_move_approved
    from .provenance import recorded_owner, recorded_source, transfer_believed
    w = desired.workload

    def where() -> object:  # looked up for a message only: it parses the manifest again
        return w.source.position("metadata", "owner")
    recorded = recorded_owner(config, seen)
    if seen.unauthenticated and not seen.misplaced:
        # At our location and naming, but its marker proves nothing (made before markers
        # were authenticated, or tagged by someone else): the manifest authorises apply to
        # converge and re-mark it, unless the audit log says it is another owner's or is
        # declared elsewhere (stripping the MAC must not open a takeover).
        bound, want_source = recorded_source(config, seen), w.marker.source
        owner = recorded or w.marker.owner
        if bound and bound != want_source and not source_move_approved(
                config, w.label, owner, w.marker.owner, bound, want_source):
            raise ConflictError(
                f"{where()}: {w.label}: {w.provider} identity {desired.name} in {w.target} belongs to "
                f"owner {owner} and is declared by {bound} (the audit log records it; the identity's "
                f"marker is not authenticated), but this manifest is {want_source} (owner "
                f"{w.marker.owner}); apply does not move an identity to another source, so nothing "
                "was changed",
                f"if this is another workload, give it its own metadata.name; if the move is "
                f"intended, the platform team adds guardrails.approvedTransfers: [{{workload: {w.label}, "
                f"from: {owner}, to: {w.marker.owner}, fromSource: {bound}, toSource: {want_source}, "
                "reason: ...}] to workload-ids.yaml and you rerun")
        if recorded is None or recorded == w.marker.owner or transfer_believed(config, seen, w.marker.owner):
            return
        raise ConflictError(
            f"{where()}: {w.label}: {w.provider} identity {desired.name} in {w.target} belongs to "
            f"owner {recorded}, and this manifest says owner {w.marker.owner} (the audit log records "
            f"{recorded}; the identity's marker is not authenticated); nothing was changed",
            f"if {recorded} hands it over, add guardrails.approvedTransfers: [{{workload: {w.label}, "
            f"from: {recorded}, to: {w.marker.owner}, reason: ...}}] to workload-ids.yaml and rerun; "
            "otherwise give this workload its own metadata.name")
    # Whose it is: the owner the audit log shows the tool last wrote, where it has one (an
    # owner tag can be rewritten by anyone with tagging rights, and apply repairs that as
    # drift); the tag otherwise.
    current, wanted = recorded or seen.marker.owner, w.marker.owner
    owner_ok = current == wanted or transfer_believed(config, seen, wanted) or any(
        t.workload == w.label and t.from_ == current and t.to == wanted and t.fromSource is None
        for t in config.guardrails.approvedTransfers)
    # Identities marked before sources were recorded have none: apply binds them.
    have_source, want_source = seen.marker.source, w.marker.source
    source_ok = not have_source or have_source == want_source
    if owner_ok and source_ok:
        return
    if source_move_approved(config, w.label, current, wanted, have_source, want_source):
        return
    if not source_ok:
        raise ConflictError(
            f"{where()}: {w.label}: {w.provider} identity {desired.name} in {w.target} belongs to "
            f"owner {current} and is declared by {have_source}, but this manifest is "
            f"{want_source} (owner {wanted}); apply does not move an identity to another source, "
            "so nothing was changed",
            f"if this is another workload, give it its own metadata.name; if the move is "
            f"intended, the platform team adds guardrails.approvedTransfers: [{{workload: {w.label}, "
            f"from: {current}, to: {wanted}, fromSource: {have_source}, toSource: {want_source}, "
            "reason: ...}] to workload-ids.yaml and you rerun (declare the team under `teams:` to "
            "let it move its own files)")
    raise ConflictError(
        f"{where()}: {w.label}: {w.provider} identity {desired.name} in {w.target} belongs to "
        f"owner {current}, and this manifest says owner {wanted}; apply does not change an "
        "identity's owner, so nothing was changed",
        f"if this is another workload, give it its own metadata.name; if {current} hands it "
        f"over, add guardrails.approvedTransfers: [{{workload: {w.label}, from: {current}, "
        f"to: {wanted}, reason: ...}}] to workload-ids.yaml (the platform team's file) and "
        f"rerun; if {current} has left, `workload-ids cleanup` transfers it to their successor")


def _key_changes(desired: DesiredIdentity, new: bool, cloud: Backends) -> list[Change]:
    """Key-mode workloads: apply makes sure a verified key exists and no run's leftovers
    remain. Rotation on schedule is ``rotate``'s job, not apply's."""
    def change(action: str, **details: Any) -> Change:
        return Change(workload=desired.workload.label, provider=desired.workload.provider,
                      target=desired.workload.target, action=action, identity=desired.name,
                      details=details, desired=desired)

    secret = desired.settings.get("secretName", "")
    if new:
        return [change("issue-key", secret=secret)]
    state = lifecycle(desired, cloud).read()
    if state.journal is not None:
        return [change("recover-keys", secret=secret,
                       since=state.stored.tags.get(JOURNAL_TAG, ""))]
    if state.current is None:
        return [change("issue-key", secret=secret)]
    return []


_SYMBOL = {"create": "+", "remove-foreign-policy": "-"}


# --- widening, narrowing, neutral ---------------------------------------------------

CLASSES = ("widening", "narrowing", "neutral")
# Sections of a change's details whose "added" rows give someone more (permissions on
# resources, callers that may become the identity, principals that may attach it).
_GRANTING = ("permissions", "trust", "deployers")


def _rows(c: Change, section: str, side: str) -> list[Any]:
    diff = c.details.get(section)
    return list(diff.get(side) or []) if isinstance(diff, dict) else []


def classify(c: Change) -> str:
    """``widening`` when the change gives anyone more than today (a new identity, a
    permission, a caller, a deployer, a lifted boundary, a longer session), ``narrowing``
    when it only takes away, ``neutral`` otherwise (tags, markers, keys rotated)."""
    if c.action == "create":
        return "widening"
    if any(_rows(c, s, "added") for s in _GRANTING):
        return "widening"
    boundary = c.details.get("boundary")
    if isinstance(boundary, dict) and boundary.get("from") and not boundary.get("to"):
        return "widening"
    session = (c.details.get("settings") or {}).get("maxSessionDuration")
    if isinstance(session, dict) and _seconds(session.get("to")) > _seconds(session.get("from")):
        return "widening"
    if c.action == "remove-foreign-policy" or any(_rows(c, s, "removed") for s in _GRANTING):
        return "narrowing"
    if isinstance(boundary, dict) and boundary.get("to"):
        return "narrowing"
    return "neutral"


def _seconds(value: Any) -> int:
    text = str(value or "")
    return int(text) if text.isdigit() else 0


def escalating(c: Change) -> list[dict[str, str]]:
    """The permissions a change adds that can be turned into more privilege."""
    return [row for row in _rows(c, "permissions", "added")
            if is_escalation(c.provider, str(row.get("action", "")))]


def render_markdown(plan: Plan) -> str:
    """The plan as a pull-request comment: widening first (escalation-capable rows
    marked), then narrowing, then neutral; every echoed name escaped, so a name from a
    manifest or the cloud cannot hide a row (an HTML comment) or forge a heading."""
    s = plan.summary()
    lines = [f"### workload-ids plan: {s['widening']} widening, {s['narrowing']} narrowing, "
             f"{s['neutral']} neutral",
             "",
             f"{s['workloads']} workload(s): {s['create']} to create, {s['update']} to update, "
             f"{s['unchanged']} unchanged ({s['apiCalls']} API calls)."]
    if not plan.changes:
        lines += ["", "No changes: every workload matches the cloud."]
    titles = {"widening": "Widening (grants more: review these first)",
              "narrowing": "Narrowing (takes access away)", "neutral": "Neutral"}
    for kind in CLASSES:
        changes = [c for c in plan.changes if classify(c) == kind]
        if not changes:
            continue
        lines += ["", f"#### {titles[kind]}", ""]
        for c in changes:
            esc = escalating(c)
            head = (f"- **{md(c.workload)}** ({md(c.provider)} {md(c.target)}): {md(c.action)} "
                    f"{md(c.identity)}")
            if is_observe_only(c):
                head += " *(observe mode: reported, not applied)*"
            if esc:
                head += f" — **escalation-capable: {len(esc)} permission(s)**"
            lines.append(head)
            flagged = {(r.get("action"), r.get("resource")) for r in esc}
            for row in _detail_lines(c):
                text = row.strip()
                escalation = any(text.startswith("+ ") and f"{a}  {r}" in text for a, r in flagged)
                used = text.startswith("- ") and "(USED" in text
                mark = "**ESCALATION** " if escalation else "**STILL USED** " if used else ""
                lines.append(f"  - {mark}`{code(text)}`")
    for q in plan.quarantined:
        lines += ["", f"> {md(q['workload'])}: quarantined by cleanup; apply leaves it disabled."]
    if plan.no_manifest:
        count = len(plan.no_manifest)
        lines += ["", f"{count} identit{'y has' if count == 1 else 'ies have'} no manifest (left "
                  "alone; `workload-ids cleanup` handles them)."]
    return "\n".join(lines) + "\n"


_MD_SPECIAL = str.maketrans({c: f"&#{ord(c)};" for c in "\\`*_{}[]()<>#+!|~&"})


def md(text: str) -> str:
    """``text`` as literal Markdown text: every character Markdown or HTML gives meaning to
    as a character reference, on one line."""
    return one_line(str(text)).translate(_MD_SPECIAL)


def code(text: str) -> str:
    """``text`` for a code span: one line, backticks and pipes replaced (a span cannot
    escape them), so it cannot close the span or a table cell."""
    return one_line(str(text)).replace("`", "'").replace("|", "\u00a6")


def render_text(plan: Plan) -> str:
    """The plan as people read it: one block per workload, + and - per permission."""
    lines: list[str] = []
    by_workload: dict[str, list[Change]] = {}
    for c in plan.changes:
        by_workload.setdefault(c.workload, []).append(c)
    for workload, changes in by_workload.items():
        first = changes[0]
        observe = is_observe_only(first)
        if first.action == "create":
            head = f"+ {workload} ({first.provider} {first.target}): create " \
                   f"{first.details.get('kind', 'identity')} {first.identity}"
        else:
            head = f"~ {workload} ({first.provider} {first.target}): update {first.identity}"
        lines.append(head + (" [observe mode: drift only, apply changes nothing]" if observe else ""))
        for c in changes:
            if c.action != "create":
                lines.append(f"    {_SYMBOL.get(c.action, '~')} {c.action}"
                             + (f" ({OBSERVE_NOTE})" if observe else ""))
            elif observe:
                lines.append(f"    + create ({OBSERVE_NOTE})")
            lines.extend(_detail_lines(c))
    s = plan.summary()
    if not plan.changes:
        lines.append(f"No changes. {s['workloads']} workload(s) match the cloud.")
    else:
        lines.append("")
        lines.append(f"Plan: {s['create']} to create, {s['update']} to update, "
                     f"{s['unchanged']} unchanged ({s['changes']} change(s)).")
        if s["observeOnly"]:
            lines.append(f"{s['observeOnly']} change(s) belong to observe-mode workloads: reported "
                         "as drift, never applied (set spec.mode: manage to let apply converge them).")
    for q in plan.quarantined:
        lines.append(f"! {q['workload']}: {q['identity']} is quarantined by cleanup ({q['mark']}); "
                     "apply leaves it disabled. The next `workload-ids cleanup --apply` releases it "
                     "once its owner is active and its manifest declares it")
    for f in plan.foreign_grants:
        lines.append(f"! {f['workload']}: {f['identity']} also holds {', '.join(f['roles'])} through "
                     "bindings workload-ids did not make; they are left alone: remove them by hand "
                     "if the workload should not have them")
    for f in plan.forged:
        lines.append(f"! {f['workload']}: custom role {f['role']} is forged ({f['reason']}): it is "
                     "left alone (never changed, unbound or deleted); find out who made it, and "
                     "delete it by hand if nothing uses it")
    if plan.no_manifest:
        count = len(plan.no_manifest)
        lines.append(f"{count} identit{'y has' if count == 1 else 'ies have'} no manifest "
                     "(left alone; `workload-ids cleanup` handles them):")
        lines.extend(f"    ? {o.identity} ({o.provider} {o.target}, workload {o.workload}, "
                     f"owner {o.owner})" for o in plan.no_manifest)
    # Each entry is one line by design; what it echoes (names, resources, descriptions read
    # back from the cloud) must not break it into more.
    return "\n".join(one_line(line) for line in lines)


def _use_note(row: dict[str, Any]) -> str:
    """``  (USED: last used 2 days ago)`` after a removed permission the workload used."""
    if "used" not in row:
        return ""
    when = row.get("lastUsed")
    if not row["used"]:
        return f"  (unused: {'last used ' + ago(when) if when else 'no use on record'})"
    if when:
        return f"  (USED: last used {ago(when)})"
    return f"  (USED, as far as the cloud can tell: {row.get('usage', '')})"


def ago(when: str) -> str:
    """``2 days ago``, ``today``: how long before the tool's clock ``when`` (an instant) was."""
    try:
        then = clock.parse_time(when)
    except clock.ClockError:
        return when
    days = (clock.now() - then).days
    return "today" if days < 1 else "1 day ago" if days == 1 else f"{days} days ago"


def _detail_lines(c: Change) -> list[str]:
    out: list[str] = []
    for section, a, b in (("permissions", "action", "resource"), ("trust", "principal", "subject")):
        diff = c.details.get(section)
        if not diff:
            continue
        label = "" if section == "permissions" else "trust "
        out.extend(f"        + {label}{row[a]}  {row[b]}" for row in diff["added"])
        out.extend(f"        - {label}{row[a]}  {row[b]}{_use_note(row)}" for row in diff["removed"])
    for section in ("settings", "tags"):
        for key, value in (c.details.get(section) or {}).items():
            out.append(f"        ~ {key}: {value['from'] or '(none)'} -> {value['to'] or '(none)'}")
    if c.action in ("issue-key", "recover-keys"):
        out.append(f"        + {c.action} into secret {c.details['secret']}")
    if "boundary" in c.details:
        b = c.details["boundary"]
        out.append(f"        ~ permissions boundary: {b['from'] or '(none)'} -> {b['to'] or '(none)'}")
    if c.action == "remove-foreign-policy":
        out.append(f"        - {c.details['policy']} (not made by workload-ids)")
    for e in c.details.get("expired") or ():
        approval = f" (approval {e['approval']})" if e["approval"] else ""
        out.append(f"        - access entry {e['entry']}: {e['what']}{approval}: expired at "
                   f"{e['expires']}, removed by this apply")
    return out
