"""``discover``: read every target through its cloud's discovery backend, then judge.

A target that cannot be read (credentials, permissions, a cloud discover cannot read yet)
is reported as such, and the others still are: one closed account must not hide the
findings of the rest. The CLI exits 1 at the end when any target failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .. import clock
from ..clouds import Clouds
from ..config import Config
from ..discovered import DiscoveredIdentity
from ..errors import WorkloadIdsError, one_line
from ..targets import fan_out
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


def _read(clouds: Clouds, scope: Scope, service_linked: bool) -> tuple[list[DiscoveredIdentity], str | None]:
    name, target = scope
    try:
        return clouds[name].discovery.discover(target, service_linked=service_linked), None
    except WorkloadIdsError as exc:
        return [], one_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except ModuleNotFoundError as exc:
        return [], f"this cloud needs {exc.name}, which is not installed (pip install 'workload-ids[{name}]')"


def discover(config: Config, clouds: Clouds, scopes: Sequence[Scope], *, service_linked: bool = False,
             now: datetime | None = None, shard: tuple[int, int] | None = None) -> DiscoverReport:
    """Read each of ``scopes`` (each cloud's side by side, ``fanout.<cloud>`` at a time) and
    judge every identity found."""
    settings = Settings.from_config(config)
    when = now or clock.now()
    ordered = sorted(set(scopes))

    def read_and_judge(provider: str, target: str) -> tuple[list[JudgedIdentity], str | None]:
        # Judged on the fan-out thread, by the owner its tags and marker name: while
        # other targets are still being read, not all at the end. The directory (below)
        # can only change an owner; an identity whose owner it changes is judged again.
        found, error = _read(clouds, (provider, target), service_linked)
        judged = []
        for i in found:
            ownership = owner_of(i, settings.owner_tags)
            judged.append(JudgedIdentity(i, ownership, tuple(judge(i, settings, when, ownership))))
        return judged, error

    # Each cloud's targets side by side within its fan-out budget; a target that fails is
    # an error row (``_read`` never raises), so one dead account hides no other.
    results = dict(fan_out(config, ordered, read_and_judge))
    targets = tuple(TargetResult(p, t, "error" if results[(p, t)][1] else "read",
                                 len(results[(p, t)][0]), results[(p, t)][1]) for p, t in ordered)
    judged = sorted((j for scope in ordered for j in results[scope][0]),
                    key=lambda j: (j.identity.provider, j.identity.target, j.identity.kind, j.identity.id))
    notes: list[str] = []
    from ..owners import open_directory
    directory = open_directory(config)
    if directory is None:
        notes.append("owners are not checked against a directory: no owners source in the config")
    elif judged:
        ownership = {_key(j.identity): j.ownership for j in judged}
        try:
            checked = check_directory(ownership, directory)
        except (WorkloadIdsError, OSError) as exc:
            notes.append(f"the owner directory could not be read ({one_line(str(exc))}): owners "
                         "are as the tags say, unchecked")
        else:
            judged = [j if checked[_key(j.identity)] is j.ownership else JudgedIdentity(
                j.identity, checked[_key(j.identity)],
                tuple(judge(j.identity, settings, when, checked[_key(j.identity)]))) for j in judged]
    return DiscoverReport(when, settings, targets, tuple(judged), shard, tuple(notes))


def _key(identity: DiscoveredIdentity) -> str:
    return f"{identity.provider}\x00{identity.target}\x00{identity.id}"
