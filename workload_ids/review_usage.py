"""Granted versus used, per access entry, for ``workload-ids review PATHS``.

Each entry of a manifest gets a verdict over ``review.window``: ``used``, ``unused`` (no
action of it used in the window), ``partly used``, ``too new`` (younger than the window:
never judged, as Repokid does) or ``cannot tell`` (the cloud gave nothing to judge by).
The answer per action is :func:`workload_ids.usage.was_used`, which counts as used
whatever the cloud cannot rule out, so an entry any of whose actions counts as used is
never suggested for removal.

Suggestions are edits of the manifest *text* (comments and layout kept), located through
the YAML node positions: drop an unused entry's lines; narrow a partly used template entry
to a smaller built-in template that covers every used action, or else to a raw entry that
lists them with a reason. The edited file is validated before it is offered; a file
whose edit does not validate gets no suggestion (and says so).
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import clock
from .errors import WorkloadIdsError, one_line
from .usage import IdentityUsage, UseAnswer, was_used

if TYPE_CHECKING:
    import yaml

    from .clouds import Clouds
    from .config import Config
    from .model import CompiledWorkload, DesiredIdentity, Grant
    from .templates import TemplateSet

USED, UNUSED, PARTLY, TOO_NEW, CANNOT = "used", "unused", "partly used", "too new", "cannot tell"
VERDICTS = (UNUSED, PARTLY, CANNOT, TOO_NEW, USED)
TO_LINE_END = 1 << 30  # an Edit's end_column: the rest of the line


@dataclass
class Edit:
    """Replace lines ``first``..``last`` (0-based, inclusive) of a file, or, with
    ``column``, the span ``[column, end_column)`` of line ``first``, by ``text``."""

    first: int
    last: int
    text: list[str]
    column: int | None = None
    end_column: int = 0
    workload: str = ""  # set on an entry's removal, to find a workload left with none


@dataclass
class FileEdits:
    """Every edit suggested for one manifest file."""

    path: str
    edits: list[Edit] = field(default_factory=list)
    # (workload label, entry index) -> what the suggestion does, in words
    says: dict[tuple[str, int], str] = field(default_factory=dict)
    # the workloads the file declares, as they are (an edit may only narrow them)
    workloads: list[CompiledWorkload] = field(default_factory=list)


def _actions_of(grants: Iterable[Grant]) -> list[str]:
    out: list[str] = []
    for g in grants:
        for a in (*g.actions, *g.data_actions):
            if a not in out:
                out.append(a)
    return out


def entry_age(cw: CompiledWorkload, grants: Sequence[Grant], records: Sequence[dict[str, Any]],
              created: datetime | None) -> tuple[datetime | None, str]:
    """When an entry's grants were first given: the earliest audited apply that added one
    of its actions for this workload, else the identity's creation time; (None, why) when
    neither is known."""
    actions = {a.lower() for a in _actions_of(grants)}
    earliest: datetime | None = None
    for r in records:
        if (r.get("command") != "apply" or r.get("result", "ok") != "ok" or r.get("workload") != cw.label
                or r.get("provider") != cw.provider or str(r.get("target", "")).lower() != cw.target):
            continue
        detail = r.get("detail") if isinstance(r.get("detail"), dict) else {}
        assert isinstance(detail, dict)
        perms = detail.get("permissions")
        added = perms.get("added") if isinstance(perms, dict) else None
        if not isinstance(added, list) or not any(
                isinstance(row, dict) and str(row.get("action", "")).lower() in actions for row in added):
            continue
        try:
            at = clock.parse_time(str(r.get("time", "")))
        except clock.ClockError:
            continue
        if earliest is None or at < earliest:
            earliest = at
    if earliest is not None:
        return earliest, "the audit trail's first apply that granted it"
    if created is not None:
        return created, "the identity's creation time (no audited apply granted it)"
    return None, "neither the audit trail nor the cloud says when it was granted"


def judge(usage: IdentityUsage | str, grants: Sequence[Grant], since: datetime,
          granted: datetime | None) -> dict[str, Any]:
    """The verdict of one entry: ``verdict``, ``lastUsed``, ``usage`` (the sentence it
    rests on), ``usedActions`` and ``unusedActions``."""
    actions = _actions_of(grants)
    if granted is None or granted > since:
        return {"verdict": TOO_NEW, "lastUsed": None, "usedActions": [], "unusedActions": [],
                "usage": "granted " + (f"at {clock.format_time(granted)}, within" if granted else
                                       "at an unknown time, so taken as within")
                + " the review window: not judged until it is older than the window"}
    if isinstance(usage, str):
        return {"verdict": CANNOT, "lastUsed": None, "usedActions": [], "unusedActions": [],
                "usage": usage}
    answers: dict[str, list[UseAnswer]] = {a: [] for a in actions}
    for g in grants:
        for a in (*g.actions, *g.data_actions):
            answers[a].append(was_used(usage, a, g.resource, since))
    used = [a for a in actions if any(x.used for x in answers[a])]
    unused = [a for a in actions if a not in used]
    last = max((x.last_used for xs in answers.values() for x in xs if x.last_used), default=None)
    blind = [a for a in actions if any(x.basis == "none" for x in answers[a])]
    if blind:
        verdict = CANNOT
        reason = answers[blind[0]][0].reason
    elif not unused:
        verdict, reason = USED, next(x.reason for x in answers[used[0]] if x.used) if used else ""
    elif not used:
        verdict, reason = UNUSED, answers[unused[0]][0].reason
    else:
        verdict = PARTLY
        reason = f"used: {', '.join(used)}; unused: {', '.join(unused)} ({answers[unused[0]][0].reason})"
    return {"verdict": verdict, "lastUsed": clock.format_time(last) if last else None,
            "usedActions": used, "unusedActions": unused, "usage": one_line(reason)}


def _template_actions(templates: TemplateSet, name: str, provider: str, kind: str | None) -> set[str] | None:
    t = templates.get(name)
    if t is None or kind is None:
        return None
    table: dict[str, Any] = getattr(t.spec, provider)
    spec = table.get(kind)
    if spec is None:
        return None
    if provider == "aws":
        return {a for st in spec for a in st.actions}
    if provider == "gcp":
        return set(spec.permissions)
    return {*spec.actions, *spec.dataActions}


def narrower_template(templates: TemplateSet, current: str, provider: str, kinds: set[str | None],
                      used: set[str], granted: set[str]) -> str | None:
    """The template with the fewest actions that accepts every kind of the entry, covers
    every used action and grants strictly less than the entry does; None if none does."""
    best: tuple[int, str] | None = None
    for t in templates:
        if t.name == current:
            continue
        sets = [_template_actions(templates, t.name, provider, k) for k in kinds]
        if any(s is None for s in sets):
            continue
        union = {a for s in sets if s for a in s}
        if used <= union and union < granted and (best is None or (len(union), t.name) < best):
            best = (len(union), t.name)
    return best[1] if best else None


def _item(doc_node: yaml.Node, loc: Sequence[str | int]) -> yaml.Node | None:
    import yaml
    node: yaml.Node | None = doc_node
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value
                         if isinstance(k, yaml.ScalarNode) and k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return None
    return node


def _last_line(node: yaml.Node) -> int:
    """The last line (0-based) holding text of ``node`` (a block mapping's end mark is the
    next token, maybe lines later past comments)."""
    import yaml
    if isinstance(node, yaml.MappingNode) and node.value:
        return _last_line(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.value and node.flow_style is False:
        return _last_line(node.value[-1])
    end = node.end_mark
    return end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line


def suggest(cw: CompiledWorkload, index: int, grants: Sequence[Grant], judged: dict[str, Any],
            templates: TemplateSet, edits: FileEdits) -> None:
    """Add the text edit (if any) for one judged entry to ``edits``."""
    import yaml
    doc = cw.source.document
    if doc.node is None:
        return
    item = _item(doc.node, ("spec", "access", index))
    if not isinstance(item, yaml.MappingNode):
        return
    key = (cw.label, index)
    verdict = judged["verdict"]
    if verdict == UNUSED:
        edits.edits.append(Edit(item.start_mark.line, _last_line(item), [], workload=cw.label))
        edits.says[key] = "drop this entry: none of its actions was used within the window"
        return
    if verdict != PARTLY:
        return
    template = grants[0].source if grants else ""
    fields = {k.value: (k, v) for k, v in item.value if isinstance(k, yaml.ScalarNode)}
    if "template" not in fields:
        edits.says[key] = "narrow it by hand to " + ", ".join(judged["usedActions"])
        return
    used = set(judged["usedActions"])
    kinds = {g.kind for g in grants}
    smaller = narrower_template(templates, template, cw.provider, kinds, used, set(_actions_of(grants)))
    k, v = fields["template"]
    if smaller is not None:
        edits.edits.append(Edit(v.start_mark.line, v.start_mark.line, [smaller],
                                v.start_mark.column, v.end_mark.column))
        edits.says[key] = f"narrow: template {template} -> {smaller} (covers every used action)"
        return
    data = {a for g in grants for a in g.data_actions}
    plain = [a for a in judged["usedActions"] if a not in data]
    data_used = [a for a in judged["usedActions"] if a in data]
    reason = (f"narrowed by workload-ids review from template {template} "
              f"(unused: {', '.join(judged['unusedActions'])})")
    if "reason" in fields:  # a template entry does not carry one; never two reason keys
        edits.says[key] = "narrow it by hand to " + ", ".join(judged["usedActions"])
        return
    indent = " " * k.start_mark.column
    first = f"actions: {json.dumps(plain)}" if plain else ""
    lines = [first] if first else []
    if data_used:
        lines.append(f"dataActions: {json.dumps(data_used)}")
    lines.append(f"reason: {json.dumps(reason[:500])}")
    text = [lines[0], *(indent + line for line in lines[1:])]
    edits.edits.append(Edit(k.start_mark.line, v.end_mark.line, text, k.start_mark.column,
                            v.end_mark.column))
    edits.says[key] = "narrow: replace template " + template + " by the used actions " \
        + ", ".join(judged["usedActions"])


def finish(cw: CompiledWorkload, edits: FileEdits) -> None:
    """When every entry of a workload is dropped, write ``access: []`` instead (an empty
    block would be null, which does not validate)."""
    import yaml
    doc = cw.source.document
    spec = _item(doc.node, ("spec",)) if doc.node is not None else None
    if not isinstance(spec, yaml.MappingNode):
        return
    found = next(((k, v) for k, v in spec.value if isinstance(k, yaml.ScalarNode) and k.value == "access"),
                 None)
    if found is None or not isinstance(found[1], yaml.SequenceNode):
        return
    key, seq = found
    drops = [e for e in edits.edits if e.workload == cw.label and e.column is None]
    if not seq.value or len(drops) < len(seq.value):
        return
    edits.edits = [e for e in edits.edits if e not in drops]
    edits.edits.append(Edit(key.start_mark.line, _last_line(seq), ["access: []"], key.start_mark.column,
                            TO_LINE_END))


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """``text`` with ``edits`` made (they do not overlap; applied bottom-up)."""
    lines = text.splitlines(keepends=True)
    for e in sorted(edits, key=lambda e: (e.first, e.column or 0), reverse=True):
        if e.column is None:
            del lines[e.first:e.last + 1]
            continue
        head = lines[e.first][:e.column]
        tail_line = lines[e.last]
        tail = tail_line[e.end_column:] if e.end_column < len(tail_line) else \
            ("\n" if tail_line.endswith("\n") else "")
        new = head + "\n".join(e.text) + tail
        lines[e.first:e.last + 1] = [new]
    return "".join(lines)


def shown_path(path: str) -> str:
    """``path`` relative to the working directory (``git apply`` there takes the patch;
    one outside it, with ``..``, needs ``patch -p1`` or ``git apply --unsafe-paths``)."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path


