"""The environment of the cleanup-vs-Cloud-Custodian benchmark, reusable on its own:

* :func:`ensure_custodian`: Cloud Custodian (``c7n`` from PyPI) in a venv of its own,
  ``benchmarks/.venv-c7n``, made on first use. It is never a dependency of the project.
* :class:`CountingMotoServer`: a moto server in its own process that counts every AWS
  request it receives (see :class:`CountingApp` for how), readable over HTTP.
* :func:`seed_roles`: 1,000 IAM roles as workload-ids makes them, 200 of them owned by a
  team that is gone (optionally already quarantined and past their grace period).

Run as a script, this file is the server process: ``python _custodian_env.py serve PORT``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from mypy_boto3_iam.type_defs import TagTypeDef

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
C7N_VENV = HERE / ".venv-c7n"
C7N_PACKAGE = "c7n"

# The data (names and tag keys as workload_ids.model and providers/aws/render make them).
ROLE_PATH = "/workload-ids/"
ENVIRONMENT = "prod"
ACTIVE_OWNER = "team-active"
GONE_OWNERS = ("team-gone",)
POLICY_NAME = "workload-ids"  # render.POLICY_NAME
QUARANTINE_POLICY_NAME = "workload-ids-quarantine"
TAG_MANAGED_BY = "workload-ids:managed-by"
TAG_WORKLOAD = "workload-ids:workload"
TAG_OWNER = "workload-ids:owner"
TAG_ENVIRONMENT = "workload-ids:environment"
TAG_DIGEST = "workload-ids:manifest-sha256"
TAG_QUARANTINE = "workload-ids:quarantine"
# IAM tag values allow letters, digits, spaces and _.:/=+-@ only: no commas or semicolons.
QUARANTINE_SINCE = "2026-11-01T00:00:00Z"
QUARANTINE_DELETE_AFTER = "2026-11-08T00:00:00Z"
QUARANTINE_VALUE = f"since={QUARANTINE_SINCE} reason=owner-gone delete-after={QUARANTINE_DELETE_AFTER}"

FAKE_ENV = {  # as workload_ids.sandbox.aws.FAKE_CREDENTIALS
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # nosec B105 - moto's documented dummy value
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


# --- Cloud Custodian, in its own venv --------------------------------------------------

def ensure_custodian(venv: Path = C7N_VENV, log: Callable[[str], None] = print) -> Path | str:
    """The ``custodian`` executable of ``venv`` (made and filled with c7n on first use), or
    why it could not be had (a message to print when the benchmark is skipped)."""
    exe = venv / "bin" / "custodian"
    if not exe.exists():
        log(f"installing {C7N_PACKAGE} into {venv} (first run only) ...")
        try:
            if not (venv / "bin" / "python").exists():
                subprocess.run([sys.executable, "-m", "venv", str(venv)],
                               check=True, capture_output=True, text=True)
                # As Python 3.13's venv does: git never sees this folder (and no
                # .gitignore outside it needs to change).
                (venv / ".gitignore").write_text("*\n", encoding="utf-8")
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                            C7N_PACKAGE], check=True, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = str(getattr(exc, "stderr", None) or exc).strip().splitlines() or [""]
            errors = [line for line in detail if line.startswith("ERROR")] or detail[-3:]
            return f"could not install {C7N_PACKAGE} into {venv}: " + " ".join(errors)[-600:]
        if not exe.exists():
            return f"{C7N_PACKAGE} installed into {venv} but {exe} is missing"
    try:  # also warms the page cache, so the first measured run is not the cold one
        subprocess.run([str(exe), "version"], check=True, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{exe} does not run: {getattr(exc, 'stderr', None) or exc}"
    return exe


def custodian_version(venv: Path = C7N_VENV) -> str:
    proc = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import importlib.metadata as m; "
                           "print(f\"c7n {m.version('c7n')}, boto3 {m.version('boto3')}, "
                           "botocore {m.version('botocore')}\")"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "c7n (version unknown)"


# --- a moto server that counts requests -------------------------------------------------

CONTROL = "/__bench__/"


class CountingApp:
    """WSGI middleware in front of moto's own app (the one ``python -m moto.server`` runs).

    How calls are counted: every HTTP request that reaches the server is one API call made
    by the client (retries included, since they are requests too), counted here before moto
    sees it, under a lock (the server is threaded). Requests to moto's own ``/moto-api/``
    (reset, dashboard) and to this counter's ``/__bench__/`` are not counted. The
    operation name comes from ``X-Amz-Target`` (JSON protocols), else ``Action`` in the
    query string or in the form body (query protocols such as IAM and STS; the body is read
    once and handed on to moto unchanged), and the service from the SigV4 credential scope.

    ``GET /__bench__/calls`` answers ``{"total": N, "byOperation": {...}}``;
    ``POST /__bench__/reset`` sets the count to zero.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.by_op: Counter[str] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL):
            return self._control(path[len(CONTROL):], environ, start_response)
        if not path.startswith("/moto-api"):
            op = self._operation(environ)
            with self.lock:
                self.by_op[op] += 1
        return self.app(environ, start_response)

    @staticmethod
    def _operation(environ: dict[str, Any]) -> str:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        service = "?"
        if "Credential=" in auth:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            service = scope[3] if len(scope) > 3 else "?"
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            return f"{service}:{target.rsplit('.', 1)[-1]}"
        action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
        if not action and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return f"{service}:{action[0]}"
        return f"{service}:{environ.get('REQUEST_METHOD', '?')} {environ.get('PATH_INFO', '')}"

    def _control(self, what: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if what == "reset" and environ.get("REQUEST_METHOD") == "POST":
            with self.lock:
                self.by_op.clear()
            body = b"{}"
        elif what == "calls":
            with self.lock:
                snapshot = dict(self.by_op)
            body = json.dumps({"total": sum(snapshot.values()),
                               "byOperation": dict(sorted(snapshot.items()))}).encode()
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"unknown benchmark control path"]
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]


