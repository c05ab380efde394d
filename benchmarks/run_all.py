"""Run every benchmark (each in its own process) and print one summary table.

    .venv/bin/python benchmarks/run_all.py [NAME ...] [--all-rows]

NAME is a benchmark script without .py (default: all of them). Exits 1 if any target
was missed or a benchmark failed to run. Each benchmark's own output is shown as it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from _common import REPO, Row, fmt, table

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("compile", "cold_start", "per_service_plan", "fleet_plan", "rotate", "gcp_fleet_plan",
              "azure_fleet_plan")
# Run only when named: the peers install Cloud Custodian into its own venv and take ~5 minutes;
# org_fleet_plan applies 10,000 workloads first (about 5 minutes).
OPTIONAL = {"cleanup_vs_custodian": ["--ours"], "discover_vs_custodian": [], "adopt": [],
            "org_fleet_plan": [], "review_usage": [], "review_fleet": []}


def versions() -> str:
    import boto3
    import moto
    import pydantic
    import yaml
    return (f"Python {platform.python_version()}, moto {moto.__version__}, boto3 {boto3.__version__}, "
            f"pydantic {pydantic.VERSION}, PyYAML {yaml.__version__} "
            f"(libyaml {'yes' if hasattr(yaml, 'CSafeLoader') else 'no'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=", ".join(BENCHMARKS) + "; only when named: " + ", ".join(OPTIONAL))
    parser.add_argument("--all-rows", action="store_true",
                        help="the summary shows every figure, not only the key ones")
    args = parser.parse_args()
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS and n not in OPTIONAL]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} cores ({cpu}); {versions()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")

    rows: list[Row] = []
    failures: list[str] = []
    durations: dict[str, float] = {}
    for name in names:
        print(f"\n===== {name} " + "=" * max(0, 60 - len(name)), flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            out = Path(fh.name)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *OPTIONAL.get(name, [])], cwd=REPO,
                              env={**os.environ, "BENCH_JSON": str(out)}, check=False)
        durations[name] = time.perf_counter() - start
        try:
            doc = json.loads(out.read_text(encoding="utf-8") or "{}")
        except json.JSONDecodeError:
            doc = {}
        out.unlink(missing_ok=True)
        if not doc:
            failures.append(f"{name} did not report (exit {proc.returncode})")
            continue
        rows.extend(Row(**r) for r in doc["rows"])
        if proc.returncode != 0 and doc.get("ok", False):
            failures.append(f"{name} exited {proc.returncode}")

    shown = rows if args.all_rows else [r for r in rows if r.key]
    print("\n===== summary " + "=" * 50)
    print(table(shown, with_bench=True))
    print("\nrun time: " + ", ".join(f"{k} {fmt(v)} s" for k, v in durations.items()))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    results = HERE / ".results"
    results.mkdir(exist_ok=True)
    (results / "latest.json").write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "versions": versions(),
        "rows": [asdict(r) for r in rows], "failures": failures}, indent=2), encoding="utf-8")
    missed = [r for r in rows if r.ok is False]
    for r in missed:
        print(f"MISSED: {r.bench}: {r.metric} = {fmt(r.value)} {r.unit} (target {r.target})")
    for f in failures:
        print(f"FAILED: {f}")
    if not missed and not failures:
        print("all targets met")
    return 1 if missed or failures else 0


if __name__ == "__main__":
    sys.exit(main())
