"""Racing pipelines on one key-mode workload, per provider, against ``workload-ids
sandbox`` (separate processes): 8 applies of a new workload at once, then 8 emergency
rotations (``rotate --now``) racing 8 more applies. Run with the default lock wait (every
run waits its turn) and with ``--lock-timeout 0s`` (a run that finds the lock held exits
4). Prints the exit codes and the keys left.

    .venv/bin/python benchmarks/concurrency.py [--provider aws,gcp,azure]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import _common  # noqa: F401  (puts the repository on the path, for tests.support)

from tests.support.concurrency import KEY_LIMIT, KEY_MODE, key_race, running_sandbox


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--provider", default=",".join(sorted(KEY_MODE)))
    args = parser.parse_args()
    bad = 0
    print("| provider | lock wait | joiners' exits | racers' exits | keys left (limit) | "
          "only in cloud | seconds |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="wid-race-") as tmp, running_sandbox(Path(tmp)) as (base, env):
        for provider in args.provider.split(","):
            for wait in (None, "0s"):
                folder = Path(tmp) / f"{provider}-{wait or 'default'}"
                folder.mkdir()
                race = key_race(provider, base, env, folder, lock_timeout=wait)
                keys = race.state["keys"]
                assert isinstance(keys, dict)
                stored = race.state["stored"]
                assert isinstance(stored, list)
                unstored = sorted(set(keys) - set(stored))
                joiners = Counter(code for code, _ in race.joiners)
                racers = Counter(code for code, _ in race.racers)
                ok = set(joiners) | set(racers) <= {0, 4} and len(keys) <= KEY_LIMIT[provider] \
                    and not unstored and keys.get(race.state["current"]) == "active"
                bad += not ok
                print(f"| {provider} | {wait or 'default (3m)'} | {_codes(joiners)} | {_codes(racers)} | "
                      f"{len(keys)} ({KEY_LIMIT[provider]}) | {len(unstored)} | {race.seconds:.0f} |")
    print(f"races with a wrong end state or exit code: {bad}")
    return 1 if bad else 0


def _codes(counts: Counter[int]) -> str:
    return ", ".join(f"{n}× exit {code}" for code, n in sorted(counts.items()))


if __name__ == "__main__":
    raise SystemExit(main())
