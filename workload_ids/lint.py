"""Advice beyond validity: what a reviewer of a manifest would point out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from .approvals import Needed, matching_approval, stale_approvals
from .compile import template_grants
from .config import Config
from .errors import Diagnostic
from .escalation import is_credential_read, is_escalation
from .manifest import FEDERATION_CAPABLE, GithubActionsFederation, LoadedWorkload
from .model import CompiledWorkload, Grant
from .templates import TemplateSet, destructive
from .trust import trust_lint

if TYPE_CHECKING:
    from .calls import CallSeam
from .validate import Validation


def _lint_workload(cw: CompiledWorkload, lw: LoadedWorkload, result: Validation,
                   config: Config) -> list[Diagnostic]:
    spec = lw.workload.spec
    out: list[Diagnostic] = []

    def warn(position: object, message: str, severity: str = "warning") -> None:
        out.append(Diagnostic(position, message, severity))  # type: ignore[arg-type]

    if not lw.workload.metadata.description:
        warn(lw.position("metadata"), "add a description: reviewers and the cleanup report show it",
             "suggestion")
    reported: set[tuple[int, str]] = set()
    for g in cw.grants:
        for action in (*g.actions, *g.data_actions):
            if (g.entry, action) in reported:
                continue
            if is_escalation(cw.provider, action):
                reported.add((g.entry, action))
                need = Needed(g.entry, action, g.listed, "escalation")
                index = matching_approval(config, lw.label, cw.provider, cw.target, need)
                approval = config.guardrails.approvedEscalations[index] if index is not None else None
                why = f"approved in the config: {approval.reason!r}" if approval else "not approved"
                stated = f"; the manifest says: {g.escalation_reason!r}" if g.escalation_reason else ""
                warn(lw.position("spec", "access", g.entry),
                     f"{action} can escalate privilege ({why}{stated}); review it on every change")
            if g.source == "raw" and destructive(cw.provider, action):
                reported.add((g.entry, action))
                warn(lw.position("spec", "access", g.entry),
                     f"{action} deletes or purges a data store, or changes who may reach it")
            elif g.source == "raw" and is_credential_read(cw.provider, action):
                reported.add((g.entry, action))
                warn(lw.position("spec", "access", g.entry),
                     f"{action} reads stored secret values: check that every listed resource is this "
                     "workload's own secret (the secret.read template says so by name)")
        if g.unscoped and (g.entry, "unscoped") not in reported:
            reported.add((g.entry, "unscoped"))
            condition = f" limited by {g.condition}" if g.condition else " with no condition available"
            warn(lw.position("spec", "access", g.entry),
                 f"{', '.join(g.actions)} cannot be limited to a resource on AWS; granted on "
                 f"\"*\"{condition}", "suggestion")
    # A raw entry that a template could replace, in whole or in part, without widening it.
    for index, entry in enumerate(spec.access):
        if entry.actions is not None:
            suggestion = template_suggestion(cw, index, result.templates)
            if suggestion:
                warn(lw.position("spec", "access", index), suggestion, "suggestion")
    if spec.credentials.mode == "key" and spec.runtime in FEDERATION_CAPABLE:
        warn(lw.position("spec", "runtime"),
             f"runtime {spec.runtime} can federate: use mode: keyless with a federation entry "
             "and hold no key at all")
    out.extend(_time_bound_lint(cw, lw))
    out.extend(trust_lint(lw))
    for i, fed in enumerate(spec.credentials.federation):
        ref = fed.ref if isinstance(fed, GithubActionsFederation) else None
        if ref and ref.startswith("refs/heads/") and \
                ref not in ("refs/heads/main", "refs/heads/master"):
            warn(lw.position("spec", "credentials", "federation", i, "ref"),
                 f"{ref} is not the default branch: anyone who can push to it can act as this "
                 "workload; prefer a protected branch or a GitHub environment")
    return out


# A time-bound entry ending within this window is pointed out: its owner renews the
# approval (a new `expires`) or lets it end, and nobody is surprised by the removal.
EXPIRY_WINDOW = timedelta(days=7)


def _time_bound_lint(cw: CompiledWorkload, lw: LoadedWorkload) -> list[Diagnostic]:
    """Time-bound entries that end within :data:`EXPIRY_WINDOW`, and on Azure (which has no
    time condition for role assignments) every one: its end is the next apply after it."""
    from .clock import now
    from .manifest import parse_instant
    out: list[Diagnostic] = []
    current = now()
    for index, entry in enumerate(lw.workload.spec.access):
        if entry.expires is None:
            continue
        left = parse_instant(entry.expires) - current
        if left <= timedelta(0):
            continue  # validate's warning says it: expired, apply removes it
        where = lw.position("spec", "access", index, "expires")
        if left <= EXPIRY_WINDOW:
            hours = int(left.total_seconds() // 3600)
            span = f"{hours // 24} days" if hours >= 48 else f"{hours} hours"
            out.append(Diagnostic(where, f"this grant ends in {span} (at {entry.expires}, approval "
                                         f"{entry.approval}): renew the approval and move 'expires', "
                                         "or let it end; the first apply after then removes it",
                                  "warning"))
        if cw.provider == "azure":
            out.append(Diagnostic(where, "Azure role assignments carry no time condition for these "
                                         f"actions: the grant lasts until the first apply after "
                                         f"{entry.expires} removes it; schedule apply (e.g. hourly) "
                                         "so that the end is kept", "suggestion"))
    return out


# A GCP binding on the project reaches every resource of the project; one under a condition or
# on the resource's own policy reaches the listed resource (and what it holds).
_BINDING_BREADTH = {None: 0, "condition": 0, "resource": 0, "project": 1}


def _covered(wanted: Grant, raw: Sequence[Grant]) -> bool:
    """Whether the raw entry's grants already give everything ``wanted`` gives: the same
    resource, no more actions, and no wider binding. An unscoped statement (``*``) is never
    covered: raw entries cannot name ``*``, so it would always be wider."""
    if wanted.unscoped:
        return False
    return any(r.resource == wanted.resource and set(wanted.actions) <= set(r.actions)
               and set(wanted.data_actions) <= set(r.data_actions)
               and (r.condition is None or r.condition == wanted.condition)
               and _BINDING_BREADTH.get(wanted.binding, 1) <= _BINDING_BREADTH.get(r.binding, 1)
               for r in raw)


def template_suggestion(cw: CompiledWorkload, index: int, templates: TemplateSet) -> str | None:
    """The template to suggest for raw access entry ``index``, as a message, or None.

    A template is suggested only when, on every resource the entry lists, it grants a subset
    of (or exactly) what the raw entry grants there: lint never pushes towards more
    privilege. Of several, the one leaving the fewest raw actions wins (then by name)."""
    raw = [g for g in cw.grants if g.entry == index]
    if not raw or any(g.kind is None for g in raw):
        return None
    raw_actions = {a for g in raw for a in (*g.actions, *g.data_actions)}
    # Each resource as the kind the raw entry was compiled as (a name can match several).
    listed = list(dict.fromkeys((g.listed, g.kind) for g in raw))
    best: tuple[int, str, set[str]] | None = None
    for template in templates:
        accepted = template.kinds(cw.provider)
        if not accepted or any(g.kind not in accepted for g in raw):
            continue
        wanted = [w for text, kind in listed
                  for w in template_grants(cw.provider, template, index, text, kind=kind)]
        if not wanted or not all(_covered(w, raw) for w in wanted):
            continue
        granted = {a for w in wanted for a in (*w.actions, *w.data_actions)}
        candidate = (len(raw_actions - granted), template.name, granted)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    if best is None:
        return None
    left, name, granted = best
    kinds = sorted({g.kind for g in raw if g.kind})
    on = f"a {kinds[0]}" if len(kinds) == 1 else f"these resources ({', '.join(kinds)})"
    if not left:
        return f"template {name} grants these actions on {on}; use it instead of raw actions"
    return (f"template {name} grants {', '.join(sorted(granted))} of these actions on {on} and "
            f"nothing more; use it for those and keep only "
            f"{', '.join(sorted(raw_actions - granted))} as raw actions")


_DAY = timedelta(days=1)


def key_age_findings(result: Validation, config: Config, seam: CallSeam) -> list[Diagnostic]:
    """Cloud checks for ``lint --cloud``: keys older than their workload's maxAge."""
    from .clock import now
    from .clouds import Clouds
    from .durations import format_duration
    from .keys.lifecycle import lifecycle
    out: list[Diagnostic] = []
    clouds = Clouds(config, seam)
    for cw in result.compiled:
        if not cw.key_mode:
            continue
        cloud = clouds[cw.provider]
        state = lifecycle(cloud.desired(cw), cloud).read()
        assert cw.rotation_policy is not None  # key mode
        limit = cw.rotation_policy.max_age
        for key in state.dated():
            age = now() - key.created
            if age > limit:
                out.append(Diagnostic(
                    cw.source.position("spec", "credentials"),
                    f"key {key.key_id} of {cw.label} is {format_duration(age - age % _DAY)} old, "
                    f"past its maxAge of {format_duration(limit)}; run `workload-ids rotate`",
                    "warning"))
    return out


