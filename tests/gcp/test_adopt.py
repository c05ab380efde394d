"""``workload-ids adopt`` on GCP (the emulators, through the real Google clients), issue 17
item 3: a manifest per existing service account that mirrors it (templates where one
matches exactly, raw entries for the rest, its federation from its own policy), the
proof that it grants nothing the account does not hold, what it leaves out, ``--apply``'s
marker in the description, and end to end: after adoption ``plan`` shows no change and
removing the manifest and running ``cleanup`` deletes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.gcp import email as managed_email
from support.gcp import gcp_workload
from support.gcp_adopt import GITHUB_MAIN, POOL, PROJECT, GcpWorld, email, gcp_world
from support.leavers import START, by_identity

from workload_ids.audit import records
from workload_ids.model import Marker

LEGACY = email("legacy-deployer")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[GcpWorld]:
    yield from gcp_world(tmp_path)


def legacy(world: GcpWorld, *, trust: str = GITHUB_MAIN) -> str:
    """The hand-made account: logs and metrics writer and a custom reader role on the
    project, federated from acme/legacy's main branch."""
    made = world.account("legacy-deployer")
    member = f"serviceAccount:{made}"
    world.grant_project(member, "roles/logging.logWriter")
    world.grant_project(member, "roles/monitoring.metricWriter")
    world.grant_project(member, world.custom_role("legacyReader", ["storage.objects.get",
                                                                   "storage.objects.list"]))
    world.grant_account(made, "roles/iam.workloadIdentityUser", [trust])
    return made


def test_adopt_writes_a_manifest_that_mirrors_the_account(world: GcpWorld, tmp_path: Path) -> None:
    legacy(world)
    before = world.state(LEGACY)
    result = run_cli("adopt", LEGACY, "--out", str(tmp_path / "adopted"), "--owner", "team-a",
                     "--environment", "prod")
    assert result.code == 0, result.err + result.out
    path = tmp_path / "adopted" / "prod-legacy-deployer.yaml"
    text = path.read_text()
    print(text)
    print(result.out)
    assert "  mode: observe\n  deletionPolicy: retain\n" in text
    assert f'  adopted: "{LEGACY}"' in text
    assert f'  gcp:\n    project: "{PROJECT}"\n' in text
    assert '    - template: "logs.write"' in text and '    - template: "metrics.write"' in text
    assert '"logging.logEntries.route"' in text
    assert '      reason: "adopted from project IAM policy binding roles/logging.logWriter"' in text
    assert '"storage.objects.get"' in text
    assert f'adopted from project IAM policy binding projects/{PROJECT}/roles/legacyReader' in text
    assert '        repository: "acme/legacy"' in text and '        ref: "refs/heads/main"' in text
    assert f'        workloadIdentityPool: "{POOL}"' in text
    assert '  description: "made by hand in 2019"' in text
    assert "only Cloud Asset Inventory lists them" in text
    assert "proof: grants nothing the identity does not hold today" in result.out
    assert "templates matched exactly: logs.write, metrics.write" in result.out
    assert "trust: unchanged" in result.out
    assert "nothing marked" in result.out
    assert world.state(LEGACY) == before  # without --apply nothing is written to the cloud
    assert run_cli("validate", str(path)).code == 0


