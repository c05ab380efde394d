"""Access keys of IAM users (key mode): issue, list, deactivate, delete, verify."""

from __future__ import annotations

from datetime import datetime

from ... import clock
from ...calls import DENIED, NOT_FOUND, THROTTLE, TRANSIENT, SeamClient
from ...config import Config
from ...errors import CloudError
from ...model import DesiredIdentity, IssuedKey, KeyInfo, Marker, SecretValue
from ..interface import KeyBackend
from . import render
from .clients import KIND_OPS, AwsClients, call, check_account, if_present, pages, tags_of


def access_keys(iam: SeamClient, name: str) -> list[KeyInfo]:
    """Keys of IAM user ``name``, oldest first (empty if the user is gone)."""
    try:
        keys = [k for page in pages(iam, "list_access_keys", "AccessKeyMetadata", UserName=name)
                for k in page]
    except CloudError as exc:
        if exc.kind != NOT_FOUND:
            raise
        return []
    return sorted((KeyInfo(k["AccessKeyId"], k["Status"].lower(), k["CreateDate"]) for k in keys),
                  key=lambda k: (k.created, k.key_id))


class AwsKeys(KeyBackend):
    """Access keys of IAM users; AWS allows two per user."""

    key_limit = 2

    def __init__(self, clients: AwsClients, config: Config) -> None:
        self.clients = clients
        self.config = config

    def owned_tags(self, desired: DesiredIdentity) -> dict[str, str] | None:
        """One read: None if the identity is missing, else its tags (the caller checks our
        marker and any quarantine mark)."""
        ops = KIND_OPS[desired.kind]
        target = desired.workload.target
        iam = self.clients.client(target, "iam")
        try:
            entity = call(iam, ops.get, **{ops.param: desired.name})[ops.result]
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None
        check_account(target, entity["Arn"])
        tags = tags_of(entity.get("Tags"))
        marker = Marker.from_tags(tags)
        if marker is not None and render.not_ours(self.config, desired.kind, desired.name,
                                                  entity.get("Path", ""), marker):
            return {}  # our tags outside our path: not ours, so never rotated
        if marker is not None and self.clients.unauthenticated(
                target, desired.name, str(entity.get(ops.immutable_id) or ""), marker, tags):
            return {}  # no valid MAC: not provably ours, so never rotated
        return tags

    def list_keys(self, desired: DesiredIdentity) -> list[KeyInfo]:
        """The user's access keys, oldest first."""
        return self.keys_of(desired.workload.target, desired.name)

    def keys_of(self, target: str, name: str) -> list[KeyInfo]:
        """Keys of IAM user ``name`` (empty if the user is gone)."""
        return access_keys(self.clients.client(target, "iam"), name)

    def create_key(self, desired: DesiredIdentity) -> IssuedKey:
        """``CreateAccessKey``: the only time AWS shows the secret."""
        iam = self.clients.client(desired.workload.target, "iam")
        key = iam.create_access_key(UserName=desired.name)["AccessKey"]
        return IssuedKey(key["AccessKeyId"], SecretValue(key["SecretAccessKey"]), clock.now())

    def secret_document(self, key: IssuedKey) -> dict[str, str]:
        """The fields the AWS SDKs read: ``AccessKeyId`` and ``SecretAccessKey``."""
        return {"AccessKeyId": key.key_id, "SecretAccessKey": key.secret.reveal()}

    def deactivate_key(self, desired: DesiredIdentity, key_id: str) -> None:
        """Marks the key ``Inactive`` (it can be made active again)."""
        iam = self.clients.client(desired.workload.target, "iam")
        iam.update_access_key(UserName=desired.name, AccessKeyId=key_id, Status="Inactive")

    def delete_key(self, desired: DesiredIdentity, key_id: str) -> None:
        """``DeleteAccessKey``; one already gone is fine."""
        iam = self.clients.client(desired.workload.target, "iam")
        if_present(iam.delete_access_key, UserName=desired.name, AccessKeyId=key_id)

    def key_last_used(self, desired: DesiredIdentity, key_id: str) -> datetime | None:
        """Last use by any service but STS (our own verification's)."""
        iam = self.clients.client(desired.workload.target, "iam")
        used = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
        # Our own verification signs STS calls with the new key; only use of another
        # service shows that the workload itself has switched to it.
        if str(used.get("ServiceName", "")).lower() in ("sts", "n/a", ""):
            return None
        value = used.get("LastUsedDate")
        return value if isinstance(value, datetime) else None

    def verify_key(self, desired: DesiredIdentity, key: IssuedKey) -> bool:
        """One STS GetCallerIdentity signed with ``key``: does AWS accept it as our user?"""
        sts = self.clients.signed_with(desired.workload.target, key)
        try:
            arn = sts.get_caller_identity()["Arn"]
        except CloudError as exc:
            if exc.kind in (DENIED, NOT_FOUND, THROTTLE, TRANSIENT):
                return False
            raise
        return str(arn).endswith(f":user{desired.settings['path']}{desired.name}") or \
            str(arn).endswith(f":user/{desired.name}")
