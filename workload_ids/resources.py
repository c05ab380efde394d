"""Resource kinds: how a listed resource name is recognised on each cloud.

Templates name the kinds they accept (``s3-bucket``, ``pubsub-topic``, ...); this module
is the one place that knows what a name of each kind looks like and which account,
project or subscription it belongs to, so the compiler can refuse a resource of the
wrong kind or in the wrong place before any cloud is called.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_AWS_REGION = r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d"
_AWS_ACCOUNT = r"\d{12}"
_NAME = r"[A-Za-z0-9_.+=@-]+"


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """One kind of resource on one cloud, recognised by a regular expression.

    The pattern's named groups carry where the resource lives: ``account`` and
    ``region`` (AWS), ``project`` (GCP), ``subscription`` (Azure), and ``name``.
    Patterns are compiled on first use: most runs touch a few kinds of one cloud.
    Azure patterns ignore case: ARM resource IDs are case-insensitive, and the portal, the CLI
    and ARM's own responses spell the same ID differently.
    """

    provider: str
    name: str
    source: str
    example: str

    @property
    def pattern(self) -> re.Pattern[str]:
        """The kind's pattern, compiled on first use; case-insensitive for Azure."""
        return _compiled(self.source, re.IGNORECASE if self.provider == "azure" else 0)


@dataclass(frozen=True, slots=True)
class ParsedResource:
    """A listed resource matched to its kind, with where it lives."""

    text: str
    kind: str
    name: str
    account: str | None = None
    region: str | None = None
    project: str | None = None
    subscription: str | None = None


