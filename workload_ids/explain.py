"""What a manifest or a template grants, offline: ``explain`` and ``templates``.

``explain`` takes what ``validate`` compiled and renders each workload with its cloud's own
pure renderer (the one ``plan`` diffs against the cloud), then reads the rendered objects
back entry by entry: the actions, the exact resources and conditions each access entry
gives, and who may obtain the identity's credentials. Each entry is rendered on its own
(the workload with only that entry's grants), so what is shown for it is exactly what that
entry adds, in the cloud's own terms. Nothing here reads a cloud or imports an SDK.

``templates`` lists the templates a run can use and shows one template's grants per cloud,
with the resource forms each kind takes (``templates/kinds/``) and the grants filled in
for an example resource.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .compile import template_grants
from .config import Config
from .durations import format_duration
from .errors import UserError, one_line
from .manifest import AccessEntry
from .model import (
    AttachedTrust,
    CompiledWorkload,
    DesiredIdentity,
    GithubTrust,
    Grant,
    KubernetesTrust,
    ServiceTrust,
    Trust,
)
from .providers import CLOUDS, get_cloud
from .resources import KINDS_BY_PROVIDER
from .templates import Template, TemplateSet, builtin_template_dir
from .validate import Validation

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
Render = Callable[[CompiledWorkload, Config], DesiredIdentity]
TARGET_WORD = {"aws": "account", "gcp": "project", "azure": "subscription"}


@dataclass(frozen=True, slots=True)
class EntryView:
    """One access entry and what it gives on its cloud."""

    index: int
    position: str
    template: str | None
    reason: str | None
    escalation: str | None
    listed: tuple[str, ...]
    # Each item: actions, dataActions, resources, condition, binding, role, unscoped
    # (see :func:`_items`); the same keys on every cloud.
    grants: tuple[Mapping[str, Any], ...]
    # A time-bound entry: its end, its approval, and whether the end has passed.
    expires: str | None = None
    approval: str | None = None
    expired: bool = False

    def as_json(self) -> dict[str, Any]:
        """The entry as ``explain --output json`` prints it (``expires``, ``approval`` and
        ``expired`` only for a time-bound entry)."""
        out = {"entry": self.index, "position": self.position, "template": self.template,
               "reason": self.reason, "escalation": self.escalation, "resources": list(self.listed),
               "grants": [dict(g) for g in self.grants]}
        if self.expires is not None:
            out.update(expires=self.expires, approval=self.approval, expired=self.expired)
        return out


@dataclass(frozen=True, slots=True)
class Explanation:
    """What one workload would get on its cloud."""

    workload: CompiledWorkload
    identity: DesiredIdentity | None  # None on a cloud this version cannot render
    trust: tuple[Mapping[str, Any], ...]
    entries: tuple[EntryView, ...]
    key: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The workload as ``explain --output json`` prints it (one stable shape per cloud)."""
        cw, desired = self.workload, self.identity
        return {
            "workload": cw.label, "provider": cw.provider, "target": cw.target, "mode": cw.mode,
            "manifest": cw.source.path, "owner": cw.owner,
            "identity": None if desired is None else {
                "kind": desired.kind, "name": desired.name, "address": desired.address,
                "settings": {k: v for k, v in desired.settings.items()
                             if k not in ("description", "displayName")}},
            "trust": [dict(t) for t in self.trust],
            "key": dict(self.key) if self.key is not None else None,
            "access": [e.as_json() for e in self.entries],
            "documents": dict(desired.objects) if desired is not None else {},
        }


# --- explain -----------------------------------------------------------------------------------

def explain(result: Validation, config: Config) -> list[Explanation]:
    """Every valid workload of ``result`` as its cloud would hold it, entry by entry."""
    manifests = {id(lw.source): lw for lw in result.loaded}
    out: list[Explanation] = []
    for cw in result.compiled:
        lw = manifests[id(cw.source.document)]
        render: Render | None = get_cloud(cw.provider).render if cw.provider in CLOUDS else None
        desired = render(cw, config) if render is not None else None
        entries = tuple(_entry(cw, i, entry, render, config, desired)
                        for i, entry in enumerate(lw.workload.spec.access))
        key = None
        if cw.key_mode and cw.rotation_policy is not None:
            policy = cw.rotation_policy
            key = {"secret": cw.secret_name, "rotation": {
                "maxAge": format_duration(policy.max_age), "overlap": format_duration(policy.overlap),
                "grace": format_duration(policy.grace), "retireOnUse": policy.retire_on_use}}
        out.append(Explanation(cw, desired, tuple(_trust(cw, t, desired) for t in cw.trust), entries, key))
    return out


