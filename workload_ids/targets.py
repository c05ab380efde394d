"""Which accounts, projects and subscriptions a fleet command (``cleanup``, ``inventory``)
reads: those the manifests name, those ``--target`` names, every ``targets:`` entry of the
config, and every target the audit log shows the tool wrote to.

The last two exist because manifests alone forget: remove the last manifest of a project
and its identities would never be read again, so never judged. A configured or audited
target that cannot be read stops the run before anything changes (exit 1); silence would
leave its identities in place forever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import Config
from .errors import UserError, WorkloadIdsError
from .providers import CLOUDS

if TYPE_CHECKING:
    from .clouds import Clouds

_KEY = {"aws": "account", "gcp": "project", "azure": "subscription"}


@dataclass(frozen=True)
class Scopes:
    """The targets to read, and why each one that no manifest names is read."""

    read: frozenset[tuple[str, str]]
    # (provider, target) -> why it is read though no manifest or --target names it; each is
    # proven readable before anything is read or changed.
    vouched: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def only(self, providers: Iterable[str]) -> Scopes:
        """These scopes restricted to ``providers``."""
        keep = set(providers)
        return Scopes(frozenset(k for k in self.read if k[0] in keep),
                      {k: v for k, v in self.vouched.items() if k[0] in keep}, self.notes)


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
            if (r.get("result") == "ok" and provider in CLOUDS
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
    """Reach every vouched target once (the call each cloud uses to check credentials)
    before anything is read or changed; the first that fails stops the run."""
    failed: list[str] = []
    for name, target in sorted(scopes.vouched):
        try:
            clouds[name].identities.verify_target(target)
        except WorkloadIdsError as exc:
            failed.append(f"{name} {_KEY.get(name, 'target')} {target} ({scopes.vouched[(name, target)]}): "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if failed:
        raise UserError(
            "cannot read " + "; ".join(failed) + ". Nothing was done: its identities would go "
            "unjudged. Give workload-ids access to it (targets.<cloud> entries take a profile or "
            "roleArn for AWS), or, if it is gone for good, mark its entry `retired: true` under "
            "targets in the config")
