"""Attacks on time-bound grants (issue 18, item 5): an end beyond the platform team's cap
(guardrails.maxGrantDuration), a manifest trying to lift the cap, an approval that would
forge output lines, and time-zone tricks (no zone, a far year, an offset that reads near
but lies far). Each is refused with a positioned message and nothing is created."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.aws import workload
from support.cli import run_cli
from support.trust import TEST_TRUST

from workload_ids.clock import format_time

NOW = datetime.now(UTC).replace(microsecond=0)
QUEUE = "arn:aws:sqs:eu-west-1:123456789012:orders"


def _entry(expires: str, approval: str | None = "CHG-4711", extra: str = "") -> str:
    text = f"    - template: queue.consume\n      resources: [{QUEUE}]\n      expires: {expires}\n"
    if approval is not None:
        text += f"      approval: {approval}\n"
    return text + extra


def _run(manifests: Any, access: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, Path]:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW))
    folder = manifests({"svc-a.yaml": workload("svc-a", access=access)})
    return run_cli("validate", str(folder)), run_cli("apply", "--auto-approve", str(folder)), folder


def _nothing_created(aws: Any) -> None:
    assert aws.list_roles(PathPrefix="/workload-ids/")["Roles"] == []


def test_an_end_beyond_the_cap_is_a_guardrail_refusal(aws: Any, manifests: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    far = format_time(NOW + timedelta(days=400))
    checked, applied, _ = _run(manifests, _entry(far), monkeypatch)
    for result in (checked, applied):
        assert result.code == 3, result.out + result.err
        text = result.out + result.err
        assert re.search(r"svc-a\.yaml:\d+:\d+: .*expires " + re.escape(far) + " is 400 days from now; "
                         r"guardrails\.maxGrantDuration \(the default\) allows 90d", text), text
    _nothing_created(aws)


def test_the_cap_is_the_config_s_and_only_the_config_s(aws: Any, manifests: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    Path("workload-ids.yaml").write_text(Path("workload-ids.yaml").read_text()
                                         + "guardrails:\n  maxGrantDuration: 7d\n")
    eight = format_time(NOW + timedelta(days=8))
    _, applied, folder = _run(manifests, _entry(eight), monkeypatch)
    assert applied.code == 3 and "workload-ids.yaml:5:21) allows 7d" in applied.err, applied.err[-400:]
    # A config beside the manifests is not the run's config: it lifts nothing.
    (folder / "workload-ids.yaml").write_text(TEST_TRUST + "guardrails: {maxGrantDuration: 9999w}\n")
    assert run_cli("apply", "--auto-approve", str(folder / "svc-a.yaml")).code == 3
    # Nor does a cap written in the manifest: it is an unknown field there.
    lifted = workload("svc-a", access=_entry(eight, extra="      maxGrantDuration: 9999w\n"))
    (folder / "svc-a.yaml").write_text(lifted)
    refused = run_cli("apply", "--auto-approve", str(folder / "svc-a.yaml"))
    assert refused.code == 1
    assert re.search(r"svc-a\.yaml:\d+:\d+: .*unknown field 'maxGrantDuration'", refused.out + refused.err)
    _nothing_created(aws)


@pytest.mark.parametrize("approval", [
    '"CHG-1\\n::add-mask::AKIA"',  # a forged CI log line
    '"CHG-1\\u001b[2J"',  # a terminal escape that would clear the screen
    '"CHG-1\\u2028injected"',  # a Unicode line separator
])
def test_an_approval_with_control_characters_is_refused(aws: Any, manifests: Any, approval: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    checked, applied, _ = _run(manifests, _entry(format_time(NOW + timedelta(days=3)), approval),
                               monkeypatch)
    for result in (checked, applied):
        assert result.code == 1, result.out + result.err
        text = result.out + result.err
        assert re.search(r"svc-a\.yaml:\d+:\d+: .*approval holds .*a control or line-break", text), text
        assert "\x1b" not in text and "\n::add-mask::" not in text and "\u2028" not in text
    _nothing_created(aws)


@pytest.mark.parametrize(("expires", "code", "said"), [
    ("2026-12-31T18:00:00", 1, "has no time zone"),  # a string without a zone
    ("2026-12-31 18:00:00", 1, "has no time zone"),  # YAML's own timestamp, naive
    ("2026-12-31", 1, "is a date, not an instant"),  # YAML's date
    ("9999-12-31T23:59:59Z", 3, "guardrails.maxGrantDuration"),  # a far year: the cap
    ("9999-12-31T23:59:59-01:00", 1, "beyond the year 9999 in UTC"),  # overflows UTC
    ("'2026-12-31T18:00:00 Z'", 1, "is not an RFC 3339 instant"),
    ("'１２０２６-12-31T18:00:00Z'", 1, "is not an RFC 3339 instant"),  # non-ASCII digits
])
def test_time_zone_tricks_are_refused(aws: Any, manifests: Any, expires: str, code: int, said: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    checked, applied, _ = _run(manifests, _entry(expires), monkeypatch)
    for result in (checked, applied):
        assert result.code == code, result.out + result.err
        assert re.search(r"svc-a\.yaml:\d+:\d+: .*" + re.escape(said), result.out + result.err), result.out
        assert "Traceback" not in result.err
    _nothing_created(aws)


def test_an_offset_that_reads_near_but_lies_far_is_judged_in_utc(aws: Any, manifests: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The wall clock at -12:00 reads 89 days and 13 hours ahead; in UTC it is 90 days and
    # 1 hour: beyond the default cap.
    beyond = NOW + timedelta(days=90, hours=1)
    local = (beyond - timedelta(hours=12)).replace(tzinfo=None).isoformat() + "-12:00"
    _, applied, _ = _run(manifests, _entry(local), monkeypatch)
    assert applied.code == 3, applied.out + applied.err
    _nothing_created(aws)


def test_a_time_bound_entry_needs_its_approval_and_an_approval_its_end(
        aws: Any, manifests: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, applied, folder = _run(manifests, _entry(format_time(NOW + timedelta(days=3)), None), monkeypatch)
    assert applied.code == 1
    assert re.search(r"svc-a\.yaml:\d+:\d+: a time-bound grant needs 'approval'", applied.out + applied.err)
    alone = f"    - template: queue.consume\n      resources: [{QUEUE}]\n      approval: CHG-4711\n"
    (folder / "svc-a.yaml").write_text(workload("svc-a", access=alone))
    refused = run_cli("apply", "--auto-approve", str(folder))
    assert refused.code == 1
    assert re.search(r"svc-a\.yaml:\d+:\d+: 'approval' goes with 'expires'", refused.out + refused.err)
    _nothing_created(aws)


def test_an_entry_expired_before_its_first_apply_grants_nothing(aws: Any, manifests: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    past = format_time(NOW - timedelta(minutes=1))
    checked, applied, _ = _run(manifests, _entry(past) + (
        "    - template: object-storage.read\n      resources: [arn:aws:s3:::catalog]\n"), monkeypatch)
    assert checked.code == 0 and f"expired at {past}" in checked.out + checked.err
    assert applied.code == 0, applied.out + applied.err
    policy = aws.get_role_policy(RoleName="wid_prod_svc-a", PolicyName="workload-ids")["PolicyDocument"]
    assert "sqs:" not in str(policy) and "catalog" in str(policy)

