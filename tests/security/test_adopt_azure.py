"""Attacks on ``workload-ids adopt`` for Azure managed identities (issue 17, item 3), on the
ARM emulator with the real SDKs: adoption must not launder a grant the guardrails refuse
into an approved manifest, must not let a manifest grant what the identity never held
(a template whose control-plane half matches but whose data actions were never granted),
must not mark an identity whose trust the manifest changes or that changed since it was
proven, and a marker copied from an adopted identity onto another one (outside the tool's
naming, where only the MAC vouches for it) is never believed, re-marked or acted on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.azure import CONTAINER, RG, SUB
from support.azure_adopt import BLOB, BLOB_CONTRIBUTOR, BLOB_READER, GITHUB, VAULT, Azure, azure_with_owners
from support.cli import run_cli
from support.leavers import START, by_identity

from workload_ids.calls import CallSeam
from workload_ids.clouds import connect
from workload_ids.config import load_config
from workload_ids.errors import ConflictError
from workload_ids.model import TAG_ADOPTED, TAG_DELETION_POLICY, TAG_SOURCE, TAG_WORKLOAD, Marker


@pytest.fixture
def azure() -> Iterator[Azure]:
    with azure_with_owners() as cloud:
        yield cloud


def test_a_denied_action_is_not_laundered(azure: Azure, tmp_path: Path) -> None:
    Path("workload-ids.yaml").write_text(
        Path("workload-ids.yaml").read_text()
        + f"guardrails: {{deniedActions: [{BLOB}/containers/blobs/delete]}}\n")
    address = azure.identity()
    azure.assign("Legacy-Recon", BLOB_CONTRIBUTOR, CONTAINER)  # a built-in role that deletes blobs
    before = azure.state("Legacy-Recon")
    result = run_cli("adopt", address, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "the identity holds what the config's guardrails refuse" in result.err
    assert "containers/blobs/delete" in result.err and "nothing was written" in result.err
    assert list((tmp_path / "a").iterdir()) == []
    assert azure.state("Legacy-Recon") == before


def test_an_escalation_is_not_laundered(azure: Azure, tmp_path: Path) -> None:
    address = azure.identity()
    role = azure.custom_role("vault keeper", actions=["Microsoft.KeyVault/vaults/accessPolicies/write"])
    azure.assign("Legacy-Recon", role, VAULT)
    before = azure.state("Legacy-Recon")
    result = run_cli("adopt", address, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "Microsoft.KeyVault/vaults/accessPolicies/write" in result.err
    assert "approvedEscalations" in result.err
    assert list((tmp_path / "a").iterdir()) == []
    assert azure.state("Legacy-Recon") == before


def test_a_template_is_never_matched_by_its_control_plane_half(azure: Azure, tmp_path: Path) -> None:
    """The identity may list the container (containers/read) but never read a blob: the
    object-storage.read template also grants blobs/read, a data action, so taking it would
    widen the identity. Data actions count in the match and in the proof."""
    address = azure.identity()
    azure.assign("Legacy-Recon", azure.custom_role("lister", actions=[f"{BLOB}/containers/read"]), CONTAINER)
    result = run_cli("adopt", address, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 0, result.out + result.err
    text = (tmp_path / "a" / "adopted-legacy-recon.yaml").read_text()
    assert "object-storage.read" not in text and "blobs/read" not in text
    assert f'    - actions:\n        - "{BLOB}/containers/read"\n' in text
    assert "proof: grants nothing the identity does not hold today" in result.out
    assert run_cli("plan", "--detailed-exitcode", str(tmp_path / "a")).code == 0


def test_apply_never_marks_an_identity_whose_trust_it_would_change(azure: Azure, tmp_path: Path) -> None:
    """A federated credential for a GitHub owner the config does not list cannot become a
    federation entry: the manifest would drop that trust, so the identity is not marked."""
    address = azure.identity(subjects=("repo:acme/legacy:ref:refs/heads/main",
                                       "repo:evil-corp/tool:ref:refs/heads/main"))
    azure.assign("Legacy-Recon", BLOB_READER, CONTAINER)
    before = azure.state("Legacy-Recon")
    result = run_cli("adopt", address, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "GitHub owner evil-corp is not in the config's trust.allowedGithubOwners" in result.out
    assert f"- trust {GITHUB}  repo:evil-corp/tool:ref:refs/heads/main" in result.out
    assert "REFUSED: --apply refused" in result.out
    assert azure.state("Legacy-Recon") == before
    text = (tmp_path / "a" / "adopted-legacy-recon.yaml").read_text()
    assert "evil-corp" not in text.split("apiVersion:")[1]


def test_mark_refuses_an_identity_that_changed_since_it_was_proven(azure: Azure, tmp_path: Path) -> None:
    """Between adopt's read and its marker, someone grants the identity more: the marker
    would vouch for grants no proof covered, so nothing is marked."""
    address = azure.identity()
    azure.assign("Legacy-Recon", BLOB_READER, CONTAINER)
    config = load_config(Path("workload-ids.yaml"))
    backend = connect("azure", config, CallSeam()).adoption
    assert backend is not None
    held = backend.read(SUB, address)
    assert held is not None
    azure.assign("Legacy-Recon", BLOB_CONTRIBUTOR, CONTAINER)
    before = azure.state("Legacy-Recon")
    marker = Marker("legacy-recon", "team-a", "adopted", "0" * 64, deletion="retain", adopted="true")
    with pytest.raises(ConflictError, match="changed its federated credentials or role assignments"):
        backend.mark(held, marker)
    assert azure.state("Legacy-Recon") == before


def test_a_copied_adopted_marker_is_never_believed(azure: Azure, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone with Tag Contributor copies an adopted identity's marker, MAC and all, onto
    another identity outside the tool's naming: the MAC binds the marker to the first
    identity's principal, so the copy is forged; plan and apply refuse a manifest naming it,
    adopt refuses it, and cleanup never releases or quarantines it."""
    first = azure.identity("legacy-a")
    azure.assign("legacy-a", BLOB_READER, CONTAINER)
    assert run_cli("adopt", first, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply").code == 0
    copy = azure.identity("legacy-b")
    azure.assign("legacy-b", BLOB_READER, CONTAINER)
    # The copy names the workload and manifest the attacker's manifest declares, so only the
    # MAC tells it apart from an adopted identity of ours.
    forged = {**azure.state("legacy-a")["tags"], TAG_WORKLOAD: "legacy-b", TAG_SOURCE: "b/b.yaml"}
    azure.msi.user_assigned_identities.create_or_update(RG, "legacy-b", {"location": "westeurope",
                                                                         "tags": forged})
    stolen = azure.state("legacy-b")
    manifest = (tmp_path / "a" / "adopted-legacy-a.yaml").read_text().replace("legacy-a", "legacy-b")
    Path("b").mkdir()
    Path("b/b.yaml").write_text(manifest)
    plan = run_cli("plan", "b")
    assert plan.code == 1, plan.out + plan.err
    assert "it is marked as adopted but its marker is not authenticated" in plan.err
    assert run_cli("apply", "--auto-approve", "b").code == 1
    assert azure.state("legacy-b") == stolen
    again = run_cli("adopt", copy, "--out", str(tmp_path / "c"), "--owner", "team-a", "--apply")
    assert again.code == 1 and "its marker is forged" in again.out
    assert azure.state("legacy-b") == stolen
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    found = by_identity(json.loads(run_cli("cleanup", "--target", SUB, "--output", "json").out))
    assert (found["legacy-b"]["status"], found["legacy-b"]["action"]) == ("forged", None)
    assert found["legacy-a"]["status"] == "active"
    assert run_cli("cleanup", "--target", SUB, "--apply").code == 0
    assert azure.state("legacy-b") == stolen


def test_a_stray_retain_or_adopted_tag_is_never_signed(azure: Azure, manifests: Any) -> None:
    """A Tag Contributor adds ``workload-ids:deletion-policy: retain`` to an identity the
    tool manages (deletion policy delete): its marker no longer verifies, and apply,
    re-marking it, must remove that tag rather than sign it (which would turn a delete into
    a release). ``workload-ids:adopted: true`` added by hand makes the marker one only a
    MAC could vouch for: forged, never re-marked."""
    from support.azure import azure_workload
    folder = manifests({"a.yaml": azure_workload()})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    tags = azure.state("wid-prod-recon")["tags"]
    azure.msi.user_assigned_identities.create_or_update(RG, "wid-prod-recon", {
        "location": "westeurope", "tags": {**tags, TAG_DELETION_POLICY: "retain"}})
    plan = run_cli("plan", str(folder))
    assert TAG_DELETION_POLICY in plan.out, plan.out + plan.err
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert azure.state("wid-prod-recon")["tags"] == tags
    assert run_cli("plan", "--detailed-exitcode", str(folder)).code == 0
    azure.msi.user_assigned_identities.create_or_update(RG, "wid-prod-recon", {
        "location": "westeurope", "tags": {**tags, TAG_ADOPTED: "true"}})
    stray = azure.state("wid-prod-recon")
    refused = run_cli("apply", "--auto-approve", str(folder))
    assert refused.code == 1 and "it is marked as adopted but its marker is not authenticated" in refused.err
    assert azure.state("wid-prod-recon") == stray
