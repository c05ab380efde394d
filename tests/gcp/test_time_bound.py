"""A time-bound grant on GCP ends by GCP's own condition: the binding carries
``request.time < timestamp(...)`` and the emulator's access check (which evaluates that
condition by the emulator's clock) stops granting once the clock passes it, before any
run of workload-ids removes the binding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.gcp import gcp_workload
from support.trust import TEST_TRUST

from workload_ids.clock import format_time
from workload_ids.providers.gcp.render import account_id, service_account_email
from workload_ids.sandbox.common.clock import ManualClock

NOW = datetime.now(UTC).replace(microsecond=0)
ENDS = NOW + timedelta(days=3)
BOUND = "projects/_/buckets/launch-assets"
KEPT = "projects/_/buckets/catalog"
MEMBER = f"serviceAccount:{service_account_email(account_id('wid', 'prod', 'catalog-sync'), 'acme-prod')}"


@pytest.fixture
def gcp(manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, ManualClock, Path]]:
    from workload_ids.sandbox.gcp.local import start_local_gcp
    clock = ManualClock(NOW)
    local = start_local_gcp(clock=clock)
    Path("workload-ids.yaml").write_text(local.config_block() + TEST_TRUST)
    folder = manifests({"w.yaml": gcp_workload(access=(
        f"    - template: object-storage.read\n      resources: [{KEPT}]\n"
        f"    - template: object-storage.read\n      resources: [{BOUND}]\n"
        f"      expires: {format_time(ENDS)}\n      approval: CHG-4711\n"))})
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(NOW))
    try:
        yield local, clock, folder
    finally:
        local.stop()


def test_gcp_stops_honouring_the_binding_at_its_end(gcp: tuple[Any, ManualClock, Path]) -> None:
    local, clock, folder = gcp
    rm = local.emulators[1]
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    assert rm.policy("acme-prod").version == 3  # conditional bindings need policy version 3

    def reads(bucket: str) -> bool:
        return bool(rm.permitted("acme-prod", MEMBER, "storage.objects.get", f"{bucket}/objects/a.txt"))

    assert reads(BOUND) and reads(KEPT)
    assert not reads("projects/_/buckets/elsewhere")
    clock.now = (ENDS - timedelta(seconds=1)).timestamp()
    assert reads(BOUND)
    clock.now = ENDS.timestamp()
    # GCP's own condition, not a run of workload-ids: the binding is still there.
    held = [b for b in rm.policy("acme-prod").bindings if MEMBER in b.members]
    assert any("request.time < timestamp" in b.condition.expression for b in held)
    assert not reads(BOUND)
    assert reads(KEPT)  # an entry without an end keeps working


def test_after_the_end_apply_removes_the_binding(gcp: tuple[Any, ManualClock, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    local, clock, folder = gcp
    rm = local.emulators[1]
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    clock.now = (ENDS + timedelta(hours=1)).timestamp()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(ENDS + timedelta(hours=1)))
    plan = run_cli("plan", str(folder))
    assert f"expired at {format_time(ENDS)}, removed by this apply" in plan.out
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    held = [b for b in rm.policy("acme-prod").bindings if MEMBER in b.members]
    assert held and not any("request.time" in b.condition.expression for b in held)
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0
