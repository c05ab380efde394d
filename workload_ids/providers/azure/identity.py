"""Azure identities: a user-assigned managed identity per workload in its resource group,
custom role definitions per permission set assignable only at the listed resources, one
role assignment per listed resource, federated identity credentials, and Managed Identity
Operator at the identity's own scope for the deployers that may attach it to a site
(``attachedTo``). Every call goes
through the seam (``AzureClients``). A key-mode workload is an Entra application instead
(:mod:`.applications`): its changes are dispatched there.

The ownership marker lives in the identity's tags and in each role definition's
description (``Marker.as_text``); assignments are ours when their role is. Nothing else
is ever changed: assignments of other roles to our identity are reported as foreign
grants, and tags someone else added to our identity are kept.

A new identity is created with a placeholder digest in its marker, and the real digest is
written last: a run that dies half-way leaves a digest that differs from the manifest's,
so the next plan (even a fleet plan, which does not read federated credentials) converges
everything again.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ...calls import NOT_FOUND
from ...config import Config
from ...errors import CloudError, ConflictError, Diagnostic, UserError
from ...model import MARKER_KEYS, SIGNED_KEYS, Change, DesiredIdentity, Marker, ObservedIdentity
from ...signing import SigningKey
from ..interface import IdentityBackend, TransferCheck
from . import render
from .applications import AzureApplications
from .clients import AzureClients
from .roles import (
    PENDING_DIGEST,
    AzureGrants,
    OurRoles,
    access_changes,
    deployer_principals,
    marker_changes,
    observed_grants,
    permission_diff,
    role_guid,
    stray_signed,
)
from .withheld import select as select_held


def _credential_doc(credential: Any) -> dict[str, Any]:
    return {"issuer": credential.issuer, "subject": credential.subject,
            "audiences": list(credential.audiences or [])}



def trust_diff(have: Mapping[str, Any], want: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Who may obtain credentials, added and removed, in words (issuer and subject), as
    an AWS plan shows its trust policy's changes."""
    def rows(feds: Mapping[str, Any], names: Iterable[str]) -> list[dict[str, str]]:
        return sorted(({"principal": str(feds[n]["issuer"]), "subject": str(feds[n]["subject"])}
                       for n in names), key=lambda r: (r["principal"], r["subject"]))
    changed = [n for n in want if have.get(n) != want[n]]
    return {"added": rows(want, changed), "removed": rows(have, [n for n in have if n not in want])}

def attachment_rows(workload: Any) -> list[dict[str, str]]:
    """The sites the manifest attaches the identity to, in words, as plan rows: Azure
    holds no record of them (whoever may assign the identity picks the site), so they
    show on a create, for the reviewer, and change nothing in the cloud after."""
    from ...model import AttachedTrust
    return [{"principal": t.describe(), "subject": "runs as the managed identity (attachedTo); "
             "deployed by " + (", ".join(t.deployers) or "whoever may assign it "
                               "(Managed Identity Operator on it, or Owner/Contributor above)")}
            for t in workload.trust if isinstance(t, AttachedTrust)]


def deployer_diff(have: set[str], want: set[str]) -> dict[str, list[dict[str, str]]]:
    """Deployers added and removed, as "who may obtain credentials" rows: whoever may
    attach the identity to a site may run code as it."""
    def rows(members: set[str]) -> list[dict[str, str]]:
        return [{"principal": m, "subject": "may attach it to a site (Managed Identity Operator on "
                                            "the identity)"} for m in sorted(members)]
    return {"added": rows(want - have), "removed": rows(have - want)}


