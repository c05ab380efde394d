"""Workload manifests: pydantic models and loading that keeps ``FILE:LINE:COLUMN``.

Shape is checked here (types, required and unknown fields, name formats); meaning
(templates, resource kinds, accounts, escalation, duplicates) is checked by
:mod:`workload_ids.validate`, which reports at the same positions.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import core_schema

from .durations import DURATION, parse_duration
from .errors import Diagnostic, Position
from .resources import GUID, RESOURCE_GROUP, RESOURCE_GROUP_RULE
from .yamlpos import Document, load_documents

API_VERSION = "workload-ids/v1"

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue

_NAME = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_NAME_RE = re.compile(_NAME)


# Python's \w and \d match letters and digits of every script, JavaScript's only ASCII ones;
# neither reads the other's spelling of "any letter". Written out for editors, they match
# the same ASCII characters and every non-ASCII one: never stricter than Python's.
_ANY_WORD = "0-9A-Za-z_\x80-\U0010ffff"
_ANY_DIGIT = "0-9\x80-\U0010ffff"


def portable_pattern(source: str) -> str:
    """``source`` (a Python pattern, matched whole) as a JSON Schema ``pattern`` that Python
    and JavaScript (yaml-language-server) both read, and that accepts whatever ``source``
    accepts: anchored, named groups unnamed, ``\\w`` and ``\\d`` widened as above."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(source):
        c = source[i]
        if c == "\\" and i + 1 < len(source):
            pair = source[i:i + 2]
            i += 2
            wide = {"\\w": _ANY_WORD, "\\d": _ANY_DIGIT}.get(pair)
            out.append(pair if wide is None else wide if in_class else f"[{wide}]")
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "^(?:" + re.sub(r"\(\?P<[A-Za-z_]\w*>", "(", "".join(out)) + ")$"


@dataclass(frozen=True, slots=True)
class _Checked:
    """A string check, and the same check said in JSON Schema for editors.

    The field's JSON Schema (:mod:`workload_ids.schema`) gets ``pattern`` (a Python pattern
    matched whole, written out by :func:`portable_pattern` when the schema is made, not at
    import) and ``shown``: lengths, and ``patternErrorMessage``, which yaml-language-server
    shows instead of the bare pattern. They may say less than ``check`` does, never more:
    an editor must not flag what ``validate`` accepts."""

    check: Callable[[str], str]
    pattern: str | None
    shown: tuple[tuple[str, Any], ...] = ()

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        if self.pattern is not None:
            out["pattern"] = portable_pattern(self.pattern)
        out.update(self.shown)
        return out


def _slug(label: str, low: int, high: int) -> Any:
    rule = (f"{low}-{high} characters of lowercase letters, digits and hyphens, starting and "
            "ending with a letter or digit")

    def check(value: str) -> str:
        if not (low <= len(value) <= high) or not _NAME_RE.fullmatch(value):
            raise ValueError(f"{label} {value!r} must be {rule}")
        return value
    return _Checked(check, _NAME, (("minLength", low), ("maxLength", high),
                                   ("patternErrorMessage", f"{label}: {rule}")))


def _regex(label: str, pattern: str, hint: str) -> Any:
    """A check that ``pattern`` matches the whole value."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{label} {value!r} is not valid: {hint}")
        return value
    return _Checked(check, pattern, (("patternErrorMessage", f"{label}: {hint}"),))


def _printable(label: str) -> Any:
    """Free text that is echoed in plan, apply and lint output and in CI logs: one line of
    printable characters, so it cannot forge a line (``::add-mask::`` in GitHub Actions) or
    move a terminal's cursor."""
    def check(value: str) -> str:
        bad = next((c for c in value if not c.isprintable()), None)
        if bad is not None:
            raise ValueError(f"{label} holds {bad!r} (U+{ord(bad):04X}), a control or line-break "
                             "character; write it on one line of printable characters")
        return value
    # Editors are shown the control and line-break characters; the rarer unprintable ones
    # (format characters, unassigned code points) are left to validate.
    return _Checked(check, r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]*", (
        ("patternErrorMessage", f"{label}: one line of printable characters, without tabs, "
                                "line breaks or control characters"),))


def _duration(value: str) -> str:
    parse_duration(value)
    return value


