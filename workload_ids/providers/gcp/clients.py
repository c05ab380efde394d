"""GCP clients behind the call seam, and Google's errors in our terms.

IAM Admin speaks gRPC only; Resource Manager is used over REST (its project IAM policy
calls); Secret Manager over gRPC; Policy Analyzer's activity query (discover's last
authentication) over REST with ``requests``, as no client library serves it. With
endpoints in the config (the sandbox), clients connect there with anonymous credentials;
otherwise the libraries' defaults and Application Default Credentials apply. Every call
goes through ``SeamClient``, on a seam that translates "gcp": a failure leaves it as a
CloudError of its kind (the Google exception as its cause), so the backends decide by
``exc.kind`` and never catch google.api_core's classes.

The clients also hold the run's marker signing keys (one Secret Manager secret per
project, read once): the identity, key and leaver backends all sign or check markers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gx

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
    to_cloud_error,
)
from ...config import Config
from ...errors import CloudError
from ...markers import KEY_SECRET, KeyCache

# Where each kind of resource answers the generic google.iam.v1.IAMPolicy calls.
RESOURCE_POLICY_HOSTS = {
    "pubsub-topic": "pubsub.googleapis.com", "pubsub-subscription": "pubsub.googleapis.com",
    "secretmanager-secret": "secretmanager.googleapis.com",
    "artifact-registry-repository": "artifactregistry.googleapis.com",
    "cloud-run-service": "run.googleapis.com", "cloud-function": "cloudfunctions.googleapis.com",
    "cloud-tasks-queue": "cloudtasks.googleapis.com",
}

# A CloudError's code is the Google exception's class name. Where one kind covers two
# answers a step must tell apart (CONFLICT: a stale etag or a name already taken), the
# step reads the code.
ABORTED = "Aborted"  # a stale etag: read again and redo
ALREADY_EXISTS = "AlreadyExists"  # the name is taken (gRPC's answer to a create)
FAILED_PRECONDITION = "FailedPrecondition"  # e.g. a custom role id deleted but not yet purged

# RESOURCE_EXHAUSTED is both quota throttling and hard limits (10 keys per account, 100
# accounts per project); only the former is worth a retry.
_HARD_LIMITS = ("maximum number of keys", "maximum number of service accounts", "key limit",
                "limit of", "quota exceeded for quota metric 'service accounts'")


# The client libraries retry some errors themselves (UNAVAILABLE for up to 60 s): the seam
# is where retries live, and counts them.
_NO_LIBRARY_RETRY: dict[str, Any] = {"retry": None}

# gRPC's words for "nothing answered" (UNAVAILABLE is also a busy server: retried then).
_NO_ANSWER = ("failed to connect to all addresses", "Connection refused", "DNS resolution failed",
              "No route to host")


POLICY_ANALYZER = "https://policyanalyzer.googleapis.com"


class PolicyAnalyzerRest:
    """The one Policy Analyzer call discover makes, over a ``requests`` session; Google's
    error answers are raised as the google.api_core exceptions the seam classifies."""

    def __init__(self, session: Any, endpoint: str) -> None:
        self.session = session
        self.endpoint = endpoint.rstrip("/")

    def query_activity(self, project: str, activity_type: str, page_token: str = "",  # nosec B107
                       page_size: int = 1000) -> dict[str, Any]:
        """One page of ``activities:query`` for ``activity_type`` in ``project``."""
        params: dict[str, str | int] = {"pageSize": page_size}
        if page_token:
            params["pageToken"] = page_token
        url = (f"{self.endpoint}/v1/projects/{project}/locations/global/activityTypes/"
               f"{activity_type}/activities:query")
        response = self.session.get(url, params=params, timeout=60)
        if response.status_code != 200:
            raise gx.from_http_response(response)  # type: ignore[no-untyped-call]
        answer: dict[str, Any] = response.json()
        return answer


RECOMMENDER = "https://recommender.googleapis.com"
POLICY_INSIGHT = "google.iam.policy.Insight"


class RecommenderRest:
    """The one Recommender call usage makes (policy insights), over a ``requests``
    session, its errors raised as google.api_core exceptions, as :class:`PolicyAnalyzerRest`."""

    def __init__(self, session: Any, endpoint: str) -> None:
        self.session = session
        self.endpoint = endpoint.rstrip("/")

    def list_insights(self, project: str, page_token: str = "",  # nosec B107
                      page_size: int = 1000) -> dict[str, Any]:
        """One page of the project's active ``google.iam.policy.Insight`` insights."""
        params: dict[str, str | int] = {"pageSize": page_size, "filter": 'stateInfo.state = "ACTIVE"'}
        if page_token:
            params["pageToken"] = page_token
        url = f"{self.endpoint}/v1/projects/{project}/locations/global/insightTypes/{POLICY_INSIGHT}/insights"
        response = self.session.get(url, params=params, timeout=60)
        if response.status_code != 200:
            raise gx.from_http_response(response)  # type: ignore[no-untyped-call]
        answer: dict[str, Any] = response.json()
        return answer


