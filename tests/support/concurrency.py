"""Pipelines racing as separate processes against one ``workload-ids sandbox``: starting
the sandbox, and eight key-mode applies then eight rotations racing eight applies on one
workload (what the workload lock must hold)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .paths import EXAMPLES


@contextlib.contextmanager
def running_sandbox(work: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """``workload-ids sandbox`` in a subprocess: its config file and the environment."""
    config = work / "sandbox.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "workload_ids", "sandbox", "--config-out", str(config)],
                            env=env, cwd=work, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not config.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.1)
        yield config, env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


KEY_MODE = {"aws": "aws/partner-feed.yaml", "gcp": "gcp/catalog-sync.yaml",
            "azure": "azure/vendor-invoice-import.yaml"}
KEY_LIMIT = {"aws": 2, "gcp": 10, "azure": 2}
EXIT_BUSY = 4


def _key_manifest(provider: str, folder: Path) -> tuple[Path, str]:
    """The provider's key-mode example (GCP's keyless one switched to key mode)."""
    text = (EXAMPLES / KEY_MODE[provider]).read_text()
    if provider == "gcp":
        start = text.index("  credentials:")
        end = text.index("  access:")
        text = text[:start] + "  credentials:\n    mode: key\n" + text[end:]
        # Another workload than the keyless test's, which this module's sandbox still holds
        # (bound to the example's file: the same name from this file would be refused).
        text = text.replace("  name: catalog-sync", "  name: catalog-sync-key", 1)
    name = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith("  name:"))
    path = folder / f"{provider}-key.yaml"
    path.write_text(text)
    return path, name


def _cli(config: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "workload_ids", *args, "--config", str(config)],
                            env=env, cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    return [(p.wait(timeout=600), (p.stdout.read() if p.stdout else "") +
             (p.stderr.read() if p.stderr else "")) for p in procs]


def _key_state(config: Path, env: dict[str, str], manifest: Path, provider: str) -> dict[str, object]:
    """Keys in the cloud and in the store, read with the tool's own backend."""
    code = (
        "import json, sys\n"
        "from workload_ids.calls import CallSeam\n"
        "from workload_ids.config import load_config\n"
        "from workload_ids.clouds import connect\n"
        "from workload_ids.compile import secret_name\n"
        "from workload_ids.validate import validate\n"
        "config = load_config(sys.argv[1])\n"
        "seam = CallSeam(sleep=lambda s: None)\n"
        "cw = validate([sys.argv[2]], config).compiled[0]\n"
        "cloud = connect(cw.provider, config, seam)\n"
        "keys = {k.key_id: k.status for k in cloud.keys.list_keys(cloud.desired(cw))}\n"
        "stored = cloud.store_for(cw.target).describe(cw.secret_name)\n"
        "print(json.dumps({'keys': keys, 'stored': sorted(stored.issued()),\n"
        "                  'current': stored.current_key(), 'tags': sorted(stored.tags)}))\n")
    done = subprocess.run([sys.executable, "-c", code, str(config), str(manifest)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    state: dict[str, object] = json.loads(done.stdout)
    return state


@dataclass
class Race:
    """One key-mode race: the exit codes of 8 applies of a new workload, then of 8
    emergency rotations and 8 applies at once, and the keys the cloud holds after."""

    name: str
    manifest: Path
    config: Path
    joiners: list[tuple[int, str]]
    racers: list[tuple[int, str]]
    state: dict[str, object]
    seconds: float


def key_race(provider: str, base: Path, env: dict[str, str], folder: Path, *,
             lock_timeout: str | None = None, verify_interval: str = "1s") -> Race:
    config = folder / "workload-ids.yaml"
    config.write_text(base.read_text() + f"credentials:\n  verify: {{interval: {verify_interval}}}\n")
    manifest, name = _key_manifest(provider, folder)
    wait = ("--lock-timeout", lock_timeout) if lock_timeout else ()
    started = time.monotonic()
    joiners = _finish([_cli(config, env, "apply", "--auto-approve", *wait, str(manifest))
                       for _ in range(8)])
    procs = [_cli(config, env, "rotate", "--now", name, *wait, str(manifest)) for _ in range(8)]
    procs += [_cli(config, env, "apply", "--auto-approve", *wait, str(manifest)) for _ in range(8)]
    racers = _finish(procs)
    seconds = time.monotonic() - started
    return Race(name, manifest, config, joiners, racers, _key_state(config, env, manifest, provider),
                seconds)