# An instant as RFC 3339 writes it, with its zone: 2026-12-31T18:00:00Z or
# 2026-12-31T19:00:00+01:00. A time without a zone means a different instant on every
# runner (and in every peer that read it as local time), so it is refused.
INSTANT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
_INSTANT_RE = re.compile(INSTANT)
_INSTANT_HINT = ("write an RFC 3339 instant with its zone, e.g. 2026-12-31T18:00:00Z (UTC) or "
                 "2026-12-31T19:00:00+01:00")


def parse_instant(value: object, label: str = "expires") -> datetime:
    """``value`` (a string, or the datetime YAML makes of an unquoted timestamp) as an aware
    UTC datetime; ValueError, saying how to write it, for anything without a zone."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{label} {value.isoformat()!r} has no time zone; {_INSTANT_HINT}")
        moment = value
    elif isinstance(value, date):
        raise ValueError(f"{label} {value.isoformat()!r} is a date, not an instant; {_INSTANT_HINT}")
    elif isinstance(value, str):
        text = value.strip()
        if not _INSTANT_RE.fullmatch(text):
            shown = _shown(value)
            zone = "" if re.search(r"(Z|[+-]\d{2}:?\d{2})$", text) else " (it has no time zone)"
            raise ValueError(f"{label} {shown} is not an RFC 3339 instant{zone}; {_INSTANT_HINT}")
        # fromisoformat reads at most microseconds; the zone is kept whole.
        head, _, tail = text.partition(".")
        if tail:
            digits = re.match(r"[0-9]+", tail)
            assert digits is not None
            text = f"{head}.{digits.group()[:6].ljust(6, '0')}{tail[digits.end():]}"
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{label} {_shown(value)} is not a valid instant ({exc}); "
                             f"{_INSTANT_HINT}") from None
    else:
        raise ValueError(f"{label} must be an RFC 3339 instant such as 2026-12-31T18:00:00Z, not "
                         f"{type(value).__name__}")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        # 9999-12-31T23:59:59-01:00 lies beyond the last instant a datetime holds in UTC.
        raise ValueError(f"{label} {_shown(value if isinstance(value, str) else value.isoformat())} "
                         "is beyond the year 9999 in UTC; write a nearer instant") from None


def format_instant(moment: datetime) -> str:
    """UTC, seconds precision, ``Z`` (:func:`clock.format_time`): the one form policies,
    conditions and messages use. Sub-second digits are dropped, which ends a grant early,
    never late."""
    from .clock import format_time
    return format_time(moment)


@dataclass(frozen=True, slots=True)
class _InstantField:
    """``expires``: a string or YAML timestamp in, the canonical UTC string kept (so the
    manifest digest and every rendering see one form)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            lambda value: format_instant(parse_instant(value)),
            json_schema_input_schema=core_schema.str_schema())

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "pattern": portable_pattern(INSTANT),
                "patternErrorMessage": f"expires: {_INSTANT_HINT}"}


Instant = Annotated[str, _InstantField()]
WorkloadName = Annotated[str, _slug("name", 3, 40)]
EnvironmentName = Annotated[str, _slug("environment", 1, 16)]
# parse_duration strips surrounding whitespace before matching.
Duration = Annotated[str, _Checked(_duration, rf"\s*{DURATION}\s*", (
    ("patternErrorMessage", "a duration: a whole number and one unit, s (seconds), m (minutes), "
                            "h (hours), d (days) or w (weeks), e.g. 12h or 30d"),))]
OwnerId = Annotated[str, _regex("owner", r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}",
                                "use the id of a person or group in the owner directory")]


