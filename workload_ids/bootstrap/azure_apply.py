"""Create what ``bootstrap`` prints, on Azure: the custom role definitions (at their
fixed uuid5 GUIDs), one user-assigned managed identity per tool identity in the resource
group named with ``--resource-group``, and each role assigned to its identity at the
subscription, with the ABAC condition (version 2.0) where bootstrap renders one.

Everything is read first (the subscription's custom roles, the group's identities, the
assignments at the subscription) and judged before the first write: a role definition
at our GUID (or with our role name at another GUID) that is not ours, or an identity of
our name without our tag, stops the run with nothing changed. A rerun writes nothing when
all is in place; a drifted role, tag or assignment condition is converged back (the
assignment in place, by a PUT of the same assignment: no window without the role).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from ..calls import NOT_FOUND, CallSeam, to_cloud_error
from ..errors import CloudError, ConflictError
from ..markers import KEY_SECRET
from . import MARKER_PREFIX, Step, marker

TAG = "workload-ids:bootstrap"  # the identities' marker tag: its value is the tool identity
_NS = uuid.UUID("0c7e9f6a-52a3-4b8d-9a1e-7d2f4c6b8e10")  # fixed: assignment names stay the same


def _actions(props: Mapping[str, Any]) -> list[dict[str, list[str]]]:
    keys = ("actions", "notActions", "dataActions", "notDataActions")
    return [{key: sorted(p.get(key) or []) for key in keys} for p in props["permissions"]]


def _role_doc(role: Any) -> dict[str, Any]:
    """An SDK RoleDefinition in the rendered plan's terms, for comparison."""
    return {"roleName": role.role_name, "description": role.description or "", "type": "CustomRole",
            "permissions": [{"actions": sorted(p.actions or []), "notActions": sorted(p.not_actions or []),
                             "dataActions": sorted(p.data_actions or []),
                             "notDataActions": sorted(p.not_data_actions or [])} for p in role.permissions],
            "assignableScopes": [s.lower().rstrip("/") for s in role.assignable_scopes]}


def _want_doc(props: Mapping[str, Any]) -> dict[str, Any]:
    return {"roleName": props["roleName"], "description": props["description"], "type": "CustomRole",
            "permissions": _actions(props),
            "assignableScopes": [s.lower().rstrip("/") for s in props["assignableScopes"]]}


def assignment_name(scope: str, role_guid: str, principal: str) -> str:
    """A deterministic name: a rerun that lost its answer finds (and never doubles) it."""
    return str(uuid.uuid5(_NS, f"{scope.lower()}|{role_guid.lower()}|{principal.lower()}"))


