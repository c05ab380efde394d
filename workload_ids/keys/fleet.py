"""``rotate`` and ``recover`` over many workloads (each workload's lifecycle run
concurrently), and over every target when no manifest is given."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..audit import auditor_for
from ..calls import CallSeam
from ..config import Config
from ..errors import UserError
from ..model import MARK_TAG, CompiledWorkload, DesiredIdentity, Marker, StoredSecret
from ..targets import Shard
from .lifecycle import KeyReport, lifecycle

if TYPE_CHECKING:
    from ..inventory import InventoryRow


def rotate_workloads(compiled: list[CompiledWorkload], config: Config, seam: CallSeam, *,
                     now_name: str | None = None, recover_only: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> list[KeyReport]:
    """``workload-ids rotate`` (and ``recover``): advance every key-mode workload.

    Identities are checked for our marker first (one batched read per account when there
    are many), and a workload whose identity is missing or not ours is reported, not
    touched. Workloads run concurrently, bounded by ``calls.concurrency``.
    """
    import concurrent.futures

    from ..clouds import Clouds
    selected = [c for c in compiled if c.key_mode]
    if now_name is not None:
        selected = _named(now_name, compiled)
    clouds = Clouds(config, seam)
    desired = [clouds[cw.provider].desired(cw) for cw in selected]
    # None: the identity is missing; otherwise its tags (our marker, any quarantine mark).
    owned: dict[tuple[str, str, str], Mapping[str, str] | None] = {}
    groups: dict[tuple[str, str], list[DesiredIdentity]] = {}
    prefetched: dict[str, StoredSecret] = {}
    for d in desired:
        if not d.workload.observe:  # never read either: run() reports it and stops
            groups.setdefault((d.workload.provider, d.workload.target), []).append(d)
    for (name, target), items in groups.items():
        keys = clouds[name].keys
        if keys is None:
            continue  # reported per workload below
        if len(items) > 3:
            # Fleet run: one paged read of the account's identities and one of its secrets.
            store = clouds[name].store_for(target)
            prefix = config.credentials.secretName.split("{", 1)[0]
            found = store.describe_many(prefix)
            for d in items:
                secret = d.workload.secret_name
                prefetched[secret] = found.get(secret, StoredSecret(secret, exists=False))
            scope = {o.name: o for o in clouds[name].identities.observe_scope(target)
                     if o.kind in ("user", "service-account", "application")}
            for d in items:
                o = scope.get(d.name)
                # A forged marker (outside our location or naming) counts as no marker.
                owned[(name, target, d.name)] = None if o is None else {} if o.forged else o.tags
        else:
            for d in items:
                owned[(name, target, d.name)] = keys.owned_tags(d)

    auditor = auditor_for(config, "recover" if recover_only else "rotate", seam)

    def run(d: DesiredIdentity) -> KeyReport:
        cloud = clouds[d.workload.provider]
        if d.workload.observe:
            # Observe mode changes nothing, keys included: issuing, retiring or deleting
            # one would change the identity its owners keep by hand.
            return KeyReport(workload=d.workload.label, identity=d.name, secret=d.workload.secret_name,
                             next_step="none: spec.mode is observe, so rotation never runs here "
                                       "(set spec.mode: manage to rotate its keys)")
        if cloud.keys is None:
            report = KeyReport(workload=d.workload.label, identity=d.name,
                               secret="")  # no secret store: the name is empty  # nosec B106
            report.error = (f"{d.workload.label}: key mode on {d.workload.provider} is not available "
                            "in this version")
            return report
        cycle = lifecycle(d, cloud, auditor,
                          command="recover" if recover_only else "rotate",
                          prefetched=prefetched.get(d.workload.secret_name))
        tags = owned[(d.workload.provider, d.workload.target, d.name)]
        mine = None if tags is None else Marker.from_tags(tags) is not None
        if mine is None:
            cycle.report.error = (f"{d.workload.label}: {d.workload.provider} {d.kind} {d.name} does not "
                                  "exist; run `workload-ids apply` for this manifest first")
            return cycle.report
        if not mine:
            cycle.report.error = (f"{d.workload.label}: {d.kind} {d.name} does not carry the "
                                  "workload-ids ownership tags, or carries them outside the tool's "
                                  "location; it is never modified")
            cycle.report.refused = True
            return cycle.report
        if tags is not None and MARK_TAG in tags:
            # Issuing a key would undo the quarantine; cleanup releases it when its owner
            # or manifest returns, and rotation resumes then.
            cycle.report.error = (f"{d.workload.label}: {d.kind} {d.name} is quarantined by cleanup "
                                  f"({tags[MARK_TAG]}); its keys are left alone until it is released")
            cycle.report.refused = True
            return cycle.report
        if recover_only:
            return cycle.recover_now()
        return cycle.advance(emergency=now_name is not None)

    reports: list[KeyReport] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=config.calls.concurrency) as pool:
        futures = [pool.submit(run, d) for d in desired]
        for i, future in enumerate(futures, 1):
            reports.append(future.result())
            if progress:
                progress(i, len(futures))
    return reports


def _named(name: str, compiled: list[CompiledWorkload]) -> list[CompiledWorkload]:
    """The key-mode workload ``--now`` names, by ``NAME`` or ``ENVIRONMENT/NAME`` (the form
    every report prints); a UserError saying why none is, with the nearest name."""
    import difflib
    chosen = [c for c in compiled if name in (c.name, c.label)]
    keyed = [c for c in chosen if c.key_mode]
    if keyed:
        return keyed
    if chosen:
        raise UserError(f"{chosen[0].label} is keyless (it federates): it has no keys to replace. "
                        "--now takes a workload with mode: key. A keyless workload's credentials are "
                        "short-lived tokens that expire on their own; to cut them off at once, change "
                        "its federation in the manifest and apply")
    names = sorted({c.label for c in compiled if c.key_mode} | {c.name for c in compiled if c.key_mode})
    close = difflib.get_close_matches(name, names, n=1)
    raise UserError(f"no key-mode workload named {name!r} in the given manifests"
                    + (f"; did you mean {close[0]!r}?" if close else "")
                    + " --now takes NAME or ENVIRONMENT/NAME of a workload with mode: key")


@dataclass(frozen=True, slots=True)
class FleetKeys:
    """``rotate`` without PATH: every target read, and the key-mode identities found."""

    targets: tuple[tuple[str, str], ...]
    identities: tuple[InventoryRow, ...]  # each key-mode identity of ours
    shard: Shard | None = None

    def as_json(self) -> dict[str, Any]:
        """The fleet run as ``keys --format json`` prints it."""
        return {"targets": [f"{p}:{t}" for p, t in self.targets],
                "identities": [r.as_json() for r in self.identities],
                "shard": self.shard.as_json() if self.shard else None}


def fleet_keys(config: Config, seam: CallSeam, *, provider: str | None = None,
               targets: list[str] | None = None, shard: Shard | None = None) -> FleetKeys:
    """Read every target ``cleanup`` and ``inventory`` read without PATH (the config's
    ``targets:`` with its groups listed, ``aws.accounts``, every target the audit trail shows
    the tool wrote to; ``provider`` and ``targets`` narrow); a configured or audited target
    that cannot be read raises before anything else is read (exit 1). Changes nothing: a
    workload's rotation settings and its secret come from its manifest, and keys are never
    turned on a guess."""
    from ..clouds import Clouds
    from ..inventory import inventory_report
    report = inventory_report([], config, seam, provider=provider, targets=targets, shard=shard,
                              clouds=Clouds(config, seam))
    rows = report.rows
    found = tuple(r for r in rows if not r.forged and (r.kind in ("user", "application") or r.keys))
    return FleetKeys(tuple(sorted(report.scopes.read | {(r.provider, r.target) for r in rows})), found,
                     shard)


__all__ = ["FleetKeys", "fleet_keys", "rotate_workloads"]
