"""Manifest + templates -> provider-neutral desired state, with every semantic check.

Shape errors were found while loading; here we check meaning: the template exists and
accepts the resource's kind, the resource lives in the workload's account or project,
raw actions say why, escalation is approved in the config (:mod:`.approvals`), nothing
touches the tool's own secrets, vault or locks, and every federation trust root is one
the config lists (:mod:`.trust`). Every problem is reported, positioned.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from . import clock
from .catalogs import NAME_EXAMPLE, NAME_FORM, check
from .config import Config
from .durations import parse_duration
from .errors import Diagnostic, Position
from .manifest import (
    AWS_ATTACHMENT_SERVICES,
    AccessEntry,
    Attachment,
    AwsServiceFederation,
    GithubActionsFederation,
    KubernetesFederation,
    LoadedWorkload,
    format_instant,
    parse_instant,
)
from .model import (
    RETAIN,
    AttachedTrust,
    CompiledWorkload,
    ExpiredEntry,
    GithubTrust,
    Grant,
    KubernetesTrust,
    Marker,
    RotationPolicy,
    ServiceTrust,
    SourceMap,
    Trust,
)
from .resources import (
    GCP_BINDING,
    KINDS_BY_PROVIDER,
    ParsedResource,
    console_form_hint,
    parse_resource,
    structured,
    unmatched_reason,
)
from .templates import Template, TemplateSet

_AWS_ARN = re.compile(r"arn:aws[a-z-]*:(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):"
                      r"(?P<account>\d{12}|aws|):(?P<rest>.+)")
_WILDCARD = re.compile(r"[*?]")
# IAM policy variables (${aws:username}, ${aws:PrincipalTag/team}) are expanded by AWS per
# request, so a resource holding one names whatever the caller's session says, not one exact
# resource. No cloud's resource names contain these characters.
_VARIABLE = re.compile(r"[${}]")
# Raw AWS ARNs whose account field is legitimately empty or "aws": resources that belong to no
# account (S3 buckets and objects, whose names are global: render.py conditions them on
# aws:ResourceAccount; Route 53 and API Gateway management paths) and resources that AWS itself
# owns (managed policies, public AMIs and snapshots, AWS-owned SSM documents and public
# parameters, foundation models). Keyed by service; the value is the resource prefixes allowed,
# or None for any. Every other raw ARN must name the workload's account.
_NO_ACCOUNT: dict[str, tuple[str, ...] | None] = {
    "s3": None, "route53": None, "apigateway": None,
    "ec2": ("image/", "snapshot/"),
    "ssm": ("document/", "parameter/aws/"),
    "bedrock": ("foundation-model/",),
}
_AWS_OWNED: dict[str, tuple[str, ...]] = {"iam": ("policy/",)}


def _where(parsed: ParsedResource, lw: LoadedWorkload) -> str | None:
    """Why a resource is outside the workload's account/region/project, or None."""
    spec = lw.workload.spec
    if spec.provider == "aws" and spec.aws:
        if parsed.account and parsed.account != spec.aws.account:
            return f"is in account {parsed.account}, but the workload is in {spec.aws.account}"
        if parsed.region and parsed.region != spec.aws.region:
            return f"is in region {parsed.region}, but the workload is in {spec.aws.region}"
    if spec.provider == "gcp" and spec.gcp and parsed.project and parsed.project != spec.gcp.project:
        return f"is in project {parsed.project}, but the workload is in {spec.gcp.project}"
    if (spec.provider == "azure" and spec.azure and parsed.subscription
            and parsed.subscription != spec.azure.subscription.lower()):
        # One workload, one subscription: its roles are defined there and assignable there.
        return (f"is in subscription {parsed.subscription}, but the workload is in "
                f"{spec.azure.subscription}; list it in a workload whose spec.azure.subscription "
                f"is {parsed.subscription}, or correct the subscription id in the resource ID")
    return None


def _fill(pattern: str, parsed: ParsedResource) -> str:
    return (pattern.replace("{arn}", parsed.text).replace("{name}", parsed.name)
            .replace("{account}", parsed.account or "").replace("{region}", parsed.region or ""))


def _fill_condition(condition: dict[str, dict[str, str]], parsed: ParsedResource) -> str:
    filled = {op: {k: _fill(v, parsed) for k, v in sorted(kv.items())}
              for op, kv in sorted(condition.items())}
    return json.dumps(filled, sort_keys=True, separators=(",", ":"))


def variable_problem(text: str) -> str | None:
    """Why a listed resource holding ``$``, ``{`` or ``}`` (or a character that is not
    printable) is refused, or None."""
    if not text.isprintable():
        bad = next(c for c in text if not c.isprintable())
        return (f"resource {text!r} holds {bad!r}, a control or line-break character, which no "
                "cloud's resource names have; write the resource on one line")
    found = _VARIABLE.search(text)
    if found is None:
        return None
    return (f"resource {text!r} holds {found.group()!r}: IAM policy variables such as "
            "${aws:username} are filled in per request, so the grant would not name one exact "
            "resource; list each resource by its literal name")


