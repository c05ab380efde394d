"""``workload-ids adopt`` on Azure (the ARM emulator, the real azure-mgmt clients), issue 17
item 3: a manifest per existing user-assigned managed identity that mirrors it (templates
where one matches exactly, raw entries for the rest, its federated credentials as
federation), the proof that it grants nothing the identity does not hold, what it leaves
out, ``--apply``'s marker, and end to end: after adoption ``plan`` shows no change and
removing the manifest and running ``cleanup`` deletes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.azure import CONTAINER, RG, SUB, TOPIC
from support.azure_adopt import (
    AUDIENCE,
    BLOB,
    BLOB_CONTRIBUTOR,
    BLOB_READER,
    GITHUB,
    READER,
    SEND,
    Azure,
    azure_with_owners,
)
from support.cli import run_cli
from support.leavers import START, by_identity

from workload_ids.audit import records
from workload_ids.model import TAG_ADOPTED, TAG_DELETION_POLICY, TAG_MAC, TAG_MANAGED_BY


@pytest.fixture
def azure() -> Iterator[Azure]:
    with azure_with_owners() as cloud:
        yield cloud


def legacy(azure: Azure, reader: bool = True, **kwargs: Any) -> str:
    """Legacy-Recon: blob reader on the container (a template plus one action no template
    has), a custom role that sends to the topic (a template exactly), and (``reader``)
    Reader on the resource group (no manifest lists a resource group)."""
    address = azure.identity(**kwargs)
    azure.assign("Legacy-Recon", BLOB_READER, CONTAINER)
    azure.assign("Legacy-Recon", azure.custom_role("legacy sender", data_actions=[SEND]), TOPIC)
    if reader:
        azure.assign("Legacy-Recon", READER, f"/subscriptions/{SUB}/resourceGroups/{RG}")
    return address


def test_adopt_writes_a_manifest_that_mirrors_the_identity(azure: Azure, tmp_path: Path) -> None:
    address = legacy(azure)
    before = azure.state("Legacy-Recon")
    result = run_cli("adopt", address, "--out", str(tmp_path / "adopted"), "--owner", "team-a",
                     "--environment", "prod")
    assert result.code == 0, result.err + result.out
    text = (tmp_path / "adopted" / "prod-legacy-recon.yaml").read_text()
    assert "  mode: observe\n  deletionPolicy: retain\n" in text
    assert f'  adopted: "{address}"' in text
    assert f'    subscription: "{SUB}"\n    resourceGroup: "{RG}"\n    location: "westeurope"' in text
    assert f'    - template: "object-storage.read"\n      resources:\n        - "{CONTAINER}"' in text
    assert f'    - template: "topic.publish"\n      resources:\n        - "{TOPIC}"' in text
    # The built-in role's one action no template gives stays, raw, with where it came from.
    assert f'        - "{BLOB}/generateUserDelegationKey/action"' in text
    assert 'reason: "adopted from role assignment ' in text
    assert "(Storage Blob Data Reader, built-in role)" in text
    assert '        repository: "acme/legacy"' in text and '        ref: "refs/heads/main"' in text
    # Reader on the resource group: a manifest lists resources, not groups; left out, in words.
    for out in (result.out, text):
        assert "(Reader, built-in role) at /subscriptions/" in out
        assert "a manifest lists resources of the kinds the tool knows, not this scope" in out
        assert "wildcard action */read" in out
    assert "*/read" not in text.split("apiVersion:")[1]
    assert "proof: grants nothing the identity does not hold today" in result.out
    assert "templates matched exactly: object-storage.read, topic.publish" in result.out
    assert "trust: unchanged" in result.out and "nothing marked" in result.out
    assert azure.state("Legacy-Recon") == before  # without --apply nothing is written to the cloud
    assert run_cli("validate", str(tmp_path / "adopted")).code == 0
    doc = json.loads(run_cli("adopt", address, "--out", str(tmp_path / "again"), "--owner", "team-a",
                             "--environment", "prod", "--output", "json").out)
    assert doc["adoptions"][0]["widening"] == [] and doc["adoptions"][0]["trustChange"] == []


def test_data_actions_are_written_as_data_actions_and_proven(azure: Azure, tmp_path: Path) -> None:
    """A custom role of the blob reader's operations plus a write: no template gives exactly
    that, so the role's data actions are written as dataActions of a raw entry, and the
    proof compares them too (a template giving blob writes it never held is not taken)."""
    address = azure.identity()
    role = azure.custom_role("legacy blob", actions=[
        "Microsoft.Storage/storageAccounts/blobServices/containers/read"], data_actions=[
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"])
    azure.assign("Legacy-Recon", role, CONTAINER)
    result = run_cli("adopt", address, "--out", str(tmp_path / "a"), "--owner", "team-a")
    assert result.code == 0, result.err + result.out
    text = (tmp_path / "a" / "adopted-legacy-recon.yaml").read_text()
    assert "template" not in text.split("access:")[1]  # neither read nor write matches exactly
    assert (f'    - actions:\n        - "{BLOB}/containers/read"\n'
            f'      dataActions:\n        - "{BLOB}/containers/blobs/write"') in text
    assert "proof: grants nothing the identity does not hold today" in result.out


def test_adopt_apply_then_plan_shows_no_change_and_cleanup_deletes_nothing(
        azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = legacy(azure, reader=False,
                     tags={"owner": "team-a", "environment": "prod", "cost-center": "42"})
    folder = tmp_path / "adopted"
    before = azure.state("Legacy-Recon")
    result = run_cli("adopt", address, "--out", str(folder), "--apply")
    assert result.code == 0, result.err + result.out
    assert "marked as adopted" in result.out
    marked = azure.state("Legacy-Recon")
    tags = marked["tags"]
    assert tags[TAG_MANAGED_BY] == "workload-ids" and tags[TAG_ADOPTED] == "true"
    assert tags[TAG_DELETION_POLICY] == "retain" and tags["cost-center"] == "42" and tags[TAG_MAC]
    assert {k: v for k, v in marked.items() if k != "tags"} == \
        {k: v for k, v in before.items() if k != "tags"}
    adopted = [r for r in records(Path("audit.jsonl")) if r["action"] == "adopt"]
    assert adopted and adopted[0]["detail"]["owner"] == "team-a"

    plan = run_cli("plan", "--detailed-exitcode", str(folder))
    assert plan.code == 0, plan.out + plan.err
    assert "No changes" in plan.out and "also holds" not in plan.out
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert azure.state("Legacy-Recon") == marked
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    active = by_identity(json.loads(run_cli("cleanup", str(folder), "--output", "json").out))
    assert active["Legacy-Recon"]["status"] == "active"

    (folder / "prod-legacy-recon.yaml").unlink()
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    after = azure.state("Legacy-Recon")
    assert after == before  # the marker gone, every tag, credential, assignment and role kept
    assert [r["identity"] for r in records(Path("audit.jsonl")) if r["action"] == "release-identity"] \
        == ["Legacy-Recon"]


def test_plan_reports_drift_of_an_adopted_identity_and_apply_changes_nothing(
        azure: Azure, tmp_path: Path) -> None:
    address = legacy(azure)
    folder = tmp_path / "a"
    assert run_cli("adopt", address, "--out", str(folder), "--owner", "team-a", "--apply").code == 0
    azure.assign("Legacy-Recon", BLOB_CONTRIBUTOR, CONTAINER)  # someone widens it by hand
    azure.msi.federated_identity_credentials.create_or_update(
        RG, "Legacy-Recon", "extra", {"issuer": GITHUB, "subject": "repo:acme/other:ref:refs/heads/main",
                                      "audiences": [AUDIENCE]})
    drifted = azure.state("Legacy-Recon")
    plan = run_cli("plan", "--detailed-exitcode", str(folder))
    assert plan.code == 2, plan.out + plan.err
    assert f"- {BLOB}/containers/blobs/delete  {CONTAINER}" in plan.out
    assert "repo:acme/other:ref:refs/heads/main" in plan.out
    # What the manifest already leaves out (Reader on the group) shows as drift too.
    assert "- */read  /subscriptions/" in plan.out
    assert "observe only: apply will not make this change" in plan.out
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert azure.state("Legacy-Recon") == drifted


def test_apply_refuses_a_trust_change(azure: Azure, tmp_path: Path) -> None:
    """A credential from an issuer the config does not trust cannot be written as a
    federation entry: the manifest narrows trust, which --apply refuses to mark."""
    address = azure.identity(subjects=("repo:acme/legacy:ref:refs/heads/main",))
    azure.msi.federated_identity_credentials.create_or_update(
        RG, "Legacy-Recon", "rogue", {"issuer": "https://issuer.example.net", "audiences": [AUDIENCE],
                                      "subject": "system:serviceaccount:ci:deployer"})
    azure.assign("Legacy-Recon", BLOB_READER, CONTAINER)
    before = azure.state("Legacy-Recon")
    result = run_cli("adopt", address, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "its issuer is not in the config's trust.allowedIssuers" in result.out
    assert "- trust https://issuer.example.net  system:serviceaccount:ci:deployer" in result.out
    assert "REFUSED: --apply refused: a plan of the new manifest shows a trust change" in result.out
    assert azure.state("Legacy-Recon") == before
    assert (tmp_path / "a" / "adopted-legacy-recon.yaml").exists()  # written for review


@pytest.mark.parametrize("identity, message", [
    (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nope",
     "no such identity (adopt matched nothing for it)"),
    (f"/subscriptions/{SUB}/resourceGroups/rg-other/providers/Microsoft.ManagedIdentity/"
     "userAssignedIdentities/Legacy-Recon", "no such identity"),
    ("7d3c6a52-9d1e-4d5e-8a43-2f1b5c0e9a11", "adopt takes over user-assigned managed identities only"),
    (f"/subscriptions/{SUB}/applications/wid-prod-vendor-sync",
     "is an Azure application or service principal"),
])
def test_an_identity_that_matches_nothing_is_an_error(azure: Azure, tmp_path: Path, identity: str,
                                                      message: str) -> None:
    address = legacy(azure)
    azure.local.arm.add_resource_group(SUB, "rg-other")
    result = run_cli("adopt", address, identity, "--out", str(tmp_path / "a"), "--owner", "team-a")
    assert result.code == 1, result.out + result.err
    assert message in result.err and "nothing was adopted" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())


def test_an_identity_workload_ids_manages_is_not_adopted(azure: Azure, manifests: Any,
                                                         tmp_path: Path) -> None:
    from support.azure import azure_workload
    assert run_cli("apply", "--auto-approve", str(manifests({"a.yaml": azure_workload()}))).code == 0
    before = azure.state("wid-prod-recon")
    result = run_cli("adopt", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
                     "Microsoft.ManagedIdentity/userAssignedIdentities/wid-prod-recon",
                     "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 1, result.out + result.err
    assert "already carries a workload-ids marker (workload prod/recon" in result.out
    assert azure.state("wid-prod-recon") == before


def test_an_adopted_identity_is_marked_only_once(azure: Azure, tmp_path: Path) -> None:
    address = legacy(azure)
    assert run_cli("adopt", address, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply").code == 0
    marked = azure.state("Legacy-Recon")
    # ARM's own spelling of the id (``resourcegroups``), as discover shows it, is the same identity.
    arm_id = str(azure.msi.user_assigned_identities.get(RG, "Legacy-Recon").id)
    assert "/resourcegroups/" in arm_id
    result = run_cli("adopt", arm_id, "--out", str(tmp_path / "b"), "--owner", "bob", "--apply")
    assert result.code == 1
    assert "already carries a workload-ids marker (workload adopted/legacy-recon, owner team-a)" in result.out
    assert azure.state("Legacy-Recon") == marked and not list((tmp_path / "b").iterdir())


def test_flipped_to_manage_apply_converges_the_adopted_identity(azure: Azure, tmp_path: Path) -> None:
    address = azure.identity()
    azure.assign("Legacy-Recon", BLOB_READER, CONTAINER)
    folder = tmp_path / "a"
    assert run_cli("adopt", address, "--out", str(folder), "--owner", "team-a", "--apply").code == 0
    path = folder / "adopted-legacy-recon.yaml"
    path.write_text(path.read_text().replace("  mode: observe\n", "  mode: manage\n"))
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0, "manage mode converges"
    after = azure.state("Legacy-Recon")
    assert after["tags"][TAG_ADOPTED] == "true" and len(after["roles"]) == 2  # our roles, by permission set
    assert run_cli("plan", "--detailed-exitcode", str(folder)).code == 0


@pytest.mark.parametrize("adopted, message", [
    (f"/subscriptions/{SUB}/resourceGroups/rg-other/providers/Microsoft.ManagedIdentity/"
     "userAssignedIdentities/recon", "spec.adopted is an identity of subscription"),
    (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/sites/recon",
     "is not a user-assigned managed identity's resource id"),
])
def test_spec_adopted_must_name_an_identity_where_the_workload_lives(manifests: Any, adopted: str,
                                                                     message: str) -> None:
    from support.azure import azure_workload
    text = azure_workload().replace("  credentials:", f'  adopted: "{adopted}"\n  credentials:')
    result = run_cli("validate", str(manifests({"a.yaml": text})))
    assert result.code == 1, result.out + result.err
    assert message in result.err and "a.yaml:10:12:" in result.err


def test_a_fleet_of_adopted_identities_plans_no_change(azure: Azure, tmp_path: Path) -> None:
    """Past the fleet threshold plan reads the subscription in batches, which leave out
    federated credentials and role definitions: adopted identities are read again alone."""
    addresses = []
    for i in range(11):
        addresses.append(azure.identity(f"legacy-{i:02d}"))
        azure.assign(f"legacy-{i:02d}", BLOB_READER, CONTAINER)
    result = run_cli("adopt", *addresses, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 0, result.out + result.err
    plan = run_cli("plan", "--detailed-exitcode", str(tmp_path / "a"))
    assert plan.code == 0, plan.out + plan.err
    assert "No changes. 11 workload(s) match the cloud." in plan.out
