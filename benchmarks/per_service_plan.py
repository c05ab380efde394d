"""Per-service plan of one workload after apply, against a local moto server.

The manifest is examples/aws/payments-api.yaml (github-actions + kubernetes +
aws-service federation). It is applied once through the library; then fresh per-service
plans (one manifest file, as `workload-ids plan FILE` runs: validate, then read only this
workload's role) are timed. The account also holds other roles (--background), which a
per-service plan must not read.

Target (issue): at most 5 API calls. Time: median of --runs runs (reported).

    .venv/bin/python benchmarks/per_service_plan.py [--runs N] [--background N]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import PAYMENTS_EXAMPLE, Report, default_config, median, moto_server, stopwatch
from _instrument import Breakdown

CALLS_TARGET = 5


def fresh_plan(manifest: Path, config: Any) -> tuple[Any, Any, float, float]:
    from workload_ids import templates
    from workload_ids.calls import CallSeam
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    getattr(templates, "_CACHE", {}).clear()  # templates are loaded again, as in a new process
    with stopwatch() as total:
        with stopwatch() as t_validate:
            result = validate([manifest], config)
            result.raise_for_errors()
        seam = CallSeam()
        plan = build_plan(result.compiled, config, seam, fleet=None if not result.directory_run
                          else True)
    return plan, seam, total(), t_validate()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--background", type=int, default=200,
                        help="other roles in the account (created directly with boto3)")
    args = parser.parse_args()
    import boto3

    from workload_ids.apply import apply_plan
    from workload_ids.calls import CallSeam
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate

    report = Report("per_service_plan")
    manifest = PAYMENTS_EXAMPLE
    with tempfile.TemporaryDirectory(prefix="wid-one-") as tmp, moto_server() as url:
        config = default_config(Path(tmp))
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1")
        trust = '{"Version":"2012-10-17","Statement":[]}'
        for i in range(args.background):
            iam.create_role(RoleName=f"other-role-{i:04d}", AssumeRolePolicyDocument=trust)

        result = validate([manifest], config)
        result.raise_for_errors()
        seam = CallSeam()
        plan = build_plan(result.compiled, config, seam)
        plan_calls = seam.stats.total
        with stopwatch() as t_apply:
            applied = apply_plan(plan, concurrency=config.calls.concurrency)
        print(f"moto server {url}; {args.background} other roles; applied {manifest.name}: "
              f"plan {plan_calls} calls, apply {applied.calls} calls in {t_apply():.3f} s, "
              f"ok={applied.ok}")
        report.info("apply of one workload: API calls", applied.calls, "calls")
        report.info("apply of one workload: seconds", t_apply(), "s")

        times, validate_times, calls, changes = [], [], [], []
        seam = None
        for _ in range(args.runs):
            gc.collect()
            plan, seam, elapsed, t_validate = fresh_plan(manifest, config)
            times.append(elapsed)
            validate_times.append(t_validate)
            calls.append(seam.stats.total)
            changes.append(len(plan.changes))
        assert seam is not None
        by_op = dict(sorted(seam.stats.calls.items()))
        print(f"per-service plan x{args.runs}: " + ", ".join(f"{t * 1000:.0f}" for t in times)
              + " ms")
        print("calls by operation:", by_op)
        report.at_most("per-service plan: changes found (must be none)", max(changes), 0,
                       "changes")
        report.at_most("per-service plan: API calls", max(calls), CALLS_TARGET, "calls")
        report.info(f"per-service plan: wall time, median of {args.runs}", median(times), "s", key=True)
        report.info("per-service plan: slowest run", max(times), "s")
        report.info("per-service plan: of which validate (median)", median(validate_times), "s")
        report.note("per-service plan calls by operation: "
                    + ", ".join(f"{k} {v}" for k, v in by_op.items()))

        import botocore.endpoint

        from workload_ids.calls import CallSeam as Seam
        from workload_ids.providers.aws.clients import AwsClients
        gc.collect()
        with Breakdown([(AwsClients, "client", "boto3 session + client setup"),
                        (Seam, "call", "API calls, client side"),
                        (botocore.endpoint.Endpoint, "_send", "HTTP wait (moto's work)")]) as b:
            _, _, wall, t_validate = fresh_plan(manifest, config)
        print(f"breakdown of one plan ({wall * 1000:.1f} ms): validate {t_validate * 1000:.1f} ms, "
              + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in b.exclusive.items()))
        report.info("breakdown: boto3 session + client setup",
                    b.exclusive["boto3 session + client setup"], "s", key=True)
        report.info("breakdown: 5 API calls (client side + moto)",
                    b.exclusive["API calls, client side"] + b.exclusive["HTTP wait (moto's work)"],
                    "s")

        # As a user runs it: a cold CLI process.
        cli = Path(sys.executable).with_name("workload-ids")
        cli_times = []
        for _ in range(5):
            with stopwatch() as t_cli:
                proc = subprocess.run([str(cli), "plan", "--output", "json", str(manifest)],
                                      cwd=tmp, env=dict(os.environ), capture_output=True,
                                      text=True, check=False)
            if proc.returncode != 0:
                print("CLI plan failed:", proc.returncode, proc.stderr[-1500:])
                break
            cli_times.append(t_cli())
        if cli_times:
            report.info("CLI `workload-ids plan FILE`, cold process (median of 5)",
                        median(cli_times), "s", key=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
