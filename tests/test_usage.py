"""``was_used``, the one question a review asks of usage, answered conservatively: only
what the cloud shows unused since the start is unused, and each answer says its basis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workload_ids.usage import ActionUse, IdentityUsage, ServiceUse, service_of, was_used

NOW = datetime(2026, 12, 1, tzinfo=UTC)
WEEK = NOW - timedelta(days=7)


def usage(provider: str, *, window: int = 400, last: datetime | None = None, known: bool = True,
          services: tuple[ServiceUse, ...] = (), unread: tuple[str, ...] = ()) -> IdentityUsage:
    return IdentityUsage(provider, "t", "addr", "role", NOW, timedelta(days=window),
                         NOW - timedelta(days=window), last, services, unread=unread, last_used_known=known)


def test_service_of_each_cloud() -> None:
    assert service_of("aws", "SQS:SendMessage") == "sqs"
    assert service_of("gcp", "storage.objects.get") == "storage"
    assert service_of("azure", "Microsoft.Storage/storageAccounts/read") == "Microsoft.Storage"


def test_aws_action_then_service_then_nothing() -> None:
    sqs = ServiceUse("sqs", NOW - timedelta(days=1), action_level=True, actions=(
        ActionUse("sqs:SendMessage", True, NOW - timedelta(days=1)),
        ActionUse("sqs:DeleteMessage", True, NOW - timedelta(days=30))))
    s3 = ServiceUse("s3", None)
    u = usage("aws", services=(sqs, s3))
    assert was_used(u, "sqs:SendMessage", "*", WEEK).basis == "action"
    old = was_used(u, "sqs:DeleteMessage", "*", WEEK)
    assert (old.used, old.basis) == (False, "action")
    assert old.reason == ("sqs:DeleteMessage was last used at 2026-11-01T00:00:00Z, "
                          "before 2026-11-24T00:00:00Z")
    other = was_used(u, "sqs:PurgeQueue", "*", WEEK)
    assert (other.used, other.basis) == (True, "service") and "counts as used" in other.reason
    never = was_used(u, "s3:GetObject", "*", WEEK)
    assert (never.used, never.basis) == (False, "service")
    assert never.reason == "s3 was not used since 2025-10-27T00:00:00Z"
    unknown = was_used(u, "sns:Publish", "*", WEEK)
    assert (unknown.used, unknown.basis) == (True, "none")


def test_tracking_that_starts_late_cannot_say_unused() -> None:
    u = usage("azure", window=30)
    answer = was_used(u, "Microsoft.Storage/x/read", "/s", NOW - timedelta(days=90))
    assert answer.used is True and "cannot tell" in answer.reason
    assert was_used(u, "Microsoft.Storage/x/read", "/s", WEEK).used is False


def test_gcp_permission_insight_covers_its_resource_only() -> None:
    storage = ServiceUse("storage", None, actions=(
        ActionUse("storage.objects.get", True, None, ("projects/_/buckets/a",)),
        ActionUse("storage.objects.delete", False, None, ("projects/_/buckets/a",))))
    u = usage("gcp", window=90, last=NOW - timedelta(days=1), services=(storage,))
    assert was_used(u, "storage.objects.get", "projects/_/buckets/a", WEEK).basis == "permission"
    unused = was_used(u, "storage.objects.delete", "projects/_/buckets/a", WEEK)
    assert (unused.used, unused.basis) == (False, "permission")
    # Another bucket: no insight covers it, only the account's authentication speaks.
    elsewhere = was_used(u, "storage.objects.delete", "projects/_/buckets/b", WEEK)
    assert (elsewhere.used, elsewhere.basis) == (True, "identity")


def test_unknown_last_use_is_never_unused() -> None:
    u = usage("gcp", window=90, known=False, unread=("Policy Analyzer refused",))
    answer = was_used(u, "pubsub.topics.publish", "projects/p/topics/t", WEEK)
    assert (answer.used, answer.basis) == (True, "none") and "Policy Analyzer refused" in answer.reason
