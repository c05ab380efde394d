"""Every static check, in one pass, with no cloud and no credentials.

Load config and templates, load manifests (shape), compile them (meaning), then check
what needs the whole set (duplicates), the config's guardrails, and the providers' own
limits. Problems are collected, never raised one at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .catalogs import compile_pattern, pattern_provider
from .compile import compile_workload
from .config import Config
from .errors import Diagnostic, InputErrors, Position
from .keys.checks import key_mode_checks
from .manifest import LoadedWorkload, load_workloads
from .model import CompiledWorkload
from .perf import relaxed_gc
from .providers import CLOUDS, get_cloud
from .templates import TemplateSet, load_templates


@dataclass
class Validation:
    """The outcome of the static checks."""

    compiled: list[CompiledWorkload]
    diagnostics: list[Diagnostic]
    files: int
    templates: TemplateSet
    directory_run: bool = False
    loaded: list[LoadedWorkload] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics that fail validation (errors and guardrail refusals); warnings are left out."""
        return [d for d in self.diagnostics if d.severity in ("error", "guardrail")]

    def raise_for_errors(self) -> None:
        """Raise InputErrors with every error at once, so the user fixes them in one pass."""
        if self.errors:
            raise InputErrors(self.errors)


def _duplicates(loaded: list[LoadedWorkload]) -> list[Diagnostic]:
    seen: dict[tuple[str, str, str, str], LoadedWorkload] = {}
    out: list[Diagnostic] = []
    for lw in loaded:
        first = seen.setdefault(lw.key, lw)
        if first is not lw:
            provider, target, env, name = lw.key
            out.append(Diagnostic(
                lw.position("metadata", "name"),
                f"workload {env}/{name} on {provider} {target} is already declared at "
                f"{first.position('metadata', 'name')}; each workload is declared once"))
    return out


def _guardrails(cw: CompiledWorkload, config: Config) -> list[Diagnostic]:
    rails = config.guardrails
    lw = cw.source
    out: list[Diagnostic] = []

    def refuse(position: object, message: str) -> None:
        out.append(Diagnostic(position, message, severity="guardrail"))  # type: ignore[arg-type]

    if rails.allowedTargets and cw.target not in rails.allowedTargets:
        refuse(lw.position("spec", cw.provider),
               f"{cw.provider} target {cw.target} is not in guardrails.allowedTargets "
               f"({', '.join(rails.allowedTargets)})")
    if rails.allowedEnvironments and cw.environment not in rails.allowedEnvironments:
        refuse(lw.position("metadata", "environment"),
               f"environment {cw.environment!r} is not in guardrails.allowedEnvironments "
               f"({', '.join(rails.allowedEnvironments)})")
    denied = _denied_patterns(tuple(rails.deniedActions)).get(cw.provider, ())
    reported: set[str] = set()
    for g in cw.grants:
        for action in (*g.actions, *g.data_actions):
            entry = next((text for text, rx in denied if rx.fullmatch(action)), None)
            if entry is not None and action not in reported:
                reported.add(action)
                by = "" if entry == action else f" ({entry})"
                refuse(lw.position("spec", "access", g.entry),
                       f"{action} is denied by guardrails.deniedActions{by} in the config")
    if rails.maxResourcesPerWorkload is not None:
        count = len({g.listed for g in cw.grants})
        if count > rails.maxResourcesPerWorkload:
            refuse(lw.position("spec", "access", key=True),
                   f"{cw.label} lists {count} resources; guardrails.maxResourcesPerWorkload "
                   f"allows {rails.maxResourcesPerWorkload}. Split the workload")
    return out


@cache
def _denied_patterns(entries: tuple[str, ...]) -> dict[str, tuple[tuple[str, re.Pattern[str]], ...]]:
    """``guardrails.deniedActions`` by cloud, each entry a glob compared the way its cloud
    compares names (AWS and Azure without regard to case, GCP exactly)."""
    out: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    for text in entries:
        provider = pattern_provider(text)
        if provider is not None:
            out.setdefault(provider, []).append((text, compile_pattern(provider, text)))
    return {p: tuple(v) for p, v in out.items()}


