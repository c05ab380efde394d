"""No-op fleet plan of 1,000 workloads against a local moto server.

Generates 1,000 varied manifests (16 AWS templates, github-actions / kubernetes /
aws-service federation with the example issuers), applies them once through the library,
then times fresh no-op fleet plans end to end: load + validate + compile + read + diff.

Targets (issue): at most 20 API calls in all, under 3 s (median of the runs), against
``workload_ids.sandbox.aws.MotoServer`` (moto in a thread of this process).
Also reported: where the time goes (load/validate vs cloud read vs diff, GC pauses), the
same plan against a moto server in its own process, as a cold ``workload-ids plan DIR``
subprocess, and the apply of 1,000 for comparison.

    .venv/bin/python benchmarks/fleet_plan.py [--workloads N] [--runs N] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import (
    GcPauses,
    Report,
    default_config,
    median,
    moto_process_server,
    moto_server,
    profile_top,
    stopwatch,
    write_fleet,
)
from _instrument import Breakdown

CALLS_TARGET = 20
SECONDS_TARGET = 3.0


def fresh_plan(folder: Path, config: Any) -> tuple[Any, Any, float]:
    """What `workload-ids plan DIR` does, through the library's `api.plan_paths`: validate
    and a fleet plan, the account read starting as soon as validation meets it.
    Templates are loaded again (their in-process cache is cleared), boto3 sessions and
    clients are new (a new provider per plan)."""
    from workload_ids import api, templates
    from workload_ids.calls import CallSeam
    getattr(templates, "_CACHE", {}).clear()  # loaded again, as in a new process
    with stopwatch() as elapsed:
        seam = CallSeam()
        plan = api.plan_paths([folder], config, seam=seam)
    return plan, seam, elapsed()


def breakdown_targets() -> list[tuple[Any, str, str]]:
    import botocore.endpoint
    import botocore.parsers

    from workload_ids import validate as validate_module
    from workload_ids.calls import CallSeam
    from workload_ids.providers.aws import render
    from workload_ids.providers.aws.clients import AwsClients
    from workload_ids.providers.aws.identity import AwsIdentities
    return [
        (validate_module, "load_templates", "load templates"),
        (validate_module, "load_workloads", "load manifests (read + YAML + shape)"),
        (validate_module, "compile_workload", "compile (templates -> grants)"),
        (render, "static_checks", "static checks (less render)"),
        (render, "desired_identity", "render IAM documents (desired_identity)"),
        (AwsClients, "client", "boto3 session + client setup"),
        (CallSeam, "call", "botocore: build/sign request, decode policies (after-call)"),
        (botocore.endpoint.Endpoint, "_send", "HTTP wait: moto server's work"),
        (botocore.parsers.ResponseParser, "parse", "botocore: parse XML responses"),
        (AwsIdentities, "preflight", "preflight (less its calls)"),
        (AwsIdentities, "observe_scope", "observe_scope: build ObservedIdentity (less calls)"),
        (AwsIdentities, "diff", "diff"),
    ]


LOAD = ("load templates", "load manifests (read + YAML + shape)",
        "compile (templates -> grants)", "static checks (less render)")
READ = ("boto3 session + client setup", "botocore: build/sign request, decode policies (after-call)",
        "HTTP wait: moto server's work", "botocore: parse XML responses",
        "preflight (less its calls)", "observe_scope: build ObservedIdentity (less calls)")


def apply_fleet(folder: Path, config: Any, report: Report | None, n: int) -> None:
    """Apply the fleet once, as `workload-ids apply DIR` would (default concurrency).
    A run that crashes is rerun (reruns converge), and the crash is reported."""
    from workload_ids.apply import apply_plan
    from workload_ids.calls import CallSeam
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    total_calls = total_seconds = 0.0
    crashes: list[str] = []
    first: tuple[int, float] | None = None
    for attempt in range(1, 6):
        result = validate([folder], config)
        result.raise_for_errors()
        seam = CallSeam()
        with stopwatch() as t_plan:
            plan = build_plan(result.compiled, config, seam, fleet=True)
        if not plan.changes:
            break
        plan_calls = seam.stats.total
        with stopwatch() as t_apply:
            try:
                applied = apply_plan(plan, concurrency=config.calls.concurrency)
                failed = [r for r in applied.results if r.error]
                outcome = f"{len(failed)} workload(s) failed" + (
                    f", first: {failed[0].error}" if failed else "")
            except Exception as exc:  # what the CLI would report as an internal error
                crashes.append(f"attempt {attempt}: {type(exc).__name__}: {str(exc)[:160]}")
                outcome = f"CRASHED: {type(exc).__name__}"
                if attempt == 1:
                    traceback.print_exc(limit=-6)
        calls = seam.stats.total - plan_calls
        total_calls += calls + plan_calls
        total_seconds += t_plan() + t_apply()
        print(f"apply attempt {attempt}: plan {t_plan():.2f} s ({plan_calls} calls, "
              f"{len(plan.changes)} changes), apply {t_apply():.2f} s ({calls} calls): {outcome}")
        if first is None:
            first = (calls, t_apply())
    else:
        raise RuntimeError("the fleet did not converge in 5 apply runs")
    if report is None:
        return
    assert first is not None
    report.info(f"apply {n}: API calls (first run)", first[0], "calls", key=True)
    report.info(f"apply {n}: seconds (first run, concurrency {config.calls.concurrency})",
                first[1], "s", key=True)
    report.info(f"apply {n}: runs to converge", attempt - 1, "runs")
    if crashes:
        report.info(f"apply {n}: plan+apply calls and seconds, all runs", total_calls, "calls")
        report.info(f"apply {n}: apply_plan crashed (package bug, see notes)", len(crashes), "runs", key=True)
        report.note("apply_plan crashed (moto answered a concurrent create_role with an HTML "
                    "500; the exception escaped apply_plan): " + " | ".join(crashes))


def timed_plans(folder: Path, config: Any, runs: int) -> dict[str, Any]:
    times, calls, changes, orphans, gc_seconds = [], [], [], [], []
    seam = None
    for i in range(runs):
        gc.collect()  # each run starts from the same heap, as a new process would
        with GcPauses() as pauses:
            plan, seam, elapsed = fresh_plan(folder, config)
        times.append(elapsed)
        gc_seconds.append(pauses.seconds)
        calls.append(seam.stats.total)
        changes.append(len(plan.changes))
        orphans.append(len(plan.no_manifest))
        print(f"  run {i + 1}: {elapsed:.3f} s ({pauses.seconds:.3f} s in GC, "
              f"{dict(sorted(pauses.collections.items()))} collections by generation), "
              f"{calls[-1]} calls, {changes[-1]} changes, {orphans[-1]} without manifest")
    return {"times": times, "calls": calls, "changes": changes, "orphans": orphans,
            "gc": gc_seconds, "by_op": dict(sorted(seam.stats.calls.items())) if seam else {}}


@contextlib.contextmanager
def fleet(server: Callable[[], contextlib.AbstractContextManager[str]], n: int,
          report: Report | None) -> Iterator[tuple[Path, Any, str]]:
    with tempfile.TemporaryDirectory(prefix="wid-fleet-") as tmp, server() as url:
        folder = Path(tmp) / "manifests"
        write_fleet(folder, n)
        config = default_config(Path(tmp))
        print(f"\nmoto server {url}; {n} manifests in {folder}")
        apply_fleet(folder, config, report, n)
        yield folder, config, tmp


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7, help="timed no-op plans (median)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one plan")
    args = parser.parse_args()
    report = Report("fleet_plan")
    n = args.workloads
    # As `workload-ids plan DIR` runs: the CLI sets these collector thresholds at start.
    from workload_ids.perf import RELAXED
    gc.set_threshold(*RELAXED)

    with fleet(moto_server, n, report) as (folder, config, tmp):
        print(f"no-op fleet plans ({args.runs}), moto in a thread of this process:")
        r = timed_plans(folder, config, args.runs)
        report.at_most("no-op plan: changes found (must be none)", max(r["changes"]), 0, "changes")
        report.at_most("no-op plan: API calls", max(r["calls"]), CALLS_TARGET, "calls")
        report.info(f"no-op plan, moto in a thread of this process (shares the GIL): "
                    f"median of {args.runs}", median(r["times"]), "s", key=True)
        report.info("no-op plan: fastest run", min(r["times"]), "s")
        report.info("no-op plan: slowest run", max(r["times"]), "s")
        report.info("no-op plan: of which GC pauses (median)", median(r["gc"]), "s", key=True)
        report.note("no-op plan calls by operation: "
                    + ", ".join(f"{k} {v}" for k, v in r["by_op"].items()))

        # --- where the time goes ----------------------------------------------------
        gc.collect()
        with Breakdown(breakdown_targets()) as b, GcPauses() as pauses:
            _, _, wall = fresh_plan(folder, config)
        accounted = sum(b.exclusive.values())
        print(f"\nbreakdown of one instrumented no-op plan ({wall:.3f} s wall; exclusive "
              "times; GC pauses fall inside whichever step triggered them):")
        for label, seconds in b.exclusive.most_common():
            print(f"  {seconds:7.3f} s  {100 * seconds / wall:5.1f}%  {label}  "
                  f"({b.count[label]} calls)")
        print(f"  {wall - accounted:7.3f} s  {100 * (wall - accounted) / wall:5.1f}%  other "
              "(validate's guardrails, duplicates and sort; plan bookkeeping)")
        print(f"  GC pauses in this run: {pauses.seconds:.3f} s "
              f"({dict(sorted(pauses.collections.items()))} collections by generation)")
        report.info("breakdown: load + validate + compile", sum(b.exclusive[k] for k in LOAD), "s", key=True)
        report.info("breakdown: render IAM documents (twice per workload)",
                    b.exclusive["render IAM documents (desired_identity)"], "s", key=True)
        report.info("breakdown: cloud read, all", sum(b.exclusive[k] for k in READ), "s", key=True)
        report.info("breakdown:   of which moto server's work",
                    b.exclusive["HTTP wait: moto server's work"], "s", key=True)
        report.info("breakdown:   of which botocore XML parsing",
                    b.exclusive["botocore: parse XML responses"], "s")
        report.info("breakdown: diff", b.exclusive["diff"], "s", key=True)
        report.info("breakdown: GC pauses (spread over the above)", pauses.seconds, "s")

        # --- the same plan as a user runs it: a cold CLI process --------------------
        cli = Path(sys.executable).with_name("workload-ids")
        cli_times = []
        summary: dict[str, Any] = {}
        for _ in range(3):
            with stopwatch() as t_cli:
                proc = subprocess.run([str(cli), "plan", "--output", "json", str(folder)],
                                      cwd=tmp, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print("CLI plan failed:", proc.returncode, proc.stderr[-2000:])
                break
            cli_times.append(t_cli())
            summary = json.loads(proc.stdout)["summary"]
        if cli_times:
            print(f"\nCLI `workload-ids plan DIR` (cold process): "
                  f"{', '.join(f'{t:.2f}' for t in cli_times)} s; {summary}")
            report.info("CLI `workload-ids plan DIR`, cold process (median of 3)",
                        median(cli_times), "s", key=True)
            report.info("CLI plan: API calls", summary["apiCalls"], "calls")

        if args.profile or not report.ok:
            print("\ncProfile of one no-op plan (by cumulative time):")
            gc.collect()
            print(profile_top(lambda: fresh_plan(folder, config), 45))
            print("cProfile of one no-op plan (by own time):")
            gc.collect()
            print(profile_top(lambda: fresh_plan(folder, config), 25, "tottime"))

    with fleet(moto_process_server, n, None) as (folder, config, _):
        print(f"no-op fleet plans ({args.runs}), moto in its own process:")
        r = timed_plans(folder, config, args.runs)
        # The target row: a local moto server is its own process (as `workload-ids
        # sandbox` runs it), so its work does not compete for this process's GIL.
        report.under(f"no-op plan: wall time, median of {args.runs} (moto server in its own process)",
                     median(r["times"]), SECONDS_TARGET, "s")
        report.info("moto in own process: of which GC pauses (median)", median(r["gc"]), "s")
        report.info("moto in own process: API calls", max(r["calls"]), "calls")
        gc.disable()
        try:
            no_gc = [fresh_plan(folder, config)[2] for _ in range(3)]
        finally:
            gc.enable()
        report.info("moto in own process: no-op plan with GC disabled, median of 3",
                    median(no_gc), "s", key=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
