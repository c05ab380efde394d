"""``workload-ids review``: per owner, each workload's last attestation, when the next is
due (``review.every``) and its state: ok, due soon, overdue, never attested.

Attestations come from the audit trail and are believed only with a valid MAC
(:mod:`workload_ids.attestation`); a record that fails is listed as not believed and never
counts. Given manifests, each workload lists its access entries with what they grant, when
they were last used and a verdict over ``review.window``, and each manifest the edit that
drops or narrows what went unused (:mod:`workload_ids.review_usage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import clock
from .attestation import Attestation, latest, read_attestations
from .durations import format_duration, parse_duration
from .errors import one_line
from .plan import md
from .review_usage import VERDICTS, shown_path

if TYPE_CHECKING:
    from .calls import CallSeam
    from .clouds import Clouds
    from .config import Config
    from .model import CompiledWorkload, DesiredIdentity
    from .review_usage import FileEdits
    from .templates import TemplateSet
    from .usage import IdentityUsage

OK, DUE_SOON, OVERDUE, NEVER = "ok", "due soon", "overdue", "never attested"
STATES = (OVERDUE, NEVER, DUE_SOON, OK)
# How long before its due date an attestation shows as due soon (at most a quarter of
# review.every, so a short interval is not due soon all the time).
DUE_SOON_AHEAD = timedelta(days=14)
NOT_READ = "not read"


@dataclass(frozen=True, slots=True)
class ReviewEntry:
    """One workload under review."""

    provider: str
    target: str
    workload: str  # ENVIRONMENT/NAME
    owner: str
    state: str
    last: Attestation | None
    due: datetime | None
    access: tuple[dict[str, Any], ...] = ()
    not_believed: tuple[Attestation, ...] = ()
    identity: str | None = None
    note: str | None = None  # why the state is what it is, when not plain

    def as_json(self) -> dict[str, Any]:
        """The entry as ``review --output json`` prints it."""
        last = self.last
        return {
            "provider": self.provider, "target": self.target, "workload": self.workload,
            "identity": self.identity or (last.identity if last else None), "owner": self.owner,
            "state": self.state, "due": clock.format_time(self.due) if self.due else None,
            "lastAttestation": None if last is None else {
                "by": last.by, "at": clock.format_time(last.at) if last.at else None, "note": last.note},
            "notBelieved": [a.as_json() for a in self.not_believed],
            "note": self.note,
            "access": [dict(a) for a in self.access],
        }


@dataclass
class ReviewReport:
    """Every workload reviewed, grouped per owner by :meth:`by_owner`."""

    entries: list[ReviewEntry]
    every: timedelta | None
    window: timedelta
    on_expiry: str
    now: datetime
    notes: list[str] = field(default_factory=list)
    # Attestation records that name no reviewed workload and are not believed.
    stray: list[Attestation] = field(default_factory=list)
    # manifest path -> the suggested edit as a unified diff
    patches: dict[str, str] = field(default_factory=dict)

    def by_owner(self) -> dict[str, list[ReviewEntry]]:
        """Entries per owner, owners sorted, the most urgent state first within each."""
        out: dict[str, list[ReviewEntry]] = {}
        for e in sorted(self.entries, key=lambda e: (e.owner, STATES.index(e.state), e.workload,
                                                     e.provider, e.target)):
            out.setdefault(e.owner, []).append(e)
        return out

    def summary(self) -> dict[str, int]:
        """How many workloads are in each state."""
        return {s: sum(1 for e in self.entries if e.state == s) for s in STATES}

    def as_json(self) -> dict[str, Any]:
        """The report as ``review --output json`` prints it."""
        groups = self.by_owner()
        return {
            "review": {"every": format_duration(self.every) if self.every else None,
                       "window": format_duration(self.window), "onExpiry": self.on_expiry},
            "owners": [{"owner": owner, "workloads": [e.workload for e in entries],
                        "states": {s: sum(1 for e in entries if e.state == s) for s in STATES}}
                       for owner, entries in groups.items()],
            "workloads": [e.as_json() for entries in groups.values() for e in entries],
            "notBelieved": [a.as_json() for a in self.stray],
            "summary": self.summary(), "notes": self.notes, "clock": clock.notice(),
            "verdicts": self.verdicts(),
            "suggestions": [{"path": shown_path(path), "diff": diff} for path, diff in self.patches.items()],
        }

    def verdicts(self) -> dict[str, int]:
        """How many access entries have each usage verdict."""
        found = [a.get("verdict") for e in self.entries for a in e.access]
        return {v: found.count(v) for v in VERDICTS if v in found}


def _access(cw: CompiledWorkload) -> tuple[dict[str, Any], ...]:
    """The manifest's access entries, each with what it grants; usage not read yet."""
    entries: dict[int, dict[str, Any]] = {}
    for g in cw.grants:
        entry = entries.setdefault(g.entry, {
            "entry": g.entry, "template": g.source, "resources": [], "actions": [],
            "lastUsed": None, "usage": NOT_READ})
        if g.listed not in entry["resources"]:
            entry["resources"].append(g.listed)
        for action in (*g.actions, *g.data_actions):
            if action not in entry["actions"]:
                entry["actions"].append(action)
    return tuple(entries[i] for i in sorted(entries))