def serve(port: int) -> None:
    """What ``python -m moto.server -H 127.0.0.1 -p PORT`` runs, behind :class:`CountingApp`."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple
    os.environ.setdefault("MOTO_PORT", str(port))
    # werkzeug logs a line per request at INFO; that I/O would slow both tools alike. Errors stay.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, CountingApp(app), threaded=True, request_handler=MotoRequestHandler)


@dataclass
class CallCount:
    total: int
    by_operation: dict[str, int] = field(default_factory=dict)


def read_calls(url: str) -> CallCount:
    with urllib.request.urlopen(f"{url}{CONTROL}calls", timeout=30) as resp:  # nosec B310 - loopback
        data = json.loads(resp.read())
    return CallCount(data["total"], data["byOperation"])


def reset_calls(url: str) -> None:
    _post(f"{url}{CONTROL}reset")


def _post(url: str) -> None:
    req = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=60) as resp:  # nosec B310 - loopback server
        resp.read()


class CountingMotoServer:
    """A :class:`CountingApp` moto server in its own process on a free loopback port."""

    def __init__(self) -> None:
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    def start(self, timeout: float = 30) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        with tempfile.NamedTemporaryFile(prefix="moto-counting-", suffix=".log", delete=False) as log:
            self._log = Path(log.name)
            self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "serve",
                                           str(port)], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                read_calls(self.url)
                return self.url
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop(keep_log=True)
                    raise RuntimeError(f"moto server did not start; see {self._log}") from None
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU seconds the server process has used so far (see _common.process_cpu_seconds)."""
        from _common import process_cpu_seconds
        assert self._proc is not None
        return process_cpu_seconds(self._proc.pid)

    def reset_state(self) -> None:
        """Drop every resource (moto's own reset) and zero the counter."""
        _post(f"{self.url}/moto-api/reset")
        reset_calls(self.url)

    def stop(self, keep_log: bool = False) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None and not keep_log:
            self._log.unlink(missing_ok=True)


@contextmanager
def counting_moto_server() -> Iterator[CountingMotoServer]:
    server = CountingMotoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def aws_env(url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a tool process: ``base`` (default: this process's) without any
    real AWS settings, plus dummy credentials, us-east-1 and ``AWS_ENDPOINT_URL``."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(("AWS_", "BOTO_"))}
    env.update(FAKE_ENV)
    env["AWS_ENDPOINT_URL"] = url
    return env


# --- the data -------------------------------------------------------------------------

@dataclass(frozen=True)
class Fleet:
    """What :func:`seed_roles` made: role names by fate."""

    active: frozenset[str]
    orphaned: frozenset[str]
    quarantined: bool
    seconds: float
    calls: int


def role_name(i: int) -> str:
    return f"wid_{ENVIRONMENT}_{workload_name(i)}"


def workload_name(i: int) -> str:
    return f"svc-{i:04d}"


def orphan_numbers(total: int, orphans: int) -> frozenset[int]:
    """Which of roles 1..total are orphaned: ``orphans`` of them, spread evenly through the
    listing (every 5th role for 200 of 1,000)."""
    if not 0 <= orphans <= total:
        raise ValueError(f"orphans must be between 0 and {total}")
    return frozenset(round((k + 1) * total / orphans) for k in range(orphans))


def _tags(i: int, owner: str, quarantined: bool) -> list[TagTypeDef]:
    tags = {
        TAG_MANAGED_BY: "workload-ids",
        TAG_WORKLOAD: workload_name(i),
        TAG_OWNER: owner,
        TAG_ENVIRONMENT: ENVIRONMENT,
        TAG_DIGEST: hashlib.sha256(f"manifest of {workload_name(i)}".encode()).hexdigest(),
    }
    if quarantined:
        tags[TAG_QUARANTINE] = QUARANTINE_VALUE
    return [{"Key": k, "Value": v} for k, v in tags.items()]


TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}, separators=(",", ":"))
DENY_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "Quarantine", "Effect": "Deny", "Action": "*", "Resource": "*"}]}, separators=(",", ":"))


