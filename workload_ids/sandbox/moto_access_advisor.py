"""IAM access advisor in the local AWS: ``GenerateServiceLastAccessedDetails`` and
``GetServiceLastAccessedDetails``, which moto 5.2 does not implement.

It teaches moto's own IAM response class the two operations (as :mod:`.moto_users`
teaches it user boundaries), with state kept beside each moto IAM backend, so it is
reset with moto's. The shapes are AWS's: a job id from the first call; the second answers
``IN_PROGRESS`` until the job has run ``job_seconds`` by the advisor's clock, then
``COMPLETED`` with one entry per service the entity's policies allow (sorted by
namespace, ``MaxItems`` a page with ``Marker``), each with when and in which region it
was last used and by whom; an ``ACTION_LEVEL`` job adds ``TrackedActionsLastAccessed``
for the services AWS tracks action by action, listing the actions used (AWS leaves out
tracked actions nobody used). A job can be made to fail (``FAILED`` with an ``Error``).

Nothing here watches real requests: tests and the sandbox say what AWS would have seen
with :func:`record_access` (which also moves the role's RoleLastUsed and the access key's
last use, as AWS does).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from .common.clock import Clock

# Services AWS tracks action by action (the access advisor documentation's list, in part).
ACTION_LEVEL_SERVICES = frozenset({"s3", "ec2", "iam", "lambda", "sqs", "sns", "secretsmanager",
                                   "kms", "dynamodb", "sts"})
SERVICE_NAMES = {
    "s3": "Amazon S3", "sqs": "Amazon SQS", "sns": "Amazon SNS", "ec2": "Amazon EC2",
    "iam": "AWS Identity and Access Management", "lambda": "AWS Lambda",
    "secretsmanager": "AWS Secrets Manager", "kms": "AWS Key Management Service",
    "dynamodb": "Amazon DynamoDB", "sts": "AWS Security Token Service", "logs": "Amazon CloudWatch Logs",
    "ecr": "Amazon Elastic Container Registry", "ssm": "AWS Systems Manager",
}
DEFAULT_JOB_SECONDS = 2.0  # AWS makes a small report in a few seconds
DEFAULT_PAGE = 100
_INSTALLED = False
_LOCK = threading.Lock()


@dataclass
class _Access:
    """The last use of one service (and its tracked actions) by one entity."""

    at: datetime
    region: str
    actions: dict[str, tuple[datetime, str]] = field(default_factory=dict)  # name -> (at, region)


@dataclass
class _Job:
    arn: str
    granularity: str
    created: float
    error: tuple[str, str] | None  # (code, message) of a job that fails


@dataclass
class AccessAdvisor:
    """One moto IAM backend's access advisor state: uses seen, jobs asked for."""

    clock: Clock = time.time
    job_seconds: float = DEFAULT_JOB_SECONDS
    # principal ARN -> namespace -> last access
    seen: dict[str, dict[str, _Access]] = field(default_factory=dict)
    jobs: dict[str, _Job] = field(default_factory=dict)
    # ARN -> (code, message): the next job for that entity fails (cleared when taken)
    failing: dict[str, tuple[str, str]] = field(default_factory=dict)
    generated: int = 0  # jobs asked for (benchmarks report it)


def advisor(account: str, partition: str = "aws") -> AccessAdvisor:
    """The access advisor of moto's IAM backend for ``account`` (made on first use)."""
    from moto.iam.models import iam_backends
    backend = iam_backends[account][partition]
    with _LOCK:
        found = getattr(backend, "_workload_ids_access_advisor", None)
        if not isinstance(found, AccessAdvisor):
            found = AccessAdvisor()
            backend._workload_ids_access_advisor = found  # type: ignore[attr-defined]
        return found


