"""The one seam every cloud SDK call passes through.

Here calls are counted (benchmarks and tests read the counts), faults are injected
(throttling, 5xx, access denied, not found, a hard kill), latency is added, and
throttling and transient errors are retried with exponential backoff and full jitter,
bounded both in attempts and in time.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar

from .errors import CloudError

T = TypeVar("T")

THROTTLE = "throttle"
TRANSIENT = "transient"
NOT_FOUND = "not-found"
DENIED = "denied"
CONFLICT = "conflict"
OTHER = "other"
# The environment, not the request: no credentials found, credentials the cloud refused,
# an endpoint nobody answers at. Each gets its own message (what to set, where).
NO_CREDENTIALS = "no-credentials"
REJECTED = "credentials-rejected"
UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What kind of failure an SDK exception is, in our terms."""

    kind: str
    code: str
    message: str


class ErrorClassifier(Protocol):
    """Reads an SDK exception; returns None for exceptions that are not cloud errors."""

    def __call__(self, exc: BaseException) -> ErrorInfo | None:
        """Classify ``exc``; None when it is not an error of this cloud."""


class FaultFactory(Protocol):
    """Builds an exception of the SDK's own type for an injected fault."""

    def __call__(self, kind: str, operation: str) -> BaseException:
        """An exception of the SDK's type that the provider's own handling treats as ``kind``."""


class Fault(Protocol):
    """A rule that may fail a call before it reaches the cloud.

    Returns the kind to inject (``throttle``, ``transient``, ``denied``, ``not-found``,
    ``kill``) or None to let the call through.
    """

    def __call__(self, call: CallRecord) -> str | None:
        """The fault kind to inject into ``call``, or None to let it through."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One attempt of one call, as the seam sees it."""

    provider: str
    operation: str
    number: int  # 1-based count of attempts through this seam
    attempt: int  # 1 for the first try of this call, 2 for its first retry, ...
    params: dict[str, Any]


# Watchers of every successful call of every seam in the process: the secret-hygiene
# tests use this to learn each secret the tool was handed, wherever it came from.
RESULT_HOOKS: list[Callable[[CallRecord, Any], None]] = []
# Watchers of every attempt of every seam in the process, before it reaches the cloud:
# the least-privilege tests of `bootstrap` learn from them which operations each command
# really calls (an attempt that fails needs the permission as much as one that succeeds).
CALL_HOOKS: list[Callable[[CallRecord], None]] = []


class Killed(BaseException):
    """An injected hard stop: the process 'dies' at this call (tests of crash safety).

    A BaseException so that no ``except Exception`` on the way can swallow it.
    """


@dataclass
class RetryPolicy:
    """How long and how often to retry throttled and transient failures."""

    max_attempts: int = 8
    max_seconds: float = 60.0
    base_delay: float = 0.2
    max_delay: float = 10.0
    # An endpoint that does not answer is tried again briefly (a blip), not for a minute:
    # a stopped sandbox or a wrong URL is reported in seconds.
    unreachable_attempts: int = 2
    unreachable_seconds: float = 5.0


@dataclass
class CallStats:
    """What a run did: calls per operation, retries, failures by kind."""

    calls: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    # The seam's threads count under this lock, and a reader adding up takes it too: a walk
    # over a Counter that another thread adds an operation to fails mid-way ("dictionary
    # changed size during iteration"), and a lease renewal or a background read may still
    # be calling while a command reads its totals.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def total(self) -> int:
        """Calls made so far across every provider, retries included."""
        with self.lock:
            return sum(self.calls.values())

    def by_provider(self, provider: str) -> int:
        """Calls made so far to ``provider``, retries included."""
        with self.lock:
            return sum(n for op, n in self.calls.items() if op.startswith(provider + ":"))


