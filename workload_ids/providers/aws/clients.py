"""AWS clients behind the call seam, botocore's errors in our terms, and what every AWS
backend shares: one session per account, assume-role, the tool's caller in each account,
the marker signing key of each account, and the IAM operations of each identity kind.

Every boto3 call goes through the call seam (``clients.client(account, "iam").<operation>``).
botocore's own retries are off so that the seam's count is the true number of requests
and its retry policy is the only one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from ...calls import (
    CONFLICT,
    DENIED,
    NO_CREDENTIALS,
    NOT_FOUND,
    OTHER,
    REJECTED,
    THROTTLE,
    TRANSIENT,
    UNREACHABLE,
    CallSeam,
    ErrorInfo,
    SeamClient,
)
from ...config import AwsAccountAccess, Config
from ...errors import CloudError, UserError
from ...markers import AWS_KEY_SECRET, KeyCache, check, sign
from ...model import TAG_MAC, IssuedKey, Marker
from . import fastxml

_THROTTLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "SlowDown", "PriorRequestNotComplete",
    "RequestThrottled", "BandwidthLimitExceeded", "ProvisionedThroughputExceededException",
})
_TRANSIENT_CODES = frozenset({
    "ServiceUnavailable", "InternalFailure", "InternalError", "ServiceFailure",
    "ServiceFailureException", "InternalServerError", "ConcurrentModification",
    "RequestTimeout", "RequestTimeoutException",
})
_NOT_FOUND_CODES = frozenset({"NoSuchEntity", "NoSuchEntityException", "ResourceNotFoundException"})
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
# The credentials themselves, not a permission: expired, revoked, unknown or mistyped.
_REJECTED_CODES = frozenset({
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch",
    "UnrecognizedClientException", "InvalidAccessKeyId", "AuthFailure",
})
_CONFLICT_CODES = frozenset({"EntityAlreadyExists", "DeleteConflict", "LimitExceeded"})
_INJECTED = {
    THROTTLE: ("Throttling", 400), TRANSIENT: ("ServiceUnavailable", 503),
    DENIED: ("AccessDenied", 403), NOT_FOUND: ("NoSuchEntity", 404), CONFLICT: ("EntityAlreadyExists", 409),
    # IAM still making the credential report (discover waits for it).
    "report-in-progress": ("ReportInProgress", 404),
}


def classify(exc: BaseException) -> ErrorInfo | None:
    """botocore exceptions in our terms (see calls.ErrorInfo)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _THROTTLE_CODES or status == 429:
            return ErrorInfo(THROTTLE, code, message)
        if code in _TRANSIENT_CODES or status >= 500:
            return ErrorInfo(TRANSIENT, code, message)
        if code in _NOT_FOUND_CODES:
            return ErrorInfo(NOT_FOUND, code, message)
        if code in _DENIED_CODES:
            return ErrorInfo(DENIED, code, message)
        if code in _REJECTED_CODES:
            return ErrorInfo(REJECTED, code, message)
        if code in _CONFLICT_CODES:
            return ErrorInfo(CONFLICT, code, message)
        return ErrorInfo(OTHER, code, message)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        # Nothing answered at the endpoint (a wrong URL, a stopped sandbox, no network).
        return ErrorInfo(UNREACHABLE, type(exc).__name__, str(exc))
    if isinstance(exc, ConnectionClosedError | ReadTimeoutError | ResponseParserError):
        # A response botocore cannot parse is an error page from a failing front end.
        return ErrorInfo(TRANSIENT, type(exc).__name__, str(exc))
    if isinstance(exc, NoCredentialsError):
        return ErrorInfo(NO_CREDENTIALS, "NoCredentials",
                         "no AWS credentials found (environment, profile or instance role)")
    if isinstance(exc, BotoCoreError):
        return ErrorInfo(OTHER, type(exc).__name__, str(exc))
    return None


