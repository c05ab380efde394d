"""Attacks on ``workload-ids adopt`` for GCP service accounts (issue 17, item 3): adoption
must not launder a permission the guardrails deny or an escalation nobody approved into a
manifest; ``--apply`` must not mark an account whose manifest would change who may act
as it, nor one that changed between the proof and the mark; and a marker copied from an
adopted account onto another (outside the tool's naming, where only the MAC vouches for
it) is never believed, re-marked or acted on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import run_cli
from support.gcp_adopt import GITHUB_MAIN, POOL, PROJECT, GcpWorld, email, gcp_world
from support.leavers import START, by_identity

from workload_ids.calls import CallSeam, RetryPolicy
from workload_ids.clouds import connect
from workload_ids.config import load_config
from workload_ids.errors import ConflictError
from workload_ids.model import Marker


@pytest.fixture
def world(tmp_path: Path) -> Iterator[GcpWorld]:
    yield from gcp_world(tmp_path)


def account(world: GcpWorld, account_id: str, roles: list[str], trust: str = GITHUB_MAIN) -> str:
    made = world.account(account_id, description="")
    for role in roles:
        world.grant_project(f"serviceAccount:{made}", role)
    world.grant_account(made, "roles/iam.workloadIdentityUser", [trust])
    return made


def test_a_denied_permission_is_not_laundered(world: GcpWorld) -> None:
    config = Path("workload-ids.yaml")
    config.write_text(config.read_text() + "guardrails: {deniedActions: [storage.objects.delete]}\n")
    made = account(world, "legacy-cleaner", [world.custom_role("cleaner", [
        "storage.objects.get", "storage.objects.delete"])])
    before = world.state(made)
    result = run_cli("adopt", made, "--out", "a", "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "the identity holds what the config's guardrails refuse" in result.err
    assert "storage.objects.delete" in result.err and "nothing was written" in result.err
    assert list(Path("a").iterdir()) == []
    assert world.state(made) == before


def test_an_escalation_is_not_laundered(world: GcpWorld) -> None:
    """Token Creator on the project mints tokens of every account there: adopting it must
    not turn that into an approved manifest."""
    made = account(world, "legacy-minter", ["roles/iam.serviceAccountTokenCreator"])
    before = world.state(made)
    result = run_cli("adopt", made, "--out", "a", "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "iam.serviceAccounts.getAccessToken" in result.err and "approvedEscalations" in result.err
    assert list(Path("a").iterdir()) == []
    assert world.state(made) == before


def test_apply_refuses_to_mark_an_account_others_may_act_as(world: GcpWorld) -> None:
    """Someone holds Token Creator on the account itself: the manifest cannot say so, so
    marking it would let a plan of ours call its trust unchanged. Refused."""
    made = account(world, "legacy-shared", ["roles/logging.logWriter"])
    world.grant_account(made, "roles/iam.serviceAccountTokenCreator", ["user:mallory@acme.example"])
    before = world.state(made)
    result = run_cli("adopt", made, "--out", "a", "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "- trust user:mallory@acme.example  roles/iam.serviceAccountTokenCreator" in result.out
    assert "REFUSED: --apply refused" in result.out
    assert world.state(made) == before


def test_an_account_changed_between_proof_and_mark_is_not_marked(world: GcpWorld) -> None:
    """The mark re-reads the account: a binding added after the proof (the manifest no
    longer mirrors it) refuses the mark, and so does a re-created account."""
    made = account(world, "legacy-racer", ["roles/logging.logWriter"])
    config = load_config(Path("workload-ids.yaml"))
    backend = connect("gcp", config, CallSeam(RetryPolicy(), sleep=lambda s: None)).adoption
    assert backend is not None
    held = backend.read(PROJECT, made)
    assert held is not None
    marker = Marker("legacy-racer", "team-a", "adopted", "0" * 64, deletion="retain", adopted="true")
    world.grant_project(f"serviceAccount:{made}", "roles/iam.serviceAccountTokenCreator")
    before = world.state(made)
    with pytest.raises(ConflictError, match="changed who may act as it or what it holds"):
        backend.mark(held, marker)
    assert world.state(made) == before
    again = backend.read(PROJECT, made)
    assert again is not None
    world.iam_client.delete_service_account(name=f"projects/{PROJECT}/serviceAccounts/{made}")
    world.account("legacy-racer", description="")
    with pytest.raises(ConflictError, match="deleted or re-created"):
        backend.mark(again, marker)
    assert Marker.from_text(world.state(made)["description"]) is None


def test_a_copied_adopted_marker_is_never_believed(world: GcpWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone with iam.serviceAccounts.update copies an adopted account's description,
    MAC and all, onto another account: the MAC binds the marker to the first account's
    email and unique id, so the copy is forged; plan refuses a manifest naming it (apply
    would otherwise re-mark it as ours), and cleanup never releases or quarantines it."""
    first = account(world, "legacy-a", ["roles/logging.logWriter"])
    assert run_cli("adopt", first, "--out", "a", "--owner", "team-a", "--environment", "prod",
                   "--apply").code == 0
    copy = account(world, "legacy-b", ["roles/logging.logWriter"])
    stolen = world.state(first)["description"].replace("workload=legacy-a", "workload=legacy-b") \
        .replace("source=a/prod-legacy-a.yaml", "source=b/b.yaml")
    assert stolen != world.state(first)["description"]
    world.iam_client.patch_service_account(request={
        "service_account": {"name": f"projects/{PROJECT}/serviceAccounts/{copy}", "description": stolen},
        "update_mask": {"paths": ["description"]}})
    forged = world.state(copy)
    manifest = Path("a/prod-legacy-a.yaml").read_text().replace(first, copy)
    Path("b").mkdir()
    Path("b/b.yaml").write_text(manifest.replace('name: "legacy-a"', 'name: "legacy-b"'))
    plan = run_cli("plan", "b")
    assert plan.code == 1, plan.out + plan.err
    assert "it is marked as adopted but its marker is not authenticated" in plan.err
    assert run_cli("apply", "--auto-approve", "b").code == 1
    assert world.state(copy) == forged
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    found = by_identity(json.loads(run_cli("cleanup", "a", "--output", "json").out))
    assert (found[copy]["status"], found[copy]["action"]) == ("forged", None)
    assert found[first]["status"] == "active"
    assert run_cli("cleanup", "a", "--apply").code == 0
    assert world.state(copy) == forged
    assert Marker.from_text(world.state(first)["description"]) is not None


def test_adopt_never_marks_an_account_of_another_pool_owner(world: GcpWorld) -> None:
    """The account trusts a subject of a pool in a project the config does not vouch for
    beside one it does: the foreign member is dropped, a trust change --apply refuses."""
    foreign = ("principal://iam.googleapis.com/projects/999999999999/locations/global/"
               "workloadIdentityPools/github/subject/repo:acme/legacy:ref:refs/heads/main")
    made = account(world, "legacy-two-pools", ["roles/logging.logWriter"])
    world.grant_account(made, "roles/iam.workloadIdentityUser", [foreign])
    before = world.state(made)
    result = run_cli("adopt", made, "--out", "a", "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert f"- trust {foreign}  roles/iam.workloadIdentityUser" in result.out
    text = Path("a/adopted-legacy-two-pools.yaml").read_text().split("apiVersion:")[1]
    assert "999999999999" not in text and POOL in text
    assert world.state(made) == before
    assert email("legacy-two-pools") == made