class CallSeam:
    """Routes cloud calls: count, inject, retry. One per run (shared across threads)."""

    def __init__(self, retry: RetryPolicy | None = None, *, seed: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.retry = retry or RetryPolicy()
        self.stats = CallStats()
        self.faults: list[Fault] = []
        self.latency = 0.0
        self._sleep = sleep
        self._random = random.Random(seed)  # retry jitter, not a secret  # nosec B311
        self._lock = self.stats.lock  # one lock for the attempt number and the counts
        self._number = 0
        self._classifiers: dict[str, ErrorClassifier] = {}
        self._factories: dict[str, FaultFactory] = {}
        self._translated: set[str] = set()
        self.observers: list[Callable[[CallRecord], None]] = []
        # Told of each retry before its pause (the CLI shows them on a terminal).
        self.retry_observers: list[Callable[[CallRecord, str, float], None]] = []

    def register(self, provider: str, classifier: ErrorClassifier, factory: FaultFactory, *,
                 translate: bool = False) -> None:
        """Teach the seam one SDK's errors (each provider does this when it is built).

        With ``translate``, a cloud error that is not retried, or outlives its retries,
        leaves the seam as a :class:`~workload_ids.errors.CloudError` carrying its kind
        (the SDK's exception as its cause), so the code above decides by kind and never
        translates an SDK's exception itself. Every registration of one provider name
        must say the same."""
        self._classifiers[provider] = classifier
        self._factories[provider] = factory
        if translate:
            self._translated.add(provider)
        else:
            self._translated.discard(provider)

    def sleep(self, seconds: float) -> None:
        """Wait through the seam's clock (tests replace it, so waits cost nothing there)."""
        self._sleep(seconds)

    def inject(self, fault: Fault) -> None:
        """Add a fault rule, checked before every later call (tests and the fault matrix)."""
        self.faults.append(fault)

    def classify(self, provider: str, exc: BaseException) -> ErrorInfo | None:
        """``exc`` read by ``provider``'s classifier; None without one or for a non-cloud error."""
        classifier = self._classifiers.get(provider)
        return classifier(exc) if classifier else None

    def call(self, provider: str, operation: str, fn: Callable[..., T], /, *args: Any,
             **kwargs: Any) -> T:
        """Call ``fn`` as ``provider:operation``, with faults, counting and retries."""
        name = f"{provider}:{operation}"
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            with self._lock:
                self._number += 1
                number = self._number
                self.stats.calls[name] += 1
            record = CallRecord(provider, operation, number, attempt, dict(kwargs))
            for observer in self.observers:
                observer(record)
            for watcher in CALL_HOOKS:
                watcher(record)
            try:
                self._before(record)
                if self.latency:
                    self._sleep(self.latency)
                result = fn(*args, **kwargs)
                for hook in RESULT_HOOKS:
                    hook(record, result)
                return result
            except Killed:
                raise
            except Exception as exc:
                info = self.classify(provider, exc)
                if info is None:
                    raise
                with self._lock:
                    self.stats.failures[info.kind] += 1
                retryable = info.kind in (THROTTLE, TRANSIENT, UNREACHABLE)
                attempts, seconds = ((self.retry.unreachable_attempts, self.retry.unreachable_seconds)
                                     if info.kind == UNREACHABLE else
                                     (self.retry.max_attempts, self.retry.max_seconds))
                elapsed = time.monotonic() - started
                if not retryable or attempt >= attempts:
                    self._give_up(provider, operation, exc)
                delay = self._backoff(attempt)
                if elapsed + delay > seconds:
                    self._give_up(provider, operation, exc)
                with self._lock:
                    self.stats.retries[name] += 1
                for notice in self.retry_observers:
                    notice(record, info.kind, delay)
                self._sleep(delay)

    def _give_up(self, provider: str, operation: str, exc: Exception) -> NoReturn:
        """Let a failure out of the seam: as the CloudError of its kind where the provider
        asked for that (``register(translate=True)``), else as the SDK raised it."""
        if provider in self._translated:
            raise to_cloud_error(self, provider, operation, exc) from exc
        raise exc

    def conflict_pause(self, attempt: int) -> None:
        """Wait before redoing a read-modify-write that lost to a concurrent writer. Full
        jitter: writers that collided once must not collide again on the same schedule."""
        cap = min(4.0, self.retry.base_delay * (2 ** attempt))
        with self._lock:
            pause = self._random.uniform(0, cap)
        self._sleep(pause)

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): spreads retries of many clients apart.
        cap = min(self.retry.max_delay, self.retry.base_delay * (2 ** (attempt - 1)))
        with self._lock:
            return self._random.uniform(0, cap)

    def _before(self, record: CallRecord) -> None:
        for fault in self.faults:
            kind = fault(record)
            if kind is None:
                continue
            if kind == "kill":
                raise Killed(f"injected kill at call {record.number} ({record.operation})")
            factory = self._factories.get(record.provider)
            if factory is None:
                raise RuntimeError(f"no fault factory for {record.provider}")
            raise factory(kind, record.operation)