def state_of(last: datetime | None, every: timedelta | None, now: datetime) -> tuple[str, datetime | None]:
    """The state and due date of a workload last attested at ``last``."""
    if last is None:
        return NEVER, None
    if every is None:
        return OK, None
    due = last + every
    if now > due:
        return OVERDUE, due
    if due - now <= min(DUE_SOON_AHEAD, every / 4):
        return DUE_SOON, due
    return OK, due


def review(paths: Sequence[str | Path], config: Config, seam: CallSeam) -> ReviewReport:
    """Review the workloads the manifests in ``paths`` declare (with their access
    entries), or, without paths, every workload the tool manages in the targets it reads
    (owners from their markers)."""
    from .clouds import Clouds
    clouds = Clouds(config, seam)
    now = clock.now()
    every = parse_duration(config.review.every) if config.review.every else None
    notes: list[str] = []
    # (provider, target, label) -> owner, access, identity
    wanted: dict[tuple[str, str, str], tuple[str, tuple[dict[str, Any], ...], str | None]] = {}
    records = _audit_records(config, clouds)
    patches: dict[str, str] = {}
    if paths:
        from .validate import validate
        checked = validate(paths, config)
        checked.raise_for_errors()
        from .providers import get_cloud
        from .review_usage import FileEdits
        files: dict[str, FileEdits] = {}
        # The identities, rendered as apply would (pure: no cloud call).
        rendered = [(cw, get_cloud(cw.provider).render(cw, config)) for cw in checked.compiled]
        # The cloud reads (usage, and creation times the audit trail cannot replace) run
        # side by side, calls.concurrency at a time (an AWS access-advisor job is polled
        # for seconds); judging and editing the text stay in order.
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(max_workers=config.calls.concurrency) as pool:
            facts = list(pool.map(lambda pair: _facts(pair[0], pair[1], clouds, config, now, records),
                                  rendered))
        for (cw, desired), read in zip(rendered, facts, strict=True):
            edits = files.setdefault(cw.source.path, FileEdits(cw.source.path))
            edits.workloads.append(cw)
            access = _with_usage(cw, _access(cw), read, config, now, checked.templates, edits)
            wanted[(cw.provider, cw.target, cw.label)] = (cw.owner, access, desired.name)
        patches = _patches(files, wanted, config, notes)
    else:
        from .inventory import inventory_report
        report = inventory_report([], config, seam, clouds=clouds)
        for r in report.rows:
            if r.forged is None:
                wanted[(r.provider, r.target, f"{r.environment}/{r.workload}")] = (r.owner, (), r.identity)
        notes.append("no manifests given: workloads and owners are read from the clouds, without "
                     "their access entries (pass the manifest folder to list them)")
    if every is None:
        notes.append("review.every is not set: attestation is not required, so nothing is due; "
                     "set review.every (e.g. 90d) in workload-ids.yaml to require it")
    attestations = read_attestations(config, clouds, records)
    believed = latest(attestations)
    entries: list[ReviewEntry] = []
    for key in sorted(wanted):
        owner, access, identity = wanted[key]
        last = believed.get(key)
        note = None
        if last is not None and last.owner != owner:
            note = f"last attested by {last.by} for {last.owner}, its owner then; {owner} has not attested"
            last = None
        state, due = state_of(last.at if last else None, every, now)
        doubted = tuple(a for a in attestations if not a.believed and a.key == key)
        entries.append(ReviewEntry(key[0], key[1], key[2], owner, state, last, due, access, doubted,
                                   identity, note))
    stray = [a for a in attestations if not a.believed and a.key not in wanted]
    return ReviewReport(entries, every, parse_duration(config.review.window), config.review.onExpiry,
                        now, notes, stray, patches)


