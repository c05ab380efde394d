"""Orphan cleanup against Cloud Custodian (c7n), on one local moto server, same data.

1,000 roles at ``/workload-ids/`` with our tags and inline policies, 200 of them owned by
``team-gone``, on a moto server in its own process that counts the requests it receives
(``_custodian_env.CountingApp``). Two scenarios, each on freshly seeded data:

* scan: c7n's ``custodian run --dryrun --cache-period 0`` with a policy that finds our roles
  whose owner is gone (our dry-run ``workload-ids cleanup`` with ``--ours``);
* delete: the 200 orphans are already quarantined (tag + deny-all inline policy) and past
  their delete-after; c7n's ``delete`` action with ``force: true`` removes them (our
  ``workload-ids cleanup --apply`` with ``--ours``). Afterwards exactly the 200 must be
  gone and the 800 others left.

Each tool runs as a subprocess; measured are the API calls the server received during the
run, wall time, and the process's peak RSS. c7n is installed on first run into
``benchmarks/.venv-c7n`` (never into the project's environment); without it the c7n side
is skipped with a message.

    .venv/bin/python benchmarks/cleanup_vs_custodian.py [--runs N] [--ours] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _custodian_env import (
    GONE_OWNERS,
    TAG_MANAGED_BY,
    TAG_OWNER,
    TAG_QUARANTINE,
    CountingMotoServer,
    Fleet,
    aws_env,
    counting_moto_server,
    custodian_version,
    ensure_custodian,
    list_role_names,
    read_calls,
    reset_calls,
    seed_roles,
)

ROLES = 1000
ORPHANS = 200
WORKLOAD_IDS = str(Path(sys.executable).with_name("workload-ids"))

# Our side: `--ours` runs these, each on fresh data as the c7n side, with "{config}"
# replaced by the file `ours_config` writes. The dry run judges every role (the 200 come
# out owner-gone, to be quarantined); the delete run finds the 200 quarantined past
# their delete-after and deletes them, writing a restore bundle of each to the audit log.
OURS_COMMANDS: list[tuple[str, list[str]]] = [
    ("scan", [WORKLOAD_IDS, "cleanup", "--output", "json", "--config", "{config}"]),
    # The benchmark's audit log is a local file: deleting then needs the explicit flag.
    ("delete", [WORKLOAD_IDS, "cleanup", "--apply", "--delete-with-local-audit", "--max-actions",
                str(ORPHANS), "--output", "json", "--config", "{config}"]),
]


def ours_config(folder: Path, url: str) -> Path:
    """The config our cleanup runs with: the moto endpoint, ``team-gone`` inactive in a
    file owner directory, an audit log, and guards that allow the 200 actions."""
    (folder / "owners.yaml").write_text(
        "owners:\n"
        "  - {id: team-active, kind: group, active: true, members: [alice]}\n"
        "  - {id: alice, kind: person, active: true}\n"
        + "".join(f"  - {{id: {o}, kind: group, active: false}}\n" for o in GONE_OWNERS),
        encoding="utf-8")
    path = folder / "workload-ids.yaml"
    path.write_text(
        "aws:\n"
        f"  endpointUrl: {url}\n"
        "  sandboxCredentials: true\n"
        "owners:\n"
        "  source: file\n"
        "  path: owners.yaml\n"
        "audit:\n"
        "  path: audit.jsonl\n"
        "cleanup:\n"
        "  grace: 7d\n"
        f"  maxActions: {ROLES}\n"
        "  maxShare: 1.0\n",
        encoding="utf-8")
    return path


# --- measuring one tool run -------------------------------------------------------------

@dataclass
class Measurement:
    """One tool process: API calls the moto server received while it ran, wall time from
    start to exit, and its peak resident set size."""

    calls: int
    seconds: float
    peak_mib: float
    returncode: int = 0
    cpu_seconds: float = 0.0  # the tool's own user + system CPU (not the server's)
    by_operation: dict[str, int] = field(default_factory=dict)
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)


# Runs the tool and reports on it: ``python -I -S -c _TRAMPOLINE RESULT_FILE COMMAND...``.
# It spawns COMMAND, waits for it with os.wait4 and writes "exit-code seconds maxrss-KiB cpu".
_TRAMPOLINE = """\
import os, sys, time
result, command = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawnp(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(result, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {seconds} {usage.ru_maxrss} "
            f"{usage.ru_utime + usage.ru_stime}")
"""


def measure(command: list[str], env: dict[str, str], cwd: Path | None = None) -> Measurement:
    """Run ``command`` with ``env`` (whose ``AWS_ENDPOINT_URL`` is a counting moto server)
    and measure it.

    Calls: the server's counter is zeroed just before the process starts and read right
    after it exits (nothing else talks to the server meanwhile; see
    ``_custodian_env.CountingApp`` for what counts as a call).

    Peak memory: ``ru_maxrss`` of the tool's own process, from ``os.wait4`` on it, taken
    by a small trampoline process (``_TRAMPOLINE``) that starts the tool. Not from this
    process: on Linux a child's ru_maxrss starts at the high-water RSS of the process it was
    forked from (exec keeps it), so a tool started straight from this runner (moto client,
    boto3, seeding threads: ~90 MiB) would report at least that; a ``python -c pass``
    showed 310 MiB under a runner holding 300 MiB. The trampoline (``python -I -S``, ~9
    MiB) puts that floor below any tool's own peak. ``getrusage(RUSAGE_CHILDREN)`` would
    be worse still: the maximum over every child ever reaped (the moto server, earlier
    runs). Wall time is the trampoline's clock around the tool (spawn to exit).
    """
    url = env["AWS_ENDPOINT_URL"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rusage") as result:
        reset_calls(url)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _TRAMPOLINE, result.name, *command],
                              env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                              check=False)
        outer = time.perf_counter() - started
        calls = read_calls(url)
        fields = result.read().split()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if len(fields) == 4:
        returncode, seconds, peak_mib = int(fields[0]), float(fields[1]), int(fields[2]) / 1024
        cpu = float(fields[3])
    else:  # the command could not be started: the trampoline's traceback is in stderr
        returncode, seconds, peak_mib, cpu = proc.returncode or 127, outer, 0.0, 0.0
    return Measurement(calls.total, seconds, peak_mib, returncode, cpu, calls.by_operation, stdout, stderr)


# --- the scenarios ----------------------------------------------------------------------

@dataclass
class Result:
    """One tool on one scenario: its measurements (one per run) and what it did."""

    scenario: str
    tool: str
    runs: list[Measurement]
    found: int | None = None  # identities the tool selected
    removed: int | None = None  # roles gone afterwards
    remaining: int | None = None  # roles left afterwards
    check: str = ""  # "ok", or the first thing that was wrong
    checks: list[str] = field(default_factory=list)  # everything that was wrong
    skipped: str = ""

    def median(self, attr: str) -> float:
        return statistics.median(getattr(m, attr) for m in self.runs) if self.runs else float("nan")

    def as_json(self) -> dict[str, Any]:
        runs = [{k: v for k, v in asdict(m).items() if k not in ("stdout", "stderr")} for m in self.runs]
        return {"scenario": self.scenario, "tool": self.tool, "skipped": self.skipped or None,
                "calls": self.median("calls") if self.runs else None,
                "seconds": self.median("seconds") if self.runs else None,
                "cpuSeconds": self.median("cpu_seconds") if self.runs else None,
                "peakMiB": self.median("peak_mib") if self.runs else None,
                "found": self.found, "removed": self.removed, "remaining": self.remaining,
                "check": self.check or None, "problems": self.checks, "runs": runs}


_OWNER_FILTERS = f"""\
      - "tag:{TAG_MANAGED_BY}": workload-ids
      - type: value
        key: "tag:{TAG_OWNER}"
        op: in
        value: [{", ".join(GONE_OWNERS)}]
"""

# What our dry run reports: the roles we manage whose owner is gone.
C7N_SCAN_POLICY = f"""\
policies:
  - name: workload-ids-orphans
    resource: iam-role
    filters:
{_OWNER_FILTERS}"""

# What our `cleanup --apply` does with them once quarantined: delete the ones whose
# quarantine has passed its delete-after. c7n reads the date out of our tag value with
# value_regex and compares it with now (value_type expiration, value 0 days); `force`
# deletes inline and detaches managed policies and instance profiles first.
C7N_DELETE_POLICY = f"""\
policies:
  - name: workload-ids-orphans-delete
    resource: iam-role
    filters:
{_OWNER_FILTERS}\
      - type: value
        key: "tag:{TAG_QUARANTINE}"
        value_regex: '.*delete-after=(\\S+).*'
        value_type: expiration
        op: lte
        value: 0
    actions:
      - type: delete
        force: true
"""


def _c7n_found(out_dir: Path, policy: str) -> set[str]:
    """The role names c7n selected (its ``resources.json``)."""
    path = out_dir / policy / "resources.json"
    if not path.exists():
        return set()
    return {r["RoleName"] for r in json.loads(path.read_text(encoding="utf-8"))}


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_scenario(server: CountingMotoServer, scenario: str, tool: str, runs: int,
                 command_for: Callable[[Path], list[str]],
                 found_in: Callable[[Path, Measurement], set[str] | None],
                 log: Callable[[str], None]) -> Result:
    """``runs`` times: fresh data, then the tool, then a check of what it left."""
    delete = scenario == "delete"
    result = Result(scenario, tool, [])
    checks: list[str] = []
    for n in range(1, runs + 1):
        server.reset_state()
        fleet = seed_roles(server.url, total=ROLES, orphans=ORPHANS, quarantine_orphans=delete, log=log)
        with tempfile.TemporaryDirectory(prefix=f"wid-{tool}-{scenario}-") as tmp:
            folder = Path(tmp)
            m = measure(command_for(folder), aws_env(server.url), cwd=folder)
            found = found_in(folder, m)
        result.runs.append(m)
        log(f"  {tool} {scenario} run {n}: {m.calls:,} calls, {m.seconds:.2f} s "
            f"({m.cpu_seconds:.2f} s CPU in the tool), {m.peak_mib:.0f} MiB peak, exit {m.returncode}"
            + (f", {len(found)} found" if found is not None else ""))
        if m.returncode != 0:
            checks.append(f"run {n} exited {m.returncode}")
            log(f"  {tool} stderr (tail):\n{_tail(m.stderr)}")
        result.found = len(found) if found is not None else None
        if found is not None and found != fleet.orphaned:
            checks.append(f"run {n} found {len(found)} roles, {len(found & fleet.orphaned)} "
                          f"of the {len(fleet.orphaned)} orphans")
        checks += _check_after(fleet, delete, n, result, server.url)
    result.checks = checks
    more = f" (and {len(checks) - 1} more)" if len(checks) > 1 else ""
    result.check = checks[0] + more if checks else "ok"
    return result


def _check_after(fleet: Fleet, delete: bool, n: int, result: Result, url: str) -> list[str]:
    """After a dry run all 1,000 roles are there; after the delete exactly the orphans are
    gone. (These reads come after the measurement: they are not counted.)"""
    left = list_role_names(url)
    everything = fleet.active | fleet.orphaned
    result.removed = len(everything - left)
    result.remaining = len(left)
    expected = fleet.active if delete else everything
    if left == expected:
        return []
    return [f"run {n}: {len(everything - left)} roles gone ({len(fleet.orphaned - left)} orphans, "
            f"{len(fleet.active - left)} active), expected "
            f"{len(fleet.orphaned) if delete else 0} orphans and no active role"]


def custodian_results(server: CountingMotoServer, custodian: Path, runs: int,
                      log: Callable[[str], None]) -> list[Result]:
    results = []
    for scenario, policy_name, text, extra in (
            ("scan", "workload-ids-orphans", C7N_SCAN_POLICY, ["--dryrun"]),
            ("delete", "workload-ids-orphans-delete", C7N_DELETE_POLICY, [])):
        def command(folder: Path, text: str = text, extra: list[str] = extra) -> list[str]:
            (folder / "policy.yml").write_text(text, encoding="utf-8")
            return [str(custodian), "run", *extra, "--cache-period", "0",
                    "-s", str(folder / "out"), str(folder / "policy.yml")]

        def found(folder: Path, _: Measurement, policy_name: str = policy_name) -> set[str]:
            return _c7n_found(folder / "out", policy_name)

        log(f"\n--- c7n, {scenario}: custodian run {'--dryrun ' if extra else ''}--cache-period 0")
        results.append(run_scenario(server, scenario, "c7n", runs, command, found, log))
    return results


def _ours_found(scenario: str) -> Callable[[Path, Measurement], set[str] | None]:
    """The roles our report selected: owner-gone ones to quarantine (scan), or the ones it
    deleted (delete), read from its ``--output json``."""
    def found(folder: Path, m: Measurement) -> set[str] | None:
        try:
            report = json.loads(m.stdout)
        except ValueError:
            return None
        if scenario == "scan":
            return {i["identity"] for i in report["identities"]
                    if i["status"] == "owner-gone" and i["action"] == "quarantine"}
        return {r["identity"] for r in report.get("results", []) if r["action"] == "delete" and r["ok"]}
    return found


def ours_results(server: CountingMotoServer, runs: int, log: Callable[[str], None]) -> list[Result]:
    """Our cleanup on the same data. The roles were created seconds ago: the clock is set
    two hours ahead so that they are past cleanup.minAge (1h) and get judged."""
    from datetime import UTC, datetime, timedelta
    ahead = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    os.environ["WORKLOAD_IDS_CLOCK"] = ahead
    results = []
    for scenario, template in OURS_COMMANDS:
        def command(folder: Path, template: list[str] = template) -> list[str]:
            config = ours_config(folder, server.url)
            return [part.replace("{config}", str(config)) for part in template]

        shown = " ".join([Path(template[0]).name, *template[1:]])
        log(f"\n--- ours, {scenario}: {shown}")
        results.append(run_scenario(server, scenario, "ours", runs, command, _ours_found(scenario), log))
    return results


# --- reporting --------------------------------------------------------------------------

def render_table(results: list[Result]) -> str:
    head = ["scenario", "tool", "API calls", "seconds", "tool CPU s", "peak MiB", "found", "removed",
            "remaining", "check"]
    body = []
    for r in results:
        if r.skipped:
            body.append([r.scenario, r.tool, "-", "-", "-", "-", "-", "-", "-", f"skipped: {r.skipped}"])
            continue
        body.append([r.scenario, r.tool, f"{r.median('calls'):,.0f}", f"{r.median('seconds'):.2f}",
                     f"{r.median('cpu_seconds'):.2f}", f"{r.median('peak_mib'):.0f}",
                     _opt(r.found), _opt(r.removed), _opt(r.remaining),
                     r.check])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    numeric = range(2, 9)
    lines = ["  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _opt(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def environment_line(custodian: Path | str) -> str:
    import boto3
    import moto
    c7n = custodian_version(Path(custodian).parent.parent) if isinstance(custodian, Path) else "c7n: none"
    return (f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} cores; Python "
            f"{platform.python_version()}; moto {moto.__version__} (server, own process); "
            f"ours: boto3 {boto3.__version__}; {c7n}; load average {os.getloadavg()[0]:.2f}")


def bench_rows(results: list[Result]) -> list[dict[str, Any]]:
    """The rows in _common.Report's JSON form (for ``BENCH_JSON``, as run_all reads it)."""
    rows = []
    for r in results:
        if r.skipped:
            continue
        for metric, attr, unit in (("API calls", "calls", "calls"), ("wall time", "seconds", "s"),
                                   ("peak RSS", "peak_mib", "MiB")):
            rows.append({"bench": "cleanup_vs_custodian", "metric": f"{r.scenario}, {r.tool}: {metric}",
                         "value": r.median(attr), "unit": unit, "target": "", "ok": None, "key": True})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1,
                        help="runs per tool and scenario, each on fresh data (median reported)")
    parser.add_argument("--ours", action="store_true",
                        help="also run our `workload-ids cleanup` on the same data (see OURS_COMMANDS)")
    parser.add_argument("--no-c7n", action="store_true", help="skip the c7n side (with --ours)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="write the results as JSON to FILE (or stdout, with the progress on stderr)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    to_stdout = args.json == "-"

    def log(text: str) -> None:
        print(text, file=sys.stderr if to_stdout else sys.stdout, flush=True)

    custodian = ensure_custodian(log=log)
    env_line = environment_line(custodian)
    log(env_line)
    results: list[Result] = []
    with counting_moto_server() as server:
        log(f"moto server (in its own process, counting requests) at {server.url}")
        if args.no_c7n:
            pass
        elif isinstance(custodian, Path):
            results += custodian_results(server, custodian, args.runs, log)
        else:
            log(f"\nc7n skipped: {custodian}")
            results += [Result(s, "c7n", [], skipped="c7n could not be installed (see above)")
                        for s in ("scan", "delete")]
        if args.ours:
            results += ours_results(server, args.runs, log)

    log(f"\nload average at the end: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} cores; other "
        "processes on the machine slow moto and the tools alike)")
    log(render_table(results))
    for r in results:
        if r.runs:
            ops = sorted(r.runs[-1].by_operation.items(), key=lambda kv: -kv[1])
            log(f"{r.scenario}, {r.tool}: calls by operation (last run): "
                + ", ".join(f"{k} {v:,}" for k, v in ops))
    document = {"environment": env_line, "roles": ROLES, "orphans": ORPHANS, "runs": args.runs,
                "results": [r.as_json() for r in results]}
    if args.json:
        text = json.dumps(document, indent=2)
        if to_stdout:
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    bench_json = os.environ.get("BENCH_JSON")
    if bench_json:
        Path(bench_json).write_text(json.dumps({
            "bench": "cleanup_vs_custodian", "ok": all(r.check in ("ok", "") for r in results),
            "rows": bench_rows(results), "notes": [env_line]}, indent=2), encoding="utf-8")
    failed = [r for r in results if not r.skipped and r.check != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