# What to do when the environment, not the request, is wrong: per kind, then per cloud.
ENVIRONMENT_HINTS = {
    NO_CREDENTIALS: {
        "aws": "no AWS credentials were found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
               "AWS_SECRET_ACCESS_KEY), run `aws sso login`, or in GitHub Actions use "
               "aws-actions/configure-aws-credentials; the sandbox's config sets aws.sandboxCredentials",
        "gcp": "no Google credentials were found (Application Default Credentials): run `gcloud auth "
               "application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or in GitHub Actions "
               "use google-github-actions/auth",
        "azure": "no Azure credentials were found (DefaultAzureCredential): run `az login`, set "
                 "AZURE_CLIENT_ID and AZURE_TENANT_ID with a federated token, or in GitHub Actions "
                 "use azure/login",
    },
    REJECTED: {
        "aws": "AWS refused the credentials in use (expired, revoked or for another partition): "
               "renew them (`aws sso login`, or the pipeline's role session) and rerun",
        "gcp": "Google refused the credentials in use (expired or revoked): renew them (`gcloud auth "
               "application-default login`, or the pipeline's federation step) and rerun",
        "azure": "Entra refused the credentials in use (expired, revoked or for another tenant): "
                 "renew them (`az login`, or the pipeline's azure/login step) and rerun",
    },
    UNREACHABLE: {
        "aws": "nothing answered: check aws.endpointUrl in workload-ids.yaml and AWS_ENDPOINT_URL in "
               "the environment (a stopped sandbox: start `workload-ids sandbox` again), and the network",
        "gcp": "nothing answered: check the gcp.*Endpoint settings in workload-ids.yaml (a stopped "
               "sandbox: start `workload-ids sandbox` again), and the network",
        "azure": "nothing answered: check the azure.*Endpoint and azure.keyVaultUrl settings in "
                 "workload-ids.yaml (a stopped sandbox: start `workload-ids sandbox` again), and the network",
    },
}


def to_cloud_error(seam: CallSeam, provider: str, operation: str, exc: BaseException,
                   hint: str = "") -> CloudError:
    """Wrap an SDK exception that escaped its retries as our CloudError."""
    info = seam.classify(provider, exc)
    code = info.code if info else type(exc).__name__
    message = info.message if info else str(exc)
    if not hint and info and info.kind in ENVIRONMENT_HINTS:
        hint = ENVIRONMENT_HINTS[info.kind].get(provider, "")
    if not hint and info and info.kind == DENIED:
        hint = (f"the credentials in use lack the permission {operation} needs; see README "
                "'Permissions the tool needs' (`workload-ids bootstrap` prints them)")
    if not hint and info and info.kind in (THROTTLE, TRANSIENT):
        hint = "the cloud is throttling or failing; rerun later (reruns converge)"
    return CloudError(operation, code, message, hint, kind=info.kind if info else OTHER)


