"""The Python API: the same steps and results as the CLI, for pipelines written in Python.

Every function raises :class:`workload_ids.errors.WorkloadIdsError` subclasses on bad
input or cloud failure, exactly where the CLI would exit non-zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .apply import ApplyResult, apply_plan
from .calls import CallSeam, RetryPolicy
from .config import Config, load_config
from .inventory import InventoryRow
from .inventory import inventory as _inventory
from .plan import Plan, ScopePrefetch, build_plan
from .validate import Validation
from .validate import validate as _validate

if TYPE_CHECKING:
    from .adopt import AdoptReport
    from .attestation import AttestResult
    from .cleanup.restore import RestoreResult
    from .cleanup.workflow import CleanupReport
    from .discover.workflow import DiscoverReport
    from .keys.lifecycle import KeyReport
    from .review import ReviewReport
    from .targets import Shard


def seam_for(config: Config) -> CallSeam:
    """The call seam a command's cloud calls go through, with the config's retry budget."""
    return CallSeam(RetryPolicy(max_attempts=config.calls.maxAttempts,
                                max_seconds=config.calls.maxRetrySeconds))


_seam = seam_for


def validate(paths: Iterable[str | Path], config: Config | None = None) -> Validation:
    """Load and check manifests; raises InputErrors listing every problem."""
    result = _validate(paths, config or load_config())
    result.raise_for_errors()
    return result


def plan_paths(paths: Iterable[str | Path], config: Config | None = None, *,
               seam: CallSeam | None = None,
               checked: Callable[[Validation], None] | None = None,
               progress: Callable[[int, int], None] | None = None) -> Plan:
    """Validate and plan in one step, as ``workload-ids plan PATHS`` does: for a folder,
    the accounts are read while the manifests are still being checked. ``checked`` sees
    the validation before its errors are raised (the CLI prints the warnings there)."""
    config = config or load_config()
    seam = seam or _seam(config)
    path_list = list(paths)
    fleet = True if any(Path(p).is_dir() for p in path_list) else None
    # A fleet run starts reading each account while the manifests are still being checked.
    prefetch = ScopePrefetch(config, seam) if fleet else None
    try:
        result = _validate(path_list, config, on_target=prefetch)
        if checked is not None:
            checked(result)
        result.raise_for_errors()
    except BaseException:
        if prefetch:
            prefetch.close()
        raise
    return build_plan(result.compiled, config, seam, fleet=fleet, prefetch=prefetch,
                      progress=progress)


def plan(checked: Validation, config: Config | None = None, *, seam: CallSeam | None = None,
         fleet: bool | None = None) -> Plan:
    """Read the cloud and compute the changes that apply would make."""
    config = config or load_config()
    if fleet is None and checked.directory_run:
        fleet = True
    return build_plan(checked.compiled, config, seam or _seam(config), fleet=fleet)


def apply(plan: Plan, config: Config | None = None, *, accept_breaking: bool = False) -> ApplyResult:
    """Carry out ``plan``; see :class:`ApplyResult` for outputs and per-workload errors.
    ``accept_breaking``: apply even when ``guardrails.refuseRemovingUsedAccess`` would
    refuse a plan that removes used access."""
    config = config or load_config()
    return apply_plan(plan, concurrency=config.calls.concurrency, accept_breaking=accept_breaking)


def inventory(paths: Iterable[str | Path] = (), config: Config | None = None, *,
              provider: str | None = None, targets: Iterable[str] = (),
              seam: CallSeam | None = None) -> list[InventoryRow]:
    """What workload-ids manages in every target (the config's, the manifests' in
    ``paths``), or only ``provider``'s, or only ``targets``."""
    config = config or load_config()
    return _inventory(list(paths), config, seam or _seam(config), provider=provider,
                      targets=list(targets))


@dataclass
class Restored:
    """What :func:`restore` did: the identity back from its bundle and, for a key-mode
    user given its manifest, the new key's report (keys themselves cannot be restored)."""

    identity: RestoreResult
    key: KeyReport | None = None


def restore(identity: str, config: Config | None = None, *, target: str | None = None,
            issue_key: str | Path | None = None, seam: CallSeam | None = None) -> Restored:
    """Recreate ``identity`` from its restore bundle; with ``issue_key`` (the workload's
    manifest), also issue a new access key to a restored user and deliver it as that
    manifest says. The manifest is checked before anything is restored, so a wrong one
    leaves no half-done job."""
    from .cleanup.restore import restore as _restore
    from .keys.fleet import rotate_workloads
    config = config or load_config()
    seam = seam or _seam(config)
    checked = validate([issue_key], config) if issue_key is not None else None
    result = _restore(identity, config, seam, target=target)
    if checked is None or result.kind != "user":
        return Restored(result)
    name = result.workload.split("/", 1)[1]
    [key] = rotate_workloads(checked.compiled, config, seam, now_name=name)
    result.notes = [n for n in result.notes if not n.startswith("access keys cannot")]
    result.notes.insert(0, "access keys cannot be restored (AWS never shows a secret twice); "
                           f"a new one was issued to secret {key.secret}")
    return Restored(result, key)