def denied_by(config: Config, provider: str, action: str) -> str | None:
    """The ``guardrails.deniedActions`` entry that denies ``action`` on ``provider``, or None."""
    denied = _denied_patterns(tuple(config.guardrails.deniedActions)).get(provider, ())
    return next((text for text, rx in denied if rx.fullmatch(action)), None)


def denied_action_problems(config: Config) -> list[Diagnostic]:
    """Config errors in ``guardrails.deniedActions``: an entry whose cloud cannot be told
    apart, or that matches no real name (a typo there would deny nothing, silently)."""
    from .catalogs import check, matching
    out: list[Diagnostic] = []
    extra = config.catalog_extra()
    for i, text in enumerate(config.guardrails.deniedActions):
        where = config.position(f"guardrails.deniedActions.{i}") or Position(str(config.path))
        provider = pattern_provider(text)
        if provider is None:
            out.append(Diagnostic(where, f"guardrails.deniedActions entry {text!r} names no cloud's action: "
                                         "write service:Action (AWS), service.resource.verb (GCP) or "
                                         "Microsoft.Provider/.../operation (Azure); * and ? match any "
                                         "characters"))
            continue
        if matching(provider, text, extra):
            continue
        if "*" in text or "?" in text:
            out.append(Diagnostic(where, f"guardrails.deniedActions entry {text!r} matches no {provider} "
                                         "name in the shipped catalog; correct the pattern"))
            continue
        found = check(provider, text, extra=extra)
        if found.severity == "warning" and found.name:
            continue  # an Azure provider the catalog cannot vouch for either way
        reason = found.message or f"{text!r} is not a {provider} name in the shipped catalog"
        out.append(Diagnostic(where, f"guardrails.deniedActions: {reason}"))
    return out


def validate(paths: Iterable[str | Path], config: Config, *, skip_non_manifests: bool = False,
             on_target: Callable[[str, str], None] | None = None) -> Validation:
    """Run every static check on ``paths``; see the module docstring. ``on_target`` hears
    of each (provider, target) as soon as a valid workload names it (a fleet plan starts
    reading that account then, while the other manifests are still being checked)."""
    from .markers import folders_resolved_once
    with relaxed_gc(), folders_resolved_once():
        return _validate(list(paths), config, skip_non_manifests, on_target)


def _validate(path_list: list[str | Path], config: Config, skip_non_manifests: bool,
              on_target: Callable[[str, str], None] | None) -> Validation:
    templates = load_templates(config.template_dirs(), config.catalog_extra())
    result = load_workloads(path_list, skip_non_manifests=skip_non_manifests)
    diagnostics = [*result.diagnostics, *templates.warnings]
    if config.guardrails.deniedActions:
        diagnostics.extend(denied_action_problems(config))
    compiled: list[CompiledWorkload] = []
    for lw in result.workloads:
        cw, problems = compile_workload(lw, templates, config)
        diagnostics.extend(problems)
        if cw is None:
            continue
        if on_target is not None:
            on_target(cw.provider, cw.target)
        diagnostics.extend(_guardrails(cw, config))
        diagnostics.extend(key_mode_checks(cw, config))
        if cw.provider in CLOUDS:
            diagnostics.extend(get_cloud(cw.provider).static_checks(cw, config))
        compiled.append(cw)
    diagnostics.extend(_duplicates(result.workloads))
    diagnostics.sort(key=lambda d: (d.position.path, d.position.line, d.position.column)
                     if d.position else ("", 0, 0))
    directory_run = any(Path(p).is_dir() for p in path_list)
    return Validation(compiled=compiled, diagnostics=diagnostics, files=result.files,
                      templates=templates, directory_run=directory_run, loaded=result.workloads)
