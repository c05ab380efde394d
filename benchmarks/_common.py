"""Shared pieces of the benchmarks: a fleet generator, a local moto server, timers and
the figures table every benchmark prints (and hands to run_all.py as JSON).

Each benchmark is a plain script: it prints its figures and exits 1 when a target is
missed. With ``BENCH_JSON=FILE`` in the environment it also writes its rows there.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The one path edit of the benchmarks: run from anywhere without installing, they import
# workload_ids and the test helpers (tests.support, a package inside the namespace tests/).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ACCOUNT = "123456789012"
REGION = "eu-west-1"
EKS_ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7"
PAYMENTS_EXAMPLE = REPO / "examples" / "aws" / "payments-api.yaml"


# --- figures -----------------------------------------------------------------------

@dataclass
class Row:
    """One figure: what, how much, the target it is held to (if any), and whether met."""

    bench: str
    metric: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None  # None: informational, no target
    key: bool = False  # shown in run_all's summary (rows with a target always are)

    def status(self) -> str:
        return "" if self.ok is None else ("met" if self.ok else "MISSED")


class Report:
    """Collects rows, prints them as a table, writes JSON, exits non-zero on a miss."""

    def __init__(self, bench: str) -> None:
        self.bench = bench
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def info(self, metric: str, value: float, unit: str, key: bool = False) -> Row:
        row = Row(self.bench, metric, value, unit, key=key)
        self.rows.append(row)
        return row

    def at_most(self, metric: str, value: float, limit: float, unit: str) -> Row:
        row = Row(self.bench, metric, value, unit, f"<= {fmt(limit)} {unit}", value <= limit, True)
        self.rows.append(row)
        return row

    def under(self, metric: str, value: float, limit: float, unit: str) -> Row:
        row = Row(self.bench, metric, value, unit, f"< {fmt(limit)} {unit}", value < limit, True)
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.rows)

    def finish(self) -> int:
        print()
        print(table(self.rows))
        for n in self.notes:
            print(n)
        out = os.environ.get("BENCH_JSON")
        if out:
            Path(out).write_text(json.dumps({"bench": self.bench, "ok": self.ok,
                                             "rows": [asdict(r) for r in self.rows],
                                             "notes": self.notes}, indent=2),
                                 encoding="utf-8")
        missed = [r for r in self.rows if r.ok is False]
        if missed:
            print(f"\n{self.bench}: {len(missed)} target(s) MISSED: "
                  + "; ".join(f"{r.metric} = {fmt(r.value)} {r.unit} ({r.target})" for r in missed))
            return 1
        print(f"\n{self.bench}: all targets met")
        return 0


def fmt(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(rows: list[Row], with_bench: bool = False) -> str:
    head = (["benchmark"] if with_bench else []) + ["metric", "value", "unit", "target", "status"]
    body = [([r.bench] if with_bench else []) + [r.metric, fmt(r.value), r.unit, r.target, r.status()]
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = "  ".join("-" * w for w in widths)

    def render(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i == len(head) - 4 else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
    return "\n".join([render(head), line, *(render(b) for b in body)])


# --- timing ------------------------------------------------------------------------

@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...``; ``elapsed()`` is seconds (live, then final)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- a local AWS -------------------------------------------------------------------

@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 (a thread of this process) that boto3 reaches through
    AWS_ENDPOINT_URL, with dummy credentials and the example OIDC providers."""
    from workload_ids.sandbox.aws import (
        MotoServer,
        seed_boundary,
        seed_oidc_providers,
        seed_signing_key,
    )
    # werkzeug logs every request line at INFO; keep its errors (tracebacks) only.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = MotoServer()
    url = server.start()
    try:
        with _aws_environment(url):
            seed_oidc_providers(endpoint_url=url)
            seed_boundary(endpoint_url=url)
            seed_signing_key(endpoint_url=url)  # what bootstrap makes: markers are signed
            yield url
    finally:
        # moto's state lives in module globals of this process: drop it, or it stays on
        # the heap (and in every later GC pass) after the server stops.
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(  # nosec B310 - loopback server
            f"{url}/moto-api/reset", method="POST")).read()
        server.stop()
        import gc
        gc.collect()


def _aws_environment(url: str) -> Any:
    from workload_ids.sandbox.aws import sandbox_environment
    return sandbox_environment(endpoint_url=url)


# The moto server processes running, by URL: their CPU is the server's share of a run.
_SERVER_PIDS: dict[str, int] = {}


