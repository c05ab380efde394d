"""Leaver steps on Azure: quarantine, release, transfer, teardown and restore of a managed
identity (or a key-mode application) with its roles and assignments, each idempotent.

Quarantine writes the mark (tag ``workload-ids:quarantine``), then removes the
identity's role assignments; an application's service principal is also disabled, which
stops new tokens at once. The roles stay: each of our roles is assignable exactly at the
scopes it is assigned at, so the roles alone say which assignments a release (or a
restore) recreates, and the restore bundle holds them. A managed identity's assignments
of other roles (an adopted identity's hand-made ones) go too, exactly as cleanup journalled
them in the audit trail first (:mod:`.withheld`); release and restore give those back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ...calls import NOT_FOUND
from ...errors import CloudError, ConflictError
from ...model import (
    MARK_TAG,
    MARKER_KEYS,
    OWNERSHIP_KEYS,
    TAG_MAC,
    TRANSFERRED_FROM_TAG,
    UNAUTHENTICATED,
    WITHHELD_GRANTS,
    Marker,
    ObservedIdentity,
    QuarantineMark,
    encode_mark,
)
from ..interface import LeaverBackend
from . import render
from .applications import AzureApplications
from .clients import AzureClients
from .identity import AzureIdentities
from .roles import AzureGrants, deployer_principals
from .withheld import AzureWithheld, principal_guid, verified
from .withheld import select as select_held

# One teardown step: what it did, as the steps delete() returns (empty when nothing).
Step = Callable[[ObservedIdentity, Marker], list[str]]

# Where quarantine records the deployers whose Managed Identity Operator assignments it
# removed (object ids, several tags of up to six each: a tag value holds 256 characters),
# so that release and the restore bundle can give them back.
DEPLOYERS_TAG = "workload-ids:quarantined-deployers"
_PER_TAG = 6


def deployer_tags(principals: Sequence[str]) -> dict[str, str]:
    """``principals`` as the tags :func:`tagged_deployers` reads back."""
    ids = sorted({p.lower() for p in principals})
    return {f"{DEPLOYERS_TAG}:{n // _PER_TAG + 1}": " ".join(ids[n:n + _PER_TAG])
            for n in range(0, len(ids), _PER_TAG)}


def tagged_deployers(tags: Mapping[str, str]) -> set[str]:
    """The deployers quarantine recorded in ``tags``."""
    return {p.lower() for k, v in tags.items() if k.startswith(DEPLOYERS_TAG + ":") for p in v.split()}


def assignments_of_roles(subscription: str, workload: str, roles: Mapping[str, Any]) -> dict[str, Any]:
    """The assignments our roles imply: one per role and assignable scope."""
    out: dict[str, Any] = {}
    for guid, role in roles.items():
        ref = f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
        for scope in role["assignableScopes"]:
            out[render.role_assignment_id(workload, guid, scope)] = {
                "scope": scope, "roleDefinitionId": ref, "principalType": "ServicePrincipal"}
    return dict(sorted(out.items()))


class AzureLeavers(LeaverBackend):
    """Cleanup's and restore's steps for managed identities and applications."""

    def __init__(self, clients: AzureClients, identities: AzureIdentities,
                 applications: AzureApplications, grants: AzureGrants) -> None:
        self.clients = clients
        self.identities = identities
        self.applications = applications
        self.grants = grants
        self.withheld = AzureWithheld(clients, grants)
        # Teardown by kind, in order: assignments first (none is left pointing at a deleted
        # principal), then the roles, then the identity (its federated credentials go with
        # it) or application.
        # A Managed Identity Operator assignment at the identity's own scope would be left
        # orphaned by its deletion (ARM keeps assignments at a deleted scope): it goes first.
        self._teardown: dict[str, tuple[Step, ...]] = {
            "managed-identity": (self._remove_deployers, self._remove_assignments, self._remove_withheld,
                                 self._delete_roles, self._delete_identity),
            "application": (self._remove_assignments, self._delete_roles, self._delete_application),
        }

    def _guard(self, identity: ObservedIdentity) -> Marker:
        marker = identity.marker
        if marker is None:  # the workflow checks too; this is the last line
            raise ConflictError(f"{identity.kind} {identity.name} does not carry the workload-ids tags",
                                "it is never modified")
        if identity.forged:  # a marker outside our location or naming: never acted on
            raise ConflictError(f"{identity.kind} {identity.name} carries the workload-ids marker but "
                                f"{identity.forged}", "it is reported as forged and never modified; "
                                "find out who tagged it")
        return marker

    def _set_tags(self, identity: ObservedIdentity, tags: Mapping[str, str],
                  drop: Sequence[str] = ()) -> None:
        """Set ``tags`` (our marker keys and marks) on the identity, keeping every other tag."""
        marker_tags = {k: v for k, v in identity.tags.items() if k in MARKER_KEYS}
        extra = {k: v for k, v in tags.items() if k not in MARKER_KEYS}
        marker_tags.update({k: v for k, v in tags.items() if k in MARKER_KEYS})
        if identity.kind == "application":
            self.applications.write_tags(identity, {**marker_tags, **extra}, drop)
            return
        group = identity.settings["resourceGroup"]
        current = self.identities.identity(identity.target, group, identity.name)
        if current is None:
            return
        if Marker.from_tags(current.tags or {}) is None:
            raise ConflictError(f"managed identity {identity.name} no longer carries the workload-ids tags",
                                "it is never modified")
        self.identities.write_tags(identity.target, group, identity.name, current,
                                   {**marker_tags, **extra}, drop)

    @staticmethod
    def _scope(identity: ObservedIdentity) -> str:
        return render.identity_scope(identity.target, identity.settings["resourceGroup"], identity.name)

    def _principal(self, identity: ObservedIdentity) -> str:
        return str(identity.extra.get("principalId") or "")

    def _roles(self, identity: ObservedIdentity) -> dict[str, Any]:
        return dict((identity.extra.get("objects") or {}).get("roles") or {})

    # --- reads ---------------------------------------------------------------------

    def last_used(self, identity: ObservedIdentity) -> datetime | None:
        """Azure keeps sign-ins in Entra's logs (a Graph reports API with its own licence),
        not on the identity: Azure identities are never judged unused."""
        return None

    def _ours_removed(self, identity: ObservedIdentity) -> bool | None:
        objects = identity.extra.get("objects") or {}
        if "assignments" not in objects:
            return None
        disabled = identity.kind != "application" or identity.extra.get("accountEnabled") is False
        return not objects["assignments"] and not objects.get("deployerAssignments") and disabled

    def quarantine_enforced(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool | None:
        """No assignment of ours left (and an application's principal disabled), and a
        managed identity holds no other assignment in the subscription (one made since is
        removed by the next run)."""
        ours = self._ours_removed(identity)
        if not ours:
            return ours
        return not identity.extra.get("otherAssignments")

    def quarantine_proven(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool:
        """Whether our own enforcement proves the mark: none of our role assignments is
        left (and an application's service principal is disabled). An assignment someone
        made since does not restart the grace period (anyone who may assign a role could
        otherwise put off a deletion forever): the next run removes it."""
        return self._ours_removed(identity) is True

    def grants_to_withhold(self, identity: ObservedIdentity) -> dict[str, Any] | None:
        """A managed identity's assignments of roles other than its workload's own, in the
        subscription or below, read now (one call) and signed: see :mod:`.withheld`."""
        marker = self._guard(identity)
        if identity.kind != "managed-identity":
            return None  # an application's service principal is disabled: it gets no token
        return self.withheld.journal(identity.target, identity.name, self._principal(identity),
                                     self.grants.custom_roles(identity.target).of(marker))

    def _journalled(self, identity: ObservedIdentity) -> list[dict[str, Any]]:
        """The withheld assignments cleanup passed in, from journals whose MAC is valid for
        this identity and its principal; ConflictError for any other, before anything of
        them is removed or recreated."""
        journals = list(identity.extra.get(WITHHELD_GRANTS) or ())
        if not journals:
            return []
        principal = principal_guid(self._principal(identity), f"managed identity {identity.name}")
        key = self.clients.signing_keys.get(identity.target)
        out: dict[str, dict[str, Any]] = {}
        for journal in journals:
            for grant in verified(key, identity.target, identity.name, principal, journal):
                out[str(grant["name"])] = grant
        return [out[n] for n in sorted(out)]

    # --- actions -------------------------------------------------------------------

    def quarantine(self, identity: ObservedIdentity, mark: QuarantineMark) -> QuarantineMark:
        """The mark, an application's principal disabled, then our assignments removed."""
        marker = self._guard(identity)
        text = encode_mark(mark)
        if identity.tags.get(MARK_TAG) != text:
            self._set_tags(identity, {MARK_TAG: text})
        if identity.kind == "application":
            self.applications.set_principal_enabled(identity, False)
        # No roles wanted: every assignment of ours to this principal goes; the roles stay.
        self.grants.converge(identity.target, self._principal(identity), marker, self._roles(identity), {},
                             f"{marker.environment}/{marker.workload}")
        if identity.kind == "managed-identity":
            self._withhold_deployers(identity, marker)
            # Exactly what cleanup journalled: one made since the read stays until the next run.
            self.withheld.remove(identity.target, self._journalled(identity))
        return mark

    def _withhold_deployers(self, identity: ObservedIdentity, marker: Marker) -> None:
        """Nobody may attach a quarantined identity to a new site: its deployers' Managed
        Identity Operator assignments go, recorded first in tags (with any recorded by an
        earlier enforcement) so that release and the restore bundle give them back."""
        have = self.grants.deployers_at(identity.target, self._scope(identity))
        if not have:
            return
        recorded = tagged_deployers(identity.tags) | deployer_principals(have)
        stale = [k for k in identity.tags if k.startswith(DEPLOYERS_TAG + ":")]
        self._set_tags(identity, deployer_tags(sorted(recorded)), drop=stale)
        self.grants.converge_deployers(identity.target, self._scope(identity), {},
                                       f"{marker.environment}/{marker.workload}")

    def _deployers_wanted(self, subscription: str, scope: str, workload: str,
                          principals: set[str]) -> dict[str, dict[str, str]]:
        """Assignments for recorded deployers, of those the config still lists: a tag is
        writable by any Tag Contributor, so it names who may get the role back, never who
        may get it at all (that is ``trust.allowedDeployers``)."""
        from ...trust import deployer_allowed
        allowed = sorted(p for p in principals if deployer_allowed(self.identities.config, p))
        role = f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/" \
               f"{render.MANAGED_IDENTITY_OPERATOR}"
        return {render.deployer_assignment_id(workload, p, scope): {
            "scope": scope, "roleDefinitionId": role, "principalId": p} for p in allowed}

    def release(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> None:
        """The assignments our roles imply, those quarantine withheld (as journalled), an
        application's principal enabled, the mark cleared."""
        marker = self._guard(identity)
        # Checked before any change: one journal without a valid MAC stops the release.
        withheld = self._journalled(identity) if identity.kind == "managed-identity" else []
        roles = self._roles(identity)
        self.grants.converge(identity.target, self._principal(identity), marker, roles,
                             assignments_of_roles(identity.target, f"{marker.environment}/{marker.workload}",
                                                  roles), f"{marker.environment}/{marker.workload}")
        if identity.kind == "application":
            self.applications.set_principal_enabled(identity, True)
        elif withheld:
            self.withheld.recreate(identity.target, self._principal(identity).lower(), withheld)
        recorded = tagged_deployers(identity.tags)
        if recorded:
            label = f"{marker.environment}/{marker.workload}"
            self.grants.converge_deployers(identity.target, self._scope(identity), self._deployers_wanted(
                identity.target, self._scope(identity), label, recorded), label)
        self._set_tags(identity, {}, drop=[MARK_TAG, *(k for k in identity.tags
                                                      if k.startswith(DEPLOYERS_TAG + ":"))])

    def disown(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> list[str]:
        """Lift any quarantine, then drop our marker tags, the MAC and our marks; roles,
        assignments, federated credentials and everyone else's tags stay."""
        marker = self._guard(identity)
        if not marker.retain:  # the judge decides from the same marker; this is the last line
            raise ConflictError(f"{identity.kind} {identity.name} is not marked deletionPolicy retain",
                                "it is never released; cleanup quarantines it instead")
        steps: list[str] = []
        if mark is not None:
            self.release(identity, mark)
            steps.append("lifted the quarantine")
        elif identity.kind == "managed-identity":
            # Withheld by a quarantine whose mark someone removed since: handed back as well.
            withheld = self._journalled(identity)
            if withheld:
                self.withheld.recreate(identity.target, self._principal(identity).lower(), withheld)
                steps.append(f"gave back {len(withheld)} role assignment(s) a quarantine withheld")
        drop = sorted(k for k in identity.tags if k in (*OWNERSHIP_KEYS, MARK_TAG, TRANSFERRED_FROM_TAG))
        if identity.kind == "application":
            self.applications.write_tags(identity, {}, drop)
        else:
            group = identity.settings["resourceGroup"]
            current = self.identities.identity(identity.target, group, identity.name)
            if current is not None:
                self.identities.write_tags(identity.target, group, identity.name, current, {}, drop)
        steps.append("removed tags " + ", ".join(drop))
        return steps

    def transfer(self, identity: ObservedIdentity, successor: str) -> None:
        """The owner in the marker tags, the previous one kept in a tag."""
        marker = self._guard(identity)
        previous = identity.tags.get(TRANSFERRED_FROM_TAG) or marker.owner
        moved = Marker(marker.workload, successor, marker.environment, marker.digest)
        self._set_tags(identity, {**moved.as_tags(), TRANSFERRED_FROM_TAG: previous})

    def restore_bundle(self, identity: ObservedIdentity) -> dict[str, Any]:
        """The identity, its roles (which imply its assignments), its federated
        credentials (read here: a fleet read leaves them out), and the assignments of
        other roles quarantine withheld and it still holds (signed journals)."""
        marker = self._guard(identity)
        federated: dict[str, Any] = {}
        deployers: set[str] = set()
        journals: list[dict[str, Any]] = []
        if identity.kind != "application":
            self._journalled(identity)  # a journal without a valid MAC stops the deletion here
            journals = [dict(j) for j in identity.extra.get(WITHHELD_GRANTS) or ()]
            held = self.grants_to_withhold(identity)
            if held is not None:
                journals.append(held)
            federated = self.identities.federated(identity.target, identity.settings["resourceGroup"],
                                                  identity.name)
            # Those quarantine withheld, and any assigned since.
            deployers = tagged_deployers(identity.tags) | deployer_principals(
                self.grants.deployers_at(identity.target, self._scope(identity)))
        return {
            "provider": "azure", "target": identity.target, "kind": identity.kind, "name": identity.name,
            "address": identity.address, "resourceGroup": identity.settings.get("resourceGroup", ""),
            "location": identity.settings.get("location", ""),
            "appObjectId": identity.extra.get("appObjectId", ""), "appId": identity.extra.get("appId", ""),
            # What the marker's MAC covers: restore checks it before recreating anything.
            "principalId": identity.extra.get("principalId", ""),
            "tags": {k: v for k, v in identity.tags.items()
                     if k != MARK_TAG and not k.startswith(DEPLOYERS_TAG + ":")},
            "workload": f"{marker.environment}/{marker.workload}",
            "roles": self._roles(identity),
            "federatedCredentials": federated,
            **({"deployers": sorted(deployers)} if deployers else {}),
            **({WITHHELD_GRANTS: journals} if journals else {}),
        }

    def delete(self, identity: ObservedIdentity) -> list[str]:
        """The kind's teardown steps in order (see the table made in the constructor)."""
        marker = self._guard(identity)
        steps: list[str] = []
        for step in self._teardown[identity.kind]:
            steps.extend(step(identity, marker))
        return steps

    def _remove_deployers(self, identity: ObservedIdentity, marker: Marker) -> list[str]:
        if not self.grants.deployers_at(identity.target, self._scope(identity)):
            return []
        self.grants.converge_deployers(identity.target, self._scope(identity), {},
                                       f"{marker.environment}/{marker.workload}")
        return ["remove its deployers' Managed Identity Operator assignments"]

    def _remove_withheld(self, identity: ObservedIdentity, marker: Marker) -> list[str]:
        """Assignments of other roles it still holds (someone's since quarantine): the
        restore bundle, written just before, journalled them; ARM would keep them,
        pointing at a deleted principal."""
        principal = self._principal(identity)
        if not principal:
            return []
        principal = principal_guid(principal, f"managed identity {identity.name}")
        held = self.grants.assignments(identity.target, principal)
        inside, _ = select_held(identity.target, principal, held,
                                self.grants.custom_roles(identity.target).of(marker))
        self.withheld.remove(identity.target, inside)
        return [f"remove {len(inside)} role assignment(s) of other roles"] if inside else []

    def _remove_assignments(self, identity: ObservedIdentity, marker: Marker) -> list[str]:
        self.grants.converge(identity.target, self._principal(identity), marker, self._roles(identity), {},
                             f"{marker.environment}/{marker.workload}")
        return ["remove its role assignments"]

    def _delete_roles(self, identity: ObservedIdentity, marker: Marker) -> list[str]:
        steps: list[str] = []
        for guid in sorted(self._roles(identity)):
            self.grants.delete_role(identity.target, guid)
            steps.append(f"delete role definition {guid}")
        return steps

    def _delete_application(self, identity: ObservedIdentity, marker: Marker) -> list[str]:
        self.applications.delete(identity)
        return [f"delete application {identity.name} (soft-deleted for 30 days)"]

    def _delete_identity(self, identity: ObservedIdentity, marker: Marker) -> list[str]:
        msi = self.clients.msi(identity.target)
        try:
            self.clients.call("msi.user_assigned_identities.delete", msi.user_assigned_identities.delete,
                              identity.settings["resourceGroup"], identity.name)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
        return [f"delete managed identity {identity.name}"]

    def dead_grants(self, target: str) -> list[dict[str, str]]:
        """Assignments of our roles whose principal is no longer an identity or
        application we read in the last fleet read of ``target``: ARM keeps them after a
        principal is deleted ("Identity not found"), and they count against the
        subscription's 4,000."""
        return self.identities.dead_grants(target)

    def remove_dead_grants(self, target: str, grants: list[dict[str, str]]) -> None:
        """Delete each assignment (one already gone is fine)."""
        for grant in grants:
            self.grants.delete_assignment(target, grant["scope"], grant["name"])

    def restore(self, bundle: dict[str, Any]) -> list[str]:
        """Recreate the identity (Azure has no undelete for managed identities, so it gets
        a new principal) or restore the soft-deleted application; then its roles, its
        assignments and its federated credentials. Converges when rerun."""
        steps: list[str] = []
        subscription = str(bundle["target"])
        tags = dict(bundle["tags"])
        marker = Marker.from_tags(tags)
        if marker is None:
            raise ConflictError(f"the restore bundle of {bundle['name']} carries no workload-ids marker",
                                "it cannot be restored")
        # Only an identity whose marker the tool authenticated has a bundle to restore.
        bound_to = str(bundle.get("appObjectId") if bundle["kind"] == "application"
                       else bundle.get("principalId") or "")
        if self.clients.ownership(subscription, str(bundle["name"]), bound_to, tags,
                                  marker).get(UNAUTHENTICATED):
            raise ConflictError(f"the restore bundle of {bundle['name']} carries a marker that is not "
                                "authenticated (no valid workload-ids:mac)", "it is never restored: the "
                                "identity it describes was not provably made by workload-ids, or the "
                                "bundle was edited")
        roles = dict(bundle.get("roles") or {})
        withheld: list[dict[str, Any]] = []
        if bundle["kind"] != "application" and bundle.get(WITHHELD_GRANTS):
            # Before anything is created: the journals must be the tool's, for this identity's
            # old principal (the bundle's, which its marker's MAC was just checked against).
            key = self.clients.signing_keys.get(subscription)
            named: dict[str, dict[str, Any]] = {}
            for journal in bundle[WITHHELD_GRANTS]:
                for grant in verified(key, subscription, str(bundle["name"]), bound_to.lower(), journal):
                    named[str(grant["name"])] = grant
            withheld = [named[n] for n in sorted(named)]
        if bundle["kind"] == "application":
            principal, app_steps = self.applications.restore(bundle)
            steps.extend(app_steps)
        else:
            group, name = str(bundle["resourceGroup"]), str(bundle["name"])
            current = self.identities.identity(subscription, group, name)
            if current is not None and Marker.from_tags(current.tags or {}) is None:
                raise ConflictError(f"managed identity {name} exists without the workload-ids tags",
                                    "it is never modified; restore under that name is impossible")
            unsigned = False
            if current is not None:
                held = dict(current.tags or {})
                if self.clients.ownership(subscription, name, str(current.principal_id or ""), held,
                                   Marker.from_tags(held)).get(UNAUTHENTICATED):
                    if TAG_MAC in held or Marker.from_tags(held) != marker:
                        raise ConflictError(f"managed identity {name} exists and carries the workload-ids "
                                            "tags but its marker is not authenticated (no valid "
                                            "workload-ids:mac)", "it is reported as forged and never "
                                            "modified; find out who tagged it")
                    # The bundle's own marker and never a MAC: what a restore that died
                    # between creating the identity and signing it leaves. Its federated
                    # credentials are made exactly the bundle's before it is signed, so
                    # whoever may have made it instead keeps no way in.
                    unsigned = True
            msi = self.clients.msi(subscription)
            if current is None:
                # Created without a MAC (the bundle's is bound to the old principal) and
                # signed once its federation is the bundle's: see above for a crash between.
                current = self.clients.call(
                    "msi.user_assigned_identities.create_or_update",
                    msi.user_assigned_identities.create_or_update, group, name,
                    {"location": bundle["location"],
                     "tags": {k: v for k, v in tags.items() if k not in (TAG_MAC, MARK_TAG)}})
                steps.append(f"create managed identity {name}")
            elif unsigned:
                steps.append(f"managed identity {name} was left unsigned by an interrupted restore: "
                             "made exactly the bundle's and signed")
            else:
                steps.append(f"managed identity {name} exists: converging it")
            principal = str(current.principal_id)
            self.identities.converge_federated(subscription, group, name,
                                               dict(bundle.get("federatedCredentials") or {}))
            steps.append("federated credentials")
            # A new principal: its marker is bound to it anew.
            self.identities.write_tags(subscription, group, name, current, tags, [MARK_TAG])
            deployers = {str(d).lower() for d in bundle.get("deployers") or []}
            if deployers:
                scope = render.identity_scope(subscription, group, name)
                label = str(bundle.get("workload") or f"{marker.environment}/{marker.workload}")
                self.grants.converge_deployers(subscription, scope, self._deployers_wanted(
                    subscription, scope, label, deployers), label)
                steps.append(f"{len(deployers)} deployer(s) may attach it again")
        workload = str(bundle.get("workload") or f"{marker.environment}/{marker.workload}")
        self.grants.converge(subscription, principal, marker, roles,
                             assignments_of_roles(subscription, workload, roles), workload)
        steps.append(f"{len(roles)} role definition(s) and their assignments")
        if withheld:
            self.withheld.recreate(subscription, principal.lower(), withheld)
            steps.append(f"{len(withheld)} role assignment(s) of other roles that quarantine withheld")
        return steps
