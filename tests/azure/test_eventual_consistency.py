"""Azure with Entra's and ARM's replication delay (10 s, simulated on a clock that the
tool's waits advance): a new application is awaited before it is edited, a new service
principal before it is created for it, and a new client secret is verified (tokens
issued with it) before apply or rotate reports it; nothing fails for the delay."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support.azure import KEY_MODE, azure_workload
from support.trust import TEST_TRUST

from workload_ids.apply import apply_plan
from workload_ids.calls import CallSeam, RetryPolicy
from workload_ids.clock import format_time
from workload_ids.config import load_config
from workload_ids.keys.fleet import rotate_workloads
from workload_ids.plan import build_plan
from workload_ids.sandbox.azure.local import start_local_azure
from workload_ids.validate import validate


class SimulatedTime:
    """Seconds for the emulators; the tool's waits (the seam's sleep) move it on."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_apply_and_rotate_wait_out_replication_and_verify_first(secret_hygiene: Any, tmp_path: Path) -> None:
    time = SimulatedTime()
    local = start_local_azure(clock=time, replication_delay=10.0)
    previous = Path.cwd()
    os.chdir(tmp_path)
    try:
        Path("workload-ids.yaml").write_text(
            local.config_block() + "credentials: {verify: {successes: 3, interval: 2s, timeout: 120s}}\n"
            + TEST_TRUST)
        folder = tmp_path / "manifests"
        folder.mkdir()
        (folder / "key.yaml").write_text(KEY_MODE)
        (folder / "keyless.yaml").write_text(azure_workload(name="recon"))
        config = load_config()
        seam = CallSeam(RetryPolicy(), sleep=time.sleep)
        result = apply_plan(build_plan(validate([folder], config).compiled, config, seam), concurrency=1)
        assert result.ok, [r.error for r in result.results]
        # It waited for replication rather than failing, and proved the secret first:
        # three tokens in a row were issued for it before apply reported success.
        assert time.slept >= 10.0
        assert local.graph.tokens_issued >= 3
        assert seam.stats.calls["azure:graph.get_application"] >= 3
        again = build_plan(validate([folder], config).compiled, config, CallSeam(sleep=time.sleep))
        assert not again.has_changes, [c.action for c in again.changes]

        tokens = local.graph.tokens_issued
        os.environ["WORKLOAD_IDS_CLOCK"] = format_time(datetime.now(UTC) + timedelta(days=31))
        slept = time.slept
        [report] = rotate_workloads(validate([folder / "key.yaml"], config).compiled, config,
                                    CallSeam(RetryPolicy(), sleep=time.sleep))
        assert report.error is None, report.error
        assert any("issued" in a for a in report.actions), report.actions
        assert time.slept - slept >= 10.0  # the new secret only works after replication
        assert local.graph.tokens_issued - tokens >= 3
    finally:
        os.environ.pop("WORKLOAD_IDS_CLOCK", None)
        os.chdir(previous)
        local.stop()
