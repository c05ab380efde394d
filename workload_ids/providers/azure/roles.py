"""Our custom roles and their assignments, shared by managed identities and applications
(both are service principals to ARM): the role and assignment documents a plan compares,
the permission diff it shows, and :class:`AzureGrants`, which reads and converges a
principal's roles and assignments. Also what the two kinds' diffs share about markers.

Assignments are ours when their role is; a role is ours when its description carries our
marker. Custom roles without our marker are never written, even if one is ours by name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ...calls import CONFLICT, NOT_FOUND
from ...errors import CloudError, ConflictError
from ...model import (
    SIGNED_KEYS,
    TAG_ADOPTED,
    TAG_DELETION_POLICY,
    TAG_MAC,
    Change,
    DesiredIdentity,
    Marker,
    ObservedIdentity,
)
from .clients import AzureClients

# A new identity or application is created with this digest in its marker, and the real
# digest is written last: a run that dies half-way leaves a digest that differs from the
# manifest's, so the next plan (even a fleet plan) converges everything again.
PENDING_DIGEST = "pending"
_ROLE_PATH = "/providers/Microsoft.Authorization/roleDefinitions/"


def role_guid(role_definition_id: str) -> str:
    """The GUID at the end of a role definition id, lower-case."""
    return role_definition_id.rsplit("/", 1)[-1].lower()


def role_ref(subscription: str, guid: str) -> str:
    """The role definition id of ``guid`` in ``subscription``."""
    return f"/subscriptions/{subscription}{_ROLE_PATH}{guid}"


def role_doc(role: Any) -> dict[str, Any]:
    """A RoleDefinition as render.desired_objects writes one."""
    permissions = [{"actions": sorted(p.actions or []), "notActions": sorted(p.not_actions or []),
                    "dataActions": sorted(p.data_actions or []),
                    "notDataActions": sorted(p.not_data_actions or [])} for p in role.permissions or []]
    return {"roleName": role.role_name, "description": role.description or "",
            "permissions": permissions, "assignableScopes": sorted(role.assignable_scopes or [])}


def assignment_doc(subscription: str, assignment: Any) -> dict[str, Any]:
    """A RoleAssignment as render.desired_objects writes one."""
    return {"scope": assignment.scope, "roleDefinitionId": role_ref(subscription, role_guid(
        assignment.role_definition_id)), "principalType": assignment.principal_type or "ServicePrincipal"}


def norm(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """Assignments compared case-insensitively in their scope, as ARM does."""
    return {**doc, "scope": str(doc["scope"]).lower(),
            "roleDefinitionId": str(doc["roleDefinitionId"]).lower()}


class OurRoles:
    """Our custom roles of one subscription, indexed by workload: a fleet read matches each
    of 1,000 identities against some 3,000 roles. Thread-safe; kept current with our own
    writes during a run."""

    def __init__(self, roles: Mapping[str, dict[str, Any]] | None = None,
                 foreign: set[str] | None = None) -> None:
        self._lock = threading.Lock()
        # GUIDs of custom roles without our marker: never written, even if one is ours by name
        self.foreign: frozenset[str] = frozenset(foreign or ())
        self._by_guid: dict[str, dict[str, Any]] = {}
        self._by_workload: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for guid, role in (roles or {}).items():
            self.put(guid, role)

    @staticmethod
    def _key(role: Mapping[str, Any]) -> tuple[str, str] | None:
        marker = Marker.from_text(role["description"])
        return (marker.environment, marker.workload) if marker else None

    def put(self, guid: str, role: dict[str, Any]) -> None:
        """Add or replace one of our roles (after we wrote it)."""
        with self._lock:
            self._drop(guid)
            self._by_guid[guid] = role
            key = self._key(role)
            if key is not None:
                self._by_workload.setdefault(key, {})[guid] = role

    def drop(self, guid: str) -> None:
        """Forget a role (after we deleted it)."""
        with self._lock:
            self._drop(guid)

    def _drop(self, guid: str) -> None:
        old = self._by_guid.pop(guid, None)
        key = self._key(old) if old is not None else None
        if key is not None:
            self._by_workload.get(key, {}).pop(guid, None)

    def of(self, marker: Marker) -> dict[str, dict[str, Any]]:
        """The roles of one workload (by the marker in their descriptions)."""
        with self._lock:
            return dict(self._by_workload.get((marker.environment, marker.workload), {}))

    def __contains__(self, guid: object) -> bool:
        return guid in self._by_guid


def permission_diff(have_roles: Mapping[str, Any], have_assignments: Mapping[str, Any],
                    want_roles: Mapping[str, Any], want_assignments: Mapping[str, Any]
                    ) -> dict[str, list[dict[str, str]]]:
    """(operation, scope) pairs a set of roles and assignments grants, for the plan's diff."""
    def pairs(roles: Mapping[str, Any], assignments: Mapping[str, Any]) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for a in assignments.values():
            role = roles.get(role_guid(a["roleDefinitionId"]), {})
            for p in role.get("permissions", []):
                out |= {(op, str(a["scope"])) for op in [*p["actions"], *p["dataActions"]]}
        return out
    old = pairs(have_roles, have_assignments)
    new = pairs(want_roles, want_assignments)
    return {"added": [{"action": a, "resource": r} for a, r in sorted(new - old)],
            "removed": [{"action": a, "resource": r} for a, r in sorted(old - new)]}