def test_adopt_apply_then_plan_shows_no_change_and_cleanup_deletes_nothing(
        world: GcpWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    legacy(world)
    # A deleted principal left in its policy is no one: no trust change, no drift.
    world.grant_account(LEGACY, "roles/iam.serviceAccountTokenCreator",
                        ["deleted:user:former@acme.example?uid=123456789012345678901"])
    # In the working folder: the marker (with its source, the manifest's path) must fit the
    # account's 256-character description.
    folder = Path("adopted")
    result = run_cli("adopt", LEGACY, "--out", str(folder), "--owner", "team-a", "--environment", "prod",
                     "--apply")
    assert result.code == 0, result.err + result.out
    assert "marked as adopted" in result.out
    marked = world.state(LEGACY)
    marker = Marker.from_text(marked["description"])
    assert marker is not None and marker.adopted == "true" and marker.retain
    assert " mac=" in marked["description"]
    assert {k: v for k, v in marked.items() if k != "description"} == \
        {k: v for k, v in world.state(LEGACY).items() if k != "description"}
    adopted = [r for r in records(Path("audit.jsonl")) if r["action"] == "adopt"]
    assert adopted and adopted[0]["detail"]["owner"] == "team-a"

    plan = run_cli("plan", "--detailed-exitcode", str(folder))
    assert plan.code == 0, plan.out + plan.err
    assert "No changes" in plan.out
    assert "bindings workload-ids did not make" not in plan.out  # all of them are, and compared
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert world.state(LEGACY) == marked
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    active = by_identity(json.loads(run_cli("cleanup", str(folder), "--output", "json").out))
    assert active[LEGACY]["status"] == "active"

    (folder / "prod-legacy-deployer.yaml").unlink()
    released = run_cli("cleanup", str(folder), "--apply")
    assert released.code == 0, released.out + released.err
    after = world.state(LEGACY)
    assert Marker.from_text(after["description"]) is None
    assert after["description"] == "made by hand in 2019"  # put back from the adopt record
    assert {k: v for k, v in after.items() if k != "description"} == \
        {k: v for k, v in marked.items() if k != "description"}
    assert [r["identity"] for r in records(Path("audit.jsonl")) if r["action"] == "release-identity"] \
        == [LEGACY]


def test_what_cannot_be_expressed_is_listed_and_never_granted(world: GcpWorld, tmp_path: Path) -> None:
    """A conditional binding, a binding on another service account and a role adopt cannot
    read stay out of the manifest, in words; the proof still holds, --apply marks (it only
    narrows), and plan then shows what the manifest does not keep, in observe mode."""
    made = legacy(world)
    member = f"serviceAccount:{made}"
    world.grant_project(member, "roles/pubsub.publisher", condition={
        "title": "only-orders", "expression": 'resource.name == "projects/acme-prod/topics/orders"'})
    other = world.account("legacy-runner", description="")
    world.grant_account(other, "roles/iam.serviceAccountUser", [member])
    world.grant_project(member, "organizations/123456789/roles/auditor")
    folder = Path("wide")
    result = run_cli("adopt", LEGACY, "--out", str(folder), "--owner", "team-a", "--environment", "prod")
    assert result.code == 0, result.err + result.out
    text = (folder / "prod-legacy-deployer.yaml").read_text()
    for fragment in ("1 permission(s) of roles/pubsub.publisher on projects/acme-prod only under the "
                     'condition resource.name == "projects/acme-prod/topics/orders"',
                     f"IAM policy of service account {other} binding roles/iam.serviceAccountUser: "
                     f"roles/iam.serviceAccountUser on projects/acme-prod/serviceAccounts/{other}",
                     "a manifest names no resource of that kind",
                     "the permissions of organizations/123456789/roles/auditor could not be read"):
        assert fragment in result.out and fragment in text, fragment
    manifest = text.split("apiVersion:")[1]
    assert "pubsub.topics.publish" not in manifest and "iam.serviceAccounts.actAs" not in manifest
    assert "proof: grants nothing the identity does not hold today" in result.out
    assert run_cli("adopt", LEGACY, "--out", "marked", "--owner", "team-a", "--environment", "prod",
                   "--apply").code == 0
    plan = run_cli("plan", "--detailed-exitcode", "marked")
    assert plan.code == 2, plan.out + plan.err
    assert "- pubsub.topics.publish  projects/acme-prod if resource.name ==" in plan.out
    assert f"- iam.serviceAccounts.actAs  projects/acme-prod/serviceAccounts/{other}" in plan.out
    assert "observe only: apply will not make this change" in plan.out
    before = world.state(LEGACY)
    assert run_cli("apply", "--auto-approve", "marked").code == 0
    assert world.state(LEGACY) == before


def test_apply_refuses_a_trust_change(world: GcpWorld, tmp_path: Path) -> None:
    """A principalSet (every workflow of the repository) has no federation entry: the
    manifest keeps the single subject, which is a trust change --apply refuses."""
    made = legacy(world)
    wide = f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/acme/legacy"
    world.grant_account(made, "roles/iam.workloadIdentityUser", [wide])
    before = world.state(LEGACY)
    result = run_cli("adopt", LEGACY, "--out", "a", "--owner", "team-a", "--environment", "prod", "--apply")
    assert result.code == 3, result.out + result.err
    assert "trust: would change:" in result.out
    assert f"- trust {wide}  roles/iam.workloadIdentityUser" in result.out
    assert "a principalSet admits every identity it matches" in result.out
    assert "REFUSED: --apply refused: a plan of the new manifest shows a trust change" in result.out
    assert world.state(LEGACY) == before
    assert Path("a/prod-legacy-deployer.yaml").exists()  # written for review


def test_an_account_trusting_nobody_it_can_write_is_not_adopted(world: GcpWorld, tmp_path: Path) -> None:
    legacy(world, trust="principal://iam.googleapis.com/projects/999999999999/locations/global/"
                        "workloadIdentityPools/github/subject/repo:acme/legacy:ref:refs/heads/main")
    result = run_cli("adopt", LEGACY, "--out", "a", "--owner", "team-a")
    assert result.code == 1
    assert "none of its trust statements can be written as federation entries" in result.err
    assert "pool projects/999999999999/locations/global/workloadIdentityPools/github is in project " \
           "number 999999999999" in result.err
    assert not Path("a").exists() or not list(Path("a").iterdir())


@pytest.mark.parametrize("identity, message", [
    (email("nope-nope"), "no such identity (adopt matched nothing for it)"),
    ("legacy-deployer@acme-prod.iam.gserviceaccount", "is not an identity adopt can read"),
    ("legacy-deployer@other-project.iam.gserviceaccount.com", "no such identity"),
])
def test_an_identity_that_matches_nothing_is_an_error(world: GcpWorld, tmp_path: Path, identity: str,
                                                      message: str) -> None:
    legacy(world)
    result = run_cli("adopt", LEGACY, identity, "--out", "a", "--owner", "team-a")
    assert result.code == 1, result.out + result.err
    assert message in result.err and "nothing was adopted" in result.err
    assert "Traceback" not in result.err
    assert not Path("a").exists() or not list(Path("a").iterdir())


def test_an_account_workload_ids_manages_is_not_adopted(world: GcpWorld, manifests: Any) -> None:
    assert run_cli("apply", "--auto-approve", str(manifests({"a.yaml": gcp_workload("svc-a")}))).code == 0
    managed = managed_email("svc-a")
    before = world.state(managed)
    result = run_cli("adopt", managed, "--out", "a", "--owner", "team-a", "--apply")
    assert result.code == 1
    assert "already carries a workload-ids marker (workload prod/svc-a" in result.out
    assert world.state(managed) == before


def test_an_account_with_a_forged_marker_is_not_adopted(world: GcpWorld, manifests: Any) -> None:
    """A marker (MAC and all) copied into a hand-made account's description: adopt refuses
    it as marked, never re-marks it as ours."""
    assert run_cli("apply", "--auto-approve", str(manifests({"a.yaml": gcp_workload("svc-a")}))).code == 0
    copied = world.state(managed_email("svc-a"))["description"]
    world.account("legacy-deployer", description=copied)
    before = world.state(LEGACY)
    result = run_cli("adopt", LEGACY, "--out", "a", "--owner", "team-a", "--apply")
    assert result.code == 1
    assert "already carries a workload-ids marker" in result.out and "or its marker is forged" in result.out
    assert world.state(LEGACY) == before


def test_flipped_to_manage_apply_converges_the_adopted_account(world: GcpWorld) -> None:
    """Under mode: manage the account gets the tool's own roles and bindings, keeps its
    email and display name, and the hand-made bindings are reported, never removed."""
    legacy(world)
    folder = Path("adopted")
    assert run_cli("adopt", LEGACY, "--out", str(folder), "--owner", "team-a", "--environment", "prod",
                   "--apply").code == 0
    path = folder / "prod-legacy-deployer.yaml"
    path.write_text(path.read_text().replace("  mode: observe\n", "  mode: manage\n"))
    hand_made = world.state(LEGACY)["project"]
    plan = run_cli("plan", str(folder))
    assert "update-roles" in plan.out and "bindings workload-ids did not make" in plan.out, plan.out
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.out + applied.err
    after = world.state(LEGACY)
    assert after["display_name"] == "Legacy deployer"
    assert {r.rsplit("/", 1)[1][:8] for r in after["roles"]} >= {"wid_prod"}
    for binding in ("roles/logging.logWriter", "roles/monitoring.metricWriter", "legacyReader"):
        assert binding in hand_made and binding in after["project"]
    marker = Marker.from_text(after["description"])
    assert marker is not None and marker.adopted == "true"
    assert run_cli("plan", "--detailed-exitcode", str(folder)).code == 0


def test_observe_mode_reports_what_is_granted_later_by_hand(world: GcpWorld) -> None:
    """After adoption plan compares every binding naming the account, and who may act as
    it: a grant or a trusted member added by hand shows as drift, never applied."""
    legacy(world)
    assert run_cli("adopt", LEGACY, "--out", "adopted", "--owner", "team-a", "--environment", "prod",
                   "--apply").code == 0
    world.grant_project(f"serviceAccount:{LEGACY}", "roles/pubsub.publisher")
    world.grant_account(LEGACY, "roles/iam.serviceAccountTokenCreator", ["user:mallory@acme.example"])
    before = world.state(LEGACY)
    plan = run_cli("plan", "--detailed-exitcode", "adopted")
    assert plan.code == 2, plan.out + plan.err
    assert f"- pubsub.topics.publish  projects/{PROJECT}" in plan.out
    assert "mallory@acme.example" in plan.out
    assert run_cli("apply", "--auto-approve", "adopted").code == 0
    assert world.state(LEGACY) == before


def test_a_marker_too_long_for_the_description_is_refused_before_anything_is_written(
        world: GcpWorld, tmp_path: Path) -> None:
    """GCP keeps the marker (with the manifest's path) in the 256-character description:
    a manifest whose marker would not fit is refused with what to do, nothing marked."""
    made = world.account("legacy-deployer-for-the-nightly-jobs"[:30])
    world.grant_project(f"serviceAccount:{made}", "roles/logging.logWriter")
    world.grant_account(made, "roles/iam.workloadIdentityUser", [GITHUB_MAIN])
    before = world.state(made)
    result = run_cli("adopt", made, "--out", str(tmp_path / "far" / "away" / "adopted"),
                     "--owner", "team-a", "--apply")
    assert result.code == 1, result.out + result.err
    assert "a GCP service account description holds 256" in result.err
    assert "declare the manifest's folder under a team" in result.err and "Traceback" not in result.err
    assert world.state(made) == before
    assert not list((tmp_path / "far" / "away" / "adopted").iterdir())


def test_a_fleet_of_adopted_accounts_plans_no_change_reading_each_policy_once(world: GcpWorld) -> None:
    """Plan reads the project's service-account policies once for all its adopted accounts
    (a binding on another account is a grant too), not once per account."""
    made = []
    for i in range(6):
        account_id = f"legacy-job-{i}"
        made.append(world.account(account_id, description=""))
        world.grant_project(f"serviceAccount:{made[-1]}", "roles/logging.logWriter")
        world.grant_account(made[-1], "roles/iam.workloadIdentityUser", [GITHUB_MAIN])
    world.grant_account(made[0], "roles/iam.serviceAccountUser", [f"serviceAccount:{made[1]}"])
    result = run_cli("adopt", *made, "--out", "fleet", "--owner", "team-a", "--environment", "prod",
                     "--apply")
    assert result.code == 3, result.out + result.err  # made[0] trusts made[1]: a trust change
    assert result.out.count("marked as adopted") == 5
    Path("fleet/prod-legacy-job-0.yaml").unlink()
    before = world.iam.calls["GetIamPolicy"]
    plan = run_cli("plan", "--detailed-exitcode", "fleet")
    assert plan.code == 2, plan.out + plan.err  # made[1]'s grant on made[0], not in its manifest
    assert f"- iam.serviceAccounts.actAs  projects/{PROJECT}/serviceAccounts/{made[0]}" in plan.out
    assert "No changes" not in plan.out and plan.out.count("update-permissions") == 1
    assert world.iam.calls["GetIamPolicy"] - before <= 2 * len(made) + 1
