"""Access templates: named, cloud-neutral intents (``queue.consume``) defined per cloud in
data files. Built-in ones ship in ``templates/``; users add folders through the config."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .catalogs import NO_EXTRA, Extra, check
from .errors import Diagnostic, InputErrors, Position
from .manifest import shape_diagnostics
from .resources import KINDS_BY_PROVIDER
from .yamlpos import Document, load_documents

# Actions no template may carry: removing the data store itself, purging it, or changing
# who may reach it. Deleting one message or object is data work and stays allowed.
_DESTRUCTIVE = {
    "aws": re.compile(
        r":(Delete(Queue|Bucket\w*|Table|Backup|Topic|Secret|LogGroup|LogStream|Repository|Function"
        r"|Alias|Parameters?|Stream)$|Purge|ScheduleKeyDeletion|DisableKey|(Put|Set|Delete|Update)"
        r"\w*(Policy|Acl|Permission)|AddPermission|RemovePermission|Create(Queue|Bucket|Table|Topic))",
        re.IGNORECASE),
    "gcp": re.compile(
        r"(setIamPolicy|\.(buckets|topics|subscriptions|secrets|datasets|tables|repositories"
        r"|cryptoKeys|keyRings|queues|functions|services|instances)\.(delete|create|update)$"
        r"|\.destroy$|\.purge$)"),
    "azure": re.compile(
        r"(Microsoft\.Authorization/|accessPolicies|listKeys|regenerateKey"
        r"|/(containers|queues|topics|tables|vaults|registries|sites|namespaces|components"
        r"|dataCollectionRules)/(delete|write)$)", re.IGNORECASE),
}


def destructive(provider: str, action: str) -> bool:
    """Whether ``action`` deletes or purges a data store, or changes who may reach it
    (AWS and Azure names compared without regard to case, as the clouds compare them)."""
    pattern = _DESTRUCTIVE.get(provider)
    return bool(pattern and pattern.search(action))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsStatement(_Strict):
    """One statement a template contributes per listed AWS resource."""

    actions: Annotated[list[str], Field(min_length=1)]
    resource: str = "{arn}"
    unscoped: bool = False
    condition: dict[str, dict[str, str]] | None = None


class GcpGrant(_Strict):
    """GCP permissions for one resource kind, and where they are bound."""

    permissions: Annotated[list[str], Field(min_length=1)]
    binding: Literal["condition", "resource", "project"] = "condition"


class AzureGrant(_Strict):
    """Azure control-plane actions and data-plane dataActions for one resource kind."""

    actions: list[str] = []
    dataActions: list[str] = []


class TemplateFile(_Strict):
    """The file form of a template."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$")]
    description: Annotated[str, Field(min_length=5)]
    aws: dict[str, list[AwsStatement]] = {}
    gcp: dict[str, GcpGrant] = {}
    azure: dict[str, AzureGrant] = {}


@dataclass(frozen=True, slots=True)
class Template:
    """A loaded template and the file it came from."""

    spec: TemplateFile
    path: str

    @property
    def name(self) -> str:
        """The template's name, as manifests refer to it."""
        return self.spec.name

    def kinds(self, provider: str) -> tuple[str, ...]:
        """Resource kinds this template accepts on ``provider``."""
        table: dict[str, Any] = getattr(self.spec, provider)
        return tuple(table)


def builtin_template_dir() -> Path:
    """Where the built-in templates are (see :mod:`workload_ids.bundled`)."""
    from .bundled import bundled_dir
    return bundled_dir("templates")


