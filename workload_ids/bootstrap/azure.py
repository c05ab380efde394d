"""Azure: custom roles for the tool's identities, and role assignments whose ABAC
condition (version 2.0) keeps role assignment rights away from the admin roles. Pure data.

The condition follows Microsoft's "Delegate Azure role assignment management using
conditions" examples: writes are judged on the request (``@Request``), deletes on the
assignment that exists (``@Resource``); each must name a role other than Owner, User
Access Administrator and Role Based Access Control Administrator, for a service
principal. The tool's own custom roles are assignable only at the subscription it
manages.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import Config
from . import IDENTITIES, role_guid

OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c6a72009"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
ADMIN_ROLES = (OWNER, USER_ACCESS_ADMINISTRATOR, RBAC_ADMINISTRATOR)

_MI = "Microsoft.ManagedIdentity/userAssignedIdentities"
_AUTH = "Microsoft.Authorization"
ACTIONS: dict[str, list[str]] = {
    "apply": [f"{_MI}/read", f"{_MI}/write", f"{_MI}/federatedIdentityCredentials/read",
              f"{_MI}/federatedIdentityCredentials/write", f"{_MI}/federatedIdentityCredentials/delete",
              f"{_AUTH}/roleDefinitions/read", f"{_AUTH}/roleDefinitions/write",
              f"{_AUTH}/roleDefinitions/delete", f"{_AUTH}/roleAssignments/read",
              f"{_AUTH}/roleAssignments/write", f"{_AUTH}/roleAssignments/delete",
              "Microsoft.Resources/subscriptions/resourceGroups/read"],
    "rotate": [f"{_MI}/read"],
    # Quarantine removes a managed identity's assignments (every one, of any role but the
    # admin roles the condition excludes) and release puts them back: both ways.
    "cleanup": [f"{_MI}/read", f"{_MI}/write", f"{_MI}/delete", f"{_MI}/federatedIdentityCredentials/read",
                f"{_MI}/federatedIdentityCredentials/delete", f"{_AUTH}/roleDefinitions/read",
                f"{_AUTH}/roleDefinitions/delete", f"{_AUTH}/roleAssignments/read",
                f"{_AUTH}/roleAssignments/write", f"{_AUTH}/roleAssignments/delete",
                "Microsoft.Resources/subscriptions/resourceGroups/read"],
    "restore": [f"{_MI}/read", f"{_MI}/write", f"{_MI}/federatedIdentityCredentials/write",
                f"{_AUTH}/roleDefinitions/read", f"{_AUTH}/roleDefinitions/write",
                f"{_AUTH}/roleAssignments/read", f"{_AUTH}/roleAssignments/write",
                "Microsoft.Resources/subscriptions/resourceGroups/read"],
    # discover and adopt without --apply: every managed identity and its federated
    # credentials, the role definitions and assignments that say what each may do;
    # management group targets list their subscriptions. Nothing written.
    "discover": [f"{_MI}/read", f"{_MI}/federatedIdentityCredentials/read", f"{_AUTH}/roleDefinitions/read",
                 f"{_AUTH}/roleAssignments/read", "Microsoft.Management/managementGroups/descendants/read"],
}
# Key mode lives outside ARM: Graph and the data planes, granted by the directory's admin.
# apply and rotate write key-mode secrets under names that vary, so their Secrets Officer
# is vault-wide, and it reaches the marker key in that vault too (Azure RBAC has no deny a
# customer can assign): that vault is for the tool alone, and the audit key lives elsewhere.
DATA_PLANE = {
    "apply": "Microsoft Graph Application.ReadWrite.OwnedBy (+ Application.Read.All to list, and "
             "AuditLog.Read.All for the sign-ins a plan that removes access reads; without it every "
             "removal counts as used); Key Vault "
             "Secrets Officer on azure.keyVaultUrl (which covers the marker signing key "
             "workload-ids-signing-key: keep that vault to the tool); Storage Blob Data Contributor on "
             "azure.lockContainerUrl",
    "rotate": "Microsoft Graph Application.ReadWrite.OwnedBy; Key Vault Secrets Officer on the vault (the "
              "marker signing key included); Storage Blob Data Contributor on the lock container",
    "cleanup": "Microsoft Graph Application.ReadWrite.OwnedBy (deletes key-mode applications); Key Vault "
               "Secrets User on the secret workload-ids-signing-key (the marker signing key; scope "
               "VAULT/secrets/workload-ids-signing-key, not the vault)",
    "restore": "Key Vault Secrets User on the secret workload-ids-signing-key (the marker signing key; scope "
               "VAULT/secrets/workload-ids-signing-key, not the vault)",
    "discover": "Microsoft Graph Application.Read.All (applications and service principals with their "
                "secrets and certificates) and AuditLog.Read.All (their sign-in activity; Entra ID P1 or "
                "P2); Key Vault Secrets User on the secret workload-ids-signing-key (scope "
                "VAULT/secrets/workload-ids-signing-key, not the vault)",
}


def _guids(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(values) + "}"


def assignment_condition() -> str:
    """The ABAC condition on the tool's own role assignments (conditionVersion 2.0)."""
    denied = _guids(ADMIN_ROLES)
    parts = []
    for action, source in (("write", "Request"), ("delete", "Resource")):
        parts.append(
            f"((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/{action}'}})) OR "
            f"(@{source}[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
            f"ForAnyOfAllValues:GuidNotEquals {denied} AND "
            f"@{source}[Microsoft.Authorization/roleAssignments:PrincipalType] "
            "ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}))")
    return " AND ".join(parts)