class Strict(BaseModel):
    """Base of every manifest model: unknown fields are errors; values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class Metadata(Strict):
    """Who and what the workload is."""

    name: WorkloadName
    owner: OwnerId
    environment: EnvironmentName
    description: Annotated[str, Field(max_length=256), _printable("description")] = ""


class AwsTarget(Strict):
    """Where an AWS workload lives."""

    account: Annotated[str, _regex("account", r"\d{12}",
                                   'write the 12-digit account id as a quoted string, e.g. "123456789012"')]
    region: Annotated[str, _regex("region", r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d",
                                  "use an AWS region code such as eu-west-1")]
    maxSessionDuration: Duration | None = None


class GcpTarget(Strict):
    """Where a GCP workload lives."""

    project: Annotated[str, _regex("project", r"[a-z][a-z0-9-]{4,28}[a-z0-9]",
                                   "use the project id (6-30 lowercase letters, digits, hyphens)")]


class AzureTarget(Strict):
    """Where an Azure workload lives."""

    # The same rules as the subscription and group in a listed resource's ARM ID.
    subscription: Annotated[str, _regex("subscription", GUID,
                                        "use the subscription id, a GUID such as "
                                        "0b1f6471-1bf0-4dda-aec3-cb9272f09590")]
    resourceGroup: Annotated[str, _regex("resourceGroup", RESOURCE_GROUP, RESOURCE_GROUP_RULE)]
    location: Annotated[str, _regex("location", r"[a-z][a-z0-9]{1,30}",
                                    "use a location name such as westeurope")]


_POOL = _regex("workloadIdentityPool",
               r"projects/\d{1,20}/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}",
               "write projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL_ID")


class GithubActionsFederation(Strict):
    """A GitHub Actions workflow of one repository, on one ref or in one environment."""

    kind: Literal["github-actions"]
    repository: Annotated[str, _regex("repository", r"[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}",
                                      "write OWNER/REPO, e.g. acme/payments")]
    ref: Annotated[str, _regex("ref", r"refs/(heads|tags)/[^\s*?\[\]]+",
                               "write a full ref such as refs/heads/main (no wildcards)")] | None = None
    environment: Annotated[str, _regex("environment", r"[^\s*?:]{1,255}",
                                       "write a GitHub environment name (no wildcards)")] | None = None
    workloadIdentityPool: Annotated[str, _POOL] | None = None
    # Immutable ids: a renamed, transferred or deleted repository keeps its name free for
    # someone else, but never its id. Checked where the cloud can check them (trust.py).
    repositoryId: Annotated[int, Field(ge=1, lt=2**63)] | None = None
    repositoryOwnerId: Annotated[int, Field(ge=1, lt=2**63)] | None = None

    def subject(self) -> str:
        """The OIDC ``sub`` claim GitHub issues for this entry."""
        if self.environment is not None:
            return f"repo:{self.repository}:environment:{self.environment}"
        return f"repo:{self.repository}:ref:{self.ref}"


class KubernetesFederation(Strict):
    """A Kubernetes service account, trusted through its cluster's OIDC issuer."""

    kind: Literal["kubernetes"]
    issuer: Annotated[str, _regex("issuer", r"https://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~/-]*)?",
                                  "write the cluster's OIDC issuer URL, starting with https://")]
    namespace: Annotated[str, _slug("namespace", 1, 63)]
    serviceAccount: Annotated[str, _regex("serviceAccount", r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?",
                                          "use the Kubernetes service account name")]
    workloadIdentityPool: Annotated[str, _POOL] | None = None

    def subject(self) -> str:
        """The OIDC ``sub`` claim of the service account's tokens."""
        return f"system:serviceaccount:{self.namespace}:{self.serviceAccount}"


class AwsServiceFederation(Strict):
    """An AWS service that assumes the role on the workload's behalf (ECS tasks, Lambda)."""

    kind: Literal["aws-service"]
    service: Annotated[str, _regex("service", r"[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com",
                                   "write a service principal such as ecs-tasks.amazonaws.com")]


Federation = Annotated[
    GithubActionsFederation | KubernetesFederation | AwsServiceFederation,
    Field(discriminator="kind"),
]


class Rotation(Strict):
    """How often a key is replaced, and how long the old one stays valid beside the new."""

    maxAge: Duration | None = None
    overlap: Duration | None = None
    grace: Duration | None = None
    retireOnUse: bool | None = None


# Where an identity can be attached, by cloud. ``aks``/``kubernetes`` and ``ec2`` are
# accepted here only so that compile can refuse them with what to write instead.
ATTACHMENT_KINDS: dict[str, str] = {"cloud-run": "gcp", "compute-engine": "gcp", "app-service": "azure",
                                    "lambda": "aws", "ecs": "aws"}
# The service principal that assumes an AWS role for each AWS attachment kind (the trust
# an aws-service entry of that service writes).
AWS_ATTACHMENT_SERVICES: dict[str, str] = {"lambda": "lambda.amazonaws.com", "ecs": "ecs-tasks.amazonaws.com"}
AttachmentKind = Literal["cloud-run", "compute-engine", "app-service", "lambda", "ecs", "aks",
                         "kubernetes", "ec2"]


