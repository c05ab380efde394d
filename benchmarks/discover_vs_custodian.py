"""discover over many accounts, against Cloud Custodian's iam-role and iam-user reports on
the same data (issue 17, item 6).

Ten AWS accounts on one moto server in its own process (it counts every request it
receives, `_custodian_env.CountingApp`), each holding 1,000 roles (700 at /workload-ids/
with our tags and an inline policy, 300 made by hand: 30 of those with a customer-managed
`*:*` policy, 30 trusted by another account, 30 by any principal) and 100 IAM users with
an access key. Each account is reached by assuming `arn:aws:iam::ACCOUNT:role/reader`
(moto gives the session that account's credentials).

- ours: one `workload-ids discover --output json` process over the ten `targets.aws`
  entries (`roleArn`), fanned out as the config's `fanout.aws` allows (8);
- c7n: `custodian run --dryrun --cache-period 0 --assume ROLE` with an `iam-role` and an
  `iam-user` policy, one process per account, 8 at a time (what c7n-org does, without
  installing it), then `custodian report` per account and policy.

Each tool runs as a subprocess (started through `cleanup_vs_custodian.measure`): measured
are the API calls the server received while it ran, its wall time and peak RSS. Checked:
each tool reports every role and user of every account. c7n is installed on first run into
`benchmarks/.venv-c7n`. Targets: at most 2 calls per account page of IAM's authorization
details, and under 10 s.

``--profile`` runs ours once more after the measured run, under cProfile with every
thread profiled (the fan-out threads read and parse; the main thread judges and writes),
prints the top entries and keeps the whole profile in ``benchmarks/.results/discover.prof``
(``python -m pstats`` reads it). The measured figures come from the unprofiled run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _custodian_env import (
    FAKE_ENV,
    TRUST,
    _policy,
    _retry,
    _tags,
    aws_env,
    counting_moto_server,
    ensure_custodian,
    reset_calls,
    role_name,
)
from cleanup_vs_custodian import Measurement, environment_line, measure

ACCOUNTS = tuple(f"2000000000{n:02d}" for n in range(1, 11))
ROLES, HAND_MADE, USERS = 1000, 300, 100  # per account; --small shrinks them for a quick check
READER = "reader"
WORKLOAD_IDS = str(Path(sys.executable).with_name("workload-ids"))
ADMIN = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"}]})


def _trust(kind: str) -> str:
    principal = {"external": {"AWS": "arn:aws:iam::999988887777:root"}, "any": {"AWS": "*"},
                 "service": {"Service": "lambda.amazonaws.com"}}[kind]
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]})


def _account_client(url: str, account: str, concurrency: int) -> Any:
    """An IAM client acting in ``account`` (moto maps an assumed role's keys to its account)."""
    import boto3
    from botocore.config import Config
    session = boto3.Session(**{k.lower(): v for k, v in FAKE_ENV.items()
                               if k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
                            region_name="us-east-1")
    creds = session.client("sts", endpoint_url=url).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{READER}", RoleSessionName="seed")["Credentials"]
    cfg = Config(retries={"max_attempts": 10, "mode": "standard"}, max_pool_connections=concurrency * 2)
    return boto3.client("iam", endpoint_url=url, region_name="us-east-1", config=cfg,
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def seed(url: str, log: Callable[[str], None], concurrency: int = 8) -> None:
    """Every account as the module docstring says; the counter is zeroed afterwards."""
    started = time.perf_counter()
    for account in ACCOUNTS:
        iam = _account_client(url, account, concurrency)
        admin = iam.create_policy(PolicyName="legacy-admin", PolicyDocument=ADMIN)["Policy"]["Arn"]

        def role(i: int, iam: Any = iam, admin: str = admin) -> None:
            if i <= ROLES - HAND_MADE:  # as workload-ids makes them (tags, inline policy)
                name = role_name(i)
                _retry(lambda: iam.create_role(RoleName=name, Path="/workload-ids/",
                                               AssumeRolePolicyDocument=TRUST,
                                               Tags=_tags(i, "team-active", False)))
                _retry(lambda: iam.put_role_policy(RoleName=name, PolicyName="workload-ids",
                                                   PolicyDocument=_policy(i)))
                return
            name = f"legacy-{i:04d}"
            kind = ("external", "any", "service")[i % 3]
            _retry(lambda: iam.create_role(RoleName=name, AssumeRolePolicyDocument=_trust(kind)))
            if i % 10 == 0:
                _retry(lambda: iam.attach_role_policy(RoleName=name, PolicyArn=admin))

        def user(i: int, iam: Any = iam) -> None:
            _retry(lambda: iam.create_user(UserName=f"bot-{i:03d}"))
            _retry(lambda: iam.create_access_key(UserName=f"bot-{i:03d}"))

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(role, range(1, ROLES + 1)))
            list(pool.map(user, range(1, USERS + 1)))
        log(f"  seeded {account}: {ROLES:,} roles, {USERS} users with a key "
            f"({time.perf_counter() - started:.0f} s so far)")
    reset_calls(url)


def ours_config(folder: Path, url: str) -> Path:
    path = folder / "workload-ids.yaml"
    path.write_text(
        "aws:\n"
        f"  endpointUrl: {url}\n"
        "  sandboxCredentials: true\n"
        "targets:\n"
        "  aws:\n"
        + "".join(f"    - {{account: \"{a}\", roleArn: \"arn:aws:iam::{a}:role/{READER}\"}}\n"
                  for a in ACCOUNTS),
        encoding="utf-8")
    return path


# Runs the CLI with a cProfile per thread (threading.setprofile starts one in each new
# thread), merged into argv[1] when it ends.
_PROFILED = """
import cProfile, pstats, sys, threading
profiles, lock = [], threading.Lock()
def _start(*_):
    p = cProfile.Profile()
    with lock:
        profiles.append(p)
    p.enable()
threading.setprofile(_start)
main = cProfile.Profile()
profiles.append(main)
from workload_ids.cli import main as cli
main.enable()
try:
    code = cli(sys.argv[2:])
finally:
    stats = None
    for p in profiles:
        p.disable()
        stats = pstats.Stats(p) if stats is None else stats.add(p)
    stats.dump_stats(sys.argv[1])
sys.exit(code)
"""


def ours(url: str, folder: Path, profile: Path | None = None) -> tuple[Measurement, dict[str, int]]:
    command = [WORKLOAD_IDS, "discover", "--output", "json", "--config", str(ours_config(folder, url))]
    if profile is not None:
        command = [sys.executable, "-c", _PROFILED, str(profile), *command[1:]]
    m = measure(command, aws_env(url), cwd=folder)
    found: dict[str, int] = {}
    try:
        for identity in json.loads(m.stdout)["identities"]:
            found[identity["target"]] = found.get(identity["target"], 0) + 1
    except (ValueError, KeyError):
        pass
    return m, found


C7N_POLICY = """\
policies:
  - name: roles
    resource: iam-role
  - name: users
    resource: iam-user
"""


def custodian(url: str, exe: Path, folder: Path) -> tuple[Measurement, dict[str, int]]:
    (folder / "policy.yml").write_text(C7N_POLICY, encoding="utf-8")
    runs = " ".join(
        shlex.quote(f"{exe} run --dryrun --cache-period 0 --assume arn:aws:iam::{a}:role/{READER} "
                    f"-s {folder}/out/{a} {folder}/policy.yml && "
                    f"{exe} report -s {folder}/out/{a} {folder}/policy.yml -p roles --format csv "
                    f"> {folder}/out/{a}/roles.csv")
        for a in ACCOUNTS)
    script = f"printf '%s\\n' {runs} | xargs -P 8 -I{{}} sh -c {{}}"
    m = measure(["bash", "-c", script], aws_env(url), cwd=folder)
    found: dict[str, int] = {}
    for account in ACCOUNTS:
        for policy in ("roles", "users"):
            path = folder / "out" / account / policy / "resources.json"
            if path.exists():
                found[account] = found.get(account, 0) + len(json.loads(path.read_text()))
    return m, found


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--no-c7n", action="store_true", help="only ours")
    parser.add_argument("--small", action="store_true",
                        help="2 accounts of 30 roles (9 by hand) and 5 users: checks the script, not speed")
    parser.add_argument("--profile", action="store_true",
                        help="then run ours once more under cProfile (every thread) and print the top of it")
    args = parser.parse_args()
    if args.small:
        global ACCOUNTS, ROLES, HAND_MADE, USERS
        ACCOUNTS, ROLES, HAND_MADE, USERS = ACCOUNTS[:2], 30, 9, 5
    log = print
    exe = None if args.no_c7n else ensure_custodian(log=log)
    log(environment_line(exe if exe is not None else "none"))
    expected = ROLES + USERS
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    with counting_moto_server() as server, tempfile.TemporaryDirectory(prefix="wid-discover-") as tmp:
        log(f"moto server (own process, counting requests) at {server.url}; seeding "
            f"{len(ACCOUNTS)} accounts ...")
        seed(server.url, log)
        os.environ.pop("WORKLOAD_IDS_CLOCK", None)
        tools: list[tuple[str, Callable[[], tuple[Measurement, dict[str, int]]]]] = [
            ("ours", lambda: ours(server.url, Path(tmp)))]
        if isinstance(exe, Path):
            tools.append(("c7n", lambda: custodian(server.url, exe, Path(tmp))))
        elif exe is not None:
            log(f"c7n skipped: {exe}")
        for tool, run in tools:
            server_before = server.cpu_seconds()
            m, found = run()
            server_cpu = server.cpu_seconds() - server_before
            wrong = {a: found.get(a, 0) for a in ACCOUNTS if found.get(a, 0) != expected}
            check = "ok" if m.returncode == 0 and not wrong else (
                f"exit {m.returncode}; " if m.returncode else "") + (
                f"found {wrong} instead of {expected} per account" if wrong else "")
            if check != "ok":
                problems.append(f"{tool}: {check}")
                log(m.stderr[-2000:])
            per_account = m.calls / len(ACCOUNTS)
            log(f"\n{tool}: {m.calls:,} calls ({per_account:.1f} per account), {m.seconds:.2f} s, "
                f"{m.cpu_seconds:.2f} s CPU in the tool, {server_cpu:.2f} s CPU in the moto "
                f"server answering it, {m.peak_mib:.0f} MiB peak; {check}")
            log("  by operation: " + ", ".join(f"{k} {v:,}" for k, v in
                                               sorted(m.by_operation.items(), key=lambda kv: -kv[1])))
            rows += [
                {"bench": "discover_vs_custodian", "metric": f"{tool}: API calls per account",
                 "value": per_account, "unit": "calls", "target": "<= 2 per page" if tool == "ours" else "",
                 "ok": None, "key": True},
                {"bench": "discover_vs_custodian", "metric": f"{tool}: wall time, 10 accounts",
                 "value": m.seconds, "unit": "s", "target": "< 10" if tool == "ours" else "",
                 "ok": (m.seconds < 10) if tool == "ours" else None, "key": True},
                {"bench": "discover_vs_custodian", "metric": f"{tool}: CPU of the tool / of the moto server",
                 "value": round(m.cpu_seconds, 2), "unit": f"s / {server_cpu:.2f} s", "target": "",
                 "ok": None, "key": True}]
        if args.profile:
            _profile(server.url, Path(tmp), log)
    bench_json = os.environ.get("BENCH_JSON")
    if bench_json:
        Path(bench_json).write_text(json.dumps({"bench": "discover_vs_custodian", "ok": not problems,
                                                "rows": rows, "notes": problems}, indent=2))
    for p in problems:
        log(f"PROBLEM {p}")
    return 1 if problems else 0


def _profile(url: str, folder: Path, log: Callable[[str], None]) -> None:
    """Ours once more, profiled; the top of it printed, all of it kept."""
    import io
    import pstats
    out = Path(__file__).resolve().parent / ".results" / "discover.prof"
    out.parent.mkdir(exist_ok=True)
    m, _ = ours(url, folder, profile=out)
    log(f"\nours under cProfile (every thread; slower than unprofiled): {m.calls} calls, "
        f"{m.seconds:.2f} s, {m.cpu_seconds:.2f} s CPU; exit {m.returncode}; profile in {out}")
    if m.returncode != 0 or not out.exists():
        log(m.stderr[-2000:])
        return
    for sort in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(str(out), stream=buf).strip_dirs().sort_stats(sort).print_stats(25)
        log(buf.getvalue())


if __name__ == "__main__":
    sys.exit(main())