def cleanup(paths: Iterable[str | Path] = (), config: Config | None = None, *,
            apply: bool = False, max_actions: int | None = None, provider: str | None = None,
            targets: Iterable[str] = (), delete_with_local_audit: bool = False,
            seam: CallSeam | None = None,
            progress: Callable[[int, int], None] | None = None,
            shard: Shard | None = None) -> CleanupReport:
    """Judge every identity the tool manages (see ``workload-ids cleanup``) and, with
    ``apply``, transfer, quarantine, release and delete as judged."""
    from .cleanup.workflow import cleanup as _cleanup
    config = config or load_config()
    return _cleanup([str(p) for p in paths], config, seam or _seam(config), apply=apply,
                    max_actions=max_actions, provider=provider, targets=list(targets),
                    progress=progress, delete_with_local_audit=delete_with_local_audit, shard=shard)


def attest(workloads: Iterable[str | Path], by: str, config: Config | None = None, *,
           note: str | None = None, seam: CallSeam | None = None) -> AttestResult:
    """Record ``by``'s confirmation that each workload (``ENVIRONMENT/NAME`` or a manifest
    path) still needs its access, as ``workload-ids attest`` does: one signed ``attest``
    record per workload in the audit trail. Raises :class:`~workload_ids.errors.UserError`
    for a workload that does not exist (with the nearest name) or a config without an
    owner directory or audit trail, and :class:`~workload_ids.errors.GuardrailError` when
    ``by`` is not an active member of a workload's owning group; nothing is recorded then."""
    from .attestation import attest as _attest
    config = config or load_config()
    return _attest([str(w) for w in workloads], by, config, seam or _seam(config), note=note)


def review(paths: Iterable[str | Path] = (), config: Config | None = None, *,
           seam: CallSeam | None = None) -> ReviewReport:
    """Each workload's last believed attestation, due date (``review.every``) and state,
    grouped per owner (``workload-ids review``): the workloads of the manifests in
    ``paths`` with their access entries, or without paths every workload managed in the
    targets. An attestation record without a valid signature is listed as not believed
    and never counts. ``review.render_text``/``render_markdown`` render the report and
    ``ReviewReport.as_json`` is its JSON document."""
    from .review import review as _review
    config = config or load_config()
    return _review([str(p) for p in paths], config, seam or _seam(config))


def adopt(identities: Iterable[str], out: str | Path, config: Config | None = None, *,
          owner: str | None = None, environment: str | None = None, region: str | None = None,
          apply: bool = False, seam: CallSeam | None = None) -> AdoptReport:
    """Write an observe-mode, retain manifest per existing identity into ``out``, proven to
    grant nothing the identity lacks (see ``workload-ids adopt``); with ``apply``, mark
    each identity whose manifest changes nothing."""
    from .adopt import adopt as _adopt
    config = config or load_config()
    return _adopt(list(identities), Path(out), config, seam or _seam(config), owner=owner,
                  environment=environment, region=region, apply=apply)


def rotate(paths: Iterable[str | Path], config: Config | None = None, *,
           now: str | None = None, recover_only: bool = False, seam: CallSeam | None = None,
           progress: Callable[[int, int], None] | None = None) -> list[KeyReport]:
    """Advance the key rotation of the key-mode workloads in ``paths`` by whatever is due
    (``now``: replace that workload's key at once; ``recover_only``: only finish or undo
    what a crashed run left)."""
    from .keys.fleet import rotate_workloads
    config = config or load_config()
    checked = validate(paths, config)
    return rotate_workloads(checked.compiled, config, seam or _seam(config), now_name=now,
                            recover_only=recover_only, progress=progress)


def discover(config: Config | None = None, *, provider: str | None = None, targets: Iterable[str] = (),
             shard: Shard | None = None, service_linked: bool = False,
             seam: CallSeam | None = None) -> DiscoverReport:
    """Every non-human identity of the targets, ours or not, judged (``workload-ids
    discover``); ``discover.document.to_document(report)`` is its JSON document."""
    from .clouds import Clouds
    from .discover.workflow import discover as _discover
    from .targets import read_scopes
    config = config or load_config()
    clouds = Clouds(config, seam or _seam(config))
    scopes = read_scopes(config, clouds, provider=provider, targets=list(targets), shard=shard)
    return _discover(config, clouds, scopes.ordered(), service_linked=service_linked,
                     shard=None if shard is None else (shard.index, shard.count))


__all__ = ["ApplyResult", "CallSeam", "Plan", "Restored", "Validation", "adopt", "apply", "attest",
           "cleanup", "discover", "inventory", "load_config", "plan", "plan_paths", "restore",
           "review", "rotate", "seam_for", "validate"]