def _check_template(t: TemplateFile, doc: Document,
                    extra: Extra = NO_EXTRA) -> tuple[TemplateFile, list[Diagnostic]]:
    """Problems of one template, and the template with every name in its canonical
    spelling (so that grants, comparisons and policies all use one spelling)."""
    problems: list[Diagnostic] = []
    pos = doc.position(("name",))

    def bad(msg: str) -> None:
        problems.append(Diagnostic(pos, f"template {t.name}: {msg}"))

    def known(provider: str, name: str, at: tuple[str | int, ...],
              azure_field: Literal["actions", "dataActions"] = "actions") -> str:
        result = check(provider, name, azure_field=azure_field, extra=extra)
        if result.message:
            problems.append(Diagnostic(doc.position(at), f"template {t.name}: {result.message}",
                                       result.severity or "error"))
        return result.name or name

    for provider in ("aws", "gcp", "azure"):
        for kind in getattr(t, provider):
            if kind not in KINDS_BY_PROVIDER[provider]:
                bad(f"unknown {provider} resource kind {kind!r} "
                    f"(known: {', '.join(sorted(KINDS_BY_PROVIDER[provider]))})")
    aws: dict[str, list[AwsStatement]] = {}
    for kind, statements in t.aws.items():
        for i, st in enumerate(statements):
            actions = [known("aws", a, ("aws", kind, i, "actions", j)) for j, a in enumerate(st.actions)]
            for action in actions:
                if destructive("aws", action):
                    bad(f"{action!r} is destructive or administrative; templates may not hold it")
            if st.resource == "*" and not st.unscoped:
                bad('resource "*" needs unscoped: true (only for actions AWS cannot scope)')
            aws.setdefault(kind, []).append(st.model_copy(update={"actions": actions}))
    gcp: dict[str, GcpGrant] = {}
    for kind, grant in t.gcp.items():
        perms = [known("gcp", p, ("gcp", kind, "permissions", j)) for j, p in enumerate(grant.permissions)]
        for perm in perms:
            if destructive("gcp", perm):
                bad(f"{perm!r} is destructive or administrative; templates may not hold it")
        gcp[kind] = grant.model_copy(update={"permissions": perms})
    azure: dict[str, AzureGrant] = {}
    for kind, azure_grant in t.azure.items():
        lists: dict[str, list[str]] = {}
        for fld in ("actions", "dataActions"):
            written: list[str] = getattr(azure_grant, fld)
            lists[fld] = [known("azure", a, ("azure", kind, fld, j), fld)
                          for j, a in enumerate(written)]
            for action in lists[fld]:
                if destructive("azure", action):
                    bad(f"{action!r} is destructive or administrative; templates may not hold it")
        azure[kind] = azure_grant.model_copy(update=lists)
    return t.model_copy(update={"aws": aws, "gcp": gcp, "azure": azure}), problems


class TemplateSet:
    """Every template available to a run, by name."""

    def __init__(self, templates: dict[str, Template], warnings: list[Diagnostic] | None = None,
                 extra: Extra = NO_EXTRA) -> None:
        self._templates = templates
        # The config's catalog.extra the templates were checked with; raw entries use it too.
        self.extra = extra
        # Names accepted without proof (see workload_ids.catalogs): validate reports them.
        self.warnings = warnings or []

    def get(self, name: str) -> Template | None:
        """The template named ``name``; None when no template folder has it."""
        return self._templates.get(name)

    def names(self) -> list[str]:
        """Every template's name, sorted (for "did you mean" messages and listings)."""
        return sorted(self._templates)

    def __iter__(self) -> Any:
        return iter(self._templates.values())


_CACHE: dict[tuple[str, ...], TemplateSet] = {}


def load_templates(extra_dirs: Iterable[Path] = (), extra: Extra = NO_EXTRA) -> TemplateSet:
    """Load built-in templates and those in ``extra_dirs``; raise InputErrors on any problem.
    Every action name is checked against the shipped catalogs (and ``extra``, the config's
    ``catalog.extra``) and kept in its canonical spelling.

    A user template may not reuse a built-in name: the same name must mean the same thing
    in every repository that uses this tool.
    """
    dirs = [builtin_template_dir(), *extra_dirs]
    # Keyed by the files' names, sizes and times: a long-lived process sees edits.
    key = tuple(f"{p}:{st.st_size}:{st.st_mtime_ns}" for d in dirs if d.is_dir()
                for p in sorted(d.glob("*.y*ml")) for st in [p.stat()]) + tuple(map(str, dirs)) \
        + extra.key()
    if key in _CACHE:
        return _CACHE[key]
    templates: dict[str, Template] = {}
    problems: list[Diagnostic] = []
    for directory in dirs:
        if not directory.is_dir():
            problems.append(Diagnostic(Position(str(directory)),
                                       "template folder not found; fix 'templates' in the config"))
            continue
        for path in sorted(directory.glob("*.y*ml")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Diagnostic(Position(str(path)), f"cannot read the template: {exc}; "
                                                                "save it as UTF-8"))
                continue
            docs, yaml_problems = load_documents(str(path), text)
            problems.extend(yaml_problems)
            for doc in docs:
                if doc.value is None:
                    continue
                try:
                    spec = TemplateFile.model_validate(doc.value)
                except ValidationError as exc:
                    problems.extend(shape_diagnostics(exc, doc, TemplateFile))
                    continue
                pos = doc.position(("name",))
                spec, found = _check_template(spec, doc, extra)
                problems.extend(found)
                if spec.name in templates:
                    problems.append(Diagnostic(
                        pos, f"template {spec.name!r} is already defined in "
                             f"{templates[spec.name].path}; choose another name"))
                    continue
                templates[spec.name] = Template(spec, str(path))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise InputErrors(errors)
    loaded = TemplateSet(templates, [p for p in problems if p.severity != "error"], extra)
    _CACHE[key] = loaded
    return loaded