def server_cpu_seconds(url: str) -> float:
    """CPU seconds the moto server process at ``url`` has used so far (user + system):
    what the local cloud itself spends answering, which no client change can take off a
    run's wall time while it answers one request at a time."""
    return process_cpu_seconds(_SERVER_PIDS[url])


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def process_cpu() -> Iterator[Callable[[], float]]:
    """CPU seconds this process used inside the block (all its threads)."""
    started = time.process_time()
    finished: list[float] = []
    try:
        yield lambda: (finished[0] if finished else time.process_time()) - started
    finally:
        finished.append(time.process_time())


@contextmanager
def moto_process_server() -> Iterator[str]:
    """The same, but moto runs in its own process (``python -m moto.server``), so its
    CPU, GIL and heap are not shared with the code being measured. For comparison."""
    import socket
    import subprocess
    import urllib.request

    from workload_ids.sandbox.aws import seed_boundary, seed_oidc_providers, seed_signing_key
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile(prefix="moto-server-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=subprocess.DEVNULL, stderr=log)
        _SERVER_PIDS[url] = proc.pid
        keep_log = False
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{url}/moto-api/", timeout=2).read()  # nosec B310
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        keep_log = True
                        raise RuntimeError(f"moto server did not start; see {log.name}") from None
                    time.sleep(0.1)
            with _aws_environment(url):
                seed_oidc_providers(endpoint_url=url)
                seed_boundary(endpoint_url=url)
                seed_signing_key(endpoint_url=url)  # what bootstrap makes: markers are signed
                yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _SERVER_PIDS.pop(url, None)
            if not keep_log:
                Path(log.name).unlink(missing_ok=True)


# The trust roots the generated manifests federate from, as a platform team would list them.
BENCH_TRUST: dict[str, Any] = {"allowedGithubOwners": ["acme"], "allowedIssuers": [EKS_ISSUER],
                               "allowedPools": ["projects/123456789012"]}


def default_config(base: Path) -> Any:
    """The built-in defaults and the fleet's trust roots (boto3 finds the endpoint in
    AWS_ENDPOINT_URL, as a user pointing at the sandbox would). Also written to
    ``base/workload-ids.yaml``, so a CLI process started in ``base`` reads the same."""
    import json

    from workload_ids.config import Config, ConfigFile
    (base / "workload-ids.yaml").write_text(json.dumps({"trust": BENCH_TRUST}), encoding="utf-8")
    return Config(ConfigFile.model_validate({"trust": BENCH_TRUST}), base, None)


# --- a fleet of manifests ----------------------------------------------------------

_TEAMS = ("payments", "billing", "data", "platform", "search", "identity", "growth", "ml")
_ENVS = ("prod", "staging", "dev")


def _resource(kind: str, stem: str) -> str:
    a, r = ACCOUNT, REGION
    return {
        "s3-bucket": f"arn:aws:s3:::acme-{stem}",
        "sqs-queue": f"arn:aws:sqs:{r}:{a}:{stem}",
        "sns-topic": f"arn:aws:sns:{r}:{a}:{stem}",
        "dynamodb-table": f"arn:aws:dynamodb:{r}:{a}:table/{stem}",
        "secretsmanager-secret": f"arn:aws:secretsmanager:{r}:{a}:secret:{stem}/db-AbCdEf",
        "ssm-parameter": f"arn:aws:ssm:{r}:{a}:parameter/{stem}/url",
        "kms-key": f"arn:aws:kms:{r}:{a}:key/{random.Random(stem).getrandbits(128):032x}",
        "logs-log-group": f"arn:aws:logs:{r}:{a}:log-group:/acme/{stem}",
        "cloudwatch-namespace": f"Acme/{stem}",
        "ecr-repository": f"arn:aws:ecr:{r}:{a}:repository/{stem}",
        "lambda-function": f"arn:aws:lambda:{r}:{a}:function:{stem}",
    }[kind]


_AWS_TEMPLATES = (
    ("object-storage.read", "s3-bucket"), ("object-storage.write", "s3-bucket"),
    ("queue.consume", "sqs-queue"), ("queue.publish", "sqs-queue"),
    ("topic.publish", "sns-topic"), ("table.read", "dynamodb-table"),
    ("table.write", "dynamodb-table"), ("secret.read", "secretsmanager-secret"),
    ("secret.read", "ssm-parameter"), ("key.encrypt", "kms-key"), ("key.decrypt", "kms-key"),
    ("logs.write", "logs-log-group"), ("metrics.write", "cloudwatch-namespace"),
    ("registry.pull", "ecr-repository"), ("registry.push", "ecr-repository"),
    ("function.invoke", "lambda-function"),
)


def manifest_text(i: int, rng: random.Random) -> str:
    """One valid AWS workload manifest, varied by ``i`` and ``rng``."""
    team = _TEAMS[i % len(_TEAMS)]
    env = _ENVS[(i // len(_TEAMS)) % len(_ENVS)]
    name = f"{team}-svc-{i:04d}"
    lines = [
        "apiVersion: workload-ids/v1",
        "kind: Workload",
        "metadata:",
        f"  name: {name}",
        f"  owner: team-{team}",
        f"  environment: {env}",
        f"  description: Benchmark workload {i} of team {team}",
        "spec:",
        "  provider: aws",
        f'  aws: {{account: "{ACCOUNT}", region: {REGION}'
        + (", maxSessionDuration: 2h}" if i % 7 == 0 else "}"),
        "  credentials:",
        "    mode: keyless",
        "    federation:",
    ]
    shape = i % 4  # github only, kubernetes only, both, both + aws-service
    if shape in (0, 2, 3):
        lines += ["      - kind: github-actions", f"        repository: acme/{name}"]
        lines += ["        environment: production"] if i % 3 == 0 else \
            ["        ref: refs/heads/main"]
    if shape in (1, 2, 3):
        lines += ["      - kind: kubernetes", f"        issuer: {EKS_ISSUER}",
                  f"        namespace: {team}", f"        serviceAccount: {name}"]
    if shape == 3:
        lines += ["      - kind: aws-service", "        service: ecs-tasks.amazonaws.com"]
    lines.append("  access:")
    for template, kind in rng.sample(_AWS_TEMPLATES, rng.randint(1, 5)):
        count = rng.choice((1, 1, 1, 2, 3))
        resources = ", ".join(_resource(kind, f"{name}-{template.split('.')[0]}-{n}")
                              for n in range(count))
        lines += [f"    - template: {template}", f"      resources: [{resources}]"]
    if i % 5 == 0:  # the escape hatch: raw actions with a reason
        lines += ["    - actions: [dynamodb:GetItem, dynamodb:Query]",
                  f"      resources: [arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}-raw]",
                  "      reason: reads its table directly for the benchmark"]
    return "\n".join(lines) + "\n"


def write_fleet(folder: Path, count: int, seed: int = 1) -> list[Path]:
    """``count`` manifests in one folder per team (as a monorepo would hold them)."""
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        team = _TEAMS[i % len(_TEAMS)]
        path = folder / team / f"svc-{i:04d}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(manifest_text(i, rng), encoding="utf-8")
        paths.append(path)
    return paths


# --- profiling helpers ---------------------------------------------------------------

def profile_top(fn: Callable[[], Any], limit: int = 20, sort: str = "cumulative") -> str:
    """Run ``fn`` under cProfile; return the top ``limit`` entries as text."""
    import cProfile
    import io
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort).print_stats(limit)
    return buf.getvalue()


class GcPauses:
    """Total time in Python's cyclic garbage collector while active (gc.callbacks)."""

    def __init__(self) -> None:
        import gc
        self._gc = gc
        self.seconds = 0.0
        self.collections: Counter[int] = Counter()
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcPauses:
        self._gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        self._gc.callbacks.remove(self._callback)


def fleet_plan_figures(report: Report, folder: Path, config: Any, *, workloads: int, runs: int,
                       calls_target: int, per_service_target: int, label: str = "") -> None:
    """Apply every manifest in ``folder`` once (concurrency 8), then time ``runs`` fresh
    no-op fleet plans and one per-service plan of ``svc-0000.yaml``, into ``report``."""
    from workload_ids.apply import apply_plan
    from workload_ids.calls import CallSeam
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate

    def plan(seam: CallSeam) -> Any:
        checked = validate([folder], config)
        checked.raise_for_errors()
        return build_plan(checked.compiled, config, seam, fleet=True)

    seam = CallSeam()
    with stopwatch() as applied:
        result = apply_plan(plan(seam), concurrency=8)
    assert result.ok, [r.error for r in result.results if r.error][:3]
    report.info(f"apply {workloads}{label}: API calls", seam.stats.total, "calls")
    report.info(f"apply {workloads}: seconds (concurrency 8)", applied(), "s")
    times: list[float] = []
    calls = 0
    for _ in range(runs):
        seam = CallSeam()
        with stopwatch() as took:
            again = plan(seam)
        times.append(took())
        calls = seam.stats.total
        assert not again.has_changes, [c.action for c in again.changes][:5]
    report.at_most("no-op fleet plan: API calls", calls, calls_target, "calls")
    report.info(f"no-op fleet plan of {workloads}: wall time, median of {runs}", median(times), "s", key=True)
    report.note("calls by operation: " + ", ".join(f"{k} {v}" for k, v in sorted(seam.stats.calls.items())))
    seam = CallSeam()
    single = build_plan(validate([folder / "svc-0000.yaml"], config).compiled, config, seam)
    assert not single.has_changes
    report.at_most("per-service plan: API calls", seam.stats.total, per_service_target, "calls")