def access_changes(change: Callable[..., Change], want: Mapping[str, Any],
                   have: Mapping[str, Any]) -> list[Change]:
    """The update-access change (roles, assignments, permissions) when they differ."""
    have_roles, want_roles = have.get("roles", {}), want["roles"]
    have_assign = {k: norm(v) for k, v in have.get("assignments", {}).items()}
    want_assign = {k: norm(v) for k, v in want["assignments"].items()}
    if have_roles == want_roles and have_assign == want_assign:
        return []
    return [change("update-access", roles={
        "added": sorted(set(want_roles) - set(have_roles)),
        "changed": sorted(r for r in want_roles if r in have_roles and have_roles[r] != want_roles[r]),
        "removed": sorted(set(have_roles) - set(want_roles))},
        assignments={"added": sorted(k for k in want_assign if have_assign.get(k) != want_assign[k]),
                     "removed": sorted(set(have_assign) - set(want_assign))},
        permissions=permission_diff(have_roles, have.get("assignments", {}), want_roles,
                                    want["assignments"]))]


def stray_signed(marker_tags: Mapping[str, str]) -> tuple[str, ...]:
    """Signed optional keys (deletion policy, adopted) a desired marker does not set: apply
    removes them rather than signing a tag someone else wrote (which would turn a delete
    into a release, or an identity we made into an adopted one)."""
    return tuple(k for k in (TAG_DELETION_POLICY, TAG_ADOPTED) if k not in marker_tags)


def marker_changes(desired: DesiredIdentity, observed: ObservedIdentity) -> dict[str, dict[str, str]]:
    """The marker tags an update-marker writes (``from``/``to``), the MAC when it is renewed
    because the one there is not valid."""
    out = {k: {"from": observed.tags.get(k, ""), "to": desired.tags.get(k, "")} for k in SIGNED_KEYS
           if observed.tags.get(k, "") != desired.tags.get(k, "")}
    if observed.unauthenticated:
        out[TAG_MAC] = {"from": "(not valid)", "to": "(new MAC)"}
    return out