def _audit_records(config: Config, clouds: Clouds) -> list[dict[str, Any]]:
    """The audit trail, read once (attestations and entry ages both come from it)."""
    from .audit import open_store
    store = open_store(config, clouds.seam)
    return [] if store is None else list(store.records())


Facts = tuple[list[tuple[datetime | None, str]], "IdentityUsage | str"]


def _facts(cw: CompiledWorkload, desired: DesiredIdentity, clouds: Clouds, config: Config,
           now: datetime, records: list[dict[str, Any]]) -> Facts:
    """What the cloud and the audit trail say of one workload: each entry's grant time (and
    where it comes from), and its usage, read once and only when an entry is old enough
    to judge."""
    from .review_usage import entry_age, usage_of, window_since
    _, since = window_since(config, now)
    ages: list[tuple[datetime | None, str]] = []
    created: list[datetime | None] = []
    entries = sorted({g.entry for g in cw.grants})
    for index in entries:
        grants = [g for g in cw.grants if g.entry == index]
        granted, why = entry_age(cw, grants, records, None)
        if granted is None:
            if not created:  # the identity's creation time, read only when needed
                created.append(_created(clouds, desired))
            granted, why = entry_age(cw, grants, records, created[0])
        ages.append((granted, why))
    old = any(granted is not None and granted <= since for granted, _ in ages)
    return ages, usage_of(clouds, desired) if old else "not read: every entry is too new to judge"


def _with_usage(cw: CompiledWorkload, access: tuple[dict[str, Any], ...], facts: Facts, config: Config,
                now: datetime, templates: TemplateSet, edits: FileEdits) -> tuple[dict[str, Any], ...]:
    """Each entry with when it was last used, its verdict and the suggested edit."""
    from .review_usage import finish, judge, suggest, window_since
    if not access:
        return access
    _, since = window_since(config, now)
    ages, usage = facts
    out: list[dict[str, Any]] = []
    for entry, (granted, why) in zip(access, ages, strict=True):
        grants = [g for g in cw.grants if g.entry == entry["entry"]]
        judged = judge(usage, grants, since, granted)
        suggest(cw, entry["entry"], grants, judged, templates, edits)
        out.append({**entry, "lastUsed": judged["lastUsed"], "usage": judged["usage"],
                    "verdict": judged["verdict"], "usedActions": judged["usedActions"],
                    "unusedActions": judged["unusedActions"],
                    "granted": clock.format_time(granted) if granted else None, "grantedFrom": why})
    finish(cw, edits)
    for a in out:  # finish may have turned several drops into one `access: []`
        a["suggestion"] = edits.says.get((cw.label, a["entry"]))
    return tuple(out)