def make_fault(kind: str, operation: str) -> BaseException:
    """A ClientError exactly as botocore would raise it for ``kind``."""
    code, status = _INJECTED.get(kind, ("InternalFailure", 500))
    response: Any = {"Error": {"Code": code, "Message": f"injected {kind}"},
                     "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation.split(".")[-1])


@dataclass(frozen=True, slots=True)
class KindOps:
    """The IAM operations for one kind of identity: roles (keyless) and users (key mode)
    take the same steps through differently named calls."""

    param: str
    result: str
    immutable_id: str
    get: str
    create: str
    list_policies: str
    get_policy: str
    put_policy: str
    delete_policy: str
    list_attached: str
    attach: str
    detach: str
    tag: str
    untag: str
    put_boundary: str
    delete_boundary: str
    detail_policies: str


KIND_OPS = {
    "role": KindOps("RoleName", "Role", "RoleId", "get_role", "create_role", "list_role_policies",
                    "get_role_policy", "put_role_policy", "delete_role_policy",
                    "list_attached_role_policies", "attach_role_policy", "detach_role_policy",
                    "tag_role", "untag_role", "put_role_permissions_boundary",
                    "delete_role_permissions_boundary", "RolePolicyList"),
    "user": KindOps("UserName", "User", "UserId", "get_user", "create_user", "list_user_policies",
                    "get_user_policy", "put_user_policy", "delete_user_policy",
                    "list_attached_user_policies", "attach_user_policy", "detach_user_policy",
                    "tag_user", "untag_user", "put_user_permissions_boundary",
                    "delete_user_permissions_boundary", "UserPolicyList"),
}


def operation(client: SeamClient, name: str) -> Callable[..., Any]:
    """``client.<name>`` for an operation named by a table (KIND_OPS, the teardown steps)."""
    method: Callable[..., Any] = getattr(client, name)
    return method


def call(client: SeamClient, name: str, **kwargs: Any) -> Any:
    """``client.<name>(**kwargs)`` for an operation named by a table."""
    return operation(client, name)(**kwargs)


def pages_of(client: SeamClient, name: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Whole pages, each one call through the seam (IAM's Marker/IsTruncated protocol)."""
    marker: str | None = None
    while True:
        params = dict(kwargs)
        if marker:
            params["Marker"] = marker
        page: dict[str, Any] = call(client, name, **params)
        yield page
        if not page.get("IsTruncated"):
            return
        marker = page.get("Marker")


def pages(client: SeamClient, name: str, key: str, **kwargs: Any) -> Iterator[list[Any]]:
    """The list under ``key`` of each page."""
    for page in pages_of(client, name, **kwargs):
        yield page.get(key, [])


def if_present(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """``fn(**kwargs)``, or None when what it names is already gone."""
    try:
        return fn(**kwargs)
    except CloudError as exc:
        if exc.kind != NOT_FOUND:
            raise
        return None


def tags_of(items: Any) -> dict[str, str]:
    """IAM's ``[{"Key": k, "Value": v}]`` as a dict."""
    return {t["Key"]: t["Value"] for t in items or ()}


def check_account(target: str, arn: str) -> None:
    """Refuse an ARN from another account than ``target``: the credentials reach the wrong one."""
    account = arn.split(":")[4] if arn.count(":") >= 5 else ""
    if account and account != target:
        raise UserError(
            f"the AWS credentials in use reach account {account}, but the manifest targets "
            f"{target}; use credentials for {target} (or give it a profile or roleArn under "
            "targets.aws in the config)")


# botocore reads each service's model (JSON, hundreds of KB for IAM) through its session's
# data loader, which caches what it read: one loader for the whole process means a model is
# read once, however many sessions (accounts, runs in one process) are made.
_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def share_models(session: Any) -> None:
    """Make botocore ``session`` use the process's one data loader (its own, if first)."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _LOADER)


class AwsClients:
    """Seam-wrapped clients per account and service for one run, shared by every AWS
    backend and across threads: every cache here is made in the constructor."""

    def __init__(self, config: Config, seam: CallSeam) -> None:
        self.config = config
        self.seam = seam
        # translate: every failure leaves the seam as a CloudError of its kind, so the
        # backends decide by kind and never read a botocore exception (audit.sink and
        # audit.keys register "aws" the same way).
        seam.register("aws", classify, make_fault, translate=True)
        self._clients: dict[tuple[str, str], SeamClient] = {}
        self._sessions: dict[str, boto3.session.Session] = {}  # by credential source (_source)
        # target (or "session\0" + source) -> held while its credentials (session) are made
        self._making: dict[str, threading.RLock] = {}
        self._assumed_credentials: dict[str, dict[str, str]] = {}  # target -> its roleArn's
        self._assumers: dict[str, Any] = {}  # credential source -> the STS client that assumes
        self._verifiers: dict[str, SeamClient] = {}
        self._lock = threading.Lock()
        self._caller_lock = threading.Lock()
        # boto3 documents sessions as unsafe to share between threads, and apply's threads
        # share the account's session to reuse its loaded models: clients are built from it
        # one at a time. The clients themselves are thread-safe and used concurrently.
        self._building = threading.Lock()
        self._callers: dict[str, str] = {}  # account -> the ARN our credentials are there
        # Member accounts of an organization entry (targets.aws organization:), and the
        # role each is reached through; a config entry of the account itself comes first.
        self._member_roles: dict[str, str] = {}
        self._listed: list[tuple[str, str]] | None = None
        self._org_lock = threading.RLock()
        self._ambient: str | None = None  # the account the ambient credentials reach, once asked
        self.signing_keys = KeyCache(self._read_signing_key, self._signing_key_where)

    # --- sessions and clients --------------------------------------------------------

    def session(self, target: str) -> boto3.session.Session:
        """The session of the credentials that reach ``target`` (its profile's, else the
        ambient ones): one per credential source, whatever the number of accounts, since
        a session costs ~20 ms of CPU to make and its clients share loaded service models.
        A target reached through a role gets that role's credentials on each client
        (:meth:`client`), not a session of its own."""
        source = self._source(target)
        with self._lock:
            cached = self._sessions.get(source)
            making = self._making.setdefault(f"session\0{source}", threading.RLock())
        if cached is not None:
            return cached
        # Threads reading several accounts at once make one session between them.
        with making:
            with self._lock:
                cached = self._sessions.get(source)
            if cached is None:
                cached = self._new_session(target)
                share_models(cached._session)
                fastxml.install(cached._session)
                with self._lock:
                    self._sessions[source] = cached
        return cached

    def _source(self, target: str) -> str:
        """Which credentials reach ``target`` before any role is assumed: its profile, or
        "" for the ambient (or sandbox) ones."""
        access = self.access(target)
        return access.profile if access is not None and access.profile else ""

    def access(self, target: str) -> AwsAccountAccess | None:
        """How this run reaches ``target``: its config entry (profile or roleArn), else,
        when the organization lists it as an active member, the organization entry's role,
        else None (the ambient credentials)."""
        access = self.config.aws_access(target)
        if access is not None or not target:
            return access
        role = self._organization_role()
        with self._lock:
            ambient = self._ambient
        if role is None or target == ambient:
            return None
        with self._lock:
            known = self._member_roles.get(target)
            listed = self._listed is not None
        if known is None and not listed:
            # Plan and apply name member accounts too: list the organization once, so only
            # an account it lists (never any account a manifest names) is reached by role.
            self.organization_accounts(role)
            with self._lock:
                known = self._member_roles.get(target)
        return AwsAccountAccess(roleArn=known) if known else None

    def _organization_role(self) -> str | None:
        entry = next((e for e in self.config.data.targets.aws
                      if e.organization is not None and e.account is None and not e.retired), None)
        return entry.organization.role if entry is not None and entry.organization is not None else None

    def organization_accounts(self, role: str | None) -> list[tuple[str, str]]:
        """(account, state) of every account of the ambient credentials' organization
        (Organizations ``ListAccounts``, page by page), listed once per run; each active
        one other than the ambient account is reached by assuming ``role`` in it."""
        with self._org_lock:
            with self._lock:
                listed = self._listed
            if listed is None:
                ambient = self.ambient_account()
                caller = self.caller(ambient)
                partition = caller.split(":")[1] if caller.count(":") >= 5 else "aws"
                client = self.client("", "organizations")
                listed = []
                token: str | None = None
                while True:
                    page = client.list_accounts(**({"NextToken": token} if token else {}))
                    for account in page.get("Accounts", []):
                        # `State` replaces `Status` (2025); both say ACTIVE for a usable account.
                        listed.append((str(account["Id"]),
                                       str(account.get("State") or account.get("Status") or "")))
                    token = page.get("NextToken")
                    if not token:
                        break
                with self._lock:
                    self._listed = listed
                    if role:
                        for account, state in listed:
                            if state == "ACTIVE" and account != ambient:
                                self._member_roles.setdefault(
                                    account, f"arn:{partition}:iam::{account}:role/{role}")
            return list(listed)

    def _new_session(self, target: str) -> boto3.session.Session:
        access = self.access(target)
        if self.config.aws.sandboxCredentials:
            return boto3.session.Session(aws_access_key_id="testing",
                                         aws_secret_access_key="testing",  # sandbox only  # nosec B106
                                         region_name="us-east-1")
        from ...clock import check_real_credentials
        from ...endpoints import require_sandbox_credentials
        require_sandbox_credentials(self.config, "aws")
        check_real_credentials("AWS", "aws.sandboxCredentials")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        if access and access.profile:
            return boto3.session.Session(profile_name=access.profile, region_name=region)
        return boto3.session.Session(region_name=region)

    def client(self, target: str, service: str) -> SeamClient:
        """A seam-wrapped client for ``service`` in account ``target``."""
        key = (target, service)
        with self._lock:
            if key in self._clients:
                return self._clients[key]
        boto_config = BotoConfig(retries={"total_max_attempts": 1}, connect_timeout=5,
                                 read_timeout=60,
                                 max_pool_connections=max(10, self.config.calls.concurrency * 2))
        access = self.access(target)
        session = self.session(target)
        credentials = (self._assumed(target, access.roleArn, boto_config) if access and access.roleArn
                       else {})
        with self._building:
            raw = session.client(service, endpoint_url=self.config.aws.endpointUrl,  # type: ignore[call-overload]
                                 config=boto_config, **credentials)
        wrapped = SeamClient(self.seam, "aws", service, raw)
        with self._lock:
            return self._clients.setdefault(key, wrapped)  # a racing thread's, if it was first

    def _assumed(self, target: str, role_arn: str, boto_config: BotoConfig) -> dict[str, str]:
        """``role_arn``'s credentials in ``target`` (as client arguments): assumed once per
        run and account, whatever services its clients call (one AssumeRole, not one per
        service), through one STS client per credential source."""
        with self._lock:
            cached = self._assumed_credentials.get(target)
            making = self._making.setdefault(target, threading.RLock())
        if cached is not None:
            return cached
        with making:
            with self._lock:
                cached = self._assumed_credentials.get(target)
            if cached is not None:
                return cached
            creds = self._sts(target, boto_config).assume_role(
                RoleArn=role_arn, RoleSessionName="workload-ids")["Credentials"]
            assumed = {"aws_access_key_id": creds["AccessKeyId"],
                       "aws_secret_access_key": creds["SecretAccessKey"],
                       "aws_session_token": creds["SessionToken"]}
            with self._lock:
                self._assumed_credentials[target] = assumed
        return assumed

    def _sts(self, target: str, boto_config: BotoConfig) -> SeamClient:
        """The STS client that assumes roles from ``target``'s credential source."""
        source = self._source(target)
        session = self.session(target)
        with self._building:
            raw = self._assumers.get(source)
            if raw is None:
                raw = self._assumers[source] = session.client(
                    "sts", endpoint_url=self.config.aws.endpointUrl, config=boto_config)
        return SeamClient(self.seam, "aws", "sts", raw)

    def signed_with(self, target: str, key: IssuedKey) -> SeamClient:
        """An STS client that signs with ``key`` (to verify a new access key)."""
        with self._lock:
            sts = self._verifiers.get(key.key_id)
        if sts is not None:
            return sts
        # A client of the account's session with the new key's credentials: it reuses
        # the loaded service model instead of building a session per attempt.
        session = self.session(target)
        with self._building:
            raw = session.client(
                "sts", endpoint_url=self.config.aws.endpointUrl, aws_access_key_id=key.key_id,
                aws_secret_access_key=key.secret.reveal(), aws_session_token=None,
                config=BotoConfig(retries={"total_max_attempts": 1}))
        sts = SeamClient(self.seam, "aws", "sts", raw)
        with self._lock:
            self._verifiers[key.key_id] = sts
            while len(self._verifiers) > 64:  # keys verified long ago are done with
                self._verifiers.pop(next(iter(self._verifiers)))
        return sts

    # --- who the credentials are -----------------------------------------------------

    def caller(self, target: str) -> str:
        """The ARN the credentials have in account ``target``; a UserError when they reach
        another account. One question per account and run, even when a fleet's threads
        all ask at once."""
        with self._caller_lock:
            with self._lock:
                known = self._callers.get(target)
            if known is None:
                known = str(self.client(target, "sts").get_caller_identity()["Arn"])
                with self._lock:
                    self._callers[target] = known
        check_account(target, known)
        return known

    def ambient_account(self) -> str:
        """The account the ambient credentials reach."""
        arn = str(self.client("", "sts").get_caller_identity()["Arn"])
        account = arn.split(":")[4]
        with self._lock:
            self._ambient = account
        if account not in self.config.aws_mapped_accounts():
            # The same credentials reach it: a later caller() need not ask again.
            with self._lock:
                self._callers.setdefault(account, arn)
        return account

    # --- the marker signing key ------------------------------------------------------

    def _signing_key_where(self, target: str) -> str:
        return (f"Secrets Manager secret {AWS_KEY_SECRET} in account {target} "
                f"(region {self.session(target).region_name})")

    def _read_signing_key(self, target: str) -> str | None:
        sm = self.client(target, "secretsmanager")
        try:
            answer = sm.get_secret_value(SecretId=AWS_KEY_SECRET)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None
        # The first read of a run: credentials that reach another account are refused here
        # (a key from there must not vouch for identities in this one).
        check_account(target, str(answer.get("ARN") or ""))
        return str(answer.get("SecretString") or "")

    def marker_mac(self, target: str, name: str, immutable_id: str, marker: Marker) -> str:
        """The MAC that authenticates ``marker`` on this identity."""
        return sign(self.signing_keys.get(target), "aws", target, name, immutable_id, marker)

    def unauthenticated(self, target: str, name: str, immutable_id: str, marker: Marker,
                        tags: Mapping[str, str]) -> str | None:
        """None when the tags' MAC authenticates ``marker`` on this identity, else why not."""
        return check(self.signing_keys.get(target), "aws", target, name, immutable_id, marker,
                     tags.get(TAG_MAC))
