"""No-op fleet plan over ten AWS accounts of 1,000 workloads each (issue 17, item 6).

Ten accounts on one moto server in its own process, each reached by assuming
``arn:aws:iam::ACCOUNT:role/deployer`` (a ``targets.aws`` entry with ``roleArn``, as an
organisation lists its accounts; moto gives the session that account's credentials).
Each account gets what ``workload-ids bootstrap --apply`` makes there (the marker signing
key, the permissions boundary) and the example OIDC providers. 1,000 generated manifests
per account (``_common.manifest_text``, the account swapped in) are applied once through
the library; then fresh no-op fleet plans of the whole folder (10,000 manifests) are timed
end to end through ``api.plan_paths`` (what ``workload-ids plan DIR`` runs: validation,
the accounts read in the background as soon as validation meets them, fan-out
``fanout.aws``, the diff), and one as a cold ``workload-ids plan DIR`` process.

Targets (issue): at most 40 API calls in all (4 per account), under 10 s.

    .venv/bin/python benchmarks/org_fleet_plan.py [--accounts N] [--workloads N] [--runs N]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    ACCOUNT,
    BENCH_TRUST,
    EKS_ISSUER,
    GcPauses,
    Report,
    median,
    moto_process_server,
    process_cpu,
    server_cpu_seconds,
    stopwatch,
)
from _common import manifest_text as _manifest_text
from _instrument import Breakdown
from fleet_plan import LOAD, breakdown_targets

ACCOUNTS = tuple(f"3000000000{n:02d}" for n in range(1, 11))
WORKLOADS = 1000  # per account
DEPLOYER = "deployer"
CALLS_TARGET = 40
SECONDS_TARGET = 10.0


def _account_session(url: str, account: str) -> Any:
    """A boto3 session acting in ``account`` (moto maps assumed-role keys to its account)."""
    import boto3
    sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{DEPLOYER}",
                            RoleSessionName="seed")["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                         aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name="us-east-1")


def seed_account(url: str, account: str) -> None:
    """What bootstrap makes in ``account`` (key, boundary) and the example OIDC providers."""
    from workload_ids.sandbox.aws import EXAMPLE_ISSUERS, seed_boundary, seed_signing_key
    session = _account_session(url, account)
    iam = session.client("iam", endpoint_url=url)
    for issuer in EXAMPLE_ISSUERS:
        iam.create_open_id_connect_provider(Url=issuer, ClientIDList=["sts.amazonaws.com"],
                                           ThumbprintList=["0" * 40])
    seed_boundary(account=account, iam=iam)
    seed_signing_key(account=account, sm=session.client("secretsmanager", endpoint_url=url))


def write_manifests(folder: Path, accounts: tuple[str, ...], per_account: int) -> int:
    """``per_account`` manifests per account, one folder per account; names unique across
    the fleet (IAM names are per account, but workload names are per run)."""
    rng = random.Random(1)
    n = 0
    for a, account in enumerate(accounts):
        where = folder / account
        where.mkdir(parents=True)
        for i in range(per_account):
            text = _manifest_text(a * per_account + i, rng).replace(ACCOUNT, account)
            (where / f"svc-{a * per_account + i:05d}.yaml").write_text(text, encoding="utf-8")
            n += 1
    return n


def config_for(base: Path, url: str, accounts: tuple[str, ...]) -> Any:
    """The config as a platform team writes it for ten accounts; also written to
    ``base/workload-ids.yaml`` for the CLI process."""
    from workload_ids.config import Config, ConfigFile
    data = {"aws": {"endpointUrl": url, "sandboxCredentials": True}, "trust": BENCH_TRUST,
            "targets": {"aws": [{"account": a, "roleArn": f"arn:aws:iam::{a}:role/{DEPLOYER}"}
                                for a in accounts]}}
    (base / "workload-ids.yaml").write_text(json.dumps(data), encoding="utf-8")
    return Config(ConfigFile.model_validate(data), base, base / "workload-ids.yaml")


def fresh_plan(folder: Path, config: Any) -> tuple[Any, Any, float]:
    """`workload-ids plan DIR` through the library, templates loaded again, new clients."""
    from workload_ids import api, templates
    from workload_ids.calls import CallSeam
    getattr(templates, "_CACHE", {}).clear()
    with stopwatch() as elapsed:
        seam = CallSeam()
        plan = api.plan_paths([folder], config, seam=seam)
    return plan, seam, elapsed()


def apply_all(folder: Path, config: Any) -> tuple[int, float]:
    """Apply the fleet (concurrency 8); reruns until converged. (calls, seconds)."""
    from workload_ids.apply import apply_plan
    from workload_ids.calls import CallSeam
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    calls, started = 0, time.perf_counter()
    checked = validate([folder], config)
    checked.raise_for_errors()
    for _ in range(5):
        seam = CallSeam()
        plan = build_plan(checked.compiled, config, seam, fleet=True)
        if not plan.changes:
            break
        result = apply_plan(plan, concurrency=8)
        calls += seam.stats.total
        failed = [r.error for r in result.results if r.error]
        print(f"  applied: {len(plan.changes)} changes, {seam.stats.total:,} calls, "
              f"{len(failed)} failed{': ' + str(failed[0]) if failed else ''}", flush=True)
    else:
        raise RuntimeError("the fleet did not converge in 5 apply runs")
    return calls, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=len(ACCOUNTS))
    parser.add_argument("--workloads", type=int, default=WORKLOADS, help="per account")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    accounts = ACCOUNTS[:args.accounts]
    report = Report("org_fleet_plan")
    from workload_ids.perf import RELAXED
    gc.set_threshold(*RELAXED)  # as the CLI sets them
    with moto_process_server() as url, tempfile.TemporaryDirectory(prefix="wid-orgplan-") as tmp:
        base = Path(tmp)
        for account in accounts:
            seed_account(url, account)
        folder = base / "fleet"
        total = write_manifests(folder, accounts, args.workloads)
        config = config_for(base, url, accounts)
        print(f"{len(accounts)} accounts x {args.workloads:,} workloads ({total:,} manifests); "
              f"EKS issuer {EKS_ISSUER}; applying ...", flush=True)
        apply_calls, apply_seconds = apply_all(folder, config)
        report.info(f"apply {total:,}: API calls", apply_calls, "calls")
        report.info(f"apply {total:,}: seconds (concurrency 8)", apply_seconds, "s", key=True)

        times, calls, changes, gcs, ours, servers = [], [], [], [], [], []
        by_op: dict[str, int] = {}
        for i in range(args.runs):
            gc.collect()
            server_before = server_cpu_seconds(url)
            with GcPauses() as pauses, process_cpu() as cpu:
                plan, seam, seconds = fresh_plan(folder, config)
            ours.append(cpu())
            servers.append(server_cpu_seconds(url) - server_before)
            times.append(seconds)
            calls.append(seam.stats.total)
            changes.append(len(plan.changes))
            gcs.append(pauses.seconds)
            by_op = dict(sorted(seam.stats.calls.items()))
            print(f"  run {i + 1}: {seconds:.2f} s ({pauses.seconds:.2f} s GC), CPU: ours "
                  f"{ours[-1]:.2f} s, moto's {servers[-1]:.2f} s; {seam.stats.total} calls, "
                  f"{len(plan.changes)} changes", flush=True)
        report.at_most("no-op fleet plan: changes found (must be none)", max(changes), 0, "changes")
        report.at_most(f"no-op fleet plan of {total:,} in {len(accounts)} accounts: API calls",
                       max(calls), CALLS_TARGET, "calls")
        report.under(f"no-op fleet plan: wall time, median of {args.runs}", median(times),
                     SECONDS_TARGET, "s")
        report.info("no-op fleet plan: fastest run", min(times), "s")
        report.info("no-op fleet plan: of which GC pauses (median)", median(gcs), "s")
        # The two processes' CPU: moto answers one request at a time (one interpreter), so
        # its CPU is a floor under the wall time that no change of ours can lower.
        report.info("no-op fleet plan: CPU of our process (median)", median(ours), "s", key=True)
        report.info("no-op fleet plan: CPU of the moto server answering (median)", median(servers),
                    "s", key=True)
        report.note("calls by operation: " + ", ".join(f"{k} {v}" for k, v in by_op.items()))

        # Where the time goes: the reads run on fan-out threads beside validation, so the
        # server's share is summed over threads (it answers one request at a time).
        gc.collect()
        with Breakdown(breakdown_targets()) as b:
            _, _, wall = fresh_plan(folder, config)
        report.info("breakdown run: wall time", wall, "s")
        report.info("breakdown: load + validate + compile", sum(b.exclusive[k] for k in LOAD), "s", key=True)
        report.info("breakdown: render IAM documents",
                    b.exclusive["render IAM documents (desired_identity)"], "s")
        report.info("breakdown: moto server's work (HTTP wait, all threads)",
                    b.exclusive["HTTP wait: moto server's work"], "s", key=True)
        report.info("breakdown: botocore XML parsing (all threads)",
                    b.exclusive["botocore: parse XML responses"], "s")
        report.info("breakdown: diff", b.exclusive["diff"], "s")

        cli = Path(sys.executable).with_name("workload-ids")
        with stopwatch() as took:
            proc = subprocess.run([str(cli), "plan", "--output", "json", str(folder)], cwd=base,
                                  capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            summary = json.loads(proc.stdout)["summary"]
            report.info("CLI `workload-ids plan DIR`, cold process", took(), "s", key=True)
            report.info("CLI plan: API calls", summary["apiCalls"], "calls")
        else:
            report.note(f"CLI plan failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