def _policy(i: int) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "ObjectStorageRead0", "Effect": "Allow", "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::acme-{workload_name(i)}/*"]}]}, separators=(",", ":"))


def seed_roles(url: str, *, total: int = 1000, orphans: int = 200, quarantine_orphans: bool = False,
               concurrency: int = 8, log: Callable[[str], None] = print) -> Fleet:
    """Create ``total`` roles at ``/workload-ids/`` (``wid_prod_svc-0001`` ...), each with
    our tags, an ecs-tasks trust policy and the inline policy ``workload-ids``. ``orphans``
    of them are owned by ``team-gone`` (the rest by ``team-active``); with
    ``quarantine_orphans`` those also carry the quarantine tag (past its delete-after) and
    the deny-all inline policy ``workload-ids-quarantine``.

    Runs ``concurrency`` threads. moto's server is not fully thread-safe (a concurrent
    create can answer 500 although it succeeded), so calls are retried and a create that
    finds its role already there goes on. The counter is zeroed at the end: seeding never
    counts toward a measurement. Raises if the account does not end up as asked.
    """
    from botocore.config import Config
    cfg = Config(retries={"max_attempts": 10, "mode": "standard"}, max_pool_connections=concurrency * 2)
    iam = _session().client("iam", endpoint_url=url, config=cfg)
    started = time.perf_counter()
    gone = orphan_numbers(total, orphans)

    def one(i: int) -> tuple[str, bool]:
        orphan = i in gone
        name = role_name(i)
        with suppress(iam.exceptions.EntityAlreadyExistsException):
            _retry(lambda: iam.create_role(
                RoleName=name, Path=ROLE_PATH, AssumeRolePolicyDocument=TRUST,
                Description=f"workload-ids: {workload_name(i)} ({ENVIRONMENT})",
                Tags=_tags(i, GONE_OWNERS[0] if orphan else ACTIVE_OWNER, orphan and quarantine_orphans)))
        _retry(lambda: iam.put_role_policy(RoleName=name, PolicyName=POLICY_NAME,
                                           PolicyDocument=_policy(i)))
        if orphan and quarantine_orphans:
            _retry(lambda: iam.put_role_policy(RoleName=name, PolicyName=QUARANTINE_POLICY_NAME,
                                               PolicyDocument=DENY_ALL))
        return name, orphan

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="seed") as pool:
        made = list(pool.map(one, range(1, total + 1)))
    active = frozenset(n for n, o in made if not o)
    orphaned = frozenset(n for n, o in made if o)
    present = list_role_names(url)
    if present != active | orphaned:
        raise RuntimeError(f"seeding left {len(present)} roles, expected {total}")
    calls = read_calls(url).total
    reset_calls(url)
    seconds = time.perf_counter() - started
    log(f"seeded {total} roles ({len(orphaned)} owned by {GONE_OWNERS[0]}"
        f"{', quarantined and past delete-after' if quarantine_orphans else ''}) "
        f"in {seconds:.1f} s, {calls} calls (not counted)")
    return Fleet(active, orphaned, quarantine_orphans, seconds, calls)


def _retry(call: Callable[[], Any], attempts: int = 8) -> Any:
    """``call()``, again after moto's threaded server answers an HTML 500 (its IAM backend
    iterates a dict that another request is growing: "dictionary changed size during
    iteration"); botocore does not retry a body it cannot parse."""
    from botocore.parsers import ResponseParserError
    for attempt in range(attempts):
        try:
            return call()
        except ResponseParserError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def list_role_names(url: str, path: str = ROLE_PATH) -> frozenset[str]:
    """Every role name under ``path`` (paged)."""
    iam = _session().client("iam", endpoint_url=url)
    names: set[str] = set()
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=path):
        names.update(r["RoleName"] for r in page["Roles"])
    return frozenset(names)


def _session() -> Any:
    """A boto3 session with the dummy credentials (whatever this process's environment says)."""
    import boto3
    return boto3.session.Session(aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
                                 aws_session_token=FAKE_ENV["AWS_SESSION_TOKEN"],
                                 region_name=FAKE_ENV["AWS_DEFAULT_REGION"])


def main(argv: Iterable[str]) -> int:
    args = list(argv)
    if len(args) == 2 and args[0] == "serve":
        serve(int(args[1]))
        return 0
    print("usage: _custodian_env.py serve PORT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
