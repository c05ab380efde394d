"""Key mode on Azure: client secrets of a key-mode application (Graph ``addPassword`` /
``removePassword``), delivered to Key Vault only. The application and its service
principal are :mod:`.applications`'.

Rotation is the shared design (journal, verify, overlap, retire, grace), with one Azure
fact: a client secret cannot be disabled, only removed. So the step that deactivates a key
elsewhere removes it here, at the end of the overlap; the grace period then has nothing
left to hold. Each secret also gets an end date (rotation's max age, overlap and grace,
plus 30 days), so a secret whose rotation stops running expires on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ... import clock
from ...calls import DENIED, NOT_FOUND, THROTTLE, TRANSIENT
from ...config import Config
from ...errors import CloudError
from ...model import UNAUTHENTICATED, DesiredIdentity, IssuedKey, KeyInfo, Marker, SecretValue
from ..interface import KeyBackend
from .applications import AzureApplications, tags_of
from .clients import AzureClients

EXPIRY_MARGIN = timedelta(days=30)


class AzureKeys(KeyBackend):
    """Client secrets of Entra applications."""

    key_limit = 2  # ours, not Entra's: a current secret and, during the overlap, the previous one

    def __init__(self, clients: AzureClients, config: Config, applications: AzureApplications) -> None:
        self.clients = clients
        self.config = config
        self.applications = applications
        # Shared by apply's and rotate's threads. Made here, not on first use: two threads
        # that each found none made one each, and the later one replaced the other's with
        # its entry lost, so a Key Vault secret went out with an empty clientId. Single
        # puts and gets need no lock (each is atomic); nothing walks them.
        self._app_ids: dict[str, str] = {}  # display name -> appId, "object:" + display name -> object id
        self._key_apps: dict[str, str] = {}  # key id -> the appId of the application it was added to

    def owned_tags(self, desired: DesiredIdentity) -> dict[str, str] | None:
        """The application's Graph tags; ``{}`` when its marker is not authenticated."""
        app = self.applications.find_app(desired)
        if app is None:
            return None
        tags = tags_of(app.get("tags"))
        marker = Marker.from_tags(tags)
        if marker is not None and self.clients.ownership(desired.workload.target, str(app["displayName"]),
                                                         str(app["id"]), tags, marker).get(UNAUTHENTICATED):
            return {}  # not provably ours: never rotated
        return tags

    def list_keys(self, desired: DesiredIdentity) -> list[KeyInfo]:
        """The application's client secrets (all active: Entra cannot disable one)."""
        return self.keys_of(desired.workload.target, desired.name)

    def keys_of(self, target: str, name: str) -> list[KeyInfo]:
        """The client secrets of the application named ``name`` (one call)."""
        app = self.applications.find_app_named(target, name)
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
        app = self.applications.require_app(desired)
        self._remember(app)
        return str(app["id"])

    def create_key(self, desired: DesiredIdentity) -> IssuedKey:
        """A client secret that ends after max age, overlap and grace, plus 30 days."""
        policy = desired.workload.rotation_policy
        assert policy is not None  # a key-mode workload's
        now = clock.now()
        end = now + policy.max_age + policy.overlap + policy.grace + EXPIRY_MARGIN
        object_id = self._app_object_id(desired)
        made = self.applications.graph("add_password", object_id, f"workload-ids {clock.format_time(now)}",
                                       end)
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
            self.applications.graph("remove_password", self._app_object_id(desired), key_id)
        except CloudError as exc:
            # Graph's own words are in its error, the cause (the CloudError keeps the first line).
            if exc.kind == NOT_FOUND or "No password credential found" in str(exc.__cause__ or exc):
                return
            raise

    def key_last_used(self, desired: DesiredIdentity, key_id: str) -> datetime | None:
        """Sign-ins are in Entra's logs, not on the application: retirement waits for
        the overlap period instead of early use."""
        return None

    def verify_key(self, desired: DesiredIdentity, key: IssuedKey) -> bool:
        """Does the secret get a token from Entra (client credentials)?"""
        app_id = self._app_ids.get(desired.name)
        if not app_id:
            app = self.applications.find_app(desired)
            if app is None:
                return False
            self._remember(app)
            app_id = str(app["appId"])
        try:
            works: bool = self.applications.graph("client_secret_works", self.config.azure.tenantId or "",
                                                  app_id, key.secret.reveal())
            return works
        except CloudError as exc:
            if exc.kind in (NOT_FOUND, DENIED, THROTTLE, TRANSIENT):
                return False
            raise
