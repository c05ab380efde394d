"""A local AWS: moto in process (demo, tests) or as a server on loopback (sandbox).

Federation needs IAM OIDC identity providers to exist; a fresh moto account has none,
so the sandbox creates the ones the examples use, as a platform team would once per
account.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SANDBOX_ACCOUNT = "123456789012"
EXAMPLE_ISSUERS = (
    "https://token.actions.githubusercontent.com",
    "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7",
)
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto's documented dummy value  # nosec B105
    "AWS_SESSION_TOKEN": "testing",  # nosec B105
    "AWS_DEFAULT_REGION": "us-east-1",
}


def seed_oidc_providers(issuers: Iterable[str] = EXAMPLE_ISSUERS,
                        endpoint_url: str | None = None) -> list[str]:
    """Create IAM OIDC providers for ``issuers`` (idempotent); return their ARNs."""
    import boto3
    iam = boto3.client("iam", endpoint_url=endpoint_url, region_name="us-east-1")
    existing = {p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]}
    arns = []
    for url in issuers:
        arn = f"arn:aws:iam::{SANDBOX_ACCOUNT}:oidc-provider/{url.removeprefix('https://')}"
        if arn not in existing:
            arn = iam.create_open_id_connect_provider(
                Url=url, ClientIDList=["sts.amazonaws.com"],
                ThumbprintList=["0" * 40])["OpenIDConnectProviderArn"]
        arns.append(arn)
    return arns


# AWS carries out each API request atomically: a CreateRole never sees the role table
# half-written by another. moto does not: it runs a request's backend code on whichever
# thread sent it (in process) or served it (server), over plain dicts with no lock, so
# concurrent requests can see each other mid-step. IAM's create_role scans ``roles`` for
# a duplicate name while another thread's create_role inserts into it, and the scan
# raises "dictionary changed size during iteration" (apply's thread pool met this in CI:
# in process it escapes botocore as a RuntimeError, from the server as a 500). One lock
# around moto's handling of each request gives the local cloud AWS's atomicity, and
# nothing more: our threads still overlap everywhere else (signing, parsing, waits,
# retries, between the requests of a read-modify-write), so races in our code still show.
# Reentrant, so that a request moto serves by sending another on the same thread cannot
# deadlock.
_MOTO_REQUESTS = threading.RLock()


def _through_seam(client: Any, service: str) -> Any:
    """``client`` behind a seam of its own that translates "aws" as every other does:
    bootstrap's code, which seeding reuses, decides by CloudError kind."""
    from ..calls import CallSeam, SeamClient
    from ..providers.aws.clients import classify, make_fault
    if isinstance(client, SeamClient):
        return client
    seam = CallSeam()
    seam.register("aws", classify, make_fault, translate=True)
    return SeamClient(seam, "aws", service, client)


def seed_boundary(endpoint_url: str | None = None, account: str = SANDBOX_ACCOUNT,
                  iam: Any = None) -> str:
    """Create the workload permissions boundary as `workload-ids bootstrap --apply` would
    (the same code), for the default config; idempotent. Returns its ARN."""
    from ..bootstrap.aws import render
    from ..bootstrap.converge import ensure_boundary
    from ..config import Config, ConfigFile
    if iam is None:
        import boto3
        iam = boto3.client("iam", endpoint_url=endpoint_url, region_name="us-east-1")
    boundary = render(Config(ConfigFile(), Path.cwd(), None), account).boundary
    ensure_boundary(_through_seam(iam, "iam"), boundary)
    return boundary.arn


def seed_signing_key(endpoint_url: str | None = None, account: str = SANDBOX_ACCOUNT,
                     sm: Any = None) -> None:
    """Create the marker signing key as `workload-ids bootstrap --apply` would (the same
    code), for the default config; idempotent."""
    from ..bootstrap.aws import render
    from ..bootstrap.converge import ensure_signing_key
    from ..config import Config, ConfigFile
    if sm is None:
        import boto3
        sm = boto3.client("secretsmanager", endpoint_url=endpoint_url, region_name="us-east-1")
    plan = render(Config(ConfigFile(), Path.cwd(), None), account)
    ensure_signing_key(_through_seam(sm, "secretsmanager"), plan, f"arn:aws:iam::{account}:root")


@contextmanager
def in_process_aws() -> Iterator[None]:
    """moto in this process, with dummy credentials; everything is gone on exit.
    Requests are handled one at a time, as AWS applies each atomically."""
    from moto import mock_aws

    from . import moto_access_advisor, moto_policies, moto_simulator
    from .moto_users import install
    install()
    moto_policies.install()
    moto_access_advisor.install()
    moto_simulator.install()
    with sandbox_environment(endpoint_url=None), mock_aws(), _one_request_at_a_time():
        yield


@contextmanager
def _one_request_at_a_time() -> Iterator[None]:
    """Serialise moto's in-process request handling (see ``_MOTO_REQUESTS``)."""
    from moto.core.models import botocore_stubber
    outer = vars(botocore_stubber).get("process_request")  # set by an enclosing context
    handle = botocore_stubber.process_request

    def serialised(request: Any) -> Any:
        with _MOTO_REQUESTS:
            return handle(request)

    botocore_stubber.process_request = serialised  # type: ignore[method-assign]
    try:
        yield
    finally:
        if outer is None:
            del botocore_stubber.process_request
        else:
            botocore_stubber.process_request = outer  # type: ignore[method-assign]


@contextmanager
def sandbox_environment(endpoint_url: str | None) -> Iterator[None]:
    """Dummy credentials and ``AWS_ENDPOINT_URL`` (removed when None), restored on exit."""
    keys = (*FAKE_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_PROFILE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(FAKE_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    if endpoint_url is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class MotoServer:
    """A moto server on 127.0.0.1 in a thread of this process. Connections are served on
    threads of their own, requests one at a time (see ``_MOTO_REQUESTS``)."""

    def __init__(self, port: int = 0) -> None:
        from . import moto_access_advisor, moto_policies, moto_simulator
        from .moto_users import install
        install()
        moto_policies.install()
        moto_access_advisor.install()
        moto_simulator.install()
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        """Start the moto server; returns its URL."""
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server
        app = _serialised_wsgi(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", self._port, app, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto server",
                                        daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()


def _serialised_wsgi(app: Any) -> Any:
    """``app`` with each request handled, body included, under ``_MOTO_REQUESTS``."""
    def serve(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with _MOTO_REQUESTS:
            body = app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
    return serve
