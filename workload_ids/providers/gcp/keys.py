"""Key mode on GCP: user-managed service account keys (Google credentials files).

A service account holds at most 10 of them. GCP reports a key's use through Policy
Intelligence only, so retirement waits for the overlap period instead of early use.
"""

from __future__ import annotations

import json
from datetime import datetime

from ... import clock
from ...calls import DENIED, NOT_FOUND, THROTTLE, TRANSIENT
from ...errors import CloudError
from ...model import DesiredIdentity, IssuedKey, KeyInfo, Marker, SecretValue
from ..interface import KeyBackend
from . import render
from .clients import GcpClients
from .identity import GcpIdentities


class GcpKeys(KeyBackend):
    """User-managed keys of the service accounts :class:`GcpIdentities` manages."""

    key_limit = 10  # user-managed keys per service account

    def __init__(self, clients: GcpClients, identities: GcpIdentities) -> None:
        self.clients = clients
        # The account read and its marker check are the identity backend's.
        self.identities = identities

    def owned_tags(self, desired: DesiredIdentity) -> dict[str, str] | None:
        """One read: None if the account is missing, else its marker as tags (empty if the
        description is not ours) with any quarantine mark."""
        account = self.identities.account(desired.address)
        if account is None:
            return None
        marker = Marker.from_text(account.description)
        project = desired.workload.target
        if marker is not None and (render.not_ours(self.identities.prefix, account.email, project, marker)
                                   or self.identities.unauthenticated(project, account, marker)):
            return {}  # not provably ours: never rotated
        return self.identities.account_tags(account, marker)

    def list_keys(self, desired: DesiredIdentity) -> list[KeyInfo]:
        """The account's user-managed keys (none when the account is gone)."""
        return self._keys_at(desired.address)

    def keys_of(self, target: str, name: str) -> list[KeyInfo]:
        """The user-managed keys of the account ``name`` (an email) in project ``target``."""
        return self._keys_at(f"projects/{target}/serviceAccounts/{name}")

    def _keys_at(self, address: str) -> list[KeyInfo]:
        try:
            answer = self.clients.iam.list_service_account_keys(request={
                "name": address, "key_types": [1]})  # USER_MANAGED
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return []
        keys = [KeyInfo(k.name.rsplit("/", 1)[1], "inactive" if k.disabled else "active",
                        k.valid_after_time) for k in answer.keys]
        return sorted(keys, key=lambda k: (k.created, k.key_id))

    def create_key(self, desired: DesiredIdentity) -> IssuedKey:
        """A new key whose secret is a Google credentials file (JSON)."""
        key = self.clients.iam.create_service_account_key(request={
            "name": desired.address, "private_key_type": 2})  # a Google credentials file
        return IssuedKey(key.name.rsplit("/", 1)[1], SecretValue(key.private_key_data.decode("utf-8")),
                         clock.now())

    def secret_document(self, key: IssuedKey) -> dict[str, str]:
        """The credentials file's own fields."""
        document: dict[str, str] = json.loads(key.secret.reveal())
        return document

    def deactivate_key(self, desired: DesiredIdentity, key_id: str) -> None:
        """Disables the key (GCP keeps it, and it can be enabled again)."""
        self.clients.iam.disable_service_account_key(request={"name": f"{desired.address}/keys/{key_id}"})

    def delete_key(self, desired: DesiredIdentity, key_id: str) -> None:
        """Deletes the key; one already gone is fine."""
        try:
            self.clients.iam.delete_service_account_key(request={"name": f"{desired.address}/keys/{key_id}"})
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise

    def key_last_used(self, desired: DesiredIdentity, key_id: str) -> datetime | None:
        """GCP reports key use through Policy Intelligence only: retirement waits for the
        overlap period instead of early use."""
        return None

    def verify_key(self, desired: DesiredIdentity, key: IssuedKey) -> bool:
        """Does GCP hold this key, enabled, for our account, and is the delivered file's
        private key the half of the certificate GCP publishes for it?"""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        try:
            document = json.loads(key.secret.reveal())
            private = serialization.load_pem_private_key(document["private_key"].encode(), password=None)
            answer = self.clients.iam.get_service_account_key(request={
                "name": f"{desired.address}/keys/{key.key_id}", "public_key_type": 1})  # X.509 PEM
        except CloudError as exc:
            if exc.kind in (NOT_FOUND, DENIED, THROTTLE, TRANSIENT):
                return False
            raise
        except (ValueError, KeyError, TypeError):
            return False
        if answer.disabled or document.get("client_email") != desired.name:
            return False
        certificate = x509.load_pem_x509_certificate(answer.public_key_data)
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return certificate.public_key().public_bytes(*spki) == private.public_key().public_bytes(*spki)
