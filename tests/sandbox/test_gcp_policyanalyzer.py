"""The Policy Analyzer emulator's activity query, over REST as gcloud's
``policy-intelligence query-activity`` sends it (no client library serves this API)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from workload_ids.sandbox.gcp.local import start_local_gcp
from workload_ids.sandbox.gcp.policyanalyzer import PolicyAnalyzerEmulator
from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, project_number

PROJECT = "proj-activity"
AT = datetime(2026, 4, 27, 7, 30, tzinfo=UTC)
ACCOUNT = "serviceAccountLastAuthentication"
KEY = "serviceAccountKeyLastAuthentication"


@pytest.fixture
def analyzer() -> Iterator[PolicyAnalyzerEmulator]:
    registry = ProjectRegistry()
    registry.add(PROJECT)
    with PolicyAnalyzerEmulator(projects=registry) as emulator:
        yield emulator


def query(url: str, kind: str, project: str = PROJECT, location: str = "global",
          **params: Any) -> requests.Response:
    return requests.get(f"{url}/v1/projects/{project}/locations/{location}/activityTypes/{kind}/"
                        "activities:query", params=params, timeout=10)


def email(n: int) -> str:
    return f"sa-{n:02d}@{PROJECT}.iam.gserviceaccount.com"


def test_activity_shapes_for_accounts_and_keys(analyzer: PolicyAnalyzerEmulator) -> None:
    analyzer.record(PROJECT, email(1), "101", key_id="abc123", at=AT)
    analyzer.record(PROJECT, email(1), "101", at=AT - timedelta(days=3))  # older: kept out
    [account] = query(analyzer.url, ACCOUNT).json()["activities"]
    name = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{email(1)}"
    assert account == {
        "fullResourceName": name, "activityType": ACCOUNT,
        "observationPeriod": {"startTime": "2026-04-27T00:00:00Z", "endTime": "2026-04-28T00:00:00Z"},
        "activity": {"lastAuthenticatedTime": "2026-04-27T07:30:00Z", "serviceAccount": {
            "fullResourceName": name, "projectNumber": str(project_number(PROJECT)),
            "serviceAccountId": "101"}}}
    [key] = query(analyzer.url, KEY).json()["activities"]
    assert key["fullResourceName"] == f"{name}/keys/abc123"
    assert key["activity"]["serviceAccountKey"]["fullResourceName"] == f"{name}/keys/abc123"


def test_pages_and_filter(analyzer: PolicyAnalyzerEmulator) -> None:
    for n in range(12):
        analyzer.record(PROJECT, email(n), str(100 + n), at=AT)
    first = query(analyzer.url, ACCOUNT).json()  # ten a page unless asked
    assert len(first["activities"]) == 10 and first["nextPageToken"]
    rest = query(analyzer.url, ACCOUNT, pageToken=first["nextPageToken"]).json()
    assert [a["activity"]["serviceAccount"]["serviceAccountId"] for a in rest["activities"]] == ["110", "111"]
    assert "nextPageToken" not in rest
    assert len(query(analyzer.url, ACCOUNT, pageSize=1000).json()["activities"]) == 12
    wanted = f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{email(3)}"
    only = query(analyzer.url, ACCOUNT, filter=f'activities.fullResourceName = "{wanted}"').json()
    assert [a["fullResourceName"] for a in only["activities"]] == [wanted]
    assert query(analyzer.url, ACCOUNT, filter="activityType = x").status_code == 400


def test_refusals(analyzer: PolicyAnalyzerEmulator) -> None:
    unknown = query(analyzer.url, ACCOUNT, project="no-such-project")
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
    assert query(analyzer.url, ACCOUNT, location="europe-west1").status_code == 400
    assert query(analyzer.url, "serviceAccountUsage").status_code == 400
    assert query(analyzer.url, ACCOUNT, pageToken="%%%").status_code == 400
    analyzer.enabled = False
    disabled = query(analyzer.url, ACCOUNT)
    assert disabled.status_code == 403 and "SERVICE_DISABLED" in disabled.json()["error"]["message"]


def test_the_sandbox_serves_it_on_resource_managers_port() -> None:
    local = start_local_gcp()
    try:
        assert local.endpoints["policyAnalyzerEndpoint"] == local.endpoints["resourceManagerEndpoint"]
        local.analyzer.record("acme-sandbox", "x-account@acme-sandbox.iam.gserviceaccount.com", "7", at=AT)
        found = query(local.endpoints["policyAnalyzerEndpoint"], ACCOUNT, project="acme-sandbox").json()
        assert [a["activity"]["serviceAccount"]["serviceAccountId"] for a in found["activities"]] == ["7"]
        assert "policyAnalyzerEndpoint" in local.config_block()
    finally:
        local.stop()