def _aws_account_problem(service: str, account: str, rest: str, workload_account: str) -> str | None:
    """Why the account field of a raw AWS ARN is wrong for its service, or None."""
    if account == "aws":
        prefixes = _AWS_OWNED.get(service, ())
        if any(rest.startswith(p) for p in prefixes):
            return None
        return (f"names the account 'aws', which only AWS-owned resources such as managed "
                f"policies (arn:aws:iam::aws:policy/NAME) use; write the workload's account "
                f"{workload_account}")
    if account == "":
        allowed = _NO_ACCOUNT.get(service, ())
        if allowed is None or any(rest.startswith(p) for p in allowed):
            return None
        return (f"has an empty account, which would match the resource in any account; write "
                f"the workload's account: arn:aws:{service}:REGION:{workload_account}:{rest}")
    if account != workload_account:
        return f"is in account {account}, but the workload is in {workload_account}"
    return None


def _raw_resource_problem(provider: str, text: str, lw: LoadedWorkload) -> str | None:
    """Checks for resources of raw entries, which name no kind."""
    variable = variable_problem(text)
    if variable:
        return variable
    if _WILDCARD.search(text):
        return f"resource {text!r} has a wildcard; list exact resources"
    parsed = parse_resource(provider, text)
    if parsed is not None:
        return _where(parsed, lw)
    if provider == "aws":
        m = _AWS_ARN.fullmatch(text)
        if m is None:
            return f"resource {text!r} is not an ARN (arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE)"
        spec = lw.workload.spec.aws
        assert spec is not None
        account = _aws_account_problem(m["service"], m["account"], m["rest"], spec.account)
        if account:
            return account
        if m["region"] and m["region"] != spec.region:
            return f"is in region {m['region']}, but the workload is in {spec.region}"
        return None
    kinds = tuple(sorted(KINDS_BY_PROVIDER[provider]))
    return (f"resource {text!r} is not a resource this tool recognises on {provider}: "
            f"{unmatched_reason(provider, text, kinds)} (kinds: {', '.join(kinds)})")


def _target_problems(lw: LoadedWorkload) -> list[Diagnostic]:
    spec = lw.workload.spec
    out: list[Diagnostic] = []
    if getattr(spec, spec.provider) is None:
        out.append(Diagnostic(lw.position("spec", "provider"),
                              f"provider is {spec.provider} but spec.{spec.provider} is missing; "
                              f"add spec.{spec.provider} with where the identity lives"))
    for other in ("aws", "gcp", "azure"):
        if other != spec.provider and getattr(spec, other) is not None:
            out.append(Diagnostic(lw.position("spec", other, key=True),
                                  f"spec.{other} does not apply to an {spec.provider} workload; remove it"
                                  if spec.provider in ("aws", "azure") else
                                  f"spec.{other} does not apply to a {spec.provider} workload; remove it"))
    return out


# An adopted IAM role: its account, path and name (IAM names are 64 characters of
# [\w+=,.@-]; paths are /-delimited).
ADOPTED_ROLE = re.compile(r"arn:aws:iam::(?P<account>\d{12}):role(?P<path>/(?:[\x21-\x7e]*/)?)"
                          r"(?P<name>[\w+=,.@-]{1,64})")


# An adopted Azure user-assigned managed identity: its subscription, group and name.
ADOPTED_AZURE = re.compile(r"/subscriptions/(?P<subscription>[0-9a-fA-F-]{36})/resourceGroups/"
                           r"(?P<group>[-\w.()]{1,90})/providers/Microsoft\.ManagedIdentity/"
                           r"userAssignedIdentities/(?P<name>[a-zA-Z0-9][a-zA-Z0-9_-]{2,127})", re.IGNORECASE)


def _adopted_azure_problems(lw: LoadedWorkload, where: Callable[[], Position]) -> list[Diagnostic]:
    spec = lw.workload.spec
    m = ADOPTED_AZURE.fullmatch(spec.adopted or "")
    if m is None:
        return [Diagnostic(where(), f"spec.adopted {spec.adopted!r} is not a user-assigned managed "
                                  "identity's resource id; write it as `workload-ids adopt` does: "
                                  "/subscriptions/SUB/resourceGroups/GROUP/providers/"
                                  "Microsoft.ManagedIdentity/userAssignedIdentities/NAME")]
    assert spec.azure is not None  # _target_problems checked it first
    if m["subscription"].lower() != spec.azure.subscription.lower() or \
            m["group"].lower() != spec.azure.resourceGroup.lower():
        return [Diagnostic(where(), f"spec.adopted is an identity of subscription {m['subscription']}, "
                                  f"resource group {m['group']}, but spec.azure names "
                                  f"{spec.azure.subscription}, {spec.azure.resourceGroup}; they must match")]
    if spec.credentials.mode == "key":
        return [Diagnostic(where(), "spec.adopted names a managed identity, which holds no key: use "
                                  "mode: keyless")]
    return []


