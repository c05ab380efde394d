"""The clouds under contract: for AWS (moto), GCP and Azure (our emulators), how to write a
manifest, the config that reaches the cloud, and a snapshot of everything of ours it holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .aws import workload
from .gcp import gcp_workload

OWNERS = """\
owners:
  - {id: team-a, kind: group, active: true, members: [bob]}
  - {id: bob, kind: person, active: true}
"""


@dataclass
class Cloud:
    """One provider under contract: how to write its manifests, the config that reaches
    it, and a snapshot of everything of ours it holds (for equality checks)."""

    name: str
    config: str
    manifest: Callable[[str, str], str]  # (workload name, access YAML or "") -> manifest
    read_entry: str  # an access entry the mover removes
    snapshot: Callable[[], Any]


def _aws(aws: Any) -> Cloud:
    from .aws import snapshot
    queue = "arn:aws:sqs:eu-west-1:123456789012:{name}"
    read = f"    - template: queue.consume\n      resources: [{queue}]\n"
    extra = f"    - template: queue.publish\n      resources: [{queue}-out]\n"

    def manifest(name: str, access: str) -> str:
        return workload(name, access=access or (read + extra).format(name=name))
    return Cloud("aws", "", manifest, extra, lambda: snapshot(aws))


def _gcp() -> Iterator[Cloud]:
    from workload_ids.sandbox.gcp.local import start_local_gcp
    local = start_local_gcp()
    iam, rm, _, policies = local.emulators
    read = "    - template: object-storage.read\n      resources: [projects/_/buckets/{name}-in]\n"
    extra = "    - template: topic.publish\n      resources: [projects/acme-prod/topics/{name}-out]\n"

    def manifest(name: str, access: str) -> str:
        return gcp_workload(name=name, access=access or (read + extra).format(name=name), owner="team-a")

    def snapshot() -> Any:
        accounts = {a.email: (a.description, a.display_name, a.disabled)
                    for a in iam.service_accounts("acme-prod")}
        roles = {r.name: (r.description, tuple(sorted(r.permissions))) for r in iam.roles("acme-prod")}
        project = sorted((b.role, b.condition.expression, tuple(sorted(b.members)))
                         for b in rm.policy("acme-prod").bindings)
        resources = {name: sorted((b.role, tuple(sorted(b.members))) for b in policies.policy(name).bindings)
                     for name in policies.resources()}
        federation = {email: sorted((b.role, tuple(b.members))
                                    for b in iam.service_account_policy(email).bindings)
                      for email in accounts}
        return {"accounts": accounts, "roles": roles, "project": project, "resources": resources,
                "federation": federation}
    config = local.config_block()
    try:
        yield Cloud("gcp", config, manifest, extra, snapshot)
    finally:
        local.stop()


def _azure() -> Iterator[Cloud]:
    from workload_ids.sandbox.azure.arm import StaticTokenCredential
    from workload_ids.sandbox.azure.local import start_local_azure

    from .azure import BASE, azure_workload
    local = start_local_azure()
    account = f"{BASE}/Microsoft.Storage/storageAccounts/acmeorders/blobServices/default/containers"
    read = f"    - template: object-storage.read\n      resources: [{account}/{{name}}-in]\n"
    extra = (f"    - template: topic.publish\n"
             f"      resources: [{BASE}/Microsoft.ServiceBus/namespaces/acme-orders/topics/{{name}}-out]\n")

    def manifest(name: str, access: str) -> str:
        text = azure_workload(name=name, access=access or (read + extra).format(name=name))
        return text.replace("owner: team-payments", "owner: team-a")

    def snapshot() -> Any:
        from azure.mgmt.authorization import AuthorizationManagementClient
        from azure.mgmt.msi import ManagedServiceIdentityClient

        from .azure import RG, SUB
        kwargs = local.arm.client_kwargs()
        msi = ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **kwargs)
        authz = AuthorizationManagementClient(StaticTokenCredential(), SUB, **kwargs)
        identities = {i.principal_id: i for i in msi.user_assigned_identities.list_by_subscription()}
        # Principals by identity name: a restored identity gets a new principal id.
        held = {i.name: dict(i.tags or {}) for i in identities.values()}
        roles = {r.name: (r.description, tuple(r.assignable_scopes),
                          tuple((tuple(p.actions or []), tuple(p.data_actions or [])) for p in r.permissions))
                 for r in authz.role_definitions.list(f"/subscriptions/{SUB}", filter="type eq 'CustomRole'")}
        assignments = sorted((identities[a.principal_id].name if a.principal_id in identities else "?",
                              a.name, a.scope) for a in authz.role_assignments.list_for_subscription())
        federated = {i.name: sorted((c.name, c.subject)
                                    for c in msi.federated_identity_credentials.list(RG, i.name))
                     for i in identities.values()}
        return {"identities": held, "roles": roles, "assignments": assignments, "federated": federated}
    try:
        yield Cloud("azure", local.config_block(), manifest, extra, snapshot)
    finally:
        local.stop()
