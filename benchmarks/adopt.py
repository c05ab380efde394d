"""Adoption of 500 existing roles, then a plan of what was written (issue 17, item 6).

500 roles made by hand in one moto account (a thread of this process, as `fleet_plan.py`
uses): each trusted by one GitHub repository's main branch, with an inline policy that
consumes one queue and reads one table (a template matches the first exactly; the second
stays a raw entry), every fifth also with a customer-managed policy sending to a second
queue. (A grant adoption cannot express, such as `s3:GetObject` on `bucket/*`, is listed
in the manifest as dropped and plans as a narrowing: a person decides; not measured here.)
`adopt --apply` through the library writes one manifest per role and marks each whose
manifest widens nothing and changes no trust; then a fleet plan of the written folder must
show no change for any of them (the promise adoption makes). Calls are counted by the
seam; times are wall clock.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ACCOUNT, BENCH_TRUST, REGION, Report, moto_server

ROLES = 500
GITHUB = "token.actions.githubusercontent.com"


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def seed(count: int) -> list[str]:
    """``count`` hand-made roles (see the module docstring); their ARNs."""
    import boto3
    iam = boto3.client("iam", region_name="us-east-1")
    arns = []
    for i in range(count):
        subject = f"repo:acme/legacy-{i:03d}:ref:refs/heads/main"
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
            "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GITHUB}"},
            "Condition": {"StringEquals": {f"{GITHUB}:aud": "sts.amazonaws.com",
                                           f"{GITHUB}:sub": subject}}}]}
        name = f"legacy-{i:03d}"
        arns.append(iam.create_role(RoleName=name, Path="/legacy/",
                                    AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])
        queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs-{i:03d}"
        table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/legacy-{i:03d}"
        iam.put_role_policy(RoleName=name, PolicyName="jobs", PolicyDocument=_doc(
            {"Effect": "Allow", "Resource": [queue], "Action": [
                "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]},
            {"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": [table]}))
        if i % 5 == 0:
            arn = iam.create_policy(PolicyName=f"results-{i:03d}", PolicyDocument=_doc(
                {"Effect": "Allow", "Action": ["sqs:SendMessage"],
                 "Resource": [f"arn:aws:sqs:{REGION}:{ACCOUNT}:results-{i:03d}"]}))["Policy"]["Arn"]
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    return arns


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--roles", type=int, default=ROLES)
    args = parser.parse_args()
    from workload_ids import api
    from workload_ids.calls import CallSeam
    from workload_ids.config import Config, ConfigFile
    report = Report("adopt")
    with moto_server(), tempfile.TemporaryDirectory(prefix="wid-adopt-") as tmp:
        base = Path(tmp)
        arns = seed(args.roles)
        config = Config(ConfigFile.model_validate({"trust": BENCH_TRUST,
                                                   "audit": {"path": str(base / "audit.jsonl")}}),
                        base, None)
        seam = CallSeam()
        started = time.perf_counter()
        adopted = api.adopt(arns, base / "adopted", config, owner="team-legacy", environment="prod",
                            region=REGION, apply=True, seam=seam)
        seconds = time.perf_counter() - started
        summary = adopted.as_json()["summary"]
        report.info("adopt --apply: manifests written", summary["written"], "roles", key=True)
        report.at_most("adopt --apply: roles not marked (refused or widening)",
                       args.roles - summary["marked"], 0, "roles")
        report.info("adopt --apply: API calls per role", seam.stats.total / args.roles, "calls", key=True)
        report.info("adopt --apply: wall time", seconds, "s", key=True)
        seam = CallSeam()
        started = time.perf_counter()
        plan = api.plan_paths([base / "adopted"], config, seam=seam)
        seconds = time.perf_counter() - started
        report.at_most("fleet plan of the adopted manifests: changes", len(plan.changes), 0, "changes")
        report.info("fleet plan: API calls", seam.stats.total, "calls", key=True)
        report.info("fleet plan: wall time", seconds, "s", key=True)
        for change in plan.changes[:10]:
            report.note(f"  change: {change.workload} {change.action}")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
