"""``workload-ids adopt IDENTITY... --out DIR``: take over identities the tool did not
create, safely.

For each identity (an IAM role ARN, a GCP service account's email, an Azure managed
identity's resource id, as ``discover`` shows them) one manifest is written that mirrors
what the identity holds: its federation from its trust where an entry maps back exactly,
its grants as templates where a template gives exactly the same permissions on the same
resources and as raw entries (``reason: adopted from …``) for the rest. The manifest
starts as ``mode: observe`` and ``deletionPolicy: retain``, so nothing changes until a
person flips it.

The cloud's adoption backend reads the identity and says what it holds in one shape
(:class:`~workload_ids.model.HeldPermissions`); this module maps that to templates,
writes and compiles the manifest, and proves it: the manifest grants nothing the
identity does not hold today (permission by resource, compared as the cloud compares
them), and what it would drop (wildcards, conditions, deny rules, trust it cannot
express) is listed in the output and as comments in the file. A manifest the config's
guardrails refuse (a denied action, an escalation without approval) is not written:
adoption must not launder a grant into an approved manifest.

``--apply`` then writes the marker, only when the proof shows no widening and no trust
change; afterwards ``plan`` shows no change for it. Identities that match nothing are an
error (exit 1), never "everything". A cloud whose backend has no adoption yet says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import clock
from .audit import auditor_for
from .calls import CallSeam
from .clouds import Clouds
from .compile import ADOPTED_ACCOUNT, ADOPTED_ROLE, template_grants
from .config import Config
from .errors import ConflictError, Diagnostic, GuardrailError, InputErrors, UserError, one_line
from .escalation import is_escalation
from .manifest import API_VERSION
from .model import (
    CompiledWorkload,
    GithubTrust,
    HeldIdentity,
    HeldPermissions,
    KubernetesTrust,
    ServiceTrust,
    Trust,
)
from .providers.interface import AdoptionBackend
from .templates import TemplateSet, load_templates
from .validate import validate

_SLUG_BAD = re.compile(r"[^a-z0-9-]+")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
OWNER_TAGS = ("owner", "team", "workload-ids-owner")
ENVIRONMENT_TAGS = ("environment", "env")
MAX_ROUNDS = 20


@dataclass
class Adoption:
    """One identity: the manifest written for it and the proof."""

    identity: str
    manifest: str = ""  # the file written ("" when refused before writing)
    workload: str = ""  # environment/name
    widening: list[str] = field(default_factory=list)  # rows the manifest would add
    trust_change: list[str] = field(default_factory=list)  # trust rows that would change
    dropped: list[str] = field(default_factory=list)  # what the manifest does not keep
    templates: list[str] = field(default_factory=list)  # templates matched exactly
    marked: bool = False
    refused: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The adoption as ``adopt --output json`` prints it."""
        return {"identity": self.identity, "manifest": self.manifest, "workload": self.workload,
                "widening": self.widening, "trustChange": self.trust_change, "dropped": self.dropped,
                "templates": self.templates, "marked": self.marked, "refused": self.refused,
                "notes": self.notes}


@dataclass
class AdoptReport:
    """Every identity adopted (or refused) in one run."""

    adoptions: list[Adoption]
    applied: bool
    calls: int = 0

    def as_json(self) -> dict[str, Any]:
        """The run as ``adopt --output json`` prints it."""
        return {"adoptions": [a.as_json() for a in self.adoptions], "applied": self.applied,
                "summary": {"identities": len(self.adoptions),
                            "written": sum(1 for a in self.adoptions if a.manifest),
                            "marked": sum(1 for a in self.adoptions if a.marked),
                            "refused": sum(1 for a in self.adoptions if a.refused),
                            "apiCalls": self.calls}}


_AZURE_IDENTITY = re.compile(r"/subscriptions/(?P<subscription>[0-9a-fA-F-]{36})/resourceGroups/[^/]+/"
                             r"providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+",
                             re.IGNORECASE)

