"""Usage errors exit 1 with a suggestion: 2 is "changes pending" to a pipeline that runs
``plan --detailed-exitcode``, so a mistyped flag must never read as drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import run_cli


@pytest.mark.parametrize(("args", "said"), [
    (("plan", "x.yaml", "--detialed-exitcode"),
     "workload-ids plan: unrecognized arguments: --detialed-exitcode (did you mean --detailed-exitcode?)"),
    (("plan", "x.yaml", "--strct"), "workload-ids plan: unrecognized arguments: --strct;"),
    (("lint", "--strct", "m.yaml"), "unrecognized arguments: --strct (did you mean --strict?)"),
    (("audit", "verify", "--expect-hed", "abc"),
     "workload-ids audit verify: unrecognized arguments: --expect-hed (did you mean --expect-head?) abc"),
    (("aply", "m.yaml"), "invalid choice: 'aply'"),
    (("plan",), "the following arguments are required: PATH"),
    (("plan", "--output", "yaml", "m.yaml"), "argument --output: invalid choice: 'yaml'"),
])
def test_a_usage_error_exits_1_and_says_what_to_do(args: tuple[str, ...], said: str) -> None:
    result = run_cli(*args)
    assert result.code == 1, (result.code, result.err)
    assert said in result.err
    assert result.err.startswith("usage: workload-ids")
    assert result.err.rstrip().endswith("lists what it takes")
    assert result.out == ""


def test_a_mistyped_verb_gets_its_nearest_name() -> None:
    result = run_cli("aply", "m.yaml")
    assert "did you mean 'apply'?" in result.err
    assert "`workload-ids --help` lists what it takes" in result.err


def test_the_verbs_help_is_named_for_a_verbs_flag(tmp_path: Path) -> None:
    result = run_cli("cleanup", "--max-action", "3")  # argparse takes the unique prefix
    assert "unrecognized" not in result.err
    result = run_cli("cleanup", "--apply-now")
    assert result.code == 1
    assert "(did you mean --apply?)" in result.err
    assert "`workload-ids cleanup --help` lists what it takes" in result.err


def test_changes_pending_still_means_2_only_for_plan_results() -> None:
    """The epilog every pipeline author reads keeps 2 for a plan with changes."""
    result = run_cli("--help")
    assert result.code == 0
    assert "2 changes pending (plan --detailed-exitcode)" in " ".join(result.out.split())


def test_a_reader_that_goes_away_is_no_crash() -> None:
    """`workload-ids templates | head -1`: the pipe closes early; no traceback, no "internal error"."""
    import subprocess
    import sys
    done = subprocess.run(f"{sys.executable} -m workload_ids templates | head -1", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr


def test_the_collector_is_frozen_only_when_the_process_ends_with_the_command(tmp_path: Path) -> None:
    """main() from the process's own command line freezes the collector as it returns
    (shutdown then skips walking every object left); main(argv) from a program does not."""
    import gc
    import subprocess
    import sys

    from workload_ids.cli import main
    missing = str(tmp_path / "nothing.yaml")
    before = gc.get_freeze_count()
    main(["validate", missing])
    assert gc.get_freeze_count() == before
    script = ("import gc, sys; from workload_ids.cli import main; "
              f"sys.argv = ['workload-ids', 'validate', {missing!r}]; "
              "main(); print(gc.get_freeze_count() > 0)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, check=False)
    assert done.stdout.strip().splitlines()[-1] == "True", done.stderr