class Attachment(Strict):
    """A runtime that runs *as* the identity: the cloud hands it credentials because the
    identity is attached to it (a Cloud Run service's service account, an App Service's
    managed identity, a Lambda function's execution role), not because it federates.

    One model for every kind, so that compile can say which fields go with which kind at
    the field's own position (a union would only say "does not match any")."""

    kind: AttachmentKind
    # GCP Cloud Run: the service (or job) and its region.
    service: Annotated[str, _regex("service", r"[a-z]([a-z0-9-]{0,47}[a-z0-9])?",
                                   "write the Cloud Run service or job name (lowercase letters, "
                                   "digits, hyphens; no wildcards)")] | None = None
    region: Annotated[str, _regex("region", r"[a-z]+(-[a-z]+)+\d+",
                                  "write a Cloud Run region such as europe-west1")] | None = None
    # GCP Compute Engine: the instance and its zone.
    instance: Annotated[str, _regex("instance", r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?",
                                    "write the VM instance name (no wildcards)")] | None = None
    zone: Annotated[str, _regex("zone", r"[a-z]+(-[a-z]+)+\d+-[a-z]",
                                "write a zone such as europe-west1-b")] | None = None
    # Azure App Service / Functions: the site's resource id.
    site: Annotated[str, _regex("site", r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                                r"Microsoft\.Web/sites/[A-Za-z0-9-]{2,60}",
                                "write the site's resource id: /subscriptions/SUB/resourceGroups/RG/"
                                "providers/Microsoft.Web/sites/NAME")] | None = None
    # AWS: for reviewers only (the trust names the service, not the function or cluster).
    function: Annotated[str, _regex("function", r"[A-Za-z0-9_-]{1,64}",
                                    "write the Lambda function name (no wildcards)")] | None = None
    cluster: Annotated[str, _regex("cluster", r"[A-Za-z0-9_-]{1,255}",
                                   "write the ECS cluster name (no wildcards)")] | None = None
    # Who may attach the identity to such a runtime: each is a trust root (compile checks
    # them against trust.allowedDeployers).
    deployers: Annotated[list[Annotated[str, _printable("deployer")]], Field(max_length=20)] = []


class Credentials(Strict):
    """How the workload obtains credentials: federation or attachment (keyless), or a
    rotated key."""

    mode: Literal["keyless", "key"] = "keyless"
    federation: list[Federation] = []
    # None (not []) when absent: the manifest digest (exclude_none) of every workload
    # written before attachments existed stays what it was.
    attachedTo: Annotated[list[Attachment], Field(min_length=1, max_length=10)] | None = None
    rotation: Rotation | None = None


class Escalation(Strict):
    """Why this entry may hold actions that can escalate privilege."""

    reason: Annotated[str, Field(min_length=10, max_length=500), _printable("escalation.reason")]


class AccessEntry(Strict):
    """One grant: a named template, or raw actions with a reason, on listed resources."""

    template: str | None = None
    actions: list[str] | None = None
    dataActions: list[str] | None = None
    resources: Annotated[list[str], Field(min_length=1, max_length=100)]
    reason: Annotated[str, Field(min_length=3, max_length=500), _printable("reason")] | None = None
    escalation: Escalation | None = None
    # A time-bound grant: ends at ``expires`` (enforced by the cloud's own condition on AWS
    # and GCP, by the next apply on Azure), with the change or ticket that approved it.
    expires: Instant | None = None
    approval: Annotated[str, Field(min_length=3, max_length=100), _printable("approval")] | None = None


Runtime = Literal["github-actions", "gitlab-ci", "kubernetes", "ecs", "lambda", "ec2",
                  "cloud-run", "gce", "azure-functions", "azure-vm", "on-premises",
                  "vendor-hosted", "other"]
# Runtimes that can obtain short-lived credentials by federation: no key needed.
FEDERATION_CAPABLE = frozenset({"github-actions", "gitlab-ci", "kubernetes", "ecs", "lambda", "ec2",
                                "cloud-run", "gce", "azure-functions", "azure-vm"})


class Spec(Strict):
    """What the workload needs: where it runs, how it authenticates, what it reaches."""

    provider: Literal["aws", "gcp", "azure"]
    runtime: Runtime | None = None
    aws: AwsTarget | None = None
    gcp: GcpTarget | None = None
    azure: AzureTarget | None = None
    credentials: Credentials = Credentials()
    access: list[AccessEntry] = []
    # None: the config's defaults.mode / defaults.deletionPolicy (manage / delete).
    mode: Literal["manage", "observe"] | None = None
    deletionPolicy: Literal["delete", "retain"] | None = None
    # The existing identity `workload-ids adopt` took over (a role ARN, service account
    # email or managed identity resource id): it keeps its own name.
    adopted: Annotated[str, Field(min_length=1, max_length=600), _printable("adopted")] | None = None


