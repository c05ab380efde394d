"""GCP clients through the call seam, against the emulators: every call counted, Google's
errors classified, transient failures retried, hard limits and etag conflicts not; a
failure leaves the seam as a CloudError of its kind, Google's exception as its cause."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gx

from workload_ids.calls import CallSeam, FailAt, RetryPolicy
from workload_ids.config import Config, ConfigFile
from workload_ids.errors import CloudError
from workload_ids.providers.gcp.clients import GcpClients, classify
from workload_ids.sandbox.gcp.iam import IamEmulator
from workload_ids.sandbox.gcp.resourcemanager import ResourceManagerEmulator
from workload_ids.sandbox.gcp.secretmanager import SecretManagerEmulator

PROJECT = "acme-prod"


@pytest.fixture(scope="module")
def endpoints() -> Iterator[dict[str, str]]:
    iam, rm, sm = IamEmulator(sandbox=True), ResourceManagerEmulator(sandbox=True), \
        SecretManagerEmulator(sandbox=True)
    urls = {"iamEndpoint": iam.start(), "resourceManagerEndpoint": rm.start(),
            "secretManagerEndpoint": sm.start()}
    yield urls
    for emulator in (iam, rm, sm):
        emulator.stop()


def clients(endpoints: dict[str, str], seam: CallSeam) -> GcpClients:
    config = Config(ConfigFile.model_validate({"gcp": {**endpoints, "sandboxCredentials": True}}),
                    Path.cwd(), None)
    return GcpClients(config, seam)


def _seam(**retry: Any) -> CallSeam:
    return CallSeam(RetryPolicy(**retry), sleep=lambda s: None)


def test_calls_are_counted_and_transient_failures_retried(endpoints: dict[str, str]) -> None:
    seam = _seam()
    seam.inject(FailAt(1, "transient"))
    gcp = clients(endpoints, seam)
    account = gcp.iam.create_service_account(request={
        "name": f"projects/{PROJECT}", "account_id": "wid-count-test",
        "service_account": {"description": "d"}})
    assert account.email == f"wid-count-test@{PROJECT}.iam.gserviceaccount.com"
    assert seam.stats.calls["gcp:iam.create_service_account"] == 2
    assert seam.stats.retries["gcp:iam.create_service_account"] == 1


def test_not_found_and_already_exists_are_not_retried(endpoints: dict[str, str]) -> None:
    seam = _seam()
    gcp = clients(endpoints, seam)
    with pytest.raises(CloudError) as missing:
        gcp.iam.get_service_account(name=f"projects/{PROJECT}/serviceAccounts/nobody@{PROJECT}."
                                         "iam.gserviceaccount.com")
    assert (missing.value.kind, missing.value.code) == ("not-found", "NotFound")
    assert missing.value.operation == "iam.get_service_account"
    assert isinstance(missing.value.__cause__, gx.NotFound)
    gcp.iam.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "wid-twice"})
    with pytest.raises(CloudError) as twice:
        gcp.iam.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": "wid-twice"})
    assert (twice.value.kind, twice.value.code) == ("conflict", "AlreadyExists")
    assert isinstance(twice.value.__cause__, gx.AlreadyExists)
    assert seam.stats.retries == {}


def test_key_limit_is_a_hard_limit_not_throttling(endpoints: dict[str, str]) -> None:
    seam = _seam()
    gcp = clients(endpoints, seam)
    account = gcp.iam.create_service_account(request={"name": f"projects/{PROJECT}",
                                                      "account_id": "wid-many-keys"})
    for _ in range(10):
        gcp.iam.create_service_account_key(request={"name": account.name, "key_algorithm": 1})
    with pytest.raises(CloudError) as limit:
        gcp.iam.create_service_account_key(request={"name": account.name, "key_algorithm": 1})
    assert limit.value.kind == "other"
    assert isinstance(limit.value.__cause__, gx.GoogleAPICallError)
    assert seam.stats.calls["gcp:iam.create_service_account_key"] == 11  # no retries


def test_stale_policy_etag_is_a_conflict(endpoints: dict[str, str]) -> None:
    seam = _seam()
    gcp = clients(endpoints, seam)
    policy = gcp.projects.get_iam_policy(request={"resource": f"projects/{PROJECT}",
                                                  "options": {"requested_policy_version": 3}})
    gcp.projects.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": policy})
    with pytest.raises(CloudError) as stale:
        gcp.projects.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": policy})
    assert stale.value.kind == "conflict"
    assert isinstance(stale.value.__cause__, gx.GoogleAPICallError)
    assert seam.stats.calls["gcp:resourcemanager.set_iam_policy"] == 2


def test_secret_manager_through_the_seam(endpoints: dict[str, str]) -> None:
    seam = _seam()
    gcp = clients(endpoints, seam)
    secret = gcp.secrets.create_secret(request={
        "parent": f"projects/{PROJECT}", "secret_id": "wid-s",
        "secret": {"replication": {"automatic": {}}, "labels": {"managed-by": "workload-ids"}}})
    assert secret.labels["managed-by"] == "workload-ids"
    assert seam.stats.calls["gcp:secretmanager.create_secret"] == 1


def test_http_429_is_throttling_like_resource_exhausted() -> None:
    """Over REST (Resource Manager) a quota answer is TooManyRequests, which is not a
    ResourceExhausted: both must be retried as throttling (the storm test found this)."""
    for exc in (gx.TooManyRequests("Quota exceeded for quota metric 'Read requests'"),
                gx.ResourceExhausted("Quota exceeded for quota metric 'Read requests'")):
        info = classify(exc)
        assert info is not None and info.kind == "throttle", exc