def classify(exc: BaseException) -> ErrorInfo | None:
    """google.api_core exceptions (and raw gRPC errors of the generic IAM policy stub)
    in our terms (see calls.ErrorInfo)."""
    import grpc
    import requests
    from google.auth import exceptions as auth
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        exc = gx.from_grpc_error(exc)  # type: ignore[no-untyped-call]
    if isinstance(exc, requests.ConnectionError):  # REST: nothing answered
        return ErrorInfo(UNREACHABLE, type(exc).__name__, str(exc).split("(Caused by", 1)[0])
    if isinstance(exc, auth.DefaultCredentialsError):
        return ErrorInfo(NO_CREDENTIALS, type(exc).__name__, str(exc).split(". ", 1)[0])
    if isinstance(exc, auth.RefreshError):  # a token Google would not issue: revoked, expired
        return ErrorInfo(REJECTED, type(exc).__name__, str(exc))
    if not isinstance(exc, gx.GoogleAPIError):
        return None
    code = type(exc).__name__
    message = str(getattr(exc, "message", "") or exc)
    if isinstance(exc, gx.ServiceUnavailable) and any(text in message for text in _NO_ANSWER):
        return ErrorInfo(UNREACHABLE, code, message)
    if isinstance(exc, gx.ResourceExhausted | gx.TooManyRequests):  # gRPC, and HTTP 429 over REST
        hard = any(text in message.lower() for text in _HARD_LIMITS)
        return ErrorInfo(OTHER if hard else THROTTLE, code, message)
    if isinstance(exc, gx.ServiceUnavailable | gx.InternalServerError | gx.DeadlineExceeded
                  | gx.GatewayTimeout | gx.BadGateway):
        return ErrorInfo(TRANSIENT, code, message)
    if isinstance(exc, gx.NotFound):
        return ErrorInfo(NOT_FOUND, code, message)
    if isinstance(exc, gx.Unauthenticated | gx.Unauthorized):  # the credentials, not a permission
        return ErrorInfo(REJECTED, code, message)
    if isinstance(exc, gx.PermissionDenied | gx.Forbidden):
        return ErrorInfo(DENIED, code, message)
    if isinstance(exc, gx.AlreadyExists | gx.Aborted | gx.Conflict):
        # Aborted / 409 on setIamPolicy is a stale etag: the caller redoes its whole
        # read-modify-write, never a blind retry of the write.
        return ErrorInfo(CONFLICT, code, message)
    return ErrorInfo(OTHER, code, message)


_FAULTS: dict[str, type[gx.GoogleAPICallError]] = {
    THROTTLE: gx.TooManyRequests, TRANSIENT: gx.ServiceUnavailable, DENIED: gx.PermissionDenied,
    NOT_FOUND: gx.NotFound, CONFLICT: gx.Aborted,
}


def make_fault(kind: str, operation: str) -> BaseException:
    """A google.api_core exception exactly as the client libraries raise it for ``kind``."""
    return _FAULTS.get(kind, gx.InternalServerError)(f"injected {kind} in {operation}")