def record_access(account: str, principal_arn: str, service: str, *, action: str | None = None,
                  at: datetime | None = None, region: str = "us-east-1",
                  access_key_id: str | None = None) -> None:
    """AWS saw ``principal_arn`` use ``service`` (with ``action``, its name without the
    namespace, where given) at ``at`` (now by the advisor's clock) in ``region``. A role's
    RoleLastUsed moves too; with ``access_key_id``, that key's last use."""
    state = advisor(account)
    when = at or datetime.fromtimestamp(state.clock(), UTC)
    namespace = service.lower()
    with _LOCK:
        access = state.seen.setdefault(principal_arn, {}).get(namespace)
        if access is None or access.at < when:
            actions = access.actions if access else {}
            access = _Access(when, region, actions)
            state.seen[principal_arn][namespace] = access
        if action is not None:
            old = access.actions.get(action)
            if old is None or old[0] < when:
                access.actions[action] = (when, region)
    from moto.iam.models import AccessKeyLastUsed, iam_backends
    backend = iam_backends[account]["aws"]
    if ":role/" in principal_arn:
        role = backend.get_role_by_arn(principal_arn)
        if role.last_used is None or _aware(role.last_used) < when:
            role.last_used, role.last_used_region = when, region  # type: ignore[assignment]
    if access_key_id is not None:
        key = backend.access_keys[access_key_id]
        if key.last_used is None or _aware(key.last_used.timestamp) < when:
            key.last_used = AccessKeyLastUsed(timestamp=when, service=namespace, region=region)


