"""A compiled workload as Azure objects. Pure: no SDK, no calls.

A keyless workload becomes one user-assigned managed identity in its resource group,
with our ownership tags; its access becomes custom role definitions holding exactly the
templates' actions and dataActions, assignable only at the listed resource scopes, and
one role assignment per listed resource; its federation entries become federated
identity credentials (at most 20 per identity).

As on GCP, one role definition per distinct permission set rather than one per workload:
assigned at every listed scope, a union role would give each resource the operations
listed for the others (write on the container listed for read only).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from ...config import Config
from ...errors import Diagnostic
from ...model import (
    AttachedTrust,
    CompiledWorkload,
    DesiredIdentity,
    GithubTrust,
    Grant,
    KubernetesTrust,
    Marker,
)

FEDERATED_CREDENTIALS_MAX = 20
IDENTITY_NAME_MAX = 128
TAG_VALUE_MAX = 256
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
AUDIENCE = "api://AzureADTokenExchange"
SUBSCRIPTION_TAG = "workload-ids:subscription"
# Our namespace for deterministic GUIDs (uuid5 of a name in it): role definitions and
# role assignments get the same id on every run, so a rerun finds what a crash left.
NAMESPACE = uuid.UUID("5b0d7a54-6f0c-4e63-9a51-8f3f3b7c2a10")


def _digest(*parts: str, length: int = 6) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def adopted_name(workload: CompiledWorkload) -> str | None:
    """The name of the managed identity ``spec.adopted`` names (validate checked its form,
    subscription and resource group), or None for an identity we name ourselves."""
    if not workload.adopted or workload.provider != "azure":
        return None
    return workload.adopted.rstrip("/").rsplit("/", 1)[-1]


def identity_name(prefix: str, environment: str, name: str) -> str:
    """``wid-prod-payments-api``: managed identity names allow 3-128 letters, digits,
    hyphens and underscores; environment and workload names fit well within that."""
    return "-".join(p for p in (prefix, environment, name) if p)[:IDENTITY_NAME_MAX]


def not_ours(prefix: str, name: str, marker: Marker) -> str | None:
    """Why a managed identity or application tagged with ``marker`` is not one the tool
    made, or None. Tags are writable by a Tag Contributor; the name is fixed at creation,
    so only the name we give the marker's workload is believed. An adopted identity keeps
    the name it had: only its MAC (checked by the read, which treats an unauthenticated
    adopted marker as forged) vouches for it."""
    if marker.adopted:
        return None
    want = identity_name(prefix, marker.environment, marker.workload)
    if name != want:
        return (f"its name is not {want}, the name workload-ids gives "
                f"{marker.environment}/{marker.workload}")
    return None


def role_definition_id(subscription: str, environment: str, name: str, entries: Sequence[str]) -> str:
    """uuid5 of the workload and the manifest entries (template, position, resource kind) a
    permission set comes from, not of its actions: a template whose actions change keeps
    its role, which a mover then updates in place."""
    parts = ["role", subscription.lower(), environment, name, *sorted(entries)]
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def role_name(environment: str, name: str, rid: str) -> str:
    """Custom role names are unique in a tenant: the workload and the GUID's start."""
    return f"workload-ids {environment}/{name} {rid[:8]}"


def role_assignment_id(workload: str, role: str, scope: str) -> str:
    """uuid5 of workload, role and scope: one assignment per listed resource."""
    return str(uuid.uuid5(NAMESPACE, f"assignment/{workload}/{role}/{scope.lower()}"))


# The built-in role that lets a principal assign a user-assigned managed identity to a
# resource (Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action), by the GUID
# it has in every tenant.
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"


def identity_scope(subscription: str, group: str, name: str) -> str:
    """A managed identity's resource id, as we write scopes at it (ARM's reads may spell
    ``resourcegroups`` in lower case; assignments are made at this spelling)."""
    return (f"/subscriptions/{subscription}/resourceGroups/{group}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}")


def deployer_assignment_id(workload: str, principal: str, scope: str) -> str:
    """uuid5 of workload, deployer and the identity's scope: one assignment per deployer."""
    return str(uuid.uuid5(NAMESPACE, f"deployer/{workload}/{principal.lower()}/{scope.lower()}"))


def deployer_assignments(workload: CompiledWorkload, scope: str) -> dict[str, dict[str, Any]]:
    """Managed Identity Operator at the identity's own scope for each attachedTo deployer:
    they may attach this identity to a site, and no other identity (at the resource group
    or subscription, the role would cover every identity there)."""
    subscription = workload.placement["subscription"]
    role = f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/" \
           f"{MANAGED_IDENTITY_OPERATOR}"
    deployers = sorted({d.lower() for t in workload.trust if isinstance(t, AttachedTrust)
                        for d in t.deployers})
    return {deployer_assignment_id(workload.label, d, scope): {
        "scope": scope, "roleDefinitionId": role, "principalId": d} for d in deployers}


def federated_credentials(workload: CompiledWorkload) -> dict[str, dict[str, Any]]:
    """Federated identity credentials by name (``fic-DIGEST``, deterministic)."""
    out: dict[str, dict[str, Any]] = {}
    for fed in workload.trust:
        if isinstance(fed, GithubTrust):
            issuer = GITHUB_ISSUER
        elif isinstance(fed, KubernetesTrust):
            issuer = fed.issuer
        else:
            continue
        subject = fed.subject()
        out[f"fic-{_digest(issuer, subject, length=12)}"] = {
            "issuer": issuer, "subject": subject, "audiences": [AUDIENCE]}
    return dict(sorted(out.items()))


