"""What ``workload-ids bootstrap`` runs: check the input, render each cloud, and with
``--apply`` create it (AWS: ``converge``; GCP: ``gcp_apply``; Azure: ``azure_apply``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..errors import CloudError, Diagnostic, InputErrors, Position, UserError
from . import PROVIDERS

_TARGETS = {
    "aws": (re.compile(r"^\d{12}$"), "a 12-digit AWS account id", "ACCOUNT_ID"),
    "gcp": (re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"), "a GCP project id", "PROJECT_ID"),
    "azure": (re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"),
              "an Azure subscription id (a GUID)", "SUBSCRIPTION_ID"),
}
_GCP_ROLE = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/roles/[A-Za-z0-9_.]{3,64}$")
# ARM's rules: 1-90 letters, digits, '_', '-', '.', '(' and ')', not ending in '.'.
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$", re.ASCII)
_LOCATION = re.compile(r"^[a-z][a-z0-9]{1,30}$")


@dataclass
class BootstrapResult:
    """Per cloud: what bootstrap prints (and with --apply, what it did: ``applied`` as
    lines, ``objects`` one entry per GCP or Azure object, created, updated or unchanged)."""

    plans: dict[str, Any] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    objects: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The bootstrap result as ``bootstrap --format json`` prints it."""
        return {**self.plans, "applied": self.applied, "objects": self.objects, "notes": self.notes}


def check_input(providers: Sequence[str], target: str | None, gcp_roles: Sequence[str], *,
                apply: bool = False, resource_group: str | None = None,
                location: str | None = None) -> list[str]:
    """The providers to render; raises InputErrors on anything wrong, before any call."""
    chosen = list(dict.fromkeys(providers)) or list(PROVIDERS)
    problems: list[Diagnostic] = []
    for name in chosen:
        if name not in PROVIDERS:
            problems.append(Diagnostic(Position("--provider"), f"unknown provider {name!r}; choose one of "
                                                               f"{', '.join(PROVIDERS)}"))
    if target is not None:
        if len(chosen) != 1:
            problems.append(Diagnostic(Position("--target"),
                                       "--target names one account, project or subscription: give "
                                       "exactly one --provider with it"))
        elif chosen[0] in _TARGETS and not _TARGETS[chosen[0]][0].match(target):
            problems.append(Diagnostic(Position("--target"), f"{target!r} is not {_TARGETS[chosen[0]][1]}"))
    if apply and target is None and set(chosen) & {"gcp", "azure"}:
        problems.append(Diagnostic(Position("--target"), "--apply on GCP or Azure needs the project "
                                   "or subscription: give --provider gcp|azure --target ID"))
    if apply and "azure" in chosen:
        if resource_group is None:
            problems.append(Diagnostic(Position("--resource-group"), "--apply on Azure needs the "
                                       "resource group for the tool's managed identities: add "
                                       "--resource-group NAME (an existing group)"))
        if location is None:
            problems.append(Diagnostic(Position("--location"), "--apply on Azure needs the identities' "
                                                               "location: add --location (e.g. westeurope)"))
    if resource_group is not None and not _RESOURCE_GROUP.match(resource_group):
        problems.append(Diagnostic(Position("--resource-group"), f"{resource_group!r} is not a "
                                   "resource group name (1-90 letters, digits, '_', '-', '.', '(', ')'; "
                                   "not ending in '.')"))
    if location is not None and not _LOCATION.match(location):
        problems.append(Diagnostic(Position("--location"), f"{location!r} is not an Azure location name "
                                                           "(lower case, e.g. westeurope)"))
    for role in gcp_roles:
        if not _GCP_ROLE.match(role):
            problems.append(Diagnostic(Position("--gcp-role"), f"{role!r} is not a custom role name "
                                                               "(projects/PROJECT/roles/ROLE_ID)"))
    if problems:
        raise InputErrors(problems)
    return chosen


def bootstrap(config: Config, seam: Any, providers: Sequence[str], target: str | None, *,
              apply: bool = False, gcp_roles: Sequence[str] = (), resource_group: str | None = None,
              location: str | None = None) -> BootstrapResult:
    """Render (and with ``apply``, create or converge) the tool's own identities."""
    chosen = check_input(providers, target, gcp_roles, apply=apply, resource_group=resource_group,
                         location=location)
    result = BootstrapResult()
    for name in chosen:
        placeholder = _TARGETS[name][2]
        if name == "aws":
            _aws(config, seam, target, apply, result)
        elif name == "gcp":
            from . import gcp
            plan = gcp.render(config, target or placeholder, gcp_roles)
            result.plans["gcp"] = plan
            result.texts.append(gcp.render_text(plan))
            if apply and target is not None:
                from . import gcp_apply
                _record(result, f"GCP project {target}", gcp_apply.converge(config, seam, plan))
                _lock_note(result, config, seam, "gcp")
        else:
            from . import azure
            plan = azure.render(config, target or placeholder)
            result.plans["azure"] = plan
            result.texts.append(azure.render_text(plan))
            if apply and target is not None and resource_group is not None and location is not None:
                from . import azure_apply
                _record(result, f"Azure subscription {target}",
                        azure_apply.converge(config, seam, plan, resource_group, location))
                _lock_note(result, config, seam, "azure")
    return result