class GcpClients:
    """Lazily built, seam-wrapped clients for one run (shared across threads)."""

    def __init__(self, config: Config, seam: CallSeam) -> None:
        self.config = config
        self.seam = seam
        # translate: every failure leaves the seam as a CloudError of its kind, so the code
        # above decides by kind and never reads a google.api_core exception (audit.gcs and
        # the sandbox's seeding seam register "gcp" the same way).
        seam.register("gcp", classify, make_fault, translate=True)
        # Shared by every backend of the run and its threads: made here, never lazily
        # (the clients in it are built on first use, under the lock).
        self._clients: dict[str, SeamClient] = {}
        self._build_lock = threading.Lock()
        self.signing_keys = KeyCache(
            self._read_signing_key,
            lambda project: f"Secret Manager secret {KEY_SECRET} in project {project}")

    def _read_signing_key(self, project: str) -> str | None:
        try:
            answer = self.secrets.access_secret_version(
                name=f"projects/{project}/secrets/{KEY_SECRET}/versions/latest")
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None
        return bytes(answer.payload.data).decode("utf-8", "replace")

    def _credentials(self) -> Any:
        if self.config.gcp.sandboxCredentials:
            from google.auth.credentials import AnonymousCredentials
            return AnonymousCredentials()  # type: ignore[no-untyped-call]
        self._check_real_credentials()
        return None  # the libraries resolve Application Default Credentials themselves

    def _check_real_credentials(self) -> None:
        """Real credentials (ADC) go only to Google's own endpoints, and not in a sandbox
        run that moved the clock."""
        from ...clock import check_real_credentials
        from ...endpoints import require_sandbox_credentials
        require_sandbox_credentials(self.config, "gcp")
        check_real_credentials("Google Cloud", "gcp.sandboxCredentials")

    def _plaintext_channel(self, endpoint: str) -> Any:
        """A gRPC channel without TLS: only to an emulator on this machine, never with
        credentials (the config loader refuses anything else; this holds for configs built
        in code too)."""
        import grpc

        from ...endpoints import host_of, is_loopback
        from ...errors import UserError
        if not is_loopback(host_of(endpoint, "grpc")):
            raise UserError(f"plaintext gRPC to {endpoint} refused: only an emulator on this machine "
                            "(127.0.0.1, ::1, localhost) is reached without TLS")
        return grpc.insecure_channel(endpoint)

    def _once(self, key: str, build: Callable[[], SeamClient]) -> SeamClient:
        """The client built for ``key``, built on first use by one thread only (the
        backends' threads share these; a client is built lazily so a run imports and
        checks only the SDKs and credentials it uses)."""
        client = self._clients.get(key)
        if client is None:
            with self._build_lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._clients[key] = self._built(key, build)
        return client

    def _built(self, key: str, build: Callable[[], SeamClient]) -> SeamClient:
        """``build()``; a client library that finds no credentials (it looks for them as it
        is built, before any call) says so as the seam would."""
        from google.auth import exceptions as auth
        try:
            return build()
        except auth.DefaultCredentialsError as exc:
            raise to_cloud_error(self.seam, "gcp", f"{key}.client", exc) from exc

    @property
    def iam(self) -> SeamClient:
        """IAM Admin (service accounts, custom roles, keys, an account's own policy)."""
        return self._once("iam", self._build_iam)

    def _build_iam(self) -> SeamClient:
        from google.cloud import iam_admin_v1
        endpoint = self.config.gcp.iamEndpoint
        if endpoint:
            from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
            raw = iam_admin_v1.IAMClient(transport=IAMGrpcTransport(
                channel=self._plaintext_channel(endpoint)))
        else:
            raw = iam_admin_v1.IAMClient(credentials=self._credentials())
        return SeamClient(self.seam, "gcp", "iam", raw, defaults=_NO_LIBRARY_RETRY)

    @property
    def projects(self) -> SeamClient:
        """Resource Manager projects (the project and its IAM policy), over REST."""
        return self._once("resourcemanager", self._build_projects)

    def _build_projects(self) -> SeamClient:
        from google.cloud import resourcemanager_v3
        endpoint = self.config.gcp.resourceManagerEndpoint
        options = {"api_endpoint": endpoint} if endpoint else None
        raw = resourcemanager_v3.ProjectsClient(transport="rest", credentials=self._credentials(),
                                                client_options=options)
        return SeamClient(self.seam, "gcp", "resourcemanager", raw, defaults=_NO_LIBRARY_RETRY)

    @property
    def folders(self) -> SeamClient:
        """Resource Manager folders (to list the projects under a folder or organization), over REST."""
        return self._once("resourcemanager.folders", self._build_folders)

    def _build_folders(self) -> SeamClient:
        from google.cloud import resourcemanager_v3
        endpoint = self.config.gcp.resourceManagerEndpoint
        options = {"api_endpoint": endpoint} if endpoint else None
        raw = resourcemanager_v3.FoldersClient(transport="rest", credentials=self._credentials(),
                                               client_options=options)
        return SeamClient(self.seam, "gcp", "resourcemanager", raw, defaults=_NO_LIBRARY_RETRY)

    @property
    def secrets(self) -> SeamClient:
        """Secret Manager (issued keys, locks, the marker signing key)."""
        return self._once("secretmanager", self._build_secrets)

    def _build_secrets(self) -> SeamClient:
        from google.cloud import secretmanager_v1
        endpoint = self.config.gcp.secretManagerEndpoint
        if endpoint:
            from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
                SecretManagerServiceGrpcTransport,
            )
            raw = secretmanager_v1.SecretManagerServiceClient(
                transport=SecretManagerServiceGrpcTransport(channel=self._plaintext_channel(endpoint)))
        else:
            raw = secretmanager_v1.SecretManagerServiceClient(credentials=self._credentials())
        return SeamClient(self.seam, "gcp", "secretmanager", raw, defaults=_NO_LIBRARY_RETRY)

    @property
    def policy_analyzer(self) -> SeamClient:
        """Policy Analyzer's activity query (:class:`PolicyAnalyzerRest`), over REST."""
        return self._once("policyanalyzer", self._build_policy_analyzer)

    def _build_policy_analyzer(self) -> SeamClient:
        endpoint = self.config.gcp.policyAnalyzerEndpoint
        raw = PolicyAnalyzerRest(self._rest_session(endpoint), endpoint or POLICY_ANALYZER)
        return SeamClient(self.seam, "gcp", "policyanalyzer", raw)

    @property
    def recommender(self) -> SeamClient:
        """Recommender's policy insights (:class:`RecommenderRest`), over REST. The
        emulators serve it beside Policy Analyzer, at ``gcp.policyAnalyzerEndpoint``."""
        return self._once("recommender", self._build_recommender)

    def _build_recommender(self) -> SeamClient:
        endpoint = self.config.gcp.policyAnalyzerEndpoint
        raw = RecommenderRest(self._rest_session(endpoint), endpoint or RECOMMENDER)
        return SeamClient(self.seam, "gcp", "recommender", raw)

    def _rest_session(self, endpoint: str | None) -> Any:
        """A ``requests`` session: anonymous for an emulator on this machine, else
        authorised with Application Default Credentials."""
        if endpoint:
            import requests
            return requests.Session()
        self._check_real_credentials()
        import google.auth
        from google.auth.transport.requests import AuthorizedSession
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        return AuthorizedSession(credentials)  # type: ignore[no-untyped-call]

    def resource_policy(self, kind: str) -> SeamClient:
        """The generic ``google.iam.v1.IAMPolicy`` stub for one kind of resource (the
        sandbox serves every kind on one endpoint)."""
        endpoint = self.config.gcp.resourcePolicyEndpoint
        host = endpoint or f"{RESOURCE_POLICY_HOSTS[kind]}:443"
        return self._once(f"iampolicy {host}", lambda: self._build_policy_stub(endpoint, host))

    def _build_policy_stub(self, endpoint: str | None, host: str) -> SeamClient:
        from google.iam.v1 import iam_policy_pb2_grpc
        if endpoint:
            channel = self._plaintext_channel(endpoint)
        else:
            self._check_real_credentials()
            import google.auth
            import google.auth.transport.grpc
            import google.auth.transport.requests
            credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"])
            channel = google.auth.transport.grpc.secure_authorized_channel(  # type: ignore[no-untyped-call]
                credentials, google.auth.transport.requests.Request(), host)
        return SeamClient(self.seam, "gcp", "iampolicy", iam_policy_pb2_grpc.IAMPolicyStub(channel))