class AzureGrants:
    """Reads and converges the custom roles and role assignments of a principal. Our
    roles of each subscription are read once per run and shared by every thread."""

    def __init__(self, clients: AzureClients) -> None:
        self.clients = clients
        self._roles_cache: dict[str, OurRoles] = {}
        self._roles_lock = threading.Lock()

    def custom_roles(self, subscription: str) -> OurRoles:
        """Our custom roles in the subscription (those whose description carries our marker),
        read once per run and kept up to date with our own writes: ARM answers with every
        custom role of the subscription, so an apply of many workloads must not re-read it
        for each. A run that dies loses the copy; the next one reads afresh."""
        with self._roles_lock:
            cached = self._roles_cache.get(subscription)
            if cached is not None:
                return cached
        found = self.read_custom_roles(subscription)
        with self._roles_lock:
            return self._roles_cache.setdefault(subscription, found)

    def refresh(self, subscription: str) -> OurRoles:
        """Read our custom roles afresh (a fleet read) and keep them for the run."""
        roles = self.read_custom_roles(subscription)
        with self._roles_lock:
            self._roles_cache[subscription] = roles
        return roles

    def _remember_role(self, subscription: str, guid: str, role: dict[str, Any] | None) -> None:
        with self._roles_lock:
            cached = self._roles_cache.get(subscription)
        if cached is None:
            return
        if role is None:
            cached.drop(guid)
        else:
            cached.put(guid, role)

    def read_custom_roles(self, subscription: str) -> OurRoles:
        """Every custom role of the subscription, paged: ours by marker, the rest foreign."""
        authz = self.clients.authorization(subscription)
        found: dict[str, dict[str, Any]] = {}
        foreign: set[str] = set()
        for role in self.clients.pages("authorization.role_definitions.list", authz.role_definitions.list(
                f"/subscriptions/{subscription}", filter="type eq 'CustomRole'")):
            if Marker.from_text(role.description) is not None:
                found[str(role.name).lower()] = role_doc(role)
            else:
                foreign.add(str(role.name).lower())
        return OurRoles(found, foreign)

    def assignments(self, subscription: str, principal: str | None) -> list[Any]:
        """Role assignments in the subscription: one principal's, or all."""
        authz = self.clients.authorization(subscription)
        flt = f"principalId eq '{principal}'" if principal else None
        return list(self.clients.pages("authorization.role_assignments.list_for_subscription",
                                       authz.role_assignments.list_for_subscription(filter=flt)))

    def converge(self, subscription: str, principal: str, marker: Marker,
                 want_roles: Mapping[str, Any], want_assignments: Mapping[str, Any], label: str) -> None:
        """Read fresh (two calls), then: remove assignments no longer wanted, write roles,
        add missing assignments, delete roles no longer wanted. In this order a shrinking
        role never loses a scope that still has an assignment, and no role is deleted while
        assigned."""
        authz = self.clients.authorization(subscription)
        known = self.custom_roles(subscription)
        taken = sorted(set(want_roles) & known.foreign)
        if taken:
            raise ConflictError(f"custom role definition(s) {', '.join(taken)} of {label} exist without the "
                                "workload-ids marker", "they are never modified; remove them or rename the "
                                "workload")
        have_roles = known.of(marker)
        have = [a for a in self.assignments(subscription, principal)
                if role_guid(a.role_definition_id) in {*have_roles, *want_roles}]
        wanted = {k: norm(v) for k, v in want_assignments.items()}
        for a in have:
            if wanted.get(str(a.name)) != norm(assignment_doc(subscription, a)):
                self.delete_assignment(subscription, str(a.scope), str(a.name))
        for guid, role in want_roles.items():
            if have_roles.get(guid) != role:
                # ARM takes a role definition at one of its own assignable scopes.
                scope = role["assignableScopes"][0]
                self.clients.call("authorization.role_definitions.create_or_update",
                                  authz.role_definitions.create_or_update, scope, guid,
                                  {"role_name": role["roleName"], "description": role["description"],
                                   "role_type": "CustomRole", "permissions": [
                                       {"actions": p["actions"], "not_actions": p["notActions"],
                                        "data_actions": p["dataActions"],
                                        "not_data_actions": p["notDataActions"]}
                                       for p in role["permissions"]],
                                   "assignable_scopes": role["assignableScopes"]})
                self._remember_role(subscription, guid, role)
        present = {str(a.name) for a in have
                   if wanted.get(str(a.name)) == norm(assignment_doc(subscription, a))}
        for name, assignment in want_assignments.items():
            if name in present:
                continue
            try:
                self.clients.call("authorization.role_assignments.create", authz.role_assignments.create,
                                  assignment["scope"], name,
                                  {"role_definition_id": assignment["roleDefinitionId"],
                                   "principal_id": principal, "principal_type": assignment["principalType"],
                                   "description": f"workload-ids {label}"})
            except CloudError as exc:
                if exc.kind != CONFLICT:
                    raise
                # RoleAssignmentExists: a run that died after ARM took the PUT made it.
        for guid in sorted(set(have_roles) - set(want_roles)):
            self.delete_role(subscription, guid)

    def deployers_at(self, subscription: str, scope: str) -> dict[str, dict[str, str]]:
        """Managed Identity Operator assignments made at exactly ``scope`` (an identity's),
        by name: who may attach that identity, and no other (one call)."""
        authz = self.clients.authorization(subscription)
        return deployer_docs(scope, self.clients.pages(
            "authorization.role_assignments.list_for_scope",
            authz.role_assignments.list_for_scope(scope, filter="atScope()")))

    def converge_deployers(self, subscription: str, scope: str, want: Mapping[str, Mapping[str, str]],
                           label: str) -> None:
        """Exactly the wanted deployers hold Managed Identity Operator at ``scope``: one
        someone assigned by hand is removed (whoever may attach the identity may run code
        as it, which the manifest must say), missing ones are made under our names."""
        from .render import MANAGED_IDENTITY_OPERATOR
        authz = self.clients.authorization(subscription)
        have = self.deployers_at(subscription, scope)
        wanted = {str(d["principalId"]).lower() for d in want.values()}
        for name, doc in have.items():
            if doc["principalId"] not in wanted:
                self.delete_assignment(subscription, doc["scope"], name)
        present = {doc["principalId"] for doc in have.values()}
        for name, wanted_doc in want.items():
            if str(wanted_doc["principalId"]).lower() in present:
                continue
            try:
                # No principalType: a deployer may be a user, a group or a service principal,
                # and ARM looks it up.
                self.clients.call("authorization.role_assignments.create", authz.role_assignments.create,
                                  scope, name, {"role_definition_id": role_ref(
                                      subscription, MANAGED_IDENTITY_OPERATOR),
                                      "principal_id": wanted_doc["principalId"],
                                      "description": f"workload-ids {label}: may attach the identity"})
            except CloudError as exc:
                if exc.code == "PrincipalNotFound":
                    raise CloudError(exc.operation, exc.code, exc.message,
                                     f"deployer {wanted_doc['principalId']} of {label} is not a "
                                     "principal of this tenant's directory: check the object id in "
                                     "spec.credentials.attachedTo[].deployers (az ad user show, az ad "
                                     "group show or az ad sp show --id ID --query id), then rerun",
                                     exc.kind) from exc
                if exc.kind != CONFLICT:
                    raise

    def delete_assignment(self, subscription: str, scope: str, name: str) -> None:
        """Delete one role assignment; one already gone is fine."""
        authz = self.clients.authorization(subscription)
        try:
            self.clients.call("authorization.role_assignments.delete", authz.role_assignments.delete,
                              scope, name)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise

    def delete_role(self, subscription: str, guid: str) -> None:
        """Delete one of our roles; assignments of it left to principals that no longer
        exist (ARM keeps them) are removed first."""
        authz = self.clients.authorization(subscription)
        scope = f"/subscriptions/{subscription}"
        for _ in range(2):
            try:
                self.clients.call("authorization.role_definitions.delete", authz.role_definitions.delete,
                                  scope, guid)
                self._remember_role(subscription, guid, None)
                return
            except CloudError as exc:
                if exc.kind == NOT_FOUND:
                    self._remember_role(subscription, guid, None)
                    return
                if exc.kind != CONFLICT:
                    raise
            for a in self.assignments(subscription, None):
                if role_guid(a.role_definition_id) == guid:
                    self.delete_assignment(subscription, str(a.scope), str(a.name))


