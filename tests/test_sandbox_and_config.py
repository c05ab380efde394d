"""Config files layer (``--config A --config B``), and the sandbox keeps its ports and CA
bundle across restarts when given ``--port``, so a config written for it stays valid."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import run_cli

from workload_ids.config import load_config
from workload_ids.errors import InputErrors

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_config_files_layer_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "generated").mkdir()
    (tmp_path / "mine").mkdir()
    base = tmp_path / "generated" / "sandbox.yaml"
    base.write_text("aws:\n  namePrefix: sbx\n  rolePath: /sandbox/\naudit:\n  path: audit.jsonl\n"
                    "trust:\n  allowedGithubOwners: [acme]\n")
    over = tmp_path / "mine" / "owners.yaml"
    over.write_text("aws:\n  rolePath: /teams/\nowners:\n  source: file\n  path: people.yaml\n"
                    "trust:\n  allowedGithubOwners: [acme, initech]\n")
    config = load_config([base, over])
    assert config.aws.namePrefix == "sbx"          # only the first file says it
    assert config.aws.rolePath == "/teams/"         # the later file wins
    assert config.trust.allowedGithubOwners == ["acme", "initech"]  # lists are replaced whole
    # Each relative path keeps meaning "from the folder of the file that says it".
    assert config.audit_path() == tmp_path / "generated" / "audit.jsonl"
    assert config.data.owners is not None
    assert Path(config.data.owners.path or "") == tmp_path / "mine" / "people.yaml"
    where = config.position("aws.rolePath")
    assert where is not None and Path(where.path) == over and where.line == 2


def test_a_bad_layer_is_reported_at_its_own_file_and_line(tmp_path: Path) -> None:
    base = tmp_path / "a.yaml"
    base.write_text("aws:\n  namePrefix: sbx\n")
    over = tmp_path / "b.yaml"
    over.write_text("aws:\n  rolePath: /teams/\n  nameprefix: x\n")
    with pytest.raises(InputErrors) as caught:
        load_config([base, over])
    [problem] = caught.value.items
    assert problem.position is not None and Path(problem.position.path) == over
    assert problem.position.line == 3 and "nameprefix" in problem.message


def test_the_cli_layers_repeated_config_flags(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text("trust:\n  allowedGithubOwners: [nobody]\n")
    second = EXAMPLES / "workload-ids.yaml"
    manifest = str(EXAMPLES / "aws" / "payments-api.yaml")
    alone = run_cli("validate", "--config", str(first), manifest)
    assert alone.code == 3  # the first file's trust roots do not list the example's owner
    assert "not in the config's trust.allowedGithubOwners (nobody)" in alone.err
    layered = run_cli("validate", "--config", str(first), "--config", str(second), manifest)
    assert layered.code == 0, layered.err


def _free_base(span: int = 10) -> int:
    """A port from which ``span`` consecutive ports are free on 127.0.0.1 now."""
    for base in range(23000 + (os.getpid() % 200) * 50, 60000, 50):
        sockets = []
        try:
            for offset in range(span):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free port range")


def _start(base: int, config: Path, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "workload_ids", "sandbox", "--port", str(base),
                             "--config-out", str(config)], env=env, cwd=cwd, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not config.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "sandbox did not write its config"
        time.sleep(0.1)
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    proc.wait(timeout=30)
    return proc.stderr.read() if proc.stderr else ""


def test_the_sandbox_keeps_its_ports_and_logs_no_requests(tmp_path: Path) -> None:
    base = _free_base()
    config = tmp_path / "sandbox.yaml"
    kept = tmp_path / "kept.yaml"
    proc = _start(base, config, tmp_path)
    try:
        first = config.read_text()
        kept.write_text(first)  # a copy the user keeps, as with their own layered config
    finally:
        printed = _stop(proc)
    assert f"http://127.0.0.1:{base}" in first
    assert f"127.0.0.1:{base + 1}" in first and f"https://127.0.0.1:{base + 6}" in first
    proc = _start(base, config, tmp_path)
    try:
        assert config.read_text() == first  # same ports, same CA bundle path
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        for manifest in (EXAMPLES / "aws" / "payments-api.yaml",
                         EXAMPLES / "azure" / "order-reconciliation.yaml"):
            applied = subprocess.run([sys.executable, "-m", "workload_ids", "apply", "--auto-approve",
                                      "--config", str(kept), str(manifest)], env=env, cwd=tmp_path,
                                     capture_output=True, text=True, timeout=180)
            assert applied.returncode == 0, applied.stderr
    finally:
        printed += _stop(proc)
    assert "Local AWS (moto) listening on" in printed
    # moto's werkzeug logs every request unless asked (-v): none of them reached the terminal.
    assert "HTTP/1.1" not in printed, printed


def test_a_later_layer_cannot_send_credentials_elsewhere(tmp_path: Path) -> None:
    """Each layer is a trust root checked as one config is: a second file that points the
    AWS endpoint off this machine is refused, positioned in that file."""
    base = tmp_path / "base.yaml"
    base.write_text("aws:\n  endpointUrl: http://127.0.0.1:5000\n  sandboxCredentials: true\n")
    over = tmp_path / "over.yaml"
    over.write_text("aws:\n  endpointUrl: https://collector.example.com\n")
    with pytest.raises(InputErrors) as caught:
        load_config([base, over])
    assert any(d.position is not None and Path(d.position.path) == over for d in caught.value.items)
