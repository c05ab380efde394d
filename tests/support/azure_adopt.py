"""Azure managed identities made by hand on the ARM emulator (through the real SDK
clients), for the adopt tests: identities with federated credentials, built-in and custom
role assignments, and the state an adoption could change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.azure import BASE, CONTAINER, RG, SUB, TOPIC, arm_clients
from support.leavers import CONFIG, OWNERS
from workload_ids.sandbox.azure.local import LocalAzure, start_local_azure

GITHUB = "https://token.actions.githubusercontent.com"
AUDIENCE = "api://AzureADTokenExchange"
BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
BLOB_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
SEND = "Microsoft.ServiceBus/namespaces/messages/send/action"
VAULT = f"{BASE}/Microsoft.KeyVault/vaults/acme-orders-kv"
ROLES = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions"
BLOB = "Microsoft.Storage/storageAccounts/blobServices"


class Azure:
    """The emulators and the real SDK clients, with helpers that make identities by hand."""

    def __init__(self, local: LocalAzure) -> None:
        self.local = local
        self.msi, self.authz = arm_clients(local)

    def identity(self, name: str = "Legacy-Recon", tags: dict[str, str] | None = None,
                 subjects: tuple[str, ...] = ("repo:acme/legacy:ref:refs/heads/main",),
                 issuer: str = GITHUB) -> str:
        """A hand-made identity with federated credentials; returns its resource id."""
        made = self.msi.user_assigned_identities.create_or_update(
            RG, name, {"location": "westeurope", "tags": tags or {}})
        for i, subject in enumerate(subjects):
            self.msi.federated_identity_credentials.create_or_update(
                RG, name, f"legacy-{i}", {"issuer": issuer, "subject": subject, "audiences": [AUDIENCE]})
        return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/" \
               f"userAssignedIdentities/{made.name}"

    def principal(self, name: str) -> str:
        return str(self.msi.user_assigned_identities.get(RG, name).principal_id)

    def assign(self, name: str, role: str, scope: str, **extra: Any) -> str:
        assignment = str(uuid.uuid4())
        self.authz.role_assignments.create(scope, assignment, {
            "role_definition_id": f"{ROLES}/{role}",
            "principal_id": self.principal(name), "principal_type": "ServicePrincipal", **extra})
        return assignment

    def custom_role(self, role_name: str, actions: list[str] = [], data_actions: list[str] = [],  # noqa: B006
                    not_actions: list[str] = [], scope: str = f"/subscriptions/{SUB}") -> str:  # noqa: B006
        guid = str(uuid.uuid4())
        self.authz.role_definitions.create_or_update(scope, guid, {
            "role_name": role_name, "description": "made by hand", "role_type": "CustomRole",
            "permissions": [{"actions": actions, "not_actions": not_actions, "data_actions": data_actions,
                             "not_data_actions": []}], "assignable_scopes": [scope]})
        return guid

    def state(self, name: str) -> dict[str, Any]:
        """Everything an adoption could change: tags, federated credentials, assignments,
        custom roles."""
        identity = self.msi.user_assigned_identities.get(RG, name)
        return {"tags": dict(identity.tags or {}),
                "federated": sorted((c.name, c.issuer, c.subject) for c in
                                    self.msi.federated_identity_credentials.list(RG, name)),
                "assignments": sorted((a.name, a.scope, a.role_definition_id) for a in
                                      self.authz.role_assignments.list_for_subscription(
                                          filter=f"principalId eq '{identity.principal_id}'")),
                "roles": sorted(str(r.name) for r in self.authz.role_definitions.list(
                    f"/subscriptions/{SUB}", filter="type eq 'CustomRole'"))}


@contextmanager
def azure_with_owners() -> Iterator[Azure]:
    """A local Azure holding the container, topic and vault the examples name, with the
    leaver tests' owner directory and config written in the working directory."""
    local = start_local_azure(sandbox=False)
    for resource in (CONTAINER, TOPIC, VAULT):
        local.arm.add_resource(resource)
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(local.config_block() + CONFIG)
    try:
        yield Azure(local)
    finally:
        local.stop()
