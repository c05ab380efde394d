"""``discover``: read every target through its cloud's discovery backend, then judge.

A target that cannot be read (credentials, permissions, a cloud discover cannot read yet)
is reported as such, and the others still are: one closed account must not hide the
findings of the rest. The CLI exits 1 at the end when any target failed.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .. import clock
from ..clouds import Clouds
from ..config import Config
from ..discovered import DiscoveredIdentity
from ..errors import WorkloadIdsError, one_line
from .findings import Finding, Settings, judge, severity_at_least
from .owners import Ownership, check_directory, owner_of

Scope = tuple[str, str]  # (provider, target)


@dataclass(frozen=True, slots=True)
class TargetResult:
    """How reading one target went."""

    provider: str
    target: str
    status: str  # "read" or "error"
    identities: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class JudgedIdentity:
    """One identity, its owner and its findings."""

    identity: DiscoveredIdentity
    ownership: Ownership
    findings: tuple[Finding, ...]

    def worst(self) -> str | None:
        """The highest severity among its findings, or None."""
        ranked = sorted((f.severity for f in self.findings), key=("low", "medium", "high").index)
        return ranked[-1] if ranked else None


@dataclass(frozen=True, slots=True)
class DiscoverReport:
    """What one ``discover`` run (or a merge of shards) found."""

    generated: datetime
    settings: Settings
    targets: tuple[TargetResult, ...]
    identities: tuple[JudgedIdentity, ...]
    shard: tuple[int, int] | None = None  # (index, count), 1-based
    notes: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> tuple[TargetResult, ...]:
        """The targets that could not be read."""
        return tuple(t for t in self.targets if t.status != "read")

    def any_at_least(self, severity: str) -> bool:
        """Whether any finding is ``severity`` or worse (``--fail-on``)."""
        return any(severity_at_least(f.severity, severity)
                   for j in self.identities for f in j.findings)


def _guess_provider(target: str) -> str:
    """The cloud a bare target id belongs to, by its form."""
    import re
    if re.fullmatch(r"\d{12}", target):
        return "aws"
    if re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", target):
        return "azure"
    return "gcp"


def select_targets(config: Config, clouds: Clouds, *, provider: str | None,
                   named: Sequence[str]) -> list[Scope]:
    """The targets to read: every target the config lists (``targets:``, ``aws.accounts``)
    and the audit log shows written to, of ``provider`` when given; ``named`` narrows them
    (a named target the config does not list is read too). With none at all, the account,
    project or subscription the ambient credentials reach.

    Kept apart so that the fleet's shared target selection (sharding) can replace it."""
    from ..providers import CLOUDS
    from ..targets import fleet_scopes
    scopes = fleet_scopes(config, provider=provider or "aws", named=(), declared=()).only(CLOUDS)
    known = sorted(k for k in scopes.read if provider is None or k[0] == provider)
    if named:
        chosen: set[Scope] = set()
        for target in named:
            matches = [k for k in known if k[1] == (target.lower() if k[0] == "azure" else target)]
            cloud = provider or _guess_provider(target)
            chosen.update(matches or [(cloud, target.lower() if cloud == "azure" else target)])
        return sorted(chosen)
    if not known:
        cloud = provider or "aws"
        known = [(cloud, clouds[cloud].identities.current_target())]
    return known


def _read(clouds: Clouds, scope: Scope, service_linked: bool) -> tuple[list[DiscoveredIdentity], str | None]:
    name, target = scope
    try:
        return clouds[name].discovery.discover(target, service_linked=service_linked), None
    except WorkloadIdsError as exc:
        return [], one_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except ModuleNotFoundError as exc:
        return [], f"this cloud needs {exc.name}, which is not installed (pip install 'workload-ids[{name}]')"


def discover(config: Config, clouds: Clouds, scopes: Sequence[Scope], *, service_linked: bool = False,
             now: datetime | None = None, shard: tuple[int, int] | None = None,
             progress: Callable[[Scope], None] | None = None) -> DiscoverReport:
    """Read each of ``scopes`` (side by side, ``calls.concurrency`` at a time) and judge
    every identity found."""
    settings = Settings.from_config(config)
    when = now or clock.now()
    ordered = sorted(set(scopes))
    results: dict[Scope, tuple[list[DiscoveredIdentity], str | None]] = {}
    workers = max(1, min(config.calls.concurrency, len(ordered)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_read, clouds, scope, service_linked): scope for scope in ordered}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(futures[future])
    targets = tuple(TargetResult(p, t, "error" if results[(p, t)][1] else "read",
                                 len(results[(p, t)][0]), results[(p, t)][1]) for p, t in ordered)
    found = sorted((i for scope in ordered for i in results[scope][0]),
                   key=lambda i: (i.provider, i.target, i.kind, i.id))
    ownership = {_key(i): owner_of(i, settings.owner_tags) for i in found}
    notes: list[str] = []
    from ..owners import open_directory
    directory = open_directory(config)
    if directory is None:
        notes.append("owners are not checked against a directory: no owners source in the config")
    elif ownership:
        try:
            ownership = check_directory(ownership, directory)
        except (WorkloadIdsError, OSError) as exc:
            notes.append(f"the owner directory could not be read ({one_line(str(exc))}): owners "
                         "are as the tags say, unchecked")
    judged = tuple(JudgedIdentity(i, ownership[_key(i)], tuple(judge(i, settings, when, ownership[_key(i)])))
                   for i in found)
    return DiscoverReport(when, settings, targets, judged, shard, tuple(notes))


def _key(identity: DiscoveredIdentity) -> str:
    return f"{identity.provider}\x00{identity.target}\x00{identity.id}"
