"""What we manage, read from the cloud (the source of truth), as rows for a table or JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .calls import CallSeam
from .clock import format_time
from .clock import now as clock_now
from .clouds import Clouds
from .config import Config
from .errors import one_line
from .keys.lifecycle import lifecycle
from .model import MARK_TAG, CompiledWorkload
from .targets import Scopes, Shard


@dataclass(frozen=True, slots=True)
class InventoryRow:
    """One identity carrying our marker."""

    provider: str
    target: str
    kind: str
    identity: str
    workload: str
    environment: str
    owner: str
    declared: bool | None  # None when no manifests were given
    last_used: str | None
    keys: tuple[dict[str, Any], ...] = ()
    next_step: str | None = None
    next_at: str | None = None
    secret: str | None = None
    quarantine: str | None = None  # cleanup's mark, when quarantined
    forged: str | None = None  # why an identity with our marker is not ours (never touched)

    def as_json(self) -> dict[str, Any]:
        """The row as ``inventory --format json`` prints it; key fields only for key-mode identities."""
        doc: dict[str, Any] = {"provider": self.provider, "target": self.target, "kind": self.kind,
               "identity": self.identity, "workload": self.workload,
               "environment": self.environment, "owner": self.owner,
               "declared": self.declared, "lastUsed": self.last_used, "quarantine": self.quarantine,
               "state": self.state, "forged": self.forged}
        if self.kind == "user" or self.secret is not None:  # a key-mode identity
            doc.update(keys=list(self.keys), secret=self.secret, nextStep=self.next_step,
                       nextAt=self.next_at)
        return doc

    @property
    def state(self) -> str:
        """``forged``, ``quarantined`` or ``active``."""
        return "forged" if self.forged else "quarantined" if self.quarantine else "active"


@dataclass(frozen=True)
class InventoryReport:
    """What ``inventory`` read: the rows, and the targets (with this run's shard)."""

    rows: list[InventoryRow]
    scopes: Scopes

    def as_json(self, calls: int) -> dict[str, Any]:
        """``inventory --format json``: the same envelope as ``discover``'s document (kind,
        version, shard, targets), so ``workload-ids report merge`` combines sharded runs."""
        per_target = Counter((r.provider, r.target) for r in self.rows)
        return {"kind": "workload-ids/inventory", "version": 1,
                "shard": self.scopes.shard.as_json() if self.scopes.shard else None,
                "targets": [{"provider": p, "target": t, "status": "read", "identities": per_target[(p, t)]}
                            for p, t in self.scopes.ordered()],
                "identities": [r.as_json() for r in self.rows],
                "summary": {"identities": len(self.rows), "apiCalls": calls}}


def inventory(paths: list[str | Path], config: Config, seam: CallSeam, *, provider: str | None = None,
              targets: list[str] | None = None, shard: Shard | None = None) -> list[InventoryRow]:
    """Read every identity we manage in the targets (see :func:`inventory_report`)."""
    return inventory_report(paths, config, seam, provider=provider, targets=targets, shard=shard).rows


def inventory_report(paths: list[str | Path], config: Config, seam: CallSeam, *,
                     provider: str | None = None, targets: list[str] | None = None,
                     shard: Shard | None = None, clouds: Clouds | None = None) -> InventoryReport:
    """Read every identity we manage in the targets :func:`workload_ids.targets.read_scopes`
    gives (the manifests' in ``paths``, the config's ``targets:`` with its groups listed,
    those the audit log shows we wrote to; narrowed by ``provider`` and ``targets``, split
    by ``shard``), the targets read concurrently within the config's ``fanout`` budgets."""
    from .targets import fan_out, prove_readable, read_scopes
    declared_targets: set[tuple[str, str]] = set()
    declared: set[tuple[str, str, str]] | None = None
    key_mode: dict[tuple[str, str, str], CompiledWorkload] = {}
    if paths:
        from .validate import validate
        checked = validate(paths, config)
        checked.raise_for_errors()
        declared = set()
        for cw in checked.compiled:
            declared_targets.add((cw.provider, cw.target))
            declared.add((cw.provider, cw.target, f"{cw.environment}/{cw.name}"))
            if cw.key_mode:
                key_mode[(cw.provider, cw.target, f"{cw.environment}/{cw.name}")] = cw
    clouds = clouds or Clouds(config, seam)
    judged = read_scopes(config, clouds, provider=provider, targets=targets or (),
                         declared=declared_targets, shard=shard)
    prove_readable(judged, clouds)

    def rows_of(name: str, target: str) -> list[InventoryRow]:
        cloud = clouds[name]
        rows: list[InventoryRow] = []
        for o in cloud.identities.observe_scope(target):
            marker = o.marker
            if marker is None:
                continue
            label = f"{marker.environment}/{marker.workload}"
            last = o.extra.get("lastUsed")
            keys: tuple[dict[str, Any], ...] = ()
            step = when = secret = None
            declared_cw = key_mode.get((name, target, label)) if not o.forged else None
            if o.forged:  # not ours: its keys and secret are not read either
                pass
            elif declared_cw is not None:  # any cloud: the key lifecycle as rotate sees it
                cycle = lifecycle(cloud.desired(declared_cw), cloud)
                cycle._describe(cycle.read())
                keys, step, secret = tuple(cycle.report.keys), cycle.report.next_step, cycle.secret
                when = format_time(cycle.report.next_at) if cycle.report.next_at else None
            elif o.kind == "user" and cloud.keys is not None:  # no manifest: the keys the cloud lists
                now = clock_now()
                keys = tuple({"id": k.key_id, "status": k.status, "created": format_time(k.created),
                              "ageDays": round((now - k.created).total_seconds() / 86400, 1)}
                             for k in cloud.keys.keys_of(target, o.name))
            rows.append(InventoryRow(
                provider=name, target=target, kind=o.kind, identity=o.name,
                workload=marker.workload, environment=marker.environment, owner=marker.owner,
                declared=None if declared is None else (name, target, label) in declared,
                # A cloud that keeps no last-use time on the identity (GCP) says "unknown".
                last_used=_when(last) if "lastUsed" in o.extra else "unknown", keys=keys,
                next_step=step, next_at=when, secret=secret,
                quarantine=o.tags.get(MARK_TAG), forged=o.forged))
        return rows

    found = [row for _, rows in fan_out(config, judged.read, rows_of) for row in rows]
    return InventoryReport(sorted(found, key=lambda r: (r.provider, r.target, r.identity)), judged)


def rows_from_document(document: Mapping[str, Any]) -> list[InventoryRow]:
    """The rows of an ``inventory --output json`` document (a merged one, for its table).
    Text fields are read as text whatever a damaged file holds: a table, never a traceback."""
    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    def key(k: Any) -> dict[str, Any]:
        k = k if isinstance(k, Mapping) else {}
        return {"id": str(k.get("id", "?")), "role": str(k.get("role", "")),
                "status": str(k.get("status", "?")), "ageDays": k.get("ageDays", "?")}
    return [InventoryRow(
        provider=str(i["provider"]), target=str(i["target"]), kind=str(i.get("kind", "")),
        identity=str(i["identity"]), workload=str(i.get("workload", "")),
        environment=str(i.get("environment", "")), owner=str(i.get("owner", "")),
        declared=i.get("declared") if isinstance(i.get("declared"), bool) else None,
        last_used=text(i.get("lastUsed")),
        keys=tuple(key(k) for k in i.get("keys") or () if isinstance(i.get("keys"), list)),
        next_step=text(i.get("nextStep")), next_at=text(i.get("nextAt")), secret=text(i.get("secret")),
        quarantine=text(i.get("quarantine")), forged=text(i.get("forged")))
        for i in document["identities"]]


def _when(value: object) -> str | None:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value) if value else None


