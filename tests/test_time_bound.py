"""Time-bound grants outside the clouds: lint points out an end within a week, and says
on Azure that the end is kept by the next apply."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.aws import workload
from support.azure import azure_workload
from support.cli import run_cli

from workload_ids.clock import format_time

NOW = datetime.now(UTC).replace(microsecond=0)
QUEUE = "arn:aws:sqs:eu-west-1:123456789012:orders"


def _entry(expires: str, approval: str = "CHG-4711") -> str:
    return (f"    - template: queue.consume\n      resources: [{QUEUE}]\n      expires: {expires}\n"
            f"      approval: {approval}\n")


def test_lint_points_out_an_end_within_a_week(manifests: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW))
    soon, later = format_time(NOW + timedelta(days=3)), format_time(NOW + timedelta(days=30))
    folder = manifests({"svc-a.yaml": workload("svc-a", access=_entry(soon) + _entry(later, "CHG-9"))})
    linted = run_cli("lint", str(folder))
    text = linted.out + linted.err
    assert re.search(r"svc-a\.yaml:\d+:\d+: .*this grant ends in 3 days \(at " + re.escape(soon)
                     + r", approval CHG-4711\)", text), text
    assert later not in text


def test_lint_says_azure_keeps_the_end_by_the_next_apply(manifests: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW))
    later = format_time(NOW + timedelta(days=30))
    text = azure_workload(name="svc-a")
    first = text.index("      resources:")
    end = text.index("\n", first) + 1
    folder = manifests({"svc-a.yaml": text[:end] + f"      expires: {later}\n      approval: CHG-7\n"
                        + text[end:]})
    linted = run_cli("lint", str(folder))
    assert "Azure role assignments carry no time condition" in linted.out + linted.err, linted.out
    assert f"the first apply after {later} removes it" in linted.out + linted.err


def test_explain_says_who_ends_the_grant(manifests: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW))
    later = format_time(NOW + timedelta(days=30))
    folder = manifests({"svc-a.yaml": workload("svc-a", access=_entry(later))})
    explained = run_cli("explain", str(folder))
    assert f"time-bound until {later} (approval CHG-4711): IAM ends it (DateLessThan aws:CurrentTime)" \
        in explained.out, explained.out + explained.err
    assert '"aws:CurrentTime":' in run_cli("explain", str(folder), "--output", "json").out
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW + timedelta(days=31)))
    explained = run_cli("explain", str(folder))
    assert f"expired at {later} (approval CHG-4711): grants nothing" in explained.out


def test_validate_says_gcp_resource_bindings_end_by_the_next_apply(
        manifests: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from support.gcp import gcp_workload
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW))
    later = format_time(NOW + timedelta(days=30))
    folder = manifests({"w.yaml": gcp_workload(access=(
        "    - template: topic.publish\n      resources: [projects/acme-prod/topics/launch]\n"
        f"      expires: {later}\n      approval: CHG-7\n"
        "    - template: object-storage.read\n      resources: [projects/_/buckets/launch]\n"
        f"      expires: {later}\n      approval: CHG-7\n"))})
    checked = run_cli("validate", str(folder))
    text = checked.out + checked.err
    assert checked.code == 0, text
    found = re.findall(r"w\.yaml:(\d+):\d+: .*where workload-ids writes no time condition", text)
    assert len(found) == 1, text  # the topic's binding only; the bucket's is conditional