# What discover shows for Azure applications and service principals: an object id, or
# the address workload-ids gives a key-mode application.
_AZURE_APPLICATION = re.compile(r"/subscriptions/[^/]+/applications/[^/]+"
                                r"|[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.IGNORECASE)


def _target_of(identity: str) -> tuple[str, str]:
    """(provider, target) of an identity id, or a UserError saying what is accepted."""
    m = ADOPTED_ROLE.fullmatch(identity)
    if m is not None:
        return "aws", m["account"]
    m = ADOPTED_ACCOUNT.fullmatch(identity)
    if m is not None:
        return "gcp", m["project"]
    m = _AZURE_IDENTITY.fullmatch(identity)
    if m is not None:
        return "azure", m["subscription"].lower()
    if _AZURE_APPLICATION.fullmatch(identity):
        raise UserError(f"{identity!r} is an Azure application or service principal: adopt takes over "
                        "user-assigned managed identities only (an application holds secrets or "
                        "certificates that adoption cannot vouch for); nothing was adopted")
    raise UserError(f"{identity!r} is not an identity adopt can read: give an IAM role ARN "
                    "(arn:aws:iam::ACCOUNT:role/PATH/NAME), a GCP service account's email "
                    "(NAME@PROJECT.iam.gserviceaccount.com) or an Azure user-assigned managed "
                    "identity's resource id (/subscriptions/.../userAssignedIdentities/NAME), as "
                    "`workload-ids discover` shows them in its id column; nothing was adopted")


def workload_name(role: str) -> str:
    """A manifest name from a role name: lower case, other characters as hyphens, 3-40."""
    text = _SLUG_BAD.sub("-", role.lower()).strip("-")
    text = re.sub("-{2,}", "-", text)[:40].strip("-")
    return text if len(text) >= 3 else f"role-{text}".strip("-")


def _tag_value(tags: dict[str, str], keys: Sequence[str], pattern: re.Pattern[str]) -> str | None:
    lowered = {k.lower(): v for k, v in tags.items()}
    for key in keys:
        value = lowered.get(key)
        if value and pattern.fullmatch(value):
            return value
    return None


def adopt(identities: Sequence[str], out: Path, config: Config, seam: CallSeam, *,
          owner: str | None = None, environment: str | None = None, region: str | None = None,
          apply: bool = False) -> AdoptReport:
    """See the module docstring. Raises UserError (exit 1) for ids that match nothing or
    that adopt cannot read, before anything is written; GuardrailError (exit 3) when a
    manifest is refused by the guardrails or ``--apply`` would widen or change trust."""
    if not identities:
        raise UserError("adopt needs at least one IDENTITY; nothing was adopted")
    if owner is not None and not _OWNER.fullmatch(owner):
        raise UserError(f"--owner {owner!r} is not an owner id: use the id of a person or group in "
                        "the owner directory")
    if environment is not None and not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?", environment):
        raise UserError(f"--environment {environment!r} must be 1-16 lowercase letters, digits and hyphens")
    start = seam.stats.total
    clouds = Clouds(config, seam)
    wanted = list(dict.fromkeys(identities))
    located = [(i, *_target_of(i)) for i in wanted]
    held: list[HeldIdentity] = []
    missing: list[str] = []
    for identity, provider, target in located:
        backend = clouds[provider].adoption
        if backend is None:
            raise UserError(f"{identity}: adopt cannot take over {provider} identities in this "
                            "version; nothing was adopted")
        found = backend.read(target, identity)
        if found is None:
            missing.append(identity)
        else:
            held.append(found)
    if missing:
        raise UserError(f"{', '.join(missing)}: no such identity (adopt matched nothing for "
                        f"{'it' if len(missing) == 1 else 'them'}); nothing was adopted. Check the id "
                        "against `workload-ids discover`")
    templates = load_templates(config.template_dirs(), config.catalog_extra())
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot make the folder ({exc.strerror or exc}); give a "
                        "folder adopt may write to; nothing was adopted") from None
    report = AdoptReport([], apply)
    names: dict[tuple[str, str], tuple[str, str]] = {}
    managed: dict[tuple[str, str], dict[tuple[str, str], tuple[str, str]]] = {}
    proven: list[tuple[Adoption, HeldIdentity, CompiledWorkload]] = []
    for h in held:
        try:
            result, compiled = _adopt_one(h, out, config, clouds, templates, names, managed,
                                          owner=owner, environment=environment, region=region)
        except OSError as exc:
            raise UserError(f"{h.address}: cannot write its manifest in {out} ({exc.strerror or exc}); "
                            "nothing was marked") from None
        report.adoptions.append(result)
        if compiled is not None:
            proven.append((result, h, compiled))
    # Marked only once every identity has its manifest and proof: an error on a later one
    # (a guardrail, a marker too long, a manifest already there) leaves no identity marked.
    if apply:
        for result, h, compiled in proven:
            _mark(result, h, compiled, config, clouds)
    report.calls = seam.stats.total - start
    return report