def _entry(cw: CompiledWorkload, index: int, entry: AccessEntry, render: Render | None,
           config: Config, desired: DesiredIdentity | None) -> EntryView:
    grants = tuple(g for g in cw.grants if g.entry == index)
    items: tuple[Mapping[str, Any], ...]
    if render is None or desired is None:
        items = tuple(_plain(g) for g in grants)
    else:
        # The workload with this entry's grants alone, through the same renderer: exactly
        # what the entry adds. A fresh cache, so the whole workload's rendering is untouched.
        alone = dataclasses.replace(cw, grants=grants, trust=(), rendered={})
        items = _items(cw.provider, render(alone, config).objects, grants, desired.objects)
    return EntryView(index, str(cw.source.position("spec", "access", index)), entry.template,
                     entry.reason, entry.escalation.reason if entry.escalation else None,
                     tuple(entry.resources), items, entry.expires, entry.approval,
                     any(e.entry == index for e in cw.expired))


def _item(actions: Iterable[str], resources: Iterable[str], *, data_actions: Iterable[str] = (),
          condition: Any = None, binding: str | None = None, role: str | None = None,
          unscoped: bool = False) -> dict[str, Any]:
    return {"actions": list(actions), "dataActions": list(data_actions), "resources": list(resources),
            "condition": condition, "binding": binding, "role": role, "unscoped": unscoped}


def _plain(g: Grant) -> dict[str, Any]:
    return _item(g.actions, [g.resource], data_actions=g.data_actions,
                 condition=json.loads(g.condition) if g.condition else None, binding=g.binding,
                 unscoped=g.unscoped)


