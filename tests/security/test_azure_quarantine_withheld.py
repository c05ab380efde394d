"""Quarantine of an Azure managed identity cuts every role assignment of its principal
(issue 17 leftovers): an adopted identity's hand-made assignments too, not only the tool's
own. Azure has no switch for a managed identity (AWS quarantine denies everything, GCP
disables the account), so until now an adopted identity whose owner left kept its
hand-made access. Each removed assignment is journalled in the audit trail first, under a
MAC, and release or restore gives back exactly those; a journal the tool did not sign is
never given back; another principal's assignment at the same scope is never touched; and
releasing a retained identity (its manifest removed) leaves its assignments alone.

All on the ARM emulator through the real azure-mgmt clients and the CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.azure import CONTAINER, RG, SUB, azure_workload
from support.azure_adopt import BLOB_READER, READER, ROLES, Azure, azure_with_owners
from support.cli import run_cli
from support.leavers import AFTER_GRACE, OWNERS, START, by_identity

from workload_ids.audit import JsonlAuditLog, records
from workload_ids.errors import ConflictError
from workload_ids.providers.azure.withheld import principal_guid, select

CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
GROUP = f"/subscriptions/{SUB}/resourceGroups/{RG}"
SUBSCRIPTION = f"/subscriptions/{SUB}"
CONDITION = ("((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'})) "
             "OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] "
             "StringEquals 'reports'))")


@pytest.fixture
def azure() -> Iterator[Azure]:
    with azure_with_owners() as cloud:
        yield cloud


def assignments(azure: Azure, principal: str) -> list[tuple[str, str, str, str | None]]:
    """Every assignment of ``principal`` ARM holds: (name, scope, role, condition)."""
    return sorted((str(a.name), str(a.scope), str(a.role_definition_id).rsplit("/", 1)[-1], a.condition)
                  for a in azure.authz.role_assignments.list_for_subscription()
                  if str(a.principal_id).lower() == principal.lower())


def owner_active(team: str, active: bool) -> None:
    entry = f"{{id: {team}, kind: group, active: "
    Path("owners.yaml").write_text(OWNERS.replace(entry + "true", entry + str(active).lower()))


def adopted_with_hand_made_grants(azure: Azure, tmp_path: Path) -> tuple[str, Path]:
    """Legacy-Recon, adopted for team-a: a blob reader on the container (what the manifest
    holds), Contributor on the resource group, Reader on the subscription and a conditional
    blob reader on the group (all three left out of the manifest: hand-made, kept)."""
    address = azure.identity()
    azure.assign("Legacy-Recon", BLOB_READER, CONTAINER)
    azure.assign("Legacy-Recon", CONTRIBUTOR, GROUP)
    azure.assign("Legacy-Recon", READER, SUBSCRIPTION)
    azure.assign("Legacy-Recon", BLOB_READER, GROUP, condition=CONDITION, condition_version="2.0")
    folder = tmp_path / "adopted"
    result = run_cli("adopt", address, "--out", str(folder), "--owner", "team-a", "--apply")
    assert result.code == 0, result.out + result.err
    return azure.principal("Legacy-Recon"), folder


def bystander(azure: Azure) -> tuple[str, list[Any]]:
    """Another identity, not ours, holding the same roles at the same scopes."""
    azure.identity("someone-else")
    for role, scope in ((CONTRIBUTOR, GROUP), (READER, SUBSCRIPTION), (BLOB_READER, CONTAINER)):
        azure.assign("someone-else", role, scope)
    principal = azure.principal("someone-else")
    return principal, assignments(azure, principal)


def test_quarantine_cuts_every_assignment_of_an_adopted_identity_and_release_gives_them_back(
        azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    principal, folder = adopted_with_hand_made_grants(azure, tmp_path)
    other, others = bystander(azure)
    before = assignments(azure, principal)
    assert len(before) == 4
    owner_active("team-a", False)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    dry = by_identity(json.loads(run_cli("cleanup", str(folder), "--output", "json").out))
    assert (dry["Legacy-Recon"]["status"], dry["Legacy-Recon"]["action"]) == ("owner-gone", "quarantine")

    result = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    assert result.code == 0, result.out + result.err
    # No access left: not one assignment of its principal, at any scope.
    assert assignments(azure, principal) == []
    assert assignments(azure, other) == others  # the same roles at the same scopes, untouched
    [step] = [s for r in json.loads(result.out)["results"] for s in r["steps"] if "did not make" in s]
    assert step.startswith("removed 4 role assignment(s) workload-ids did not make (recorded in the "
                           "audit log")
    # Journalled first, exactly: name, scope, role and condition of each.
    trail = list(records(Path("audit.jsonl")))
    [journal] = [r for r in trail if r["action"] == "withhold-grants"]
    assert [r["action"] for r in trail].index("withhold-grants") < \
        [r["action"] for r in trail].index("quarantine")
    assert journal["identity"] == "Legacy-Recon" and journal["before"]["principalId"] == principal
    assert sorted((g["name"], g["scope"], g["roleDefinitionId"].rsplit("/", 1)[-1], g["condition"])
                  for g in journal["before"]["grants"]) == before
    assert journal["before"]["mac"]
    # Enforced: a rerun has nothing to do.
    assert json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)["results"] == []

    # Someone assigns it a role by hand while it is quarantined: the next run removes it too.
    late = azure.assign("Legacy-Recon", READER, GROUP)
    again = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert [(r["identity"], r["action"], r["ok"]) for r in again["results"]] == \
        [("Legacy-Recon", "enforce", True)]
    assert assignments(azure, principal) == []

    # The owner is back: released, every assignment back exactly (names, scopes, roles,
    # conditions), the late one too.
    owner_active("team-a", True)
    released = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert [(r["identity"], r["action"], r["ok"]) for r in released["results"]] == \
        [("Legacy-Recon", "release", True)]
    assert assignments(azure, principal) == sorted([*before, (late, GROUP, READER, None)])
    assert assignments(azure, other) == others
    assert "workload-ids:quarantine" not in azure.state("Legacy-Recon")["tags"]
    assert run_cli("audit", "verify").code == 0
    # Given back once: the next quarantine journals afresh, nothing old is replayed.
    assert json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)["results"] == []


def test_releasing_a_retained_identity_keeps_its_hand_made_assignments(
        azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """deletionPolicy retain, manifest removed: only our marker goes; no assignment is
    touched and nothing is journalled."""
    principal, folder = adopted_with_hand_made_grants(azure, tmp_path)
    before = assignments(azure, principal)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    for manifest in folder.iterdir():
        manifest.unlink()
    result = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    assert result.code == 0, result.out + result.err
    assert [(r["identity"], r["action"], r["ok"]) for r in json.loads(result.out)["results"]] == \
        [("Legacy-Recon", "disown", True)]
    assert assignments(azure, principal) == before
    assert not [r for r in records(Path("audit.jsonl")) if r["action"] == "withhold-grants"]


def test_a_quarantined_retained_identity_released_gets_its_assignments_back(
        azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Owner gone (quarantined, hand-made assignments withheld), then its manifest removed:
    the release hands the identity back as it was adopted, assignments included."""
    principal, folder = adopted_with_hand_made_grants(azure, tmp_path)
    before = assignments(azure, principal)
    owner_active("team-a", False)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert assignments(azure, principal) == []
    for manifest in folder.iterdir():
        manifest.unlink()
    result = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    assert [(r["identity"], r["action"], r["ok"]) for r in json.loads(result.out)["results"]] == \
        [("Legacy-Recon", "disown", True)]
    assert assignments(azure, principal) == before
    tags = azure.state("Legacy-Recon")["tags"]
    assert not [k for k in tags if k.startswith("workload-ids:")]


