"""Eight pipelines applying the same keyless workload at once, as separate processes
against one sandbox (AWS, GCP and Azure): every process exits 0, and the cloud holds one
identity with exactly the manifest's access. Keyless apply needs no lock: every write is
idempotent or deterministic (PUTs, fixed names and GUIDs), a create that loses the race
adopts what the winner made only when it carries our marker, and policy edits are
read-modify-write with the etag. Key mode is different: two runs changing one workload's keys
at once need the workload lock (workload_ids/locks), tested below with 8 applies and then 8
rotations racing 8 applies."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.concurrency import EXIT_BUSY, KEY_LIMIT, KEY_MODE, key_race, running_sandbox
from support.paths import EXAMPLES

KEYLESS = {"aws": "aws/payments-api.yaml", "gcp": "gcp/catalog-sync.yaml",
           "azure": "azure/order-reconciliation.yaml"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    with running_sandbox(tmp_path_factory.mktemp("sandbox")) as running:
        yield running


@pytest.mark.parametrize("provider", sorted(KEYLESS))
def test_eight_concurrent_applies_converge(provider: str, sandbox: tuple[Path, dict[str, str]]) -> None:
    config, env = sandbox
    manifest = EXAMPLES / KEYLESS[provider]
    command = [sys.executable, "-m", "workload_ids", "apply", "--auto-approve", "--config", str(config),
               str(manifest)]
    procs = [subprocess.Popen(command, env=env, cwd=config.parent, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0] * 8, [err for code, err in results if code]
    plan = subprocess.run([sys.executable, "-m", "workload_ids", "plan", "--detailed-exitcode",
                           "--config", str(config), str(manifest)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    listed = subprocess.run([sys.executable, "-m", "workload_ids", "inventory", "--output", "json",
                             "--config", str(config), str(manifest)],
                            env=env, capture_output=True, text=True, timeout=120)
    # The sandbox's config lists all three clouds' targets, which inventory reads too.
    identities = [r["identity"] for r in json.loads(listed.stdout)["identities"]
                  if r["provider"] == provider]
    assert len(identities) == 1, identities  # no duplicate identity


# --- key mode: the workload lock ------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(KEY_MODE))
def test_eight_applies_then_eight_rotations_with_eight_applies_hold_the_lock(
        provider: str, sandbox: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """Key mode: 8 applies of a new workload at once, then 8 emergency rotations racing 8
    more applies. Every process exits 0 (it waited for the lock) or 4 (busy); the cloud
    ends with one identity, at most the key limit, every key in the store, and a current
    key that is active."""
    base, env = sandbox
    race = key_race(provider, base, env, tmp_path, verify_interval="0s")  # quicker in CI
    assert [code for code, _ in race.joiners] == [0] * 8, [out for code, out in race.joiners if code]
    assert {code for code, _ in race.racers} <= {0, EXIT_BUSY}, [
        out for code, out in race.racers if code not in (0, EXIT_BUSY)]
    assert sum(1 for code, _ in race.racers[:8] if code == 0) >= 1  # rotations happened

    state = race.state
    keys = state["keys"]
    assert isinstance(keys, dict)
    assert 1 <= len(keys) <= KEY_LIMIT[provider], keys
    assert set(keys) <= set(state["stored"]), state  # no key exists only in the cloud
    assert keys.get(state["current"]) == "active", state
    assert not any("lock" in tag or "journal" in tag for tag in state["tags"]), state  # released
    listed = subprocess.run([sys.executable, "-m", "workload_ids", "inventory", "--output", "json",
                             "--config", str(race.config), str(race.manifest)],
                            env=env, capture_output=True, text=True, timeout=120)
    mine = [r["identity"] for r in json.loads(listed.stdout)["identities"]
            if str(r["workload"]).split("/")[-1] == race.name]
    assert len(mine) == 1, mine  # no duplicate identity
    again = subprocess.run([sys.executable, "-m", "workload_ids", "plan", "--detailed-exitcode",
                            "--config", str(race.config), str(race.manifest)],
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
