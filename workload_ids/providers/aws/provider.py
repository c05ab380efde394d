"""The AWS backend: IAM roles for keyless workloads, read in batches, converged exactly.

Every boto3 call goes through the call seam (``self.iam.<operation>``). botocore's own
retries are off so that the seam's count is the true number of requests and its retry
policy is the only one.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
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

from ... import clock
from ...calls import (
    CONFLICT,
    DENIED,
    NOT_FOUND,
    OTHER,
    THROTTLE,
    TRANSIENT,
    CallSeam,
    ErrorInfo,
    SeamClient,
)
from ...config import Config
from ...errors import CloudError, ConflictError, Diagnostic, InputErrors, UserError
from ...markers import AWS_KEY_SECRET, KeyCache, check, sign
from ...model import (
    FORGED,
    IMMUTABLE_ID,
    MANAGED_BY,
    MARKER_KEYS,
    TAG_MAC,
    TAG_MANAGED_BY,
    TAG_OWNER,
    UNAUTHENTICATED,
    Change,
    CompiledWorkload,
    DesiredIdentity,
    GithubTrust,
    IssuedKey,
    KeyInfo,
    KubernetesTrust,
    Marker,
    ObservedIdentity,
    SecretValue,
)
from ..interface import TransferCheck, no_transfers
from . import fastxml, render
from .leavers import QUARANTINE_POLICY, RetireMixin

OUR_POLICIES = (render.POLICY_NAME, QUARANTINE_POLICY)

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
_DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidClientTokenId",
    "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch", "UnrecognizedClientException",
})
_CONFLICT_CODES = frozenset({"EntityAlreadyExists", "DeleteConflict", "LimitExceeded"})
_INJECTED = {
    THROTTLE: ("Throttling", 400), TRANSIENT: ("ServiceUnavailable", 503),
    DENIED: ("AccessDenied", 403), NOT_FOUND: ("NoSuchEntity", 404), CONFLICT: ("EntityAlreadyExists", 409),
}


@dataclass(frozen=True, slots=True)
class KindOps:
    """The IAM operations for one kind of identity: roles (keyless) and users (key mode)
    take the same steps through differently named calls."""

    param: str
    result: str
    get: str
    create: str
    list_policies: str
    get_policy: str
    put_policy: str
    delete_policy: str
    list_attached: str
    detach: str
    tag: str
    put_boundary: str
    delete_boundary: str
    detail_policies: str


KIND_OPS = {
    "role": KindOps("RoleName", "Role", "get_role", "create_role", "list_role_policies",
                    "get_role_policy", "put_role_policy", "delete_role_policy",
                    "list_attached_role_policies", "detach_role_policy", "tag_role",
                    "put_role_permissions_boundary", "delete_role_permissions_boundary",
                    "RolePolicyList"),
    "user": KindOps("UserName", "User", "get_user", "create_user", "list_user_policies",
                    "get_user_policy", "put_user_policy", "delete_user_policy",
                    "list_attached_user_policies", "detach_user_policy", "tag_user",
                    "put_user_permissions_boundary", "delete_user_permissions_boundary",
                    "UserPolicyList"),
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
        if code in _CONFLICT_CODES:
            return ErrorInfo(CONFLICT, code, message)
        return ErrorInfo(OTHER, code, message)
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError
                  | ConnectTimeoutError | ResponseParserError):
        # A response botocore cannot parse is an error page from a failing front end.
        return ErrorInfo(TRANSIENT, type(exc).__name__, str(exc))
    if isinstance(exc, NoCredentialsError):
        return ErrorInfo(DENIED, "NoCredentials",
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


class JsonDocuments(Mapping[str, str]):
    """Documents as IAM returned them (parsed), turned into canonical text only when
    something asks: a no-op fleet plan compares the parsed forms and never needs it."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self._text: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        if key not in self._text:
            self._text[key] = render.canonical(self.raw[key])
        return self._text[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def _same(observed: ObservedIdentity, desired: DesiredIdentity, key: str) -> bool:
    """Whether a document in the cloud equals the desired one (key order aside)."""
    raw: Mapping[str, Any] | None = getattr(observed.documents, "raw", None)
    if raw is not None and desired.objects and (key in raw) == (key in desired.objects) \
            and (key not in raw or raw[key] == desired.objects[key]):
        return True
    have, want = observed.documents.get(key, ""), desired.documents.get(key, "")
    return have == want or _normal(have or "{}") == _normal(want or "{}")


def _tags(items: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or ()}


def _normal(doc: Any) -> str:
    """Key-order-free form of a policy document, for comparison only."""
    if isinstance(doc, str):
        doc = json.loads(doc)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def permission_pairs(doc_text: str) -> set[tuple[str, str]]:
    """(action, resource) pairs a policy allows; anything else shows as one opaque entry."""
    if not doc_text:
        return set()
    doc = json.loads(doc_text)
    pairs: set[tuple[str, str]] = set()
    for st in _as_list(doc.get("Statement")):
        if st.get("Effect") != "Allow" or "Action" not in st or "Resource" not in st:
            pairs.add((f"(statement {st.get('Sid', '?')})", json.dumps(st, sort_keys=True)))
            continue
        suffix = f" if {json.dumps(st['Condition'], sort_keys=True)}" if st.get("Condition") else ""
        for action in _as_list(st["Action"]):
            for resource in _as_list(st["Resource"]):
                pairs.add((action, resource + suffix))
    return pairs


def trust_pairs(doc_text: str) -> set[tuple[str, str]]:
    """(principal, subject) pairs a trust policy admits."""
    if not doc_text:
        return set()
    doc = json.loads(doc_text)
    pairs: set[tuple[str, str]] = set()
    for st in _as_list(doc.get("Statement")):
        principal = st.get("Principal", {})
        condition = st.get("Condition", {}).get("StringEquals", {})
        subjects = [str(s) for k, v in condition.items() if k.endswith(":sub") for s in _as_list(v)]
        if not isinstance(principal, dict):
            pairs.add((str(principal), "*"))
            continue
        for kind, values in principal.items():
            for value in _as_list(values):
                who = f"{kind}:{value}"
                for subject in subjects or [
                        "account " + str(condition.get("aws:SourceAccount", "any"))]:
                    pairs.add((who, subject))
    return pairs


def _diff_pairs(old: set[tuple[str, str]], new: set[tuple[str, str]], a: str, b: str
                ) -> dict[str, list[dict[str, str]]]:
    return {
        "added": [{a: x, b: y} for x, y in sorted(new - old)],
        "removed": [{a: x, b: y} for x, y in sorted(old - new)],
    }


class AwsProvider(RetireMixin):
    """IAM roles (keyless) for workloads; see the module docstring."""

    name = "aws"

    def __init__(self, config: Config, seam: CallSeam, transfers: TransferCheck = no_transfers) -> None:
        self.config = config
        self.seam = seam
        self.transfers = transfers
        # translate: every failure leaves the seam as a CloudError of its kind, so the code
        # below decides by kind and never reads a botocore exception (audit.sink and
        # audit.keys register "aws" the same way).
        seam.register("aws", classify, make_fault, translate=True)
        self._clients: dict[tuple[str, str], SeamClient] = {}
        self._sessions: dict[str, boto3.session.Session] = {}
        self._verifiers: dict[str, SeamClient] = {}
        self._lock = threading.Lock()
        self._caller_lock = threading.Lock()
        # boto3 documents sessions as unsafe to share between threads, and apply's threads
        # share the account's session to reuse its loaded models: clients are built from it
        # one at a time. The clients themselves are thread-safe and used concurrently.
        self._building = threading.Lock()
        self._oidc: dict[str, set[str]] = {}
        self._policies: set[tuple[str, str]] = set()  # (account, boundary ARN) seen to exist
        self._callers: dict[str, str] = {}  # account -> the ARN our credentials are there
        self.keys = KeyCache(self._read_signing_key, self._signing_key_where)

    # --- the marker signing key --------------------------------------------------------

    def _signing_key_where(self, target: str) -> str:
        return (f"Secrets Manager secret {AWS_KEY_SECRET} in account {target} "
                f"(region {self._session(target).region_name})")

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
        self._check_account(target, str(answer.get("ARN") or ""))
        return str(answer.get("SecretString") or "")

    def marker_mac(self, target: str, name: str, immutable_id: str, marker: Marker) -> str:
        """The MAC that authenticates ``marker`` on this identity."""
        return sign(self.keys.get(target), "aws", target, name, immutable_id, marker)

    def _authenticated(self, target: str, name: str, immutable_id: str, marker: Marker,
                       tags: Mapping[str, str]) -> str | None:
        return check(self.keys.get(target), "aws", target, name, immutable_id, marker, tags.get(TAG_MAC))

    # --- clients ---------------------------------------------------------------------

    def _session(self, target: str) -> boto3.session.Session:
        """One session per account: clients of one session share loaded service models."""
        with self._lock:
            cached = self._sessions.get(target)
        if cached is None:
            cached = self._new_session(target)
            fastxml.install(cached._session)
            with self._lock:
                cached = self._sessions.setdefault(target, cached)  # one session per account
        return cached

    def _new_session(self, target: str) -> boto3.session.Session:
        access = self.config.aws_access(target)
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
        session = self._session(target)
        boto_config = BotoConfig(retries={"total_max_attempts": 1}, connect_timeout=5,
                                 read_timeout=60,
                                 max_pool_connections=max(10, self.config.calls.concurrency * 2))
        endpoint = self.config.aws.endpointUrl
        with self._building:
            raw = session.client(service, endpoint_url=endpoint, config=boto_config)  # type: ignore[call-overload]
        access = self.config.aws_access(target)
        if access and access.roleArn:
            with self._building:
                raw_sts = session.client("sts", endpoint_url=endpoint, config=boto_config)
            sts = SeamClient(self.seam, "aws", "sts", raw_sts)
            creds = sts.assume_role(RoleArn=access.roleArn,
                                    RoleSessionName="workload-ids")["Credentials"]
            raw = boto3.session.Session(
                aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"], region_name=session.region_name,
            ).client(service, endpoint_url=endpoint, config=boto_config)  # type: ignore[call-overload]
        wrapped = SeamClient(self.seam, "aws", service, raw)
        with self._lock:
            return self._clients.setdefault(key, wrapped)  # a racing thread's, if it was first

    # --- pure ------------------------------------------------------------------------

    def desired(self, workload: CompiledWorkload) -> DesiredIdentity:
        return render.desired_identity(workload, self.config)

    def static_checks(self, workload: CompiledWorkload) -> list[Diagnostic]:
        return render.static_checks(workload, self.config)

    def outputs(self, desired: DesiredIdentity) -> dict[str, str]:
        out = {"identity": desired.name, f"{desired.kind}_arn": desired.address, "provider": "aws",
               "account": desired.workload.target}
        if desired.kind == "user":
            out["secret_name"] = desired.settings["secretName"]
        return out

    # --- reads -----------------------------------------------------------------------

    def _check_account(self, target: str, arn: str) -> None:
        account = arn.split(":")[4] if arn.count(":") >= 5 else ""
        if account and account != target:
            raise UserError(
                f"the AWS credentials in use reach account {account}, but the manifest targets "
                f"{target}; use credentials for {target} (or give it a profile or roleArn under "
                "targets.aws in the config)")

    def observe_one(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        target = desired.workload.target
        ops = KIND_OPS[desired.kind]
        iam = self.client(target, "iam")
        name = desired.name
        # Before anything: without the key nothing here can be believed or marked.
        self.keys.get(target)
        try:
            entity = getattr(iam, ops.get)(**{ops.param: name})[ops.result]
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None
        self._check_account(target, entity["Arn"])
        tags = _tags(entity.get("Tags"))
        documents: dict[str, str] = {}
        if desired.kind == "role":
            documents["trust"] = render.canonical(entity.get("AssumeRolePolicyDocument", {}))
        foreign: list[str] = []
        if tags.get(MARKER_KEYS[0]) is not None:
            names = [n for page in self._pages(iam, ops.list_policies, "PolicyNames",
                                               **{ops.param: name}) for n in page]
            if render.POLICY_NAME in names:
                doc = getattr(iam, ops.get_policy)(**{ops.param: name},
                                                   PolicyName=render.POLICY_NAME)
                documents["policy"] = render.canonical(doc["PolicyDocument"])
            attached = [p["PolicyArn"] for page in self._pages(
                iam, ops.list_attached, "AttachedPolicies", **{ops.param: name}) for p in page]
            groups = [g["GroupName"] for page in self._pages(
                iam, "list_groups_for_user", "Groups", UserName=name)
                for g in page] if desired.kind == "user" else []
            foreign = [f"inline:{n}" for n in names if n not in OUR_POLICIES]
            foreign += [f"attached:{arn}" for arn in attached]
            foreign += [f"group:{g}" for g in groups]
            entity = {**entity, "_quarantined": QUARANTINE_POLICY in names}
        return self._observed(target, desired.kind, entity, tags, documents, foreign)

    def _observed(self, target: str, kind: str, entity: Mapping[str, Any], tags: dict[str, str],
                  documents: Mapping[str, str], foreign: list[str]) -> ObservedIdentity:
        boundary = (entity.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn", "")
        settings = {"path": entity.get("Path", ""), "boundary": boundary}
        if kind == "role":
            if "MaxSessionDuration" in entity:
                settings["maxSessionDuration"] = str(entity["MaxSessionDuration"])
            settings["description"] = entity.get("Description", "")
        last_used = (entity.get("RoleLastUsed") or {}).get("LastUsedDate") if kind == "role" \
            else entity.get("PasswordLastUsed")
        ops = KIND_OPS[kind]
        # What cleanup needs to judge, quarantine, bundle and tear down an identity without
        # reading it again: the batch read already holds all of it.
        marker = Marker.from_tags(tags)
        name = entity[ops.param]
        immutable_id = str(entity.get("RoleId" if kind == "role" else "UserId") or "")
        misplaced = render.not_ours(self.config, kind, name, entity.get("Path", ""), marker) \
            if marker is not None else None
        extra: dict[str, Any] = {
            FORGED: misplaced,
            UNAUTHENTICATED: self._authenticated(target, name, immutable_id, marker, tags)
            if marker is not None and not misplaced else None,
            IMMUTABLE_ID: immutable_id,
            "lastUsed": last_used, "created": entity.get("CreateDate"),
            "quarantined": bool(entity.get("_quarantined")),
            "inline": {p["PolicyName"]: p["PolicyDocument"] for p in entity.get(ops.detail_policies, [])},
            "attached": [p["PolicyArn"] for p in entity.get("AttachedManagedPolicies", [])],
            "instanceProfiles": [p["InstanceProfileName"] for p in entity.get("InstanceProfileList", [])],
            "groups": list(entity.get("GroupList", [])),
        }
        return ObservedIdentity(
            provider="aws", target=target, kind=kind, name=entity[ops.param],
            address=entity["Arn"], tags=tags, documents=documents, settings=settings,
            foreign=tuple(foreign), extra=extra)

    def _pages(self, client: SeamClient, operation: str, key: str,
               **kwargs: Any) -> Iterator[list[Any]]:
        """Each page is one call through the seam (IAM's Marker/IsTruncated protocol)."""
        for page in self._pages_of(client, operation, **kwargs):
            yield page.get(key, [])

    def observe_scope(self, target: str, *, settings: bool = True) -> list[ObservedIdentity]:
        """Two paged walks: ``get_account_authorization_details`` (policies, tags, boundary,
        last use of every role and user) and, with ``settings``, ``list_roles`` under our
        path (session duration and description, which the first walk lacks)."""
        iam = self.client(target, "iam")
        path = self.config.aws.rolePath
        self.keys.get(target)  # before anything: without it nothing here can be believed

        def list_ours() -> dict[str, Any]:
            if not settings:
                return {}
            return {r["RoleName"]: r for page in self._pages(
                iam, "list_roles", "Roles", PathPrefix=path, MaxItems=1000) for r in page}

        roles: list[Any] = []
        users: list[Any] = []
        # The two walks are independent: run them side by side.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            listing = pool.submit(list_ours)
            for page in self._pages_of(iam, "get_account_authorization_details",
                                       Filter=["Role", "User"], MaxItems=1000):
                roles.extend(page.get("RoleDetailList", []))
                users.extend(page.get("UserDetailList", []))
            listed = listing.result()
        observed: list[ObservedIdentity] = []
        for kind, entities in (("role", roles), ("user", users)):
            ops = KIND_OPS[kind]
            for entity in entities:
                self._check_account(target, entity["Arn"])
                tags = _tags(entity.get("Tags"))
                name = entity[ops.param]
                ours = tags.get(MARKER_KEYS[0]) is not None or entity.get("Path") == path
                if not ours and not name.startswith(self.config.aws.namePrefix + "_"):
                    continue
                raw: dict[str, Any] = {}
                if kind == "role":
                    raw["trust"] = entity.get("AssumeRolePolicyDocument", {})
                foreign: list[str] = []
                quarantined = False
                for inline in entity.get(ops.detail_policies, []):
                    if inline["PolicyName"] == render.POLICY_NAME:
                        raw["policy"] = inline["PolicyDocument"]
                    elif inline["PolicyName"] == QUARANTINE_POLICY:
                        quarantined = True
                    else:
                        foreign.append(f"inline:{inline['PolicyName']}")
                foreign += [f"attached:{p['PolicyArn']}"
                            for p in entity.get("AttachedManagedPolicies", [])]
                foreign += [f"group:{g}" for g in entity.get("GroupList", [])]
                merged = {**entity, **{k: v for k, v in listed.get(name, {}).items()
                                       if k in ("MaxSessionDuration", "Description")},
                          "_quarantined": quarantined}
                observed.append(self._observed(target, kind, merged, tags, JsonDocuments(raw), foreign))
        return observed

    def _pages_of(self, client: SeamClient, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Whole pages, for operations that return several lists at once."""
        marker: str | None = None
        while True:
            params = dict(kwargs)
            if marker:
                params["Marker"] = marker
            page: dict[str, Any] = getattr(client, operation)(**params)
            yield page
            if not page.get("IsTruncated"):
                return
            marker = page.get("Marker")

    def preflight(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
        return []

    def preflight_writes(self, changes: Sequence[Change]) -> list[Diagnostic]:
        """The issuers of every trust policy the plan writes (a new role's, or a changed
        one) must have an IAM identity provider. Asked only then (once per account), like
        the boundary: a role whose trust stays as it is gets nothing written, so a plan
        with nothing to write reads no more (IAM refuses such a write itself; this says
        so before apply starts, with the command that fixes it)."""
        written = {(c.target, c.identity): c.desired for c in changes if c.desired is not None
                   and c.desired.kind == "role" and c.action in ("create", "update-trust")}
        return self.missing_issuers(list(written.values()))

    def missing_issuers(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
        """Every OIDC issuer a trust policy names must have an IAM identity provider."""
        problems: list[Diagnostic] = []
        for d in desired:
            issuers = render.oidc_issuers(d.workload)
            if not issuers:
                continue
            known = self._oidc_providers(d.workload.target)
            for issuer in issuers:
                arn = render.oidc_provider_arn(d.workload.target, issuer)
                if arn in known:
                    continue
                index = self._federation_index(d.workload, issuer)
                problems.append(Diagnostic(
                    d.workload.source.position("spec", "credentials", "federation", index),
                    self._missing_provider(d.workload.target, issuer)))
        return problems

    def _missing_provider(self, account: str, issuer: str) -> str:
        """What to do about an issuer IAM does not know. Registering an identity provider
        makes the account trust every token it signs, so the ready-made command is only
        handed out for issuers the platform team already listed in the config (H5)."""
        from ...trust import issuer_allowed
        url = f"https://{issuer}"
        missing = f"account {account} has no IAM OIDC identity provider for {url}"
        if issuer == render.GITHUB_ISSUER or issuer_allowed(self.config, url):
            return (f"{missing}; the platform team registers it: aws iam "
                    f"create-open-id-connect-provider --url {url} --client-id-list sts.amazonaws.com")
        return (f"{missing}, and the issuer is not in the config's trust.allowedIssuers: the "
                "platform team decides whether the account may trust it, and if so lists it "
                "under trust.allowedIssuers and registers the provider themselves")

    def _require_boundary(self, d: DesiredIdentity) -> None:
        """The boundary a create or update-boundary sets must exist: IAM would otherwise
        fail the change half-way through an apply, with its own less helpful message.
        Asked only then (once per account), so a plan with nothing to create reads no more."""
        arn = d.settings.get("boundary", "")
        if not arn or self._policy_exists(d.workload.target, arn):
            return
        named = self.config.aws.permissionsBoundary
        where = (self.config.position("aws.permissionsBoundary") if named else None) or \
            d.workload.source.position("spec", "aws")
        fix = (f"run `workload-ids bootstrap --provider aws --target {d.workload.target} --apply` "
               "to create it (or set guardrails.requirePermissionsBoundary: false to opt out)"
               if not named else
               "create that managed policy first, or remove aws.permissionsBoundary to use the "
               "one `workload-ids bootstrap --provider aws --apply` creates")
        raise InputErrors([Diagnostic(where, f"the permissions boundary {arn} does not exist in "
                                             f"account {d.workload.target}; {fix}")])

    def _policy_exists(self, target: str, arn: str) -> bool:
        with self._lock:
            if (target, arn) in self._policies:
                return True
        iam = self.client(target, "iam")
        try:
            iam.get_policy(PolicyArn=arn)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return False
        with self._lock:
            self._policies.add((target, arn))
        return True

    @staticmethod
    def _federation_index(workload: CompiledWorkload, issuer: str) -> int:
        for i, fed in enumerate(workload.trust):
            if isinstance(fed, GithubTrust) and issuer == render.GITHUB_ISSUER:
                return i
            if isinstance(fed, KubernetesTrust) and render.issuer_host_path(fed.issuer) == issuer:
                return i
        return 0

    def _oidc_providers(self, target: str) -> set[str]:
        with self._lock:
            cached = self._oidc.get(target)
        if cached is not None:
            return cached
        iam = self.client(target, "iam")
        arns = {p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]}
        for arn in arns:
            self._check_account(target, arn)
        with self._lock:
            self._oidc[target] = arns
        return arns

    def verify_target(self, target: str) -> str:
        # One question per account and run, even when a fleet's threads all ask at once.
        with self._caller_lock:
            with self._lock:
                known = self._callers.get(target)
            if known is None:
                known = str(self.client(target, "sts").get_caller_identity()["Arn"])
                with self._lock:
                    self._callers[target] = known
        self._check_account(target, known)
        return known

    def current_target(self) -> str:
        """The account the ambient credentials reach."""
        arn = str(self.client("", "sts").get_caller_identity()["Arn"])
        account = arn.split(":")[4]
        if account not in self.config.aws_mapped_accounts():
            # The same credentials reach it: a later verify_target need not ask again.
            with self._lock:
                self._callers.setdefault(account, arn)
        return account

    # --- plan ------------------------------------------------------------------------

    def diff(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> list[Change]:
        w = desired.workload

        def change(action: str, **details: Any) -> Change:
            return Change(workload=w.label, provider="aws", target=w.target, action=action,
                          identity=desired.name, details=details, desired=desired,
                          observed=observed)

        want_policy = desired.documents.get("policy", "")
        if observed is None or observed.settings.get("boundary", "") != desired.settings.get("boundary", ""):
            self._require_boundary(desired)
        if observed is None:
            details: dict[str, Any] = {
                "kind": desired.kind, "address": desired.address,
                "permissions": _diff_pairs(set(), permission_pairs(want_policy), "action", "resource")}
            if desired.kind == "role":
                details["trust"] = _diff_pairs(set(), trust_pairs(desired.documents.get("trust", "")),
                                               "principal", "subject")
            return [change("create", **details)]
        if observed.marker is None:
            raise ConflictError(
                f"{w.label}: IAM {observed.kind} {observed.name} exists in account {w.target} but "
                "does not carry the workload-ids ownership tags, so it will not be modified",
                f"rename the workload, or delete or rename that {observed.kind} if it is truly unused; "
                f"workload-ids never adopts a {observed.kind} it did not create")
        if observed.misplaced:
            # Same name, other path (IAM names are unique across paths): not one we made.
            raise ConflictError(
                f"{w.label}: IAM {observed.kind} {observed.name} in account {w.target} carries the "
                f"workload-ids tags but {observed.misplaced}, so it will not be modified",
                f"find out who created it and delete or rename it; workload-ids never adopts a "
                f"{observed.kind} outside {self.config.aws.rolePath}")
        changes: list[Change] = []
        if observed.settings.get("boundary", "") != desired.settings.get("boundary", ""):
            # First: the deployer's own policy (`workload-ids bootstrap`) allows policy
            # writes only on identities that already carry the boundary.
            changes.append(change("update-boundary", boundary={
                "from": observed.settings.get("boundary", ""), "to": desired.settings["boundary"]}))
        if desired.kind == "role" and not _same(observed, desired, "trust"):
            have_trust = observed.documents.get("trust", "")
            want_trust = desired.documents.get("trust", "")
            changes.append(change("update-trust", trust=_diff_pairs(
                trust_pairs(have_trust), trust_pairs(want_trust), "principal", "subject")))
        if not _same(observed, desired, "policy"):
            have_policy = observed.documents.get("policy", "")
            changes.append(change("update-permissions", permissions=_diff_pairs(
                permission_pairs(have_policy), permission_pairs(want_policy), "action", "resource")))
        for item in observed.foreign:
            changes.append(change("remove-foreign-policy", policy=item))
        settings = {k: {"from": observed.settings.get(k, ""), "to": v}
                    for k, v in desired.settings.items()
                    if k in ROLE_SETTINGS and desired.kind == "role"
                    and observed.settings.get(k, "") != v}
        if settings:
            changes.append(change("update-settings", settings=settings))
        tags = {k: {"from": observed.tags.get(k, ""), "to": v} for k, v in desired.tags.items()
                if observed.tags.get(k) != v
                and not (k == TAG_OWNER and self.transfers(observed, v))}
        if observed.unauthenticated:
            # At our path and name but not provably ours: plan has checked the audit log
            # does not name another owner; apply converges it and marks it anew.
            tags[TAG_MAC] = {"from": "(not valid)", "to": "(new MAC)"}
        if tags:
            # Last: the manifest digest is recorded only once everything else matches.
            changes.append(change("update-tags", tags=tags))
        return changes

    # --- apply -----------------------------------------------------------------------

    def apply(self, change: Change) -> None:
        assert change.desired is not None
        desired = change.desired
        ops = KIND_OPS[desired.kind]
        iam = self.client(desired.workload.target, "iam")
        who = {ops.param: desired.name}
        if change.action == "create":
            self._create(iam, desired)
        elif change.action == "update-trust":
            iam.update_assume_role_policy(**who, PolicyDocument=desired.documents["trust"])
        elif change.action == "update-permissions":
            self._put_policy(iam, desired)
        elif change.action == "remove-foreign-policy":
            kind, _, ref = str(change.details["policy"]).partition(":")
            if kind == "inline":
                self._ignore_missing(getattr(iam, ops.delete_policy), **who, PolicyName=ref)
            elif kind == "group":
                self._ignore_missing(iam.remove_user_from_group, **who, GroupName=ref)
            else:
                self._ignore_missing(getattr(iam, ops.detach), **who, PolicyArn=ref)
        elif change.action == "update-settings":
            iam.update_role(**who, Description=desired.settings.get("description", ""),
                            MaxSessionDuration=int(desired.settings["maxSessionDuration"]))
        elif change.action == "update-boundary":
            if desired.settings["boundary"]:
                getattr(iam, ops.put_boundary)(**who, PermissionsBoundary=desired.settings["boundary"])
            else:
                self._ignore_missing(getattr(iam, ops.delete_boundary), **who)
        elif change.action == "update-tags":
            assert change.observed is not None
            self._write_marker(iam, desired, change.observed, [
                k for k in change.details.get("tags", {}) if k != TAG_MAC])
        else:  # pragma: no cover - plan and apply are written together
            raise ValueError(f"unknown change {change.action}")

    def _write_marker(self, iam: SeamClient, desired: DesiredIdentity, observed: ObservedIdentity,
                      keys: Sequence[str]) -> None:
        """Write the changed marker tags and the MAC of the marker they make, in one call
        (with managed-by, which the deployer's policy requires of every tag write)."""
        ops = KIND_OPS[desired.kind]
        written = {k: desired.tags[k] for k in keys if k in desired.tags}
        marker = Marker.from_tags({**observed.tags, **written})
        assert marker is not None
        target = desired.workload.target
        written[TAG_MANAGED_BY] = MANAGED_BY
        written[TAG_MAC] = self.marker_mac(target, desired.name, observed.immutable_id, marker)
        getattr(iam, ops.tag)(**{ops.param: desired.name},
                              Tags=[{"Key": k, "Value": v} for k, v in written.items()])

    def _ignore_missing(self, fn: Any, **kwargs: Any) -> None:
        try:
            fn(**kwargs)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise

    def _read_after_exists(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """Read an identity IAM says exists; reads may lag writes for a few seconds."""
        for attempt in range(5):
            observed = self.observe_one(desired)
            if observed is not None:
                return observed
            self.seam.sleep(min(8.0, 0.5 * 2 ** attempt))
        return None

    def _put_policy(self, iam: SeamClient, desired: DesiredIdentity) -> None:
        ops = KIND_OPS[desired.kind]
        policy = desired.documents.get("policy", "")
        if json.loads(policy).get("Statement"):
            getattr(iam, ops.put_policy)(**{ops.param: desired.name}, PolicyName=render.POLICY_NAME,
                                         PolicyDocument=policy)
        else:
            self._ignore_missing(getattr(iam, ops.delete_policy), **{ops.param: desired.name},
                                 PolicyName=render.POLICY_NAME)

    def _create(self, iam: SeamClient, desired: DesiredIdentity) -> None:
        ops = KIND_OPS[desired.kind]
        params: dict[str, Any] = {
            ops.param: desired.name,
            "Path": desired.settings["path"],
            "Tags": [{"Key": k, "Value": v} for k, v in desired.tags.items()],
        }
        if desired.kind == "role":
            params.update(AssumeRolePolicyDocument=desired.documents["trust"],
                          Description=desired.settings.get("description", ""),
                          MaxSessionDuration=int(desired.settings["maxSessionDuration"]))
        if desired.settings.get("boundary"):
            params["PermissionsBoundary"] = desired.settings["boundary"]
        try:
            created = getattr(iam, ops.create)(**params)[ops.result]
        except CloudError as exc:
            if exc.code != "EntityAlreadyExists":
                raise
            # Created by a run that died before it could record anything, or by a racing
            # run: adopt it only if it carries our marker, then converge it.
            observed = self._read_after_exists(desired)
            if observed is None:
                raise CloudError(
                    f"iam.{ops.create}", "EntityAlreadyExists",
                    f"{desired.kind} {desired.name} exists but cannot be read yet",
                    "IAM is still propagating a recent change; rerun in a minute "
                    "(reruns converge)") from exc
            if observed.marker is None:
                raise ConflictError(
                    f"IAM {desired.kind} {desired.name} appeared in account {desired.workload.target} "
                    "without workload-ids ownership tags",
                    "find out who created it; workload-ids will not adopt it") from exc
            for follow_up in self.diff(desired, observed):
                self.apply(follow_up)
            return
        # The MAC covers the immutable id IAM has only now given: one more call. A crash
        # before it leaves an unauthenticated marker at our path and name, which the
        # rerun's apply re-marks (plan checks the audit log first).
        immutable_id = str(created.get("RoleId" if desired.kind == "role" else "UserId") or "")
        mac = self.marker_mac(desired.workload.target, desired.name, immutable_id, desired.workload.marker)
        getattr(iam, ops.tag)(**{ops.param: desired.name}, Tags=[
            {"Key": TAG_MANAGED_BY, "Value": MANAGED_BY}, {"Key": TAG_MAC, "Value": mac}])
        self._put_policy(iam, desired)

    # --- credentials (key mode) ------------------------------------------------------

    def owned_tags(self, desired: DesiredIdentity) -> dict[str, str] | None:
        """One read: None if the identity is missing, else its tags (the caller checks our
        marker and any quarantine mark)."""
        ops = KIND_OPS[desired.kind]
        iam = self.client(desired.workload.target, "iam")
        try:
            entity = getattr(iam, ops.get)(**{ops.param: desired.name})[ops.result]
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None
        self._check_account(desired.workload.target, entity["Arn"])
        tags = _tags(entity.get("Tags"))
        marker = Marker.from_tags(tags)
        if marker is not None and render.not_ours(self.config, desired.kind, desired.name,
                                                  entity.get("Path", ""), marker):
            return {}  # our tags outside our path: not ours, so never rotated
        if marker is not None and self._authenticated(
                desired.workload.target, desired.name, str(entity.get("UserId" if desired.kind == "user"
                                                                      else "RoleId") or ""), marker, tags):
            return {}  # no valid MAC: not provably ours, so never rotated
        return tags

    key_limit = 2

    def list_keys(self, desired: DesiredIdentity) -> list[KeyInfo]:
        return self.keys_of(desired.workload.target, desired.name)

    def keys_of(self, target: str, name: str) -> list[KeyInfo]:
        """Keys of IAM user ``name`` (empty if the user is gone)."""
        iam = self.client(target, "iam")
        try:
            keys = [k for page in self._pages(iam, "list_access_keys", "AccessKeyMetadata",
                                              UserName=name) for k in page]
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return []
        return sorted((KeyInfo(k["AccessKeyId"], k["Status"].lower(), k["CreateDate"]) for k in keys),
                      key=lambda k: (k.created, k.key_id))

    def create_key(self, desired: DesiredIdentity) -> IssuedKey:
        iam = self.client(desired.workload.target, "iam")
        key = iam.create_access_key(UserName=desired.name)["AccessKey"]
        return IssuedKey(key["AccessKeyId"], SecretValue(key["SecretAccessKey"]), clock.now())

    def secret_document(self, key: IssuedKey) -> dict[str, str]:
        return {"AccessKeyId": key.key_id, "SecretAccessKey": key.secret.reveal()}

    def deactivate_key(self, desired: DesiredIdentity, key_id: str) -> None:
        iam = self.client(desired.workload.target, "iam")
        iam.update_access_key(UserName=desired.name, AccessKeyId=key_id, Status="Inactive")

    def delete_key(self, desired: DesiredIdentity, key_id: str) -> None:
        iam = self.client(desired.workload.target, "iam")
        self._ignore_missing(iam.delete_access_key, UserName=desired.name, AccessKeyId=key_id)

    def key_last_used(self, desired: DesiredIdentity, key_id: str) -> datetime | None:
        iam = self.client(desired.workload.target, "iam")
        used = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
        # Our own verification signs STS calls with the new key; only use of another
        # service shows that the workload itself has switched to it.
        if str(used.get("ServiceName", "")).lower() in ("sts", "n/a", ""):
            return None
        value = used.get("LastUsedDate")
        return value if isinstance(value, datetime) else None

    def verify_key(self, desired: DesiredIdentity, key: IssuedKey) -> bool:
        """One STS GetCallerIdentity signed with ``key``: does AWS accept it as our user?"""
        with self._lock:
            sts = self._verifiers.get(key.key_id)
        if sts is None:
            # A client of the account's session with the new key's credentials: it reuses
            # the loaded service model instead of building a session per attempt.
            session = self._session(desired.workload.target)
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
        try:
            arn = sts.get_caller_identity()["Arn"]
        except CloudError as exc:
            if exc.kind in (DENIED, NOT_FOUND, THROTTLE, TRANSIENT):
                return False
            raise
        return str(arn).endswith(f":user{desired.settings['path']}{desired.name}") or \
            str(arn).endswith(f":user/{desired.name}")

    def secret_store_name(self) -> str:
        return "aws-secrets-manager"


ROLE_SETTINGS = ("maxSessionDuration", "description")
