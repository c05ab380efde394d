"""`workload-ids bootstrap --apply` on GCP and Azure (issue 13 item 3): the tool's own
identities created exactly as printed, through the real SDKs against our emulators; a
rerun writes nothing; drift is converged back; a foreign object with our name is refused
with nothing changed; the binding and assignment conditions are stored as rendered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli

from workload_ids import calls
from workload_ids.bootstrap import azure as boot_azure
from workload_ids.bootstrap import gcp as boot_gcp
from workload_ids.bootstrap.azure_apply import TAG
from workload_ids.config import Config, ConfigFile

PROJECT = "boot-project"
SUB = "7d7c9b1e-3a4f-4c2b-9e8d-1f2a3b4c5d6e"
GROUP = "rg-workload-ids"


@pytest.fixture(scope="module")
def gcp_env() -> Iterator[Any]:
    from workload_ids.sandbox.gcp.local import start_local_gcp
    local = start_local_gcp()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def azure_env() -> Iterator[Any]:
    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure()
    try:
        yield local
    finally:
        local.stop()


def _config(tmp_path: Path, block: str) -> Path:
    path = tmp_path / "workload-ids.yaml"
    path.write_text(block)
    return path


def _gcp(env: Any, tmp_path: Path, *args: str, project: str = PROJECT) -> Any:
    config = _config(tmp_path, env.config_block())
    return run_cli("bootstrap", "--provider", "gcp", "--target", project, "--apply", "--config", str(config),
                   *args)


def _azure(env: Any, tmp_path: Path, *args: str, sub: str = SUB) -> Any:
    config = _config(tmp_path, env.config_block())
    return run_cli("bootstrap", "--provider", "azure", "--target", sub, "--apply", "--resource-group", GROUP,
                   "--location", "westeurope", "--config", str(config), *args)


def _plan_gcp(project: str) -> dict[str, Any]:
    return boot_gcp.render(Config(ConfigFile(), Path("."), None), project)


def _plan_azure(sub: str) -> dict[str, Any]:
    return boot_azure.render(Config(ConfigFile(), Path("."), None), sub)


def _writes(doc: dict[str, Any]) -> list[str]:
    return [o["name"] for o in doc["objects"] if o["action"] in ("created", "updated")]


_WRITE_VERBS = ("create", "update", "patch", "set_", "undelete", "delete", "begin_")


@contextmanager
def _seam_calls() -> Iterator[list[str]]:
    """Every operation that passes the call seam meanwhile (attempts included)."""
    seen: list[str] = []

    def watch(record: calls.CallRecord) -> None:
        seen.append(f"{record.provider}:{record.operation}")
    calls.CALL_HOOKS.append(watch)
    try:
        yield seen
    finally:
        calls.CALL_HOOKS.remove(watch)


def _write_ops(seen: list[str]) -> list[str]:
    return [op for op in seen if op.rsplit(".", 1)[-1].startswith(_WRITE_VERBS)]


# --- GCP -------------------------------------------------------------------------------

def _gcp_state(env: Any, project: str) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """What the project holds, read back through the real IAM Admin and Resource Manager SDKs."""
    import grpc
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import iam_admin_v1, resourcemanager_v3
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
    iam = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(
        channel=grpc.insecure_channel(env.endpoints["iamEndpoint"])))
    roles = {r.name: r for r in iam.list_roles(request={"parent": f"projects/{project}", "view": 1})}
    accounts = {a.email: a for a in iam.list_service_accounts(request={"name": f"projects/{project}"})}
    endpoint = env.endpoints["resourceManagerEndpoint"]
    rm = resourcemanager_v3.ProjectsClient(transport="rest", credentials=AnonymousCredentials(),
                                           client_options={"api_endpoint": endpoint})
    policy = rm.get_iam_policy(request={"resource": f"projects/{project}",
                                        "options": {"requested_policy_version": 3}})
    return roles, accounts, policy


def _policy_bindings(policy: Any) -> list[dict[str, Any]]:
    out = []
    for b in policy.bindings:
        item: dict[str, Any] = {"role": b.role, "members": sorted(b.members)}
        if b.HasField("condition"):
            item["condition"] = {"title": b.condition.title, "description": b.condition.description,
                                 "expression": b.condition.expression}
        out.append(item)
    return out


def test_gcp_apply_creates_exactly_the_rendered_objects_then_a_rerun_writes_nothing(
        gcp_env: Any, tmp_path: Path) -> None:
    project = "boot-create"
    result = _gcp(gcp_env, tmp_path, "--output", "json", project=project)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    plan = _plan_gcp(project)
    roles, accounts, policy = _gcp_state(gcp_env, project)
    want_roles = {r["name"]: r for i in plan["identities"] for r in (i["role"], i.get("grantRole")) if r}
    assert set(roles) == set(want_roles) and len(want_roles) == 8
    for name, role in roles.items():
        assert sorted(role.included_permissions) == want_roles[name]["includedPermissions"]
        assert role.title == want_roles[name]["title"]
        assert role.description == want_roles[name]["description"]
    assert set(accounts) == {i["serviceAccount"] for i in plan["identities"]}
    assert all(a.description.startswith("workload-ids:bootstrap identity=") for a in accounts.values())
    assert policy.version == 3
    got = sorted(_policy_bindings(policy), key=lambda b: b["role"])
    assert got == sorted(plan["bindings"], key=lambda b: b["role"])  # conditions exactly as rendered
    assert {o["action"] for o in doc["objects"]} == {"created"}
    assert doc["apiCalls"] > 0

    with _seam_calls() as seen:
        again = _gcp(gcp_env, tmp_path, "--output", "json", project=project)
    assert again.code == 0, again.err
    assert seen and _write_ops(seen) == []  # reads only, counted at the seam
    assert len(seen) == json.loads(again.out)["apiCalls"]
    redo = json.loads(again.out)
    assert _writes(redo) == [] and {o["action"] for o in redo["objects"]} == {"unchanged"}
    assert any("0 created or updated, 22 unchanged; nothing changed" in line for line in redo["applied"])
    roles2, _, policy2 = _gcp_state(gcp_env, project)
    assert policy2.etag == policy.etag  # no policy write
    assert {n: r.etag for n, r in roles2.items()} == {n: r.etag for n, r in roles.items()}


def test_gcp_a_deleted_role_of_ours_is_undeleted_and_converged(gcp_env: Any, tmp_path: Path) -> None:
    project = "boot-undelete"
    assert _gcp(gcp_env, tmp_path, project=project).code == 0
    iam = gcp_env.emulators[0].client()
    name = f"projects/{project}/roles/wid_tool_cleanup"
    role = iam.get_role(request={"name": name})
    iam.delete_role(request={"name": name, "etag": role.etag})
    result = _gcp(gcp_env, tmp_path, "--output", "json", project=project)
    assert result.code == 0, result.err
    step = next(o for o in json.loads(result.out)["objects"] if o["name"] == name)
    assert (step["action"], step["detail"]) == ("updated", "undeleted")
    back = iam.get_role(request={"name": name})
    assert not back.deleted and sorted(back.included_permissions) == sorted(boot_gcp.PERMISSIONS["cleanup"])


def test_gcp_text_output_lists_each_object_and_counts_calls(gcp_env: Any, tmp_path: Path) -> None:
    result = _gcp(gcp_env, tmp_path, project="boot-text")
    assert result.code == 0, result.err
    assert "created service account wid-tool-apply@boot-text.iam.gserviceaccount.com" in result.out
    assert "created custom role projects/boot-text/roles/wid_tool_apply_grants" in result.out
    assert "created binding projects/boot-text/roles/wid_tool_apply_grants serviceAccount:" in result.out
    assert "GCP project boot-text: 22 created or updated, 0 unchanged" in result.out
    assert "API calls)" in result.out


def test_gcp_drift_is_converged_and_foreign_bindings_stay(gcp_env: Any, tmp_path: Path) -> None:
    project = "boot-drift"
    assert _gcp(gcp_env, tmp_path, project=project).code == 0
    from google.iam.v1 import policy_pb2
    iam = gcp_env.emulators[0].backend
    rm = gcp_env.emulators[1]
    name = f"projects/{project}/roles/wid_tool_rotate"
    iam.roles[name].permissions = ["iam.serviceAccounts.get", "resourcemanager.projects.setIamPolicy"]
    account = iam.accounts[iam.by_email[f"wid-tool-apply@{project}.iam.gserviceaccount.com"]]
    account.display_name = "renamed by hand"
    # Someone widened the grant condition of apply's grants role and added a user to it.
    policy = rm.client().get_iam_policy(request={"resource": f"projects/{project}",
                                                 "options": {"requested_policy_version": 3}})
    new = policy_pb2.Policy(version=3, etag=policy.etag)
    member = f"serviceAccount:wid-tool-apply@{project}.iam.gserviceaccount.com"
    for b in policy.bindings:
        item = new.bindings.add()
        item.CopyFrom(b)
        if b.role.endswith("wid_tool_apply_grants"):
            item.condition.expression = "true"
            item.members.append("user:alice@example.com")
    new.bindings.add(role="roles/viewer", members=["user:bob@example.com"])
    rm.client().set_iam_policy(request={"resource": f"projects/{project}", "policy": new})

    with _seam_calls() as seen:
        result = _gcp(gcp_env, tmp_path, "--output", "json", project=project)
    assert result.code == 0, result.err
    assert sorted(_write_ops(seen)) == ["gcp:iam.patch_service_account", "gcp:iam.update_role",
                                        "gcp:resourcemanager.set_iam_policy"]
    doc = json.loads(result.out)
    updated = {o["name"] for o in doc["objects"] if o["action"] == "updated"}
    assert name in updated
    assert f"wid-tool-apply@{project}.iam.gserviceaccount.com" in updated
    assert f"projects/{project}/roles/wid_tool_apply_grants {member}" in updated
    roles, accounts, policy = _gcp_state(gcp_env, project)
    assert sorted(roles[name].included_permissions) == sorted(boot_gcp.PERMISSIONS["rotate"])
    assert accounts[f"wid-tool-apply@{project}.iam.gserviceaccount.com"].display_name == "workload-ids apply"
    got = _policy_bindings(policy)
    # The drifted binding keeps its other member (not ours to remove); ours is back under the
    # rendered condition; the foreign binding is untouched.
    assert {"role": f"projects/{project}/roles/wid_tool_apply_grants", "members": ["user:alice@example.com"],
            "condition": {**boot_gcp.grant_condition(project, []), "expression": "true"}} in got
    rendered = next(b for b in _plan_gcp(project)["bindings"]
                    if b["role"].endswith("wid_tool_apply_grants"))
    assert {**rendered, "members": sorted(rendered["members"])} in got
    assert {"role": "roles/viewer", "members": ["user:bob@example.com"]} in got
    assert any(o["action"] == "note" and "user:alice@example.com" in o["detail"] for o in doc["objects"])


def test_gcp_a_stale_etag_redoes_the_policy_edit_from_a_fresh_read(gcp_env: Any, tmp_path: Path) -> None:
    project = "boot-conflict"
    gcp_env.emulators[1].inject_error("SetIamPolicy", "ABORTED", "There were concurrent policy changes.")
    with _seam_calls() as seen:
        result = _gcp(gcp_env, tmp_path, project=project)
    assert result.code == 0, result.err
    assert seen.count("gcp:resourcemanager.set_iam_policy") == 2
    assert seen.count("gcp:resourcemanager.get_iam_policy") == 2  # the redo starts from a new read
    _, _, policy = _gcp_state(gcp_env, project)
    assert sorted(_policy_bindings(policy), key=lambda b: b["role"]) == sorted(
        _plan_gcp(project)["bindings"], key=lambda b: b["role"])


@pytest.mark.parametrize("what", ["account", "role"])
def test_gcp_foreign_object_with_our_name_is_refused_untouched(gcp_env: Any, tmp_path: Path,
                                                               what: str) -> None:
    project = f"boot-foreign-{what}"
    gcp_env.emulators[1].add_project(project)
    iam = gcp_env.emulators[0].backend
    from google.cloud import iam_admin_v1
    client = gcp_env.emulators[0].client()
    assert isinstance(client, iam_admin_v1.IAMClient)
    if what == "account":
        client.create_service_account(request={"name": f"projects/{project}", "account_id": "wid-tool-rotate",
                                               "service_account": {"description": "someone else's"}})
    else:
        client.create_role(request={"parent": f"projects/{project}", "role_id": "wid_tool_cleanup",
                                    "role": {"title": "not ours", "included_permissions": ["iam.roles.get"]}})
    before = (len(iam.accounts), {n: (r.etag, list(r.permissions)) for n, r in iam.roles.items()},
              gcp_env.emulators[1].policy(project).SerializeToString())
    result = _gcp(gcp_env, tmp_path, project=project)
    assert result.code == 1
    label = (f"service account wid-tool-rotate@{project}.iam.gserviceaccount.com" if what == "account"
             else f"custom role projects/{project}/roles/wid_tool_cleanup")
    assert label in result.err and "without the workload-ids bootstrap marker" in result.err
    assert "nothing was changed" in result.err and "what to do:" in result.err
    after = (len(iam.accounts), {n: (r.etag, list(r.permissions)) for n, r in iam.roles.items()},
             gcp_env.emulators[1].policy(project).SerializeToString())
    assert after == before


def test_gcp_apply_without_a_target_is_a_positioned_error(gcp_env: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, gcp_env.config_block())
    result = run_cli("bootstrap", "--provider", "gcp", "--apply", "--config", str(config))
    assert result.code == 1
    assert "--target:1:1: --apply on GCP or Azure needs the project" in result.err
    bad = run_cli("bootstrap", "--provider", "gcp", "--target", "Not_A_Project", "--apply",
                  "--config", str(config))
    assert bad.code == 1 and "--target:1:1: 'Not_A_Project' is not a GCP project id" in bad.err
    assert "Traceback" not in bad.err


# --- GCP emulator: the policy semantics bootstrap relies on ----------------------------

def test_gcp_emulator_keeps_a_conditional_binding_apart_and_guards_versions_and_etags(gcp_env: Any) -> None:
    from google.api_core import exceptions as gx
    from google.iam.v1 import policy_pb2
    rm = gcp_env.emulators[1]
    client = rm.client()
    project = "boot-emulator"
    policy = client.get_iam_policy(request={"resource": f"projects/{project}",
                                            "options": {"requested_policy_version": 3}})
    new = policy_pb2.Policy(version=3, etag=policy.etag)
    new.bindings.add(role="roles/viewer", members=["user:a@example.com"])
    cond = new.bindings.add(role="roles/viewer", members=["user:a@example.com"])
    cond.condition.title, cond.condition.expression = "t", "request.time < timestamp('2030-01-01T00:00:00Z')"
    client.set_iam_policy(request={"resource": f"projects/{project}", "policy": new})
    read = client.get_iam_policy(request={"resource": f"projects/{project}",
                                          "options": {"requested_policy_version": 3}})
    assert read.version == 3 and len(read.bindings) == 2  # with and without a condition: two bindings
    old = client.get_iam_policy(request={"resource": f"projects/{project}"})
    assert old.version == 1 and any("_withcond_" in b.role for b in old.bindings)
    v1 = policy_pb2.Policy(version=1, etag=read.etag)
    v1.bindings.add().CopyFrom(cond)
    with pytest.raises(gx.BadRequest):
        client.set_iam_policy(request={"resource": f"projects/{project}", "policy": v1})
    stale = policy_pb2.Policy(version=3, etag=policy.etag)
    with pytest.raises((gx.Conflict, gx.Aborted)):
        client.set_iam_policy(request={"resource": f"projects/{project}", "policy": stale})


# --- Azure -----------------------------------------------------------------------------

def _authz(env: Any, sub: str) -> Any:
    from azure.mgmt.authorization import AuthorizationManagementClient
    return AuthorizationManagementClient(_token(), sub, base_url=env.settings["armEndpoint"],
                                         credential_scopes=["https://management.azure.com/.default"],
                                         connection_verify=env.settings["caBundle"], retry_total=0)


def _msi(env: Any, sub: str) -> Any:
    from azure.mgmt.msi import ManagedServiceIdentityClient
    return ManagedServiceIdentityClient(_token(), sub, base_url=env.settings["armEndpoint"],
                                        credential_scopes=["https://management.azure.com/.default"],
                                        connection_verify=env.settings["caBundle"], retry_total=0)


def _token() -> Any:
    from workload_ids.providers.azure.clients import StaticTokenCredential
    return StaticTokenCredential()


def _azure_state(env: Any, sub: str) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    authz = _authz(env, sub)
    scope = f"/subscriptions/{sub}"
    roles = {r.name: r for r in authz.role_definitions.list(scope, filter="type eq 'CustomRole'")}
    identities = {i.name: i for i in _msi(env, sub).user_assigned_identities.list_by_resource_group(GROUP)}
    assignments = list(authz.role_assignments.list_for_scope(scope, filter="atScope()"))
    return roles, identities, assignments


def _arm_writes(env: Any) -> int:
    return sum(n for call, n in env.arm.calls.items() if call.startswith(("PUT", "DELETE", "PATCH")))


def test_azure_apply_creates_exactly_the_rendered_objects_then_a_rerun_writes_nothing(
        azure_env: Any, tmp_path: Path) -> None:
    result = _azure(azure_env, tmp_path, "--output", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    plan = _plan_azure(SUB)
    roles, identities, assignments = _azure_state(azure_env, SUB)
    by_guid = {i["roleDefinition"]["id"].rsplit("/", 1)[1]: i for i in plan["identities"]}
    assert set(roles) == set(by_guid)
    for guid, role in roles.items():
        props = by_guid[guid]["roleDefinition"]["properties"]
        assert (role.role_name, role.description, role.role_type) == (
            props["roleName"], props["description"], "CustomRole")
        assert sorted(role.permissions[0].actions) == props["permissions"][0]["actions"]
        assert role.assignable_scopes == [f"/subscriptions/{SUB}"]
    assert {n: i.tags for n, i in identities.items()} == {
        f"wid-tool-{x}": {TAG: x} for x in ("apply", "rotate", "cleanup", "restore", "discover")}
    assert len(assignments) == 5
    for a in assignments:
        guid = a.role_definition_id.rsplit("/", 1)[1]
        want = by_guid[guid]["roleAssignment"]["properties"]
        ident = identities[by_guid[guid]["managedIdentity"]]
        assert a.principal_id == ident.principal_id and a.principal_type == "ServicePrincipal"
        assert a.scope == f"/subscriptions/{SUB}"
        assert (a.condition, a.condition_version) == (want.get("condition"), want.get("conditionVersion"))
    assert sum(1 for a in assignments if a.condition == boot_azure.assignment_condition()) == 3
    # The local Azure holds the marker signing key already (made by bootstrap's own code).
    assert {o["action"] for o in doc["objects"] if o["kind"] != "secret"} == {"created"}
    assert [o["action"] for o in doc["objects"] if o["kind"] == "secret"] == ["unchanged"]
    assert doc["apiCalls"] > 0

    writes = _arm_writes(azure_env)
    with _seam_calls() as seen:
        again = _azure(azure_env, tmp_path, "--output", "json")
    assert again.code == 0, again.err
    assert seen and _write_ops(seen) == []
    # roles, identities, assignments; the signing key
    assert len(seen) == json.loads(again.out)["apiCalls"] == 4
    redo = json.loads(again.out)
    assert _writes(redo) == [] and {o["action"] for o in redo["objects"]} == {"unchanged"}
    assert _arm_writes(azure_env) == writes  # the rerun sent no PUT or DELETE
    assert any("0 created or updated, 16 unchanged; nothing changed" in line for line in redo["applied"])


def test_azure_drift_is_converged_in_place(azure_env: Any, tmp_path: Path) -> None:
    sub = "1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0"
    assert _azure(azure_env, tmp_path, sub=sub).code == 0
    arm = azure_env.arm
    plan = {i["identity"]: i for i in _plan_azure(sub)["identities"]}
    rotate_guid = plan["rotate"]["roleDefinition"]["id"].rsplit("/", 1)[1]
    arm._role_definitions[rotate_guid]["permissions"] = [
        {"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}]
    apply_guid = plan["apply"]["roleDefinition"]["id"].rsplit("/", 1)[1]
    assignment = next(a for a in arm._role_assignments.values()
                      if a["properties"]["roleDefinitionId"].endswith(apply_guid))
    assignment["properties"]["condition"] = "true"  # someone loosened the condition
    stranger = "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"
    arm.add_principal(stranger, "ServicePrincipal")
    _authz(azure_env, sub).role_assignments.create(
        f"/subscriptions/{sub}", "7b8c9d0e-1f2a-4b3c-8d4e-5f6a7b8c9d0e", {
        "role_definition_id": plan["rotate"]["roleDefinition"]["id"], "principal_id": stranger,
        "principal_type": "ServicePrincipal"})
    names_before = set(arm._role_assignments)

    with _seam_calls() as seen:
        result = _azure(azure_env, tmp_path, "--output", "json", sub=sub)
    assert result.code == 0, result.err
    assert sorted(_write_ops(seen)) == ["azure:authorization.role_assignments.create",
                                        "azure:authorization.role_definitions.create_or_update"]
    doc = json.loads(result.out)
    updated = [o for o in doc["objects"] if o["action"] == "updated"]
    assert {o["kind"] for o in updated} == {"role definition", "role assignment"}
    roles, _, assignments = _azure_state(azure_env, sub)
    assert sorted(roles[rotate_guid].permissions[0].actions) == sorted(boot_azure.ACTIONS["rotate"])
    fixed = next(a for a in assignments if a.role_definition_id.endswith(apply_guid))
    assert (fixed.condition, fixed.condition_version) == (boot_azure.assignment_condition(), "2.0")
    assert set(arm._role_assignments) == names_before  # updated in place, never deleted and recreated
    note = next(o for o in doc["objects"] if o["action"] == "note")
    assert stranger in note["detail"] and "left alone" in note["detail"]


@pytest.mark.parametrize("what", ["role-guid", "role-name", "identity"])
def test_azure_foreign_object_with_our_name_is_refused_untouched(azure_env: Any, tmp_path: Path,
                                                                 what: str) -> None:
    sub = {"role-guid": "2c3d4e5f-6071-4283-94a5-b6c7d8e9f001",
           "role-name": "3d4e5f60-7182-4394-a5b6-c7d8e9f00112",
           "identity": "4e5f6071-8293-44a5-b6c7-d8e9f0011223"}[what]
    plan = {i["identity"]: i for i in _plan_azure(sub)["identities"]}
    scope = f"/subscriptions/{sub}"
    authz = _authz(azure_env, sub)
    perms = [{"actions": ["Microsoft.Resources/subscriptions/resourceGroups/read"]}]
    if what == "role-guid":
        guid = plan["cleanup"]["roleDefinition"]["id"].rsplit("/", 1)[1]
        authz.role_definitions.create_or_update(scope, guid, {
            "role_name": "someone-elses-role", "description": "not ours", "role_type": "CustomRole",
            "permissions": perms, "assignable_scopes": [scope]})
        label = f"role definition {guid}"
    elif what == "role-name":
        authz.role_definitions.create_or_update(scope, "9a8b7c6d-5e4f-4321-8765-0fedcba98765", {
            "role_name": f"wid-tool-rotate ({sub})", "description": "hand-made", "role_type": "CustomRole",
            "permissions": perms, "assignable_scopes": [scope]})
        label = f"named 'wid-tool-rotate ({sub})'"
    else:
        _msi(azure_env, sub).user_assigned_identities.create_or_update(
            GROUP, "wid-tool-restore", {"location": "westeurope", "tags": {"team": "other"}})
        label = f"managed identity {GROUP}/wid-tool-restore"
    arm = azure_env.arm
    before = (json.dumps(arm._role_definitions, sort_keys=True, default=str),
              sorted(arm._identities), sorted(arm._role_assignments), _arm_writes(azure_env))
    result = _azure(azure_env, tmp_path, sub=sub)
    assert result.code == 1
    assert label in result.err and "without the workload-ids bootstrap marker" in result.err
    assert "nothing was changed" in result.err and "what to do:" in result.err
    after = (json.dumps(arm._role_definitions, sort_keys=True, default=str),
             sorted(arm._identities), sorted(arm._role_assignments), _arm_writes(azure_env))
    assert after == before


def test_azure_apply_needs_a_resource_group_and_location(azure_env: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, azure_env.config_block())
    writes = _arm_writes(azure_env)
    result = run_cli("bootstrap", "--provider", "azure", "--target", SUB, "--apply", "--config", str(config))
    assert result.code == 1
    assert "--resource-group:1:1: --apply on Azure needs the resource group" in result.err
    assert "--location:1:1: --apply on Azure needs the identities' location" in result.err
    bad = run_cli("bootstrap", "--provider", "azure", "--target", SUB, "--apply",
                  "--resource-group", "rg/../x", "--location", "West Europe", "--config", str(config))
    assert bad.code == 1
    assert "--resource-group:1:1: 'rg/../x' is not a resource group name" in bad.err
    assert "--location:1:1: 'West Europe' is not an Azure location name" in bad.err
    guid = run_cli("bootstrap", "--provider", "azure", "--target", "my-subscription", "--apply",
                   "--resource-group", GROUP, "--location", "westeurope", "--config", str(config))
    assert guid.code == 1
    assert "--target:1:1: 'my-subscription' is not an Azure subscription id (a GUID)" in guid.err
    assert "Traceback" not in bad.err + guid.err
    assert _arm_writes(azure_env) == writes


def test_azure_missing_resource_group_says_to_create_it_and_changes_nothing(tmp_path: Path) -> None:
    from workload_ids.sandbox.azure.local import start_local_azure
    strict = start_local_azure(sandbox=False)  # unknown groups are 404, as in Azure
    try:
        strict.arm.add_subscription(SUB)
        result = _azure(strict, tmp_path)
        assert result.code == 1
        assert "ResourceGroupNotFound" in result.err and "create the resource group first" in result.err
        assert f"--name {GROUP} --location westeurope" in result.err
        assert _arm_writes(strict) == 0 and not strict.arm._role_definitions
    finally:
        strict.stop()


# --- ARM emulator: conditions on role assignments ---------------------------------------

def test_arm_emulator_stores_conditions_and_updates_them_in_place(azure_env: Any) -> None:
    from azure.core.exceptions import HttpResponseError, ResourceExistsError
    sub = "5f607182-93a4-45b6-c7d8-e9f001122334"
    scope = f"/subscriptions/{sub}"
    azure_env.arm.add_subscription(sub)
    principal = "0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9"
    azure_env.arm.add_principal(principal, "ServicePrincipal")
    authz = _authz(azure_env, sub)
    reader = f"{scope}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
    name = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"
    base = {"role_definition_id": reader, "principal_id": principal, "principal_type": "ServicePrincipal"}
    cond = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'x'"
    with pytest.raises(HttpResponseError) as no_version:
        authz.role_assignments.create(scope, name, {**base, "condition": cond})
    assert no_version.value.status_code == 400 and "InvalidConditionVersion" in str(no_version.value)
    with pytest.raises(HttpResponseError) as old_version:
        authz.role_assignments.create(scope, name, {**base, "condition": cond, "condition_version": "1.0"})
    assert old_version.value.status_code == 400
    made = authz.role_assignments.create(scope, name, {**base, "condition": cond, "condition_version": "2.0"})
    assert (made.condition, made.condition_version) == (cond, "2.0")
    with pytest.raises(ResourceExistsError):  # the same PUT again
        authz.role_assignments.create(scope, name, {**base, "condition": cond, "condition_version": "2.0"})
    changed = authz.role_assignments.create(scope, name, {**base, "condition": cond + " OR false",
                                                          "condition_version": "2.0"})
    assert changed.condition == cond + " OR false"
    assert authz.role_assignments.get(scope, name).condition == cond + " OR false"
    other = "0b1c2d3e-4f50-4162-8374-95a6b7c8d9e0"
    azure_env.arm.add_principal(other, "ServicePrincipal")
    with pytest.raises(HttpResponseError) as moved:
        authz.role_assignments.create(scope, name, {**base, "principal_id": other})
    assert moved.value.status_code == 400 and "RoleAssignmentUpdateNotPermitted" in str(moved.value)