def _adopt_one(h: HeldIdentity, out: Path, config: Config, clouds: Clouds, templates: TemplateSet,
               names: dict[tuple[str, str], tuple[str, str]],
               managed: dict[tuple[str, str], dict[tuple[str, str], tuple[str, str]]], *,
               owner: str | None, environment: str | None,
               region: str | None) -> tuple[Adoption, CompiledWorkload | None]:
    """Write and prove one identity's manifest; returns what was compiled (None when refused)."""
    result = Adoption(h.address)
    if h.marker is not None:
        result.refused = (f"it already carries a workload-ids marker (workload "
                          f"{h.marker.environment}/{h.marker.workload}, owner {h.marker.owner}): it is "
                          "managed already, or its marker is forged; nothing was written")
        return result, None
    tags = dict(h.tags)
    who = owner or _tag_value(tags, OWNER_TAGS, _OWNER)
    if who is None:
        raise UserError(f"{h.address}: no owner: the identity has no owner tag ({', '.join(OWNER_TAGS)}); "
                        "pass --owner ID (a person or group in the owner directory); nothing was adopted")
    env = environment or _tag_value(tags, ENVIRONMENT_TAGS,
                                    re.compile(r"[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?")) or "adopted"
    name = workload_name(h.name)
    # One folder holds one manifest per environment and name, whatever the cloud: the same
    # name on another cloud (a legacy-deployer role and service account) gets the cloud's.
    clash = names.get((env, name))
    if clash is not None and clash[0] != h.provider:
        name = f"{name[:39 - len(h.provider)].rstrip('-')}-{h.provider}"
        clash = names.get((env, name))
    result.workload = f"{env}/{name}"
    if clash is not None:
        result.refused = (f"its manifest would be {env}/{name}, as for {clash[1]} in this run; adopt it "
                          "alone with another --environment")
        return result, None
    names[(env, name)] = (h.provider, h.address)
    # A managed identity of another workload with this name: adopting would make two
    # identities answer to one manifest name (and cleanup judge them as one).
    scope = managed.get((h.provider, h.target))
    if scope is None:  # one batch read per target, however many roles are adopted there
        scope = managed[(h.provider, h.target)] = {
            (o.marker.environment, o.marker.workload): (o.name, o.marker.owner)
            for o in clouds[h.provider].identities.observe_scope(h.target, settings=False)
            if o.marker is not None}
    if (env, name) in scope:
        other, other_owner = scope[(env, name)]
        raise ConflictError(
            f"{h.address}: its manifest would be {env}/{name}, but {other} in {h.target} is "
            f"already the identity of workload {env}/{name} (owner {other_owner}); "
            "nothing was adopted",
            "adopt it with another --environment, or rename that workload first")
    path = out / f"{env}-{name}.yaml"
    if path.exists():
        raise UserError(f"{path} exists already; adopt never overwrites a manifest: move it away or "
                        "choose another --out; nothing was adopted")

    backend = _backend(clouds, h)
    permissions = backend.permissions(h)
    trusts, trust_dropped = backend.federation(h)
    if not trusts:
        raise UserError(f"{h.address}: none of its trust statements can be written as federation "
                        f"entries ({'; '.join(trust_dropped) or 'it trusts nobody'}), and a manifest "
                        "needs at least one; nothing was adopted")
    spec = backend.spec(h, permissions, region)
    entries, matched, unmatched = _entries(h.provider, permissions, templates)
    result.templates = matched
    dropped: list[str] = [*permissions.dropped, *unmatched, *trust_dropped]
    meta = {"name": name, "owner": who, "environment": env}
    description = h.settings.get("description", "")
    if description and len(description) <= 256 and description.isprintable():
        meta["description"] = description
    elif description:
        dropped.append("its description (not one printable line of at most 256 characters)")

    # Compile until no entry fails a static check: an action or resource a manifest cannot
    # hold (another region, an unknown name) is dropped with the check's own words. A
    # guardrail refusal is never dropped: it refuses the adoption.
    for _ in range(MAX_ROUNDS):
        text, lines = _manifest_text(h, meta, spec, trusts, entries, dropped)
        path.write_text(text, encoding="utf-8")
        checked = validate([path], config)
        guardrails = [d for d in checked.diagnostics if d.severity == "guardrail"]
        errors = [d for d in checked.diagnostics if d.severity == "error"]
        if guardrails:
            path.unlink()
            raise GuardrailError(f"{h.address}: the identity holds what the config's guardrails refuse, so "
                                 "it is not adopted (an adopted manifest must pass the same checks as "
                                 "any other; adoption does not approve anything); nothing was written:\n"
                                 + "\n".join(f"  {_relative(d, path)}" for d in guardrails))
        fixable = [(d, lines.get(d.position.line)) for d in errors if d.position is not None]
        if not errors:
            break
        if any(where is None for _, where in fixable) or len(fixable) != len(errors):
            path.unlink()
            raise InputErrors([Diagnostic(d.position, f"{h.address}: {d.message}", d.severity)
                               for d in errors])
        for d, where in fixable:
            assert where is not None
            index, part, value = where
            entry = entries[index]
            if value in entry[part]:
                entry[part].remove(value)
                dropped.append(f"{part[:-1]} {value} of access entry {index + 1}: {d.message}")
        entries = [e for e in entries if e["resources"] and
                   (e.get("template") or e["actions"] or e.get("dataActions"))]
    else:  # pragma: no cover - every round drops at least one item
        path.unlink()
        raise UserError(f"{h.address}: its manifest did not settle; nothing was adopted")
    compiled = checked.compiled[0]
    result.manifest = str(path)
    result.dropped = dropped
    _prove(result, h, compiled, permissions, backend)
    return result, compiled