def _adopted_problems(lw: LoadedWorkload) -> list[Diagnostic]:
    """``spec.adopted`` names an existing identity of the workload's own target."""
    spec = lw.workload.spec
    if spec.adopted is None:
        return []

    def where() -> Position:  # for a message only: it parses the manifest again
        return lw.position("spec", "adopted")
    if spec.provider == "gcp":
        return _adopted_gcp_problems(lw, where)
    if spec.provider == "azure":
        return _adopted_azure_problems(lw, where)
    if spec.provider != "aws":
        return [Diagnostic(where(), f"spec.adopted is supported for aws, gcp and azure workloads only, "
                                  f"not {spec.provider}; remove it")]
    m = ADOPTED_ROLE.fullmatch(spec.adopted)
    if m is None:
        return [Diagnostic(where(), f"spec.adopted {spec.adopted!r} is not an IAM role ARN; write "
                                  "the role's ARN as `workload-ids adopt` does, e.g. "
                                  "arn:aws:iam::123456789012:role/NAME")]
    if m["account"] != lw.workload.target():
        return [Diagnostic(where(), f"spec.adopted is a role of account {m['account']}, but "
                                  f"spec.aws.account is {lw.workload.target()}; they must match")]
    if spec.credentials.mode == "key":
        return [Diagnostic(where(), "spec.adopted names a role, which holds no key: use mode: keyless")]
    return []


# An adopted GCP service account: its email names its project.
ADOPTED_ACCOUNT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]@(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])"
                             r"\.iam\.gserviceaccount\.com")


def _adopted_gcp_problems(lw: LoadedWorkload, where: Callable[[], Position]) -> list[Diagnostic]:
    spec = lw.workload.spec
    assert spec.adopted is not None
    m = ADOPTED_ACCOUNT.fullmatch(spec.adopted)
    if m is None:
        return [Diagnostic(where(), f"spec.adopted {spec.adopted!r} is not a service account's email; "
                                  "write it as `workload-ids adopt` does, e.g. "
                                  "legacy-deployer@acme-prod.iam.gserviceaccount.com")]
    if m["project"] != lw.workload.target():
        return [Diagnostic(where(), f"spec.adopted is a service account of project {m['project']}, but "
                                  f"spec.gcp.project is {lw.workload.target()}; they must match")]
    if spec.credentials.mode == "key":
        return [Diagnostic(where(), "spec.adopted service accounts are adopted keyless only: use mode: "
                                  "keyless (their keys stay theirs)")]
    return []


def _credential_problems(lw: LoadedWorkload) -> list[Diagnostic]:
    spec = lw.workload.spec
    creds = spec.credentials
    out: list[Diagnostic] = []
    if creds.mode == "key" and creds.federation:
        out.append(Diagnostic(lw.position("spec", "credentials", "federation", key=True),
                              "key mode takes no federation entries: a workload that can federate "
                              "should use mode: keyless and hold no key"))
    if creds.mode == "key" and creds.attachedTo:
        out.append(Diagnostic(lw.position("spec", "credentials", "attachedTo", key=True),
                              "key mode takes no attachedTo entries: an identity a runtime is "
                              "attached to gets its credentials from the cloud; use mode: keyless "
                              "and hold no key"))
    if creds.mode == "keyless" and not creds.federation and not creds.attachedTo:
        # An identity nobody may obtain credentials for: unusable, and real IAM refuses
        # an empty trust policy outright (the newcomer review's item 6).
        where = (("spec", "credentials") if "credentials" in lw.workload.spec.model_fields_set
                 else ("spec",))
        out.append(Diagnostic(lw.position(*where, key=True),
                              "a keyless workload needs at least one federation or attachedTo "
                              "entry: who may obtain its credentials (federation: github-actions, "
                              "kubernetes, or on AWS aws-service; attachedTo: the runtime that runs "
                              "as the identity, cloud-run or compute-engine on GCP, app-service on "
                              "Azure, lambda or ecs on AWS); with none, nobody could use the "
                              "identity. Add spec.credentials.federation or "
                              "spec.credentials.attachedTo, or use mode: key for a workload that "
                              "can do neither"))
    if creds.mode == "keyless" and creds.rotation is not None:
        out.append(Diagnostic(lw.position("spec", "credentials", "rotation", key=True),
                              "rotation applies to mode: key only; keyless workloads hold no key"))
    for i, fed in enumerate(creds.federation):
        fed_at = ("spec", "credentials", "federation", i)
        if fed.kind == "aws-service" and spec.provider != "aws":
            out.append(Diagnostic(lw.position(*fed_at),
                                  f"aws-service federation works on AWS only, not {spec.provider}"))
        if fed.kind == "github-actions" and (fed.ref is None) == (fed.environment is None):
            out.append(Diagnostic(lw.position(*fed_at),
                                  "github-actions federation needs exactly one of 'ref' "
                                  "(e.g. refs/heads/main) or 'environment'"))
        pool = getattr(fed, "workloadIdentityPool", None)
        if spec.provider == "gcp" and fed.kind != "aws-service" and pool is None:
            out.append(Diagnostic(lw.position(*fed_at), "GCP federation needs 'workloadIdentityPool' "
                                         "(projects/NUMBER/locations/global/workloadIdentityPools/POOL)"))
        if spec.provider != "gcp" and pool is not None:
            out.append(Diagnostic(lw.position("spec", "credentials", "federation", i,
                                              "workloadIdentityPool", key=True),
                                  f"workloadIdentityPool applies to GCP only, not {spec.provider}"))
    if creds.rotation and creds.rotation.maxAge and creds.rotation.overlap:
        from .durations import parse_duration
        if parse_duration(creds.rotation.overlap) >= parse_duration(creds.rotation.maxAge):
            out.append(Diagnostic(lw.position("spec", "credentials", "rotation", "overlap"),
                                  "overlap must be shorter than maxAge, or two keys would always "
                                  "be live"))
    return out


