"""The AWS backend: IAM roles for keyless workloads, read in batches, converged exactly.

Every boto3 call goes through the call seam (``self.iam.<operation>``). botocore's own
retries are off so that the seam's count is the true number of requests and its retry
policy is the only one.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
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
    to_cloud_error,
)
from ...config import Config
from ...errors import CloudError, ConflictError, Diagnostic, UserError
from ...model import (
    MARKER_KEYS,
    Change,
    CompiledWorkload,
    DesiredIdentity,
    ObservedIdentity,
)
from . import render

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
                  | ConnectTimeoutError):
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


class AwsProvider:
    """IAM roles (keyless) for workloads; see the module docstring."""

    name = "aws"

    def __init__(self, config: Config, seam: CallSeam) -> None:
        self.config = config
        self.seam = seam
        seam.register("aws", classify, make_fault)
        self._clients: dict[tuple[str, str], SeamClient] = {}
        self._lock = threading.Lock()
        self._oidc: dict[str, set[str]] = {}

    # --- clients ---------------------------------------------------------------------

    def _session(self, target: str) -> boto3.session.Session:
        access = self.config.aws.accounts.get(target)
        if self.config.aws.sandboxCredentials:
            return boto3.session.Session(aws_access_key_id="testing",
                                         aws_secret_access_key="testing",  # nosec B106 - sandbox only
                                         region_name="us-east-1")
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
        raw = session.client(service, endpoint_url=endpoint, config=boto_config)  # type: ignore[call-overload]
        access = self.config.aws.accounts.get(target)
        if access and access.roleArn:
            sts = SeamClient(self.seam, "aws", "sts", session.client(
                "sts", endpoint_url=endpoint, config=boto_config))
            creds = sts.assume_role(RoleArn=access.roleArn,
                                    RoleSessionName="workload-ids")["Credentials"]
            raw = boto3.session.Session(
                aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"], region_name=session.region_name,
            ).client(service, endpoint_url=endpoint, config=boto_config)  # type: ignore[call-overload]
        wrapped = SeamClient(self.seam, "aws", service, raw)
        with self._lock:
            self._clients[key] = wrapped
        return wrapped

    def _cloud(self, operation: str, exc: BaseException) -> Exception:
        return to_cloud_error(self.seam, "aws", operation, exc)

    # --- pure ------------------------------------------------------------------------

    def desired(self, workload: CompiledWorkload) -> DesiredIdentity:
        if workload.loaded.workload.spec.credentials.mode == "key":
            raise UserError(f"{workload.label}: key mode on AWS arrives with credential rotation "
                            "(issue 3); use mode: keyless with federation for now")
        return render.desired_identity(workload, self.config)

    def static_checks(self, workload: CompiledWorkload) -> list[Diagnostic]:
        return render.static_checks(workload, self.config)

    def outputs(self, desired: DesiredIdentity) -> dict[str, str]:
        return {"identity": desired.name, "role_arn": desired.address, "provider": "aws",
                "account": desired.workload.target}

    # --- reads -----------------------------------------------------------------------

    def _check_account(self, target: str, arn: str) -> None:
        account = arn.split(":")[4] if arn.count(":") >= 5 else ""
        if account and account != target:
            raise UserError(
                f"the AWS credentials in use reach account {account}, but the manifest targets "
                f"{target}; use credentials for {target} (or map it under aws.accounts in the config)")

    def observe_one(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        target = desired.workload.target
        iam = self.client(target, "iam")
        name = desired.name
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except ClientError as exc:
            info = classify(exc)
            if info and info.kind == NOT_FOUND:
                return None
            raise self._cloud("iam.get_role", exc) from exc
        self._check_account(target, role["Arn"])
        tags = _tags(role.get("Tags"))
        documents = {"trust": render.canonical(role.get("AssumeRolePolicyDocument", {}))}
        foreign: list[str] = []
        if tags.get(MARKER_KEYS[0]) is not None:
            try:
                names = [n for page in self._pages(iam, "list_role_policies", "PolicyNames",
                                                   RoleName=name) for n in page]
                if render.POLICY_NAME in names:
                    doc = iam.get_role_policy(RoleName=name, PolicyName=render.POLICY_NAME)
                    documents["policy"] = render.canonical(doc["PolicyDocument"])
                attached = [p["PolicyArn"] for page in self._pages(
                    iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
                    for p in page]
            except ClientError as exc:
                raise self._cloud("iam.read_role", exc) from exc
            foreign = [f"inline:{n}" for n in names if n != render.POLICY_NAME]
            foreign += [f"attached:{arn}" for arn in attached]
        return self._observed(target, role, tags, documents, foreign)

    def _observed(self, target: str, role: Mapping[str, Any], tags: dict[str, str],
                  documents: dict[str, str], foreign: list[str]) -> ObservedIdentity:
        boundary = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn", "")
        settings = {"path": role.get("Path", ""), "boundary": boundary}
        if "MaxSessionDuration" in role:
            settings["maxSessionDuration"] = str(role["MaxSessionDuration"])
        settings["description"] = role.get("Description", "")
        return ObservedIdentity(
            provider="aws", target=target, kind="role", name=role["RoleName"], address=role["Arn"],
            tags=tags, documents=documents, settings=settings, foreign=tuple(foreign),
            extra={"lastUsed": (role.get("RoleLastUsed") or {}).get("LastUsedDate")})

    def _pages(self, client: SeamClient, operation: str, key: str,
               **kwargs: Any) -> Iterator[list[Any]]:
        """Each page is one call through the seam (IAM's Marker/IsTruncated protocol)."""
        marker: str | None = None
        while True:
            params = dict(kwargs)
            if marker:
                params["Marker"] = marker
            page = getattr(client, operation)(**params)
            yield page.get(key, [])
            if not page.get("IsTruncated"):
                return
            marker = page.get("Marker")

    def observe_scope(self, target: str) -> list[ObservedIdentity]:
        """Two paged walks: ``get_account_authorization_details`` (policies, tags, boundary,
        last use of every role) and ``list_roles`` under our path (session duration and
        description, which the first walk lacks)."""
        iam = self.client(target, "iam")
        path = self.config.aws.rolePath
        try:
            details = [r for page in self._pages(iam, "get_account_authorization_details",
                                                 "RoleDetailList", Filter=["Role"], MaxItems=1000)
                       for r in page]
            listed = {r["RoleName"]: r for page in self._pages(
                iam, "list_roles", "Roles", PathPrefix=path, MaxItems=1000) for r in page}
        except ClientError as exc:
            raise self._cloud("iam.get_account_authorization_details", exc) from exc
        observed: list[ObservedIdentity] = []
        for role in details:
            self._check_account(target, role["Arn"])
            tags = _tags(role.get("Tags"))
            ours = tags.get(MARKER_KEYS[0]) is not None or role.get("Path") == path
            if not ours and not role["RoleName"].startswith(self.config.aws.namePrefix + "_"):
                continue
            documents = {"trust": render.canonical(role.get("AssumeRolePolicyDocument", {}))}
            foreign: list[str] = []
            for inline in role.get("RolePolicyList", []):
                if inline["PolicyName"] == render.POLICY_NAME:
                    documents["policy"] = render.canonical(inline["PolicyDocument"])
                else:
                    foreign.append(f"inline:{inline['PolicyName']}")
            foreign += [f"attached:{p['PolicyArn']}" for p in role.get("AttachedManagedPolicies", [])]
            merged = {**role, **{k: v for k, v in listed.get(role["RoleName"], {}).items()
                                 if k in ("MaxSessionDuration", "Description")}}
            observed.append(self._observed(target, merged, tags, documents, foreign))
        return observed

    def preflight(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
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
                    d.workload.loaded.position("spec", "credentials", "federation", index),
                    f"account {d.workload.target} has no IAM OIDC identity provider for "
                    f"https://{issuer}; create it first: aws iam create-open-id-connect-provider "
                    f"--url https://{issuer} --client-id-list sts.amazonaws.com"))
        return problems

    @staticmethod
    def _federation_index(workload: CompiledWorkload, issuer: str) -> int:
        for i, fed in enumerate(workload.loaded.workload.spec.credentials.federation):
            if fed.kind == "github-actions" and issuer == render.GITHUB_ISSUER:
                return i
            if fed.kind == "kubernetes" and render.issuer_host_path(getattr(fed, "issuer", "")) == issuer:
                return i
        return 0

    def _oidc_providers(self, target: str) -> set[str]:
        with self._lock:
            cached = self._oidc.get(target)
        if cached is not None:
            return cached
        iam = self.client(target, "iam")
        try:
            arns = {p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]}
        except ClientError as exc:
            raise self._cloud("iam.list_open_id_connect_providers", exc) from exc
        for arn in arns:
            self._check_account(target, arn)
        with self._lock:
            self._oidc[target] = arns
        return arns

    def verify_target(self, target: str) -> None:
        sts = self.client(target, "sts")
        try:
            arn = sts.get_caller_identity()["Arn"]
        except ClientError as exc:
            raise self._cloud("sts.get_caller_identity", exc) from exc
        self._check_account(target, arn)

    def current_target(self) -> str:
        """The account the ambient credentials reach."""
        sts = self.client("", "sts")
        try:
            return str(sts.get_caller_identity()["Account"])
        except ClientError as exc:
            raise self._cloud("sts.get_caller_identity", exc) from exc

    # --- plan ------------------------------------------------------------------------

    def diff(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> list[Change]:
        w = desired.workload

        def change(action: str, **details: Any) -> Change:
            return Change(workload=w.label, provider="aws", target=w.target, action=action,
                          identity=desired.name, details=details, desired=desired,
                          observed=observed)

        want_policy = desired.documents.get("policy", "")
        if observed is None:
            return [change(
                "create", kind=desired.kind, address=desired.address,
                permissions=_diff_pairs(set(), permission_pairs(want_policy), "action", "resource"),
                trust=_diff_pairs(set(), trust_pairs(desired.documents.get("trust", "")),
                                  "principal", "subject"))]
        if observed.marker is None:
            raise ConflictError(
                f"{w.label}: IAM role {observed.name} exists in account {w.target} but does not "
                "carry the workload-ids ownership tags, so it will not be modified",
                "rename the workload, or delete or rename that role if it is truly unused; "
                "workload-ids never adopts a role it did not create")
        changes: list[Change] = []
        have_trust = observed.documents.get("trust", "")
        want_trust = desired.documents.get("trust", "")
        if _normal(have_trust or "{}") != _normal(want_trust or "{}"):
            changes.append(change("update-trust", trust=_diff_pairs(
                trust_pairs(have_trust), trust_pairs(want_trust), "principal", "subject")))
        have_policy = observed.documents.get("policy", "")
        if _normal(have_policy or "{}") != _normal(want_policy or "{}"):
            changes.append(change("update-permissions", permissions=_diff_pairs(
                permission_pairs(have_policy), permission_pairs(want_policy), "action", "resource")))
        for item in observed.foreign:
            changes.append(change("remove-foreign-policy", policy=item))
        settings = {k: {"from": observed.settings.get(k, ""), "to": v}
                    for k, v in desired.settings.items()
                    if k not in ("path", "boundary") and observed.settings.get(k, "") != v}
        if settings:
            changes.append(change("update-settings", settings=settings))
        if observed.settings.get("boundary", "") != desired.settings.get("boundary", ""):
            changes.append(change("update-boundary", boundary={
                "from": observed.settings.get("boundary", ""), "to": desired.settings["boundary"]}))
        tags = {k: {"from": observed.tags.get(k, ""), "to": v} for k, v in desired.tags.items()
                if observed.tags.get(k) != v}
        if tags:
            # Last: the manifest digest is recorded only once everything else matches.
            changes.append(change("update-tags", tags=tags))
        return changes

    # --- apply -----------------------------------------------------------------------

    def apply(self, change: Change) -> None:
        assert change.desired is not None
        desired = change.desired
        iam = self.client(desired.workload.target, "iam")
        name = desired.name
        operation = f"iam.{change.action}"
        try:
            if change.action == "create":
                self._create(iam, desired)
            elif change.action == "update-trust":
                iam.update_assume_role_policy(RoleName=name, PolicyDocument=desired.documents["trust"])
            elif change.action == "update-permissions":
                self._put_policy(iam, desired)
            elif change.action == "remove-foreign-policy":
                kind, _, ref = str(change.details["policy"]).partition(":")
                if kind == "inline":
                    self._ignore_missing(iam.delete_role_policy, RoleName=name, PolicyName=ref)
                else:
                    self._ignore_missing(iam.detach_role_policy, RoleName=name, PolicyArn=ref)
            elif change.action == "update-settings":
                iam.update_role(RoleName=name, Description=desired.settings.get("description", ""),
                                MaxSessionDuration=int(desired.settings["maxSessionDuration"]))
            elif change.action == "update-boundary":
                if desired.settings["boundary"]:
                    iam.put_role_permissions_boundary(RoleName=name,
                                                      PermissionsBoundary=desired.settings["boundary"])
                else:
                    self._ignore_missing(iam.delete_role_permissions_boundary, RoleName=name)
            elif change.action == "update-tags":
                iam.tag_role(RoleName=name, Tags=[{"Key": k, "Value": v}
                                                  for k, v in desired.tags.items()])
            else:  # pragma: no cover - plan and apply are written together
                raise ValueError(f"unknown change {change.action}")
        except ClientError as exc:
            raise self._cloud(operation, exc) from exc

    def _ignore_missing(self, fn: Any, **kwargs: Any) -> None:
        try:
            fn(**kwargs)
        except ClientError as exc:
            info = classify(exc)
            if not info or info.kind != NOT_FOUND:
                raise

    def _read_after_exists(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """Read a role that IAM says exists; reads may lag writes for a few seconds."""
        for attempt in range(5):
            observed = self.observe_one(desired)
            if observed is not None:
                return observed
            self.seam.sleep(min(8.0, 0.5 * 2 ** attempt))
        return None

    def _put_policy(self, iam: SeamClient, desired: DesiredIdentity) -> None:
        policy = desired.documents.get("policy", "")
        if json.loads(policy).get("Statement"):
            iam.put_role_policy(RoleName=desired.name, PolicyName=render.POLICY_NAME,
                                PolicyDocument=policy)
        else:
            self._ignore_missing(iam.delete_role_policy, RoleName=desired.name,
                                 PolicyName=render.POLICY_NAME)

    def _create(self, iam: SeamClient, desired: DesiredIdentity) -> None:
        params: dict[str, Any] = {
            "RoleName": desired.name,
            "Path": desired.settings["path"],
            "AssumeRolePolicyDocument": desired.documents["trust"],
            "Description": desired.settings.get("description", ""),
            "MaxSessionDuration": int(desired.settings["maxSessionDuration"]),
            "Tags": [{"Key": k, "Value": v} for k, v in desired.tags.items()],
        }
        if desired.settings.get("boundary"):
            params["PermissionsBoundary"] = desired.settings["boundary"]
        try:
            iam.create_role(**params)
        except ClientError as exc:
            info = classify(exc)
            if not info or info.code != "EntityAlreadyExists":
                raise
            # Created by a run that died before it could record anything, or by a racing
            # run: adopt it only if it carries our marker, then converge it.
            observed = self._read_after_exists(desired)
            if observed is None:
                raise CloudError(
                    "iam.create_role", "EntityAlreadyExists",
                    f"role {desired.name} exists but cannot be read yet",
                    "IAM is still propagating a recent change; rerun in a minute "
                    "(reruns converge)") from exc
            if observed.marker is None:
                raise ConflictError(
                    f"IAM role {desired.name} appeared in account {desired.workload.target} "
                    "without workload-ids ownership tags",
                    "find out who created it; workload-ids will not adopt it") from exc
            for follow_up in self.diff(desired, observed):
                self.apply(follow_up)
            return
        self._put_policy(iam, desired)