def _relative(d: Diagnostic, path: Path) -> str:
    return f"{path.name}:{d.position.line}:{d.position.column}: {d.message}" if d.position else d.message


def _backend(clouds: Clouds, h: HeldIdentity) -> AdoptionBackend:
    backend = clouds[h.provider].adoption
    if backend is None:  # pragma: no cover - read() came from this backend
        raise UserError(f"{h.address}: adopt cannot read {h.provider} identities in this version")
    return backend


def _entries(provider: str, permissions: HeldPermissions,
             templates: TemplateSet) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Access entries for the identity's exact grants: a template where one gives exactly the
    actions held on exactly the resources it names, raw entries for the rest."""
    exact = set(permissions.exact)
    consumed: set[tuple[str, str]] = set()
    by_template: dict[str, list[str]] = {}
    for resource in sorted({r for _, r in exact}):
        # Every template that gives only what the role holds there: the template's actions
        # on its resources are exactly held ones; the rest stays raw.
        fits: list[tuple[int, str, set[tuple[str, str]]]] = []
        for template in templates:
            if not template.kinds(provider):
                continue
            grants = template_grants(provider, template, 0, resource)
            if not grants or any(g.condition or g.unscoped for g in grants):
                continue
            pairs = {(permissions.key(a), g.resource) for g in grants
                     for a in (*g.actions, *g.data_actions)}
            if pairs <= exact and not pairs & consumed:
                fits.append((-len(pairs), template.name, pairs))
        # Widest first; then any other that still fits beside it (a project holds
        # logs.write and metrics.write at once, a bucket read and write).
        for _, name, pairs in sorted(fits):
            if not pairs & consumed:
                consumed |= pairs
                by_template.setdefault(name, []).append(resource)
    entries: list[dict[str, Any]] = [{"template": t, "resources": rs} for t, rs in by_template.items()]
    # The rest, raw: per policy, resources that hold the same actions share an entry.
    per_resource: dict[tuple[str, str], set[str]] = {}
    dropped: list[str] = []
    for (action, resource), source in permissions.exact.items():
        if (action, resource) in consumed:
            continue
        if "*" in resource or "?" in resource:
            dropped.append(f"{source}: {permissions.spelling.get(action, action)} on wildcard "
                           f"resource {resource} (no template names it exactly)")
        else:
            per_resource.setdefault((source, resource), set()).add(action)
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (source, resource), held_actions in sorted(per_resource.items()):
        grouped.setdefault((source, tuple(sorted(held_actions))), []).append(resource)
    for (source, actions), resources in grouped.items():
        for i in range(0, len(resources), 100):
            entry: dict[str, Any] = {"actions": [permissions.spelling.get(a, a) for a in actions
                                                 if a not in permissions.data],
                                     "resources": resources[i:i + 100],
                                     "reason": f"adopted from {source}"[:500]}
            data = [permissions.spelling.get(a, a) for a in actions if a in permissions.data]
            if data:  # Azure's data-plane operations have a list of their own
                entry["dataActions"] = data
            if any(is_escalation(provider, a) for a in actions):
                entry["escalation"] = (f"adopted: the identity held these actions through {source} "
                                       "before adoption; approve them or remove them")[:500]
            entries.append(entry)
    return entries, sorted(by_template), sorted(dropped)


def _q(value: object) -> str:
    """A YAML scalar: JSON's double-quoted strings and numbers are YAML too."""
    return json.dumps(value, ensure_ascii=False)


