"""The audit log: every change is one hash-chained record; verify names the first bad line."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from support.aws import KEY_MODE, PAYMENTS
from support.cli import run_cli
from support.trust import TEST_TRUST

from workload_ids.audit import GENESIS, JsonlAuditLog, verify


@pytest.fixture
def audited(tmp_path):
    config = tmp_path / "wid.yaml"
    config.write_text("audit:\n  path: logs/audit.jsonl\ncredentials:\n  verify: {interval: 0s}\n"
                      + TEST_TRUST)
    return config, tmp_path / "logs" / "audit.jsonl"


def test_apply_and_rotate_write_chained_records_without_secrets(secret_hygiene, aws, manifests,
                                                                 audited, monkeypatch):
    config, log = audited
    folder = manifests({"p.yaml": PAYMENTS, "v.yaml": KEY_MODE})
    assert run_cli("apply", "--auto-approve", "--config", str(config), str(folder)).code == 0
    later = datetime.now(UTC) + timedelta(days=31)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", later.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert run_cli("rotate", "--config", str(config), str(folder)).code == 0
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["prev"] == GENESIS
    assert all(r["prev"] == p["hash"] for p, r in itertools.pairwise(records))
    by_action = [(r["command"], r["workload"], r["action"]) for r in records]
    assert ("apply", "prod/payments-api", "create") in by_action
    assert ("apply", "prod/vendor-sync", "create") in by_action
    assert ("apply", "prod/vendor-sync", "key-issued") in by_action
    assert ("rotate", "prod/vendor-sync", "key-issued") in by_action
    assert ("rotate", "prod/vendor-sync", "key-verified") in by_action
    assert all(r["result"] == "ok" and r["actor"] for r in records)
    assert records[-1]["time"].startswith(later.strftime("%Y-%m-%dT%H:%M"))
    secret_hygiene.append(log.read_text())
    result = run_cli("audit", "verify", "--config", str(config))
    assert result.code == 0 and f"OK: {len(records)} record(s)" in result.out
    assert records[-1]["hash"] in result.out


def _log(tmp_path, n=5):
    log = JsonlAuditLog(tmp_path / "a.jsonl")
    for i in range(n):
        log.append({"time": f"2026-01-0{i + 1}T00:00:00Z", "action": "create", "workload": f"w{i}"})
    return log.path


@pytest.mark.parametrize(("tamper", "bad_line", "problem"), [
    ("edit", 3, "record edited"),
    ("remove", 3, "chain broken"),
    ("reorder", 2, "chain broken"),
    ("insert", 3, "chain broken"),
    ("garbage", 4, "not a JSON record"),
])
def test_verify_catches_each_kind_of_tampering(tmp_path, tamper, bad_line, problem):
    path = _log(tmp_path)
    lines = path.read_text().splitlines()
    if tamper == "edit":
        record = json.loads(lines[2])
        record["workload"] = "someone-else"
        lines[2] = json.dumps(record, sort_keys=True)
    elif tamper == "remove":
        del lines[2]
    elif tamper == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper == "insert":
        forged = json.loads(lines[1])
        forged["workload"] = "forged"
        lines.insert(2, json.dumps(forged, sort_keys=True))
    elif tamper == "garbage":
        lines[3] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    result = verify(path)
    assert not result.ok and result.bad_line == bad_line and problem in (result.problem or "")
    cli = run_cli("audit", "verify", "--file", str(path))
    assert cli.code == 1
    assert f"{path}:{bad_line}: " in cli.err and problem in cli.err


def test_removed_tail_is_caught_with_the_expected_head(tmp_path):
    path = _log(tmp_path)
    head = verify(path).head
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    assert verify(path).ok  # a shorter chain is still a chain
    result = run_cli("audit", "verify", "--file", str(path), "--expect-head", head)
    assert result.code == 1 and "records were removed from the end" in result.err


def test_appends_continue_the_chain_across_runs(tmp_path):
    path = _log(tmp_path, 2)
    JsonlAuditLog(path).append({"action": "later"})
    assert verify(path).ok and verify(path).records == 3


def test_no_audit_log_configured(tmp_path):
    result = run_cli("audit", "verify")
    assert result.code == 1 and "no audit log configured" in result.err
