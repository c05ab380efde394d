"""GCP through the CLI against the emulators: a fleet apply, then the leaver workflow
(quarantine by disabling, release, deletion after grace with a restore bundle, restore
by undelete), sharing the cleanup workflow with AWS."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.gcp import OWNERS, PROJECT, accounts, email, gcp_workload
from support.trust import TEST_TRUST

from workload_ids.audit import records
from workload_ids.clock import format_time
from workload_ids.providers.gcp import render
from workload_ids.sandbox.gcp.iam import IamEmulator
from workload_ids.sandbox.gcp.local import start_key_store
from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, ResourceManagerEmulator
from workload_ids.sandbox.gcp.resourcepolicy import ResourcePolicyEmulator

_START = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
START, AFTER_GRACE = format_time(_START), format_time(_START + timedelta(days=8))


@pytest.fixture
def gcp_fleet(manifests: Any, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[tuple[IamEmulator, ResourceManagerEmulator, Path]]:
    iam, rm = IamEmulator(), ResourceManagerEmulator(projects=ProjectRegistry())
    res = ResourcePolicyEmulator()
    iam.add_project(PROJECT)
    rm.add_project(PROJECT)
    keys, keys_url = start_key_store([PROJECT])
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(
        f"gcp: {{iamEndpoint: '{iam.start()}', resourceManagerEndpoint: '{rm.start()}', "
        f"resourcePolicyEndpoint: '{res.start()}', secretManagerEndpoint: '{keys_url}', "
        "sandboxCredentials: true}\n"
        "owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
        "cleanup: {grace: 7d, minAge: 1h, maxShare: 1}\n" + TEST_TRUST)
    folder = manifests({f"{n}.yaml": gcp_workload(name=n, owner=o)
                        for n, o in [("svc-a", "team-a"), ("svc-b", "alice"), ("svc-d", "team-a")]})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    (folder / "svc-d.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    yield iam, rm, folder
    for emulator in (iam, rm, res, keys):
        emulator.stop()


def test_gcp_quarantine_release_delete_and_restore(
        gcp_fleet: tuple[IamEmulator, ResourceManagerEmulator, Path]) -> None:
    iam, rm, folder = gcp_fleet
    dry = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    assert {i["identity"]: (i["status"], i["action"]) for i in dry["identities"]} == {
        email("svc-a"): ("active", None), email("svc-b"): ("owner-gone", "quarantine"),
        email("svc-d"): ("no-manifest", "quarantine")}
    result = run_cli("cleanup", str(folder), "--apply")
    assert result.code == 0, result.err + result.out
    held = accounts(iam)
    for name, reason in (("svc-b", "owner-gone"), ("svc-d", "no-manifest")):
        assert held[email(name)].disabled
        due = format_time(_START + timedelta(days=7))
        assert held[email(name)].display_name == (
            f"quarantine since={START} reason={reason} delete-after={due}")
    assert not held[email("svc-a")].disabled
    # Apply leaves the quarantine alone; a second cleanup has nothing to do.
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0
    again = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    assert all(i["action"] is None for i in again["identities"])
    # alice returns: svc-b is released.
    Path("owners.yaml").write_text(OWNERS.replace("active: false", "active: true"))
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    assert not accounts(iam)[email("svc-b")].disabled
    assert accounts(iam)[email("svc-b")].display_name == "workload-ids prod/svc-b"
    # Past grace, svc-d is deleted: bindings first, then roles, then the account.
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    deleted = run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit", "--output", "json")
    assert deleted.code == 0, deleted.err
    [result_d] = json.loads(deleted.out)["results"]
    assert result_d["steps"][0] == "remove its project policy bindings"
    assert result_d["steps"][-1] == f"delete service account {email('svc-d')}"
    assert email("svc-d") not in accounts(iam)
    member = f"serviceAccount:{email('svc-d')}"
    assert all(member not in b.members for b in rm.policy(PROJECT).bindings)
    base = render.role_id("wid", "prod", "svc-d", [])
    assert [r.name for r in iam.roles(PROJECT) if r.name.rsplit("/", 1)[1].startswith(base[:-4])] == []
    bundle = next(r for r in records(Path("audit.jsonl")) if r["action"] == "restore-bundle")
    assert bundle["identity"] == email("svc-d") and bundle["before"]["projectBindings"]
    # Restore: GCP can still undelete it; roles and bindings come back from the bundle.
    restored = run_cli("restore", email("svc-d"))
    assert restored.code == 0, restored.err + restored.out
    assert f"undelete service account {email('svc-d')}" in restored.out
    assert "(prod/svc-d) in" in restored.out  # the workload, from the marker in the description
    back = accounts(iam)[email("svc-d")]
    assert not back.disabled and back.unique_id == bundle["before"]["uniqueId"]
    assert any(member in b.members for b in rm.policy(PROJECT).bindings)
    assert run_cli("audit", "verify").code == 0


def test_dead_members_of_our_deleted_accounts_are_removed(
        gcp_fleet: tuple[IamEmulator, ResourceManagerEmulator, Path]) -> None:
    from google.iam.v1 import policy_pb2
    _, rm, folder = gcp_fleet
    ours = f"deleted:serviceAccount:{email('svc-old')}?uid=123456789"
    theirs = f"deleted:serviceAccount:legacy-job@{PROJECT}.iam.gserviceaccount.com?uid=42"
    client = rm.client()
    policy = client.get_iam_policy(request={"resource": f"projects/{PROJECT}",
                                            "options": {"requested_policy_version": 3}})
    edited = policy_pb2.Policy(version=3, etag=policy.etag, bindings=list(policy.bindings))
    edited.bindings.add(role="roles/viewer", members=[ours, theirs, "user:alice@example.com"])
    client.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": edited})
    dry = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    assert dry["deadGrants"] == [{"provider": "gcp", "target": PROJECT, "member": ours,
                                  "role": "roles/viewer", "condition": ""}]
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    [viewer] = [sorted(b.members) for b in rm.policy(PROJECT).bindings if b.role == "roles/viewer"]
    assert viewer == sorted([theirs, "user:alice@example.com"])
    removed = [r for r in records(Path("audit.jsonl")) if r["action"] == "remove-dead-grant"]
    assert [r["identity"] for r in removed] == [ours]