def _created(clouds: Clouds, desired: DesiredIdentity) -> datetime | None:
    from .errors import WorkloadIdsError
    try:
        seen = clouds[desired.workload.provider].identities.observe_one(desired)
    except WorkloadIdsError:
        return None
    value = seen.extra.get("created") if seen is not None else None
    if isinstance(value, str):
        try:
            return clock.parse_time(value)
        except clock.ClockError:
            return None
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


def _patches(files: dict[str, FileEdits], wanted: dict[tuple[str, str, str], Any], config: Config,
             notes: list[str]) -> dict[str, str]:
    """Per manifest, its edits as a unified diff, offered only if the edited file validates."""
    from .review_usage import apply_edits, checked, patch
    out: dict[str, str] = {}
    for path, edits in sorted(files.items()):
        if not edits.edits:
            continue
        before = Path(path).read_text(encoding="utf-8")
        after = apply_edits(before, edits.edits)
        problem = checked(path, after, config, edits.workloads)
        if problem is None:
            out[path] = patch(path, before, after)
            continue
        notes.append(f"{shown_path(path)}: no edit suggested: {problem}; change it by hand")
        for key, (_, access, _) in wanted.items():
            for a in access:
                if (key[2], a.get("entry")) in edits.says and a.get("suggestion"):
                    a["suggestion"] += f" (not offered: {problem})"
    return out


def _when(value: datetime | None) -> str:
    return clock.format_time(value) if value else "-"


def _attested(e: ReviewEntry) -> str:
    if e.last is None:
        return "-"
    return f"{e.last.by} at {_when(e.last.at)}" + (f" ({e.last.note})" if e.last.note else "")


def render_text(report: ReviewReport) -> str:
    """The review for people: one block per owner, one line per workload."""
    lines = [f"note: {n}" for n in report.notes]
    if not report.entries:
        lines.append("No workloads to review.")
    for owner, entries in report.by_owner().items():
        lines.append(f"{owner}:")
        rows = [[one_line(c) for c in r] for r in [
            ("WORKLOAD", "WHERE", "STATE", "DUE", "LAST ATTESTATION"),
            *((e.workload, f"{e.provider}:{e.target}", e.state, _when(e.due), _attested(e))
              for e in entries)]]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True))
                         + "  " + r[4])
        for e in entries:
            lines.extend(_access_lines(e))
            if e.note:
                lines.append(one_line(f"  {e.workload}: {e.note}"))
            for a in e.not_believed:
                lines.append(one_line(f"  {e.workload}: NOT BELIEVED: attestation by {a.by} at "
                                      f"{_when(a.at)}: {a.problem}"))
    for a in report.stray:
        lines.append(one_line(f"NOT BELIEVED: attestation of {a.workload} ({a.provider}:{a.target}) "
                              f"by {a.by}: {a.problem}"))
    for path, diff in report.patches.items():
        lines.extend(["", f"Suggested edit of {shown_path(path)} (apply with `git apply`, then plan):"])
        # A diff line is one line of the manifest; one_line keeps a control character out.
        lines.extend(one_line(line) for line in diff.splitlines())
    s = report.summary()
    lines.append("")
    verdicts = report.verdicts()
    if verdicts:
        lines.append("Access entries: " + ", ".join(f"{n} {v}" for v, n in verdicts.items())
                     + f" (window {format_duration(report.window)})")
    lines.append("Review: " + ", ".join(f"{n} {state}" for state, n in s.items() if n)
                 + (f" (attest every {format_duration(report.every)})" if report.every else "")
                 if report.entries else "Review: nothing to review.")
    if s[OVERDUE] or s[NEVER]:
        lines.append("Owners attest with `workload-ids attest ENVIRONMENT/NAME --by PERSON`; "
                     + ("cleanup quarantines overdue workloads (review.onExpiry: quarantine)."
                        if report.on_expiry == "quarantine" else
                        "cleanup reports overdue workloads as unattested."))
    return "\n".join(lines)


