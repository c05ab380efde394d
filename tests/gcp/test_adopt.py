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

import pytest
from support.cli import run_cli
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
    assert {k: v for k, v in after.items() if k != "description"} == \
        {k: v for k, v in marked.items() if k != "description"}
    assert [r["identity"] for r in records(Path("audit.jsonl")) if r["action"] == "release-identity"] \
        == [LEGACY]