def patch(path: str, before: str, after: str) -> str:
    """A unified diff, ``a/FILE`` to ``b/FILE`` relative to the working directory."""
    name = shown_path(path).replace(os.sep, "/")
    return "".join(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                        f"a/{name}", f"b/{name}"))


def _pairs(cw: CompiledWorkload) -> set[tuple[str, str, str | None, str | None]]:
    """What a workload's grants allow, as (action, resource, binding, condition)."""
    return {(a, g.resource, g.binding, g.condition)
            for g in cw.grants for a in (*g.actions, *g.data_actions)}


def checked(path: str, after: str, config: Config,
            before: Sequence[CompiledWorkload] = ()) -> str | None:
    """None when ``after`` (the edited manifest) validates and, for each workload of
    ``before``, grants a subset of what it granted (so the edit can only narrow: a raw entry
    that would put an action on another resource form, or bind it elsewhere, is refused);
    else the first problem."""
    from .validate import validate
    with tempfile.TemporaryDirectory(prefix="wid-review-") as folder:
        copy = Path(folder) / Path(path).name
        copy.write_text(after, encoding="utf-8")
        try:
            result = validate([copy], config)
        except WorkloadIdsError as exc:
            return "the edited manifest would not validate: " + one_line(str(exc))
        if result.errors:
            return "the edited manifest would not validate: " + one_line(str(result.errors[0]))
    edited = {(cw.provider, cw.target, cw.label): cw for cw in result.compiled}
    for cw in before:
        now = edited.get((cw.provider, cw.target, cw.label))
        if now is None:
            return f"{cw.label} would no longer be declared"
        wider = sorted(_pairs(now) - _pairs(cw), key=str)
        if wider:
            action, resource, *_ = wider[0]
            return f"{cw.label} would be granted {action} on {resource} in a new form, which is not narrowing"
    return None


