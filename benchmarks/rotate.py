"""Rotate 200 key-mode workloads in one run against a local moto server.

Each workload gets its first key from apply (day 0). Then the clock override moves to
day 31 and one `rotate` run issues, stores and verifies a new key for every workload:
the "full rotation step". Later runs (day 33, day 41) retire and delete the old keys.
Figures: API calls per workload for each step, and wall time, with the run's bounded
concurrency (config `calls.concurrency`, default 8).

    .venv/bin/python benchmarks/rotate.py [--count 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import Report, moto_process_server, stopwatch

TARGET_CALLS_PER_WORKLOAD = 8

MANIFEST = """\
apiVersion: workload-ids/v1
kind: Workload
metadata:
  name: feed-{i:04d}
  owner: team-data
  environment: prod
  description: On-premises export job {i}
spec:
  provider: aws
  runtime: on-premises
  aws: {{account: "123456789012", region: eu-west-1}}
  credentials:
    mode: key
    rotation: {{maxAge: 30d, overlap: 2d, grace: 7d}}
  access:
    - template: object-storage.write
      resources: [arn:aws:s3:::acme-feed-{i:04d}]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    report = Report("rotate")
    from workload_ids import clock
    from workload_ids.apply import apply_plan
    from workload_ids.calls import CallSeam
    from workload_ids.config import Config, ConfigFile
    from workload_ids.keys.fleet import rotate_workloads
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    clock.enable_override("drill")  # the rotation month runs against moto on this machine
    start = datetime.now(UTC).replace(microsecond=0)

    def at(days: float) -> None:
        os.environ["WORKLOAD_IDS_CLOCK"] = (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

    with tempfile.TemporaryDirectory(prefix="wid-rotate-") as tmp, moto_process_server():
        folder = Path(tmp)
        for i in range(args.count):
            (folder / f"feed-{i:04d}.yaml").write_text(MANIFEST.format(i=i), encoding="utf-8")
        # moto accepts a key at once: no pause between the consecutive sign-ins.
        config = Config(ConfigFile.model_validate({"credentials": {"verify": {"interval": "0s"}}}),
                        folder, None)
        at(0)
        checked = validate([folder], config)
        checked.raise_for_errors()
        seam = CallSeam()
        with stopwatch() as elapsed:
            result = apply_plan(build_plan(checked.compiled, config, seam, fleet=True), config=config)
        assert result.ok, [r.error for r in result.results if r.error][:3]
        report.info(f"apply {args.count} key-mode workloads (user, policy, first key)", elapsed(), "s")
        report.info("apply: API calls per workload", seam.stats.total / args.count, "calls")

        for day, label, key in ((31, "full rotation step (issue, store, verify)", True),
                                (33.5, "retire step (deactivate old key)", False),
                                (41, "delete step (grace over)", False)):
            at(day)
            seam = CallSeam()
            with stopwatch() as elapsed:
                reports = rotate_workloads(checked.compiled, config, seam)
            errors = [r.error for r in reports if r.error]
            assert not errors, errors[:3]
            per = seam.stats.total / args.count
            # Reads done once per account for the whole run (identities, secrets), not per workload.
            batched = sum(n for op, n in seam.stats.calls.items() if op.split(".")[-1] in (
                "list_secrets", "get_account_authorization_details", "list_roles"))
            # The workload lock (issue 7): its lock secret is created and deleted per workload;
            # the store's own secrets already exist by now, so these calls are the lock's alone.
            lock = sum(n for op, n in seam.stats.calls.items() if op.split(".")[-1] in (
                "create_secret", "delete_secret", "update_secret"))
            if key:
                report.at_most(f"{label}: API calls per workload, without the lock",
                               (seam.stats.total - batched - lock) / args.count,
                               TARGET_CALLS_PER_WORKLOAD, "calls")
                report.info(f"{label}: the workload lock's calls per workload", lock / args.count, "calls",
                            key=True)
                report.info(f"{label}: batched reads per account (whole run)", batched, "calls", key=True)
                report.info(f"{label}: all calls / workloads", per, "calls")
                report.info(f"{label}: wall time for {args.count}", elapsed(), "s", key=True)
                report.note(f"{label}: calls by operation: "
                            + ", ".join(f"{op.split(':', 1)[1]} {n}" for op, n in
                                        sorted(seam.stats.calls.items(), key=lambda x: -x[1])))
            else:
                report.info(f"{label}: API calls per workload", per, "calls")
                report.info(f"{label}: wall time for {args.count}", elapsed(), "s")
        os.environ.pop("WORKLOAD_IDS_CLOCK", None)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
