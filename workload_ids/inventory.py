"""What we manage, read from the cloud (the source of truth), as rows for a table or JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .calls import CallSeam
from .config import Config
from .providers import create_provider


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

    def as_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "target": self.target, "kind": self.kind,
                "identity": self.identity, "workload": self.workload,
                "environment": self.environment, "owner": self.owner,
                "declared": self.declared, "lastUsed": self.last_used}


def inventory(paths: list[str | Path], config: Config, seam: CallSeam, *, provider: str = "aws",
              targets: list[str] | None = None) -> list[InventoryRow]:
    """Read every identity we manage in the targets named by ``paths`` or ``targets``."""
    scopes: set[tuple[str, str]] = {(provider, t) for t in targets or []}
    declared: set[tuple[str, str, str]] | None = None
    if paths:
        from .validate import validate
        checked = validate(paths, config)
        checked.raise_for_errors()
        declared = set()
        for cw in checked.compiled:
            scopes.add((cw.provider, cw.target))
            declared.add((cw.provider, cw.target, f"{cw.environment}/{cw.name}"))
    backends = {}
    if not scopes:
        backend = create_provider(provider, config, seam)
        backends[provider] = backend
        scopes.add((provider, backend.current_target()))
    rows: list[InventoryRow] = []
    for name, target in sorted(scopes):
        backend = backends.get(name) or create_provider(name, config, seam)
        backends[name] = backend
        for o in backend.observe_scope(target):
            marker = o.marker
            if marker is None:
                continue
            label = f"{marker.environment}/{marker.workload}"
            last = o.extra.get("lastUsed")
            rows.append(InventoryRow(
                provider=name, target=target, kind=o.kind, identity=o.name,
                workload=marker.workload, environment=marker.environment, owner=marker.owner,
                declared=None if declared is None else (name, target, label) in declared,
                last_used=_when(last)))
    return sorted(rows, key=lambda r: (r.provider, r.target, r.identity))


def _when(value: object) -> str | None:
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    return str(value) if value else None


def render_inventory(rows: list[InventoryRow]) -> str:
    """A fixed-width table."""
    if not rows:
        return "No identities managed by workload-ids were found."
    header = ("IDENTITY", "KIND", "WORKLOAD", "OWNER", "TARGET", "MANIFEST", "LAST USED")
    table = [header] + [(
        r.identity, r.kind, f"{r.environment}/{r.workload}", r.owner, f"{r.provider}:{r.target}",
        "-" if r.declared is None else ("yes" if r.declared else "NO"), r.last_used or "never")
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in table)