def usage_of(clouds: Clouds, desired: DesiredIdentity) -> IdentityUsage | str:
    """The workload's usage, read once, or why it could not be read."""
    from .errors import CloudError
    backend = clouds[desired.workload.provider].usage
    if backend is None:
        return f"{desired.workload.provider} usage is not read by this version: cannot tell"
    try:
        return backend.usage_for(desired)
    except (CloudError, WorkloadIdsError) as exc:
        return f"usage could not be read ({one_line(str(exc))}): cannot tell"


def window_since(config: Config, now: datetime) -> tuple[timedelta, datetime]:
    """The review window and its start."""
    from .durations import parse_duration
    window = parse_duration(config.review.window)
    return window, now - window


__all__ = ["CANNOT", "PARTLY", "TOO_NEW", "UNUSED", "USED", "VERDICTS", "Edit", "FileEdits",
           "apply_edits", "checked", "entry_age", "judge", "narrower_template", "patch", "suggest",
           "usage_of", "window_since"]


def write_patches(patches: dict[str, str], folder: Path) -> list[Path]:
    """Each manifest's diff as ``folder/NAME.patch`` (a manifest's path, separators as
    ``__``, so two files of one name in different folders do not collide)."""
    from .errors import UserError
    written: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, diff in patches.items():
            name = shown_path(path).replace(os.sep, "__").replace("/", "__").replace("..", "up")
            target = folder / f"{name}.patch"
            target.write_text(diff, encoding="utf-8")
            written.append(target)
    except OSError as exc:
        raise UserError(f"--diff-out {folder}: cannot write the suggested edits there "
                        f"({exc.strerror or exc}); pass a folder you can write to") from None
    return written