def _boundary_opt_out(result: Validation, config: Config) -> list[Diagnostic]:
    """The config turned the default AWS permissions boundary off: say so once."""
    if config.aws_boundary() or not any(cw.provider == "aws" for cw in result.compiled):
        return []
    from .errors import Position
    where = config.position("guardrails.requirePermissionsBoundary") or Position(str(config.path))
    return [Diagnostic(where, "AWS roles and users get no permissions boundary "
                              "(guardrails.requirePermissionsBoundary: false): an escalation-capable "
                              "grant then reaches the whole account; remove the opt-out, or name a "
                              "boundary in aws.permissionsBoundary", "warning")]


def lint(result: Validation, config: Config, seam: CallSeam | None = None) -> list[Diagnostic]:
    """Warnings and suggestions for every valid workload, positioned. With ``seam``, also
    the checks that read the cloud (key ages)."""
    findings: list[Diagnostic] = [d for d in result.diagnostics if d.severity == "warning"]
    # Lint reads what the manifest says (raw entries, runtime, refs) beside what it compiled to.
    manifests = {id(lw.source): lw for lw in result.loaded}
    for cw in result.compiled:
        findings.extend(_lint_workload(cw, manifests[id(cw.source.document)], result, config))
    findings.extend(stale_approvals(result.compiled, config, whole_fleet=result.directory_run))
    findings.extend(_boundary_opt_out(result, config))
    if seam is not None:
        findings.extend(key_age_findings(result, config, seam))
    return sorted(findings, key=lambda d: (str(d.position.path) if d.position else "",
                                           d.position.line if d.position else 0))