class Workload(Strict):
    """One ``kind: Workload`` document."""

    apiVersion: Literal["workload-ids/v1"]
    kind: Literal["Workload"]
    metadata: Metadata
    spec: Spec

    def target(self) -> str:
        """The account, project or subscription the workload's identity lives in."""
        spec = self.spec
        if spec.provider == "aws" and spec.aws:
            return spec.aws.account
        if spec.provider == "gcp" and spec.gcp:
            return spec.gcp.project
        if spec.provider == "azure" and spec.azure:
            return spec.azure.subscription.lower()
        return ""

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the manifest: equal manifests, equal digests."""
        body = self.model_dump(mode="json", exclude_none=True)
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LoadedWorkload:
    """A validated manifest and where it came from."""

    workload: Workload
    source: Document

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(provider, target, environment, name): what identifies a workload."""
        w = self.workload
        return (w.spec.provider, w.target(), w.metadata.environment, w.metadata.name)

    @property
    def label(self) -> str:
        """Short human name: ``environment/name``."""
        return f"{self.workload.metadata.environment}/{self.workload.metadata.name}"

    def position(self, *loc: str | int, key: bool = False) -> Position:
        """Position of a node of this manifest, for messages."""
        return self.source.position(loc, key=key)


@dataclass(slots=True)
class LoadResult:
    """Workloads that passed shape checks, and every problem found on the way."""

    workloads: list[LoadedWorkload]
    diagnostics: list[Diagnostic]
    files: int = 0


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model that owns the field at ``loc`` (for 'did you mean' on unknown fields)."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if part in ("github-actions", "kubernetes", "aws-service"):
            model = {"github-actions": GithubActionsFederation, "kubernetes": KubernetesFederation,
                     "aws-service": AwsServiceFederation}[part]
            continue
        fields = getattr(model, "model_fields", {}) if isinstance(model, type) else {}
        field = fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        model = _unwrap_model(annotation)
        if model is None:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


_DURATION_FIELDS = frozenset({"maxAge", "overlap", "grace", "maxSessionDuration", "interval", "timeout",
                              "maxGrantDuration"})


def _shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters. A number read from YAML can be too long
    for ``repr`` (Python refuses ints over 4,300 digits), and a message quotes, not copies."""
    if isinstance(value, int) and value.bit_length() > 200:
        return "a number of more than 60 digits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _message(error: Any, loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    kind = error["type"]
    field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "value")
    if not field.isprintable():  # a name from the input: one line, no control characters
        field = field.encode("unicode_escape").decode("ascii")
    if kind == "missing":
        return f"missing required field '{field}'"
    if kind == "extra_forbidden":
        model = _model_at(loc, root)
        allowed = _field_names(model) if model else []
        close = difflib.get_close_matches(field, allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"unknown field '{field}'{hint}{listing}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"'{field}' must be one of {expected}, not {_shown(error.get('input'))}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return ("federation 'kind' must be one of 'github-actions', 'kubernetes', 'aws-service'"
                if kind == "union_tag_invalid" else "federation entry needs a 'kind'")
    if kind == "string_type" and field in _DURATION_FIELDS:
        return f"'{field}' is a duration: a string like '12h' or '30d', not {_shown(error.get('input'))}"
    if kind == "string_type":
        return f"'{field}' must be a string, not {type(error.get('input')).__name__}" + (
            " (quote numbers, e.g. \"123456789012\")" if isinstance(error.get("input"), int) else "")
    if kind in ("list_type", "model_type", "dict_type", "model_attributes_type"):
        expected = "a list" if kind == "list_type" else "a mapping"
        return f"'{field}' must be {expected}, not {type(error.get('input')).__name__}"
    if kind == "string_too_short":
        return f"'{field}' is too short: write at least {error.get('ctx', {}).get('min_length')} characters"
    if kind == "string_too_long":
        return f"'{field}' is too long: at most {error.get('ctx', {}).get('max_length')} characters"
    if kind == "too_long":
        return (f"'{field}' has too many items: at most {error.get('ctx', {}).get('max_length')}; "
                "split the workload or the entry")
    if kind == "too_short":
        return f"'{field}' must not be empty" if error.get("ctx", {}).get("min_length") == 1 else \
            f"'{field}' is too short: {error['msg'].lower()}"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def shape_diagnostics(error: ValidationError, doc: Document,
                      root: type[BaseModel] | None = None) -> list[Diagnostic]:
    """Turn pydantic's errors into positioned diagnostics (``root``: the validated model)."""
    root = root or Workload
    items = error.errors(include_url=False)
    # A misspelt required field is one mistake, not two: "unknown field 'resouces'; did you
    # mean 'resources'?" says all, so "missing required field 'resources'" beside it goes.
    misspelt: set[tuple[Any, ...]] = set()
    for item in items:
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            model = _model_at(loc, root)
            close = difflib.get_close_matches(loc[-1], _field_names(model) if model else [], n=1)
            if close:
                misspelt.add((*loc[:-1], close[0]))
    out: list[Diagnostic] = []
    for item in items:
        loc = tuple(item["loc"])
        if item["type"] == "missing" and loc in misspelt:
            continue
        pos = doc.position(loc, key=item["type"] == "extra_forbidden")
        out.append(Diagnostic(pos, _message(item, loc, root)))
    return out


