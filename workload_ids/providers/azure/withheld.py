"""Role assignments workload-ids did not make, held by a managed identity it manages (an
adopted identity's hand-made assignments, or someone's addition to one it created), which
quarantine removes so that the identity keeps no access while its owner or manifest is
gone (AWS quarantine denies everything, GCP disables the account; Azure has no switch for
a managed identity, only its assignments).

Before any is removed, cleanup journals them in the audit trail: scope, role definition,
condition, description and assignment name, under a MAC keyed by the subscription's
signing key and bound to the identity's principal. Release, a restore bundle and restore
recreate exactly what such a journal lists, and nothing a journal without a valid MAC
lists: whoever can append to the trail must not be able to have the tool grant an
identity a role (it holds User Access Administrator's power over the subscription).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...calls import CONFLICT
from ...errors import CloudError, ConflictError
from ...signing import WITHHELD, SigningKey
from .clients import AzureClients
from .roles import AzureGrants, role_guid

# Owner, User Access Administrator, Role Based Access Control Administrator: bootstrap's ABAC
# condition keeps the tool's own role assignment rights away from them (it may neither make
# nor remove one), so an identity holding one keeps it, and cleanup says so.
ADMIN_ROLES = frozenset({"8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "18d7d88d-d35e-4fb5-a5c3-7773c6a72009",
                         "f58310d9-a9f6-439a-9e8d-f62e7b41a168"})
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The fields of an assignment that say what it grants: recreated exactly.
_FIELDS = ("name", "scope", "roleDefinitionId", "principalType", "condition", "conditionVersion",
           "description")


def principal_guid(principal: str, what: str) -> str:
    """``principal`` lower-case, when it is one GUID; ConflictError otherwise. A list of
    assignments filtered by an empty or malformed principal is every principal's."""
    value = principal.strip().lower()
    if not _GUID.fullmatch(value):
        raise ConflictError(f"{what} has no principal id workload-ids can read ({principal!r})",
                            "none of its role assignments is touched; rerun when ARM reports it")
    return value


def in_subscription(subscription: str, scope: str) -> bool:
    """Whether ``scope`` is the subscription or below it (what credentials there can remove)."""
    base = f"/subscriptions/{subscription}".lower()
    s = scope.rstrip("/").lower()
    return s == base or s.startswith(base + "/")


def _above(scope: str) -> bool:
    """A scope above every subscription: the root or a management group."""
    s = scope.rstrip("/").lower()
    return s == "" or s.startswith("/providers/microsoft.management/managementgroups/")


def select(subscription: str, principal: str, assignments: Iterable[Any],
           ours: Iterable[str]) -> tuple[list[dict[str, str | None]], list[str]]:
    """Of ``assignments``, those of exactly ``principal`` (GUIDs compared case-insensitively)
    whose role is not one of ``ours`` (role GUIDs): the ones quarantine removes (in the
    subscription or below) as journal entries, sorted; and, in words, those it cannot
    remove (above the subscription, where its credentials do not reach, or of an
    administrator role, which the tool's rights exclude). Assignments of anyone else are
    never selected, whatever the list returned."""
    mine = {g.lower() for g in ours}
    inside: list[dict[str, str | None]] = []
    left: list[str] = []
    for a in assignments:
        role = role_guid(str(a.role_definition_id))
        if str(a.principal_id or "").lower() != principal or role in mine:
            continue
        if not in_subscription(subscription, str(a.scope)):
            if _above(str(a.scope)):
                left.append(f"{a.role_definition_id} at {a.scope} (above the subscription)")
            continue  # another subscription's: never listed here, and never ours to touch
        if role in ADMIN_ROLES:
            left.append(f"{a.role_definition_id} at {a.scope} (an administrator role, which the tool's "
                        "role assignment rights exclude)")
            continue
        inside.append({"name": str(a.name).lower(), "scope": str(a.scope),
                       "roleDefinitionId": str(a.role_definition_id),
                       "principalType": a.principal_type or "ServicePrincipal",
                       "condition": a.condition or None,
                       "conditionVersion": (a.condition_version or None) if a.condition else None,
                       "description": a.description or None})
    return sorted(inside, key=lambda g: (str(g["scope"]).lower(), str(g["name"]))), sorted(left)