def test_release_gives_them_back_even_after_someone_removed_the_quarantine_mark(
        azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Tag Contributor removes the quarantine mark, then the manifest is removed: the
    release (no mark to lift) still hands back what the quarantine withheld."""
    principal, folder = adopted_with_hand_made_grants(azure, tmp_path)
    before = assignments(azure, principal)
    owner_active("team-a", False)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    tags = {k: v for k, v in azure.state("Legacy-Recon")["tags"].items() if k != "workload-ids:quarantine"}
    azure.msi.user_assigned_identities.create_or_update(RG, "Legacy-Recon", {"location": "westeurope",
                                                                             "tags": tags})
    for manifest in folder.iterdir():
        manifest.unlink()
    result = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    [action] = json.loads(result.out)["results"]
    assert (action["action"], action["ok"]) == ("disown", True), action
    assert "gave back 4 role assignment(s) a quarantine withheld" in action["steps"]
    assert assignments(azure, principal) == before


def test_without_an_audit_log_quarantine_still_cuts_them_and_lists_each(
        azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Access is cut all the same; with nowhere to journal them, the step lists each
    assignment (role and scope) so that a person can put them back, and says why."""
    principal, folder = adopted_with_hand_made_grants(azure, tmp_path)
    Path("workload-ids.yaml").write_text(Path("workload-ids.yaml").read_text().replace(
        "audit: {path: audit.jsonl}\n", ""))
    owner_active("team-a", False)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    result = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    assert result.code == 0, result.out + result.err
    assert assignments(azure, principal) == []
    [step] = [s for r in json.loads(result.out)["results"] for s in r["steps"] if "did not make" in s]
    assert "no audit log is configured, so nothing puts them back: set audit.path" in step
    assert f"{ROLES}/{CONTRIBUTOR} at {GROUP}" in step and f"{ROLES}/{READER} at {SUBSCRIPTION}" in step


def test_a_forged_withhold_record_is_never_given_back(
        azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever can append to the audit trail writes a withhold record giving the quarantined
    identity Owner on the subscription (with a MAC it had to guess): the release refuses it
    and creates nothing; the identity stays quarantined."""
    principal, folder = adopted_with_hand_made_grants(azure, tmp_path)
    owner_active("team-a", False)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    [real] = [r for r in records(Path("audit.jsonl")) if r["action"] == "withhold-grants"]
    forged = json.loads(json.dumps(real["before"]))
    forged["grants"].append({"name": str(uuid.uuid4()), "scope": SUBSCRIPTION,
                             "roleDefinitionId": f"{ROLES}/{OWNER_ROLE}", "principalType": "ServicePrincipal",
                             "condition": None, "conditionVersion": None, "description": None})
    JsonlAuditLog(Path("audit.jsonl")).append({
        "time": real["time"], "actor": real["actor"], "command": "cleanup", "workload": real["workload"],
        "provider": "azure", "target": SUB, "identity": "Legacy-Recon", "action": "withhold-grants",
        "before": forged, "after": None, "result": "ok"})
    assert run_cli("audit", "verify").code == 0  # the chain holds: only the MAC tells
    owner_active("team-a", True)
    result = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    [action] = json.loads(result.out)["results"]
    assert (action["action"], action["ok"]) == ("release", False)
    assert "is not authenticated" in action["error"]
    assert assignments(azure, principal) == []  # neither Owner nor anything else given
    assert "workload-ids:quarantine" in azure.state("Legacy-Recon")["tags"]


@pytest.fixture
def created(azure: Azure, manifests: Any) -> tuple[Azure, Path]:
    """wid-prod-recon, made by apply for alice (who has left), with a Reader assignment on
    the resource group someone added by hand."""
    folder = manifests({"recon.yaml": azure_workload().replace("owner: team-payments", "owner: alice")})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.out + applied.err
    return azure, folder


def test_deletion_bundles_the_withheld_assignments_and_restore_gives_them_back(
        created: tuple[Azure, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    azure, folder = created
    name = "wid-prod-recon"
    hand = azure.assign(name, READER, GROUP, description="read-only for the on-call")
    old = azure.principal(name)
    ours = [a for a in assignments(azure, old) if a[0] != hand]
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert assignments(azure, old) == []
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", AFTER_GRACE)
    deleted = json.loads(run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit",
                                 "--output", "json").out)
    assert [(r["identity"], r["action"], r["ok"]) for r in deleted["results"]] == [(name, "delete", True)]
    [bundle] = [r["before"] for r in records(Path("audit.jsonl")) if r["action"] == "restore-bundle"]
    assert [(g["name"], g["scope"], g["description"]) for j in bundle["withheldGrants"]
            for g in j["grants"]] == [(hand, GROUP, "read-only for the on-call")]

    restored = run_cli("restore", name)
    assert restored.code == 0, restored.out + restored.err
    assert "1 role assignment(s) of other roles that quarantine withheld" in restored.out
    new = azure.principal(name)
    assert new != old  # Azure has no undelete: a new principal gets them
    assert assignments(azure, new) == sorted([*ours, (hand, GROUP, READER, None)])
    [given] = [a for a in azure.authz.role_assignments.list_for_subscription(
        filter=f"principalId eq '{new}'") if a.name == hand]
    assert given.description == "read-only for the on-call"
    assert run_cli("restore", name).code == 0  # converges when rerun
    assert run_cli("audit", "verify").code == 0


def _assignment(principal: str, scope: str, role: str = READER, name: str = "") -> Any:
    return SimpleNamespace(principal_id=principal, scope=scope, role_definition_id=f"{ROLES}/{role}",
                           name=name or str(uuid.uuid4()), principal_type="ServicePrincipal",
                           condition=None, condition_version=None, description=None)


def test_only_the_identitys_own_principal_is_selected_whatever_the_list_holds() -> None:
    """The guard below the server's filter: a list that returns everyone's assignments (an
    API that ignored $filter, a filter by an empty principal) must not make quarantine
    remove someone else's. GUIDs compare case-insensitively, as ARM compares them."""
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    listed = [_assignment(mine.upper(), GROUP, name="a"), _assignment(theirs, GROUP, name="b"),
              _assignment(theirs, SUBSCRIPTION, name="c"), _assignment(mine, SUBSCRIPTION, CONTRIBUTOR, "d"),
              _assignment(mine, "/providers/Microsoft.Management/managementGroups/acme", name="e"),
              _assignment(mine, f"/subscriptions/{uuid.uuid4()}/resourceGroups/x", name="f"),
              _assignment(mine, CONTAINER, "0" * 8 + "-0000-0000-0000-" + "0" * 12, "g"),
              _assignment(mine, GROUP, OWNER_ROLE, "h")]
    inside, left = select(SUB, mine, listed, ["0" * 8 + "-0000-0000-0000-" + "0" * 12])
    assert [g["name"] for g in inside] == ["d", "a"]  # by scope: the subscription, then the group
    # Said, not removed: above the subscription, or an admin role; never another subscription's.
    assert left == [f"{ROLES}/{OWNER_ROLE} at {GROUP} (an administrator role, which the tool's role "
                    "assignment rights exclude)",
                    f"{ROLES}/{READER} at /providers/Microsoft.Management/managementGroups/acme (above the "
                    "subscription)"]


def test_the_admin_roles_left_alone_are_those_bootstraps_condition_excludes() -> None:
    """Quarantine leaves exactly the roles the cleanup identity may not remove (its ABAC
    condition), and the cleanup identity may write assignments: release gives them back."""
    from workload_ids.bootstrap import azure as boot_azure
    from workload_ids.providers.azure.withheld import ADMIN_ROLES
    assert set(boot_azure.ADMIN_ROLES) == ADMIN_ROLES
    for action in ("read", "write", "delete"):
        assert f"Microsoft.Authorization/roleAssignments/{action}" in boot_azure.ACTIONS["cleanup"]


def test_an_admin_role_assignment_stays_and_is_named(created: tuple[Azure, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    azure, folder = created
    name = "wid-prod-recon"
    azure.assign(name, OWNER_ROLE, GROUP)
    azure.assign(name, READER, GROUP)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    result = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    assert result.code == 0, result.out + result.err
    [action] = json.loads(result.out)["results"]
    assert action["ok"], action
    assert any(s.startswith("removed 1 role assignment(s) workload-ids did not make")
               for s in action["steps"])
    assert f"1 role assignment(s) stay, which workload-ids cannot remove: {ROLES}/{OWNER_ROLE} at {GROUP} " \
        "(an administrator role, which the tool's role assignment rights exclude); remove them by hand" \
        in action["steps"]
    assert [a[1:3] for a in assignments(azure, azure.principal(name))] == [(GROUP, OWNER_ROLE)]
    # Not enforced again and again for what it cannot remove.
    assert json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)["results"] == []


@pytest.mark.parametrize("principal", ["", "None", "*", "0b1f6471"])
def test_no_assignment_is_read_for_a_principal_that_is_not_one_guid(principal: str) -> None:
    with pytest.raises(ConflictError, match="has no principal id workload-ids can read"):
        principal_guid(principal, "managed identity x")
