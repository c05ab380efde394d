"""Shared fixtures: a real boto3 against moto (in process or as a server on loopback),
and a way to run the CLI in process and capture what it prints and returns."""

from __future__ import annotations

import io
import json
import os
import textwrap
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from workload_ids import clock
from workload_ids.bundled import bundled_dir
from workload_ids.cli import main
from workload_ids.sandbox.aws import (
    EXAMPLE_ISSUERS,
    FAKE_CREDENTIALS,
    MotoServer,
    in_process_aws,
    seed_boundary,
    seed_signing_key,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = bundled_dir("examples")
ACCOUNT = "123456789012"


@dataclass
class CliResult:
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


@pytest.fixture
def cli() -> Any:
    return run_cli


def seed(iam: Any, issuers: tuple[str, ...] = EXAMPLE_ISSUERS) -> None:
    """What a platform team does once per account: OIDC providers, the workload
    permissions boundary and the marker signing key (`workload-ids bootstrap --provider
    aws --apply`'s own code)."""
    seed_boundary(iam=iam)
    import boto3
    # The same credentials (so the same account) as ``iam``; boto3 reads AWS_ENDPOINT_URL.
    creds = iam._request_signer._credentials.get_frozen_credentials()
    seed_signing_key(sm=boto3.client("secretsmanager", region_name="us-east-1",
                                     aws_access_key_id=creds.access_key,
                                     aws_secret_access_key=creds.secret_key,
                                     aws_session_token=creds.token))
    for url in issuers:
        iam.create_open_id_connect_provider(Url=url, ClientIDList=["sts.amazonaws.com"],
                                            ThumbprintList=["0" * 40])


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


PAYMENTS = textwrap.dedent("""\
    apiVersion: workload-ids/v1
    kind: Workload
    metadata:
      name: payments-api            # lowercase letters, digits, hyphens; 3-40 chars
      owner: team-payments          # a person or group in the owner directory
      environment: prod             # lowercase letters, digits, hyphens; 1-16 chars
      description: Public payments API
    spec:
      provider: aws                 # aws | gcp | azure
      aws:
        account: "123456789012"
        region: eu-west-1
      credentials:
        mode: keyless               # keyless | key
        federation:                 # who may obtain the identity's credentials (keyless)
          - kind: github-actions
            repository: acme/payments
            ref: refs/heads/main
          - kind: kubernetes
            issuer: https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7
            namespace: payments
            serviceAccount: payments-api
          - kind: aws-service
            service: ecs-tasks.amazonaws.com
      access:
        - template: object-storage.read
          resources:
            - arn:aws:s3:::acme-invoices
        - template: queue.consume
          resources:
            - arn:aws:sqs:eu-west-1:123456789012:payment-events
        - actions: [dynamodb:GetItem, dynamodb:Query]      # escape hatch: raw actions
          resources:
            - arn:aws:dynamodb:eu-west-1:123456789012:table/payments
          reason: reads the payments table directly          # required with raw actions
    """)


def workload(name: str = "svc-a", env: str = "prod", access: str | None = None,
             federation: str | None = None, owner: str = "team-a") -> str:
    """A small valid AWS manifest; ``access``/``federation`` are YAML list bodies."""
    access = access or ("    - template: queue.consume\n"
                        "      resources: [arn:aws:sqs:eu-west-1:123456789012:" + name + "]\n")
    federation = federation or ("      - kind: github-actions\n"
                                f"        repository: acme/{name}\n"
                                "        ref: refs/heads/main\n")
    return (
        "apiVersion: workload-ids/v1\nkind: Workload\n"
        f"metadata:\n  name: {name}\n  owner: {owner}\n  environment: {env}\n"
        "spec:\n  provider: aws\n  aws: {account: \"123456789012\", region: eu-west-1}\n"
        f"  credentials:\n    mode: keyless\n    federation:\n{federation}"
        f"  access:\n{access}")


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


# The trust roots the tests' manifests federate from (their GitHub owner, the example
# issuers, the examples' GCP project), as a platform team would list them.
TEST_TRUST_DATA: dict[str, Any] = {
    "allowedGithubOwners": ["acme"],
    "allowedIssuers": [*EXAMPLE_ISSUERS[1:], "https://container.googleapis.com/v1/projects/acme-prod/"
                                             "locations/europe-west1/clusters/prod-eu"],
    "gcpProjectNumbers": {"acme-prod": 123456789012},
}
TEST_TRUST = "trust: " + json.dumps(TEST_TRUST_DATA) + "\n"  # JSON is YAML


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

CAPTURED: list[str] = []
_original_run_cli = run_cli


def run_cli(*args: str) -> CliResult:  # type: ignore[no-redef]
    """run_cli that also keeps what was printed, for the secret-hygiene check."""
    result = _original_run_cli(*args)
    CAPTURED.extend([result.out, result.err])
    return result


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


def aws_mac_state(entity: dict[str, Any], account: str = ACCOUNT) -> str:
    """``valid`` when a role's or user's marker carries the MAC the account's signing key
    makes for it (its immutable id changes on every create, so snapshots compare this,
    not the MAC itself), else ``invalid`` (or ``none`` without a MAC)."""
    import boto3

    from workload_ids.markers import AWS_KEY_SECRET, check
    from workload_ids.model import TAG_MAC, Marker
    from workload_ids.signing import SigningKey
    tags = {t["Key"]: t["Value"] for t in entity.get("Tags", [])}
    marker = Marker.from_tags(tags)
    if marker is None or TAG_MAC not in tags:
        return "none"
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    key = SigningKey.from_stored(sm.get_secret_value(SecretId=AWS_KEY_SECRET)["SecretString"], "test")
    name = entity.get("RoleName") or entity["UserName"]
    immutable_id = entity.get("RoleId") or entity["UserId"]
    return "valid" if check(key, "aws", account, name, immutable_id, marker, tags[TAG_MAC]) is None \
        else "invalid"


def stable_tags(entity: dict[str, Any]) -> dict[str, str]:
    """An entity's tags with the MAC replaced by :func:`aws_mac_state`."""
    tags = {t["Key"]: t["Value"] for t in entity.get("Tags", [])}
    if "workload-ids:mac" in tags:
        tags["workload-ids:mac"] = aws_mac_state(entity)
    return tags