def _trust_entry(t: Trust) -> list[str]:
    if isinstance(t, GithubTrust):
        out = ["      - kind: github-actions", f"        repository: {_q(t.repository)}"]
        out.append(f"        ref: {_q(t.ref)}" if t.ref is not None else
                   f"        environment: {_q(t.environment)}")
        if t.repository_id is not None:
            out.append(f"        repositoryId: {t.repository_id}")
        if t.pool is not None:
            out.append(f"        workloadIdentityPool: {_q(t.pool)}")
        return out
    if isinstance(t, KubernetesTrust):
        return ["      - kind: kubernetes", f"        issuer: {_q(t.issuer)}",
                f"        namespace: {_q(t.namespace)}", f"        serviceAccount: {_q(t.service_account)}",
                *([f"        workloadIdentityPool: {_q(t.pool)}"] if t.pool is not None else [])]
    assert isinstance(t, ServiceTrust)
    return ["      - kind: aws-service", f"        service: {_q(t.service)}"]


def _manifest_text(h: HeldIdentity, meta: dict[str, str], spec: dict[str, str],
                   trusts: list[Trust], entries: list[dict[str, Any]], dropped: list[str]
                   ) -> tuple[str, dict[int, tuple[int, str, str]]]:
    """The manifest, and for each line holding an action or a resource (1-based) which
    entry and item it is, so a check's position says what to drop."""
    lines = [f"# Adopted by `workload-ids adopt` from {h.address} at {clock.format_time(clock.now())}.",
             "# It starts in observe mode (plan reports drift, apply changes nothing) and with",
             "# deletionPolicy retain (removing this file releases the identity, never deletes it).",
             "# Review it, then set spec.mode: manage to let apply converge the identity."]
    if dropped:
        lines.append("# What this manifest does NOT keep of the identity (it would be removed under "
                     "mode: manage); decide:")
        lines.extend(f"#   - {one_line(d)}" for d in dropped)
    else:
        lines.append("# Nothing the identity holds is left out.")
    lines += [f"apiVersion: {API_VERSION}", "kind: Workload", "metadata:"]
    lines += [f"  {k}: {_q(v)}" for k, v in meta.items()]
    lines += ["spec:", f"  provider: {h.provider}", "  mode: observe", "  deletionPolicy: retain",
              f"  adopted: {_q(h.address)}", f"  {h.provider}:"]
    lines += [f"    {k}: {_q(v)}" for k, v in spec.items()]
    lines += ["  credentials:", "    mode: keyless"]
    if trusts:
        lines.append("    federation:")
        for t in trusts:
            lines.extend(_trust_entry(t))
    else:
        lines.append("    federation: []")
    where: dict[int, tuple[int, str, str]] = {}
    lines.append("  access:" if entries else "  access: []")
    for i, e in enumerate(entries):
        if "template" in e:
            lines.append(f"    - template: {_q(e['template'])}")
        else:
            first = True
            for part in ("actions", "dataActions"):
                if part == "dataActions" and not e.get(part):
                    continue
                lines.append(f"    - {part}:" if first else f"      {part}:")
                lines[-1] += "" if e[part] else " []"
                first = False
                for a in e[part]:
                    lines.append(f"        - {_q(a)}")
                    where[len(lines)] = (i, part, a)
        lines.append("      resources:")
        for r in e["resources"]:
            lines.append(f"        - {_q(r)}")
            where[len(lines)] = (i, "resources", r)
        if "reason" in e:
            lines.append(f"      reason: {_q(e['reason'])}")
        if "escalation" in e:
            lines.append(f"      escalation: {{reason: {_q(e['escalation'])}}}")
    return "\n".join(lines) + "\n", where


