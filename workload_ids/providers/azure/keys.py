"""Key mode on Azure: an application registration and its service principal, holding a
client secret (Graph ``addPassword`` / ``removePassword``) delivered to Key Vault only.

The application carries our marker as Graph tags (``key=value`` strings) plus the
subscription it belongs to; the service principal is what roles are assigned to, exactly
as for a managed identity. Rotation is the shared design (journal, verify, overlap,
retire, grace), with one Azure fact: a client secret cannot be disabled, only removed.
So the step that deactivates a key elsewhere removes it here, at the end of the overlap;
the grace period then has nothing left to hold. Each secret also gets an end date
(rotation's max age, overlap and grace, plus 30 days), so a secret whose rotation stops
running expires on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ... import clock
from ...calls import CONFLICT, DENIED, NOT_FOUND
from ...config import Config
from ...errors import ConflictError, Diagnostic
from ...model import (
    MARKER_KEYS,
    UNAUTHENTICATED,
    Change,
    DesiredIdentity,
    IssuedKey,
    KeyInfo,
    Marker,
    ObservedIdentity,
    SecretValue,
)
from . import render

if TYPE_CHECKING:
    from ...calls import CallSeam
    from ..interface import TransferCheck
    from .clients import AzureClients
    from .provider import OurRoles

log = logging.getLogger(__name__)
OURS_FILTER = "tags/any(t:t eq 'workload-ids:managed-by=workload-ids')"
EXPIRY_MARGIN = timedelta(days=30)
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
    return sorted(f"{k}={v}" for k, v in tags.items())


class AzureKeyMixin:
    """The key-mode half of :class:`~workload_ids.providers.azure.provider.AzureProvider`."""

    if TYPE_CHECKING:
        seam: CallSeam
        clients: AzureClients
        config: Config
        transfers: TransferCheck

        def _kind(self, exc: BaseException) -> str | None: ...
        def _call(self, operation: str, fn: Any, *args: Any, **kwargs: Any) -> Any: ...
        def _cloud(self, operation: str, exc: BaseException) -> Exception: ...
        def _custom_roles(self, subscription: str) -> OurRoles: ...
        def _assignments(self, subscription: str, principal: str | None) -> list[Any]: ...
        def _observed_app(self, subscription: str, app: Mapping[str, Any],
                          principal: Mapping[str, Any] | None, roles: OurRoles,
                          assignments: Sequence[Any]) -> ObservedIdentity: ...
        def _access_changes(self, change: Any, want: Mapping[str, Any],
                            have: Mapping[str, Any]) -> list[Change]: ...
        def signed(self, subscription: str, name: str, immutable_id: str,
                   tags: Mapping[str, str]) -> dict[str, str]: ...
        def _ownership(self, subscription: str, name: str, immutable_id: str, tags: Mapping[str, str],
                       marker: Marker | None) -> dict[str, Any]: ...
        def converge_grants(self, subscription: str, principal: str, marker: Marker,
                            want_roles: Mapping[str, Any], want_assignments: Mapping[str, Any],
                            label: str) -> None: ...

    key_limit = 2  # ours, not Entra's: a current secret and, during the overlap, the previous one
    # Made once by the provider's constructor, never replaced: apply's and rotate's threads
    # share them (see AzureProvider.__init__).
    _app_ids: dict[str, str]  # display name -> appId, "object:" + display name -> object id
    _key_apps: dict[str, str]  # key id -> the appId of the application it was added to

    def secret_store_name(self) -> str:
        return "azure-key-vault"

    # --- reads -----------------------------------------------------------------------

    def _graph(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.clients.graph, operation)
        return self.clients.call(f"graph.{operation}", method, *args, **kwargs)

    def _find_app(self, desired: DesiredIdentity) -> dict[str, Any] | None:
        """Our application of this name in this subscription (one call)."""
        return self._find_app_named(desired.workload.target, desired.name)

    def _find_app_named(self, subscription: str, name: str) -> dict[str, Any] | None:
        sub = subscription.lower()
        try:
            from .graph import odata_string
            apps = self._graph("find_applications", f"displayName eq {odata_string(name)}")
        except Exception as exc:
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("graph.find_applications", exc) from exc
        mine = [a for a in apps if tags_of(a.get("tags")).get(render.SUBSCRIPTION_TAG, sub) == sub]
        return mine[0] if mine else None

    def _service_principal(self, app_id: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._graph("get_service_principal_by_app_id", app_id)
            return found
        except Exception as exc:
            if self._kind(exc) == NOT_FOUND:
                return None
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("graph.get_service_principal_by_app_id", exc) from exc

    def observe_application(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """Four calls: the application, its service principal, the subscription's custom
        roles and the principal's assignments."""
        app = self._find_app(desired)
        if app is None:
            return None
        sub = desired.workload.target
        principal = self._service_principal(str(app["appId"]))
        if Marker.from_tags(tags_of(app.get("tags"))) is None or principal is None:
            from .provider import OurRoles
            return self._observed_app(sub, app, principal, OurRoles(), [])
        return self._observed_app(sub, app, principal, self._custom_roles(sub),
                                  self._assignments(sub, str(principal["id"])))

    def _observe_applications(self, target: str, roles: OurRoles,
                              by_principal: Mapping[str, list[Any]],
                              principals: set[str]) -> list[ObservedIdentity]:
        """Our applications of this subscription, and their service principals: two list
        calls for the whole tenant. Credentials that cannot read Graph see none (keyless
        fleets need no Graph permission), which is logged."""
        try:
            # By our naming, not our tag: an application with our name but not our marker
            # must be seen (and refused by plan), not taken for one still to create.
            ours_by_name = f"startswith(displayName, '{self.config.azure.namePrefix}-')"
            apps = self._graph("find_applications", ours_by_name)
            sps = {str(p["appId"]): p for p in self._graph("find_service_principals", OURS_FILTER)}
        except Exception as exc:
            if self._kind(exc) == DENIED:
                log.warning("cannot read Microsoft Graph (%s): key-mode applications are not listed", exc)
                return []
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("graph.find_applications", exc) from exc
        out: list[ObservedIdentity] = []
        for app in apps:
            tags = tags_of(app.get("tags"))
            if tags.get(render.SUBSCRIPTION_TAG, target.lower()) != target.lower():
                continue  # another subscription's (unmarked ones are shown in every subscription)
            principal = sps.get(str(app["appId"]))
            if principal is not None:
                principals.add(str(principal["id"]).lower())
            assignments = by_principal.get(str(principal["id"]).lower(), []) if principal else []
            out.append(self._observed_app(target, app, principal, roles, assignments))
        return out

    # --- plan and apply --------------------------------------------------------------

    def diff_application(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> list[Change]:
        from .provider import _permission_diff
        w = desired.workload
        want = desired.objects

        def change(action: str, **details: Any) -> Change:
            return Change(workload=w.label, provider="azure", target=w.target, action=action,
                          identity=desired.name, details=details, desired=desired, observed=observed)

        if observed is None:
            # Graph keeps no name unique: two pipelines creating this application at once
            # would make two, so apply holds the workload's lock around the create.
            return [replace(change("create", kind="application", address=desired.address,
                                   permissions=_permission_diff({}, {}, want["roles"], want["assignments"])),
                            exclusive=True)]
        if observed.marker is None:
            raise ConflictError(
                f"{w.label}: application {desired.name} exists in the tenant but does not carry the "
                "workload-ids tags, so it will not be modified",
                "rename the workload, or delete that application if it is truly unused")
        changes: list[Change] = []
        if not observed.extra.get("principalId"):
            changes.append(change("create-service-principal", appId=observed.extra.get("appId", "")))
        changes.extend(self._access_changes(change, want, observed.extra.get("objects") or {}))
        transferred = self.transfers(observed, w.marker.owner) and \
            observed.marker.digest == w.marker.digest
        if observed.misplaced:
            raise ConflictError(
                f"{w.label}: application {desired.name} carries the workload-ids tags but "
                f"{observed.misplaced}, so it will not be modified", "find out who tagged it")
        from ...model import SIGNED_KEYS
        from .provider import marker_changes
        if observed.unauthenticated or (not transferred and any(
                observed.tags.get(k, "") != desired.tags.get(k, "") for k in SIGNED_KEYS)):
            changes.append(change("update-marker", tags=marker_changes(desired, observed)))
        return changes

    def apply_application(self, change: Change) -> None:
        assert change.desired is not None
        desired = change.desired
        try:
            if change.action in ("create", "create-service-principal", "update-access"):
                self._converge_application(desired)
            elif change.action == "update-marker":
                app = self._require_app(desired)
                self._write_app(app, dict(desired.tags), ())
            else:  # pragma: no cover - plan and apply are written together
                raise ValueError(f"unknown change {change.action}")
        except Exception as exc:
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud(f"azure.{change.action}", exc) from exc

    def _await_visible(self, object_id: str) -> None:
        """Wait until a new application reads back :data:`VISIBLE_READS` times in a row:
        Entra replicates new objects for seconds, and edits of one a replica does not
        know yet fail with 404."""
        streak, waited, attempt = 0, 0.0, 0
        while streak < VISIBLE_READS:
            try:
                self._graph("get_application", object_id)
                streak += 1
                delay = 0.25 if streak < VISIBLE_READS else 0.0
            except Exception as exc:
                if self._kind(exc) != NOT_FOUND:
                    raise
                streak, attempt = 0, attempt + 1
                delay = min(10.0, 0.5 * 2 ** attempt)
            if waited + delay > VISIBLE_WAIT_SECONDS:
                from ...errors import CloudError
                raise CloudError("graph.get_application", "Request_ResourceNotFound",
                                 f"application {object_id} was created but Entra still does not show it "
                                 f"after {VISIBLE_WAIT_SECONDS:.0f} s",
                                 "Entra is replicating the new application; rerun apply in a few minutes "
                                 "(reruns converge)")
            if delay:
                self.seam.sleep(delay)
                waited += delay

    def _require_app(self, desired: DesiredIdentity) -> dict[str, Any]:
        app = self._find_app(desired)
        if app is None or Marker.from_tags(tags_of(app.get("tags"))) is None:
            raise ConflictError(f"application {desired.name} is gone or no longer carries the workload-ids "
                                "tags", "rerun plan to see what the cloud holds now")
        return app

    def _converge_application(self, desired: DesiredIdentity) -> None:
        """Application (with a placeholder digest until the end), service principal,
        roles and assignments, then the real marker."""
        w = desired.workload
        app = self._find_app(desired)
        if app is None:
            # Apply holds the workload's lock around a create (Change.exclusive), so a
            # second pipeline finds this application here; the creator waits until it is
            # visible before letting go.
            from .provider import PENDING_DIGEST
            pending = {**desired.tags, "workload-ids:manifest-sha256": PENDING_DIGEST}
            app = self._graph("create_application", desired.name, tag_list(pending),
                              f"Managed by workload-ids: {w.label}. Changes are overwritten.")
            self._await_visible(str(app["id"]))
        if Marker.from_tags(tags_of(app.get("tags"))) is None:
            raise ConflictError(f"application {desired.name} appeared without the workload-ids tags",
                                "find out who created it; workload-ids will not adopt it")
        principal = self._service_principal(str(app["appId"]))
        if principal is None:
            try:
                principal = self._graph("create_service_principal", str(app["appId"]), tag_list(desired.tags))
            except Exception as exc:
                if self._kind(exc) != CONFLICT:
                    raise
                principal = self._service_principal(str(app["appId"]))
                if principal is None:
                    raise
        self.converge_grants(w.target, str(principal["id"]), w.marker, desired.objects["roles"],
                             desired.objects["assignments"], f"{w.environment}/{w.name}")
        self._write_app(app, dict(desired.tags), ())

    def _write_app(self, app: Mapping[str, Any], marker_tags: Mapping[str, str], drop: Sequence[str]) -> None:
        """Our marker keys set, other tags kept (a quarantine mark is cleanup's), ``drop`` removed."""
        current = tags_of(app.get("tags"))
        foreign = [t for t in app.get("tags") or [] if "=" not in t]
        tags = {k: v for k, v in current.items() if k not in MARKER_KEYS and k not in drop}
        tags.update(marker_tags)
        # Every marker write of an application passes here: its MAC is bound to the object id.
        tags = self.signed(str(tags.get(render.SUBSCRIPTION_TAG, "")), str(app["displayName"]),
                           str(app["id"]), tags)
        if tags == current:
            return
        self._graph("update_application", str(app["id"]), {"tags": [*foreign, *tag_list(tags)]})

    def write_app_tags(self, identity: ObservedIdentity, marker_tags: Mapping[str, str],
                       drop: Sequence[str] = ()) -> None:
        try:
            app = self._graph("get_application", str(identity.extra["appObjectId"]))
        except Exception as exc:
            if self._kind(exc) == NOT_FOUND:
                return
            raise
        if Marker.from_tags(tags_of(app.get("tags"))) is None:
            raise ConflictError(f"application {identity.name} no longer carries the workload-ids tags",
                                "it is never modified")
        self._write_app(app, marker_tags, drop)

    def set_principal_enabled(self, identity: ObservedIdentity, enabled: bool) -> None:
        principal = identity.extra.get("principalId")
        if principal and identity.extra.get("accountEnabled") is not enabled:
            self._graph("update_service_principal", str(principal), {"accountEnabled": enabled})

    def delete_application(self, identity: ObservedIdentity) -> None:
        """Deleting the application deletes its service principal; Entra keeps the
        application restorable for 30 days."""
        try:
            self._graph("delete_application", str(identity.extra["appObjectId"]))
        except Exception as exc:
            if self._kind(exc) != NOT_FOUND:
                raise

    def restore_application(self, bundle: Mapping[str, Any]) -> tuple[str, list[str]]:
        """Restore the soft-deleted application (its secrets' metadata comes back with
        it), else find it live; then its service principal, enabled. Returns the principal."""
        steps: list[str] = []
        object_id = str(bundle.get("appObjectId") or "")
        try:
            app = self._graph("get_application", object_id)
            steps.append(f"application {bundle['name']} exists: converging it")
        except Exception as exc:
            if self._kind(exc) != NOT_FOUND:
                raise
            app = self._graph("restore_deleted", object_id)
            steps.append(f"restore application {bundle['name']} from deleted items")
        if Marker.from_tags(tags_of(app.get("tags"))) is None:
            raise ConflictError(f"application {bundle['name']} carries no workload-ids tags",
                                "it is never modified")
        from ...model import MARK_TAG
        self._write_app(app, dict(bundle["tags"]), (MARK_TAG,))
        principal = self._service_principal(str(app["appId"]))
        if principal is None:
            # Deleting an application puts its service principal in deleted items too, and
            # restoring the application does not bring it back; restoring it keeps its
            # object id, so nothing that names it is left dangling.
            from .graph import odata_string
            deleted = self._graph("list_deleted_service_principals",
                                  f"appId eq {odata_string(str(app['appId']))}")
            if deleted:
                principal = self._graph("restore_deleted", str(deleted[0]["id"]))
                steps.append("restore its service principal from deleted items")
            else:
                marker_tags = {k: v for k, v in dict(bundle["tags"]).items() if k in MARKER_KEYS}
                principal = self._graph("create_service_principal", str(app["appId"]), tag_list(marker_tags))
                steps.append("create its service principal")
        if principal.get("accountEnabled") is False:
            self._graph("update_service_principal", str(principal["id"]), {"accountEnabled": True})
        return str(principal["id"]), steps

    def preflight_keys(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
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

    # --- credentials (the rotation's backend) ----------------------------------------

    def owned_tags(self, desired: DesiredIdentity) -> dict[str, str] | None:
        app = self._find_app(desired)
        if app is None:
            return None
        tags = tags_of(app.get("tags"))
        marker = Marker.from_tags(tags)
        if marker is not None and self._ownership(desired.workload.target, str(app["displayName"]),
                                                  str(app["id"]), tags, marker).get(UNAUTHENTICATED):
            return {}  # not provably ours: never rotated
        return tags

    def list_keys(self, desired: DesiredIdentity) -> list[KeyInfo]:
        return self.keys_of(desired.workload.target, desired.name)

    def keys_of(self, target: str, name: str) -> list[KeyInfo]:
        app = self._find_app_named(target, name)
        if app is None:
            return []
        self._remember(app)
        keys = [KeyInfo(str(c["keyId"]), "active", clock.parse_time(str(c["startDateTime"])))
                for c in app.get("passwordCredentials") or []]
        return sorted(keys, key=lambda k: (k.created, k.key_id))

    def _remember(self, app: Mapping[str, Any]) -> None:
        self._app_ids[str(app["displayName"])] = str(app["appId"])
        self._app_ids["object:" + str(app["displayName"])] = str(app["id"])

    def _app_object_id(self, desired: DesiredIdentity) -> str:
        known = self._app_ids.get("object:" + desired.name)
        if known:
            return str(known)
        app = self._require_app(desired)
        self._remember(app)
        return str(app["id"])

    def create_key(self, desired: DesiredIdentity) -> IssuedKey:
        policy = desired.workload.rotation_policy
        assert policy is not None  # a key-mode workload's
        now = clock.now()
        end = now + policy.max_age + policy.overlap + policy.grace + EXPIRY_MARGIN
        object_id = self._app_object_id(desired)
        try:
            made = self._graph("add_password", object_id, f"workload-ids {clock.format_time(now)}", end)
        except Exception as exc:
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("graph.add_password", exc) from exc
        self._key_apps[str(made["keyId"])] = self._app_ids.get(desired.name, "")
        return IssuedKey(str(made["keyId"]), SecretValue(str(made["secretText"])), now)

    def secret_document(self, key: IssuedKey) -> dict[str, str]:
        """What the workload reads from Key Vault: everything a client-credentials sign-in needs."""
        app_id = self._key_apps.get(key.key_id, "")
        return {"tenantId": self.config.azure.tenantId or "", "clientId": app_id,
                "clientSecret": key.secret.reveal(), "keyId": key.key_id}

    def deactivate_key(self, desired: DesiredIdentity, key_id: str) -> None:
        """A client secret cannot be disabled: removing it is what stops it working."""
        self.delete_key(desired, key_id)

    def delete_key(self, desired: DesiredIdentity, key_id: str) -> None:
        """Remove a secret the application holds (rotation only removes keys it listed
        there); Graph answers 400 "No password credential found" for one already gone."""
        try:
            self._graph("remove_password", self._app_object_id(desired), key_id)
        except Exception as exc:
            if self._kind(exc) == NOT_FOUND or "No password credential found" in str(exc):
                return
            if self.seam.classify("azure", exc) is None:
                raise
            raise self._cloud("graph.remove_password", exc) from exc

    def key_last_used(self, desired: DesiredIdentity, key_id: str) -> datetime | None:
        """Sign-ins are in Entra's logs, not on the application: retirement waits for
        the overlap period instead of early use."""
        return None

    def verify_key(self, desired: DesiredIdentity, key: IssuedKey) -> bool:
        """Does the secret get a token from Entra (client credentials)?"""
        app_id = self._app_ids.get(desired.name)
        if not app_id:
            app = self._find_app(desired)
            if app is None:
                return False
            self._remember(app)
            app_id = str(app["appId"])
        try:
            works: bool = self._graph("client_secret_works", self.config.azure.tenantId or "", app_id,
                                      key.secret.reveal())
            return works
        except Exception as exc:
            info = self.seam.classify("azure", exc)
            if info is not None and info.kind in ("not-found", "denied", "throttle", "transient"):
                return False
            raise