def _signed(journal: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in journal.items() if k != "mac"}


def sign(key: SigningKey, subscription: str, identity: str, principal: str,
         grants: Sequence[Mapping[str, Any]], left: Sequence[str]) -> dict[str, Any]:
    """The journal of ``grants`` (removed from ``identity``'s ``principal``) and, in words,
    of what stays (``left``), with its MAC."""
    journal: dict[str, Any] = {"subscription": subscription.lower(), "identity": identity,
                               "principalId": principal, "grants": [dict(g) for g in grants],
                               "left": list(left)}
    journal["mac"] = key.mac(WITHHELD, _signed(journal))
    return journal


def verified(key: SigningKey, subscription: str, identity: str, principal: str,
             journal: object) -> list[dict[str, Any]]:
    """The grants of ``journal`` for ``principal``: all of them when its MAC is valid and
    it names this subscription and identity and that principal; none when it is a valid
    journal of another principal (an earlier identity of the same name, deleted since);
    ConflictError when it is not the tool's (nothing of it is recreated)."""
    ok = isinstance(journal, dict) and key.verify(WITHHELD, _signed(journal), journal.get("mac")) \
        and journal.get("subscription") == subscription.lower() and journal.get("identity") == identity \
        and isinstance(journal.get("grants"), list)
    if not ok:
        raise ConflictError(f"a record of role assignments withheld from managed identity {identity} is "
                            "not authenticated (no valid MAC for this identity)",
                            "none of the withheld assignments was recreated; find out who wrote that "
                            "audit record (`workload-ids audit verify`, the trail's history)")
    assert isinstance(journal, dict)
    if journal.get("principalId") != principal.lower():
        return []
    grants = [dict(g) for g in journal["grants"] if isinstance(g, dict)]
    for g in grants:
        if not in_subscription(subscription, str(g.get("scope"))):  # signed, but never outside
            raise ConflictError(f"a withheld assignment of {identity} is at {g.get('scope')}, outside "
                                f"subscription {subscription}", "it is never recreated")
    return grants


class AzureWithheld:
    """Reads, removes and recreates the assignments of :mod:`this module <.withheld>`."""

    def __init__(self, clients: AzureClients, grants: AzureGrants) -> None:
        self.clients = clients
        self.grants = grants

    def journal(self, subscription: str, identity: str, principal: str,
                ours: Iterable[str]) -> dict[str, Any] | None:
        """The signed journal of what ``principal`` holds beyond ``ours`` (one call), or
        None when it holds nothing else."""
        principal = principal_guid(principal, f"managed identity {identity}")
        held = self.grants.assignments(subscription, principal)
        inside, left = select(subscription, principal, held, ours)
        if not inside and not left:
            return None
        return sign(self.clients.signing_keys.get(subscription), subscription, identity, principal,
                    inside, left)

    def remove(self, subscription: str, grants: Iterable[Mapping[str, Any]]) -> None:
        """Delete each assignment (one already gone is fine)."""
        for g in grants:
            self.grants.delete_assignment(subscription, str(g["scope"]), str(g["name"]))

    def recreate(self, subscription: str, principal: str, grants: Iterable[Mapping[str, Any]]) -> int:
        """Each assignment again, under its own name, for ``principal`` (the identity's, new
        after a restore); one already there is fine. Returns how many were asked for."""
        authz = self.clients.authorization(subscription)
        count = 0
        for g in grants:
            body: dict[str, Any] = {"role_definition_id": g["roleDefinitionId"], "principal_id": principal,
                                    "principal_type": g.get("principalType") or "ServicePrincipal"}
            if g.get("condition"):
                body.update(condition=g["condition"], condition_version=g.get("conditionVersion") or "2.0")
            if g.get("description"):
                body["description"] = g["description"]
            try:
                self.clients.call("authorization.role_assignments.create", authz.role_assignments.create,
                                  str(g["scope"]), str(g["name"]), body)
            except CloudError as exc:
                if exc.kind != CONFLICT:  # RoleAssignmentExists: given back already, or by hand
                    raise
            count += 1
        return count