def _record(result: BootstrapResult, where: str, steps: Sequence[Any]) -> None:
    result.objects.extend(step.as_json() for step in steps)
    result.applied.extend(step.line() for step in steps)
    changed = sum(1 for step in steps if step.action in ("created", "updated"))
    result.applied.append(f"{where}: {changed} created or updated, "
                          f"{sum(1 for step in steps if step.action == 'unchanged')} unchanged"
                          + ("; nothing changed" if not changed else ""))


def _aws(config: Config, seam: Any, target: str | None, apply: bool, result: BootstrapResult) -> None:
    from . import aws
    if not config.aws_boundary():
        where = config.position("guardrails.requirePermissionsBoundary") or Position(str(config.path))
        raise InputErrors([Diagnostic(where, "guardrails.requirePermissionsBoundary is false and "
                                             "aws.permissionsBoundary is unset, but the identities bootstrap "
                                             "writes may only create roles and users that carry a boundary; "
                                             "remove the opt-out (or name a boundary) and run it again")])
    account = target
    clients = None
    if apply:
        from ..providers.aws.clients import AwsClients
        clients = AwsClients(config, seam)
        account = account or clients.ambient_account()
        clients.caller(account)
    plan = aws.render(config, account or _TARGETS["aws"][2])
    sizes = [(i.policy_arn, i.size) for i in plan.identities] + [(plan.boundary.arn, plan.boundary.size)]
    if plan.audit_policy is not None:
        sizes.append((plan.audit_policy.arn, plan.audit_policy.size))
    for arn, size in sizes:
        if size > aws.MANAGED_POLICY_MAX:
            raise UserError(f"policy {arn} would be {size} characters; IAM allows {aws.MANAGED_POLICY_MAX} "
                            "(shorten aws.rolePath, credentials.secretName or audit.sink.url)")
    result.plans["aws"] = plan.as_json()
    result.texts.append(aws.render_text(plan))
    if clients is not None and account is not None:
        from .converge import converge, ensure_audit_key, ensure_signing_key
        try:
            sm, caller = clients.client(account, "secretsmanager"), clients.caller(account)
            # Both keys judged before the first write: a key bootstrap did not make stops
            # the run with nothing changed.
            for ensure in (ensure_signing_key, ensure_audit_key):
                ensure(sm, plan, caller, create=False)
            done = converge(clients.client(account, "iam"), plan)
            made = (ensure_signing_key(sm, plan, caller), ensure_audit_key(sm, plan, caller))
            done += [line for line in made if line]
        except CloudError as exc:
            # Whatever failed, the likely fix is the same: say it instead of the generic hint.
            raise CloudError("bootstrap", exc.code, exc.message,
                             "bootstrap needs an administrator of the account (it writes IAM "
                             "policies and roles); rerun converges", kind=exc.kind) from exc.__cause__
        result.applied.extend(done or [f"AWS account {account}: everything in place; nothing changed"])
        _lock_note(result, config, seam, "aws")


def _lock_note(result: BootstrapResult, config: Config, seam: Any, cloud: str) -> None:
    note = sink_lock_note(config, seam, cloud)
    if note:
        result.notes.append(note)


def sink_lock_note(config: Config, seam: Any, cloud: str) -> str | None:
    """Whether the audit sink on ``cloud`` keeps what is written (its lock), for --apply to
    report: bootstrap does not own the bucket or container, so it says what to set
    rather than setting it. Every changing command checks this again and refuses."""
    from .audit_sink import of as sink_of
    sink = sink_of(config)
    if sink is None or sink.cloud != cloud:
        return None
    from ..audit.sink import _register, _store_for
    try:
        store = _store_for(config, sink.url)
        _register(seam, store.provider)
        why = store.append_only(seam)
    except UserError as exc:
        return f"audit sink {sink.url}: {exc}"
    except Exception as exc:  # every store's seam translates; anything else: say why, never a traceback
        reason = f"{exc.code}: {exc.message}" if isinstance(exc, CloudError) else type(exc).__name__
        return (f"audit sink {sink.url}: cannot check its lock ({reason}); create it append-only "
                "(README, \"The audit log\"), then rerun")
    if why:
        return f"audit sink {sink.url}: {why}; until then every command that changes anything refuses"
    return None


__all__ = ["BootstrapResult", "bootstrap", "check_input"]