def desired_objects(workload: CompiledWorkload, prefix: str) -> dict[str, Any]:
    """Every object the workload's identity consists of, in plain JSON values."""
    subscription, group = workload.placement["subscription"], workload.placement["resourceGroup"]
    env, name = workload.environment, workload.name
    by_permissions: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Grant]] = {}
    for grant in workload.grants:
        key = (tuple(sorted(set(grant.actions))), tuple(sorted(set(grant.data_actions))))
        by_permissions.setdefault(key, []).append(grant)
    roles: dict[str, Any] = {}
    assignments: dict[str, Any] = {}
    for (actions, data_actions), grants in sorted(by_permissions.items()):
        rid = role_definition_id(subscription, env, name,
                                 sorted({f"{g.source}#{g.entry}:{g.kind}" for g in grants}))
        # ARM ids are case-insensitive: one scope listed twice in different case is one scope.
        scopes = sorted({g.resource.lower(): g.resource for g in sorted(grants, key=lambda g: g.resource)}
                        .values())
        roles[rid] = {
            "roleName": role_name(env, name, rid),
            "description": workload.marker.as_text(),
            "permissions": [{"actions": list(actions), "notActions": [],
                             "dataActions": list(data_actions), "notDataActions": []}],
            "assignableScopes": scopes,
        }
        role_ref = f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{rid}"
        for scope in scopes:
            assignments[role_assignment_id(f"{env}/{name}", rid, scope)] = {
                "scope": scope, "roleDefinitionId": role_ref, "principalType": "ServicePrincipal"}
    identity = adopted_name(workload) or identity_name(prefix, env, name)
    common = {"roles": roles, "assignments": dict(sorted(assignments.items()))}
    if workload.key_mode:
        # Applications live in the tenant, not a subscription: the subscription tag keeps a
        # fleet read of one subscription to its own.
        tags = {**workload.marker.as_tags(), SUBSCRIPTION_TAG: subscription.lower()}
        return {"application": {"displayName": identity, "tags": tags},
                **common, "federatedCredentials": {}}
    deployers = deployer_assignments(workload, identity_scope(subscription, group, identity))
    return {
        "identity": {"name": identity, "resourceGroup": group, "location": workload.placement["location"],
                     "tags": workload.marker.as_tags()},
        **common,
        "federatedCredentials": federated_credentials(workload),
        # Only when there are some: a workload without attachments renders as before.
        **({"deployerAssignments": deployers} if deployers else {}),
    }


def canonical(doc: Any) -> str:
    """``doc`` as compact JSON (no spaces), the form documents are compared in."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


# Key Vault names allow [0-9A-Za-z-]{1,127}; each key secret has a metadata secret beside it.
META_SUFFIX = "--metadata"
_MAX_NAME = 127
_MAX_BASE = _MAX_NAME - len(META_SUFFIX)


def vault_name(name: str) -> str:
    """The Key Vault name (``[0-9A-Za-z-]{1,117}``) of the key secret for ``name``."""
    if not name:
        raise ValueError("a secret name is required")
    mapped = re.sub(r"[^0-9A-Za-z-]", "-", name.replace("/", "--"))
    if len(mapped) > _MAX_BASE:
        mapped = f"{mapped[:_MAX_BASE - 11]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
    return mapped


def metadata_name(name: str) -> str:
    """The Key Vault name of the metadata secret for ``name``."""
    return vault_name(name) + META_SUFFIX


def desired_identity(workload: CompiledWorkload, config: Config) -> DesiredIdentity:
    """The managed identity a workload should have, with its roles and assignments."""
    prefix = config.azure.namePrefix
    cached = workload.rendered.get(f"azure:{prefix}")
    if cached is not None:
        return cached
    objects = desired_objects(workload, prefix)
    sub, group = workload.placement["subscription"], workload.placement["resourceGroup"]
    settings = {"resourceGroup": group, "location": workload.placement["location"]}
    if "application" in objects:
        name = objects["application"]["displayName"]
        tags = objects["application"]["tags"]
        desired = DesiredIdentity(
            workload=workload, kind="application", name=name,
            documents={k: canonical(v) for k, v in objects.items()}, tags=tags,
            # What a person finds the key under: Key Vault's own name for it.
            settings={**settings, "keyMode": "true", "secretName": vault_name(workload.secret_name)},
            address=f"/subscriptions/{sub}/applications/{name}", objects=objects)
    else:
        name = objects["identity"]["name"]
        desired = DesiredIdentity(
            workload=workload, kind="managed-identity", name=name,
            documents={k: canonical(v) for k, v in objects.items()}, tags=workload.marker.as_tags(),
            settings=settings,
            address=(f"/subscriptions/{sub}/resourceGroups/{group}"
                     f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"),
            objects=objects)
    workload.rendered[f"azure:{prefix}"] = desired
    return desired


def static_checks(workload: CompiledWorkload, config: Config) -> list[Diagnostic]:
    """Azure limits checked before any call: federated credentials, tag values."""
    lw = workload.source
    out: list[Diagnostic] = []
    objects = desired_identity(workload, config).objects
    count = len(objects["federatedCredentials"])
    if count > FEDERATED_CREDENTIALS_MAX:
        out.append(Diagnostic(lw.position("spec", "credentials", "federation", FEDERATED_CREDENTIALS_MAX),
                              f"workload {workload.label}: {count} federation entries; Azure allows "
                              f"{FEDERATED_CREDENTIALS_MAX} federated credentials per managed identity. "
                              "Split the workload or trust fewer workflows"))
    tags = (objects.get("identity") or objects["application"])["tags"]
    for key, value in tags.items():
        if len(value) > TAG_VALUE_MAX:
            out.append(Diagnostic(lw.position("metadata"), f"tag {key} would be {len(value)} characters; "
                                                           f"Azure allows {TAG_VALUE_MAX}"))
    return out
