"""The CLI in a real terminal (tmux: a pseudo-terminal, keys sent, the screen read back):
apply's confirmation prompt, the progress bar and colour on a TTY, and none of them when
the same command writes to a pipe."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.aws import workload

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(
    TMUX is None and os.environ.get("WORKLOAD_IDS_REQUIRE_TMUX") != "1",
    reason="tmux is not installed (.ci/run installs it and requires this test)")


class Terminal:
    """One tmux session on a socket of its own, 120x40."""

    def __init__(self, tmp: Path) -> None:
        self.socket = str(tmp / "tmux.sock")

    def tmux(self, *args: str) -> str:
        done = subprocess.run([TMUX or "tmux", "-S", self.socket, *args], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run(self, command: str) -> None:
        self.tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "t", command)

    def screen(self, *, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", *(["-e"] if escapes else []),
                         "-t", "t")

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            assert time.monotonic() < deadline, f"{text!r} never appeared; the screen:\n{screen}"
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run([TMUX or "tmux", "-S", self.socket, "kill-server"], capture_output=True,
                       timeout=30)


@pytest.fixture
def terminal(tmp_path: Path) -> Any:
    term = Terminal(tmp_path)
    yield term
    term.close()


def _environment() -> dict[str, str]:
    keep = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
            "PATH", "HOME", "PYTHONPATH")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(TERM="xterm-256color", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    return env


def _command(args: list[str]) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in _environment().items())
    cli = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "workload_ids", *args])
    # The exit code on the screen, then a pause so the pane can be read before it closes.
    return f"env -i {env} {cli}; echo EXIT=$?; sleep 60"


def test_apply_asks_on_a_terminal_and_shows_progress_and_colour(aws_server: Any, manifests: Any,
                                                              terminal: Terminal) -> None:
    folder = manifests({"a.yaml": workload("svc-a"), "b.yaml": workload("svc-b")})
    terminal.run(_command(["apply", str(folder)]))
    screen = terminal.wait_for("Only 'yes' is accepted")
    assert "+ prod/svc-a (aws 123456789012): create role wid_prod_svc-a" in screen
    coloured = terminal.screen(escapes=True)
    assert "\x1b[32m+ prod/svc-a" in coloured  # a create is green on a terminal
    assert "reading [##############################] 2/2" in screen  # a bar, not "reading: 2/2"
    assert not [r for r in aws_server.list_roles()["Roles"] if r["RoleName"].startswith("wid_")]
    terminal.tmux("send-keys", "-t", "t", "yes", "Enter")
    screen = terminal.wait_for("EXIT=")
    assert "EXIT=0" in screen, screen
    assert "applying [##############################] 2/2" in screen
    assert "Apply complete: 2 workload(s) changed" in screen
    assert {r["RoleName"] for r in aws_server.list_roles()["Roles"]} >= {"wid_prod_svc-a", "wid_prod_svc-b"}


def test_anything_but_yes_changes_nothing(aws_server: Any, manifests: Any, terminal: Terminal) -> None:
    folder = manifests({"a.yaml": workload("svc-a")})
    terminal.run(_command(["apply", str(folder)]))
    terminal.wait_for("Only 'yes' is accepted")
    terminal.tmux("send-keys", "-t", "t", "y", "Enter")
    screen = terminal.wait_for("EXIT=")
    assert "Apply cancelled; nothing was changed." in screen and "EXIT=1" in screen
    assert not [r for r in aws_server.list_roles()["Roles"] if r["RoleName"].startswith("wid_")]


def test_no_colour_with_no_color_set(aws_server: Any, manifests: Any, terminal: Terminal) -> None:
    folder = manifests({"a.yaml": workload("svc-a")})
    terminal.run(_command(["plan", str(folder)]).replace("env -i ", "env -i NO_COLOR=1 ", 1))
    terminal.wait_for("EXIT=")
    assert "\x1b[32m" not in terminal.screen(escapes=True)


def test_a_pipe_gets_no_prompt_no_bar_and_no_colour(aws_server: Any, manifests: Any) -> None:
    folder = manifests({"a.yaml": workload("svc-a"), "b.yaml": workload("svc-b")})
    env = {**_environment(), "TERM": "xterm-256color"}
    asked = subprocess.run([sys.executable, "-m", "workload_ids", "apply", str(folder)], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert asked.returncode == 1
    assert "standard input is not a terminal" in asked.stderr and "\x1b[" not in asked.stderr
    applied = subprocess.run([sys.executable, "-m", "workload_ids", "apply", "--auto-approve", str(folder)],
                             env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr
    assert "+ prod/svc-a" in applied.stdout
    assert "\x1b[" not in applied.stdout + applied.stderr
    assert "[####" not in applied.stderr and "applying:" not in applied.stderr  # small runs: silent