def _prove(result: Adoption, h: HeldIdentity, compiled: CompiledWorkload,
           permissions: HeldPermissions, backend: AdoptionBackend) -> None:
    """What the compiled manifest would add (must be nothing) and change in trust."""
    want = permissions.wanted(compiled.grants)
    result.widening = [f"+ {a}  {r}" + (f" if {c}" if c else "") for a, r, c in permissions.not_held(want)]
    result.widening += [f"+ (lifts a Deny) {d}" for d in permissions.denies]
    result.trust_change = backend.trust_change(h, compiled)
    held_plain = set(permissions.exact)
    kept = {(a, r) for a, r, _ in want}
    lost = sorted(held_plain - kept)
    if lost:
        result.notes.append(f"{len(lost)} exact grant(s) of the identity are not in the manifest "
                            "(listed under what it does not keep)")


def _mark(result: Adoption, h: HeldIdentity, compiled: CompiledWorkload, config: Config,
          clouds: Clouds) -> None:
    """Write the marker, only when the proof shows no widening and no trust change."""
    if result.widening or result.trust_change:
        result.refused = ("--apply refused: a plan of the new manifest shows "
                          + " and ".join(x for x, rows in (("widening", result.widening),
                                                             ("a trust change", result.trust_change))
                                         if rows)
                          + "; the manifest was written for review, the identity was not marked")
        return
    cloud = clouds[h.provider]
    backend = _backend(clouds, h)
    auditor = auditor_for(config, "adopt", clouds.seam)
    auditor.callers[(h.provider, h.target)] = cloud.identities.verify_target(h.target)
    backend.mark(h, compiled.marker)
    result.marked = True
    # The owner and source the tool gave it, as apply records them (plan believes the trail).
    # A GCP account's marker replaces its description: the trail keeps the old one, which
    # cleanup puts back when it releases the account.
    before = {"description": h.settings.get("description", "")} if h.provider == "gcp" else None
    auditor.record(workload=compiled.label, provider=h.provider, target=h.target, identity=h.name,
                   action="adopt", before=before, detail={
                       "owner": compiled.marker.owner, "source": compiled.marker.source,
                       "address": h.address, "mode": compiled.management,
                       "deletionPolicy": compiled.deletion_policy,
                       "dropped": result.dropped})


def render_report(report: AdoptReport) -> str:
    """The run for people: per identity, the file, the proof and what is left out."""
    lines: list[str] = []
    for a in report.adoptions:
        head = f"{a.identity}: " + (f"wrote {a.manifest} ({a.workload})" if a.manifest else "not written")
        lines.append(head + (", marked as adopted" if a.marked else ""))
        if a.templates:
            lines.append(f"    templates matched exactly: {', '.join(a.templates)}")
        lines.append("    proof: " + ("grants nothing the identity does not hold today" if not a.widening
                                      else "WOULD GRANT what the identity does not hold:"))
        lines.extend(f"        {w}" for w in a.widening)
        if a.trust_change:
            lines.append("    trust: would change:")
            lines.extend(f"        {t}" for t in a.trust_change)
        elif a.manifest:
            lines.append("    trust: unchanged")
        if a.dropped:
            lines.append("    left out (would be removed under mode: manage; decide):")
            lines.extend(f"        - {d}" for d in a.dropped)
        lines.extend(f"    note: {n}" for n in a.notes)
        if a.refused:
            lines.append(f"    REFUSED: {a.refused}")
    marked = sum(1 for a in report.adoptions if a.marked)
    written = sum(1 for a in report.adoptions if a.manifest)
    lines.append("")
    if report.applied:
        lines.append(f"Adopt applied: {written} manifest(s) written, {marked} identit"
                     f"{'y' if marked == 1 else 'ies'} marked ({report.calls} API calls). "
                     "`workload-ids plan` on them should show no change.")
    else:
        lines.append(f"Adopt: {written} manifest(s) written, nothing marked ({report.calls} API calls). "
                     "Review them, then rerun with --apply to mark the identities as managed "
                     "(observe mode).")
    return "\n".join(one_line(line) for line in lines)
