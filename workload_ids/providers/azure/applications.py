"""Key-mode identities on Azure: an application registration and its service principal.

The application carries our marker as Graph tags (``key=value`` strings) plus the
subscription it belongs to; the service principal is what roles are assigned to, exactly
as for a managed identity. Its client secrets are :mod:`.keys`'s. Reads, plan and apply
of an application are dispatched here by :class:`.identity.AzureIdentities`; cleanup's
and restore's steps by :class:`.leavers.AzureLeavers`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ...calls import CONFLICT, DENIED, NOT_FOUND
from ...config import Config
from ...errors import CloudError, ConflictError, Diagnostic
from ...model import MARK_TAG, MARKER_KEYS, SIGNED_KEYS, Change, DesiredIdentity, Marker, ObservedIdentity
from ..interface import TransferCheck
from . import render
from .clients import AzureClients
from .roles import (
    PENDING_DIGEST,
    AzureGrants,
    OurRoles,
    access_changes,
    marker_changes,
    observed_grants,
    permission_diff,
    stray_signed,
)

log = logging.getLogger(__name__)
OURS_FILTER = "tags/any(t:t eq 'workload-ids:managed-by=workload-ids')"
# As for GCP's new service accounts (terraform-provider-google's rule): seen 3 times in a
# row within a bounded wait.
VISIBLE_READS = 3
VISIBLE_WAIT_SECONDS = 180.0


def tags_of(values: Sequence[str] | None) -> dict[str, str]:
    """Graph tags (``key=value`` strings) as a dict; tags without ``=`` are not ours."""
    out: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if sep:
            out[key] = rest
    return out


def tag_list(tags: Mapping[str, str]) -> list[str]:
    """A dict of tags as Graph's ``key=value`` strings, sorted."""
    return sorted(f"{k}={v}" for k, v in tags.items())


