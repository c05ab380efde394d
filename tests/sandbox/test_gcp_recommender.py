"""The Recommender emulator's policy insights (``google.iam.policy.Insight``), over REST as
the API reference describes them: the shape of an insight, paging, the filter, and
Google's refusals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from workload_ids.sandbox.gcp.local import start_local_gcp
from workload_ids.sandbox.gcp.recommender import INSIGHT_TYPE, RecommenderEmulator
from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, project_number

PROJECT = "proj-insights"
MEMBER = f"serviceAccount:batch@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture
def recommender() -> Iterator[RecommenderEmulator]:
    registry = ProjectRegistry()
    registry.add(PROJECT)
    with RecommenderEmulator(projects=registry) as emulator:
        yield emulator


def insights(url: str, project: str = PROJECT, kind: str = INSIGHT_TYPE, location: str = "global",
             **params: Any) -> requests.Response:
    return requests.get(f"{url}/v1/projects/{project}/locations/{location}/insightTypes/{kind}/insights",
                        params=params, timeout=10)


def test_an_insight_has_googles_shape(recommender: RecommenderEmulator) -> None:
    number = project_number(PROJECT)
    insight_id = recommender.record_insight(
        PROJECT, MEMBER, "roles/storage.objectAdmin",
        exercised=["storage.objects.get", "storage.objects.list"], inferred=["storage.objects.create"],
        total=12)
    answer = insights(recommender.url)
    assert answer.status_code == 200
    [got] = answer.json()["insights"]
    assert got["name"] == (f"projects/{number}/locations/global/insightTypes/{INSIGHT_TYPE}/"
                           f"insights/{insight_id}")
    assert got["content"] == {
        "role": "roles/storage.objectAdmin", "member": MEMBER,
        "exercisedPermissions": [{"permission": "storage.objects.get"},
                                 {"permission": "storage.objects.list"}],
        "inferredPermissions": [{"permission": "storage.objects.create"}],
        "currentTotalPermissionsCount": "12"}
    assert got["description"] == "2 of the permissions in this role binding were used in the past 90 days."
    assert (got["observationPeriod"], got["category"], got["insightSubtype"], got["stateInfo"]) == (
        "7776000s", "SECURITY", "PERMISSIONS_USAGE", {"state": "ACTIVE"})
    assert got["targetResources"] == [f"//cloudresourcemanager.googleapis.com/projects/{number}"]
    one = requests.get(f"{recommender.url}/v1/{got['name'].replace(str(number), PROJECT, 1)}", timeout=10)
    assert one.status_code == 200 and one.json() == got


def test_pages_and_filter(recommender: RecommenderEmulator) -> None:
    for n in range(5):
        recommender.record_insight(PROJECT, f"serviceAccount:sa-{n}@{PROJECT}.iam.gserviceaccount.com",
                                   "roles/viewer", exercised=["resourcemanager.projects.get"])
    first = insights(recommender.url, pageSize=3).json()
    rest = insights(recommender.url, pageSize=3, pageToken=first["nextPageToken"]).json()
    assert len(first["insights"]) == 3 and len(rest["insights"]) == 2 and "nextPageToken" not in rest
    names = [i["name"] for i in first["insights"] + rest["insights"]]
    assert len(set(names)) == 5
    both = 'stateInfo.state = "ACTIVE" AND insightSubtype = PERMISSIONS_USAGE'
    active = insights(recommender.url, filter=both)
    assert len(active.json()["insights"]) == 5
    assert insights(recommender.url, filter='stateInfo.state = "DISMISSED"').json()["insights"] == []
    bad = insights(recommender.url, filter="content.member = x")
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_googles_refusals(recommender: RecommenderEmulator) -> None:
    assert insights(recommender.url, project="nobody-here").json()["error"]["status"] == "NOT_FOUND"
    assert insights(recommender.url, kind="google.iam.serviceAccount.Insight").status_code == 400
    assert insights(recommender.url, location="europe-west1").status_code == 400
    recommender.enabled = False
    refused = insights(recommender.url)
    assert refused.status_code == 403 and "SERVICE_DISABLED" in refused.json()["error"]["message"]


def test_the_sandbox_serves_it_beside_policy_analyzer() -> None:
    local = start_local_gcp()
    try:
        local.recommender.record_insight("acme-sandbox", MEMBER, "roles/viewer", exercised=[])
        answer = insights(local.endpoints["policyAnalyzerEndpoint"], project="acme-sandbox")
        assert answer.status_code == 200 and len(answer.json()["insights"]) == 1
    finally:
        local.stop()
