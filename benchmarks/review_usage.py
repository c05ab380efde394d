"""Usage reads for access review: 1,000 identities per cloud, read through
``connect(...).usage`` with bounded concurrency (``targets.fan_out`` and the ``fanout:``
budget), calls counted by the seam (issue 18, item 6).

- AWS: 1,000 roles in one moto account (a thread of this process), each allowed five
  services; half used sqs (two actions), the rest never. Access advisor's jobs are per
  identity: each role costs GenerateServiceLastAccessedDetails, GetRole and one
  GetServiceLastAccessedDetails per poll. The local job takes ``--job-seconds`` of real
  time (AWS: a few seconds), so wall time is mostly waiting: about
  ``roles x (job time + the backoff's overshoot) / fanout``.
- GCP: 1,000 service accounts in ten projects (100 each, GCP's default quota) on the local
  emulators; half authenticated, and every fifth has a policy insight. Per project: Policy
  Analyzer's two queries, the insights and the custom roles; per account: its keys.
- Azure: 1,000 user-assigned managed identities in one subscription on the local ARM and
  Graph; half signed in. Once per run: Graph's applications, service principals and two
  sign-in reports; per subscription: the identities' list (paged). Nothing per identity.

Targets: AWS at most 6 calls per role (1 generate, 1 GetRole, at most 4 polls); GCP at
most 1.1 calls per account; Azure at most 0.1 calls per identity.

    .venv/bin/python benchmarks/review_usage.py [--identities N] [--clouds aws,gcp,azure]
        [--job-seconds S] [--fanout N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import ACCOUNT, BENCH_TRUST, Report, moto_server

SERVICES = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "s3:GetObject", "kms:Decrypt", "logs:PutLogEvents",
            "sns:Publish")
USED_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def _read(report: Report, cloud_name: str, config: Any, addresses: list[tuple[str, str]],
          label: str) -> dict[str, Any]:
    """Every address's usage through the fan-out (``fanout.<cloud>`` at once); figures into
    ``report``; returns the usages by address."""
    from workload_ids.calls import CallSeam
    from workload_ids.clouds import connect
    from workload_ids.targets import fan_out
    seam = CallSeam()
    cloud = connect(cloud_name, config, seam)
    assert cloud.usage is not None
    usage = cloud.usage
    target_of = dict((a, t) for t, a in addresses)
    started = time.perf_counter()
    results = fan_out(config, [(cloud_name, a) for _, a in addresses],
                      lambda _, address: usage.usage_of(target_of[address], address))
    seconds = time.perf_counter() - started
    count = len(addresses)
    found = {key[1]: u for key, u in results}
    used = sum(1 for u in found.values() if u.last_used is not None)
    report.info(f"{cloud_name}: {label} read", count, "identities")
    report.info(f"{cloud_name}: identities showing use", used, "identities")
    per = seam.stats.total / count
    report.info(f"{cloud_name}: API calls in all", seam.stats.total, "calls", key=True)
    report.info(f"{cloud_name}: wall time (fanout {config.fanout.budget(cloud_name)})", seconds, "s",
                key=True)
    report.note(f"{cloud_name}: calls by operation: "
                + ", ".join(f"{op} {n}" for op, n in sorted(seam.stats.calls.items())))
    found["__per__"] = per
    return found


def bench_aws(report: Report, count: int, job_seconds: float, fanout: int, base: Path) -> None:
    import boto3

    from workload_ids.config import Config, ConfigFile
    from workload_ids.sandbox.moto_access_advisor import advisor, record_access
    with moto_server():
        iam = boto3.client("iam", region_name="us-east-1")
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole"}]})
        policy = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": list(SERVICES), "Resource": "*"}]})
        arns = []
        for i in range(count):
            name = f"svc-{i:04d}"
            arns.append(iam.create_role(RoleName=name, Path="/workload-ids/",
                                        AssumeRolePolicyDocument=trust)["Role"]["Arn"])
            iam.put_role_policy(RoleName=name, PolicyName="access", PolicyDocument=policy)
            if i % 2 == 0:
                record_access(ACCOUNT, arns[-1], "sqs", action="ReceiveMessage", at=USED_AT)
                record_access(ACCOUNT, arns[-1], "sqs", action="DeleteMessage", at=USED_AT)
        advisor(ACCOUNT).job_seconds = job_seconds
        config = Config(ConfigFile.model_validate({"trust": BENCH_TRUST, "fanout": {"aws": fanout}}),
                        base, None)
        found = _read(report, "aws", config, [(ACCOUNT, a) for a in arns], "roles")
        report.at_most("aws: API calls per role", found.pop("__per__"), 6, "calls")
        report.info("aws: access advisor jobs (one per role)", advisor(ACCOUNT).generated, "jobs")
        report.info("aws: local job time", job_seconds, "s")
        assert sum(1 for u in found.values() if u.last_used is not None) == (count + 1) // 2


def bench_gcp(report: Report, count: int, fanout: int, base: Path) -> None:
    from workload_ids.config import Config, ConfigFile
    from workload_ids.sandbox.gcp.local import start_local_gcp
    local = start_local_gcp()
    try:
        iam = local.emulators[0]
        client = iam.client()
        addresses = []
        for i in range(count):
            project = f"acme-fleet-{i // 100:02d}"
            account = client.create_service_account(request={
                "name": f"projects/{project}", "account_id": f"svc-{i:04d}"})
            addresses.append((project, str(account.email)))
            if i % 2 == 0:
                local.analyzer.record(project, str(account.email), str(account.unique_id), at=USED_AT)
            if i % 5 == 0:
                local.recommender.record_insight(project, f"serviceAccount:{account.email}", "roles/viewer",
                                                 exercised=["resourcemanager.projects.get"])
        config = Config(ConfigFile.model_validate({
            "gcp": {**local.endpoints, "sandboxCredentials": True}, "trust": BENCH_TRUST,
            "fanout": {"gcp": fanout}}), base, None)
        found = _read(report, "gcp", config, addresses, f"service accounts in {(count + 99) // 100} projects")
        report.at_most("gcp: API calls per account", found.pop("__per__"), 1.1, "calls")
    finally:
        local.stop()


def bench_azure(report: Report, count: int, fanout: int, base: Path) -> None:
    from azure.mgmt.msi import ManagedServiceIdentityClient

    from workload_ids.config import Config, ConfigFile
    from workload_ids.sandbox.azure.arm import StaticTokenCredential
    from workload_ids.sandbox.azure.local import start_local_azure
    sub, group = "0b1f6471-1bf0-4dda-aec3-cb9272f09590", "rg-fleet"
    local = start_local_azure()
    try:
        msi = ManagedServiceIdentityClient(StaticTokenCredential(), sub, **local.arm.client_kwargs())
        addresses = []
        for i in range(count):
            made = msi.user_assigned_identities.create_or_update(group, f"svc-{i:04d}",
                                                                 {"location": "westeurope"})
            addresses.append((sub, str(made.id)))
            if i % 2 == 0:
                local.graph.record_sign_in(str(made.client_id), at=USED_AT, managed_identity=True)
        config = Config(ConfigFile.model_validate({"azure": local.settings, "trust": BENCH_TRUST,
                                                   "fanout": {"azure": fanout}}), base, None)
        found = _read(report, "azure", config, addresses, "managed identities")
        report.at_most("azure: API calls per identity", found.pop("__per__"), 0.1, "calls")
    finally:
        local.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--clouds", default="aws,gcp,azure")
    parser.add_argument("--job-seconds", type=float, default=0.5,
                        help="how long the local access advisor takes to make a report (AWS: seconds)")
    parser.add_argument("--fanout", type=int, default=32, help="identities read at once per cloud")
    args = parser.parse_args()
    from workload_ids import clock
    clock.enable_override(None)
    report = Report("review_usage")
    benches: dict[str, Callable[[Path], None]] = {
        "aws": lambda base: bench_aws(report, args.identities, args.job_seconds, args.fanout, base),
        "gcp": lambda base: bench_gcp(report, args.identities, args.fanout, base),
        "azure": lambda base: bench_azure(report, args.identities, args.fanout, base),
    }
    with tempfile.TemporaryDirectory(prefix="wid-review-usage-") as tmp:
        for name in args.clouds.split(","):
            benches[name.strip()](Path(tmp))
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
