"""Cold start of the CLI, each run a new process, from the repository root.

Targets (issue), median of >= 10 runs each, with the venv's console script:
  ``workload-ids --version``          under 0.2 s
  ``workload-ids validate examples/`` under 0.5 s
Also reported: the same with Python's bytecode cache available (this machine sets
PYTHONDONTWRITEBYTECODE=1, so workload_ids itself is compiled from source on every run
unless a cache exists; an installed wheel has one), a bare ``python -c pass`` for the
interpreter's own floor, and ``python -X importtime``'s top imports for validate.

    .venv/bin/python benchmarks/cold_start.py [--runs N] [--top N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import REPO, Report, median

VERSION_TARGET = 0.2
VALIDATE_TARGET = 0.5
# The examples federate from trust roots their config lists (a config is named in CI too).
VALIDATE = ("validate", "--config", "examples/workload-ids.yaml", "examples/")


def script() -> Path:
    path = Path(sys.executable).with_name("workload-ids")
    if not path.exists():
        raise SystemExit(f"{path} not found: install the package into the venv (pip install -e .)")
    return path


def timed_runs(cmd: list[str], runs: int, env: dict[str, str]) -> list[float]:
    subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, check=False)  # warm the OS cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-1000:]}")
    return times


def importtime(env: dict[str, str], runs: int
               ) -> tuple[dict[str, float], dict[str, float], float, dict[str, int]]:
    """Per module: median self and cumulative microseconds over ``runs`` processes, and
    each module's nesting depth (0: imported by the program itself, 1: by those, ...)."""
    code = ("import sys; from workload_ids.cli import main; "
            "sys.exit(main(['validate', '--config', 'examples/workload-ids.yaml', 'examples/']))")
    selfs: dict[str, list[float]] = defaultdict(list)
    cumul: dict[str, list[float]] = defaultdict(list)
    totals = []
    depth: dict[str, int] = {}
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=REPO, env=env,
                              capture_output=True, text=True, check=False)
        total = 0.0
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            s, c, raw = line[len("import time:"):].split("|")
            name = raw.strip()
            depth[name] = (len(raw) - len(raw.lstrip()) - 1) // 2
            selfs[name].append(float(s))
            cumul[name].append(float(c))
            total += float(s)
        totals.append(total)
    return ({k: statistics.median(v) for k, v in selfs.items()},
            {k: statistics.median(v) for k, v in cumul.items()}, statistics.median(totals), depth)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    runs = max(10, args.runs)
    report = Report("cold_start")
    cli = str(script())
    env = dict(os.environ)
    print(f"PYTHONDONTWRITEBYTECODE={env.get('PYTHONDONTWRITEBYTECODE', '')!r}; "
          f"load average at start {os.getloadavg()[0]:.2f}")

    floor = timed_runs([sys.executable, "-c", "pass"], runs, env)
    report.info("python -c pass (interpreter floor)", median(floor), "s", key=True)
    version = timed_runs([cli, "--version"], runs, env)
    validate = timed_runs([cli, *VALIDATE], runs, env)
    report.under(f"workload-ids --version, median of {runs}", median(version), VERSION_TARGET, "s")
    report.info("workload-ids --version, slowest", max(version), "s")
    report.under(f"workload-ids validate examples/, median of {runs}", median(validate),
                 VALIDATE_TARGET, "s")
    report.info("workload-ids validate examples/, slowest", max(validate), "s")

    # The same with a bytecode cache (kept outside the repository).
    with tempfile.TemporaryDirectory(prefix="wid-pycache-") as cache:
        cached = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = cache
        version_c = timed_runs([cli, "--version"], runs, cached)
        validate_c = timed_runs([cli, *VALIDATE], runs, cached)
        report.info("--version with bytecode cache, median", median(version_c), "s")
        report.info("validate examples/ with bytecode cache, median", median(validate_c), "s", key=True)
        self_c, cumul_c, total_c, depth_c = importtime(cached, 5)

    self_us, cumul_us, total_us, depth = importtime(env, 5)
    report.info("validate: time in imports (-X importtime, sum of self)", total_us / 1e6, "s")
    report.info("validate: time in imports, with bytecode cache", total_c / 1e6, "s")

    def show(title: str, values: dict[str, float], top: int) -> None:
        print(f"\n{title}")
        print(f"  {'ms':>7}  module")
        for name, us in sorted(values.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {us / 1000:7.1f}  {name}")

    # Cumulative time of the imports the program and its first-level modules make is what
    # each import costs in all; self time says which single module is slow.
    show(f"validate: top {args.top} imports by cumulative time, depth <= 1 (as configured)",
         {k: v for k, v in cumul_us.items() if depth.get(k, 9) <= 1}, args.top)
    show(f"validate: top {args.top} imports by self time (as configured)", self_us, args.top)
    show(f"validate: top {args.top} imports by cumulative time, depth <= 1 (bytecode cache)",
         {k: v for k, v in cumul_c.items() if depth_c.get(k, 9) <= 1}, args.top)
    show(f"validate: top {args.top} imports by self time (bytecode cache)", self_c, args.top)
    heavy = [k for k in ("boto3", "botocore", "moto", "pydantic", "yaml",
                         "importlib.metadata", "workload_ids.config", "workload_ids.manifest",
                         "workload_ids.validate", "workload_ids.cli") if k in cumul_us]
    absent = [k for k in ("boto3", "botocore", "moto") if k not in cumul_us]
    report.note("validate imports (cumulative, median of 5): " + ", ".join(
        f"{k} {cumul_us[k] / 1000:.0f} ms" for k in heavy)
        + (f"; not imported: {', '.join(absent)}" if absent else ""))
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
