"""Resource kinds: how a listed resource name is recognised on each cloud.

Templates name the kinds they accept (``s3-bucket``, ``pubsub-topic``, ...); this module
is the one place that knows what a name of each kind looks like and which account,
project or subscription it belongs to, so the compiler can refuse a resource of the
wrong kind or in the wrong place before any cloud is called.

The table itself is data, ``templates/kinds/<cloud>.yaml`` (shipped with the templates):
each kind's form as people write it, its pattern and an example. ``workload-ids
templates`` shows it; a kind is added there, not here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import yaml

from .bundled import bundled_dir

PROVIDERS = ("aws", "gcp", "azure")


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
    form: str = ""  # how people write it: arn:aws:sqs:REGION:ACCOUNT:QUEUE
    # Forms consoles and CLIs show (gs://B, a log group name, a blob URL): each a pattern
    # and the resource name to write instead, {group}s filled from the match and the
    # workload's {account}, {region}, {subscription} (``console:`` in the kinds file).
    console: tuple[tuple[str, str], ...] = ()

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


_FRAGMENT = re.compile(r"\$\{([a-z0-9-]+)\}")


def kinds_file(provider: str) -> str:
    """Where the kinds of ``provider`` are defined (for messages and documentation)."""
    return str(bundled_dir("templates") / "kinds" / f"{provider}.yaml")


def _expand(text: str, fragments: dict[str, str], where: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) not in fragments:
            raise ValueError(f"{where}: unknown fragment ${{{m.group(1)}}}")
        return fragments[m.group(1)]
    return _FRAGMENT.sub(one, text)


def _load(provider: str) -> tuple[dict[str, str], list[ResourceKind], dict[str, str]]:
    """The fragments, kinds and (GCP) bindings of one cloud's kinds file. The file ships with
    the tool, so a malformed one is a broken installation: it fails loudly, naming the file."""
    path = kinds_file(provider)
    with open(path, encoding="utf-8") as fh:
        safe = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # SafeLoader, its C build where there is one
        data: dict[str, Any] = yaml.load(fh, Loader=safe)  # nosec B506 - a safe loader
    fragments: dict[str, str] = {}
    for name, text in (data.get("fragments") or {}).items():
        fragments[name] = _expand(str(text), fragments, path)
    kinds: list[ResourceKind] = []
    bindings: dict[str, str] = {}
    for name, entry in data["kinds"].items():
        console = tuple((str(c["pattern"]), str(c["write"])) for c in entry.get("console") or ())
        kinds.append(ResourceKind(provider, name, _expand(entry["pattern"], fragments, path),
                                  entry["example"], entry.get("form", ""), console))
        if entry.get("binding"):
            bindings[name] = entry["binding"]
    return fragments, kinds, bindings


_LOADED = {p: _load(p) for p in PROVIDERS}

GUID = _LOADED["azure"][0]["guid"]
# Azure allows letters and digits in any script (.NET's Char.IsLetterOrDigit), which is
# what \w matches in Python, besides _ - . ( ); a trailing period is refused.
RESOURCE_GROUP = _LOADED["azure"][0]["resource-group"]
RESOURCE_GROUP_RULE = ("1-90 letters, digits, underscores, hyphens, periods and parentheses, "
                       "not ending in a period")

KINDS: tuple[ResourceKind, ...] = tuple(k for p in PROVIDERS for k in _LOADED[p][1])

# How a GCP grant on each kind is bound (``binding:`` in templates/kinds/gcp.yaml): the binding
# the built-in templates use for that kind (a test keeps the two in step), so a raw entry is
# bound as a template entry would be: on the project under a condition naming the resource
# where GCP evaluates conditions on resource names, on the resource's own policy where the
# service does not, plainly on the project for the project itself. A kind missing here is
# refused for raw entries, never left unbound.
GCP_BINDING: dict[str, str] = dict(_LOADED["gcp"][2])

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


def console_form_hint(provider: str, text: str, accepted: tuple[str, ...],
                      target: dict[str, str]) -> str | None:
    """The resource name to write when ``text`` is a console or CLI form of one of the
    ``accepted`` kinds (``gs://b``, ``s3://b``, a log group name, a blob or vault URL),
    filled in from the match and the workload's ``target`` (account, region,
    subscription); None otherwise."""
    kinds = KINDS_BY_PROVIDER[provider]
    for kind in accepted:
        for pattern, write in kinds[kind].console if kind in kinds else ():
            match = _compiled(pattern).fullmatch(text)
            if match is not None:
                written = write.format_map({**target, **match.groupdict()})
                return f"written as consoles and CLIs show it; a policy names this {kind} {written}"
    return None


def structured(provider: str, text: str) -> bool:
    """Whether ``text`` has the shape of ``provider``'s resource names (an ARN, a resource
    name, an ARM id): only then does a guess of its kind help (a free-form kind such as a
    CloudWatch namespace matches almost any text)."""
    return bool({"aws": re.compile(r"arn:"), "gcp": re.compile(r"projects/|//"),
                 "azure": re.compile(r"/subscriptions/", re.IGNORECASE)}[provider].match(text))


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
