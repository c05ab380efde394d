"""Which accounts, projects and subscriptions a fleet command (``cleanup``, ``inventory``,
``discover``, ``rotate`` without PATH) reads: those the manifests name, every ``targets:``
entry of the config (organisations, folders and management groups listed at run time),
and every target the audit log shows the tool wrote to; ``--provider`` and ``--target``
narrow that set and ``--shard I/N`` takes one deterministic part of it. Reads then fan
out over the targets (:func:`fan_out`), a pool of threads per cloud.

The last two exist because manifests alone forget: remove the last manifest of a project
and its identities would never be read again, so never judged. A configured or audited
target that cannot be read stops the run before anything changes (exit 1); silence would
leave its identities in place forever.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .config import Config
from .errors import Diagnostic, InputErrors, UserError, WorkloadIdsError
from .providers import CLOUDS

if TYPE_CHECKING:
    from .clouds import Clouds
    from .providers.interface import Member

T = TypeVar("T")
Key = tuple[str, str]

_KEY = {"aws": "account", "gcp": "project", "azure": "subscription"}


@dataclass(frozen=True)
class Scopes:
    """The targets to read, and why each one that no manifest names is read."""

    read: frozenset[tuple[str, str]]
    # (provider, target) -> why it is read though no manifest or --target names it; each is
    # proven readable before anything is read or changed.
    vouched: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    shard: Shard | None = None  # the part of the targets this run reads (--shard I/N)

    def only(self, providers: Iterable[str]) -> Scopes:
        """These scopes restricted to ``providers``."""
        keep = set(providers)
        return Scopes(frozenset(k for k in self.read if k[0] in keep),
                      {k: v for k, v in self.vouched.items() if k[0] in keep}, self.notes, self.shard)

    def ordered(self) -> list[tuple[str, str]]:
        """The targets to read, sorted (the order of every output)."""
        return sorted(self.read)


@dataclass(frozen=True, slots=True)
class Shard:
    """``--shard I/N``: this run reads the targets whose stable hash of ``provider:target``
    is I-1 modulo N. The hash (not a position in the sorted list) is what keeps N workers'
    parts apart when the list changes: an account joining the organisation lands in one
    shard and moves no other."""

    index: int  # 1..count
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N`` with 1 <= I <= N; a UserError saying the form otherwise."""
        match = re.fullmatch(r"\s*(\d{1,4})\s*/\s*(\d{1,4})\s*", text)
        if match is None or not 1 <= int(match[1]) <= int(match[2]):
            raise UserError(f"--shard {text!r} is not I/N with 1 <= I <= N (e.g. --shard 2/4: the "
                            "second of four parts; a Kubernetes Indexed Job passes "
                            "$((JOB_COMPLETION_INDEX+1))/N)")
        return cls(int(match[1]), int(match[2]))

    def holds(self, key: tuple[str, str]) -> bool:
        """Whether target ``key`` (provider, target) belongs to this shard."""
        digest = hashlib.sha256(f"{key[0]}:{key[1]}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def as_json(self) -> dict[str, int]:
        """``{"index": I, "count": N}``, as every sharded JSON document records it."""
        return {"index": self.index, "count": self.count}


def audited_targets(config: Config) -> dict[tuple[str, str], str]:
    """(provider, target) of every change the audit log records as done, with the first
    such record's time and command (for messages). Empty without an audit log."""
    from .audit import open_store
    store = open_store(config)
    if store is None:
        return {}
    out: dict[tuple[str, str], str] = {}
    try:
        for r in store.records():
            provider, target = r.get("provider"), r.get("target")
            # An attestation changes nothing in the target (and names one the tool already
            # read): it never makes a target one the tool wrote to.
            if (r.get("result") == "ok" and provider in CLOUDS and r.get("action") != "attest"
                    and isinstance(target, str) and target not in ("", "-")):
                key = (str(provider), target.lower() if provider == "azure" else target)
                out.setdefault(key, f"{r.get('time', '?')} by `{r.get('command', '?')}`")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"cannot read the audit trail {store.where} to learn which targets "
                        f"workload-ids wrote to: {exc}; run `workload-ids audit verify`, fix "
                        "the trail or its permissions, then rerun") from None
    return out


def fleet_scopes(config: Config, *, provider: str, named: Iterable[str],
                 declared: Iterable[tuple[str, str]]) -> Scopes:
    """Every target to read: see the module docstring. Retired targets (``retired: true``)
    are left out unless a manifest or ``--target`` names them."""
    explicit = set(declared) | {(provider, t.lower() if provider == "azure" else t) for t in named}
    retired = config.targets(retired=True)
    vouched: dict[tuple[str, str], str] = {}
    for key in sorted(config.targets()):
        vouched[key] = f"listed under targets.{key[0]} in the config"
    if provider == "aws":
        for account in sorted(config.aws.accounts):
            vouched.setdefault(("aws", account), "mapped under aws.accounts in the config")
    skipped: list[str] = []
    for key, first in sorted(audited_targets(config).items()):
        if key in retired:
            skipped.append(f"{key[0]}:{key[1]}")
            continue
        vouched.setdefault(key, f"the audit log shows workload-ids changed it (first at {first})")
    notes: tuple[str, ...] = ()
    if skipped:
        notes = (f"not read, marked retired under targets: {', '.join(skipped)}",)
    vouched = {k: v for k, v in vouched.items() if k not in explicit}
    return Scopes(frozenset(explicit | set(vouched)), vouched, notes)