@functools.cache
def _compiled(source: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(source, flags)


def _kind(provider: str, name: str, pattern: str, example: str) -> ResourceKind:
    return ResourceKind(provider, name, pattern, example)


GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Azure allows letters and digits in any script (.NET's Char.IsLetterOrDigit), which is
# what \w matches in Python, besides _ - . ( ); a trailing period is refused.
RESOURCE_GROUP = r"[-\w.()]{0,89}[-\w()]"
RESOURCE_GROUP_RULE = ("1-90 letters, digits, underscores, hyphens, periods and parentheses, "
                       "not ending in a period")
_ARM_RG = rf"/subscriptions/(?P<subscription>{GUID})/resourceGroups/{RESOURCE_GROUP}/providers"

KINDS: tuple[ResourceKind, ...] = (
    # --- AWS: ARNs; S3 bucket ARNs carry neither account nor region.
    _kind("aws", "s3-bucket", r"arn:aws:s3:::(?P<name>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])",
          "arn:aws:s3:::acme-invoices"),
    _kind("aws", "sqs-queue",
          rf"arn:aws:sqs:(?P<region>{_AWS_REGION}):(?P<account>{_AWS_ACCOUNT}):(?P<name>[A-Za-z0-9_-]{{1,75}}(?:\.fifo)?)",
          "arn:aws:sqs:eu-west-1:123456789012:payment-events"),
    _kind("aws", "sns-topic",
          rf"arn:aws:sns:(?P<region>{_AWS_REGION}):(?P<account>{_AWS_ACCOUNT}):(?P<name>[A-Za-z0-9_-]{{1,251}}(?:\.fifo)?)",
          "arn:aws:sns:eu-west-1:123456789012:payment-completed"),
    _kind("aws", "dynamodb-table",
          rf"arn:aws:dynamodb:(?P<region>{_AWS_REGION}):(?P<account>{_AWS_ACCOUNT}):table/(?P<name>[A-Za-z0-9_.-]{{3,255}})",
          "arn:aws:dynamodb:eu-west-1:123456789012:table/payments"),
    _kind("aws", "secretsmanager-secret",
          rf"arn:aws:secretsmanager:(?P<region>{_AWS_REGION}):(?P<account>{_AWS_ACCOUNT}):secret:(?P<name>[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{{6}})",
          "arn:aws:secretsmanager:eu-west-1:123456789012:secret:payments/db-AbCdEf"),
    _kind("aws", "ssm-parameter",
          rf"arn:aws:ssm:(?P<region>{_AWS_REGION}):(?P<account>{_AWS_ACCOUNT}):parameter/(?P<name>[A-Za-z0-9/_.-]+)",
          "arn:aws:ssm:eu-west-1:123456789012:parameter/payments/api-url"),
    _kind("aws", "kms-key",
          rf"arn:aws:kms:(?P<region>{_AWS_REGION}):(?P<account>{_AWS_ACCOUNT}):key/(?P<name>(?:mrk-)?[0-9a-f-]{{32,36}})",
          "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
    _kind("aws", "logs-log-group",
          rf"arn:aws:logs:(?P<region>{_AWS_REGION}):(?P<account>{_AWS_ACCOUNT}):log-group:(?P<name>[A-Za-z0-9_/.#-]{{1,512}})",
          "arn:aws:logs:eu-west-1:123456789012:log-group:/acme/payments-api"),
    _kind("aws", "cloudwatch-namespace", r"(?P<name>(?!AWS/)(?!arn:)[A-Za-z0-9_./#:-]{1,255})",
          "Acme/Payments"),
    _kind("aws", "ecr-repository",
          rf"arn:aws:ecr:(?P<region>{_AWS_REGION}):(?P<account>{_AWS_ACCOUNT}):repository/(?P<name>[a-z0-9][a-z0-9._/-]{{1,255}})",
          "arn:aws:ecr:eu-west-1:123456789012:repository/payments-api"),
    _kind("aws", "lambda-function",
          rf"arn:aws:lambda:(?P<region>{_AWS_REGION}):(?P<account>{_AWS_ACCOUNT}):function:(?P<name>[A-Za-z0-9_-]{{1,64}})",
          "arn:aws:lambda:eu-west-1:123456789012:function:fraud-score"),
    # --- GCP: full resource names; buckets are global (projects/_).
    _kind("gcp", "gcs-bucket", r"projects/_/buckets/(?P<name>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])",
          "projects/_/buckets/acme-reports"),
    _kind("gcp", "pubsub-topic", r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/topics/(?P<name>[A-Za-z][\w.~+%-]{2,254})",
          "projects/acme-prod/topics/orders"),
    _kind("gcp", "pubsub-subscription",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/subscriptions/(?P<name>[A-Za-z][\w.~+%-]{2,254})",
          "projects/acme-prod/subscriptions/orders-worker"),
    _kind("gcp", "secretmanager-secret",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/secrets/(?P<name>[\w-]{1,255})",
          "projects/acme-prod/secrets/orders-db-password"),
    _kind("gcp", "kms-crypto-key",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/locations/[a-z0-9-]+/keyRings/[\w-]{1,63}/cryptoKeys/(?P<name>[\w-]{1,63})",
          "projects/acme-prod/locations/europe-west1/keyRings/orders/cryptoKeys/pii"),
    _kind("gcp", "bigquery-dataset",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/datasets/(?P<name>\w{1,1024})",
          "projects/acme-prod/datasets/orders"),
    _kind("gcp", "bigquery-table",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/datasets/\w{1,1024}/tables/(?P<name>[\w-]{1,1024})",
          "projects/acme-prod/datasets/orders/tables/line_items"),
    _kind("gcp", "bigtable-table",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/instances/[a-z][a-z0-9-]{5,32}/tables/(?P<name>[\w.-]{1,50})",
          "projects/acme-prod/instances/orders-bt/tables/events"),
    _kind("gcp", "project", r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])",
          "projects/acme-prod"),
    _kind("gcp", "artifact-registry-repository",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/locations/[a-z0-9-]+/repositories/(?P<name>[a-z][a-z0-9-]{0,62})",
          "projects/acme-prod/locations/europe-west1/repositories/containers"),
    _kind("gcp", "cloud-run-service",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/locations/[a-z0-9-]+/services/(?P<name>[a-z][a-z0-9-]{0,48})",
          "projects/acme-prod/locations/europe-west1/services/pricing"),
    _kind("gcp", "cloud-function",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/locations/[a-z0-9-]+/functions/(?P<name>[A-Za-z][\w-]{0,62})",
          "projects/acme-prod/locations/europe-west1/functions/thumbnail"),
    _kind("gcp", "cloud-tasks-queue",
          r"projects/(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])/locations/[a-z0-9-]+/queues/(?P<name>[A-Za-z0-9-]{1,100})",
          "projects/acme-prod/locations/europe-west1/queues/emails"),
    # --- Azure: ARM resource IDs, case as Azure returns them.
    _kind("azure", "storage-container",
          rf"{_ARM_RG}/Microsoft\.Storage/storageAccounts/[a-z0-9]{{3,24}}/blobServices/default/containers/(?P<name>[a-z0-9-]{{3,63}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-media/providers/Microsoft.Storage/storageAccounts/acmemedia/blobServices/default/containers/thumbnails"),
    _kind("azure", "storage-queue",
          rf"{_ARM_RG}/Microsoft\.Storage/storageAccounts/[a-z0-9]{{3,24}}/queueServices/default/queues/(?P<name>[a-z0-9-]{{3,63}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-media/providers/Microsoft.Storage/storageAccounts/acmemedia/queueServices/default/queues/resize-jobs"),
    _kind("azure", "storage-table",
          rf"{_ARM_RG}/Microsoft\.Storage/storageAccounts/[a-z0-9]{{3,24}}/tableServices/default/tables/(?P<name>[A-Za-z][A-Za-z0-9]{{2,62}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-media/providers/Microsoft.Storage/storageAccounts/acmemedia/tableServices/default/tables/jobs"),
    _kind("azure", "servicebus-queue",
          rf"{_ARM_RG}/Microsoft\.ServiceBus/namespaces/[A-Za-z][A-Za-z0-9-]{{4,48}}[A-Za-z0-9]/queues/(?P<name>[\w.-]{{1,260}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-orders/providers/Microsoft.ServiceBus/namespaces/acme-orders/queues/invoices"),
    _kind("azure", "servicebus-topic",
          rf"{_ARM_RG}/Microsoft\.ServiceBus/namespaces/[A-Za-z][A-Za-z0-9-]{{4,48}}[A-Za-z0-9]/topics/(?P<name>[\w.-]{{1,260}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-orders/providers/Microsoft.ServiceBus/namespaces/acme-orders/topics/order-events"),
    _kind("azure", "eventgrid-topic",
          rf"{_ARM_RG}/Microsoft\.EventGrid/topics/(?P<name>[A-Za-z0-9-]{{3,50}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-orders/providers/Microsoft.EventGrid/topics/order-events"),
    _kind("azure", "keyvault-vault",
          rf"{_ARM_RG}/Microsoft\.KeyVault/vaults/(?P<name>[A-Za-z][A-Za-z0-9-]{{1,22}}[A-Za-z0-9])",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-orders/providers/Microsoft.KeyVault/vaults/acme-orders-kv"),
    _kind("azure", "keyvault-secret",
          rf"{_ARM_RG}/Microsoft\.KeyVault/vaults/[A-Za-z][A-Za-z0-9-]{{1,22}}[A-Za-z0-9]/secrets/(?P<name>[A-Za-z0-9-]{{1,127}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-orders/providers/Microsoft.KeyVault/vaults/acme-orders-kv/secrets/db-password"),
    _kind("azure", "keyvault-key",
          rf"{_ARM_RG}/Microsoft\.KeyVault/vaults/[A-Za-z][A-Za-z0-9-]{{1,22}}[A-Za-z0-9]/keys/(?P<name>[A-Za-z0-9-]{{1,127}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-orders/providers/Microsoft.KeyVault/vaults/acme-orders-kv/keys/pii"),
    _kind("azure", "container-registry",
          rf"{_ARM_RG}/Microsoft\.ContainerRegistry/registries/(?P<name>[A-Za-z0-9]{{5,50}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-build/providers/Microsoft.ContainerRegistry/registries/acmebuild"),
    _kind("azure", "function-app",
          rf"{_ARM_RG}/Microsoft\.Web/sites/(?P<name>[A-Za-z0-9-]{{2,60}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-media/providers/Microsoft.Web/sites/acme-thumbnailer"),
    _kind("azure", "data-collection-rule",
          rf"{_ARM_RG}/Microsoft\.Insights/dataCollectionRules/(?P<name>[A-Za-z0-9_.-]{{1,64}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ops/providers/Microsoft.Insights/dataCollectionRules/app-logs"),
    _kind("azure", "app-insights-component",
          rf"{_ARM_RG}/Microsoft\.Insights/components/(?P<name>[A-Za-z0-9_.()-]{{1,260}})",
          "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ops/providers/Microsoft.Insights/components/acme-apm"),
)

# How a GCP grant on each kind is bound: the binding the built-in templates use for that kind
# (a test keeps the two in step), so a raw entry is bound as a template entry would be: on the
# project under a condition naming the resource where GCP evaluates conditions on resource
# names, on the resource's own policy where the service does not, plainly on the project for
# the project itself. A kind missing here is refused for raw entries, never left unbound.
GCP_BINDING: dict[str, str] = {
    "gcs-bucket": "condition", "kms-crypto-key": "condition", "bigquery-dataset": "condition",
    "bigquery-table": "condition", "bigtable-table": "condition",
    "pubsub-topic": "resource", "pubsub-subscription": "resource",
    "secretmanager-secret": "resource", "artifact-registry-repository": "resource",
    "cloud-run-service": "resource", "cloud-function": "resource", "cloud-tasks-queue": "resource",
    "project": "project",
}

KINDS_BY_PROVIDER: dict[str, dict[str, ResourceKind]] = {}
for _k in KINDS:
    KINDS_BY_PROVIDER.setdefault(_k.provider, {})[_k.name] = _k


def parse_resource(provider: str, text: str, accepted: tuple[str, ...] | None = None) -> ParsedResource | None:
    """Match ``text`` against the kinds of ``provider`` (only ``accepted`` ones if given).

    Returns the first kind whose pattern matches the whole text, or None.
    """
    kinds = KINDS_BY_PROVIDER.get(provider, {})
    names = accepted if accepted is not None else tuple(kinds)
    for name in names:
        kind = kinds.get(name)
        if kind is None:
            continue
        m = kind.pattern.fullmatch(text)
        if m is None:
            continue
        groups = m.groupdict()
        return ParsedResource(
            text=text,
            kind=name,
            name=groups.get("name") or text,
            account=groups.get("account"),
            region=groups.get("region"),
            project=groups.get("project"),
            subscription=(groups.get("subscription") or "").lower() or None,
        )
    return None


def kind_of(provider: str, text: str) -> str | None:
    """The kind name ``text`` matches on ``provider``, or None."""
    parsed = parse_resource(provider, text)
    return parsed.kind if parsed else None


# How each cloud names resources, told apart by how the name starts: a manifest for one
# cloud that lists another cloud's resource is told so, not that it "matches nothing".
_FOREIGN_FORMS = (
    ("aws", "an AWS ARN", re.compile(r"arn:")),
    ("gcp", "a GCP resource name", re.compile(r"projects/|//[a-z]+\.googleapis\.com/")),
    ("azure", "an Azure resource ID", re.compile(r"/subscriptions/", re.IGNORECASE)),
)
_RESOURCE_FORMS = {
    "aws": "AWS resources are named by ARNs (arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE)",
    "gcp": "GCP resources are named by resource names (projects/PROJECT/TYPE/NAME)",
    "azure": "Azure resources are named by ARM resource IDs "
             "(/subscriptions/SUBSCRIPTION_ID/resourceGroups/GROUP/providers/NAMESPACE/TYPE/NAME)",
}
_ARM_PREFIX = re.compile(r"/subscriptions/(?P<subscription>[^/]*)/resourceGroups/(?P<group>[^/]*)"
                         r"/providers/(?P<rest>.+)", re.IGNORECASE)


def unmatched_reason(provider: str, text: str, accepted: tuple[str, ...]) -> str:
    """Why ``text``, which matches no kind of ``provider``, is not one of the ``accepted``
    kinds, as a clause ("it is an AWS ARN, but ..."). Callers show the accepted forms after it."""
    for cloud, what, start in _FOREIGN_FORMS:
        if cloud != provider and start.match(text):
            return f"it is {what}, but {_RESOURCE_FORMS[provider]}"
    if provider == "azure":
        return _arm_id_problem(text, accepted)
    return "it matches no known resource kind"


def _arm_types(resource_id: str) -> str:
    """``Microsoft.KeyVault/vaults/secrets`` of ``.../providers/Microsoft.KeyVault/vaults/V/secrets/S``."""
    m = _ARM_PREFIX.fullmatch(resource_id)
    assert m is not None, resource_id
    namespace, *pairs = m["rest"].split("/")
    return "/".join([namespace, *pairs[0::2]])


def _arm_id_problem(text: str, accepted: tuple[str, ...]) -> str:
    """What is wrong with an ARM resource ID that matches none of the ``accepted`` kinds,
    checked from the left so that the first wrong part is the one named."""
    if re.search(r"\s", text):
        return "it contains whitespace, which no ARM resource ID has"
    if text.endswith("/"):
        return "it ends with '/'; remove the trailing slash"
    if "//" in text:
        return "it has an empty segment ('//')"
    m = _ARM_PREFIX.fullmatch(text)
    if m is None:
        return "it does not start with /subscriptions/SUBSCRIPTION_ID/resourceGroups/GROUP/providers/"
    if not re.fullmatch(GUID, m["subscription"]):
        return f"its subscription {m['subscription']!r} is not a subscription id (a GUID)"
    if not re.fullmatch(RESOURCE_GROUP, m["group"]):
        return f"its resource group {m['group']!r} is not valid: {RESOURCE_GROUP_RULE}"
    namespace, *pairs = m["rest"].split("/")
    if len(pairs) % 2:
        return (f"a segment is missing: after {namespace} an ARM resource ID alternates TYPE/NAME, "
                f"but {'/'.join(pairs)!r} has {len(pairs)} segments")
    kinds = KINDS_BY_PROVIDER["azure"]
    by_types = {_arm_types(kinds[k].example).lower(): k for k in accepted if k in kinds}
    kind = by_types.get(_arm_types(text).lower())
    if kind is None:
        types = [_arm_types(kinds[k].example) for k in by_types.values()]
        expected = types[0] if len(types) == 1 else f"one of {', '.join(types)}"
        return f"it names a {_arm_types(text)} resource, not {expected}"
    # The types are right, so a name is wrong: find it by putting the example's name in its
    # place, one at a time, until the ID matches.
    example = _ARM_PREFIX.fullmatch(kinds[kind].example)
    assert example is not None
    example_pairs = example["rest"].split("/")[1:]
    head = text[:m.start("rest")] + namespace
    for i in range(1, len(pairs), 2):
        trial = [*pairs[:i], example_pairs[i], *pairs[i + 1:]]
        if kinds[kind].pattern.fullmatch("/".join([head, *trial])):
            return f"{pairs[i]!r} is not a valid name for {pairs[i - 1]} in a {kind}"
    return f"its names are not valid for a {kind}"
