"""No-op fleet plan of 1,000 workloads against a local moto server.

Generates 1,000 varied manifests (16 AWS templates, github-actions / kubernetes /
aws-service federation with the example issuers), applies them once through the library,
then times fresh no-op fleet plans end to end: load + validate + compile + read + diff.

Targets (issue): at most 20 API calls in all, under 3 s.
Also reported: where the time goes (load/validate vs cloud read vs diff), the same plan
as a cold ``workload-ids plan DIR`` subprocess, and the apply of 1,000 for comparison.

    .venv/bin/python benchmarks/fleet_plan.py [--workloads N] [--runs N] [--profile]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, Report, default_config, median, moto_server, profile_top, stopwatch, write_fleet
from _instrument import Breakdown

CALLS_TARGET = 20
SECONDS_TARGET = 3.0


def fresh_plan(folder: Path, config: object) -> tuple[object, object, float]:
    """What `workload-ids plan DIR` does in the library: validate, then a fleet plan."""
    from workload_ids import templates
    from workload_ids.calls import CallSeam
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    templates._CACHE.clear()  # a fresh run loads the templates again
    with stopwatch() as elapsed:
        result = validate([folder], config)  # type: ignore[arg-type]
        result.raise_for_errors()
        seam = CallSeam()
        plan = build_plan(result.compiled, config, seam, fleet=True)  # type: ignore[arg-type]
    return plan, seam, elapsed()


def breakdown_targets() -> list[tuple[object, str, str]]:
    from workload_ids import validate as validate_module
    from workload_ids.calls import CallSeam
    from workload_ids.providers.aws import render
    from workload_ids.providers.aws.provider import AwsProvider
    return [
        (validate_module, "load_templates", "load templates"),
        (validate_module, "load_workloads", "load manifests (read + YAML + shape)"),
        (validate_module, "compile_workload", "compile (templates -> grants)"),
        (render, "static_checks", "static checks (less render)"),
        (render, "desired_identity", "render IAM documents (desired_identity)"),
        (AwsProvider, "client", "boto3 session + client setup"),
        (CallSeam, "call", "API calls (HTTP round trip + moto)"),
        (AwsProvider, "preflight", "preflight (less its calls)"),
        (AwsProvider, "observe_scope", "parse observed roles (observe_scope less calls)"),
        (AwsProvider, "diff", "diff"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="timed no-op plans (median)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one plan")
    args = parser.parse_args()

    from workload_ids.apply import apply_plan
    from workload_ids.calls import CallSeam
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate

    report = Report("fleet_plan")
    n = args.workloads
    with tempfile.TemporaryDirectory(prefix="wid-fleet-") as tmp, moto_server() as url:
        folder = Path(tmp) / "manifests"
        write_fleet(folder, n)
        config = default_config(Path(tmp))
        print(f"moto server {url}; {n} manifests in {folder}")

        # --- apply once ---------------------------------------------------------------
        with stopwatch() as t_validate:
            result = validate([folder], config)
        result.raise_for_errors()
        seam = CallSeam()
        with stopwatch() as t_plan:
            plan = build_plan(result.compiled, config, seam, fleet=True)
        plan_calls = seam.stats.total
        creates = sum(1 for c in plan.changes if c.action == "create")
        with stopwatch() as t_apply:
            applied = apply_plan(plan, concurrency=config.calls.concurrency)
        failed = [r for r in applied.results if r.error]
        print(f"apply: validate {t_validate():.2f} s, plan {t_plan():.2f} s "
              f"({plan_calls} calls, {creates} creates), apply {t_apply():.2f} s "
              f"({applied.calls} calls, {len(failed)} failed)")
        if failed:
            print("first failure:", failed[0].error)
        report.info(f"apply {n}: API calls", applied.calls, "calls")
        report.info(f"apply {n}: seconds (concurrency {config.calls.concurrency})", t_apply(), "s")
        report.info(f"apply {n}: calls per workload", applied.calls / max(1, n), "calls")
        report.at_most(f"apply {n}: failed workloads", len(failed), 0, "workloads")

        # --- the no-op fleet plan ---------------------------------------------------
        times, calls, changes, orphans = [], [], [], []
        last_seam = None
        for i in range(args.runs):
            plan, seam, elapsed = fresh_plan(folder, config)
            times.append(elapsed)
            calls.append(seam.stats.total)  # type: ignore[attr-defined]
            changes.append(len(plan.changes))  # type: ignore[attr-defined]
            orphans.append(len(plan.no_manifest))  # type: ignore[attr-defined]
            last_seam = seam
            print(f"no-op plan run {i + 1}: {elapsed:.3f} s, {calls[-1]} calls, "
                  f"{changes[-1]} changes, {orphans[-1]} without manifest")
        by_op = dict(sorted(last_seam.stats.calls.items()))  # type: ignore[union-attr]
        print("calls by operation:", by_op)
        report.at_most("no-op plan: changes found (must be none)", max(changes), 0, "changes")
        report.at_most("no-op plan: API calls", max(calls), CALLS_TARGET, "calls")
        report.under(f"no-op plan: wall time, median of {args.runs}", median(times),
                     SECONDS_TARGET, "s")
        report.info("no-op plan: wall time, slowest run", max(times), "s")
        report.note("no-op plan calls by operation: "
                    + ", ".join(f"{k} {v}" for k, v in by_op.items()))

        # --- where the time goes --------------------------------------------------
        with Breakdown(breakdown_targets()) as b:
            _, _, instrumented = fresh_plan(folder, config)
        accounted = sum(b.exclusive.values())
        print(f"\nbreakdown of one instrumented no-op plan ({instrumented:.3f} s wall):")
        for label, seconds in b.exclusive.most_common():
            print(f"  {seconds:7.3f} s  {100 * seconds / instrumented:5.1f}%  "
                  f"{label}  ({b.count[label]} calls)")
        print(f"  {instrumented - accounted:7.3f} s  "
              f"{100 * (instrumented - accounted) / instrumented:5.1f}%  other (plan bookkeeping, "
              "validate's guardrails and sort, ...)")
        load_validate = sum(v for k, v in b.exclusive.items() if k in (
            "load templates", "load manifests (read + YAML + shape)",
            "compile (templates -> grants)", "static checks (less render)"))
        render_s = b.exclusive["render IAM documents (desired_identity)"]
        read_s = (b.exclusive["boto3 session + client setup"]
                  + b.exclusive["API calls (HTTP round trip + moto)"]
                  + b.exclusive["preflight (less its calls)"]
                  + b.exclusive["parse observed roles (observe_scope less calls)"])
        report.info("breakdown: load + validate + compile", load_validate, "s")
        report.info("breakdown: render IAM documents (validate + plan)", render_s, "s")
        report.info("breakdown: cloud read (client setup + calls + parse)", read_s, "s")
        report.info("breakdown:   of which API calls on the wire",
                    b.exclusive["API calls (HTTP round trip + moto)"], "s")
        report.info("breakdown: diff", b.exclusive["diff"], "s")

        # --- the same plan as a user runs it: a cold CLI process ------------------
        cli = Path(sys.executable).with_name("workload-ids")
        env = dict(os.environ)
        cmd = [str(cli), "plan", "--output", "json", str(folder)]
        with stopwatch() as t_cli:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                                  check=False)
        if proc.returncode != 0:
            print("CLI plan failed:", proc.returncode, proc.stderr[-2000:])
        else:
            import json
            summary = json.loads(proc.stdout)["summary"]
            print(f"\nCLI `workload-ids plan DIR` (cold process): {t_cli():.2f} s, {summary}")
            report.info("CLI `workload-ids plan DIR`, cold process", t_cli(), "s")
            report.info("CLI plan: API calls", summary["apiCalls"], "calls")

        if args.profile or not report.ok:
            print("\ncProfile of one no-op plan (by cumulative time):")
            print(profile_top(lambda: fresh_plan(folder, config), 40))
    print(f"(repo {REPO})")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