class SeamClient:
    """An SDK client whose every method call goes through the seam.

    ``client.get_role(RoleName=...)`` becomes ``seam.call("aws", "iam.get_role", ...)``.
    """

    def __init__(self, seam: CallSeam, provider: str, service: str, client: Any,
                 defaults: dict[str, Any] | None = None) -> None:
        self._seam = seam
        self._provider = provider
        self._service = service
        self._client = client
        # Arguments every call gets unless it says otherwise (Google's ``retry=None``: the
        # seam retries, and a client library retrying underneath it doubles the wait).
        self._defaults = defaults or {}

    @property
    def raw(self) -> Any:
        """The underlying SDK client (for its exception classes, never for calls)."""
        return self._client

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        method = getattr(self._client, operation)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._seam.call(self._provider, f"{self._service}.{operation}", method,
                                   *args, **{**self._defaults, **kwargs})
        return call


# --- Faults used by tests, benchmarks and the reliability scripts ---------------------

class FailAt:
    """Fail the ``n``-th attempt through the seam (1-based) with ``kind``."""

    def __init__(self, n: int, kind: str = TRANSIENT) -> None:
        self.n = n
        self.kind = kind

    def __call__(self, call: CallRecord) -> str | None:
        """Fault: fails only the ``n``-th call of the run."""
        return self.kind if call.number == self.n else None


class FailOperation:
    """Fail every attempt (or the first ``times``) of an operation with ``kind``."""

    def __init__(self, operation: str, kind: str, times: int | None = None) -> None:
        self.operation = operation
        self.kind = kind
        self.times = times

    def __call__(self, call: CallRecord) -> str | None:
        """Fault: fails calls to ``operation``, at most ``times`` of them when that is set."""
        if call.operation != self.operation:
            return None
        if self.times is not None:
            if self.times <= 0:
                return None
            self.times -= 1
        return self.kind


class RandomFaults:
    """Throttle a share of calls and fail another share with 5xx, reproducibly."""

    def __init__(self, throttle: float, transient: float, seed: int) -> None:
        self.throttle = throttle
        self.transient = transient
        self._random = random.Random(seed)  # seeded test faults, not a secret  # nosec B311
        self._lock = threading.Lock()

    def __call__(self, call: CallRecord) -> str | None:
        """Fault: throttles or fails a random share (thread-safe; a seed repeats the same run)."""
        with self._lock:
            roll = self._random.random()
        if roll < self.throttle:
            return THROTTLE
        if roll < self.throttle + self.transient:
            return TRANSIENT
        return None


class EventuallyConsistent:
    """Simulate a cloud whose reads lag its writes: for ``delay`` seconds after a call
    that creates something, reads naming the same thing answer "not found".

    Names are taken from the call parameters in ``name_params`` (``RoleName``, ...).
    """

    def __init__(self, delay: float, *, clock: Callable[[], float] = time.monotonic,
                 name_params: tuple[str, ...] = ("RoleName", "UserName", "SecretId", "Name"),
                 create_prefixes: tuple[str, ...] = ("create_",),
                 read_prefixes: tuple[str, ...] = ("get_", "list_")) -> None:
        self.delay = delay
        self.clock = clock
        self.name_params = name_params
        self.create_prefixes = create_prefixes
        self.read_prefixes = read_prefixes
        self._created: dict[str, float] = {}
        self._lock = threading.Lock()

    def _name(self, call: CallRecord) -> str | None:
        for key in self.name_params:
            value = call.params.get(key)
            if isinstance(value, str):
                return value
        return None

    def __call__(self, call: CallRecord) -> str | None:
        """Fault: answers "not found" for a name until it has existed long enough, as a lagging cloud does."""
        verb = call.operation.rsplit(".", 1)[-1]
        name = self._name(call)
        if name is None:
            return None
        now = self.clock()
        with self._lock:
            if verb.startswith(self.create_prefixes):
                self._created.setdefault(name, now)
                return None
            created = self._created.get(name)
        if created is not None and verb.startswith(self.read_prefixes) and now - created < self.delay:
            return NOT_FOUND
        return None
