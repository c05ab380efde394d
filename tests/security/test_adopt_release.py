"""Releasing an adopted GCP service account puts back the description ``adopt --apply``
replaced with its marker, from the audit trail. The trail is read, not trusted blindly: a
"description" there that reads as a workload-ids marker (a trail someone wrote into, or a
future bug) is never written back, or the released account would carry a marker again
(believed by nothing, as its MAC does not verify, but no longer plainly released)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import run_cli
from support.gcp_adopt import GITHUB_MAIN, GcpWorld, email, gcp_world
from support.leavers import START

from workload_ids.audit import auditor_for
from workload_ids.config import load_config
from workload_ids.model import Marker

LEGACY = email("legacy-deployer")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[GcpWorld]:
    yield from gcp_world(tmp_path)


def adopted(world: GcpWorld) -> Path:
    world.account("legacy-deployer")
    world.grant_project(f"serviceAccount:{LEGACY}", "roles/logging.logWriter")
    world.grant_account(LEGACY, "roles/iam.workloadIdentityUser", [GITHUB_MAIN])
    folder = Path("adopted")
    result = run_cli("adopt", LEGACY, "--out", str(folder), "--owner", "team-a", "--environment", "prod",
                     "--apply")
    assert result.code == 0, result.out + result.err
    return folder


def release(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (folder / "prod-legacy-deployer.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    result = run_cli("cleanup", str(folder), "--apply", "--output", "json")
    assert result.code == 0, result.out + result.err
    return result.out


def test_the_description_comes_back_on_release(world: GcpWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = adopted(world)
    assert Marker.from_text(world.state(LEGACY)["description"]) is not None
    out = release(folder, monkeypatch)
    assert world.state(LEGACY)["description"] == "made by hand in 2019"
    assert "putting back the one it had before adoption" in json.dumps(json.loads(out))


def test_a_marker_in_the_trail_is_not_written_back(world: GcpWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = adopted(world)
    marked = world.state(LEGACY)["description"]
    # A later adopt record (the trail's last word wins) whose "description" is a marker.
    auditor_for(load_config(Path("workload-ids.yaml")), "adopt").record(
        workload="prod/legacy-deployer", provider="gcp", target="acme-prod", identity="legacy-deployer",
        action="adopt", before={"description": marked}, detail={"address": LEGACY, "owner": "team-a"})
    release(folder, monkeypatch)
    after = world.state(LEGACY)["description"]
    assert Marker.from_text(after) is None and after == ""