def _what(a: dict[str, Any]) -> str:
    """``queue.consume on arn:...`` (a raw entry: its actions) for one access entry."""
    what = a.get("template")
    if what == "raw" or not what:
        what = ", ".join(map(str, a.get("actions") or []))
    return f"{what} on {', '.join(map(str, a.get('resources') or []))}"


def _last(a: dict[str, Any]) -> str:
    from .plan import ago
    when = a.get("lastUsed")
    return f"last used {ago(when)}" if when else "no use on record"


def _access_lines(e: ReviewEntry) -> list[str]:
    """One line per access entry with its verdict, and the suggestion under it."""
    judged = [a for a in e.access if a.get("verdict")]
    if not judged:
        return []
    lines = [f"  {e.workload}:"]
    for a in judged:
        lines.append(f"    [{a['entry']}] {_what(a)}: {str(a['verdict']).upper()} ({_last(a)}) "
                     f"grants {', '.join(map(str, a.get('actions') or []))}")
        lines.append(f"        {a.get('usage')}")
        if a.get("suggestion"):
            lines.append(f"        suggestion: {a['suggestion']}")
    return [one_line(line) for line in lines]


def _cell(text: str) -> str:
    """A Markdown table cell: one line, pipes and backticks escaped (names come from manifests)."""
    return one_line(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`") \
        .replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(report: ReviewReport) -> str:
    """The review as a pull-request comment: a table per owner."""
    lines = ["## Access review", ""]
    s = report.summary()
    lines.append(", ".join(f"**{n}** {state}" for state, n in s.items() if n) or "Nothing to review.")
    lines.extend(f"> {_cell(n)}" for n in report.notes)
    for owner, entries in report.by_owner().items():
        lines.extend(["", f"### {_cell(owner)}", "",
                      "| Workload | Where | State | Due | Last attestation |",
                      "| --- | --- | --- | --- | --- |"])
        for e in entries:
            state = f"**{e.state}**" if e.state in (OVERDUE, NEVER) else e.state
            lines.append(f"| {_cell(e.workload)} | {_cell(e.provider + ':' + e.target)} | {state} | "
                         f"{_cell(_when(e.due))} | {_cell(_attested(e))} |")
        judged = [(e, entry) for e in entries for entry in e.access if entry.get("verdict")]
        if judged:
            lines.extend(["", "| Workload | Entry | Grants | Last used | Verdict | Suggestion |",
                          "| --- | --- | --- | --- | --- | --- |"])
            for e, entry in judged:
                verdict = str(entry["verdict"])
                shown = f"**{verdict}**" if verdict in ("unused", "partly used") else verdict
                lines.append(f"| {md(e.workload)} | {md(_what(entry))} | "
                             f"{md(', '.join(map(str, entry.get('actions') or [])))} | {md(_last(entry))} | "
                             f"{shown} | {md(entry.get('suggestion') or '-')} |")
        for e in entries:
            for a in e.not_believed:
                lines.append(f"\n- :warning: {_cell(e.workload)}: attestation by {_cell(a.by)} "
                             f"**not believed**: {_cell(a.problem or '')}")
    for a in report.stray:
        lines.append(f"\n- :warning: attestation of {_cell(a.workload)} by {_cell(a.by)} "
                     f"**not believed**: {_cell(a.problem or '')}")
    for path, diff in report.patches.items():
        fence = _fence(diff)
        lines.extend(["", f"#### Suggested edit of {md(shown_path(path))}", "", fence + "diff",
                      *diff.splitlines(), fence])
    return "\n".join(lines) + "\n"


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``: CommonMark closes a fence
    only with one at least as long, so nothing in a manifest can end it early."""
    longest, run = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


__all__ = ["DUE_SOON", "NEVER", "OK", "OVERDUE", "ReviewEntry", "ReviewReport", "render_markdown",
           "render_text", "review", "state_of"]
