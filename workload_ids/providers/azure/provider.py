"""The Azure backend: a user-assigned managed identity per workload in its resource group,
custom role definitions per permission set assignable only at the listed resources, one
role assignment per listed resource, and federated identity credentials. Every call goes
through the seam (``AzureClients``).

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

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ...calls import CONFLICT, NOT_FOUND, CallSeam
from ...config import Config
from ...errors import ConflictError, Diagnostic, UserError
from ...markers import KEY_SECRET, KeyCache, check, sign
from ...model import (
    FORGED,
    IMMUTABLE_ID,
    MARKER_KEYS,
    SIGNED_KEYS,
    TAG_MAC,
    UNAUTHENTICATED,
    Change,
    CompiledWorkload,
    DesiredIdentity,
    Marker,
    ObservedIdentity,
)
from ..interface import TransferCheck, no_transfers
from . import render
from .clients import AzureClients
from .keys import AzureKeyMixin
from .leavers import AzureRetireMixin

PENDING_DIGEST = "pending"
_ROLE_PATH = "/providers/Microsoft.Authorization/roleDefinitions/"


def role_guid(role_definition_id: str) -> str:
    """The GUID at the end of a role definition id, lower-case."""
    return role_definition_id.rsplit("/", 1)[-1].lower()


def role_ref(subscription: str, guid: str) -> str:
    return f"/subscriptions/{subscription}{_ROLE_PATH}{guid}"


def _role_doc(role: Any) -> dict[str, Any]:
    """A RoleDefinition as render.desired_objects writes one."""
    permissions = [{"actions": sorted(p.actions or []), "notActions": sorted(p.not_actions or []),
                    "dataActions": sorted(p.data_actions or []),
                    "notDataActions": sorted(p.not_data_actions or [])} for p in role.permissions or []]
    return {"roleName": role.role_name, "description": role.description or "",
            "permissions": permissions, "assignableScopes": sorted(role.assignable_scopes or [])}


def _assignment_doc(subscription: str, assignment: Any) -> dict[str, Any]:
    return {"scope": assignment.scope, "roleDefinitionId": role_ref(subscription, role_guid(
        assignment.role_definition_id)), "principalType": assignment.principal_type or "ServicePrincipal"}


def _credential_doc(credential: Any) -> dict[str, Any]:
    return {"issuer": credential.issuer, "subject": credential.subject,
            "audiences": list(credential.audiences or [])}


def _norm(doc: Mapping[str, Any]) -> Mapping[str, Any]:
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
        with self._lock:
            self._drop(guid)
            self._by_guid[guid] = role
            key = self._key(role)
            if key is not None:
                self._by_workload.setdefault(key, {})[guid] = role

    def drop(self, guid: str) -> None:
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


class AzureProvider(AzureKeyMixin, AzureRetireMixin):
    """See the module docstring."""

    name = "azure"

    def __init__(self, config: Config, seam: CallSeam, transfers: TransferCheck = no_transfers) -> None:
        self.config = config
        self.seam = seam
        self.transfers = transfers
        self.clients = AzureClients(config, seam)
        self.prefix = config.azure.namePrefix
        # subscription -> every role assignment and our custom roles, from the last fleet read
        self._scope_assignments: dict[str, list[dict[str, str]]] = {}
        self._scope_principals: dict[str, set[str]] = {}
        self._roles_cache: dict[str, OurRoles] = {}
        self._roles_lock = threading.Lock()
        # Key mode's application ids, shared by apply's and rotate's threads. Made here, not
        # on first use: two threads that each found none made one each, and the later one
        # replaced the other's with its entry lost, so a Key Vault secret went out with an
        # empty clientId. Single puts and gets need no lock (each is atomic); nothing walks them.
        self._app_ids: dict[str, str] = {}
        self._key_apps: dict[str, str] = {}
        # One key in the configured vault serves every subscription (read once each).
        self.keys = KeyCache(self._read_signing_key, lambda _: (
            f"Key Vault {config.azure.keyVaultUrl} secret {KEY_SECRET}" if config.azure.keyVaultUrl else
            f"Key Vault secret {KEY_SECRET} (azure.keyVaultUrl is not set in workload-ids.yaml)"))

    # --- the marker signing key --------------------------------------------------------

    def _read_signing_key(self, subscription: str) -> str | None:
        if not self.config.azure.keyVaultUrl:
            return None
        vault = self.clients.secrets
        try:
            found = self.clients.call("keyvault.get_secret", vault.get_secret, KEY_SECRET)
        except Exception as exc:
            if self._kind(exc) == NOT_FOUND:
                return None
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("keyvault.get_secret", exc) from exc
        return str(found.value or "")

    def signed(self, subscription: str, name: str, immutable_id: str,
               tags: Mapping[str, str]) -> dict[str, str]:
        """``tags`` with the MAC of the marker they hold, for this identity."""
        out = {k: v for k, v in tags.items() if k != TAG_MAC}
        marker = Marker.from_tags(out)
        if marker is not None:
            # Subscription ids are GUIDs, written in either case: the MAC binds the lower.
            out[TAG_MAC] = sign(self.keys.get(subscription), "azure", subscription.lower(), name,
                                immutable_id, marker)
        return out

    def _ownership(self, subscription: str, name: str, immutable_id: str, tags: Mapping[str, str],
                   marker: Marker | None) -> dict[str, Any]:
        misplaced = render.not_ours(self.prefix, name, marker) if marker else None
        return {FORGED: misplaced, IMMUTABLE_ID: immutable_id,
                UNAUTHENTICATED: check(self.keys.get(subscription), "azure", subscription.lower(), name,
                                       immutable_id, marker, tags.get(TAG_MAC))
                if marker is not None and not misplaced else None}

    # --- pure ------------------------------------------------------------------------

    def desired(self, workload: CompiledWorkload) -> DesiredIdentity:
        return render.desired_identity(workload, self.config)

    def static_checks(self, workload: CompiledWorkload) -> list[Diagnostic]:
        return render.static_checks(workload, self.config)

    def outputs(self, desired: DesiredIdentity) -> dict[str, str]:
        out = {"identity": desired.name, "provider": "azure", "subscription": desired.workload.target,
               "resource_id": desired.address}
        client_id = desired.settings.get("clientId")
        if client_id:
            out["client_id"] = client_id
        return out

    def preflight(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
        return self.preflight_keys(desired)

    def preflight_writes(self, changes: Sequence[Change]) -> list[Diagnostic]:
        return []

    # --- targets ---------------------------------------------------------------------

    def current_target(self) -> str:
        raise UserError("Azure has no ambient subscription to read: list the subscriptions under "
                        "targets.azure in the config, name one with --target SUBSCRIPTION, or pass "
                        "the manifests whose subscriptions should be read")

    def verify_target(self, target: str) -> str:
        """One read in the subscription: its custom roles (the first page)."""
        self._call("authorization.role_definitions.list", lambda: next(iter(
            self.clients.authorization(target).role_definitions.list(
                f"/subscriptions/{target}", filter="type eq 'CustomRole'").by_page()), None))
        if self.config.azure.sandboxCredentials:
            return "sandbox token"
        return "DefaultAzureCredential"

    def _cloud(self, operation: str, exc: BaseException) -> Exception:
        from ...calls import to_cloud_error
        return to_cloud_error(self.seam, "azure", operation, exc)

    def _call(self, operation: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A seam call whose failure after retries becomes a CloudError."""
        try:
            return self.clients.call(operation, fn, *args, **kwargs)
        except Exception as exc:
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud(operation, exc) from exc

    def _kind(self, exc: BaseException) -> str | None:
        info = self.seam.classify("azure", exc)
        if info is None and isinstance(exc.__cause__, BaseException):
            info = self.seam.classify("azure", exc.__cause__)
        return info.kind if info else None

    # --- reads -----------------------------------------------------------------------

    def _identity(self, subscription: str, group: str, name: str) -> Any | None:
        msi = self.clients.msi(subscription)
        try:
            return self.clients.call("msi.user_assigned_identities.get", msi.user_assigned_identities.get,
                                     group, name)
        except Exception as exc:
            if self._kind(exc) == NOT_FOUND:
                return None
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("msi.user_assigned_identities.get", exc) from exc

    def _custom_roles(self, subscription: str) -> OurRoles:
        """Our custom roles in the subscription (those whose description carries our marker),
        read once per run and kept up to date with our own writes: ARM answers with every
        custom role of the subscription, so an apply of many workloads must not re-read it
        for each. A run that dies loses the copy; the next one reads afresh."""
        with self._roles_lock:
            cached = self._roles_cache.get(subscription)
            if cached is not None:
                return cached
        found = self._read_custom_roles(subscription)
        with self._roles_lock:
            return self._roles_cache.setdefault(subscription, found)

    def _remember_role(self, subscription: str, guid: str, role: dict[str, Any] | None) -> None:
        with self._roles_lock:
            cached = self._roles_cache.get(subscription)
        if cached is None:
            return
        if role is None:
            cached.drop(guid)
        else:
            cached.put(guid, role)

    def _read_custom_roles(self, subscription: str) -> OurRoles:
        authz = self.clients.authorization(subscription)
        found: dict[str, dict[str, Any]] = {}
        foreign: set[str] = set()
        try:
            for role in self.clients.pages("authorization.role_definitions.list", authz.role_definitions.list(
                    f"/subscriptions/{subscription}", filter="type eq 'CustomRole'")):
                if Marker.from_text(role.description) is not None:
                    found[str(role.name).lower()] = _role_doc(role)
                else:
                    foreign.add(str(role.name).lower())
        except Exception as exc:
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("authorization.role_definitions.list", exc) from exc
        return OurRoles(found, foreign)

    def _assignments(self, subscription: str, principal: str | None) -> list[Any]:
        """Role assignments in the subscription: one principal's, or all."""
        authz = self.clients.authorization(subscription)
        flt = f"principalId eq '{principal}'" if principal else None
        try:
            return list(self.clients.pages("authorization.role_assignments.list_for_subscription",
                                           authz.role_assignments.list_for_subscription(filter=flt)))
        except Exception as exc:
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("authorization.role_assignments.list_for_subscription", exc) from exc

    def _federated(self, subscription: str, group: str, name: str) -> dict[str, dict[str, Any]]:
        msi = self.clients.msi(subscription)
        try:
            pager = msi.federated_identity_credentials.list(group, name)
            return {str(c.name): _credential_doc(c)
                    for c in self.clients.pages("msi.federated_identity_credentials.list", pager)}
        except Exception as exc:
            if self._kind(exc) == NOT_FOUND:
                return {}
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("msi.federated_identity_credentials.list", exc) from exc

    def _observed(self, subscription: str, identity: Any, roles: OurRoles,
                  assignments: Sequence[Any], federated: dict[str, Any] | None) -> ObservedIdentity:
        tags = dict(identity.tags or {})
        marker = Marker.from_tags(tags)
        principal = str(identity.principal_id or "")
        documents: dict[str, Any] = {}
        foreign: list[str] = []
        if marker is not None:
            mine = roles.of(marker)
            ours = {a.name: _assignment_doc(subscription, a) for a in assignments
                    if str(a.principal_id).lower() == principal.lower()
                    and role_guid(a.role_definition_id) in mine}
            foreign = sorted({f"{a.role_definition_id} at {a.scope}" for a in assignments
                              if str(a.principal_id).lower() == principal.lower()
                              and role_guid(a.role_definition_id) not in roles})
            documents = {"roles": mine, "assignments": dict(sorted(ours.items()))}
            if federated is not None:
                documents["federatedCredentials"] = dict(sorted(federated.items()))
        group = str(identity.id).split("/")[4]
        return ObservedIdentity(
            provider="azure", target=subscription, kind="managed-identity", name=str(identity.name),
            address=str(identity.id), tags=tags,
            documents={k: render.canonical(v) for k, v in documents.items()},
            settings={"resourceGroup": group, "location": str(identity.location),
                      "clientId": str(identity.client_id or "")},
            foreign=tuple(foreign),
            extra={"principalId": principal, "clientId": str(identity.client_id or ""), "objects": documents,
                   "foreignGrants": foreign,
                   **self._ownership(subscription, str(identity.name), principal, tags, marker)})

    def _observed_app(self, subscription: str, app: Mapping[str, Any], principal: Mapping[str, Any] | None,
                      roles: OurRoles, assignments: Sequence[Any]) -> ObservedIdentity:
        from .keys import tags_of
        tags = tags_of(app.get("tags"))
        marker = Marker.from_tags(tags)
        principal_id = str(principal["id"]) if principal else ""
        documents: dict[str, Any] = {}
        foreign: list[str] = []
        if marker is not None:
            mine = roles.of(marker)
            documents = {"roles": mine, "assignments": dict(sorted(
                (str(a.name), _assignment_doc(subscription, a)) for a in assignments
                if role_guid(a.role_definition_id) in mine))}
            foreign = sorted({f"{a.role_definition_id} at {a.scope}" for a in assignments
                              if role_guid(a.role_definition_id) not in roles})
        return ObservedIdentity(
            provider="azure", target=subscription, kind="application", name=str(app["displayName"]),
            address=f"/subscriptions/{subscription}/applications/{app['displayName']}", tags=tags,
            documents={k: render.canonical(v) for k, v in documents.items()},
            settings={"appId": str(app["appId"]), "clientId": str(app["appId"])},
            foreign=tuple(foreign),
            extra={"principalId": principal_id, "appId": str(app["appId"]), "appObjectId": str(app["id"]),
                   "accountEnabled": None if principal is None else principal.get("accountEnabled", True),
                   "objects": documents, "foreignGrants": foreign,
                   # An application's marker is bound to its object id (its principal may
                   # not exist yet, and is not what carries the tags).
                   **self._ownership(subscription, str(app["displayName"]), str(app["id"]), tags, marker)})

    def observe_one(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """Four calls: the identity, the subscription's custom roles, its assignments and its
        federated credentials."""
        self.keys.get(desired.workload.target)  # before anything: without it nothing can be believed
        if desired.kind == "application":
            return self.observe_application(desired)
        subscription = desired.workload.target
        group = desired.settings["resourceGroup"]
        identity = self._identity(subscription, group, desired.name)
        if identity is None:
            return None
        if Marker.from_tags(identity.tags or {}) is None:
            return self._observed(subscription, identity, OurRoles(), [], None)
        roles = self._custom_roles(subscription)
        assignments = self._assignments(subscription, str(identity.principal_id))
        federated = self._federated(subscription, group, desired.name)
        return self._observed(subscription, identity, roles, assignments, federated)

    def observe_scope(self, target: str, *, settings: bool = True) -> list[ObservedIdentity]:
        """A few paged calls for a whole subscription: its managed identities, its custom
        roles and its role assignments. Federated credentials are a child of each identity
        and are not read here: a diff trusts the manifest digest in the marker for them."""
        msi = self.clients.msi(target)
        self.keys.get(target)  # before anything: without it nothing here can be believed
        try:
            identities = list(self.clients.pages("msi.user_assigned_identities.list_by_subscription",
                                                 msi.user_assigned_identities.list_by_subscription()))
        except Exception as exc:
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("msi.user_assigned_identities.list_by_subscription", exc) from exc
        roles = self._read_custom_roles(target)
        with self._roles_lock:
            self._roles_cache[target] = roles
        assignments = self._assignments(target, None)
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
            observed.append(self._observed(target, identity, roles, by_principal.get(
                str(identity.principal_id).lower(), []), None))
        observed.extend(self._observe_applications(target, roles, by_principal, principals))
        self._scope_principals[target] = principals
        self._scope_assignments[target] = [
            {"member": str(a.principal_id), "role": str(a.role_definition_id), "scope": str(a.scope),
             "name": str(a.name)} for a in assignments if role_guid(a.role_definition_id) in roles]
        return observed

    # --- plan ------------------------------------------------------------------------

    def diff(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> list[Change]:
        w = desired.workload
        want = desired.objects
        if desired.kind == "application":
            return self.diff_application(desired, observed)

        def change(action: str, **details: Any) -> Change:
            return Change(workload=w.label, provider="azure", target=w.target, action=action,
                          identity=desired.name, details=details, desired=desired, observed=observed)

        if observed is None:
            return [change("create", kind="managed-identity", address=desired.address,
                           permissions=_permission_diff({}, {}, want["roles"], want["assignments"]),
                           federation={"added": sorted(want["federatedCredentials"]), "removed": []})]
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
        have: dict[str, Any] = observed.extra.get("objects") or {}
        changes = self._access_changes(change, want, have)
        want_fed = want["federatedCredentials"]
        if "federatedCredentials" in have:
            have_fed = have["federatedCredentials"]
            if have_fed != want_fed:
                changes.append(change("update-federation", federation={
                    "added": sorted(k for k in want_fed if have_fed.get(k) != want_fed[k]),
                    "removed": sorted(set(have_fed) - set(want_fed))}))
        elif observed.marker.digest != w.marker.digest:
            # A fleet read leaves each identity's federated credentials unread: a manifest
            # changed since the last apply (its digest) has them converged at apply.
            changes.append(change("update-federation", federation={
                "added": sorted(want_fed), "removed": [], "checkedAtApply": True}))
        if self._marker_differs(desired, observed):
            # Last: the manifest digest is recorded only once everything else matches.
            changes.append(change("update-marker", tags=marker_changes(desired, observed)))
        return changes

    @staticmethod
    def _access_changes(change: Any, want: Mapping[str, Any], have: Mapping[str, Any]) -> list[Change]:
        have_roles, want_roles = have.get("roles", {}), want["roles"]
        have_assign = {k: _norm(v) for k, v in have.get("assignments", {}).items()}
        want_assign = {k: _norm(v) for k, v in want["assignments"].items()}
        if have_roles == want_roles and have_assign == want_assign:
            return []
        return [change("update-access", roles={
            "added": sorted(set(want_roles) - set(have_roles)),
            "changed": sorted(r for r in want_roles if r in have_roles and have_roles[r] != want_roles[r]),
            "removed": sorted(set(have_roles) - set(want_roles))},
            assignments={"added": sorted(k for k in want_assign if have_assign.get(k) != want_assign[k]),
                         "removed": sorted(set(have_assign) - set(want_assign))},
            permissions=_permission_diff(have_roles, have.get("assignments", {}), want_roles,
                                         want["assignments"]))]

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
        assert change.desired is not None
        desired = change.desired
        if desired.kind == "application":
            self.apply_application(change)
            return
        try:
            if change.action == "create":
                self._create(desired)
            elif change.action == "update-access":
                self._converge_access(desired, self._principal_of(desired))
            elif change.action == "update-federation":
                self._converge_federation(desired)
            elif change.action == "update-marker":
                self._write_tags(desired, dict(desired.tags))
            else:  # pragma: no cover - plan and apply are written together
                raise ValueError(f"unknown change {change.action}")
        except Exception as exc:
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud(f"azure.{change.action}", exc) from exc

    def _principal_of(self, desired: DesiredIdentity) -> str:
        identity = self._identity(desired.workload.target, desired.settings["resourceGroup"], desired.name)
        if identity is None or Marker.from_tags(identity.tags or {}) is None:
            raise ConflictError(f"managed identity {desired.name} is gone or no longer carries the "
                                "workload-ids tags", "rerun plan to see what the cloud holds now")
        return str(identity.principal_id)

    def _create(self, desired: DesiredIdentity) -> None:
        w = desired.workload
        pending = Marker(w.marker.workload, w.marker.owner, w.marker.environment, PENDING_DIGEST)
        existing = self._identity(w.target, desired.settings["resourceGroup"], desired.name)
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
        self._converge_access(desired, str(existing.principal_id))
        self._converge_federation(desired)
        self._write_tags(desired, dict(desired.tags))

    def _write_tags(self, desired: DesiredIdentity, marker_tags: Mapping[str, str],
                    drop: Sequence[str] = ()) -> None:
        """Our marker keys set to ``marker_tags``; every other tag kept (a quarantine mark is
        cleanup's to clear, tags others added are theirs), except the keys in ``drop``."""
        subscription, group = desired.workload.target, desired.settings["resourceGroup"]
        identity = self._identity(subscription, group, desired.name)
        if identity is None or Marker.from_tags(identity.tags or {}) is None:
            raise ConflictError(f"managed identity {desired.name} is gone or no longer carries the "
                                "workload-ids tags", "rerun plan to see what the cloud holds now")
        self.write_identity_tags(subscription, group, desired.name, identity, marker_tags, drop)

    def write_identity_tags(self, subscription: str, group: str, name: str, identity: Any,
                            marker_tags: Mapping[str, str], drop: Sequence[str] = ()) -> None:
        """Every marker write goes through here: the MAC of the marker the tags then hold
        (bound to the identity's principal id) is written with them. Callers have checked
        the identity is provably ours, or that the manifest authorises marking it anew."""
        tags = {k: v for k, v in (identity.tags or {}).items() if k not in MARKER_KEYS and k not in drop}
        tags.update(marker_tags)
        tags = self.signed(subscription, name, str(identity.principal_id or ""), tags)
        if tags == dict(identity.tags or {}):
            return
        msi = self.clients.msi(subscription)
        # A PUT, because the emulator and the 2018 api both take one; it carries the location.
        self.clients.call("msi.user_assigned_identities.create_or_update",
                          msi.user_assigned_identities.create_or_update, group, name,
                          {"location": identity.location, "tags": tags})

    def _converge_access(self, desired: DesiredIdentity, principal: str) -> None:
        """Read fresh (two calls), then: remove assignments no longer wanted, write roles,
        add missing assignments, delete roles no longer wanted. In this order a shrinking
        role never loses a scope that still has an assignment, and no role is deleted while
        assigned."""
        w = desired.workload
        self.converge_grants(w.target, principal, w.marker, desired.objects["roles"],
                             desired.objects["assignments"], f"{w.environment}/{w.name}")

    def converge_grants(self, subscription: str, principal: str, marker: Marker,
                        want_roles: Mapping[str, Any], want_assignments: Mapping[str, Any],
                        label: str) -> None:
        authz = self.clients.authorization(subscription)
        known = self._custom_roles(subscription)
        taken = sorted(set(want_roles) & known.foreign)
        if taken:
            raise ConflictError(f"custom role definition(s) {', '.join(taken)} of {label} exist without the "
                                "workload-ids marker", "they are never modified; remove them or rename the "
                                "workload")
        have_roles = known.of(marker)
        have = [a for a in self._assignments(subscription, principal)
                if role_guid(a.role_definition_id) in {*have_roles, *want_roles}]
        wanted = {k: _norm(v) for k, v in want_assignments.items()}
        for a in have:
            if wanted.get(str(a.name)) != _norm(_assignment_doc(subscription, a)):
                self._delete_assignment(subscription, str(a.scope), str(a.name))
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
                   if wanted.get(str(a.name)) == _norm(_assignment_doc(subscription, a))}
        for name, assignment in want_assignments.items():
            if name in present:
                continue
            try:
                self.clients.call("authorization.role_assignments.create", authz.role_assignments.create,
                                  assignment["scope"], name,
                                  {"role_definition_id": assignment["roleDefinitionId"],
                                   "principal_id": principal, "principal_type": assignment["principalType"],
                                   "description": f"workload-ids {label}"})
            except Exception as exc:
                if self._kind(exc) != CONFLICT:
                    raise
                # RoleAssignmentExists: a run that died after ARM took the PUT made it.
        for guid in sorted(set(have_roles) - set(want_roles)):
            self.delete_role(subscription, guid)

    def _delete_assignment(self, subscription: str, scope: str, name: str) -> None:
        authz = self.clients.authorization(subscription)
        try:
            self.clients.call("authorization.role_assignments.delete", authz.role_assignments.delete,
                              scope, name)
        except Exception as exc:
            if self._kind(exc) != NOT_FOUND:
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
            except Exception as exc:
                if self._kind(exc) == NOT_FOUND:
                    self._remember_role(subscription, guid, None)
                    return
                if self._kind(exc) != CONFLICT:
                    raise
            for a in self._assignments(subscription, None):
                if role_guid(a.role_definition_id) == guid:
                    self._delete_assignment(subscription, str(a.scope), str(a.name))

    def _converge_federation(self, desired: DesiredIdentity) -> None:
        w = desired.workload
        self.converge_federated(w.target, desired.settings["resourceGroup"], desired.name,
                                desired.objects["federatedCredentials"])

    def converge_federated(self, subscription: str, group: str, name: str,
                           want: Mapping[str, Any]) -> None:
        msi = self.clients.msi(subscription)
        have = self._federated(subscription, group, name)
        for fic in sorted(set(have) - set(want)):
            try:
                self.clients.call("msi.federated_identity_credentials.delete",
                                  msi.federated_identity_credentials.delete, group, name, fic)
            except Exception as exc:
                if self._kind(exc) != NOT_FOUND:
                    raise
        for fic, doc in want.items():
            if have.get(fic) != doc:
                self.clients.call("msi.federated_identity_credentials.create_or_update",
                                  msi.federated_identity_credentials.create_or_update, group, name, fic,
                                  {"issuer": doc["issuer"], "subject": doc["subject"],
                                   "audiences": doc["audiences"]})

    # --- leavers: the parts that need the whole-subscription read ----------------------

    def last_used(self, identity: ObservedIdentity) -> datetime | None:
        """Azure keeps sign-ins in Entra's logs (a Graph reports API with its own licence),
        not on the identity: Azure identities are never judged unused."""
        return None


def marker_changes(desired: DesiredIdentity, observed: ObservedIdentity) -> dict[str, dict[str, str]]:
    """The marker tags an update-marker writes (``from``/``to``), the MAC when it is renewed
    because the one there is not valid."""
    out = {k: {"from": observed.tags.get(k, ""), "to": desired.tags.get(k, "")} for k in SIGNED_KEYS
           if observed.tags.get(k, "") != desired.tags.get(k, "")}
    if observed.unauthenticated:
        out[TAG_MAC] = {"from": "(not valid)", "to": "(new MAC)"}
    return out


def _permission_diff(have_roles: Mapping[str, Any], have_assignments: Mapping[str, Any],
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
