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

from _common import BENCH_TRUST, Report, fleet_plan_figures

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
    from workload_ids.config import Config, ConfigFile
    from workload_ids.sandbox.azure.local import start_local_azure

    report = Report("azure_fleet_plan")
    local = start_local_azure()
    try:
        with tempfile.TemporaryDirectory(prefix="wid-azure-fleet-") as tmp:
            folder = Path(tmp)
            for i in range(args.workloads):
                (folder / f"svc-{i:04d}.yaml").write_text(manifest(i), encoding="utf-8")
            config = Config(ConfigFile.model_validate(
                {"azure": local.settings, "calls": {"concurrency": 8}, "trust": BENCH_TRUST}), folder, None)

            fleet_plan_figures(report, folder, config, workloads=args.workloads, runs=args.runs,
                               calls_target=CALLS_TARGET, per_service_target=PER_SERVICE_TARGET)
    finally:
        local.stop()
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
