"""Azure on our emulators: the subscription and resources, manifest builders (keyless and
key mode), and reading identities and assignments back through the real SDK clients."""

from __future__ import annotations

from typing import Any

from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from workload_ids.sandbox.azure.arm import StaticTokenCredential
from workload_ids.sandbox.azure.local import LocalAzure

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
RG = "rg-orders"
BASE = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers"
CONTAINER = f"{BASE}/Microsoft.Storage/storageAccounts/acmeorders/blobServices/default/containers/reports"
TOPIC = f"{BASE}/Microsoft.ServiceBus/namespaces/acme-orders/topics/mismatches"


def azure_workload(access: str | None = None, federation: str | None = None, name: str = "recon",
                   mode: str = "keyless") -> str:
    """A small valid Azure manifest (keyless from GitHub, or key mode); ``access`` is a YAML list body."""
    access = access if access is not None else (
        f"    - template: object-storage.read\n      resources: [{CONTAINER}]\n"
        f"    - template: topic.publish\n      resources: [{TOPIC}]\n")
    federation = federation if federation is not None else (
        "    federation:\n      - kind: github-actions\n        repository: acme/recon\n"
        "        environment: production\n")
    return (f"apiVersion: workload-ids/v1\nkind: Workload\nmetadata:\n  name: {name}\n"
            f"  owner: team-payments\n  environment: prod\nspec:\n  provider: azure\n"
            f"  azure: {{subscription: \"{SUB}\", resourceGroup: {RG}, location: westeurope}}\n"
            f"  credentials:\n    mode: {mode}\n" + (federation if mode == "keyless" else "")
            + "  access:\n" + access)


KEY_MODE = azure_workload(name="vendor-sync", mode="key")


def arm_clients(local: LocalAzure) -> tuple[ManagedServiceIdentityClient, AuthorizationManagementClient]:
    """The real azure-mgmt clients, pointed at the local ARM emulator."""
    kwargs = local.arm.client_kwargs()
    return (ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **kwargs),
            AuthorizationManagementClient(StaticTokenCredential(), SUB, **kwargs))


def held(local: LocalAzure) -> dict[str, Any]:
    """identity -> (tags, sorted assignment scopes) as ARM holds them."""
    msi, authz = arm_clients(local)
    out: dict[str, Any] = {}
    for identity in msi.user_assigned_identities.list_by_subscription():
        scopes = sorted(a.scope for a in authz.role_assignments.list_for_subscription(
            filter=f"principalId eq '{identity.principal_id}'"))
        out[identity.name] = (dict(identity.tags or {}), scopes)
    return out