def render_inventory(rows: list[InventoryRow]) -> str:
    """A fixed-width table."""
    if not rows:
        return "No identities managed by workload-ids were found."
    header = ("IDENTITY", "KIND", "WORKLOAD", "OWNER", "TARGET", "MANIFEST", "LAST USED", "STATE")
    # Cells come from the cloud's tags and names: one line each, before widths are measured.
    table = [header] + [tuple(one_line(cell) for cell in (
        r.identity, r.kind, f"{r.environment}/{r.workload}", r.owner, f"{r.provider}:{r.target}",
        "-" if r.declared is None else ("yes" if r.declared else "NO"), r.last_used or "never",
        r.state.upper() if r.forged else r.state))
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    for r in rows:
        if r.forged:
            lines.append(f"{r.identity}: FORGED: carries the workload-ids marker but {r.forged}; "
                         "never touched by cleanup, rotate or restore: find out who tagged it")
    for r in rows:
        if r.forged or (r.kind != "user" and r.secret is None):  # only key-mode identities have keys
            continue
        lines.append("")
        lines.append(f"{r.identity}: secret {r.secret or '(declared by no manifest given)'}")
        for k in r.keys:
            lines.append(f"    key {k['id']}  {k.get('role', '')} {k['status']}  age {k['ageDays']}d")
        if r.next_step:
            lines.append(f"    next: {r.next_step}" + (f" at {r.next_at}" if r.next_at else ""))
    return "\n".join(one_line(line) for line in lines)
