"""Fixtures only: a real boto3 against moto (in process or as a server on loopback), the
CLI runner, manifest folders, an isolated working directory per test and the secret-hygiene
check. The helpers they use live in tests/support/."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Helpers in tests/support/ assert too; rewrite them so a failure shows its values.
pytest.register_assert_rewrite("support")

from support.aws import seed  # noqa: E402
from support.cli import CAPTURED, run_cli  # noqa: E402
from support.trust import TEST_TRUST  # noqa: E402

from workload_ids import clock  # noqa: E402
from workload_ids.sandbox.aws import FAKE_CREDENTIALS, MotoServer, in_process_aws  # noqa: E402


@pytest.fixture
def cli() -> Any:
    return run_cli


@pytest.fixture
def aws() -> Iterator[Any]:
    """moto in process, OIDC providers for the example issuers; yields an IAM client."""
    import boto3
    with in_process_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        seed(iam)
        yield iam


@pytest.fixture
def bare_aws() -> Iterator[Any]:
    """moto in process with no OIDC providers (the permissions boundary exists)."""
    import boto3
    with in_process_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        seed(iam, issuers=())
        yield iam


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    server = MotoServer()
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def aws_server(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A clean moto server account; boto3 (ours included) points at it via the environment."""
    import boto3
    urllib.request.urlopen(urllib.request.Request(  # nosec B310 - loopback test server
        f"{moto_server}/moto-api/reset", method="POST")).read()
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_server)
    seed(iam)
    yield iam


@pytest.fixture
def manifests(tmp_path: Path) -> Any:
    """Write manifest files: ``manifests({"a.yaml": text})`` -> the folder."""
    def write(files: dict[str, str]) -> Path:
        folder = tmp_path / "manifests"
        folder.mkdir(exist_ok=True)
        for name, text in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return folder
    return write


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in an empty working directory (no stray workload-ids.yaml)."""
    work = tmp_path / "cwd"
    work.mkdir()
    # New keys are verified by consecutive sign-ins a couple of seconds apart; against
    # moto there is nothing to wait for.
    (work / "workload-ids.yaml").write_text("credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST)
    monkeypatch.chdir(work)
    # CI=true (the CI machine running this suite) refuses a config found in the working
    # directory; tests that mean CI set it themselves (tests/security/).
    for key in ("WORKLOAD_IDS_CLOCK", "GITHUB_OUTPUT", "CI"):
        monkeypatch.delenv(key, raising=False)
    # Tests that call the library with a moved clock are drills; every CLI run decides
    # for itself (cli._clock_gate) and puts this back when it ends.
    monkeypatch.setattr(clock, "_mode", "drill")
    assert os.getcwd() == str(work)


# --- secret hygiene ---------------------------------------------------------------------


def _secrets_watcher(secrets: list[str]) -> Any:
    """A seam result hook that records every secret a cloud call hands the tool."""
    def watch(record: Any, result: Any) -> None:
        def walk(value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    # AWS keys and sessions; Azure client secrets (Graph addPassword)
                    if k in ("SecretAccessKey", "SessionToken", "secretText") and isinstance(v, str):
                        secrets.append(v)
                    if k == "SecretString" and isinstance(v, str):
                        try:
                            walk(json.loads(v))
                        except ValueError:
                            secrets.append(v)
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)
        walk(result)
        # GCP: a new service-account key's file, and the private key inside it.
        data = getattr(result, "private_key_data", b"")
        if data:
            document = json.loads(data)
            secrets.append(document["private_key"].split("-----")[2].strip().split("\n")[0])
            secrets.append(document["private_key"])
    return watch


def _hygiene(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
             require_secret: bool) -> Iterator[list[str]]:
    import logging

    from workload_ids import calls

    secrets: list[str] = []
    watch = _secrets_watcher(secrets)
    caplog.set_level(logging.INFO)
    CAPTURED.clear()
    extra: list[str] = []
    calls.RESULT_HOOKS.append(watch)
    try:
        yield extra
    finally:
        calls.RESULT_HOOKS.remove(watch)
    issued = [s for s in secrets if s and s not in ("testing",)]
    if require_secret:
        assert issued, "the test issued no secret; the hygiene check would prove nothing"
    if not issued:
        return
    out, err = capsys.readouterr()
    audit = [p.read_text(errors="replace") for p in Path.cwd().glob("**/audit.jsonl")]
    haystack = "\n".join([*CAPTURED, out, err, *extra, *audit, *(r.getMessage() for r in caplog.records)])
    for secret in issued:
        for piece in {secret, secret[:16], json.dumps(secret)[1:-1]}:
            assert piece not in haystack, "a secret value appeared in output, logs or the audit log"


@pytest.fixture
def secret_hygiene(caplog: pytest.LogCaptureFixture,
                   capsys: pytest.CaptureFixture[str]) -> Iterator[list[str]]:
    """Records every secret the tool is handed by a cloud call during the test, and fails
    the test if any of them appears in CLI output, captured stdout/stderr, log records, the
    audit log, or text the test registers (JSON output) by appending it; fails too if the
    test issued no secret at all."""
    yield from _hygiene(caplog, capsys, require_secret=True)


@pytest.fixture(autouse=True)
def _no_secret_leaks(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
                     capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The same check on every test that issues a credential, on every provider."""
    if "secret_hygiene" in request.fixturenames:
        yield
        return
    for _ in _hygiene(caplog, capsys, require_secret=False):
        yield




# --- parallel runs: the longest files first ---------------------------------------------------

# pytest-xdist (pyproject's addopts) hands each worker whole files, those with the most tests
# first. A few files hold few but long tests (a crash at every call, racing processes): handed
# out last, one of them leaves the other worker idle for minutes at the end. These go first,
# longest first (by a full run's --durations); a file not listed is scheduled as before.
LONGEST_FILES = (
    "tests/contract/test_crash_safety.py",
    "tests/test_concurrency.py",
    "tests/test_fault_matrix.py",
    "tests/test_cleanup.py",
    "tests/security/test_audit_sink.py",
    "tests/security/test_secrets_and_takeover.py",
    "tests/test_rotation.py",
    "tests/security/test_config_trust_root.py",
    "tests/test_examples_templates_packaging.py",
    "tests/test_calls_and_crashes.py",
    "tests/security/test_forged_markers.py",
    "tests/security/test_restore_policy.py",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadfile":
        return None  # another --dist given on the command line: xdist's own scheduler
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):  # type: ignore[misc]
        def _assign_work_unit(self, node: Any) -> None:
            pending = self.workqueue
            first = next((f for f in LONGEST_FILES if f in pending), None)
            if first is not None:
                pending.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return LongestFirst(config, log)