def render(config: Config, subscription: str) -> dict[str, Any]:
    """Role definitions (``az role definition create``) and assignments with their
    condition (``az role assignment create --condition ... --condition-version 2.0``)."""
    scope = f"/subscriptions/{subscription}"
    identities = []
    for identity in IDENTITIES:
        guid = role_guid(subscription, identity)
        name = f"{config.azure.namePrefix}-tool-{identity}"
        actions = sorted(ACTIONS[identity])
        # Custom role names are unique in the whole directory (tenant), which holds many
        # subscriptions: the name carries the one this role is assignable in.
        definition = {"id": f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
                      "properties": {"roleName": f"{name} ({subscription})",
                                     "description": f"workload-ids {identity} (workload-ids bootstrap)",
                                     "type": "CustomRole",
                                     "permissions": [{"actions": actions, "notActions": [],
                                                      "dataActions": [], "notDataActions": []}],
                                     "assignableScopes": [scope]}}
        assignment: dict[str, Any] = {"scope": scope, "properties": {
            "roleDefinitionId": definition["id"], "principalId": "PRINCIPAL_ID_OF_THE_TOOL_IDENTITY",
            "principalType": "ServicePrincipal"}}
        if any(a.startswith(f"{_AUTH}/roleAssignments/") and not a.endswith("/read") for a in actions):
            assignment["properties"].update(condition=assignment_condition(), conditionVersion="2.0")
        identities.append({"identity": identity, "managedIdentity": name,
                           "roleDefinition": definition, "roleAssignment": assignment,
                           "outsideArm": DATA_PLANE[identity] + _audit_data_plane(config)})
    plan: dict[str, Any] = {"provider": "azure", "target": subscription, "identities": identities}
    from . import audit_sink
    sink = audit_sink.of(config)
    if sink is not None:
        plan["auditSink"] = audit_sink.azure_render(config, subscription, sink)
        notes = [audit_sink.elsewhere(sink, "azure")]
        key = plan["auditSink"].get("signingKey")
        vault = str(config.azure.keyVaultUrl or "").rstrip("/")
        if key is not None and vault and key["vault"].rstrip("/") == vault:
            notes.append("the audit signing key is in azure.keyVaultUrl, where apply and rotate hold Key "
                         "Vault Secrets Officer (key mode) and so could replace it: keep it in a vault of "
                         "its own")
        if any(notes):
            plan["auditSink"]["note"] = "; ".join(n for n in notes if n)
    return plan


def _audit_data_plane(config: Config) -> str:
    """Every tool identity writes and reads the audit trail when it is on Azure."""
    from . import audit_sink
    sink = audit_sink.of(config)
    if sink is None:
        return ""
    out = ""
    if sink.kind == "azure":
        out += (f"; the audit role ({config.azure.namePrefix}-tool-audit: blob read, write, append; no "
                f"delete) at the container {sink.bucket}")
    if sink.key_kind == "azure":
        _, name = audit_sink.azure_key_parts(sink)
        out += (f"; Key Vault Secrets User on the secret {name} (the audit signing key; scope "
                f"VAULT/secrets/{name})")
    return out


def render_text(plan: dict[str, Any]) -> str:
    """The Azure bootstrap plan as text, with the JSON to paste where the user sets it up by hand."""
    lines = [f"Azure subscription {plan['target']}: the tool's custom roles and conditional role assignments "
             "(`--apply` creates them, with a managed identity each; or use az)"]
    for ident in plan["identities"]:
        lines += ["", f"== {ident['identity']}", json.dumps(ident["roleDefinition"], indent=2),
                  json.dumps(ident["roleAssignment"], indent=2), f"   outside ARM: {ident['outsideArm']}"]
    if "auditSink" in plan:
        from .audit_sink import azure_text
        lines += azure_text(plan["auditSink"])
        if "note" in plan["auditSink"]:
            lines.append(f"   note: {plan['auditSink']['note']}")
    return "\n".join(lines)
