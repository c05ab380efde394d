"""Eight pipelines applying the same keyless workload at once, as separate processes
against one sandbox (AWS, GCP and Azure): every process exits 0, and the cloud holds one
identity with exactly the manifest's access. Keyless apply needs no lock: every write is
idempotent or deterministic (PUTs, fixed names and GUIDs), a create that loses the race
adopts what the winner made only when it carries our marker, and policy edits are
read-modify-write with the etag. Concurrent key rotation is not covered yet (RELIABILITY.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLES

KEYLESS = {"aws": "aws/payments-api.yaml", "gcp": "gcp/catalog-sync.yaml",
           "azure": "azure/order-reconciliation.yaml"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    work = tmp_path_factory.mktemp("sandbox")
    config = work / "sandbox.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "workload_ids", "sandbox", "--config-out", str(config)],
                            env=env, cwd=work, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not config.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.1)
        yield config, env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
    identities = [r["identity"] for r in json.loads(listed.stdout)["identities"]]
    assert len(identities) == 1, identities  # no duplicate identity