class AzureBootstrap:
    """Converge one subscription to a rendered plan (:func:`workload_ids.bootstrap.azure.render`)."""

    def __init__(self, clients: Any, plan: Mapping[str, Any], resource_group: str, location: str) -> None:
        self.clients = clients
        self.plan = plan
        self.subscription = str(plan["target"])
        self.group = resource_group
        self.location = location
        self.scope = f"/subscriptions/{self.subscription}"
        self.authz = clients.authorization(self.subscription)
        self.msi = clients.msi(self.subscription)
        self.steps: list[Step] = []
        self.plan_names = {str(i["roleDefinition"]["id"]).rsplit("/", 1)[1]: str(i["managedIdentity"])
                           for i in plan["identities"]}

    def _call(self, operation: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self.clients.call(operation, fn, *args, **kwargs)

    def run(self) -> list[Step]:
        """Read, judge (refuse foreign objects before any write), then converge."""
        roles = {str(r.name).lower(): r for r in self.clients.pages(
            "authorization.role_definitions.list",
            self.authz.role_definitions.list(self.scope, filter="type eq 'CustomRole'"))}
        identities = {str(i.name).lower(): i for i in self.clients.pages(
            "msi.user_assigned_identities.list_by_resource_group",
            self.msi.user_assigned_identities.list_by_resource_group(self.group))}
        assignments = list(self.clients.pages(
            "authorization.role_assignments.list_for_scope",
            self.authz.role_assignments.list_for_scope(self.scope, filter="atScope()")))
        self._judge(roles, identities)
        vault = self.clients.secrets if self.clients.config.azure.keyVaultUrl else None
        # Judged with the rest, before any write (and not read twice).
        key_step = ensure_signing_key(self.clients, vault, create=False) if vault is not None else None
        audit = self._audit_key()
        audit_step = ensure_signing_key(self.clients, audit[0], create=False, **audit[1]) if audit else None
        for ident in self.plan["identities"]:
            definition = ident["roleDefinition"]
            guid = str(definition["id"]).rsplit("/", 1)[1]
            self._role(guid, definition["properties"], roles.get(guid.lower()))
            principal = self._identity(ident["identity"], ident["managedIdentity"],
                                       identities.get(str(ident["managedIdentity"]).lower()))
            self._assignment(ident["identity"], guid, principal, ident["roleAssignment"]["properties"],
                             assignments)
        if vault is None:
            self.steps.append(Step("note", "secret", KEY_SECRET, "azure.keyVaultUrl is not set: set it and "
                                   "rerun to create the marker signing key, which every command needs"))
        else:
            self.steps.append(key_step or ensure_signing_key(self.clients, vault)
                              or Step("unchanged", "secret", KEY_SECRET))
        if audit:
            self.steps.append(audit_step or ensure_signing_key(self.clients, audit[0], **audit[1])
                              or Step("unchanged", "secret", audit[1]["name"]))
        if "roleDefinition" in (self.plan.get("auditSink") or {}):
            self.steps.append(Step("note", "role assignment", str(self.plan["auditSink"]["sink"]["url"]),
                                   "bootstrap does not own the storage account: create the audit role and "
                                   "assign it at the container as printed (az role definition create, az "
                                   "role assignment create --scope CONTAINER_ID --condition-version 2.0)"))
        return self.steps

    def _audit_key(self) -> tuple[Any, dict[str, Any]] | None:
        """The audit signing key's vault client and what :func:`ensure_signing_key` needs,
        when ``audit.sink.signingKey`` is a Key Vault secret."""
        key = (self.plan.get("auditSink") or {}).get("signingKey")
        if key is None:
            return None
        vault_url = str(key["vault"])
        if vault_url.rstrip("/") == str(self.clients.config.azure.keyVaultUrl or "").rstrip("/"):
            vault = self.clients.secrets
        else:
            from azure.keyvault.secrets import SecretClient
            vault = SecretClient(vault_url, self.clients.credential, **self.clients.connection(vault_url),
                                 verify_challenge_resource=not self.clients.config.azure.sandboxCredentials)
        from .audit_sink import AUDIT_KEY_TAG_VALUE
        return vault, {"name": str(key["name"]), "vault_url": vault_url, "tag_value": AUDIT_KEY_TAG_VALUE,
                       "purpose": "audit"}

    def _judge(self, roles: Mapping[str, Any], identities: Mapping[str, Any]) -> None:
        foreign: list[str] = []
        for ident in self.plan["identities"]:
            props = ident["roleDefinition"]["properties"]
            guid = str(ident["roleDefinition"]["id"]).rsplit("/", 1)[1].lower()
            name = str(props["roleName"])
            at_guid = roles.get(guid)
            # Ours: our name and our description (the marker) at our GUID, nothing else.
            if at_guid is not None and (at_guid.role_name, at_guid.description) != (
                    name, props["description"]):
                foreign.append(f"role definition {guid} ({at_guid.role_name!r})")
            same_name = [g for g, r in roles.items()
                         if g != guid and str(r.role_name).lower() == name.lower()]
            if same_name:
                foreign.append(f"role definition {same_name[0]} named {name!r}")
            found = identities.get(str(ident["managedIdentity"]).lower())
            if found is not None and (found.tags or {}).get(TAG) != ident["identity"]:
                foreign.append(f"managed identity {self.group}/{found.name}")
        if foreign:
            raise ConflictError(
                f"{', '.join(foreign)} in subscription {self.subscription} exist(s) without the "
                f"workload-ids bootstrap marker (role description '{MARKER_PREFIX} ...' or the identity "
                f"tag {TAG}); nothing was changed",
                "find out who created it; bootstrap never adopts an object it did not create: delete or "
                "rename it, or change azure.namePrefix")

    def _role(self, guid: str, props: Mapping[str, Any], current: Any) -> None:
        if current is not None and _role_doc(current) == _want_doc(props):
            self.steps.append(Step("unchanged", "role definition", f"{props['roleName']} [{guid}]"))
            return
        self._call("authorization.role_definitions.create_or_update",
                   self.authz.role_definitions.create_or_update, self.scope, guid,
                   {"role_name": props["roleName"], "description": props["description"],
                    "role_type": "CustomRole",
                    "permissions": [{"actions": p["actions"], "not_actions": p["notActions"],
                                     "data_actions": p["dataActions"],
                                     "not_data_actions": p["notDataActions"]} for p in props["permissions"]],
                    "assignable_scopes": list(props["assignableScopes"])})
        self.steps.append(Step("created" if current is None else "updated", "role definition",
                               f"{props['roleName']} [{guid}]", "" if current is None else
                               "permissions or scopes converged"))

    def _identity(self, identity: str, name: str, current: Any) -> str:
        """Create or converge the managed identity; returns its principal id."""
        label = f"{self.group}/{name}"
        if current is not None:
            if current.location.replace(" ", "").lower() != self.location.replace(" ", "").lower():
                self.steps.append(Step("note", "managed identity", label,
                                       f"in {current.location}, not {self.location}; left there"))
            self.steps.append(Step("unchanged", "managed identity", label))
            return str(current.principal_id)
        made = self._call("msi.user_assigned_identities.create_or_update",
                          self.msi.user_assigned_identities.create_or_update, self.group, name,
                          {"location": self.location, "tags": {TAG: identity}})
        self.steps.append(Step("created", "managed identity", label))
        return str(made.principal_id)

    def _assignment(self, identity: str, guid: str, principal: str, want: Mapping[str, Any],
                    have: list[Any]) -> None:
        role_id = f"{self.scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
        label = f"{self.plan_names[guid]} -> {self.group}/{self.plan_names[guid]} [principal {principal}]"
        mine = [a for a in have if str(a.principal_id).lower() == principal.lower()
                and str(a.role_definition_id).rsplit("/", 1)[1].lower() == guid.lower()]
        body = {"role_definition_id": role_id, "principal_id": principal,
                "principal_type": "ServicePrincipal",
                "description": marker(identity),
                "condition": want.get("condition"), "condition_version": want.get("conditionVersion")}
        body = {k: v for k, v in body.items() if v is not None}
        others = sorted({str(a.principal_id) for a in have if str(a.principal_id).lower() != principal.lower()
                         and str(a.role_definition_id).rsplit("/", 1)[1].lower() == guid.lower()})
        if others:
            self.steps.append(Step("note", "role assignment", label,
                                   f"the role is also assigned to {', '.join(others)} (left alone; it "
                                   "widens who holds the tool's rights)"))
        if mine:
            current = mine[0]
            same = (current.condition or None, current.condition_version or None) == (
                want.get("condition"), want.get("conditionVersion"))
            if same:
                self.steps.append(Step("unchanged", "role assignment", label))
                return
            # ARM updates a role assignment's condition in place (a PUT of the same name).
            self._call("authorization.role_assignments.create", self.authz.role_assignments.create,
                       self.scope, str(current.name), body)
            self.steps.append(Step("updated", "role assignment", label, "condition converged"))
            return
        self._call("authorization.role_assignments.create", self.authz.role_assignments.create,
                   self.scope, assignment_name(self.scope, guid, principal), body)
        self.steps.append(Step("created", "role assignment", label,
                               "with its condition, version 2.0" if want.get("condition") else ""))


KEY_TAG = "workload-ids-bootstrap"  # Key Vault tag names: letters, digits, '-' (no ':')
KEY_TAG_VALUE = "signing-key"
KEY_CONTENT_TYPE = "application/vnd.workload-ids.signing-key"


def ensure_signing_key(clients: Any, vault: Any, *, create: bool = True, name: str | None = None,
                       vault_url: str | None = None, tag_value: str = KEY_TAG_VALUE,
                       purpose: str = "marker") -> Step | None:
    """The marker signing key in the configured Key Vault: created with fresh material,
    tagged; None when it is in place. A secret of that name that bootstrap cannot show it
    made (our tag and content type, 64 hex characters) is refused: whoever made it may
    know the material and could forge every marker. Returns the step (``unchanged`` when
    it is in place), or None when it is missing and ``create`` is false. Who may read or write it is the
    vault's RBAC (Key Vault Secrets User on this secret for the tool's identities).
    The audit key (``name``, ``vault_url``, ``tag_value``, ``purpose="audit"``) is made
    and judged the same way, in the vault ``audit.sink.signingKey`` names."""
    from ..markers import KEY_SECRET
    from ..signing import SigningKey, new_key_material
    name = name or KEY_SECRET
    vault_url = vault_url or str(clients.config.azure.keyVaultUrl)
    where = f"{vault_url} secret {name}"
    try:
        found = clients.call("keyvault.get_secret", vault.get_secret, name)
    except CloudError as exc:
        if exc.kind != NOT_FOUND:
            raise
        found = None
    if found is not None:
        tags = dict(found.properties.tags or {})
        why = None
        if tags.get(KEY_TAG) != tag_value or found.properties.content_type != KEY_CONTENT_TYPE:
            why = f"does not carry the tag {KEY_TAG}={tag_value} and content type {KEY_CONTENT_TYPE}"
        else:
            try:
                SigningKey.from_stored(str(found.value or ""), where)
            except ValueError:
                why = "its value is not 64 hexadecimal characters"
        if why:
            raise ConflictError(f"Key Vault {where} exists but {why}, so bootstrap cannot show it made it "
                                f"and will not use it as the {purpose} signing key; nothing was changed",
                                "find out who created it, delete and purge it (az keyvault secret delete, "
                                "then az keyvault secret purge), and rerun")
        return Step("unchanged", "secret", name, vault_url)
    if not create:
        return None
    clients.call("keyvault.set_secret", vault.set_secret, name, new_key_material(),
                 content_type=KEY_CONTENT_TYPE, tags={KEY_TAG: tag_value})
    return Step("created", "secret", name, f"the {purpose} signing key in {vault_url}")


def converge(config: Any, seam: CallSeam, plan: Mapping[str, Any], resource_group: str,
             location: str) -> list[Step]:
    """Create or converge everything of ``plan`` in its subscription (module docstring)."""
    from ..providers.azure.clients import AzureClients
    clients = AzureClients(config, seam)
    try:
        return AzureBootstrap(clients, plan, resource_group, location).run()
    except CloudError as exc:
        cause = exc.__cause__
        if cause is None or seam.classify("azure", cause) is None:
            raise  # not a failed call (one of ours, made whole): as it is
        if exc.code in ("ResourceGroupNotFound", "SubscriptionNotFound"):
            raise to_cloud_error(seam, "azure", "bootstrap", cause,
                                 f"create the resource group first (az group create --subscription "
                                 f"{plan['target']} --name {resource_group} --location {location}), or "
                                 "name an existing one with --resource-group; nothing was changed") from cause
        raise to_cloud_error(seam, "azure", "bootstrap", cause,
                             "bootstrap needs an Owner (or User Access Administrator and Managed Identity "
                             "Contributor) of the subscription; rerun converges") from cause
