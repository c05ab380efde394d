"""Issue 7's fault matrix and throttling storm, on every provider: a stride through the
fault points of each operation (alternating an SDK exception and a hard stop), and each
operation under a seeded storm. ``benchmarks/fault_matrix.py`` runs every point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.faults import OPERATIONS, PROVIDERS, _in_fresh_dir, run_matrix, run_storm


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_failure_at_any_call_then_a_rerun_ends_where_a_clean_run_ends(provider: str,
                                                                        operation: str) -> None:
    outcome = run_matrix(provider, operation, stride=6, alternate=True)
    assert outcome.calls >= 2 and outcome.points >= 1
    assert outcome.divergences == []


@pytest.mark.parametrize("operation", ["apply-create", "rotate", "cleanup-quarantine"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_operation_succeeds_under_a_throttling_storm(provider: str, operation: str) -> None:
    storm = run_storm(provider, operation, throttle=0.30, transient=0.05, seed=7)
    assert storm.same_end_state
    # The storm really hit (the seed makes it certain) and retries stayed bounded: at most
    # the seam's 8 attempts per call, in practice about half a retry per call.
    assert storm.retries >= 1 and storm.failures.get("throttle", 0) >= 1
    assert storm.retries <= storm.calls * 0.8


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_matrix_sees_a_failure_that_is_not_repaired(provider: str) -> None:
    """Without the rerun, a kill half-way through a create leaves a state that differs
    from the clean run's: the comparison can fail."""
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    calls, clean, _, _ = _in_fresh_dir(provider, "apply-create", start, None)
    _, broken, _, _ = _in_fresh_dir(provider, "apply-create", start, (calls // 2, "kill"), rerun=False)
    assert broken != clean
