"""`workload-ids review` of 1,000 applied AWS workloads with usage data (issue 18, item 6).

One moto account (a thread of this process, with our access advisor). The 1,000 generated
manifests of ``fleet_plan.py`` (1-5 templates each, every fifth a raw entry) are applied
through the library with a local audit log, so each entry's age comes from the trail.
Then the tool's clock moves ``--days`` ahead (past ``review.window``, 90 days, so every
entry is judged) and the access advisor records use for every other workload: each used
workload used one action of each service its manifest grants. ``api.review`` of the folder
is timed end to end: validation, one usage read per workload (access advisor's jobs are per
identity: GenerateServiceLastAccessedDetails, GetRole, then GetServiceLastAccessedDetails
until the job is done) ``calls.concurrency`` at a time, judging, and the suggested
manifest edits (each validated and proven to narrow).

With ``--cloud gcp`` or ``--cloud azure`` the same over ``gcp_fleet_plan.py``'s and
``azure_fleet_plan.py``'s 1,000 workloads on the local emulators (no usage recorded: the
figures are the reads a review makes there).

    .venv/bin/python benchmarks/review_fleet.py [--cloud aws|gcp|azure] [--workloads N]
        [--job-seconds S] [--concurrency N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import ACCOUNT, BENCH_TRUST, Report, moto_server, write_fleet


@contextlib.contextmanager
def _cloud(name: str, folder: Path, count: int) -> Iterator[dict[str, Any]]:
    """The cloud's local emulator with ``count`` manifests written; yields its config data."""
    if name == "aws":
        with moto_server():
            write_fleet(folder, count)
            yield {}
        return
    if name == "gcp":
        from gcp_fleet_plan import manifest as gcp_manifest

        from workload_ids.sandbox.gcp.local import start_local_gcp
        gcp = start_local_gcp()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (folder / f"svc-{i:04d}.yaml").write_text(gcp_manifest(i, f"acme-fleet-{i // 100:02d}"),
                                                          encoding="utf-8")
            yield {"gcp": {**gcp.endpoints, "sandboxCredentials": True}}
        finally:
            gcp.stop()
        return
    from azure_fleet_plan import manifest as azure_manifest

    from workload_ids.sandbox.azure.local import start_local_azure
    azure = start_local_azure()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (folder / f"svc-{i:04d}.yaml").write_text(azure_manifest(i), encoding="utf-8")
        yield {"azure": azure.settings}
    finally:
        azure.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cloud", choices=("aws", "gcp", "azure"), default="aws")
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--job-seconds", type=float, default=0.5,
                        help="how long the local access advisor takes per job (AWS: a few seconds)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--days", type=int, default=120, help="how far the clock moves after apply")
    args = parser.parse_args()
    report = Report(f"review_fleet_{args.cloud}")

    from workload_ids import api, clock
    from workload_ids.calls import CallSeam, RetryPolicy
    from workload_ids.config import Config, ConfigFile
    from workload_ids.usage import service_of

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        folder = base / "manifests"
        with _cloud(args.cloud, folder, args.workloads) as cloud_config:
            data = {"trust": BENCH_TRUST, "audit": {"path": str(base / "audit.jsonl")},
                    "calls": {"concurrency": args.concurrency}, **cloud_config}
            (base / "workload-ids.yaml").write_text(json.dumps(data), encoding="utf-8")
            config = Config(ConfigFile.model_validate(data), base, None)
            started = time.perf_counter()
            plan = api.plan_paths([folder], config)
            applied = api.apply(plan, config)
            assert applied.ok, [r.error for r in applied.results if r.error]
            report.info("apply of the fleet", round(time.perf_counter() - started, 1), "s")

            # Move the tool's clock past the window; on AWS record use for every other workload.
            later = datetime.now(UTC) + timedelta(days=args.days)
            os.environ[clock.ENV] = clock.format_time(later)
            previous = clock.enable_override("drill")
            used = 0
            try:
                if args.cloud == "aws":
                    from workload_ids.sandbox.moto_access_advisor import advisor, record_access
                    for i, desired in enumerate(plan.desired):
                        if i % 2:
                            continue
                        used += 1
                        for service in sorted({service_of("aws", a) for g in desired.workload.grants
                                               for a in g.actions}):
                            action = next(a for g in desired.workload.grants for a in g.actions
                                          if service_of("aws", a) == service)
                            record_access(ACCOUNT, desired.address, service,
                                          action=action.split(":", 1)[1],
                                          at=later - timedelta(days=3), region="eu-west-1")
                    advisor(ACCOUNT).job_seconds = args.job_seconds
                seam = CallSeam(RetryPolicy())
                started = time.perf_counter()
                result = api.review([folder], config, seam=seam)
                wall = time.perf_counter() - started
            finally:
                clock.enable_override(previous)
                os.environ.pop(clock.ENV, None)
            doc = result.as_json()
            calls = seam.stats.total
            report.info("workloads reviewed", len(result.entries), "")
            report.info("access entries judged", sum(doc["verdicts"].values()), "")
            for verdict, n in sorted(doc["verdicts"].items()):
                report.info(f"entries {verdict}", n, "")
            report.info("suggested manifest edits", len(doc.get("suggestions", [])), "files")
            if args.cloud == "aws":
                report.info("workloads with use recorded", used, "")
                report.info("access advisor jobs (one per workload)", advisor(ACCOUNT).generated, "jobs")
                report.info("local job time", args.job_seconds, "s")
            report.info("API calls in all", calls, "calls")
            report.info("API calls per workload", round(calls / max(1, len(result.entries)), 2), "calls")
            per_op = sorted(seam.stats.calls.items(), key=lambda kv: -kv[1])
            report.note("calls by operation: " + ", ".join(f"{k} {v}" for k, v in per_op))
            report.info("wall time", round(wall, 1), "s")
            report.info("concurrency (calls.concurrency)", args.concurrency, "")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