# The fields each attachment kind takes (the others are refused at their position), and
# those it needs.
_ATTACHMENT_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cloud-run": (("service", "region", "deployers"), ("service", "region")),
    "compute-engine": (("instance", "zone", "deployers"), ("instance", "zone")),
    "app-service": (("site", "deployers"), ("site",)),
    "lambda": (("function", "deployers"), ()),
    "ecs": (("cluster", "deployers"), ()),
}
_ATTACHMENT_EXAMPLES = {
    "gcp": "kind: cloud-run with service and region, or kind: compute-engine with instance and zone",
    "azure": "kind: app-service with site (the site's resource id)",
    "aws": "kind: lambda or kind: ecs",
}
_CLOUD_WORDS = {"aws": "AWS", "gcp": "GCP", "azure": "Azure"}
_GCP_MEMBER = re.compile(r"(serviceAccount|user|group):[^\s@:]+@[A-Za-z0-9.-]+")
_ENTRA_ID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _attachment_problems(lw: LoadedWorkload, config: Config) -> list[Diagnostic]:
    """Each attachedTo entry: a kind of the workload's cloud, with its fields, in the
    workload's own project or subscription, and deployers the cloud can grant."""
    from .manifest import ATTACHMENT_KINDS
    spec = lw.workload.spec
    provider = spec.provider
    out: list[Diagnostic] = []
    for i, att in enumerate(spec.credentials.attachedTo or []):
        at = ("spec", "credentials", "attachedTo", i)
        if att.kind in ("aks", "kubernetes"):
            out.append(Diagnostic(lw.position(*at, "kind"),
                                  "AKS and other Kubernetes workloads get this identity through "
                                  "workload identity federation, not attachment: write a federation "
                                  "entry instead (spec.credentials.federation: - kind: kubernetes, "
                                  "issuer: the cluster's OIDC issuer URL, namespace, serviceAccount)"))
            continue
        if att.kind == "ec2":
            out.append(Diagnostic(lw.position(*at, "kind"),
                                  "EC2 gets a role through an instance profile, which workload-ids "
                                  "does not create: write a federation entry of kind aws-service with "
                                  "service ec2.amazonaws.com (listed in trust.allowedAwsServices), and "
                                  "create the instance profile for the role yourself "
                                  "(aws iam create-instance-profile, add-role-to-instance-profile)"))
            continue
        cloud = ATTACHMENT_KINDS[att.kind]
        if cloud != provider:
            out.append(Diagnostic(lw.position(*at, "kind"),
                                  f"attachedTo kind {att.kind} is a runtime on {_CLOUD_WORDS[cloud]}, "
                                  f"but the workload is on {_CLOUD_WORDS[provider]}; there write "
                                  f"{_ATTACHMENT_EXAMPLES[provider]}"))
            continue
        takes, needs = _ATTACHMENT_FIELDS[att.kind]
        for field in ("service", "region", "instance", "zone", "site", "function", "cluster"):
            if field not in takes and getattr(att, field) is not None:
                out.append(Diagnostic(lw.position(*at, field, key=True),
                                      f"'{field}' does not go with kind {att.kind}, which takes "
                                      f"{', '.join(takes)}; remove it"))
        for field in needs:
            if getattr(att, field) is None:
                out.append(Diagnostic(lw.position(*at),
                                      f"attachedTo kind {att.kind} needs '{field}' "
                                      f"(it takes {', '.join(takes)})"))
        if att.site is not None and spec.azure is not None:
            subscription = att.site.split("/")[2]
            if subscription.lower() != spec.azure.subscription.lower():
                out.append(Diagnostic(lw.position(*at, "site"),
                                      f"site {att.site} is in subscription {subscription}, but the "
                                      f"workload is in {spec.azure.subscription}: its managed identity "
                                      "can be attached only to a site of its own subscription here; "
                                      "declare the workload in that subscription, or correct the id"))
        for d, deployer in enumerate(att.deployers):
            if provider == "aws":
                continue  # refused as a whole below, with the statement to write instead
            where = (*at, "deployers", d)
            if provider == "gcp" and not _GCP_MEMBER.fullmatch(deployer):
                out.append(Diagnostic(lw.position(*where),
                                      f"deployer {deployer!r} is not a GCP member: write "
                                      "serviceAccount:NAME@PROJECT.iam.gserviceaccount.com, "
                                      "user:EMAIL or group:EMAIL"))
            if provider == "azure" and not _ENTRA_ID.fullmatch(deployer):
                out.append(Diagnostic(lw.position(*where),
                                      f"deployer {deployer!r} is not an Entra object id: write "
                                      "the object id (a GUID) of the user, group or service "
                                      "principal that deploys the site"))
        if provider == "aws" and att.deployers:
            out.append(Diagnostic(lw.position(*at, "deployers", key=True),
                                  _aws_deployers(lw, att.kind, config)))
    return out


