"""The clouds under contract: for AWS (moto), GCP and Azure (our emulators), how to write a
manifest, the config that reaches the cloud, and a snapshot of everything of ours it holds;
the ``cloud`` and ``folder`` fixtures of tests/contract/ (registered by its conftest.py) and
the helpers its suites share."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from workload_ids.calls import CallSeam, Killed, RetryPolicy
from workload_ids.clock import format_time
from workload_ids.config import load_config
from workload_ids.providers.interface import LEASE

from .aws import workload
from .gcp import gcp_workload
from .trust import TEST_TRUST

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
    # The emulators or client behind it (the GCP and Azure sandboxes' LocalGcp/LocalAzure,
    # AWS's IAM client), for suites that read one cloud's own shapes.
    local: Any = None


def _aws(aws: Any) -> Cloud:
    from .aws import snapshot
    queue = "arn:aws:sqs:eu-west-1:123456789012:{name}"
    read = f"    - template: queue.consume\n      resources: [{queue}]\n"
    extra = f"    - template: queue.publish\n      resources: [{queue}-out]\n"

    def manifest(name: str, access: str) -> str:
        return workload(name, access=access or (read + extra).format(name=name))
    return Cloud("aws", "", manifest, extra, lambda: snapshot(aws), aws)


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
        yield Cloud("gcp", config, manifest, extra, snapshot, local)
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
        yield Cloud("azure", local.config_block(), manifest, extra, snapshot, local)
    finally:
        local.stop()


# --- the contract suites' fixtures and helpers (tests/contract/) ---------------------------

@pytest.fixture(params=["aws", "gcp", "azure"])
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    if request.param == "aws":
        yield _aws(request.getfixturevalue("aws"))
    elif request.param == "gcp":
        yield from _gcp()
    else:
        yield from _azure()


@pytest.fixture
def folder(cloud: Cloud, manifests: Any) -> Path:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(
        cloud.config + "owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
        "cleanup: {grace: 7d, minAge: 1h, maxShare: 1, maxActions: 100}\n"
        "credentials: {verify: {interval: 0s}}\n" + TEST_TRUST)
    return Path(manifests({f"svc-{n}.yaml": cloud.manifest(f"svc-{n}", "") for n in ("a", "b")}))


KEY_MANIFESTS = {"aws": ("support.aws", "KEY_MODE", "vendor-sync"),
                 "gcp": ("support.gcp", "KEY_MODE", "vendor-sync"),
                 "azure": ("support.azure", "KEY_MODE", "vendor-sync")}


def _key_manifest(cloud: Cloud, name: str) -> str:
    import importlib
    module, attr, original = KEY_MANIFESTS[cloud.name]
    return str(getattr(importlib.import_module(module), attr)).replace(original, name)

def _library_run(fn: Callable[[CallSeam], Any], fault: Any = None) -> int:
    """Run ``fn`` with a seam (no retries); swallow the injected kill; return the calls."""
    seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    if fault is not None:
        seam.inject(fault)
    with contextlib.suppress(Killed):
        fn(seam)
    return seam.stats.total

def _lock_for(path: Path) -> tuple[Any, str, Any]:
    """The real lock of ``path``'s workload (its provider's), its secret name and tags."""
    from workload_ids.clouds import connect
    from workload_ids.validate import validate
    config = load_config()
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    cw = validate([path], config).compiled[0]
    cloud = connect(cw.provider, config, seam)
    return cloud.lock_for(cw.target), cw.secret_name, cloud.desired(cw).tags


def _after_lease(monkeypatch: pytest.MonkeyPatch, leases: int = 1) -> None:
    """Move the clock past ``leases`` leases, as if that long passed without a renewal."""
    later = datetime.now(UTC) + leases * (LEASE + timedelta(seconds=2))
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(later))
