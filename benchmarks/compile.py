"""Compile 1,000 workloads' IAM policies in process.

The fleet of fleet_plan.py is loaded and validated once (LoadedWorkloads, templates
loaded); then each workload is compiled (``compile_workload``: templates -> grants,
checks, marker digest) and rendered (``render.desired_identity``: policy and trust
documents, name, tags), and the time per workload is taken.

Target (issue): under 1 ms per workload (mean, median of --passes passes).
For comparison: policy_sentry 0.15.2 writes a policy in ~5 ms in process
(/work/shared/CLOUD-FACTS.md; not installed here).

    .venv/bin/python benchmarks/compile.py [--workloads N] [--passes N]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import Report, default_config, median, profile_top, write_fleet

TARGET_MS = 1.0
POLICY_SENTRY_MS = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    from workload_ids.compile import compile_workload
    from workload_ids.providers.aws.render import desired_identity
    from workload_ids.templates import load_templates
    from workload_ids.validate import validate

    report = Report("compile")
    with tempfile.TemporaryDirectory(prefix="wid-compile-") as tmp:
        folder = Path(tmp) / "manifests"
        write_fleet(folder, args.workloads)
        config = default_config(Path(tmp))
        result = validate([folder], config)
        result.raise_for_errors()
        loaded = result.loaded
        templates = load_templates(config.template_dirs())
    n = len(loaded)

    def one_pass() -> tuple[list[float], float, float, int, int]:
        per: list[float] = []
        compile_s = render_s = 0.0
        statements = size = 0
        clock = time.perf_counter
        for lw in loaded:
            t0 = clock()
            cw, problems = compile_workload(lw, templates, config)
            t1 = clock()
            assert cw is not None, problems
            desired = desired_identity(cw, config)
            t2 = clock()
            per.append(t2 - t0)
            compile_s += t1 - t0
            render_s += t2 - t1
            size += len(desired.documents["policy"])
            statements += desired.documents["policy"].count('"Sid"')
        return per, compile_s, render_s, statements, size

    one_pass()  # warm: first-use caches (regexes, pydantic serializers)
    means, compiles, renders, everyone = [], [], [], []
    statements = size = 0
    for _ in range(args.passes):
        gc.collect()
        per, c, r, statements, size = one_pass()
        means.append(sum(per) / n)
        compiles.append(c / n)
        renders.append(r / n)
        everyone.extend(per)
    everyone.sort()

    def pct(p: float) -> float:
        return everyone[min(len(everyone) - 1, int(p * len(everyone)))] * 1000

    mean_ms = median(means) * 1000
    print(f"{n} workloads, {statements} policy statements, {size / n:.0f} characters of "
          f"policy per workload on average; {args.passes} passes")
    report.under(f"compile + render per workload, mean (median of {args.passes} passes)",
                 mean_ms, TARGET_MS, "ms")
    report.info("  of which compile_workload", median(compiles) * 1000, "ms")
    report.info("  of which render.desired_identity", median(renders) * 1000, "ms")
    report.info("per workload, p50", pct(0.50), "ms")
    report.info("per workload, p99", pct(0.99), "ms", key=True)
    report.info("per workload, slowest", everyone[-1] * 1000, "ms")
    report.info(f"{n} workloads in all (median pass)", median(means) * n, "s")
    report.info("spread of pass means (stdev)", statistics.pstdev(means) * 1000, "ms")
    report.info("policy_sentry per policy (CLOUD-FACTS.md, not run here)", POLICY_SENTRY_MS, "ms")
    report.info("speed-up over policy_sentry", POLICY_SENTRY_MS / mean_ms, "x", key=True)
    if args.profile or not report.ok:
        print(profile_top(one_pass, 30, "tottime"))
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