def _aws_deployers(lw: LoadedWorkload, kind: str, config: Config) -> str:
    """Why AWS takes no deployers, with the statement the deployer's own policy needs."""
    from .providers.aws.render import identity_name
    meta, spec = lw.workload.metadata, lw.workload.spec
    assert spec.aws is not None
    name = identity_name(config.aws.namePrefix, meta.environment, meta.name)
    arn = f"arn:aws:iam::{spec.aws.account}:role{config.aws.rolePath}{name}"
    statement = json.dumps({"Effect": "Allow", "Action": "iam:PassRole", "Resource": arn,
                            "Condition": {"StringEquals": {"iam:PassedToService":
                                                           AWS_ATTACHMENT_SERVICES[kind]}}})
    return ("deployers cannot be granted on AWS: who may pass the role to "
            f"{AWS_ATTACHMENT_SERVICES[kind].split('.')[0]} is said by iam:PassRole in the "
            "deployer's own policy, which workload-ids never edits. Remove 'deployers' and add to "
            f"the deployer's policy: {statement}")


def _target_fields(lw: LoadedWorkload) -> dict[str, str]:
    """The workload's account, region and subscription, for the forms a message suggests."""
    spec = lw.workload.spec
    return {"account": spec.aws.account if spec.aws else "ACCOUNT",
            "region": spec.aws.region if spec.aws else "REGION",
            "subscription": spec.azure.subscription if spec.azure else "SUBSCRIPTION_ID"}


