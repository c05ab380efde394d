"""Fuzz every user input at volume: the properties of tests/test_fuzz.py on 10,000 examples.

Manifests (``validate``, ``validate --output json``, ``lint``, ``plan`` with every cloud
backend replaced by a refusal), the config file and owners files (YAML and CSV), generated
by the strategies of ``tests/support/fuzz_inputs.py`` from a fixed ``--seed``. Each example must
end in exit 0, or exit 1 (3 for guardrail refusals only) with every problem on a
``FILE:LINE:COLUMN:`` line, and never in a traceback or an "internal error"; ``plan``
must not ask for a backend for input ``validate`` refuses.

It prints, per property: examples run, how many were valid, invalid and refused by a
guardrail, failures (0 expected) and wall time; the first failures of each property are
shown, and every failing input is saved under ``benchmarks/.results/fuzz-failures/``.
Exits 1 on any failure. Failures are counted, not shrunk: rerun the property in
``tests/test_fuzz.py`` with the saved input to get a minimal one.

It takes a few minutes, so it is not in run_all.py's default list; run it by hand:

    .venv/bin/python benchmarks/fuzz.py [--examples N] [--seed N] [--only NAME ...] [--show N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _common import REPO, Report
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.support.cli import CAPTURED, run_cli
from tests.support.fuzz_inputs import (
    MANIFEST_EXAMPLES,
    Properties,
    PropertyFailed,
    configs,
    manifests,
    owners_files,
    owners_paths,
)

FAILURES = REPO / "benchmarks" / ".results" / "fuzz-failures"


def _validate(p: Properties, data: st.DataObject) -> str:
    return p.validate(data.draw(manifests()), data.draw(st.booleans()))


def _lint(p: Properties, data: st.DataObject) -> str:
    return p.lint(data.draw(manifests()))


def _plan(p: Properties, data: st.DataObject) -> str:
    return p.plan(data.draw(manifests()))


def _config(p: Properties, data: st.DataObject) -> str:
    return p.config(data.draw(configs()), data.draw(st.sampled_from(sorted(MANIFEST_EXAMPLES))))


def _owners(p: Properties, data: st.DataObject) -> str:
    case = data.draw(owners_files())
    return p.owners(case, data.draw(owners_paths(case.name)))


# name, share of the examples, property
PROPERTIES: tuple[tuple[str, int, Callable[[Properties, st.DataObject], str]], ...] = (
    ("validate", 3, _validate), ("lint", 2, _lint), ("plan", 2, _plan), ("config", 2, _config),
    ("owners", 1, _owners))


@dataclass
class Outcome:
    """What one property's run produced."""

    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_property(name: str, prop: Callable[[Properties, st.DataObject], str], props: Properties,
                 examples: int, seed: int, show: int) -> Outcome:
    outcome = Outcome()
    drawn: list[object] = []

    def record(data: st.DataObject) -> None:
        drawn.clear()
        original = data.draw

        def draw(strategy: st.SearchStrategy[object], label: object = None) -> object:
            value = original(strategy, label)
            drawn.append(value)
            return value
        data.draw = draw  # type: ignore[method-assign]
        try:
            outcome.counts[prop(props, data)] += 1
        except PropertyFailed as exc:
            outcome.counts["FAILED"] += 1
            index = len(outcome.failures)
            saved = [FAILURES / f"{name}-{index}-{i}.bin" for i, value in enumerate(drawn)
                     if hasattr(value, "data")]
            FAILURES.mkdir(parents=True, exist_ok=True)
            for path, value in zip(saved, (v for v in drawn if hasattr(v, "data")), strict=True):
                path.write_bytes(value.data)  # type: ignore[attr-defined]
            shown = f"{exc}\n  drawn: {drawn!r}"[:4000]
            outcome.failures.append(shown + f"\n  saved: {', '.join(map(str, saved))}")
            if index < show:
                print(f"\n{name}: FAILURE {index + 1}\n{outcome.failures[-1]}", flush=True)
        finally:
            CAPTURED.clear()  # conftest's run_cli keeps every output for its secret check

    test = given(st.data())(record)
    test = settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    phases=[Phase.generate], print_blob=False,
                    suppress_health_check=list(HealthCheck))(test)
    test = hypothesis_seed(seed)(test)
    start = time.perf_counter()
    test()
    outcome.seconds = time.perf_counter() - start
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="in total, split across the properties")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--only", nargs="*", choices=[p[0] for p in PROPERTIES], default=None)
    parser.add_argument("--show", type=int, default=3, help="failures printed per property")
    args = parser.parse_args()
    chosen = [p for p in PROPERTIES if not args.only or p[0] in args.only]
    weight = sum(w for _, w, _ in chosen)

    from workload_ids import clouds as clouds_module
    report = Report("fuzz")
    shutil.rmtree(FAILURES, ignore_errors=True)
    home = os.getcwd()
    total = Outcome()
    with tempfile.TemporaryDirectory(prefix="wid-fuzz-") as tmp:
        # As the tests' autouse fixture: an empty working directory with its own config.
        work = Path(tmp) / "cwd"
        work.mkdir()
        (work / "workload-ids.yaml").write_text("credentials:\n  verify: {interval: 0s}\n")
        os.chdir(work)
        props = Properties(run_cli, Path(tmp) / "fuzz")
        real = clouds_module.connect
        clouds_module.connect = props.refuse  # no example can reach a cloud
        try:
            for index, (name, share, prop) in enumerate(chosen):
                examples = max(1, args.examples * share // weight)
                print(f"{name}: {examples} examples ...", flush=True)
                outcome = run_property(name, prop, props, examples, args.seed + index, args.show)
                counts = outcome.counts
                ran = sum(counts.values())
                total.counts.update(counts)
                total.seconds += outcome.seconds
                total.failures.extend(outcome.failures)
                report.info(f"{name}: examples run", ran, "examples", key=True)
                for kind in ("valid", "invalid", "guardrail"):
                    report.info(f"{name}: {kind}", counts[kind], "examples")
                report.at_most(f"{name}: failures", counts["FAILED"], 0, "examples")
                report.info(f"{name}: wall time", outcome.seconds, "s")
        finally:
            clouds_module.connect = real
            os.chdir(home)
    ran = sum(total.counts.values())
    report.info("all: examples run", ran, "examples", key=True)
    for kind in ("valid", "invalid", "guardrail"):
        report.info(f"all: {kind}", total.counts[kind], "examples", key=kind != "guardrail")
    report.at_most("all: failures", total.counts["FAILED"], 0, "examples")
    report.info("all: wall time", total.seconds, "s", key=True)
    report.info("all: examples per second", ran / total.seconds if total.seconds else 0, "examples/s")
    report.info("longest line printed", props.longest_line, "characters")
    report.note(f"seed {args.seed}; {args.examples} examples requested. "
                "valid: exit 0; invalid: exit 1; guardrail: exit 3 (every problem a guardrail refusal).")
    if total.failures:
        report.note(f"{len(total.failures)} failing input(s) saved under {FAILURES}")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
