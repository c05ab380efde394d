"""The emulators' IAM condition evaluator: the forms workload-ids writes, evaluated
exactly; anything else grants nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workload_ids.providers.gcp.render import condition_for_text, until_condition
from workload_ids.sandbox.gcp.conditions import evaluate

END = "2026-12-31T18:00:00Z"
BEFORE = datetime(2026, 12, 31, 17, 59, 59, tzinfo=UTC)
AT = datetime(2026, 12, 31, 18, 0, 0, tzinfo=UTC)
BUCKET = "projects/_/buckets/b"


def test_the_forms_we_write() -> None:
    inside = condition_for_text("gcs-bucket", BUCKET)
    bound = f"({inside}) && {until_condition(END)}"
    assert evaluate(bound, resource=f"{BUCKET}/objects/x", now=BEFORE)
    assert evaluate(bound, resource=BUCKET, now=BEFORE)
    assert not evaluate(bound, resource=f"{BUCKET}/objects/x", now=AT)  # the end is exclusive
    assert not evaluate(bound, resource="projects/_/buckets/bb", now=BEFORE)
    assert evaluate(until_condition(END), resource="anything", now=BEFORE)
    assert not evaluate(until_condition(END), resource="anything", now=AT)
    two = f'resource.name == "a" || resource.name == "{BUCKET}"'
    assert evaluate(two, resource=BUCKET, now=AT)


@pytest.mark.parametrize("expression", [
    'request.time < timestamp("2026-12-31T18:00:00")',  # no zone
    'request.time < timestamp("2026-12-31T19:00:00+01:00")',  # we write UTC only
    'request.time <= timestamp("2026-12-31T18:00:00Z")',
    'request.time > timestamp("2020-01-01T00:00:00Z")',
    'true',
    'resource.name.endsWith("b")',
    'resource.name == "projects/_/buckets/b" ||',
    '(resource.name == "projects/_/buckets/b"',
    'resource.name == "projects/_/buckets/b" || request.time < duration("1h")',
    '!(request.time < timestamp("2020-01-01T00:00:00Z"))',
    'resource.type == "storage.googleapis.com/Bucket"',
    '',
])
def test_anything_else_grants_nothing(expression: str) -> None:
    assert not evaluate(expression, resource=BUCKET, now=BEFORE)