class AzureIdentities(IdentityBackend):
    """Managed identities; applications through :class:`.applications.AzureApplications`."""

    def __init__(self, clients: AzureClients, config: Config, transfers: TransferCheck,
                 grants: AzureGrants, applications: AzureApplications) -> None:
        self.clients = clients
        self.config = config
        self.transfers = transfers
        self.grants = grants
        self.applications = applications
        self.prefix = config.azure.namePrefix
        # subscription -> every assignment of our roles and the principals we read, from
        # the last fleet read (cleanup's dead grants); written by one thread per target.
        self._scope_assignments: dict[str, list[dict[str, str]]] = {}
        self._scope_principals: dict[str, set[str]] = {}
        self._scope_lock = threading.Lock()
        # name -> (client id, principal id) of identities this run created (their outputs).
        self._made: dict[str, tuple[str, str]] = {}
        self._actions: dict[str, Callable[[DesiredIdentity], None]] = {
            "create": self._create,
            "update-access": lambda desired: self._converge_access(desired, self._principal_of(desired)),
            "update-federation": self._converge_federation,
            "update-deployers": self._converge_deployers,
            "update-marker": lambda desired: self._write_tags(desired, dict(desired.tags),
                                                              stray_signed(desired.tags)),
        }

    # --- pure ------------------------------------------------------------------------

    def outputs(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> dict[str, str]:
        """The identity's name, subscription and resource id, and the client id and
        principal id that AKS workload identity and azure/login need."""
        out = {"identity": desired.name, "provider": "azure", "subscription": desired.workload.target,
               "resource_id": desired.address}
        client_id, principal_id = (
            (str(observed.extra.get("clientId") or observed.extra.get("appId") or ""),
             str(observed.extra.get("principalId") or "")) if observed is not None else
            self._made.get(desired.name, (desired.settings.get("clientId", ""), "")))
        if client_id:
            out["client_id"] = client_id
        if principal_id:
            out["principal_id"] = principal_id
        return out

    def preflight(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
        """Key mode's settings, when an application is among ``desired``."""
        return self.applications.preflight(desired)

    def preflight_writes(self, changes: Sequence[Change]) -> list[Diagnostic]:
        """Nothing to check on Azure."""
        return []

    # --- targets ---------------------------------------------------------------------

    def signing_key(self, target: str) -> SigningKey:
        """IdentityBackend.signing_key: the key markers here are authenticated with."""
        return self.clients.signing_keys.get(target)

    def current_target(self) -> str:
        """Azure has none: the subscriptions come from the config, a flag or the manifests."""
        raise UserError("Azure has no ambient subscription to read: list the subscriptions under "
                        "targets.azure in the config, name one with --target SUBSCRIPTION, or pass "
                        "the manifests whose subscriptions should be read")

    def verify_target(self, target: str) -> str:
        """One read in the subscription: its custom roles (the first page)."""
        self.clients.call("authorization.role_definitions.list", lambda: next(iter(
            self.clients.authorization(target).role_definitions.list(
                f"/subscriptions/{target}", filter="type eq 'CustomRole'").by_page()), None))
        if self.config.azure.sandboxCredentials:
            return "sandbox token"
        return "DefaultAzureCredential"

    # --- reads -----------------------------------------------------------------------

    def identity(self, subscription: str, group: str, name: str) -> Any | None:
        """The managed identity (one call), or None when there is none."""
        msi = self.clients.msi(subscription)
        try:
            return self.clients.call("msi.user_assigned_identities.get", msi.user_assigned_identities.get,
                                     group, name)
        except CloudError as exc:
            if exc.kind == NOT_FOUND:
                return None
            raise

    def federated(self, subscription: str, group: str, name: str) -> dict[str, dict[str, Any]]:
        """The identity's federated credentials by name (paged; none when it is gone)."""
        msi = self.clients.msi(subscription)
        try:
            pager = msi.federated_identity_credentials.list(group, name)
            return {str(c.name): _credential_doc(c)
                    for c in self.clients.pages("msi.federated_identity_credentials.list", pager)}
        except CloudError as exc:
            if exc.kind == NOT_FOUND:
                return {}
            raise

    def _observed(self, subscription: str, identity: Any, roles: OurRoles,
                  assignments: Sequence[Any], federated: dict[str, Any] | None,
                  deployers: dict[str, Any] | None = None) -> ObservedIdentity:
        tags = dict(identity.tags or {})
        marker = Marker.from_tags(tags)
        principal = str(identity.principal_id or "")
        documents: dict[str, Any] = {}
        foreign: list[str] = []
        others: list[str] = []
        if marker is not None:
            documents, foreign = observed_grants(subscription, principal, marker, roles, assignments)
            # What a quarantine removes beyond ours (scopes), and whether one is left to enforce.
            if principal:
                others = [str(g["scope"]) for g in select_held(
                    subscription, principal.lower(), assignments, roles.of(marker))[0]]
            if federated is not None:
                documents["federatedCredentials"] = dict(sorted(federated.items()))
            if deployers is not None:
                documents["deployerAssignments"] = deployers
        group = str(identity.id).split("/")[4]
        return ObservedIdentity(
            provider="azure", target=subscription, kind="managed-identity", name=str(identity.name),
            address=str(identity.id), tags=tags, complete=marker is None or federated is not None,
            documents={k: render.canonical(v) for k, v in documents.items()},
            settings={"resourceGroup": group, "location": str(identity.location),
                      "clientId": str(identity.client_id or "")},
            foreign=tuple(foreign),
            extra={"principalId": principal, "clientId": str(identity.client_id or ""), "objects": documents,
                   "foreignGrants": foreign, "otherAssignments": others,
                   **self.clients.ownership(subscription, str(identity.name), principal, tags, marker)})

    def observe_one(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """Four calls: the identity, the subscription's custom roles, its assignments and its
        federated credentials."""
        # Before anything: without the signing key nothing can be believed.
        self.clients.signing_keys.get(desired.workload.target)
        if desired.kind == "application":
            return self.applications.observe(desired)
        subscription = desired.workload.target
        group = desired.settings["resourceGroup"]
        identity = self.identity(subscription, group, desired.name)
        if identity is None:
            return None
        if Marker.from_tags(identity.tags or {}) is None:
            return self._observed(subscription, identity, OurRoles(), [], None)
        roles = self.grants.custom_roles(subscription)
        assignments = self.grants.assignments(subscription, str(identity.principal_id))
        federated = self.federated(subscription, group, desired.name)
        # Who may attach it costs a call: read when the manifest changed since the last
        # apply (the digest), as GCP reads resource policies; otherwise trusted to it.
        held = Marker.from_tags(identity.tags or {})
        deployers = None
        if held is None or held.digest != desired.workload.marker.digest:
            deployers = self.grants.deployers_at(subscription, str(identity.id))
        observed = self._observed(subscription, identity, roles, assignments, federated, deployers)
        if desired.workload.adopted and not observed.forged:
            # An adopted identity in observe mode is compared by everything it holds: every
            # assignment of its principal with its role's permissions (one more call).
            from .adoption import AzureAdoption
            policies = tuple(AzureAdoption(self.clients, self.config, self.grants, self).policies_for(
                subscription, assignments))
            extra = {**observed.extra, "held": policies, "federated": federated}
            if desired.workload.observe:  # its assignments are the manifest's, not foreign grants
                extra["foreignGrants"] = []
            observed = dataclasses.replace(observed, extra=extra, foreign=())
        return observed

    def observe_scope(self, target: str, *, settings: bool = True) -> list[ObservedIdentity]:
        """A few paged calls for a whole subscription: its managed identities, its custom
        roles and its role assignments. Federated credentials are a child of each identity
        and are not read here: a diff trusts the manifest digest in the marker for them."""
        msi = self.clients.msi(target)
        self.clients.signing_keys.get(target)  # before anything: without it nothing here can be believed
        identities = list(self.clients.pages("msi.user_assigned_identities.list_by_subscription",
                                             msi.user_assigned_identities.list_by_subscription()))
        roles = self.grants.refresh(target)
        assignments = self.grants.assignments(target, None)
        by_principal: dict[str, list[Any]] = {}
        for a in assignments:
            by_principal.setdefault(str(a.principal_id).lower(), []).append(a)
        observed: list[ObservedIdentity] = []
        principals: set[str] = set()
        for identity in identities:
            tags = identity.tags or {}
            if Marker.from_tags(tags) is None and not str(identity.name).startswith(f"{self.prefix}-"):
                continue
            principals.add(str(identity.principal_id).lower())
            # Deployers, like federated credentials, are trusted to the digest here (though
            # the subscription's assignments hold them): a plan reads a changed identity again
            # alone, and must say the same whether it was read alone or in a fleet.
            observed.append(self._observed(target, identity, roles, by_principal.get(
                str(identity.principal_id).lower(), []), None))
        observed.extend(self.applications.observe_all(target, roles, by_principal, principals))
        with self._scope_lock:
            self._scope_principals[target] = principals
            self._scope_assignments[target] = [
                {"member": str(a.principal_id), "role": str(a.role_definition_id), "scope": str(a.scope),
                 "name": str(a.name)} for a in assignments if role_guid(a.role_definition_id) in roles]
        return observed

    def dead_grants(self, target: str) -> list[dict[str, str]]:
        """Assignments of our roles whose principal is no longer an identity or
        application we read in the last fleet read of ``target`` (none without one)."""
        with self._scope_lock:
            principals = self._scope_principals.get(target)
            if principals is None:
                return []
            return [g for g in self._scope_assignments.get(target, [])
                    if g["member"].lower() not in principals]

    # --- plan ------------------------------------------------------------------------

    def diff(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> list[Change]:
        """Create, then update-access, update-federation and update-marker (last)."""
        w = desired.workload
        want = desired.objects
        if desired.kind == "application":
            return self.applications.diff(desired, observed)

        def change(action: str, **details: Any) -> Change:
            return Change(workload=w.label, provider="azure", target=w.target, action=action,
                          identity=desired.name, details=details, desired=desired, observed=observed)

        if observed is None:
            deployers = deployer_principals(want.get("deployerAssignments", {}))
            return [change("create", kind="managed-identity", address=desired.address,
                           permissions=permission_diff({}, {}, want["roles"], want["assignments"]),
                           federation={"added": sorted(want["federatedCredentials"]), "removed": []},
                           **({"deployers": {"role": "Managed Identity Operator "
                                                     f"({render.MANAGED_IDENTITY_OPERATOR})",
                                             "scope": desired.address, "added": sorted(deployers),
                                             "removed": []}} if deployers else {}),
                           trust={"added": [*trust_diff({}, want["federatedCredentials"])["added"],
                                            *attachment_rows(w), *deployer_diff(set(), deployers)["added"]],
                                  "removed": []})]
        if observed.marker is None:
            raise ConflictError(
                f"{w.label}: managed identity {desired.name} exists in subscription {w.target} but does not "
                "carry the workload-ids tags, so it will not be modified",
                "rename the workload, or delete that identity if it is truly unused; "
                "workload-ids never adopts an identity it did not create")
        if observed.misplaced:
            raise ConflictError(
                f"{w.label}: managed identity {desired.name} in subscription {w.target} carries the "
                f"workload-ids tags but {observed.misplaced}, so it will not be modified",
                "find out who tagged it; workload-ids never adopts an identity it did not create")
        if w.adopted and w.observe:
            return self._diff_adopted(desired, observed, change)
        have: dict[str, Any] = observed.extra.get("objects") or {}
        changes = access_changes(change, want, have)
        want_fed = want["federatedCredentials"]
        # A fleet read leaves federated credentials unread (observed.complete is False);
        # plan reads an identity whose manifest changed again, alone, so they are here then.
        have_fed = have.get("federatedCredentials", want_fed)
        if have_fed != want_fed:
            changes.append(change("update-federation", federation={
                "added": sorted(k for k in want_fed if have_fed.get(k) != want_fed[k]),
                "removed": sorted(set(have_fed) - set(want_fed))},
                trust=trust_diff(have_fed, want_fed)))
        want_deployers = want.get("deployerAssignments", {})
        have_deployers = have.get("deployerAssignments", want_deployers)
        added = deployer_principals(want_deployers) - deployer_principals(have_deployers)
        removed = deployer_principals(have_deployers) - deployer_principals(want_deployers)
        if added or removed:
            changes.append(change("update-deployers", deployers={
                "role": f"Managed Identity Operator ({render.MANAGED_IDENTITY_OPERATOR})",
                "scope": desired.address, "added": sorted(added), "removed": sorted(removed)},
                trust=deployer_diff(removed, added)))
        if self._marker_differs(desired, observed):
            # Last: the manifest digest is recorded only once everything else matches.
            changes.append(change("update-marker", tags=marker_changes(desired, observed)))
        return changes

    def _diff_adopted(self, desired: DesiredIdentity, observed: ObservedIdentity,
                      change: Callable[..., Change]) -> list[Change]:
        """An adopted identity in observe mode: what it is granted (every role assignment of
        its principal, roles expanded to their operations, by scope) and whom it trusts (its
        federated credentials, by issuer, subject and audience), against the manifest. The
        tool's own conventions (one custom role per permission set) are converged only once
        someone sets spec.mode: manage."""
        from .adoption import credential_rows, held_permissions, trust_rows
        w = desired.workload
        changes: list[Change] = []
        have_fed = credential_rows((observed.extra.get("federated") or {}).values())
        want_fed = credential_rows(desired.objects["federatedCredentials"].values())
        if have_fed != want_fed:
            rows = trust_rows(have_fed, want_fed)

            def who(rows: Iterable[tuple[str, str, tuple[str, ...]]]) -> list[dict[str, str]]:
                return [{"principal": issuer, "subject": subject} for issuer, subject, _ in sorted(rows)]
            changes.append(change("update-federation", federation={
                "added": [r[2:] for r in rows if r.startswith("+")],
                "removed": [r[2:] for r in rows if r.startswith("-")]},
                trust={"added": who(want_fed - have_fed), "removed": who(have_fed - want_fed)}))
        held = held_permissions(observed.extra.get("held") or ())
        # ARM ids ignore case: a scope compares in lower case, as ARM resolves it.
        have = {(a, r.lower(), c) for a, r, c in held.pairs}
        want = {(a, r.lower(), c) for a, r, c in held.wanted(w.grants)}
        if have != want:
            spelled = {(a, r.lower(), c): r for a, r, c in (*held.pairs, *held.wanted(w.grants))}

            def rows_of(pairs: set[tuple[str, str, str]]) -> list[dict[str, str]]:
                return [{"action": held.spelling.get(a, a), "resource": spelled[(a, r, c)]
                         + (f" if {c}" if c else "")} for a, r, c in sorted(pairs)]
            changes.append(change("update-access", permissions={
                "added": rows_of(want - have), "removed": rows_of(have - want)}))
        if self._marker_differs(desired, observed):
            changes.append(change("update-marker", tags=marker_changes(desired, observed)))
        return changes

    def _marker_differs(self, desired: DesiredIdentity, observed: ObservedIdentity) -> bool:
        w = desired.workload
        assert observed.marker is not None
        transferred = self.transfers(observed, w.marker.owner) and \
            observed.marker.digest == w.marker.digest
        # An unauthenticated marker at our naming is marked anew (plan has checked the
        # audit log does not name another owner).
        return bool(observed.unauthenticated) or (not transferred and any(
            observed.tags.get(k, "") != desired.tags.get(k, "") for k in SIGNED_KEYS))

    # --- apply -----------------------------------------------------------------------

    def apply(self, change: Change) -> None:
        """One change of a managed identity (by action), or of an application."""
        assert change.desired is not None
        desired = change.desired
        if desired.kind == "application":
            self.applications.apply(change)
            return
        action = self._actions.get(change.action)
        if action is None:  # pragma: no cover - plan and apply are written together
            raise ValueError(f"unknown change {change.action}")
        action(desired)

    def _principal_of(self, desired: DesiredIdentity) -> str:
        identity = self.identity(desired.workload.target, desired.settings["resourceGroup"], desired.name)
        if identity is None or Marker.from_tags(identity.tags or {}) is None:
            raise ConflictError(f"managed identity {desired.name} is gone or no longer carries the "
                                "workload-ids tags", "rerun plan to see what the cloud holds now")
        return str(identity.principal_id)

    def _create(self, desired: DesiredIdentity) -> None:
        w = desired.workload
        pending = Marker(w.marker.workload, w.marker.owner, w.marker.environment, PENDING_DIGEST)
        existing = self.identity(w.target, desired.settings["resourceGroup"], desired.name)
        if existing is not None and Marker.from_tags(existing.tags or {}) is None:
            raise ConflictError(f"managed identity {desired.name} appeared in subscription {w.target} "
                                "without the workload-ids tags", "find out who created it; workload-ids "
                                "will not adopt it")
        if existing is None:
            msi = self.clients.msi(w.target)
            existing = self.clients.call(
                "msi.user_assigned_identities.create_or_update",
                msi.user_assigned_identities.create_or_update, desired.settings["resourceGroup"],
                desired.name, {"location": desired.settings["location"], "tags": pending.as_tags()})
        self._made[desired.name] = (str(existing.client_id or ""), str(existing.principal_id or ""))
        self._converge_access(desired, str(existing.principal_id))
        self._converge_federation(desired)
        if desired.objects.get("deployerAssignments"):
            self._converge_deployers(desired)
        self._write_tags(desired, dict(desired.tags), stray_signed(desired.tags))

    def _write_tags(self, desired: DesiredIdentity, marker_tags: Mapping[str, str],
                    drop: Sequence[str] = ()) -> None:
        """Our marker keys set to ``marker_tags``; every other tag kept (a quarantine mark is
        cleanup's to clear, tags others added are theirs), except the keys in ``drop``."""
        subscription, group = desired.workload.target, desired.settings["resourceGroup"]
        identity = self.identity(subscription, group, desired.name)
        if identity is None or Marker.from_tags(identity.tags or {}) is None:
            raise ConflictError(f"managed identity {desired.name} is gone or no longer carries the "
                                "workload-ids tags", "rerun plan to see what the cloud holds now")
        self.write_tags(subscription, group, desired.name, identity, marker_tags, drop)

    def write_tags(self, subscription: str, group: str, name: str, identity: Any,
                   marker_tags: Mapping[str, str], drop: Sequence[str] = ()) -> None:
        """Every marker write goes through here: the MAC of the marker the tags then hold
        (bound to the identity's principal id) is written with them. Callers have checked
        the identity is provably ours, or that the manifest authorises marking it anew."""
        tags = {k: v for k, v in (identity.tags or {}).items() if k not in MARKER_KEYS and k not in drop}
        tags.update(marker_tags)
        tags = self.clients.signed(subscription, name, str(identity.principal_id or ""), tags)
        if tags == dict(identity.tags or {}):
            return
        msi = self.clients.msi(subscription)
        # A PUT, because the emulator and the 2018 api both take one; it carries the location.
        self.clients.call("msi.user_assigned_identities.create_or_update",
                          msi.user_assigned_identities.create_or_update, group, name,
                          {"location": identity.location, "tags": tags})

    def _converge_access(self, desired: DesiredIdentity, principal: str) -> None:
        w = desired.workload
        self.grants.converge(w.target, principal, w.marker, desired.objects["roles"],
                             desired.objects["assignments"], f"{w.environment}/{w.name}")

    def _converge_deployers(self, desired: DesiredIdentity) -> None:
        w = desired.workload
        self.grants.converge_deployers(w.target, desired.address,
                                       desired.objects.get("deployerAssignments", {}), w.label)

    def _converge_federation(self, desired: DesiredIdentity) -> None:
        w = desired.workload
        self.converge_federated(w.target, desired.settings["resourceGroup"], desired.name,
                                desired.objects["federatedCredentials"])

    def converge_federated(self, subscription: str, group: str, name: str,
                           want: Mapping[str, Any]) -> None:
        """Make the identity's federated credentials exactly ``want``."""
        msi = self.clients.msi(subscription)
        have = self.federated(subscription, group, name)
        for fic in sorted(set(have) - set(want)):
            try:
                self.clients.call("msi.federated_identity_credentials.delete",
                                  msi.federated_identity_credentials.delete, group, name, fic)
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
        for fic, doc in want.items():
            if have.get(fic) != doc:
                self.clients.call("msi.federated_identity_credentials.create_or_update",
                                  msi.federated_identity_credentials.create_or_update, group, name, fic,
                                  {"issuer": doc["issuer"], "subject": doc["subject"],
                                   "audiences": doc["audiences"]})