def deployer_docs(scope: str, assignments: Iterable[Any]) -> dict[str, dict[str, str]]:
    """Of ``assignments``, the Managed Identity Operator ones at exactly ``scope``, by name,
    as render.deployer_assignments writes them (lower-case ids: ARM ignores case)."""
    from .render import MANAGED_IDENTITY_OPERATOR
    out: dict[str, dict[str, str]] = {}
    for a in assignments:
        if str(a.scope).rstrip("/").lower() != scope.rstrip("/").lower() or \
                role_guid(str(a.role_definition_id)) != MANAGED_IDENTITY_OPERATOR:
            continue
        out[str(a.name)] = {"scope": scope, "roleDefinitionId": str(a.role_definition_id),
                            "principalId": str(a.principal_id).lower()}
    return dict(sorted(out.items()))


def deployer_principals(docs: Mapping[str, Mapping[str, str]]) -> set[str]:
    """The deployers a set of Managed Identity Operator assignments names."""
    return {str(d["principalId"]).lower() for d in docs.values()}


def observed_grants(subscription: str, principal: str | None, marker: Marker, roles: OurRoles,
                    assignments: Sequence[Any]) -> tuple[dict[str, Any], list[str]]:
    """Our roles and assignments of a principal (as documents) and its foreign grants
    (assignments of roles not ours). ``principal`` None: ``assignments`` are already its."""
    mine = roles.of(marker)

    def its(a: Any) -> bool:
        return principal is None or str(a.principal_id).lower() == principal.lower()
    ours = {str(a.name): assignment_doc(subscription, a) for a in assignments
            if its(a) and role_guid(a.role_definition_id) in mine}
    foreign = sorted({f"{a.role_definition_id} at {a.scope}" for a in assignments
                      if its(a) and role_guid(a.role_definition_id) not in roles})
    return {"roles": mine, "assignments": dict(sorted(ours.items()))}, foreign
