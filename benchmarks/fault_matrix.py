"""The fault matrix of issue 7, every point: each operation (apply creating and moving,
rotate, cleanup quarantining and deleting, restore) on each provider (AWS on moto, GCP
and Azure on our emulators) is run cleanly to count its cloud calls N, then for every k in
1..N with an SDK exception (not retried) at call k and, separately, a hard stop there
(``Killed``: no handler in the tool runs after it), each on a fresh cloud, followed by a
rerun (``recover`` then ``rotate`` for rotation). Every time the end state must equal the
clean run's, no key may exist only in the cloud, the decoy without our marker must be
untouched and the audit log must verify. See tests/support/faults.py.

    .venv/bin/python benchmarks/fault_matrix.py [--provider aws,gcp,azure] [--operation ...]

Prints ``fault points: P, divergences: D`` and exits 1 when D > 0. Takes a few minutes.
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (puts the repository on the path, for tests.support)

from tests.support.faults import OPERATIONS, PROVIDERS, run_matrix, run_storm


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--provider", default=",".join(PROVIDERS))
    parser.add_argument("--operation", default=",".join(OPERATIONS))
    parser.add_argument("--storm", action="store_true",
                        help="instead: each operation under 30%% throttling and 5%% 5xx (seeded)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    # The matrix moves the clock (WORKLOAD_IDS_CLOCK) past grace periods and leases; it is
    # honoured only in a drill (pytest's conftest turns it on; here it must be said).
    from workload_ids import clock
    clock.enable_override("drill")
    if args.storm:
        return storm(args.provider.split(","), args.operation.split(","), args.seed)
    rows = []
    started = time.monotonic()
    for provider in args.provider.split(","):
        for operation in args.operation.split(","):
            took = time.monotonic()
            outcome = run_matrix(provider, operation)
            rows.append((provider, operation, outcome.calls, outcome.points, len(outcome.divergences),
                         time.monotonic() - took))
            for divergence in outcome.divergences:
                print(f"  DIVERGENCE {provider} {operation}: {divergence}", flush=True)
            print(f"{provider:<6} {operation:<19} calls {outcome.calls:>3}  "
                  f"fault points {outcome.points:>3}  divergences {len(outcome.divergences)}  "
                  f"({rows[-1][5]:.0f} s)", flush=True)
    points = sum(r[3] for r in rows)
    divergences = sum(r[4] for r in rows)
    print()
    print("| provider | operation | calls (clean run) | fault points | divergences |")
    print("|---|---|---:|---:|---:|")
    for provider, operation, calls, p, d, _ in rows:
        print(f"| {provider} | {operation} | {calls} | {p} | {d} |")
    print()
    print(f"fault points: {points}, divergences: {divergences} ({time.monotonic() - started:.0f} s)")
    return 1 if divergences else 0


def storm(providers: list[str], operations: list[str], seed: int) -> int:
    """Each operation under a seeded storm: it must end where a clean run ends."""
    print("| provider | operation | attempts | retries | throttled | 5xx | end state as clean |")
    print("|---|---|---:|---:|---:|---:|---|")
    bad = 0
    for provider in providers:
        for operation in operations:
            outcome = run_storm(provider, operation, seed=seed)
            bad += not outcome.same_end_state
            print(f"| {provider} | {operation} | {outcome.calls} | {outcome.retries} | "
                  f"{outcome.failures.get('throttle', 0)} | {outcome.failures.get('transient', 0)} | "
                  f"{'yes' if outcome.same_end_state else 'NO'} |", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
