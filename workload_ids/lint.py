"""Advice beyond validity: what a reviewer of a manifest would point out."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from .approvals import Needed, matching_approval, stale_approvals
from .config import Config
from .errors import Diagnostic
from .escalation import is_credential_read, is_escalation
from .manifest import FEDERATION_CAPABLE, LoadedWorkload
from .model import CompiledWorkload
from .templates import destructive
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
    # A raw entry whose actions a template already grants for that kind of resource.
    for index, entry in enumerate(spec.access):
        if entry.actions is None:
            continue
        # The grants hold the catalog's spelling, as the templates do.
        raw = {a for g in cw.grants if g.entry == index for a in (*g.actions, *g.data_actions)}
        kinds = {g.kind for g in cw.grants if g.entry == index and g.kind}
        for template in result.templates:
            for kind in kinds & set(template.kinds(cw.provider)):
                granted = _template_actions(template.spec, cw.provider, kind)
                if raw and raw <= granted:
                    warn(lw.position("spec", "access", index),
                         f"template {template.name} grants these actions on a {kind}; "
                         "use it instead of raw actions", "suggestion")
                    break
    if spec.credentials.mode == "key" and spec.runtime in FEDERATION_CAPABLE:
        warn(lw.position("spec", "runtime"),
             f"runtime {spec.runtime} can federate: use mode: keyless with a federation entry "
             "and hold no key at all")
    out.extend(trust_lint(lw))
    for i, fed in enumerate(spec.credentials.federation):
        ref = getattr(fed, "ref", None)
        if fed.kind == "github-actions" and ref and ref.startswith("refs/heads/") and \
                ref not in ("refs/heads/main", "refs/heads/master"):
            warn(lw.position("spec", "credentials", "federation", i, "ref"),
                 f"{ref} is not the default branch: anyone who can push to it can act as this "
                 "workload; prefer a protected branch or a GitHub environment")
    return out


def _template_actions(spec: object, provider: str, kind: str) -> set[str]:
    definition = getattr(spec, provider)[kind]
    if provider == "aws":
        return {a for st in definition for a in st.actions}
    if provider == "gcp":
        return set(definition.permissions)
    return set(definition.actions) | set(definition.dataActions)


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