def _items(provider: str, objects: Mapping[str, Any], grants: Sequence[Grant],
           whole: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The rendered objects of one entry as grant items: an AWS statement, a GCP role and
    where it is bound, an Azure role and where it is assigned."""
    out: list[Mapping[str, Any]] = []
    if provider == "aws":
        for st in objects["policy"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            out.append(_item(actions, resources, condition=st.get("Condition"),
                             unscoped=resources == ["*"]))
    elif provider == "gcp":
        roles = objects["roles"]
        for b in objects["projectBindings"]:
            permissions = roles[b["role"].rsplit("/", 1)[1]]["includedPermissions"]
            condition = b.get("condition", {}).get("expression")
            resources = sorted({g.resource for g in grants if g.binding == "condition"
                                and set(g.actions) == set(permissions)}) if condition else \
                [f"projects/{b['role'].split('/')[1]}"]
            out.append(_item(permissions, resources, condition=condition, role=b["role"],
                             binding="condition" if condition else "project"))
        # A resource's grants from every entry share one role there: name that one.
        shared = {b["resource"]: b["role"] for b in whole["resourceBindings"]}
        for b in objects["resourceBindings"]:
            permissions = roles[b["role"].rsplit("/", 1)[1]]["includedPermissions"]
            out.append(_item(permissions, [b["resource"]], binding="resource",
                             role=shared.get(b["resource"], b["role"])))
    elif provider == "azure":
        # Role names come from the whole workload: there a permission set is one role, shared
        # by every entry that asks for it.
        names = {_azure_permissions(r): r["roleName"] for r in whole["roles"].values()}
        for role in objects["roles"].values():
            perms = role["permissions"][0]
            name = names.get(_azure_permissions(role), role["roleName"])
            out.append(_item(perms["actions"], role["assignableScopes"], data_actions=perms["dataActions"],
                             binding="assignment", role=name))
    return tuple(out)


def _azure_permissions(role: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    perms = role["permissions"][0]
    return tuple(perms["actions"]), tuple(perms["dataActions"])


def _trust(cw: CompiledWorkload, t: Trust, desired: DesiredIdentity | None) -> dict[str, Any]:
    """One federation entry in words, and as the rendered identity holds it."""
    view: dict[str, Any] = {"kind": t.kind}
    if isinstance(t, GithubTrust):
        view.update(repository=t.repository, ref=t.ref, environment=t.environment,
                    repositoryId=t.repository_id, issuer=GITHUB_ISSUER, subject=t.subject())
    elif isinstance(t, KubernetesTrust):
        view.update(issuer=t.issuer, namespace=t.namespace, serviceAccount=t.service_account,
                    subject=t.subject())
    elif isinstance(t, ServiceTrust):
        view.update(service=t.service)
    elif isinstance(t, AttachedTrust):
        view.update(runtime=t.runtime, name=t.name or None, location=t.location or None,
                    deployers=list(t.deployers), runs=t.describe(),
                    **({"service": t.service} if t.service else {}))
    pool = getattr(t, "pool", None)
    if pool:
        view["pool"] = pool
    view["rendered"] = _rendered_trust(cw.provider, t, desired.objects) if desired is not None else None
    return view


def _rendered_trust(provider: str, t: Trust, objects: Mapping[str, Any]) -> Any:
    """The part of the rendered identity that admits ``t``: an AWS trust statement, a GCP
    principal bound to roles/iam.workloadIdentityUser, an Azure federated credential."""
    if isinstance(t, AttachedTrust):
        return _rendered_attachment(provider, t, objects)
    if provider == "aws":
        for st in objects.get("trust", {}).get("Statement", []):
            if isinstance(t, ServiceTrust):
                services = st["Principal"].get("Service", [])
                if t.service in (services if isinstance(services, list) else [services]):
                    return st
                continue
            equals = st.get("Condition", {}).get("StringEquals", {})
            subs: Any = next((v for k, v in equals.items() if k.endswith(":sub")), [])
            wanted_id = getattr(t, "repository_id", None)
            ids = [v for k, v in equals.items() if k.endswith(":repository_id")]
            if t.subject() in (subs if isinstance(subs, list) else [subs]) and \
                    ids == ([str(wanted_id)] if wanted_id is not None else []):
                return st
        return None
    if provider == "gcp" and not isinstance(t, ServiceTrust):
        for binding in objects.get("accountBindings", []):
            member = f"principal://iam.googleapis.com/{t.pool}/subject/{t.subject()}"
            if member in binding["members"]:
                return {"role": binding["role"], "member": member}
        return None
    if provider == "azure" and not isinstance(t, ServiceTrust):
        issuer = t.issuer if isinstance(t, KubernetesTrust) else GITHUB_ISSUER
        for name, credential in objects.get("federatedCredentials", {}).items():
            if credential["subject"] == t.subject() and credential["issuer"] == issuer:
                return {"name": name, **credential}
    return None


def _rendered_attachment(provider: str, t: AttachedTrust, objects: Mapping[str, Any]) -> Any:
    """What the rendered identity holds for an attachment: on AWS the trust statement of its
    service; on GCP and Azure the deployers' grants on the identity (the runtime itself is
    not recorded by either cloud)."""
    if provider == "aws":
        for st in objects.get("trust", {}).get("Statement", []):
            services = st["Principal"].get("Service", [])
            if t.service in (services if isinstance(services, list) else [services]):
                return st
        return None
    wanted = {d.lower() for d in t.deployers}
    if provider == "gcp":
        return [{"role": b["role"], "member": m} for b in objects.get("deployerBindings", [])
                for m in b["members"] if m.lower() in wanted]
    if provider == "azure":
        return [{"name": name, **doc} for name, doc in objects.get("deployerAssignments", {}).items()
                if doc["principalId"] in wanted]
    return None


def explain_json(explanations: Sequence[Explanation]) -> dict[str, Any]:
    """The one JSON document of ``explain --output json``."""
    return {"workloads": [e.as_json() for e in explanations],
            "summary": {"workloads": len(explanations),
                        "entries": sum(len(e.entries) for e in explanations)}}


# Who ends a time-bound grant, by cloud.
_ENDED_BY = {"aws": "IAM ends it (DateLessThan aws:CurrentTime)",
             "gcp": "IAM ends it (request.time condition), except on resource-level bindings, "
                    "which the first apply after then removes",
             "azure": "Azure cannot end it by itself; the first apply after then removes the "
                      "assignment"}


def render_explanation(explanations: Sequence[Explanation]) -> str:
    """``explain``'s text: per workload, its identity, who may obtain it, and each entry."""
    lines: list[str] = []
    for e in explanations:
        cw, desired = e.workload, e.identity
        lines.append(one_line(f"{cw.label}: {cw.provider} {TARGET_WORD.get(cw.provider, 'target')} "
                              f"{cw.target}, {cw.mode} ({cw.source.path})"))
        if desired is not None:
            lines.append(one_line(f"  identity: {desired.kind} {desired.name}"
                                  + (f" ({desired.address})" if desired.address != desired.name else "")))
            lines.extend(f"    {line}" for line in _settings(cw.provider, desired.settings))
        lines.append("  who may obtain credentials:")
        lines.extend(f"    {line}" for line in _who(e))
        lines.append("  access:")
        for entry in e.entries:
            what = f"template {entry.template}" if entry.template else "raw actions"
            lines.append(one_line(f"    [{entry.index}] {what} ({entry.position})"))
            if entry.reason:
                lines.append(one_line(f"        reason: {entry.reason}"))
            if entry.escalation:
                lines.append(one_line(f"        escalation, approved as: {entry.escalation}"))
            if entry.expires and entry.expired:
                lines.append(one_line(f"        expired at {entry.expires} (approval {entry.approval}): "
                                      "grants nothing; apply removes what it gave"))
            elif entry.expires:
                lines.append(one_line(f"        time-bound until {entry.expires} (approval "
                                      f"{entry.approval}): {_ENDED_BY[cw.provider]}"))
            for item in entry.grants:
                lines.extend(one_line(f"        {line}") for line in _grant_lines(cw.provider, item))
        lines.append("")
    count = sum(len(e.entries) for e in explanations)
    lines.append(f"{len(explanations)} workload(s), {count} access entr{'y' if count == 1 else 'ies'}; "
                 "offline: `workload-ids plan` compares this with what the cloud holds.")
    return "\n".join(lines)


