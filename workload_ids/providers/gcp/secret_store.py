"""GCP Secret Manager as the store for issued service-account keys.

Secret Manager numbers versions itself and carries no per-version metadata, so the map
from our key ids to versions lives in the secret's annotations (``wid-key-KEYID`` =
``VERSION ISSUED``), beside our tags (ownership, rotation journal, retirement marks),
whose ``workload-ids:`` prefix becomes ``workload-ids_`` (annotation keys allow no ``:``).
Annotation edits are read-modify-write with the secret's etag. A secret name such as
``workload-ids/prod/svc`` becomes the secret id ``workload-ids_prod_svc``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from ...calls import CONFLICT, NOT_FOUND
from ...clock import format_time, parse_time
from ...errors import CloudError
from ...model import IssuedKey, SecretValue, StoredSecret
from ..interface import SecretStore
from ..secret_rules import foreign_marker, refuse_secret
from .clients import ALREADY_EXISTS, GcpClients
from .render import secret_id

KEY_PREFIX = "wid-key-"
EDIT_ATTEMPTS = 10


def annotation_key(tag: str) -> str:
    """The annotation key of one of our tag names (annotation keys allow no ``:``)."""
    return tag.replace(":", "_")


def _tag_key(annotation: str) -> str:
    return annotation.replace("workload-ids_", "workload-ids:", 1) if annotation.startswith(
        "workload-ids_") else annotation


class SecretManagerStore(SecretStore):
    """One project's Secret Manager as the key store (see the module docstring)."""

    def __init__(self, clients: GcpClients, target: str) -> None:
        self.clients = clients
        self.seam = clients.seam
        self.project = target
        self.client = clients.secrets

    def _path(self, name: str) -> str:
        return f"projects/{self.project}/secrets/{secret_id(name)}"

    def _stored(self, name: str, annotations: Mapping[str, str]) -> StoredSecret:
        numbered: list[tuple[int, str, datetime | None]] = []
        tags: dict[str, str] = {}
        for key, value in annotations.items():
            if key.startswith(KEY_PREFIX):
                version, _, issued = value.partition(" ")
                try:
                    numbered.append((int(version), key[len(KEY_PREFIX):],
                                     parse_time(issued) if issued else None))
                except ValueError:
                    continue
            else:
                tags[_tag_key(key)] = value
        numbered.sort()
        versions: dict[str, tuple[str, ...]] = {}
        issued_at: dict[str, datetime] = {}
        for index, (_, key_id, when) in enumerate(numbered):
            stage = "current" if index == len(numbered) - 1 else \
                "previous" if index == len(numbered) - 2 else "older"
            versions[key_id] = (stage,)
            if when is not None:
                issued_at[key_id] = when
        return StoredSecret(name=name, exists=True, tags=tags, versions=versions, issued_at=issued_at)

    def describe(self, name: str) -> StoredSecret:
        """SecretStore.describe: one ``GetSecret``; the key index lives in the secret's annotations."""
        try:
            secret = self.client.get_secret(name=self._path(name))
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return StoredSecret(name=name, exists=False)
        return self._stored(name, dict(secret.annotations))

    def describe_many(self, prefix: str) -> dict[str, StoredSecret]:
        """Every secret whose id starts with ``prefix``'s id, page by page."""
        found: dict[str, StoredSecret] = {}
        wanted = secret_id(prefix)
        token = ""  # a page token, not a secret  # nosec B105
        while True:
            page = self.client.list_secrets(request={
                "parent": f"projects/{self.project}", "page_size": 250, "page_token": token})
            for secret in page.secrets:
                sid = secret.name.rsplit("/", 1)[1]
                if sid.startswith(wanted):
                    name = secret.annotations.get("workload-ids_secret-name", sid)
                    found[name] = self._stored(name, dict(secret.annotations))
            token = page.next_page_token
            if not token:
                return found

    def ensure(self, name: str, tags: Mapping[str, str]) -> None:
        """SecretStore.ensure: creates the secret with our annotations; one made meanwhile is adopted."""
        annotations = {annotation_key(k): v for k, v in tags.items()}
        annotations["workload-ids_secret-name"] = name
        try:
            self.client.create_secret(request={
                "parent": f"projects/{self.project}", "secret_id": secret_id(name),
                "secret": {"replication": {"automatic": {}}, "annotations": annotations}})
        except CloudError as exc:
            if exc.code != ALREADY_EXISTS:
                raise
            self.adopt(name, tags)  # made since we looked: ours only if it proves it
            self._edit(name, set_=annotations)

    def adopt(self, name: str, tags: Mapping[str, str], known: StoredSecret | None = None) -> None:
        """We add no IAM bindings to a key secret, so any binding is someone else's way in;
        the project's own grants stay with the project's IAM."""
        secret = self.client.get_secret(name=self._path(name))
        found = {_tag_key(k): v for k, v in secret.annotations.items()}
        why = foreign_marker(name, found, tags)
        replication = type(secret.replication).pb(secret.replication)
        if why is None and (replication.automatic.HasField("customer_managed_encryption") or any(
                r.HasField("customer_managed_encryption") for r in replication.user_managed.replicas)):
            why = (f"secret {name} is encrypted with a customer-managed key: whoever controls "
                   "that key could decrypt it")
        if why is not None:
            raise refuse_secret(name, why)
        policy = self.client.get_iam_policy(request={"resource": self._path(name)})
        members = sorted({m for b in policy.bindings for m in b.members})
        if members:
            raise refuse_secret(name, f"secret {name} has IAM bindings for {', '.join(members)} "
                                      "(workload-ids adds none)")

    def put_key(self, name: str, key: IssuedKey, document: Mapping[str, str]) -> None:
        """SecretStore.put_key: adds a version, then records its number and issue time in an annotation."""
        version = self.client.add_secret_version(request={
            "parent": self._path(name),
            "payload": {"data": json.dumps(dict(document)).encode("utf-8")}})
        number = version.name.rsplit("/", 1)[1]
        self._edit(name, set_={KEY_PREFIX + key.key_id: f"{number} {format_time(key.issued)}"})

    def read_key(self, name: str, key_id: str) -> SecretValue:
        """The stored document of ``key_id`` (a service account key file), as text."""
        secret = self.client.get_secret(name=self._path(name))
        number = str(secret.annotations.get(KEY_PREFIX + key_id, "")).partition(" ")[0]
        answer = self.client.access_secret_version(name=f"{self._path(name)}/versions/{number}")
        return SecretValue(answer.payload.data.decode("utf-8"))

    def set_tags(self, name: str, tags: Mapping[str, str]) -> None:
        """SecretStore.set_tags, as annotations (tag names mapped to annotation keys)."""
        self._edit(name, set_={annotation_key(k): v for k, v in tags.items()})

    def remove_tags(self, name: str, keys: list[str]) -> None:
        """SecretStore.remove_tags, as annotations (tag names mapped to annotation keys)."""
        self._edit(name, remove=[annotation_key(k) for k in keys])

    def _edit(self, name: str, *, set_: Mapping[str, str] | None = None,
              remove: list[str] | None = None) -> None:
        """Change annotations by read-modify-write with the etag; a conflict redoes it."""
        for attempt in range(EDIT_ATTEMPTS):
            try:
                secret = self.client.get_secret(name=self._path(name))
                annotations = dict(secret.annotations)
                before = dict(annotations)
                annotations.update(set_ or {})
                for key in remove or []:
                    annotations.pop(key, None)
                if annotations == before:
                    return
                self.client.update_secret(request={
                    "secret": {"name": self._path(name), "annotations": annotations, "etag": secret.etag},
                    "update_mask": {"paths": ["annotations"]}})
                return
            except CloudError as exc:
                if exc.kind != CONFLICT or attempt == EDIT_ATTEMPTS - 1:
                    raise
                self.seam.conflict_pause(attempt)
