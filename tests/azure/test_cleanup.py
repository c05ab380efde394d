"""Azure through the CLI against the local emulators: a fleet apply and fleet plan in a
few calls, then the leaver workflow (quarantine by removing assignments, release,
deletion after grace with a restore bundle, restore), and dead assignments of deleted
principals, sharing the cleanup workflow with AWS and GCP."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.azure import CONTAINER, RG, SUB, TOPIC, arm_clients, azure_workload, held
from support.cli import run_cli
from support.trust import TEST_TRUST

from workload_ids.audit import records
from workload_ids.clock import format_time
from workload_ids.sandbox.azure.arm import StaticTokenCredential
from workload_ids.sandbox.azure.local import LocalAzure, start_local_azure

OWNERS = """\
owners:
  - {id: team-payments, kind: group, active: true, members: [bob]}
  - {id: bob, kind: person, active: true}
  - {id: alice, kind: person, active: false}
"""
_START = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
START, AFTER_GRACE = format_time(_START), format_time(_START + timedelta(days=8))


@pytest.fixture
def azure_fleet(manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalAzure, Path]]:
    local = start_local_azure(sandbox=False)
    for resource in (CONTAINER, TOPIC):
        local.arm.add_resource(resource)
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(
        local.config_block() + "owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
        "cleanup: {grace: 7d, minAge: 1h, maxShare: 1}\n" + TEST_TRUST)
    folder = manifests({f"{n}.yaml": azure_workload(name=n).replace("owner: team-payments", f"owner: {o}")
                        for n, o in [("svc-a", "team-payments"), ("svc-b", "alice"),
                                     ("svc-d", "team-payments")]})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    (folder / "svc-d.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    yield local, folder
    local.stop()


def test_fleet_plan_reads_the_subscription_in_a_few_calls(azure_fleet: tuple[LocalAzure, Path]) -> None:
    _, folder = azure_fleet
    (folder / "svc-d.yaml").write_text(azure_workload(name="svc-d"))
    result = run_cli("plan", str(folder), "--output", "json", "--detailed-exitcode")
    assert result.code == 0, result.out + result.err
    # identities, custom roles, assignments (ARM); applications, service principals (Graph);
    # the marker signing key (Key Vault)
    assert json.loads(result.out)["summary"]["apiCalls"] == 6, result.out[-3000:]


def test_azure_quarantine_release_delete_and_restore(azure_fleet: tuple[LocalAzure, Path]) -> None:
    local, folder = azure_fleet
    dry = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    assert {i["identity"]: (i["status"], i["action"]) for i in dry["identities"]} == {
        "wid-prod-svc-a": ("active", None), "wid-prod-svc-b": ("owner-gone", "quarantine"),
        "wid-prod-svc-d": ("no-manifest", "quarantine")}
    before = held(local)
    result = run_cli("cleanup", str(folder), "--apply")
    assert result.code == 0, result.err + result.out
    after = held(local)
    assert after["wid-prod-svc-a"] == before["wid-prod-svc-a"]
    for name, reason in (("wid-prod-svc-b", "owner-gone"), ("wid-prod-svc-d", "no-manifest")):
        tags, scopes = after[name]
        assert scopes == []  # no access left
        due = format_time(_START + timedelta(days=7))
        assert tags["workload-ids:quarantine"] == f"since={START} reason={reason} delete-after={due}"
    # The roles stay while quarantined, so nothing is lost.
    _, authz = arm_clients(local)
    assert len(list(authz.role_definitions.list(f"/subscriptions/{SUB}", filter="type eq 'CustomRole'"))) == 6
    # A rerun is quiet: enforced quarantines are not redone.
    again = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert again["results"] == []

    # svc-d's manifest comes back: released, access restored exactly.
    (folder / "svc-d.yaml").write_text(azure_workload(name="svc-d"))
    released = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert [(r["identity"], r["action"]) for r in released["results"]] == [("wid-prod-svc-d", "release")]
    tags, scopes = held(local)["wid-prod-svc-d"]
    assert "workload-ids:quarantine" not in tags and scopes == before["wid-prod-svc-d"][1]
    assert run_cli("plan", str(folder / "svc-d.yaml"), "--detailed-exitcode").code == 0

    # After the grace period svc-b is deleted, its bundle first.
    import os
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    deleted = json.loads(run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit",
                                 "--output", "json").out)
    assert [(r["identity"], r["action"], r["ok"]) for r in deleted["results"]] == \
        [("wid-prod-svc-b", "delete", True)]
    assert "wid-prod-svc-b" not in held(local)
    assert len(list(authz.role_definitions.list(f"/subscriptions/{SUB}", filter="type eq 'CustomRole'"))) == 4
    [bundle] = [r for r in records(Path("audit.jsonl")) if r["action"] == "restore-bundle"]
    assert bundle["before"]["name"] == "wid-prod-svc-b" and len(bundle["before"]["roles"]) == 2
    restored = run_cli("restore", "wid-prod-svc-b")
    assert restored.code == 0, restored.err + restored.out
    tags, scopes = held(local)["wid-prod-svc-b"]
    assert scopes == before["wid-prod-svc-b"][1]
    assert "workload-ids:quarantine" not in tags and tags["workload-ids:owner"] == "alice"
    assert run_cli("restore", "wid-prod-svc-b").code == 0  # converges when rerun
    assert run_cli("audit", "verify").code == 0


def test_dead_assignments_of_deleted_identities_are_found_and_removed(
        azure_fleet: tuple[LocalAzure, Path]) -> None:
    local, folder = azure_fleet
    msi, authz = arm_clients(local)
    gone = msi.user_assigned_identities.get(RG, "wid-prod-svc-a")
    # Someone else's Reader assignment to the same principal: not ours, never removed.
    reader = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/" \
             "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    foreign = authz.role_assignments.create(
        f"/subscriptions/{SUB}/resourceGroups/{RG}", str(uuid.uuid4()), {
            "role_definition_id": reader, "principal_id": gone.principal_id,
            "principal_type": "ServicePrincipal"})
    msi.user_assigned_identities.delete(RG, "wid-prod-svc-a")  # by hand: its assignments stay
    left = [a for a in authz.role_assignments.list_for_subscription(
        filter=f"principalId eq '{gone.principal_id}'") if a.name != foreign.name]
    assert len(left) == 2
    dry = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    assert sorted((g["member"], g["scope"]) for g in dry["deadGrants"]) == sorted(
        (gone.principal_id, a.scope) for a in left)
    text = run_cli("cleanup", str(folder)).out
    assert f"dead grant: {gone.principal_id} still holds" in text
    applied = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    assert applied.code == 0, applied.err
    assert [a.name for a in authz.role_assignments.list_for_subscription(
        filter=f"principalId eq '{gone.principal_id}'")] == [foreign.name]
    removed = [r for r in records(Path("audit.jsonl")) if r["action"] == "remove-dead-grant"]
    assert sorted(r["before"]["scope"] for r in removed) == sorted(a.scope for a in left)


def test_key_mode_application_quarantine_delete_and_restore(secret_hygiene: Any, manifests: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A key-mode workload is an application and its service principal: quarantine disables
    the principal (its secret no longer gets a token) and removes its assignments; deletion
    soft-deletes the application; restore brings back the application and the same
    principal, so its secret and its assignments work again."""
    from support.azure import KEY_MODE

    from workload_ids.config import load_config
    from workload_ids.providers.azure.clients import AzureClients
    from workload_ids.providers.azure.graph import GraphClient
    from workload_ids.providers.azure.secret_store import KeyVaultStore
    local = start_local_azure()
    try:
        Path("owners.yaml").write_text(OWNERS)
        Path("workload-ids.yaml").write_text(
            local.config_block() + "owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
            "cleanup: {grace: 7d, minAge: 1h, maxShare: 1}\ncredentials: {verify: {interval: 0s}}\n"
            + TEST_TRUST)
        folder = manifests({"vendor.yaml": KEY_MODE.replace("owner: team-payments", "owner: alice")})
        applied = run_cli("apply", "--auto-approve", str(folder), "--output", "json")
        assert applied.code == 0, applied.err + applied.out
        secret_hygiene.append(applied.out)
        graph = GraphClient(StaticTokenCredential(), **local.graph.client_kwargs())
        [app] = graph.find_applications("displayName eq 'wid-prod-vendor-sync'")
        principal = graph.get_service_principal_by_app_id(app["appId"])
        _, authz = arm_clients(local)

        def scopes() -> list[str]:
            return sorted(a.scope for a in authz.role_assignments.list_for_subscription(
                filter=f"principalId eq '{principal['id']}'"))
        granted = scopes()
        assert len(granted) == 2
        from workload_ids.calls import CallSeam
        store = KeyVaultStore(AzureClients(load_config(), CallSeam()), SUB)
        stored = store.describe("workload-ids/prod/vendor-sync")
        key_id = stored.current_key()
        assert key_id is not None and [c["keyId"] for c in app["passwordCredentials"]] == [key_id]
        secret = store.read_key("workload-ids/prod/vendor-sync", key_id).reveal()

        def works() -> bool:
            return graph.client_secret_works(local.arm.tenant_id, app["appId"], secret)
        assert works()
        listed = json.loads(run_cli("inventory", str(folder), "--output", "json").out)["identities"]
        [row] = [r for r in listed if r["identity"] == "wid-prod-vendor-sync"]
        assert [(k["id"], k["role"], k["status"]) for k in row["keys"]] == [(key_id, "current", "active")]
        assert row["secret"] == "workload-ids/prod/vendor-sync"

        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
        quarantined = run_cli("cleanup", str(folder), "--apply", "--output", "json")
        assert quarantined.code == 0, quarantined.err
        results = json.loads(quarantined.out)["results"]
        assert [(r["action"], r["ok"]) for r in results] == [("quarantine", True)]
        assert graph.get_service_principal(principal["id"])["accountEnabled"] is False
        assert scopes() == [] and not works()

        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", AFTER_GRACE)
        deleted = run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit", "--output", "json")
        assert [(r["action"], r["ok"]) for r in json.loads(deleted.out)["results"]] == [("delete", True)]
        assert graph.find_applications("displayName eq 'wid-prod-vendor-sync'") == []
        assert [d["id"] for d in graph.list_deleted_applications()] == [app["id"]]

        restored = run_cli("restore", "wid-prod-vendor-sync")
        assert restored.code == 0, restored.err + restored.out
        again = graph.get_service_principal_by_app_id(app["appId"])
        assert again["id"] == principal["id"] and again["accountEnabled"] is True
        assert scopes() == granted and works()
        assert run_cli("audit", "verify").code == 0
    finally:
        local.stop()
