"""Usage is the evidence access review removes grants on: a read the cloud refused must
never look like "not used", and a read must stay in the account it was asked about.

ATTACKS: Policy Analyzer disabled in the project (GCP), a tenant without Entra ID P1
(Azure), an ARN of another account (AWS). Each would turn "cannot tell" into "unused", or
read the wrong account, without the guard."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from workload_ids import clock
from workload_ids.calls import CallSeam
from workload_ids.clouds import connect
from workload_ids.config import Config, ConfigFile
from workload_ids.errors import UserError
from workload_ids.usage import was_used

GHOST = "ghost-worker@acme-prod.iam.gserviceaccount.com"


@pytest.fixture
def local_gcp() -> Iterator[Any]:
    from workload_ids.sandbox.gcp.local import start_local_gcp
    local = start_local_gcp()
    try:
        yield local
    finally:
        local.stop()


def _gcp(local: Any) -> Any:
    config = Config(ConfigFile.model_validate({"gcp": {**local.endpoints, "sandboxCredentials": True}}),
                    Path.cwd(), None)
    return connect("gcp", config, CallSeam()).usage


def test_gcp_refused_activity_is_never_unused(local_gcp: Any) -> None:
    week = clock.now() - timedelta(days=7)
    local_gcp.emulators[0].client().create_service_account(request={
        "name": "projects/acme-prod", "account_id": "quiet-worker"})
    quiet = "quiet-worker@acme-prod.iam.gserviceaccount.com"
    # The control: Policy Analyzer answers and lists no authentication: unused.
    heard = _gcp(local_gcp).usage_of("acme-prod", quiet)
    assert was_used(heard, "pubsub.topics.publish", "projects/acme-prod/topics/t", week).used is False
    # The attack: the API is off in the project, so Policy Analyzer says nothing at all.
    local_gcp.analyzer.enabled = False
    refused = _gcp(local_gcp).usage_of("acme-prod", quiet)
    assert refused.last_used is None and refused.last_used_known is False
    assert "Policy Analyzer refused its activity query" in refused.unread[0]
    answer = was_used(refused, "pubsub.topics.publish", "projects/acme-prod/topics/t", week)
    assert (answer.used, answer.basis) == (True, "none")
    assert "counts as used" in answer.reason


def test_azure_refused_sign_ins_are_never_unused() -> None:
    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure()
    try:
        local.graph.premium = False  # no Entra ID P1: Graph refuses the sign-in reports
        config = Config(ConfigFile.model_validate({"azure": local.settings}), Path.cwd(), None)
        usage = connect("azure", config, CallSeam()).usage
        assert usage is not None
        found = usage.usage_of("0b1f6471-1bf0-4dda-aec3-cb9272f09590", "11111111-2222-3333-4444-555555555555")
        assert found.last_used_known is False and found.unread[0].startswith("sign-in activity")
        answer = was_used(found, "Microsoft.Storage/storageAccounts/read", "/subscriptions/x",
                          clock.now() - timedelta(days=7))
        assert answer.used is True
    finally:
        local.stop()


def test_aws_reads_only_the_account_asked_about(aws: Any) -> None:
    seam = CallSeam()
    usage = connect("aws", Config(ConfigFile(), Path.cwd(), None), seam).usage
    assert usage is not None
    with pytest.raises(UserError, match="is in account 999999999999, not 123456789012: ask for its "
                                        "usage with target 999999999999"):
        usage.usage_of("123456789012", "arn:aws:iam::999999999999:role/admin")
    assert seam.stats.total == 0


def test_an_identity_that_does_not_exist_is_never_unused(aws: Any, local_gcp: Any) -> None:
    """A workload not applied yet (or an identity deleted since) has no usage to tell:
    its grants are not judged unused on its silence."""
    week = clock.now() - timedelta(days=7)
    usage = connect("aws", Config(ConfigFile(), Path.cwd(), None), CallSeam()).usage
    assert usage is not None
    role = usage.usage_of("123456789012", "arn:aws:iam::123456789012:role/workload-ids/not-yet")
    assert role.unread == ("the role arn:aws:iam::123456789012:role/workload-ids/not-yet does not exist",)
    assert was_used(role, "sqs:SendMessage", "*", week).used is True
    account = _gcp(local_gcp).usage_of("acme-prod", GHOST)
    assert account.unread == (f"the service account {GHOST} does not exist",)
    assert was_used(account, "pubsub.topics.publish", "projects/acme-prod/topics/t", week).used is True
