"""Azurite, Microsoft's Azure Storage emulator, for tests: its blob service on 127.0.0.1
over HTTPS (a throwaway ``trustme`` CA) with ``--oauth basic``, so the same bearer-token
clients that reach Azure reach it.

It is installed from the npm registry at the version ``tools/azurite/package-lock.json``
pins (``.ci/run`` runs ``npm ci`` there). Without it the tests that need it are skipped,
except where ``WORKLOAD_IDS_REQUIRE_AZURITE`` is set (CI sets it): there a missing Azurite
fails them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess  # nosec B404 - starts the pinned local emulator, no shell
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
BINARY = REPO / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"  # Azurite's built-in account
REQUIRE = "WORKLOAD_IDS_REQUIRE_AZURITE"


@dataclass
class Azurite:
    url: str  # https://127.0.0.1:PORT
    ca_bundle: str

    @property
    def account_url(self) -> str:
        return f"{self.url}/{ACCOUNT}"

    def container_url(self, container: str) -> str:
        return f"{self.account_url}/{container}"


def available() -> bool:
    return BINARY.is_file() and shutil.which("node") is not None


def require() -> None:
    """Skip (or, with WORKLOAD_IDS_REQUIRE_AZURITE set, fail) when Azurite is not installed."""
    from support.tools import wait_for_install
    wait_for_install()
    if available():
        return
    message = (f"Azurite is not installed at {BINARY}: run `npm ci --ignore-scripts` in tools/azurite "
               "(node 20+ and npm)")
    if os.environ.get(REQUIRE):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def running() -> Iterator[Azurite]:
    """A fresh Azurite blob service (in memory) for the duration of the block."""
    import trustme
    require()
    folder = tempfile.mkdtemp(prefix="azurite-")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(f"{folder}/cert.pem")
    cert.private_key_pem.write_to_path(f"{folder}/key.pem")
    ca.cert_pem.write_to_path(f"{folder}/ca.pem")
    log = open(f"{folder}/azurite.log", "w+b")  # noqa: SIM115 - closed below
    process = subprocess.Popen(  # nosec B603 - a fixed local binary, fixed arguments
        [str(BINARY), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
         "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--oauth", "basic",
         "--cert", f"{folder}/cert.pem", "--key", f"{folder}/key.pem"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None:
            log.seek(0)
            found = re.search(rb"listens on https?://127\.0\.0\.1:(\d+)", log.read())
            if found:
                port = int(found.group(1))
            elif process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"Azurite did not start: {log.read().decode(errors='replace')}")
            else:
                time.sleep(0.1)
        yield Azurite(f"https://127.0.0.1:{port}", f"{folder}/ca.pem")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
