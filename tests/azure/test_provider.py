"""The Azure backend against the ARM emulator, through the real azure-mgmt clients: joiner,
mover, idempotence, federated credentials, and never touching what is not ours."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from support.azure import BASE, CONTAINER, RG, SUB, TOPIC, azure_workload
from support.trust import TEST_TRUST_DATA

from workload_ids.calls import CallSeam, RetryPolicy
from workload_ids.clouds import connect
from workload_ids.config import Config, ConfigFile
from workload_ids.errors import ConflictError
from workload_ids.model import Marker
from workload_ids.providers.interface import Backends
from workload_ids.sandbox.azure.arm import ArmEmulator, StaticTokenCredential
from workload_ids.validate import validate

CONTAINER_B = f"{BASE}/Microsoft.Storage/storageAccounts/acmeorders/blobServices/default/containers/archive"
TOPIC_OPERATIONS = ["Microsoft.ServiceBus/namespaces/messages/send/action"]


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[tuple[ArmEmulator, Config]]:
    from workload_ids.sandbox.azure.keyvault import KeyVaultEmulator
    from workload_ids.sandbox.azure.local import seed_signing_key
    vault = KeyVaultEmulator()
    vault_url = vault.start()
    with ArmEmulator(sandbox=False) as emulator:
        for resource in (CONTAINER, CONTAINER_B, TOPIC):
            emulator.add_resource(resource)
        # The vault holds the marker signing key (as bootstrap makes it); one CA bundle for both.
        bundle = tmp_path / "ca.pem"
        bundle.write_text(Path(emulator.ca_bundle_path).read_text() + Path(vault.ca_bundle_path).read_text())
        settings = {"armEndpoint": emulator.url, "caBundle": str(bundle), "keyVaultUrl": vault_url,
                    "sandboxCredentials": True}
        seed_signing_key(settings)
        config = Config(ConfigFile.model_validate({"azure": settings, "trust": TEST_TRUST_DATA}),
                        Path.cwd(), None)
        yield emulator, config
    vault.stop()


def converge(tmp_path: Path, text: str, config: Config,
             seam: CallSeam | None = None) -> tuple[Backends, Any, list[str]]:
    """One per-service plan and apply through the backends; returns the actions applied."""
    path = tmp_path / "w.yaml"
    path.write_text(text)
    checked = validate([path], config)
    checked.raise_for_errors()
    cloud = connect("azure", config, seam or CallSeam(RetryPolicy(), sleep=lambda s: None))
    desired = cloud.desired(checked.compiled[0])
    changes = cloud.identities.diff(desired, cloud.identities.observe_one(desired))
    for change in changes:
        cloud.identities.apply(change)
    return cloud, desired, [c.action for c in changes]


def clients(emulator: ArmEmulator) -> tuple[ManagedServiceIdentityClient, AuthorizationManagementClient]:
    kwargs = emulator.client_kwargs()
    return (ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **kwargs),
            AuthorizationManagementClient(StaticTokenCredential(), SUB, **kwargs))


def grants_of(emulator: ArmEmulator, principal: str) -> dict[str, list[str]]:
    """scope -> sorted operations the principal holds there, read back through the SDK."""
    _, authz = clients(emulator)
    out: dict[str, list[str]] = {}
    for a in authz.role_assignments.list_for_subscription(filter=f"principalId eq '{principal}'"):
        role = authz.role_definitions.get(f"/subscriptions/{SUB}", a.role_definition_id.rsplit("/", 1)[1])
        ops = [op for p in role.permissions for op in [*(p.actions or []), *(p.data_actions or [])]]
        out.setdefault(a.scope, []).extend(ops)
    return {k: sorted(v) for k, v in out.items()}


def test_joiner_creates_identity_roles_assignments_and_credentials_then_converges(
        tmp_path: Path, arm: tuple[ArmEmulator, Config]) -> None:
    emulator, config = arm
    _, desired, actions = converge(tmp_path, azure_workload(), config)
    assert actions == ["create"]
    msi, authz = clients(emulator)
    identity = msi.user_assigned_identities.get(RG, "wid-prod-recon")
    assert Marker.from_tags(identity.tags) == desired.workload.marker
    grants = grants_of(emulator, identity.principal_id)
    assert grants == {
        CONTAINER: ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                    "Microsoft.Storage/storageAccounts/blobServices/containers/read"],
        TOPIC: TOPIC_OPERATIONS}
    roles = [r for r in authz.role_definitions.list(f"/subscriptions/{SUB}", filter="type eq 'CustomRole'")]
    assert len(roles) == 2
    assert all(r.assignable_scopes in ([CONTAINER], [TOPIC]) for r in roles)
    [fic] = list(msi.federated_identity_credentials.list(RG, "wid-prod-recon"))
    assert fic.subject == "repo:acme/recon:environment:production"
    assert fic.issuer == "https://token.actions.githubusercontent.com"
    assert converge(tmp_path, azure_workload(), config)[2] == []  # idempotent


def test_per_service_plan_of_an_unchanged_workload_reads_five_times(
        tmp_path: Path, arm: tuple[ArmEmulator, Config]) -> None:
    _, config = arm
    converge(tmp_path, azure_workload(), config)
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    assert converge(tmp_path, azure_workload(), config, seam)[2] == []
    assert seam.stats.total == 5, seam.stats.calls  # four reads and the signing key


def test_mover_removes_old_scopes_updates_roles_in_place_and_keeps_foreign_grants(
        tmp_path: Path, arm: tuple[ArmEmulator, Config]) -> None:
    emulator, config = arm
    _, desired, _ = converge(tmp_path, azure_workload(), config)
    msi, authz = clients(emulator)
    principal = msi.user_assigned_identities.get(RG, "wid-prod-recon").principal_id
    # A hand-made Reader assignment to our identity: not ours, never removed.
    reader = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/" \
             "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    authz.role_assignments.create(f"/subscriptions/{SUB}/resourceGroups/{RG}", str(uuid.uuid4()),
                                  {"role_definition_id": reader, "principal_id": principal,
                                   "principal_type": "ServicePrincipal"})
    moved = azure_workload(access=f"    - template: object-storage.read\n      resources: [{CONTAINER_B}]\n",
                           federation="    federation:\n      - kind: github-actions\n"
                                      "        repository: acme/recon\n        ref: refs/heads/main\n")
    cloud, _, actions = converge(tmp_path, moved, config)
    assert actions == ["update-access", "update-federation", "update-marker"]
    grants = grants_of(emulator, principal)
    assert set(grants) == {CONTAINER_B, f"/subscriptions/{SUB}/resourceGroups/{RG}"}
    roles = list(authz.role_definitions.list(f"/subscriptions/{SUB}", filter="type eq 'CustomRole'"))
    assert [r.assignable_scopes for r in roles] == [[CONTAINER_B]]  # the read role, updated in place
    [fic] = list(msi.federated_identity_credentials.list(RG, "wid-prod-recon"))
    assert fic.subject == "repo:acme/recon:ref:refs/heads/main"
    observed = cloud.identities.observe_one(cloud.desired(desired.workload))
    assert observed is not None and observed.extra["foreignGrants"] == [f"{reader} at /subscriptions/{SUB}"
                                                                         f"/resourceGroups/{RG}"]
    assert converge(tmp_path, moved, config)[2] == []


def test_identity_without_our_tags_is_never_adopted(tmp_path: Path, arm: tuple[ArmEmulator, Config]) -> None:
    emulator, config = arm
    msi, _ = clients(emulator)
    msi.user_assigned_identities.create_or_update(RG, "wid-prod-recon", {"location": "westeurope",
                                                                        "tags": {"team": "other"}})
    with pytest.raises(ConflictError, match="does not carry the workload-ids tags"):
        converge(tmp_path, azure_workload(), config)
    assert msi.user_assigned_identities.get(RG, "wid-prod-recon").tags == {"team": "other"}
    # A forged marker without the digest is not ours either.
    msi.user_assigned_identities.create_or_update(RG, "wid-prod-recon", {"location": "westeurope", "tags": {
        "workload-ids:managed-by": "workload-ids", "workload-ids:workload": "recon"}})
    with pytest.raises(ConflictError):
        converge(tmp_path, azure_workload(), config)


def test_missing_resource_group_is_a_clear_cloud_error(tmp_path: Path,
                                                       arm: tuple[ArmEmulator, Config]) -> None:
    _, config = arm
    from workload_ids.errors import CloudError
    text = azure_workload().replace(f"resourceGroup: {RG}", "resourceGroup: rg-missing")
    with pytest.raises(CloudError, match="ResourceGroupNotFound"):
        converge(tmp_path, text, config)


def test_a_missing_target_resource_is_a_clear_cloud_error(tmp_path: Path,
                                                          arm: tuple[ArmEmulator, Config]) -> None:
    _, config = arm
    from workload_ids.errors import CloudError
    missing = f"{BASE}/Microsoft.ServiceBus/namespaces/acme-orders/topics/not-there"
    text = azure_workload(access=f"    - template: topic.publish\n      resources: [{missing}]\n")
    with pytest.raises(CloudError, match=f"ResourceNotFound: .*{missing}"):
        converge(tmp_path, text, config)


def test_a_plan_names_who_may_obtain_credentials_alone_or_in_a_fleet(tmp_path: Path) -> None:
    """The federation change in words (issuer and subject, added and removed), and the same
    plan whether the workload is read alone or in a batch read of the subscription."""
    from support.trust import TEST_TRUST

    from workload_ids.apply import apply_plan
    from workload_ids.config import load_config
    from workload_ids.plan import build_plan, render_text
    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure()
    try:
        config_file = tmp_path / "workload-ids.yaml"
        config_file.write_text(local.config_block() + TEST_TRUST)
        config = load_config(config_file)
        path = tmp_path / "w.yaml"

        def plans(text: str) -> dict[bool, Any]:
            path.write_text(text)
            compiled = validate([path], config).compiled
            return {fleet: build_plan(compiled, config, CallSeam(RetryPolicy(), sleep=lambda s: None),
                                      fleet=fleet) for fleet in (False, True)}
        created = plans(azure_workload())
        issuer = "https://token.actions.githubusercontent.com"
        assert [c.as_json() for c in created[False].changes] == [c.as_json() for c in created[True].changes]
        assert created[False].changes[0].details["trust"] == {
            "added": [{"principal": issuer, "subject": "repo:acme/recon:environment:production"}],
            "removed": []}
        assert apply_plan(created[False]).ok
        on_main = ("    federation:\n      - kind: github-actions\n"
                   "        repository: acme/recon\n        ref: refs/heads/main\n")
        moved = plans(azure_workload(federation=on_main))
        alone, batch = ([c.as_json() for c in moved[f].changes] for f in (False, True))
        assert alone == batch
        [federation] = [c for c in alone if c["action"] == "update-federation"]
        assert federation["trust"] == {
            "added": [{"principal": issuer, "subject": "repo:acme/recon:ref:refs/heads/main"}],
            "removed": [{"principal": issuer, "subject": "repo:acme/recon:environment:production"}]}
        assert "checkedAtApply" not in str(alone)
        text = render_text(moved[True])
        assert f"+ trust {issuer}  repo:acme/recon:ref:refs/heads/main" in text
        assert f"- trust {issuer}  repo:acme/recon:environment:production" in text
    finally:
        local.stop()