def prove_readable(scopes: Scopes, clouds: Clouds) -> None:
    """Reach every vouched target once (the call each cloud uses to check credentials),
    concurrently within the fan-out budgets, before anything is read or changed; any that
    fails stops the run, every such target named."""
    def verify(name: str, target: str) -> str | None:
        try:
            clouds[name].identities.verify_target(target)
        except WorkloadIdsError as exc:
            return (f"{name} {_KEY.get(name, 'target')} {target} ({scopes.vouched[(name, target)]}): "
                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return None
    failed = [problem for _, problem in fan_out(clouds.config, scopes.vouched, verify) if problem]
    if failed:
        raise UserError(
            "cannot read " + "; ".join(failed) + ". Nothing was done: its identities would go "
            "unjudged. Give workload-ids access to it (targets.<cloud> entries take a profile or "
            "roleArn for AWS; an organization's members need its role), or, if it is gone for "
            "good, mark its entry `retired: true` under targets in the config (a member of an "
            "organization, folder or management group: list it under that entry's `exclude:`)")


# --- every read command's targets: narrowed, expanded, sharded ------------------------

_FORMS = (("aws", re.compile(r"\d{12}")),
          ("azure", re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")),
          ("gcp", re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")))
_GROUPS = {"aws": ("organization",), "gcp": ("folder", "organization"), "azure": ("managementGroup",)}
# Member lists per run, so every command of one run (and each of its steps) lists a group once.
_MEMO_LOCK = threading.Lock()


def parse_target(text: str, provider: str | None) -> tuple[str, str]:
    """``--target`` as (provider, target): ``PROVIDER:TARGET``, or a bare id whose cloud is
    ``provider`` or, without one, read from its form (12 digits: AWS; a GUID: Azure; a
    project id: GCP)."""
    name, sep, rest = text.partition(":")
    if sep and name in CLOUDS:
        provider, text = name, rest
    if provider is None:
        provider = next((p for p, form in _FORMS if form.fullmatch(text)), None)
        if provider is None:
            raise UserError(f"--target {text!r} is no AWS account id (12 digits), GCP project id or "
                            "Azure subscription id (a GUID); write PROVIDER:TARGET (e.g. "
                            "gcp:acme-prod) or add --provider")
    return provider, text.lower() if provider == "azure" else text


def read_scopes(config: Config, clouds: Clouds, *, provider: str | None = None,
                targets: Sequence[str] = (), declared: Iterable[tuple[str, str]] = (),
                shard: Shard | None = None) -> Scopes:
    """The targets one read command reads: the manifests' (``declared``), every
    ``targets:`` entry of every cloud with its groups listed, ``aws.accounts``, and those
    the audit log shows written to. ``provider`` keeps one cloud's; ``targets`` keeps only
    those named (one the config does not list is read all the same: an account to look at
    once); ``shard`` then keeps its part. With none of these anywhere, the ambient
    credentials' own target of ``provider`` (AWS by default) is read."""
    if provider is not None and provider not in CLOUDS:
        raise UserError(f"--provider {provider!r} is not one of {', '.join(sorted(CLOUDS))}")
    named = {parse_target(t, provider) for t in targets}
    base = fleet_scopes(config, provider=provider or "aws", named=(), declared=declared)
    vouched = dict(base.vouched)
    notes = list(base.notes)
    explicit = set(base.read) - set(vouched)
    # Only the clouds this run may read have their groups listed: a run narrowed to one
    # GCP project neither pays for, nor stops at, listing the AWS Organization.
    clouds_read = {p for p, _ in named} if named else {provider} if provider else set(CLOUDS)
    for key, why in expand_groups(config, clouds, providers=clouds_read, notes=notes).items():
        if key not in explicit:
            vouched.setdefault(key, why)
    read = explicit | set(vouched)
    if provider is not None:
        read = {k for k in read if k[0] == provider}
    if named:
        read = {k for k in read if k in named} | named
    if not read:
        name = provider or "aws"
        read = {(name, clouds[name].identities.current_target())}
    if shard is not None:
        read = {k for k in read if shard.holds(k)}
    return Scopes(frozenset(read), {k: v for k, v in vouched.items() if k in read}, tuple(notes), shard)


def expand_groups(config: Config, clouds: Clouds, *, providers: Iterable[str],
                  notes: list[str]) -> dict[tuple[str, str], str]:
    """Every active target of every group entry (``organization``, ``folder``,
    ``managementGroup``) of ``providers``, with why it is read; excluded, inactive and
    retired ones are left out with a note. Listed once per run (memoised on ``clouds``);
    a group that cannot be listed stops the run at its entry."""
    keep = set(providers)
    retired = config.targets(retired=True)
    out: dict[tuple[str, str], str] = {}
    for cloud, kind, index, name, role, exclude, entry_retired in _group_entries(config):
        if cloud not in keep:
            continue
        where = f"targets.{cloud}.{index}"
        if entry_retired:
            notes.append(f"not read, marked retired under targets: {where} ({kind} {name})")
            continue
        members = _members(config, clouds, cloud, kind, name, role, where)
        excluded = {e.lower() if cloud == "azure" else e for e in exclude}
        skipped: list[str] = []
        for member in members:
            key = (cloud, member.target)
            if member.target in excluded:
                continue
            if not member.active:
                skipped.append(f"{member.target} ({member.state or 'inactive'})")
                continue
            if key in retired:
                continue
            out.setdefault(key, f"listed in {kind} {name} ({where} in the config)")
        if skipped:
            notes.append(f"{where} ({kind} {name}): not read, not active: {', '.join(skipped)}")
        unknown = sorted(excluded - {m.target for m in members})
        if unknown:
            notes.append(f"{where}.exclude names {', '.join(unknown)}, which {kind} {name} does not "
                         "list: check the ids")
    return out


def _group_entries(config: Config) -> list[tuple[str, str, int, str, str | None, list[str], bool]]:
    """(cloud, kind, entry index, group name, role, exclude, retired) of each group entry."""
    t = config.data.targets
    out: list[tuple[str, str, int, str, str | None, list[str], bool]] = []
    for i, a in enumerate(t.aws):
        if a.organization is not None and a.account is None:
            out.append(("aws", "organization", i, "(the ambient credentials' organization)",
                        a.organization.role, list(a.exclude), a.retired))
    for i, g in enumerate(t.gcp):
        if g.project is None:
            if g.folder is not None and g.organization is None:
                out.append(("gcp", "folder", i, g.folder, None, list(g.exclude), g.retired))
            elif g.organization is not None and g.folder is None:
                out.append(("gcp", "organization", i, g.organization, None, list(g.exclude), g.retired))
    for i, z in enumerate(t.azure):
        if z.managementGroup is not None and z.subscription is None:
            out.append(("azure", "managementGroup", i, z.managementGroup, None, list(z.exclude), z.retired))
    return out


def _members(config: Config, clouds: Clouds, cloud: str, kind: str, name: str, role: str | None,
             where: str) -> list[Member]:
    key = (cloud, kind, name, role or "")
    memo: dict[Any, list[Member]] = clouds.memo.setdefault("targets.groups", {})
    with _MEMO_LOCK:
        if key in memo:
            return memo[key]
    backend = clouds[cloud].organization
    if backend is None:
        raise InputErrors([Diagnostic(config.position(where),
                                      f"{cloud} cannot list {kind} targets in this version; list "
                                      "its targets one by one")])
    try:
        found = backend.members(kind, "" if cloud == "aws" else name, role=role)
    except WorkloadIdsError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputErrors([Diagnostic(config.position(where), (
            f"cannot list the targets of {kind} {name}: {first}. Nothing was read. Give "
            "workload-ids the right to list them (" + {
                "aws": "organizations:ListAccounts, from the management account or a delegated "
                       "administrator",
                "gcp": "resourcemanager.projects.list and resourcemanager.folders.list on it",
                "azure": "Microsoft.Management/managementGroups/descendants/read on it"}[cloud]
            + "), or list its targets one by one"))]) from None
    with _MEMO_LOCK:
        memo.setdefault(key, found)
        return memo[key]


def fan_out(config: Config, keys: Iterable[tuple[str, str]],
            read: Callable[[str, str], T]) -> list[tuple[tuple[str, str], T]]:
    """``read(provider, target)`` for every key, at most ``fanout.<cloud>`` at once per
    cloud (a pool of threads each), the answers in sorted key order whatever order they
    finish in. Every read is let finish; then the first failure in that order is raised,
    so a run's error does not depend on thread timing."""
    ordered = sorted(set(keys))
    by_cloud: dict[str, list[tuple[str, str]]] = {}
    for key in ordered:
        by_cloud.setdefault(key[0], []).append(key)
    futures: dict[tuple[str, str], Future[T]] = {}
    pools: list[ThreadPoolExecutor] = []
    try:
        for cloud, group in by_cloud.items():
            workers = min(config.fanout.budget(cloud), len(group))
            if workers <= 1:
                continue  # one at a time: on this thread, as before fan-out existed
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fanout-{cloud}")
            pools.append(pool)
            for key in group:
                futures[key] = pool.submit(read, *key)
        results: dict[tuple[str, str], T] = {}
        failures: dict[tuple[str, str], BaseException] = {}
        for key in ordered:
            if key in futures:
                continue
            try:
                results[key] = read(*key)
            except Exception as exc:
                failures[key] = exc
    finally:
        for pool in pools:
            pool.shutdown(wait=True)
    for key, future in futures.items():
        error = future.exception()
        if error is not None:
            failures[key] = error
        else:
            results[key] = future.result()
    for key in ordered:
        if key in failures:
            raise failures[key]
    return [(key, results[key]) for key in ordered]