def _entry_grants(lw: LoadedWorkload, index: int, entry: AccessEntry, templates: TemplateSet,
                  out: list[Diagnostic]) -> list[Grant]:
    provider = lw.workload.spec.provider
    at = ("spec", "access", index)
    grants: list[Grant] = []
    escalation = entry.escalation.reason if entry.escalation else None
    if (entry.template is None) == (entry.actions is None):
        both = entry.template is not None
        out.append(Diagnostic(lw.position(*at),
                              "this entry has both 'template' and raw 'actions': split it into two "
                              "entries" if both else
                              "this entry has neither 'template' nor raw 'actions': add one"))
        return grants
    if entry.template is not None:
        if entry.reason is not None:
            out.append(Diagnostic(lw.position(*at, "reason", key=True),
                                  "'reason' goes with raw 'actions'; a template states its purpose"))
        if entry.dataActions is not None:
            out.append(Diagnostic(lw.position(*at, "dataActions", key=True),
                                  "'dataActions' goes with raw 'actions', not with a template"))
        template = templates.get(entry.template)
        if template is None:
            close = difflib.get_close_matches(entry.template, templates.names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            out.append(Diagnostic(lw.position(*at, "template"),
                                  f"unknown template {entry.template!r}; {hint}"
                                  f"available: {', '.join(templates.names())}"))
            return grants
        accepted = template.kinds(provider)
        if not accepted:
            out.append(Diagnostic(lw.position(*at, "template"),
                                  f"template {template.name!r} has no {provider} definition"))
            return grants
        for r, text in enumerate(entry.resources):
            # Positions are looked up only for messages: a fleet compiles thousands of entries.
            def where(r: int = r) -> Position:
                return lw.position(*at, "resources", r)
            variable = variable_problem(text)
            if variable:
                out.append(Diagnostic(where(), variable))
                continue
            parsed = parse_resource(provider, text, accepted)
            if parsed is None:
                other = parse_resource(provider, text) if structured(provider, text) else None
                found = (console_form_hint(provider, text, accepted, _target_fields(lw)) or
                         (f"it is a {other.kind}" if other else
                          "it has a wildcard; list exact resources" if _WILDCARD.search(text) else
                          unmatched_reason(provider, text, accepted)))
                examples = "; ".join(KINDS_BY_PROVIDER[provider][k].example for k in accepted[:2])
                out.append(Diagnostic(where(), f"{template.name} does not accept {text!r}: {found}; "
                                             f"it accepts {', '.join(accepted)} (e.g. {examples})"))
                continue
            problem = _where(parsed, lw)
            if problem:
                out.append(Diagnostic(where(), f"resource {text!r} {problem}"))
                continue
            grants.extend(_template_grants(provider, template.name, index, parsed,
                                           getattr(template.spec, provider)[parsed.kind], escalation))
        return grants
    # Raw actions: the escape hatch, with a stated reason.
    actions = entry.actions or []
    if entry.reason is None:
        out.append(Diagnostic(lw.position(*at, "actions", key=True),
                              "raw 'actions' need a 'reason' saying why no template fits"))
    if entry.dataActions is not None and provider != "azure":
        out.append(Diagnostic(lw.position(*at, "dataActions", key=True),
                              "'dataActions' are Azure data-plane operations; use 'actions' here"))
    if not actions and not entry.dataActions:
        out.append(Diagnostic(lw.position(*at, "actions"), "'actions' must not be empty"))
    # Every name is looked up in the shipped catalogs and kept in its canonical spelling:
    # checks compare, and policies are written, in the one spelling the catalog gives.
    named: dict[str, list[str]] = {"actions": [], "dataActions": []}
    for a, action in enumerate([*actions, *(entry.dataActions or [])]):
        field: Literal["actions", "dataActions"] = "actions" if a < len(actions) else "dataActions"
        index_in_field = a if a < len(actions) else a - len(actions)
        if _WILDCARD.search(action):
            out.append(Diagnostic(lw.position(*at, field, index_in_field),
                                  f"action {action!r} has a wildcard; list exact actions"))
            continue
        if not NAME_FORM[provider].fullmatch(action):
            out.append(Diagnostic(lw.position(*at, field, index_in_field),
                                  f"{action!r} is not a {provider} action; write {NAME_EXAMPLE[provider]}"))
            continue
        looked_up = check(provider, action, azure_field=field, extra=templates.extra)
        if looked_up.message:
            out.append(Diagnostic(lw.position(*at, field, index_in_field), looked_up.message,
                                  looked_up.severity or "error"))
        if looked_up.name is not None:
            named[field].append(looked_up.name)
    for r, text in enumerate(entry.resources):
        problem = _raw_resource_problem(provider, text, lw)
        if problem:
            msg = problem if problem.startswith("resource") else f"resource {text!r} {problem}"
            out.append(Diagnostic(lw.position(*at, "resources", r), msg))
            continue
        kind = parse_resource(provider, text)
        binding = None
        if provider == "gcp" and kind is not None:
            # Bound as a template's grant on this kind would be: an unbound custom role would
            # read as granted in the plan, grant nothing, and sit in the project for anyone
            # with setIamPolicy to bind.
            binding = GCP_BINDING.get(kind.kind)
            if binding is None:
                out.append(Diagnostic(lw.position(*at, "resources", r),
                                      f"raw permissions on a {kind.kind} cannot be bound by this "
                                      "version; use a template that accepts it, or list the "
                                      "project (projects/PROJECT) if the permissions are "
                                      "checked there"))
                continue
        grants.append(Grant(
            source="raw", entry=index, listed=text, resource=text,
            kind=kind.kind if kind else None, actions=tuple(sorted(set(named["actions"]))),
            data_actions=tuple(sorted(set(named["dataActions"]))),
            binding=binding, escalation_reason=escalation))
    return grants


def _template_grants(provider: str, template: str, index: int, parsed: ParsedResource,
                     definition: object, escalation: str | None) -> list[Grant]:
    from .templates import AwsStatement, AzureGrant, GcpGrant
    if provider == "aws":
        assert isinstance(definition, list)
        out = []
        for st in definition:
            assert isinstance(st, AwsStatement)
            out.append(Grant(
                source=template, entry=index, listed=parsed.text, resource=_fill(st.resource, parsed),
                kind=parsed.kind, actions=tuple(sorted(set(st.actions))),
                condition=_fill_condition(st.condition, parsed) if st.condition else None,
                unscoped=st.unscoped, escalation_reason=escalation))
        return out
    if provider == "gcp":
        assert isinstance(definition, GcpGrant)
        return [Grant(source=template, entry=index, listed=parsed.text, resource=parsed.text,
                      kind=parsed.kind, actions=tuple(sorted(set(definition.permissions))),
                      binding=definition.binding, escalation_reason=escalation)]
    assert isinstance(definition, AzureGrant)
    return [Grant(source=template, entry=index, listed=parsed.text, resource=parsed.text,
                  kind=parsed.kind, actions=tuple(sorted(set(definition.actions))),
                  data_actions=tuple(sorted(set(definition.dataActions))),
                  escalation_reason=escalation)]


def template_grants(provider: str, template: Template, index: int, text: str,
                    escalation: str | None = None, *, kind: str | None = None) -> list[Grant]:
    """The grants ``template`` gives on the resource ``text`` as access entry ``index``,
    exactly as compile makes them; [] when the template takes no resource of that form
    (of ``kind``, when given). No placement checks: lint and explain compare and show what
    a template would give."""
    parsed = parse_resource(provider, text, (kind,) if kind else template.kinds(provider))
    if parsed is None:
        return []
    return _template_grants(provider, template.name, index, parsed,
                            getattr(template.spec, provider)[parsed.kind], escalation)


def compile_workload(lw: LoadedWorkload, templates: TemplateSet, config: Config | None = None
                     ) -> tuple[CompiledWorkload | None, list[Diagnostic]]:
    """Compile one manifest; return None and the problems if it has any errors.

    ``config`` holds the trust roots and the approvals; without one, nothing is approved
    and no trust root is listed (the defaults of an empty config)."""
    from .approvals import approval_diagnostics, namespace_diagnostics, outside_namespace
    from .config import ConfigFile
    from .trust import github_id_problems, trust_diagnostics
    if config is None:
        config = Config(ConfigFile(), Path.cwd(), None)
    problems = _target_problems(lw)
    if problems:
        return None, problems
    problems.extend(_credential_problems(lw))
    problems.extend(_attachment_problems(lw, config))
    problems.extend(_adopted_problems(lw))
    problems.extend(github_id_problems(lw))
    problems.extend(trust_diagnostics(lw, config))
    grants: list[Grant] = []
    expired: list[ExpiredEntry] = []
    now = clock.now()
    for index, entry in enumerate(lw.workload.spec.access):
        made = _entry_grants(lw, index, entry, templates, problems)
        if entry.expires is None and entry.approval is None:
            grants.extend(made)
            continue
        ended = _time_bound(lw, index, entry, now, config, problems)
        if ended is not None:
            # Checked like any entry (its errors still fail), but it grants nothing: apply
            # removes what it gave, on every cloud.
            expired.append(ended)
            continue
        grants.extend(replace(g, expires=entry.expires, approval=entry.approval) for g in made)
    frozen = tuple(grants)
    problems.extend(namespace_diagnostics(lw, frozen, config))
    provider = lw.workload.spec.provider
    problems.extend(approval_diagnostics(lw, outside_namespace(provider, frozen, config), config))
    from .markers import source_of
    source, source_problems = source_of(lw, config)
    problems.extend(source_problems)
    if any(d.severity in ("error", "guardrail") for d in problems):
        return None, problems
    meta, spec = lw.workload.metadata, lw.workload.spec
    deletion = spec.deletionPolicy or config.data.defaults.deletionPolicy
    # The marker carries the deletion policy and the adoption: cleanup reads them when the
    # manifest is gone, and only an authenticated marker is believed.
    marker = Marker(workload=meta.name, owner=meta.owner, environment=meta.environment,
                    digest=lw.workload.digest(), source=source,
                    deletion=RETAIN if deletion == RETAIN else "",
                    adopted="true" if spec.adopted else "")
    return _compiled(lw, frozen, marker, config, tuple(expired)), problems


def _entry_label(entry: AccessEntry) -> str:
    """``queue.consume on R1, R2`` / ``raw actions on R``: an entry, said in a message."""
    what = f"template {entry.template}" if entry.template else "raw actions"
    listed = ", ".join(entry.resources[:3]) + (f" (+{len(entry.resources) - 3})"
                                                if len(entry.resources) > 3 else "")
    return f"{what} on {listed}"


def _time_bound(lw: LoadedWorkload, index: int, entry: AccessEntry, now: datetime, config: Config,
                out: list[Diagnostic]) -> ExpiredEntry | None:
    """The checks of a time-bound entry (``expires`` with its ``approval``, within
    ``guardrails.maxGrantDuration``); the entry when its end has passed."""
    at = ("spec", "access", index)
    if entry.expires is None:
        out.append(Diagnostic(lw.position(*at, "approval", key=True),
                              "'approval' goes with 'expires': it names the change that approved a "
                              "time-bound grant. Add 'expires' (an RFC 3339 instant such as "
                              "2026-12-31T18:00:00Z) or remove 'approval'"))
        return None
    if entry.approval is None:
        out.append(Diagnostic(lw.position(*at, "expires", key=True),
                              "a time-bound grant needs 'approval': the change or ticket that "
                              "approved it (e.g. approval: CHG-4711), which plan, the audit trail "
                              "and the GCP condition cite; add it"))
    ends = parse_instant(entry.expires)
    if ends <= now:
        out.append(Diagnostic(lw.position(*at, "expires"),
                              f"expired at {entry.expires}; apply will remove it; delete the entry",
                              "warning"))
        return ExpiredEntry(index, entry.expires, entry.approval or "", _entry_label(entry))
    cap = parse_duration(config.guardrails.maxGrantDuration)
    if ends - now > cap:
        set_at = config.position("guardrails.maxGrantDuration")
        where = f" (set at {set_at})" if set_at else " (the default)"
        latest = format_instant(now + cap)
        out.append(Diagnostic(lw.position(*at, "expires"),
                              f"expires {entry.expires} is {_ahead(ends - now)} from now; "
                              f"guardrails.maxGrantDuration{where} allows "
                              f"{config.guardrails.maxGrantDuration}, so the latest end is {latest}. "
                              "Choose an earlier instant and renew the approval when it runs out; "
                              "the platform team sets the cap in workload-ids.yaml",
                              "guardrail"))
    return None


def _ahead(span: timedelta) -> str:
    days = span.days
    return f"{days} days" if days >= 2 else f"{int(span.total_seconds() // 3600)} hours"


def _compiled(lw: LoadedWorkload, grants: tuple[Grant, ...], marker: Marker,
              config: Config, expired: tuple[ExpiredEntry, ...] = ()) -> CompiledWorkload:
    """The frozen values everything below compile reads instead of the manifest."""
    spec, meta = lw.workload.spec, lw.workload.metadata
    rotation = spec.credentials.rotation
    key_mode = spec.credentials.mode == "key"
    placement: dict[str, str] = {}
    if spec.aws is not None:
        placement["region"] = spec.aws.region
    if spec.azure is not None:
        placement.update(resourceGroup=spec.azure.resourceGroup, location=spec.azure.location,
                         subscription=spec.azure.subscription)
    return CompiledWorkload(
        provider=spec.provider, target=lw.workload.target(), name=meta.name,
        environment=meta.environment, owner=meta.owner, description=meta.description,
        mode=spec.credentials.mode,
        trust=(*(_trust(f) for f in spec.credentials.federation),
               *(_attached(i, a) for i, a in enumerate(spec.credentials.attachedTo or []))),
        grants=grants, marker=marker,
        source=SourceMap(lw.source, frozenset({"rotation"} if rotation else ())),
        session_duration=spec.aws.maxSessionDuration if spec.aws else None,
        placement=placement,
        secret_name=secret_name(meta.name, meta.environment, meta.owner, spec.provider,
                                lw.workload.target(), config) if key_mode else "",
        rotation_policy=rotation_policy(rotation, config) if key_mode else None,
        management=spec.mode or config.data.defaults.mode,
        deletion_policy=spec.deletionPolicy or config.data.defaults.deletionPolicy,
        adopted=spec.adopted or "", expired=expired)


def _trust(fed: Any) -> Trust:
    if isinstance(fed, GithubActionsFederation):
        return GithubTrust(fed.repository, fed.ref, fed.environment, fed.workloadIdentityPool,
                           fed.repositoryId, fed.repositoryOwnerId)
    if isinstance(fed, KubernetesFederation):
        return KubernetesTrust(fed.issuer, fed.namespace, fed.serviceAccount, fed.workloadIdentityPool)
    assert isinstance(fed, AwsServiceFederation)
    return ServiceTrust(fed.service)


def _attached(index: int, att: Attachment) -> AttachedTrust:
    name = att.service or att.instance or att.site or att.function or att.cluster or ""
    return AttachedTrust(runtime=att.kind, name=name, location=att.region or att.zone or "",
                         deployers=tuple(sorted(set(att.deployers))),
                         service=AWS_ATTACHMENT_SERVICES.get(att.kind, ""), entry=index)


# A ``{placeholder}`` of credentials.secretName.
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def rotation_policy(own: Any, config: Config) -> RotationPolicy:
    """The manifest's rotation settings (``spec.credentials.rotation``, or None) over the
    config's defaults."""
    defaults = config.credentials.rotation
    verify = config.credentials.verify

    def pick(name: str, default: Any) -> Any:
        value = getattr(own, name) if own else None
        return value if value is not None else default

    return RotationPolicy(
        max_age=parse_duration(pick("maxAge", defaults.maxAge)),
        overlap=parse_duration(pick("overlap", defaults.overlap)),
        grace=parse_duration(pick("grace", defaults.grace)),
        retire_on_use=bool(pick("retireOnUse", defaults.retireOnUse)),
        verify_successes=verify.successes, verify_interval=parse_duration(verify.interval),
        verify_timeout=parse_duration(verify.timeout))


def secret_name(name: str, environment: str, owner: str, provider: str, target: str,
                config: Config) -> str:
    """The secret that receives a workload's key, from the config's pattern."""
    values = {"environment": environment, "name": name, "owner": owner, "provider": provider,
              "target": target}
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)),
                            config.credentials.secretName)


__all__ = ["PLACEHOLDER", "compile_workload", "rotation_policy", "secret_name", "template_grants",
           "variable_problem"]
