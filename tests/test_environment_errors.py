"""The environment, not the request, is wrong: no credentials, refused credentials, an
endpoint nobody answers at. Each is said as such, with what to set and where, and an
unreachable endpoint is given up on in seconds, not after a minute of retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from workload_ids.calls import (
    NO_CREDENTIALS,
    UNREACHABLE,
    CallSeam,
    ErrorInfo,
    RetryPolicy,
)
from workload_ids.errors import CloudError


class Refused(Exception):
    """What an SDK raises when nothing listens (the classifier below reads it)."""


class NoCredentials(Exception):
    """What an SDK raises when it finds no credentials."""


def _classify(exc: BaseException) -> ErrorInfo | None:
    if isinstance(exc, Refused):
        return ErrorInfo(UNREACHABLE, "EndpointConnectionError", "Could not connect to http://127.0.0.1:9/")
    if isinstance(exc, NoCredentials):
        return ErrorInfo(NO_CREDENTIALS, "NoCredentialsError", "Unable to locate credentials")
    return None


def _seam(**retry: float) -> tuple[CallSeam, list[float]]:
    slept: list[float] = []
    seam = CallSeam(RetryPolicy(**retry), seed=1, sleep=slept.append)  # type: ignore[arg-type]
    seam.register("aws", _classify, lambda kind, op: Refused(), translate=True)
    return seam, slept


def test_an_unreachable_endpoint_is_tried_briefly_then_named() -> None:
    seam, slept = _seam()
    calls = 0

    def dead() -> None:
        nonlocal calls
        calls += 1
        raise Refused("connection refused")
    with pytest.raises(CloudError) as caught:
        seam.call("aws", "iam.get_role", dead)
    assert calls == 2  # one retry (a blip), not eight
    assert sum(slept) <= 5.0
    assert caught.value.kind == UNREACHABLE
    assert "aws.endpointUrl" in caught.value.hint and "AWS_ENDPOINT_URL" in caught.value.hint
    assert "workload-ids sandbox" in caught.value.hint


def test_missing_credentials_are_not_retried_and_say_what_to_set() -> None:
    seam, slept = _seam()

    def anonymous() -> None:
        raise NoCredentials("Unable to locate credentials")
    with pytest.raises(CloudError) as caught:
        seam.call("aws", "sts.get_caller_identity", anonymous)
    assert slept == []
    assert caught.value.kind == NO_CREDENTIALS
    assert "AWS_PROFILE" in caught.value.hint and "this is a bug" not in caught.value.diagnostics()


def test_each_retry_is_told_before_its_pause() -> None:
    seam, slept = _seam(unreachable_attempts=3, unreachable_seconds=60)
    told: list[tuple[str, str, int]] = []
    seam.retry_observers.append(lambda call, kind, delay: told.append((call.operation, kind, call.attempt)))

    def dead() -> None:
        raise Refused()
    with pytest.raises(CloudError):
        seam.call("aws", "iam.get_role", dead)
    assert told == [("iam.get_role", UNREACHABLE, 1), ("iam.get_role", UNREACHABLE, 2)]
    assert len(slept) == 2


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free now, and nothing listens once it is closed


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_azure_with_nothing_at_its_endpoints_says_so_in_seconds(tmp_path: Path) -> None:
    import time

    from support.cli import run_cli
    url = f"https://127.0.0.1:{_closed_port()}"
    config = tmp_path / "c.yaml"
    config.write_text("azure:\n" + "".join(f"  {key}: {url}\n" for key in (
        "armEndpoint", "graphEndpoint", "authorityEndpoint", "keyVaultUrl"))
        + "  tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47\n  sandboxCredentials: true\n"
        "trust:\n  allowedGithubOwners: [acme]\n")
    started = time.monotonic()
    result = run_cli("plan", "--config", str(config), str(EXAMPLES / "azure" / "order-reconciliation.yaml"))
    assert time.monotonic() - started < 15
    assert result.code == 1
    assert "ServiceRequestError" in result.err and "Connection refused" in result.err
    assert "nothing answered: check the azure.*Endpoint" in result.err
    assert "internal error" not in result.err and "this is a bug" not in result.err


def _bare_run(tmp_path: Path, config: str, manifest: Path) -> tuple[int, str, float]:
    """``plan`` in a process whose environment holds no credentials of any cloud."""
    import os
    import subprocess
    import sys
    import time
    (tmp_path / "c.yaml").write_text(config)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true", "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
           "NO_GCE_CHECK": "True"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "workload_ids", "plan", "--config", str(tmp_path / "c.yaml"),
                           str(manifest)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr, time.monotonic() - started


TRUST = ("trust:\n  allowedGithubOwners: [acme]\n  gcpProjectNumbers: {acme-prod: 123456789012}\n"
         "  allowedIssuers: [https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7,\n"
         "    https://container.googleapis.com/v1/projects/acme-prod/locations/europe-west1/clusters/prod-eu]\n")


def test_no_aws_credentials_say_what_to_set(tmp_path: Path) -> None:
    code, err, _ = _bare_run(tmp_path, TRUST, EXAMPLES / "aws" / "payments-api.yaml")
    assert code == 1
    assert "NoCredentials: no AWS credentials found" in err
    assert "set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)" in err
    assert "internal error" not in err and "Traceback" not in err


def test_no_google_credentials_say_what_to_set(tmp_path: Path) -> None:
    code, err, _ = _bare_run(tmp_path, TRUST, EXAMPLES / "gcp" / "catalog-sync.yaml")
    assert code == 1
    assert "DefaultCredentialsError: Your default credentials were not found" in err
    assert "gcloud auth application-default login" in err
    assert "internal error" not in err and "Traceback" not in err


def test_a_stopped_aws_or_gcp_sandbox_is_named_in_seconds(tmp_path: Path) -> None:
    port = _closed_port()
    aws = f"aws:\n  endpointUrl: http://127.0.0.1:{port}\n  sandboxCredentials: true\n"
    code, err, seconds = _bare_run(tmp_path, aws + TRUST, EXAMPLES / "aws" / "payments-api.yaml")
    assert code == 1 and seconds < 20
    url = f"http://127.0.0.1:{port}/"
    assert f'EndpointConnectionError: Could not connect to the endpoint URL: "{url}"' in err
    assert "check aws.endpointUrl in workload-ids.yaml and AWS_ENDPOINT_URL" in err
    gcp = ("gcp:\n" + "".join(f"  {k}: 127.0.0.1:{port}\n" for k in (
        "iamEndpoint", "secretManagerEndpoint", "resourcePolicyEndpoint"))
        + f"  resourceManagerEndpoint: http://127.0.0.1:{port}\n  sandboxCredentials: true\n")
    code, err, seconds = _bare_run(tmp_path, gcp + TRUST, EXAMPLES / "gcp" / "catalog-sync.yaml")
    assert code == 1 and seconds < 20  # the client library's own minute of retries is off
    assert "failed to connect to all addresses" in err and "Connection refused" in err
    assert "check the gcp.*Endpoint settings" in err
    assert "internal error" not in err
