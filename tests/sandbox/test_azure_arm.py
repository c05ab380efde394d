"""The ARM emulator, driven through the real azure-mgmt-msi and azure-mgmt-authorization clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from workload_ids.sandbox.azure.arm import ArmEmulator, StaticTokenCredential

SUB = "6f1c2a4e-0b7d-4c3e-9a51-2d8e7f0a1b2c"
SUB_SCOPE = f"/subscriptions/{SUB}"
RG_SCOPE = f"{SUB_SCOPE}/resourceGroups/rg-app"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def emulator() -> Iterator[ArmEmulator]:
    with ArmEmulator(page_size=2) as emu:
        yield emu


@pytest.fixture(scope="module")
def msi(emulator: ArmEmulator) -> ManagedServiceIdentityClient:
    return ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **emulator.client_kwargs())


@pytest.fixture(scope="module")
def authz(emulator: ArmEmulator) -> AuthorizationManagementClient:
    return AuthorizationManagementClient(StaticTokenCredential(), SUB, **emulator.client_kwargs())


def _identity(msi: ManagedServiceIdentityClient, name: str, rg: str = "rg-app") -> str:
    """Create an identity; return its principal id."""
    created = msi.user_assigned_identities.create_or_update(rg, name, {"location": "westeurope"})
    assert created.principal_id is not None
    return str(created.principal_id)


def _custom_role(authz: AuthorizationManagementClient, name: str, scopes: list[str]) -> str:
    """Create a custom role assignable at ``scopes``; return its id."""
    role = authz.role_definitions.create_or_update(
        scopes[0], str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        {"role_name": name, "role_type": "CustomRole", "description": "test",
         "permissions": [{"actions": ["Microsoft.Storage/storageAccounts/read"]}],
         "assignable_scopes": scopes})
    assert role.id is not None
    return str(role.id)


def test_identities_create_get_list_paged(emulator: ArmEmulator, msi: ManagedServiceIdentityClient) -> None:
    created = [msi.user_assigned_identities.create_or_update("rg-list", f"id-{i}", {"location": "westeurope"})
               for i in range(3)]
    got = msi.user_assigned_identities.get("rg-list", "id-1")
    assert got.principal_id == created[1].principal_id and got.client_id == created[1].client_id
    assert got.tenant_id == emulator.tenant_id
    for value in (got.principal_id, got.client_id, got.tenant_id):
        uuid.UUID(str(value))
    before = emulator.calls["GET userAssignedIdentities 2024-11-30"]
    names = [i.name for i in msi.user_assigned_identities.list_by_resource_group("rg-list")]
    assert names == ["id-0", "id-1", "id-2"]
    # Page size 2: the client followed one nextLink.
    assert emulator.calls["GET userAssignedIdentities 2024-11-30"] - before == 2
    msi.user_assigned_identities.delete("rg-list", "id-2")
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.get("rg-list", "id-2")


def test_federated_credentials_limit_of_20(msi: ManagedServiceIdentityClient) -> None:
    _identity(msi, "id-fic")
    for i in range(20):
        msi.federated_identity_credentials.create_or_update(
            "rg-app", "id-fic", f"fic-{i:02}",
            {"issuer": "https://token.actions.githubusercontent.com", "subject": f"repo:o/r:env:e{i}",
             "audiences": ["api://AzureADTokenExchange"]})
    with pytest.raises(HttpResponseError) as refused:
        msi.federated_identity_credentials.create_or_update(
            "rg-app", "id-fic", "fic-20",
            {"issuer": "https://token.actions.githubusercontent.com", "subject": "repo:o/r:env:e20",
             "audiences": ["api://AzureADTokenExchange"]})
    assert refused.value.status_code == 400
    assert "Too many Federated Identity Credentials" in str(refused.value)
    assert len(list(msi.federated_identity_credentials.list("rg-app", "id-fic"))) == 20
    got = msi.federated_identity_credentials.get("rg-app", "id-fic", "fic-07")
    assert got.subject == "repo:o/r:env:e7"
    msi.federated_identity_credentials.delete("rg-app", "id-fic", "fic-07")
    with pytest.raises(ResourceNotFoundError):
        msi.federated_identity_credentials.get("rg-app", "id-fic", "fic-07")


def test_role_definitions_create_get_list_custom(authz: AuthorizationManagementClient) -> None:
    role_id = _custom_role(authz, "wid-storage-reader", [SUB_SCOPE])
    guid = role_id.rsplit("/", 1)[1]
    got = authz.role_definitions.get(SUB_SCOPE, guid)
    assert got.role_name == "wid-storage-reader" and got.role_type == "CustomRole"
    assert got.assignable_scopes == [SUB_SCOPE]
    custom = [r.role_name for r in authz.role_definitions.list(SUB_SCOPE, filter="type eq 'CustomRole'")]
    assert "wid-storage-reader" in custom and "Reader" not in custom
    with pytest.raises(ResourceExistsError):  # role names are unique in the directory
        authz.role_definitions.create_or_update(
            SUB_SCOPE, str(uuid.uuid4()),
            {"role_name": "wid-storage-reader", "role_type": "CustomRole", "permissions": [],
             "assignable_scopes": [SUB_SCOPE]})


def test_role_assignments_create_list_duplicate_delete(authz: AuthorizationManagementClient,
                                                       msi: ManagedServiceIdentityClient) -> None:
    principal = _identity(msi, "id-ra")
    role_id = _custom_role(authz, "wid-ra", [SUB_SCOPE])
    params = {"role_definition_id": role_id, "principal_id": principal, "principal_type": "ServicePrincipal"}
    name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"id-ra|wid-ra|{RG_SCOPE}"))
    created = authz.role_assignments.create(RG_SCOPE, name, params)
    assert created.principal_id == principal and created.scope == RG_SCOPE
    listed = list(authz.role_assignments.list_for_scope(SUB_SCOPE, filter=f"principalId eq '{principal}'"))
    assert [a.name for a in listed] == [name]
    with pytest.raises(ResourceExistsError) as same_name:
        authz.role_assignments.create(RG_SCOPE, name, params)
    assert same_name.value.error is not None and same_name.value.error.code == "RoleAssignmentExists"
    with pytest.raises(ResourceExistsError) as other_name:
        authz.role_assignments.create(RG_SCOPE, str(uuid.uuid4()), params)
    assert other_name.value.status_code == 409
    assert authz.role_assignments.get(RG_SCOPE, name).name == name
    authz.role_assignments.delete(RG_SCOPE, name)
    with pytest.raises(ResourceNotFoundError):
        authz.role_assignments.get(RG_SCOPE, name)
    by_principal = f"principalId eq '{principal}'"
    assert list(authz.role_assignments.list_for_scope(SUB_SCOPE, filter=by_principal)) == []


def test_assignment_outside_assignable_scopes_refused(authz: AuthorizationManagementClient,
                                                      msi: ManagedServiceIdentityClient) -> None:
    principal = _identity(msi, "id-scoped")
    role_id = _custom_role(authz, "wid-rg-only", [f"{SUB_SCOPE}/resourceGroups/rg-a"])
    with pytest.raises(HttpResponseError) as refused:
        authz.role_assignments.create(
            f"{SUB_SCOPE}/resourceGroups/rg-b", str(uuid.uuid4()),
            {"role_definition_id": role_id, "principal_id": principal, "principal_type": "ServicePrincipal"})
    assert refused.value.status_code == 400
    assert refused.value.error is not None and refused.value.error.code == "RoleDefinitionDoesNotExist"


def test_unknown_resource_group_without_sandbox() -> None:
    with ArmEmulator(sandbox=False) as emu:
        emu.add_resource_group(SUB, "rg-known")
        msi = ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **emu.client_kwargs())
        msi.user_assigned_identities.create_or_update("rg-known", "id-1", {"location": "westeurope"})
        with pytest.raises(ResourceNotFoundError) as missing:
            msi.user_assigned_identities.create_or_update("rg-nope", "id-1", {"location": "westeurope"})
        assert missing.value.error is not None and missing.value.error.code == "ResourceGroupNotFound"


def test_principal_replication_and_assignment_limit() -> None:
    clock = Clock()
    with ArmEmulator(clock=clock, replication_delay=30, max_role_assignments_per_subscription=2) as emu:
        kwargs = emu.client_kwargs()
        msi = ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **kwargs)
        authz = AuthorizationManagementClient(StaticTokenCredential(), SUB, **kwargs)
        principal = _identity(msi, "id-new")
        reader = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{READER}"
        untyped = {"role_definition_id": reader, "principal_id": principal}
        with pytest.raises(HttpResponseError) as young:
            authz.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), untyped)
        assert young.value.error is not None and young.value.error.code == "PrincipalNotFound"
        with pytest.raises(HttpResponseError) as unknown:
            authz.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()),
                                          {"role_definition_id": reader, "principal_id": str(uuid.uuid4()),
                                           "principal_type": "ServicePrincipal"})
        assert unknown.value.error is not None and unknown.value.error.code == "PrincipalNotFound"
        clock.now += 30
        authz.role_assignments.create(SUB_SCOPE, str(uuid.uuid4()), untyped)
        other = _identity(msi, "id-other")  # principalType set: accepted during replication
        authz.role_assignments.create(RG_SCOPE, str(uuid.uuid4()),
                                      {"role_definition_id": reader, "principal_id": other,
                                       "principal_type": "ServicePrincipal"})
        with pytest.raises(HttpResponseError) as full:
            authz.role_assignments.create(f"{RG_SCOPE}x", str(uuid.uuid4()),
                                          {"role_definition_id": reader, "principal_id": other,
                                           "principal_type": "ServicePrincipal"})
        assert full.value.error is not None and full.value.error.code == "RoleAssignmentLimitExceeded"


def test_managed_identity_operator_at_an_identity_scope() -> None:
    """The built-in role a deployer gets (attachedTo), with the operations Azure gives it,
    assignable at a managed identity's own scope while the identity exists."""
    operator = "f1a07417-d97a-45cb-824c-7a7467783830"
    with ArmEmulator(sandbox=False) as emu:
        emu.add_resource_group(SUB, "rg-app")
        msi = ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **emu.client_kwargs())
        authz = AuthorizationManagementClient(StaticTokenCredential(), SUB, **emu.client_kwargs())
        role = authz.role_definitions.get(SUB_SCOPE, operator)
        assert role.role_name == "Managed Identity Operator" and role.role_type == "BuiltInRole"
        assign = "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action"
        assert role.permissions is not None and assign in (role.permissions[0].actions or [])
        created = msi.user_assigned_identities.create_or_update("rg-app", "id-web",
                                                                {"location": "westeurope"})
        scope = str(created.id)
        deployer = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
        emu.add_principal(deployer)
        params = {"role_definition_id": f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/"
                                        f"{operator}", "principal_id": deployer}
        name = str(uuid.uuid4())
        assert authz.role_assignments.create(scope, name, params).scope.lower() == scope.lower()
        assert [a.name for a in authz.role_assignments.list_for_scope(scope, filter="atScope()")] == [name]
        msi.user_assigned_identities.delete("rg-app", "id-web")
        # ARM keeps an assignment at a deleted identity's scope; the scope itself is gone.
        assert [a.name for a in authz.role_assignments.list_for_subscription()] == [name]
        with pytest.raises(ResourceNotFoundError):
            authz.role_assignments.create(scope, str(uuid.uuid4()), params)
