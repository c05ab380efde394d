"""GCP key mode through the CLI against the local GCP: a service-account key delivered
only to Secret Manager, verified against the certificate GCP publishes, rotated with
overlap and grace by moving the clock, never printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.gcp import KEY_MODE, keys
from support.trust import TEST_TRUST

from workload_ids.clock import format_time

START = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def local(manifests: Any) -> Iterator[tuple[Any, Path]]:
    from workload_ids.sandbox.gcp.local import start_local_gcp
    gcp = start_local_gcp()
    Path("workload-ids.yaml").write_text(gcp.config_block() + "credentials: {verify: {interval: 0s}}\n"
                                         + TEST_TRUST)
    folder = manifests({"vendor.yaml": KEY_MODE})
    try:
        yield gcp, folder
    finally:
        gcp.stop()


def at(monkeypatch: pytest.MonkeyPatch, days: float) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(START + timedelta(days=days)))


def test_key_issued_stored_verified_and_rotated(secret_hygiene: Any, local: tuple[Any, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    gcp, folder = local
    iam, _, sm, _ = gcp.emulators
    applied = run_cli("apply", "--auto-approve", str(folder), "--output", "json")
    assert applied.code == 0, applied.err
    [first] = keys(iam)
    assert keys(iam) == {first: False}
    client = sm.client()
    secret = "projects/acme-prod/secrets/workload-ids_prod_vendor-sync"
    stored = json.loads(client.access_secret_version(name=f"{secret}/versions/latest").payload.data)
    assert stored["private_key_id"] == first and stored["type"] == "service_account"
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0
    at(monkeypatch, 31)
    assert run_cli("rotate", str(folder)).code == 0
    second = next(k for k in keys(iam) if k != first)
    assert keys(iam) == {first: False, second: False}  # overlap: both work
    latest = json.loads(client.access_secret_version(name=f"{secret}/versions/latest").payload.data)
    assert latest["private_key_id"] == second
    at(monkeypatch, 33.5)
    assert run_cli("rotate", str(folder)).code == 0
    assert keys(iam) == {first: True, second: False}  # the old key is disabled
    at(monkeypatch, 41)
    assert run_cli("rotate", str(folder)).code == 0
    assert keys(iam) == {second: False}  # and deleted after the grace period
    emergency = run_cli("rotate", str(folder), "--now", "vendor-sync")
    assert emergency.code == 0, emergency.out
    # Emergency: a new key at once, the old one disabled (not the new one).
    assert len(keys(iam)) == 2 and keys(iam)[second] is True