def manifest_files(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, bool]], list[Diagnostic]]:
    """Expand arguments to files. ``True`` marks files found in a directory (non-manifest
    documents there are skipped rather than reported). Hidden folders are not searched."""
    files: dict[str, tuple[Path, bool]] = {}
    problems: list[Diagnostic] = []
    for raw in paths:
        top = os.fspath(raw)
        if os.path.isdir(top):
            for folder, subdirs, names in os.walk(top):
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                for name in sorted(names):
                    if name.endswith((".yaml", ".yml")) and not name.startswith("."):
                        full = os.path.join(folder, name)
                        # A file named directly wins over the same file found in a folder.
                        files.setdefault(os.path.abspath(full), (Path(full), True))
        elif os.path.isfile(top):
            files[os.path.abspath(top)] = (Path(top), False)
        else:
            problems.append(Diagnostic(Position(top), "no such file or directory"))
    return sorted(files.values(), key=lambda item: str(item[0])), problems


def _display(path: Path, cwd: str) -> str:
    absolute = os.path.abspath(path)
    return os.path.relpath(absolute, cwd) if absolute.startswith(cwd + os.sep) else str(path)


_WORKLOAD_KIND = re.compile(r"^\s*kind:\s*[\"']?Workload[\"']?\s*(#.*)?$", re.MULTILINE)


def load_workloads(paths: Iterable[str | Path], *, skip_non_manifests: bool = False) -> LoadResult:
    """Load every Workload document under ``paths``; never raises on bad input.

    Files named directly must hold workloads unless ``skip_non_manifests`` (pre-commit
    passes every YAML file it sees); in directories, other documents are always skipped.
    """
    files, diagnostics = manifest_files(paths)
    result = LoadResult(workloads=[], diagnostics=diagnostics, files=len(files))
    cwd = os.getcwd()
    for path, from_directory in files:
        display = _display(path, cwd)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            result.diagnostics.append(Diagnostic(Position(display), f"cannot read file: {exc}"))
            continue
        docs, problems = load_documents(display, text)
        if problems and (from_directory or skip_non_manifests) and not _WORKLOAD_KIND.search(text):
            # YAML we cannot read and no workload in it (a Helm template beside the
            # manifests, say): skipped like any other file that is not a manifest.
            continue
        result.diagnostics.extend(problems)
        for doc in docs:
            load_document(doc, result, skip_other_kinds=from_directory or skip_non_manifests)
    return result


def load_document(doc: Document, result: LoadResult, *, skip_other_kinds: bool) -> None:
    """Validate one document's shape and add it (or its problems) to ``result``."""
    value = doc.value
    if value is None:
        return
    is_workload = isinstance(value, dict) and value.get("kind") == "Workload"
    if not is_workload:
        if skip_other_kinds:
            return
        if isinstance(value, dict) and "kind" in value:
            what = f"kind: {value['kind']!r}"
        elif isinstance(value, dict):
            what = "it has no 'kind'"
        else:
            what = f"it is a {type(value).__name__}, not a mapping"
        result.diagnostics.append(Diagnostic(
            doc.position(("kind",)),
            f"not a workload manifest ({what}); manifests have 'kind: Workload'"))
        return
    try:
        workload = Workload.model_validate(value)
    except ValidationError as exc:
        result.diagnostics.extend(shape_diagnostics(exc, doc))
        return
    result.workloads.append(LoadedWorkload(workload, doc))
