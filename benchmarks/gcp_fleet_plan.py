"""No-op fleet plan of 1,000 GCP workloads, and a per-service plan, against the local GCP
emulators (IAM Admin over gRPC, Resource Manager over REST, resource IAM policies over
gRPC), through the real Google client libraries.

GCP allows 100 service accounts per project, so the 1,000 workloads live in 10 projects of
100. Each workload reads and writes a bucket (conditional project bindings), publishes to
a topic (a resource binding) and federates from GitHub. They are applied once; then fresh
no-op fleet plans (load, validate, compile, read, diff) are timed.

Targets (issue 5): the no-op fleet plan in at most 30 API calls; the wall time and the
per-service plan's calls are reported.

    .venv/bin/python benchmarks/gcp_fleet_plan.py [--workloads N] [--runs N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import BENCH_TRUST, Report, fleet_plan_figures

CALLS_TARGET = 30
POOL = "projects/123456789012/locations/global/workloadIdentityPools/github"


def manifest(i: int, project: str) -> str:
    name = f"svc-{i:04d}"
    return (
        "apiVersion: workload-ids/v1\nkind: Workload\n"
        f"metadata: {{name: {name}, owner: team-{i % 7}, environment: prod}}\n"
        f"spec:\n  provider: gcp\n  gcp: {{project: {project}}}\n"
        "  credentials:\n    mode: keyless\n    federation:\n"
        f"      - kind: github-actions\n        repository: acme/{name}\n"
        f"        ref: refs/heads/main\n        workloadIdentityPool: {POOL}\n"
        "  access:\n"
        f"    - template: object-storage.read\n      resources: [projects/_/buckets/acme-{name}-in]\n"
        f"    - template: object-storage.write\n      resources: [projects/_/buckets/acme-{name}-out]\n"
        f"    - template: topic.publish\n      resources: [projects/{project}/topics/{name}-done]\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from workload_ids.config import Config, ConfigFile
    from workload_ids.sandbox.gcp.local import start_local_gcp

    report = Report("gcp_fleet_plan")
    local = start_local_gcp()
    try:
        with tempfile.TemporaryDirectory(prefix="wid-gcp-fleet-") as tmp:
            folder = Path(tmp)
            projects = max(1, (args.workloads + 99) // 100)
            for i in range(args.workloads):
                project = f"acme-fleet-{i // 100:02d}"
                (folder / f"svc-{i:04d}.yaml").write_text(manifest(i, project), encoding="utf-8")
            config = Config(ConfigFile.model_validate(
                {"gcp": {**local.endpoints, "sandboxCredentials": True}, "calls": {"concurrency": 8},
                 "trust": BENCH_TRUST}),
                folder, None)

            fleet_plan_figures(report, folder, config, workloads=args.workloads, runs=args.runs,
                               calls_target=CALLS_TARGET, per_service_target=5,
                               label=f" in {projects} projects")
    finally:
        local.stop()
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