def _settings(provider: str, settings: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    if provider == "aws":
        if settings.get("boundary"):
            out.append(f"permissions boundary: {settings['boundary']}")
        if settings.get("maxSessionDuration"):
            seconds = int(settings["maxSessionDuration"])
            out.append(f"sessions last at most {format_duration(timedelta(seconds=seconds))}")
    elif provider == "azure":
        out.append(f"resource group {settings.get('resourceGroup')}, location {settings.get('location')}")
    return [one_line(line) for line in out]


def _who(e: Explanation) -> list[str]:
    cw = e.workload
    if e.key is not None:
        rotation = e.key["rotation"]
        retire = " (less once the new key is seen in use)" if rotation["retireOnUse"] else ""
        return [one_line(f"whoever can read the secret {e.key['secret']} (credentials.secretName): it "
                         f"holds a long-lived key (key mode), replaced every {rotation['maxAge']}; the "
                         f"old key stays active {rotation['overlap']} beside the new one{retire}, then "
                         f"is deactivated and deleted {rotation['grace']} later")]
    if not e.trust:
        return ["nobody: there is no federation entry, so no workflow or service account can "
                "obtain credentials"]
    out: list[str] = []
    for t in e.trust:
        if t["kind"] == "github-actions":
            on = f"environment {t['environment']}" if t.get("environment") else f"ref {t['ref']}"
            repo_id = f" (repository id {t['repositoryId']})" if t.get("repositoryId") else ""
            out.append(f"- GitHub Actions workflows of {t['repository']}{repo_id} on {on}")
        elif t["kind"] == "kubernetes":
            out.append(f"- Kubernetes service account {t['serviceAccount']} in namespace {t['namespace']}")
        elif t["kind"] == "attached":
            out.extend(_attached_lines(cw.provider, cw.target, t))
            continue
        else:
            out.append(f"- the AWS service {t['service']}, acting for account {cw.target} only")
        if t.get("issuer"):
            out.append(f"    issuer {t['issuer']}, subject {t['subject']}")
        out.extend(f"    {line}" for line in _rendered_trust_lines(cw.provider, t))
    return [one_line(line) for line in out]


def _attached_lines(provider: str, target: str, t: Mapping[str, Any]) -> list[str]:
    """An attachment in words: the runtime that runs as the identity, and who may attach it."""
    out = [f"- {t['runs']}, which runs as this identity (attachedTo)"]
    if provider == "aws":
        out.append(f"    the AWS service {t['service']} assumes the role for any of its "
                   f"{'functions' if t['runtime'] == 'lambda' else 'tasks'} in account {target} "
                   "whose deployer may pass it (iam:PassRole, in the deployer's own policy)")
        out.extend(f"    {line}" for line in _rendered_trust_lines(provider, t))
        return out
    grant = ("roles/iam.serviceAccountUser on the service account" if provider == "gcp" else
             "Managed Identity Operator on the identity")
    if not t["deployers"]:
        out.append(f"    no deployers listed: only whoever already holds {grant} (or more, above it) "
                   "can attach it")
    for deployer in t["deployers"]:
        out.append(f"    deployed by {deployer}: may attach it to any runtime ({grant})")
    return out


def _rendered_trust_lines(provider: str, t: Mapping[str, Any]) -> list[str]:
    rendered = t.get("rendered")
    if not rendered:
        return []
    if provider == "aws":
        principal = rendered["Principal"]
        by = principal.get("Federated") or principal.get("Service")
        return [f"{rendered['Action']} by {by if isinstance(by, str) else ', '.join(by)} "
                f"if {_aws_condition(rendered.get('Condition'))}"]
    if provider == "gcp":
        return [f"{rendered['role']} on the service account for {rendered['member']}"]
    if provider == "azure":
        return [f"federated credential {rendered['name']}, audience {', '.join(rendered['audiences'])}"]
    return []


def _aws_condition(condition: Mapping[str, Any] | None) -> str:
    parts: list[str] = []
    for op, pairs in (condition or {}).items():
        for key, value in pairs.items():
            shown = value if isinstance(value, str) else "any of " + ", ".join(map(str, value))
            parts.append(f"{key} {op} {shown}")
    return " and ".join(parts)


def _grant_lines(provider: str, item: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    if item["actions"]:
        label = "permissions" if provider == "gcp" else "actions"
        out.append(f"{label}: {', '.join(item['actions'])}")
    if item["dataActions"]:
        out.append(f"dataActions: {', '.join(item['dataActions'])}")
    resources = ", ".join(item["resources"])
    if provider == "aws":
        out.append(f"  on {resources}" + ("  (AWS has no resource-level permission for these)"
                                         if item["unscoped"] else ""))
        if item["condition"]:
            out.append(f"  if {_aws_condition(item['condition'])}")
    elif provider == "gcp":
        role = f" (custom role {item['role']})" if item["role"] else ""
        if item["binding"] == "resource":
            out.append(f"  bound on {resources}, in its own IAM policy{role}")
        elif item["binding"] == "condition":
            out.append(f"  bound on the project{role}, for {resources}")
            out.append(f"  if {item['condition']}")
        else:
            out.append(f"  bound on the project {resources}, everywhere in it{role}")
    elif provider == "azure":
        role = f" (custom role '{item['role']}')" if item["role"] else ""
        out.append(f"  assigned at {resources}{role}")
    else:
        out.append(f"  on {resources}")
    return out


# --- templates ---------------------------------------------------------------------------------

def template_source(template: Template) -> str:
    """``built-in`` or the file a config's template folder holds it in."""
    builtin = builtin_template_dir().resolve()
    return "built-in" if Path(template.path).resolve().parent == builtin else template.path


def find_template(templates: TemplateSet, name: str) -> Template:
    """The template ``name``; a UserError with the closest name and the list otherwise."""
    found = templates.get(name)
    if found is None:
        close = difflib.get_close_matches(name, templates.names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"unknown template {name!r}; {hint}available: {', '.join(templates.names())}. "
                        "`workload-ids templates` lists them")
    return found


def templates_json(templates: TemplateSet, provider: str | None = None) -> dict[str, Any]:
    """``templates --output json``: every template with the kinds it takes per cloud."""
    clouds = [provider] if provider else list(TARGET_WORD)
    return {"templates": [
        {"name": t.name, "description": t.spec.description, "source": template_source(t),
         "providers": {p: list(t.kinds(p)) for p in clouds if t.kinds(p)}}
        for t in templates if any(t.kinds(p) for p in clouds)]}


def render_templates(templates: TemplateSet, provider: str | None = None) -> str:
    """``templates``'s text: each template, its purpose and the kinds it takes per cloud."""
    doc = templates_json(templates, provider)["templates"]
    lines: list[str] = []
    for t in doc:
        source = "" if t["source"] == "built-in" else f"  [{t['source']}]"
        lines.append(one_line(f"{t['name']}{source}"))
        lines.append(one_line(f"    {t['description']}"))
        lines.append(one_line("    " + "   ".join(f"{p}: {', '.join(kinds)}"
                                                  for p, kinds in t["providers"].items())))
    builtin = sum(1 for t in doc if t["source"] == "built-in")
    lines.append("")
    lines.append(f"{len(doc)} template(s) ({builtin} built-in, {len(doc) - builtin} from the config"
                 f"{', on ' + provider if provider else ''}); `workload-ids templates NAME` shows one's "
                 "grants and the resource forms it takes.")
    return "\n".join(lines)


def template_detail(template: Template, provider: str | None = None) -> dict[str, Any]:
    """One template per cloud: each kind's resource form and example, and its grants, as
    written and as compiled for the example resource."""
    clouds = [provider] if provider else [p for p in TARGET_WORD if template.kinds(p)]
    if provider and not template.kinds(provider):
        has = [p for p in TARGET_WORD if template.kinds(p)]
        raise UserError(f"template {template.name} has no {provider} definition (it has "
                        f"{', '.join(has) or 'none'}); leave out --provider to see all of it")
    providers: dict[str, list[dict[str, Any]]] = {}
    for p in clouds:
        kinds: list[dict[str, Any]] = []
        for kind in template.kinds(p):
            info = KINDS_BY_PROVIDER[p][kind]
            written = getattr(template.spec, p)[kind]
            example = template_grants(p, template, 0, info.example, kind=kind)
            kinds.append({"kind": kind, "form": info.form, "example": info.example,
                          "grants": _written(p, written, example)})
        providers[p] = kinds
    return {"name": template.name, "description": template.spec.description,
            "source": template_source(template), "providers": providers}


def _written(provider: str, written: Any, example: Sequence[Grant]) -> list[dict[str, Any]]:
    """A template's grants for one kind, as the file writes them, each with what it gives on
    the kind's example resource."""
    if provider == "aws":
        out = []
        for st, g in zip(written, example, strict=True):
            out.append({"actions": list(g.actions), "dataActions": [], "resource": st.resource,
                        "condition": st.condition, "unscoped": st.unscoped, "binding": None,
                        "example": {"resource": g.resource,
                                    "condition": json.loads(g.condition) if g.condition else None}})
        return out
    g = example[0]
    if provider == "gcp":
        return [{"actions": list(g.actions), "dataActions": [], "resource": "{arn}", "condition": None,
                 "unscoped": False, "binding": written.binding,
                 "example": {"resource": g.resource, "condition": None}}]
    return [{"actions": list(g.actions), "dataActions": list(g.data_actions), "resource": "{arn}",
             "condition": None, "unscoped": False, "binding": "assignment",
             "example": {"resource": g.resource, "condition": None}}]


_BINDING_WORDS = {
    "condition": "bound on the project under an IAM condition naming the resource (and what it holds)",
    "resource": "bound on the resource's own IAM policy",
    "project": "bound on the project, everywhere in it",
    "assignment": "a custom role assigned at the resource's scope",
}


def render_template_detail(detail: Mapping[str, Any]) -> str:
    """``templates NAME``'s text."""
    source = "built-in" if detail["source"] == "built-in" else f"from {detail['source']}"
    lines = [one_line(f"{detail['name']} ({source}): {detail['description']}")]
    for provider, kinds in detail["providers"].items():
        lines.append("")
        lines.append(provider)
        for k in kinds:
            lines.append(one_line(f"  {k['kind']}: {k['form']}"))
            lines.append(one_line(f"    e.g. {k['example']}"))
            for g in k["grants"]:
                label = "permissions" if provider == "gcp" else "actions"
                if g["actions"]:
                    lines.append(one_line(f"    {label}: {', '.join(g['actions'])}"))
                if g["dataActions"]:
                    lines.append(one_line(f"    dataActions: {', '.join(g['dataActions'])}"))
                if provider == "aws":
                    on = g["resource"] + (f" (e.g. {g['example']['resource']})"
                                          if g["example"]["resource"] != g["resource"] else "")
                    unscoped = "  (unscoped: AWS has no resource-level permission for these)"
                    lines.append(one_line(f"      on {on}" + (unscoped if g["unscoped"] else "")))
                    if g["example"]["condition"]:
                        lines.append(one_line(f"      if {_aws_condition(g['example']['condition'])}"))
                else:
                    lines.append(one_line(f"      {_BINDING_WORDS.get(g['binding'] or '', g['binding'])}"))
    return "\n".join(lines)


__all__ = ["EntryView", "Explanation", "explain", "explain_json", "find_template", "render_explanation",
           "render_template_detail", "render_templates", "template_detail", "templates_json"]