class AzureApplications:
    """Entra applications and their service principals, as identities."""

    def __init__(self, clients: AzureClients, config: Config, transfers: TransferCheck,
                 grants: AzureGrants) -> None:
        self.clients = clients
        self.config = config
        self.transfers = transfers
        self.grants = grants
        self._actions: dict[str, Callable[[DesiredIdentity], None]] = {
            "create": self._converge,
            "create-service-principal": self._converge,
            "update-access": self._converge,
            "update-marker": self._update_marker,
        }

    # --- reads -----------------------------------------------------------------------

    def graph(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        """One Graph call through the seam (``operation`` names a GraphClient method)."""
        method = getattr(self.clients.graph, operation)
        return self.clients.call(f"graph.{operation}", method, *args, **kwargs)

    def find_app(self, desired: DesiredIdentity) -> dict[str, Any] | None:
        """Our application of this name in this subscription (one call)."""
        return self.find_app_named(desired.workload.target, desired.name)

    def find_app_named(self, subscription: str, name: str) -> dict[str, Any] | None:
        """The application named ``name`` of ``subscription`` (unmarked ones belong to every one)."""
        sub = subscription.lower()
        from .graph import odata_string
        apps = self.graph("find_applications", f"displayName eq {odata_string(name)}")
        mine = [a for a in apps if tags_of(a.get("tags")).get(render.SUBSCRIPTION_TAG, sub) == sub]
        return mine[0] if mine else None

    def service_principal(self, app_id: str) -> dict[str, Any] | None:
        """The application's service principal, or None when it has none."""
        try:
            found: dict[str, Any] = self.graph("get_service_principal_by_app_id", app_id)
            return found
        except CloudError as exc:
            if exc.kind == NOT_FOUND:
                return None
            raise

    def observe(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """Four calls: the application, its service principal, the subscription's custom
        roles and the principal's assignments."""
        app = self.find_app(desired)
        if app is None:
            return None
        sub = desired.workload.target
        principal = self.service_principal(str(app["appId"]))
        if Marker.from_tags(tags_of(app.get("tags"))) is None or principal is None:
            return self._observed(sub, app, principal, OurRoles(), [])
        return self._observed(sub, app, principal, self.grants.custom_roles(sub),
                              self.grants.assignments(sub, str(principal["id"])))

    def observe_all(self, target: str, roles: OurRoles, by_principal: Mapping[str, list[Any]],
                    principals: set[str]) -> list[ObservedIdentity]:
        """Our applications of this subscription, and their service principals: two list
        calls for the whole tenant. Credentials that cannot read Graph see none (keyless
        fleets need no Graph permission), which is logged. Adds their principals to
        ``principals``."""
        try:
            # By our naming, not our tag: an application with our name but not our marker
            # must be seen (and refused by plan), not taken for one still to create.
            ours_by_name = f"startswith(displayName, '{self.config.azure.namePrefix}-')"
            apps = self.graph("find_applications", ours_by_name)
            sps = {str(p["appId"]): p for p in self.graph("find_service_principals", OURS_FILTER)}
        except CloudError as exc:
            if exc.kind == DENIED:
                log.warning("cannot read Microsoft Graph (%s): key-mode applications are not listed",
                            exc.__cause__ or exc)
                return []
            raise
        out: list[ObservedIdentity] = []
        for app in apps:
            tags = tags_of(app.get("tags"))
            if tags.get(render.SUBSCRIPTION_TAG, target.lower()) != target.lower():
                continue  # another subscription's (unmarked ones are shown in every subscription)
            principal = sps.get(str(app["appId"]))
            if principal is not None:
                principals.add(str(principal["id"]).lower())
            assignments = by_principal.get(str(principal["id"]).lower(), []) if principal else []
            out.append(self._observed(target, app, principal, roles, assignments))
        return out

    def _observed(self, subscription: str, app: Mapping[str, Any], principal: Mapping[str, Any] | None,
                  roles: OurRoles, assignments: Sequence[Any]) -> ObservedIdentity:
        tags = tags_of(app.get("tags"))
        marker = Marker.from_tags(tags)
        principal_id = str(principal["id"]) if principal else ""
        documents: dict[str, Any] = {}
        foreign: list[str] = []
        if marker is not None:
            documents, foreign = observed_grants(subscription, None, marker, roles, assignments)
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
                   **self.clients.ownership(subscription, str(app["displayName"]), str(app["id"]), tags,
                                            marker)})

    def preflight(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
        """The settings key mode needs, when an application is among ``desired``."""
        if not any(d.kind == "application" for d in desired):
            return []
        out: list[Diagnostic] = []
        where = self.config.position("azure") if self.config.path else None
        if not self.config.azure.tenantId:
            out.append(Diagnostic(where, "Azure key mode needs the tenant id for the secret it delivers: set "
                                         "azure.tenantId in workload-ids.yaml"))
        if not self.config.azure.keyVaultUrl:
            out.append(Diagnostic(where, "Azure key mode delivers client secrets to Key Vault: set "
                                         "azure.keyVaultUrl in workload-ids.yaml (https://VAULT.vault.azure.net)"))
        if not self.config.azure.lockContainerUrl:
            out.append(Diagnostic(where, "Azure key mode locks each workload with a blob lease while "
                                         "its keys change: set azure.lockContainerUrl in workload-ids.yaml "
                                         "(https://ACCOUNT.blob.core.windows.net/CONTAINER) and grant the "
                                         "tool Storage Blob Data Contributor on it"))
        return out

    # --- plan and apply --------------------------------------------------------------

    def diff(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> list[Change]:
        """Create (exclusive), create-service-principal, update-access, update-marker."""
        w = desired.workload
        want = desired.objects

        def change(action: str, **details: Any) -> Change:
            return Change(workload=w.label, provider="azure", target=w.target, action=action,
                          identity=desired.name, details=details, desired=desired, observed=observed)

        if observed is None:
            # Graph keeps no name unique: two pipelines creating this application at once
            # would make two, so apply holds the workload's lock around the create.
            return [replace(change("create", kind="application", address=desired.address,
                                   permissions=permission_diff({}, {}, want["roles"], want["assignments"])),
                            exclusive=True)]
        if observed.marker is None:
            raise ConflictError(
                f"{w.label}: application {desired.name} exists in the tenant but does not carry the "
                "workload-ids tags, so it will not be modified",
                "rename the workload, or delete that application if it is truly unused")
        changes: list[Change] = []
        if not observed.extra.get("principalId"):
            changes.append(change("create-service-principal", appId=observed.extra.get("appId", "")))
        changes.extend(access_changes(change, want, observed.extra.get("objects") or {}))
        transferred = self.transfers(observed, w.marker.owner) and \
            observed.marker.digest == w.marker.digest
        if observed.misplaced:
            raise ConflictError(
                f"{w.label}: application {desired.name} carries the workload-ids tags but "
                f"{observed.misplaced}, so it will not be modified", "find out who tagged it")
        if observed.unauthenticated or (not transferred and any(
                observed.tags.get(k, "") != desired.tags.get(k, "") for k in SIGNED_KEYS)):
            changes.append(change("update-marker", tags=marker_changes(desired, observed)))
        return changes

    def apply(self, change: Change) -> None:
        """One change of an application (by action)."""
        assert change.desired is not None
        desired = change.desired
        action = self._actions.get(change.action)
        if action is None:  # pragma: no cover - plan and apply are written together
            raise ValueError(f"unknown change {change.action}")
        action(desired)

    def _update_marker(self, desired: DesiredIdentity) -> None:
        self._write_app(self.require_app(desired), dict(desired.tags), stray_signed(desired.tags))

    def _await_visible(self, object_id: str) -> None:
        """Wait until a new application reads back :data:`VISIBLE_READS` times in a row:
        Entra replicates new objects for seconds, and edits of one a replica does not
        know yet fail with 404."""
        streak, waited, attempt = 0, 0.0, 0
        while streak < VISIBLE_READS:
            try:
                self.graph("get_application", object_id)
                streak += 1
                delay = 0.25 if streak < VISIBLE_READS else 0.0
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
                streak, attempt = 0, attempt + 1
                delay = min(10.0, 0.5 * 2 ** attempt)
            if waited + delay > VISIBLE_WAIT_SECONDS:
                raise CloudError("graph.get_application", "Request_ResourceNotFound",
                                 f"application {object_id} was created but Entra still does not show it "
                                 f"after {VISIBLE_WAIT_SECONDS:.0f} s",
                                 "Entra is replicating the new application; rerun apply in a few minutes "
                                 "(reruns converge)")
            if delay:
                self.clients.seam.sleep(delay)
                waited += delay

    def require_app(self, desired: DesiredIdentity) -> dict[str, Any]:
        """Our application of ``desired``; ConflictError when it is gone or not marked."""
        app = self.find_app(desired)
        if app is None or Marker.from_tags(tags_of(app.get("tags"))) is None:
            raise ConflictError(f"application {desired.name} is gone or no longer carries the workload-ids "
                                "tags", "rerun plan to see what the cloud holds now")
        return app

    def _converge(self, desired: DesiredIdentity) -> None:
        """Application (with a placeholder digest until the end), service principal,
        roles and assignments, then the real marker."""
        w = desired.workload
        app = self.find_app(desired)
        if app is None:
            # Apply holds the workload's lock around a create (Change.exclusive), so a
            # second pipeline finds this application here; the creator waits until it is
            # visible before letting go.
            pending = {**desired.tags, "workload-ids:manifest-sha256": PENDING_DIGEST}
            app = self.graph("create_application", desired.name, tag_list(pending),
                             f"Managed by workload-ids: {w.label}. Changes are overwritten.")
            self._await_visible(str(app["id"]))
        if Marker.from_tags(tags_of(app.get("tags"))) is None:
            raise ConflictError(f"application {desired.name} appeared without the workload-ids tags",
                                "find out who created it; workload-ids will not adopt it")
        principal = self.service_principal(str(app["appId"]))
        if principal is None:
            try:
                principal = self.graph("create_service_principal", str(app["appId"]), tag_list(desired.tags))
            except CloudError as exc:
                if exc.kind != CONFLICT:
                    raise
                principal = self.service_principal(str(app["appId"]))
                if principal is None:
                    raise
        self.grants.converge(w.target, str(principal["id"]), w.marker, desired.objects["roles"],
                             desired.objects["assignments"], f"{w.environment}/{w.name}")
        self._write_app(app, dict(desired.tags), stray_signed(desired.tags))

    def _write_app(self, app: Mapping[str, Any], marker_tags: Mapping[str, str], drop: Sequence[str]) -> None:
        """Our marker keys set, other tags kept (a quarantine mark is cleanup's), ``drop`` removed."""
        current = tags_of(app.get("tags"))
        foreign = [t for t in app.get("tags") or [] if "=" not in t]
        tags = {k: v for k, v in current.items() if k not in MARKER_KEYS and k not in drop}
        tags.update(marker_tags)
        # Every marker write of an application passes here: its MAC is bound to the object id.
        tags = self.clients.signed(str(tags.get(render.SUBSCRIPTION_TAG, "")), str(app["displayName"]),
                                   str(app["id"]), tags)
        if tags == current:
            return
        self.graph("update_application", str(app["id"]), {"tags": [*foreign, *tag_list(tags)]})

    # --- leavers ---------------------------------------------------------------------

    def write_tags(self, identity: ObservedIdentity, marker_tags: Mapping[str, str],
                   drop: Sequence[str] = ()) -> None:
        """Set tags on an observed application read afresh; one gone is fine."""
        try:
            app = self.graph("get_application", str(identity.extra["appObjectId"]))
        except CloudError as exc:
            if exc.kind == NOT_FOUND:
                return
            raise
        if Marker.from_tags(tags_of(app.get("tags"))) is None:
            raise ConflictError(f"application {identity.name} no longer carries the workload-ids tags",
                                "it is never modified")
        self._write_app(app, marker_tags, drop)

    def set_principal_enabled(self, identity: ObservedIdentity, enabled: bool) -> None:
        """Enable or disable the application's service principal (a no-op when it already is)."""
        principal = identity.extra.get("principalId")
        if principal and identity.extra.get("accountEnabled") is not enabled:
            self.graph("update_service_principal", str(principal), {"accountEnabled": enabled})

    def delete(self, identity: ObservedIdentity) -> None:
        """Deleting the application deletes its service principal; Entra keeps the
        application restorable for 30 days."""
        try:
            self.graph("delete_application", str(identity.extra["appObjectId"]))
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise

    def restore(self, bundle: Mapping[str, Any]) -> tuple[str, list[str]]:
        """Restore the soft-deleted application (its secrets' metadata comes back with
        it), else find it live; then its service principal, enabled. Returns the principal."""
        steps: list[str] = []
        object_id = str(bundle.get("appObjectId") or "")
        try:
            app = self.graph("get_application", object_id)
            steps.append(f"application {bundle['name']} exists: converging it")
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            app = self.graph("restore_deleted", object_id)
            steps.append(f"restore application {bundle['name']} from deleted items")
        if Marker.from_tags(tags_of(app.get("tags"))) is None:
            raise ConflictError(f"application {bundle['name']} carries no workload-ids tags",
                                "it is never modified")
        self._write_app(app, dict(bundle["tags"]), (MARK_TAG,))
        principal = self.service_principal(str(app["appId"]))
        if principal is None:
            # Deleting an application puts its service principal in deleted items too, and
            # restoring the application does not bring it back; restoring it keeps its
            # object id, so nothing that names it is left dangling.
            from .graph import odata_string
            deleted = self.graph("list_deleted_service_principals",
                                 f"appId eq {odata_string(str(app['appId']))}")
            if deleted:
                principal = self.graph("restore_deleted", str(deleted[0]["id"]))
                steps.append("restore its service principal from deleted items")
            else:
                marker_tags = {k: v for k, v in dict(bundle["tags"]).items() if k in MARKER_KEYS}
                principal = self.graph("create_service_principal", str(app["appId"]), tag_list(marker_tags))
                steps.append("create its service principal")
        if principal.get("accountEnabled") is False:
            self.graph("update_service_principal", str(principal["id"]), {"accountEnabled": True})
        return str(principal["id"]), steps