def _aware(value: datetime) -> datetime:
    """moto keeps naive UTC times (``utcnow``)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def fail_next_job(account: str, principal_arn: str, code: str = "InternalFailure",
                  message: str = "An internal error occurred while generating the report.") -> None:
    """The next job for ``principal_arn`` ends FAILED with ``code`` and ``message``."""
    state = advisor(account)
    with _LOCK:
        state.failing[principal_arn] = (code, message)


# --- the entity and what its policies allow -------------------------------------------


def _entity(backend: Any, arn: str) -> Any:
    from moto.iam.exceptions import InvalidInput, NoSuchEntity
    if ":role/" in arn:
        try:
            return backend.get_role_by_arn(arn)
        except Exception:
            raise NoSuchEntity(f"Role {arn} does not exist.") from None
    if ":user/" in arn:
        for user in backend.users.values():
            if user.arn == arn:
                return user
        raise NoSuchEntity(f"User {arn} does not exist.")
    raise InvalidInput(f"ARN {arn} is not valid for access advisor: use a user, group, role or policy.")


def _default_document(policy: Any) -> Any:
    """A managed policy's default version's document (moto keeps no ``document`` on the
    policy itself: its versions hold them)."""
    for version in getattr(policy, "versions", []):
        if getattr(version, "is_default", False):
            return version.document
    return getattr(policy, "document", None)


def _documents(backend: Any, entity: Any) -> list[Any]:
    docs: list[Any] = list(entity.policies.values())
    docs += [_default_document(p) for p in entity.managed_policies.values()]
    for group in getattr(backend, "groups", {}).values():
        if entity in getattr(group, "users", []):
            docs += list(group.policies.values())
            docs += [_default_document(p) for p in group.managed_policies.values()]
    return docs


def _namespaces(documents: list[Any], used: set[str]) -> set[str]:
    """Every service an Allow statement names; ``*`` allows every service (shown: those used)."""
    out: set[str] = set()
    for doc in documents:
        if isinstance(doc, str):
            try:
                doc = json.loads(unquote(doc) if doc.startswith("%") else doc)
            except ValueError:
                continue
        statements = doc.get("Statement", []) if isinstance(doc, dict) else []
        for st in statements if isinstance(statements, list) else [statements]:
            if not isinstance(st, dict) or st.get("Effect") != "Allow":
                continue
            actions = st.get("Action", [])
            for action in [actions] if isinstance(actions, str) else actions:
                if action == "*":
                    out |= used
                elif ":" in str(action):
                    out.add(str(action).split(":", 1)[0].lower())
    return out


def _service(namespace: str, access: _Access | None, arn: str, granularity: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"ServiceName": SERVICE_NAMES.get(namespace, f"AWS {namespace}"),
                             "ServiceNamespace": namespace, "TotalAuthenticatedEntities": 0}
    if access is not None:
        entry.update({"LastAuthenticated": access.at, "LastAuthenticatedEntity": arn,
                      "LastAuthenticatedRegion": access.region, "TotalAuthenticatedEntities": 1})
    if granularity == "ACTION_LEVEL" and namespace in ACTION_LEVEL_SERVICES and access and access.actions:
        entry["TrackedActionsLastAccessed"] = [
            {"ActionName": name, "LastAccessedEntity": arn, "LastAccessedTime": when,
             "LastAccessedRegion": region}
            for name, (when, region) in sorted(access.actions.items())]
    return entry


# --- moto's response class, taught the two operations ---------------------------------


def install() -> None:
    """Idempotent; call before moto serves a request."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.core.responses import ActionResult
    from moto.iam import responses
    from moto.iam.exceptions import InvalidInput, NoSuchEntity

    def generate_service_last_accessed_details(self: Any) -> Any:
        arn = self._get_param("Arn")
        granularity = self._get_param("Granularity") or "SERVICE_LEVEL"
        if granularity not in ("SERVICE_LEVEL", "ACTION_LEVEL"):
            raise InvalidInput(f"Granularity {granularity} is not valid.")
        _entity(self.backend, arn)
        state = advisor(self.current_account, self.partition)
        job_id = str(uuid.uuid4())
        with _LOCK:
            state.jobs[job_id] = _Job(arn, granularity, state.clock(), state.failing.pop(arn, None))
            state.generated += 1
        return ActionResult({"JobId": job_id})

    def get_service_last_accessed_details(self: Any) -> Any:
        job_id = self._get_param("JobId")
        size = int(self._get_param("MaxItems") or DEFAULT_PAGE)
        if not 1 <= size <= 1000:
            raise InvalidInput("MaxItems must be between 1 and 1000.")
        marker = self._get_param("Marker")
        state = advisor(self.current_account, self.partition)
        with _LOCK:
            job = state.jobs.get(job_id)
        if job is None:
            raise NoSuchEntity(f"No job with ID {job_id} was found.")
        now = state.clock()
        created = datetime.fromtimestamp(job.created, UTC)
        answer: dict[str, Any] = {"JobType": job.granularity, "JobCreationDate": created,
                                  "ServicesLastAccessed": []}
        if now - job.created < state.job_seconds:
            return ActionResult({**answer, "JobStatus": "IN_PROGRESS"})
        done = datetime.fromtimestamp(job.created + state.job_seconds, UTC)
        if job.error is not None:
            return ActionResult({**answer, "JobStatus": "FAILED", "JobCompletionDate": done,
                                 "Error": {"Code": job.error[0], "Message": job.error[1]}})
        entity = _entity(self.backend, job.arn)
        with _LOCK:
            used = dict(state.seen.get(job.arn, {}))
        namespaces = sorted(_namespaces(_documents(self.backend, entity), set(used)))
        if marker:
            namespaces = [n for n in namespaces if n > marker]
        page = namespaces[:size]
        answer.update({"JobStatus": "COMPLETED", "JobCompletionDate": done,
                       "ServicesLastAccessed": [_service(n, used.get(n), job.arn, job.granularity)
                                                for n in page],
                       "IsTruncated": len(namespaces) > size})
        if len(namespaces) > size:
            answer["Marker"] = page[-1]
        return ActionResult(answer)

    responses.IamResponse.generate_service_last_accessed_details = (  # type: ignore[attr-defined]
        generate_service_last_accessed_details)
    responses.IamResponse.get_service_last_accessed_details = (  # type: ignore[attr-defined]
        get_service_last_accessed_details)
    _INSTALLED = True
