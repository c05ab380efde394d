"""Running ``workload-ids`` in this process and capturing what it prints and returns."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from workload_ids.cli import main


@dataclass
class CliResult:
    """What one in-process run returned: the exit code and what it printed."""

    code: int
    out: str
    err: str


def run_cli(*args: str) -> CliResult:
    """Run ``workload-ids ARGS`` in this process; never lets SystemExit escape. A test that
    moves the clock (``WORKLOAD_IDS_CLOCK``) runs a drill against moto or the emulators, so
    ``--drill`` is added for it; tests/security/ uses :func:`run_cli_exact` to prove the
    refusal without it."""
    return run_cli_exact(*_as_drill(args))


def _as_drill(args: tuple[str, ...]) -> tuple[str, ...]:
    if not os.environ.get("WORKLOAD_IDS_CLOCK") or not args or args[0].startswith("-"):
        return args
    at = 2 if args[0] == "audit" and len(args) > 1 else 1  # after the verb: a verb's option
    return (*args[:at], "--drill", *args[at:])


def run_cli_exact(*args: str) -> CliResult:
    """Run ``workload-ids ARGS`` in this process exactly as given."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors and --version
            code = int(exc.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


CAPTURED: list[str] = []
_original_run_cli = run_cli


def run_cli(*args: str) -> CliResult:  # type: ignore[no-redef]
    """run_cli that also keeps what was printed, for the secret-hygiene check."""
    result = _original_run_cli(*args)
    CAPTURED.extend([result.out, result.err])
    return result
