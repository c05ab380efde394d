"""``review PATHS`` judges access entries on GCP and Azure too, through the same usage
contract (AWS, with per-action detail, is tests/test_review_usage.py). Azure tells sign-ins
only: every entry of an identity that signs in is ``used`` and every entry of one that does
not is ``unused``; GCP judges a bucket entry per permission (recommender insights) and the
rest by the account's last authentication."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.contract import Cloud

from workload_ids import clock

NOW = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
RECENT = NOW - timedelta(hours=1)


def _seed(cloud: Cloud) -> None:
    if cloud.name == "gcp":
        iam = cloud.local.emulators[0]
        account = next(a for a in iam.service_accounts("acme-prod") if a.email.startswith("wid-prod-svc-a"))
        cloud.local.analyzer.record("acme-prod", account.email, account.unique_id, at=RECENT)
        role = next(r for r in iam.roles("acme-prod") if "storage.objects.get" in r.permissions)
        cloud.local.recommender.record_insight(
            "acme-prod", f"serviceAccount:{account.email}", role.name, exercised=["storage.objects.get"],
            resource="//storage.googleapis.com/projects/_/buckets/svc-a-in")
    else:
        from support.azure import arm_clients
        msi, _ = arm_clients(cloud.local)
        identity = next(i for i in msi.user_assigned_identities.list_by_subscription() if "svc-a" in i.name)
        cloud.local.graph.record_sign_in(identity.client_id, at=RECENT, managed_identity=True)


def test_review_judges_by_what_each_cloud_tells(cloud: Cloud, folder: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if cloud.name == "aws":
        pytest.skip("AWS: tests/test_review_usage.py")
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err
    _seed(cloud)
    # Granted three days before NOW (the audit trail says so): older than a 1-day window.
    Path("workload-ids.yaml").write_text(Path("workload-ids.yaml").read_text() + "review: {window: 1d}\n")
    monkeypatch.setenv(clock.ENV, clock.format_time(NOW))
    result = run_cli("review", "--output", "json", str(folder))
    assert result.code == 0, result.err
    doc: dict[str, Any] = json.loads(result.out)
    verdicts = {w["workload"]: [a["verdict"] for a in w["access"]] for w in doc["workloads"]}
    suggested = {s["path"].rsplit("/", 1)[-1]: s["diff"] for s in doc["suggestions"]}
    a = next(w for w in doc["workloads"] if w["workload"] == "prod/svc-a")
    if cloud.name == "azure":
        assert verdicts == {"prod/svc-a": ["used", "used"], "prod/svc-b": ["unused", "unused"]}
        assert all("keeps no usage per permission" in e["usage"] for e in a["access"])
        assert "+  access: []" in suggested["svc-b.yaml"] and "svc-a.yaml" not in suggested
    else:
        bucket, topic = a["access"]
        assert bucket["verdict"] == "partly used" and "storage.objects.get" in bucket["usedActions"]
        assert topic["verdict"] == "used" and "signed in" in topic["usage"]
        assert verdicts["prod/svc-b"] == ["unused", "unused"]
        # svc-a's bucket entry is narrowed to the permission it used (no smaller template
        # covers it), its resources kept; the topic it publishes to stays.
        diff = suggested["svc-a.yaml"]
        assert ('-    - template: object-storage.read\n+    - actions: ["storage.objects.get"]\n'
                '+      reason: "narrowed by workload-ids review from template object-storage.read '
                '(unused: storage.objects.list)"\n       resources: [projects/_/buckets/svc-a-in]\n') in diff
        assert "-    - template: topic.publish" not in diff
