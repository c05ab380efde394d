"""No-op fleet plan of 1,000 Azure workloads, and a per-service plan, against the local
Azure emulators (ARM over HTTPS, the Graph subset), through the real azure-mgmt clients.

All 1,000 managed identities live in one subscription, in 10 resource groups. Each
workload reads a blob container, writes a table and publishes to a Service Bus topic
(three permission sets: three custom roles and three assignments each, 3,000 of the
subscription's 4,000) and federates from GitHub. They are applied once; then fresh no-op
fleet plans (load, validate, compile, read, diff) are timed.

Targets (issue 6): the no-op fleet plan in at most 30 API calls; the per-service plan in
at most 6; wall times reported.

    .venv/bin/python benchmarks/azure_fleet_plan.py [--workloads N] [--runs N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from _common import Report, median, stopwatch

CALLS_TARGET = 30
PER_SERVICE_TARGET = 6
SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"


def manifest(i: int) -> str:
    name = f"svc-{i:04d}"
    group = f"rg-fleet-{i // 100:02d}"
    base = f"/subscriptions/{SUB}/resourceGroups/{group}/providers"
    account = f"{base}/Microsoft.Storage/storageAccounts/acmefleet{i // 100:02d}"
    return (
        "apiVersion: workload-ids/v1\nkind: Workload\n"
        f"metadata: {{name: {name}, owner: team-{i % 7}, environment: prod}}\n"
        f"spec:\n  provider: azure\n  azure: {{subscription: \"{SUB}\", resourceGroup: {group}, "
        "location: westeurope}\n"
        "  credentials:\n    mode: keyless\n    federation:\n"
        f"      - kind: github-actions\n        repository: acme/{name}\n        ref: refs/heads/main\n"
        "  access:\n"
        f"    - template: object-storage.read\n"
        f"      resources: [{account}/blobServices/default/containers/{name}-in]\n"
        f"    - template: table.write\n"
        f"      resources: [{account}/tableServices/default/tables/{name.replace('-', '')}]\n"
        f"    - template: topic.publish\n"
        f"      resources: [{base}/Microsoft.ServiceBus/namespaces/acme-fleet/topics/{name}-done]\n")

def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from workload_ids.apply import apply_plan
    from workload_ids.calls import CallSeam
    from workload_ids.config import Config, ConfigFile
    from workload_ids.plan import build_plan
    from workload_ids.sandbox.azure.local import start_local_azure
    from workload_ids.validate import validate

    report = Report("azure_fleet_plan")
    local = start_local_azure()
    try:
        with tempfile.TemporaryDirectory(prefix="wid-azure-fleet-") as tmp:
            folder = Path(tmp)
            for i in range(args.workloads):
                (folder / f"svc-{i:04d}.yaml").write_text(manifest(i), encoding="utf-8")
            config = Config(ConfigFile.model_validate(
                {"azure": local.settings, "calls": {"concurrency": 8}}), folder, None)

            def plan(seam: Any) -> Any:
                checked = validate([folder], config)
                checked.raise_for_errors()
                return build_plan(checked.compiled, config, seam, fleet=True)

            seam = CallSeam()
            with stopwatch() as applied:
                first = plan(seam)
                result = apply_plan(first, concurrency=8)
            assert result.ok, [r.error for r in result.results if r.error][:3]
            report.info(f"apply {args.workloads}: API calls", seam.stats.total, "calls")
            report.info(f"apply {args.workloads}: seconds (concurrency 8)", applied(), "s")

            times: list[float] = []
            calls = 0
            for _ in range(args.runs):
                seam = CallSeam()
                with stopwatch() as took:
                    again = plan(seam)
                times.append(took())
                calls = seam.stats.total
                assert not again.has_changes, [c.action for c in again.changes][:5]
            report.at_most("no-op fleet plan: API calls", calls, CALLS_TARGET, "calls")
            report.info(f"no-op fleet plan of {args.workloads}: wall time, median of {args.runs}",
                        median(times), "s", key=True)
            report.note("calls by operation: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(seam.stats.calls.items())))

            one = folder / "svc-0000.yaml"
            seam = CallSeam()
            checked = validate([one], config)
            single = build_plan(checked.compiled, config, seam)
            assert not single.has_changes
            report.at_most("per-service plan: API calls", seam.stats.total, PER_SERVICE_TARGET, "calls")
    finally:
        local.stop()
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
