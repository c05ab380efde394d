"""Azure Key Vault as the store for issued client secrets.

Key Vault has no metadata above the version: tags, content type and attributes belong to
each version, ``GET /secrets/{name}`` returns the latest version *with its value*, and
listing the versions of a secret is paged (25 at most a page) in no promised order.
So each workload gets two Key Vault secrets:

``workload-ids--prod--payments-api`` (the *key secret*)
    One version per issued key; its value is the JSON document (the client secret and
    what a service needs beside it), and it is tagged with the key id (``wid-key-id``),
    when we issued it (``wid-issued``), our secret name (``wid-name``), the field of the
    document that holds the secret (``wid-secret-field``), and a copy of the ownership
    tags. The latest version is the current key, which is what services read.
``workload-ids--prod--payments-api--metadata`` (the *metadata secret*)
    One version, never a secret: its tags hold the store's tags (ownership marker,
    ``workload-ids:journal``, ``workload-ids:retired``), our secret name, and the *key
    index* ``wid-keys-N``: ``KEYID@ISSUED@VERSION`` entries, newest first, that say which
    keys we issued, in which order, and where each is. Edits PATCH that version's tags.

Why not keep everything on the key secret's latest version and copy it forward on each
new key? Reading it would cost either a ``GET`` that returns the live client secret
(every plan would read the credential, and Key Vault's logs would show it) or a walk of
every version, which grows by one page each 25 rotations. With the metadata secret,
``describe`` is one ``GET`` that returns no secret, and ``describe_many`` reads every
workload's index from the paged list of secrets (which carries each secret's latest tags).

**Crash safety.** ``put_key`` writes ahead: (1) read the metadata, (2) mark
``wid-pending = KEYID@ISSUED`` on it, (3) set the new version of the key secret, tagged
with its key id, (4) add the entry to the index and clear the mark. A crash after (2)
leaves a mark; whoever reads a marked secret lists the key secret's versions to learn
whether the version of (3) exists (``describe`` reports it as issued and current if so,
read-only), and the next edit writes the answer into the index. So no call of
``put_key`` can be the last one before a crash and leave an issued key unknown. If the
metadata secret is missing (deleted by hand) while the key secret holds our versions,
``describe`` lists those versions, and the next edit rebuilds the index from them.

**Calls.** ``describe``: 1 (``get_secret`` of the metadata), 2 when the secret does not
exist (the key secret's versions are listed once, to find keys whose metadata was lost),
and one page per 25 versions more while a write-ahead mark is pending. ``describe_many``:
one page per 25 secrets in the vault. ``ensure`` / ``set_tags`` / ``remove_tags``: 2 (read,
PATCH; 1 if nothing changes; creation: read, list versions, set). ``put_key``: 4.
``read_key``: 2. Key Vault has no ETag on secrets, so edits assume one writer per
workload at a time (rotation runs one thread per workload).

**Limits.** A version holds at most 15 tags (hashicorp/terraform-provider-azurerm#16780)
and we keep each value within 256 characters (the older, stricter documented limit); a
longer value is split over ``KEY``, ``KEY--2``, ... The index gets the tags the store's
tags leave free (7 to 9 beside the 5-tag ownership marker, two entries a tag); older
entries beyond that are dropped from the index, though their versions keep their own
tags in the vault. Rotation deletes keys after their grace period, long before that; a
dropped key still on the identity would be reported as foreign, and nothing changed.
Tag keys ``workload-ids:X`` are stored as ``workload-ids_X`` (as in the GCP store: no
authoritative source says Key Vault accepts ``:`` in tag names, and the mapping costs
nothing).

**Names.** Key Vault names are ``[0-9A-Za-z-]{1,127}`` and case-insensitive: ``/``
becomes ``--`` and any other character ``-`` (``workload-ids/prod/payments-api`` ->
``workload-ids--prod--payments-api``); a name longer than 117 characters is cut and ends
in ``-`` and 10 hex digits of its SHA-256. Two names may map to one Key Vault name; each
secret carries its own name in ``wid-name``, so the second is refused (ConflictError).

A deleted (soft-deleted) secret cannot be set again until it is recovered or purged
(Key Vault answers 409 ``Conflict``); the store says so rather than choosing for the user.
Secret values never enter an exception, a log line or a tag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from ...calls import NOT_FOUND
from ...clock import format_time, parse_time
from ...errors import CloudError, ConflictError, UserError
from ...model import JOURNAL_TAG, RETIRED_TAG, IssuedKey, SecretValue, StoredSecret
from ..interface import SecretStore
from .clients import AzureClients
from .render import metadata_name, vault_name

META_TYPE = "application/vnd.workload-ids.metadata+json"
KEY_TYPE = "application/json"
NAME_TAG = "wid-name"
KEYS_TAG = "wid-keys"
PENDING_TAG = "wid-pending"
KEY_ID_TAG = "wid-key-id"
ISSUED_TAG = "wid-issued"
FIELD_TAG = "wid-secret-field"
MAX_TAGS = 15
MAX_TAG_VALUE = 256
PAGE = 25  # Key Vault's largest page

_RESERVED = "wid-"
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_CONTINUED = re.compile(r"(?P<base>.+)--(?P<n>[2-9]|[1-9][0-9]+)")
_INDEX = re.compile(re.escape(KEYS_TAG) + r"-(?P<n>[1-9][0-9]*)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- tags -------------------------------------------------------------------------------

def _tag_key(tag: str) -> str:
    if tag.startswith(_RESERVED):
        raise ValueError(f"tag keys starting with {_RESERVED!r} are reserved by the Key Vault store: {tag!r}")
    return tag.replace(":", "_")


def _store_key(key: str) -> str:
    return key.replace("workload-ids_", "workload-ids:", 1) if key.startswith("workload-ids_") else key


def _split(key: str, value: str) -> dict[str, str]:
    """One logical tag as Key Vault tags of at most 256 characters each."""
    if len(value) <= MAX_TAG_VALUE:
        return {key: value}
    parts = [value[i:i + MAX_TAG_VALUE] for i in range(0, len(value), MAX_TAG_VALUE)]
    return {key if n == 1 else f"{key}--{n}": part for n, part in enumerate(parts, 1)}


def _join(tags: Mapping[str, str]) -> dict[str, str]:
    """The inverse of :func:`_split` over a whole tag set."""
    logical: dict[str, str] = {}
    parts: dict[str, dict[int, str]] = {}
    for key, value in tags.items():
        m = _CONTINUED.fullmatch(key)
        if m and m["base"] in tags:
            parts.setdefault(m["base"], {})[int(m["n"])] = value
        else:
            logical[key] = value
    for base, pieces in parts.items():
        logical[base] += "".join(pieces[n] for n in sorted(pieces))
    return logical


@dataclass(frozen=True, slots=True)
class _Entry:
    """One issued key in the index: its id, when we issued it, its version."""

    key_id: str
    issued: datetime | None
    version: str

    def encode(self) -> str:
        return f"{self.key_id}@{format_time(self.issued) if self.issued else '-'}@{self.version}"

    @staticmethod
    def decode(text: str) -> _Entry | None:
        parts = text.split("@")
        if len(parts) != 3 or not parts[0] or not parts[2]:
            return None
        try:
            issued = None if parts[1] == "-" else parse_time(parts[1])
        except ValueError:
            return None
        return _Entry(parts[0], issued, parts[2])


@dataclass(frozen=True)
class _Meta:
    """What the metadata secret says (logical, decoded)."""

    version: str  # of the metadata secret, for PATCH; "" when not known
    tags: dict[str, str]  # store tags, in our spelling (``workload-ids:journal``)
    keys: tuple[_Entry, ...]  # oldest first
    pending: tuple[str, datetime | None] | None = None
    name: str = field(default="", compare=False)


def _pending_text(pending: tuple[str, datetime | None]) -> str:
    return f"{pending[0]}@{format_time(pending[1]) if pending[1] else '-'}"


def _pack(name: str, meta: _Meta) -> dict[str, str]:
    """The metadata secret's Key Vault tags: store tags first, the index in what is left."""
    physical: dict[str, str] = {}
    for key, value in meta.tags.items():
        physical.update(_split(_tag_key(key), value))
    physical.update(_split(NAME_TAG, name))
    if meta.pending is not None:
        physical.update(_split(PENDING_TAG, _pending_text(meta.pending)))
    room = MAX_TAGS - len(physical)
    if room < (1 if meta.keys else 0):
        raise UserError(f"the tags of secret {name} need {len(physical)} of the 15 tags Key Vault allows "
                        "on a secret, leaving none for the key index; use fewer or shorter tags")
    chunks: list[list[str]] = []
    for entry in reversed(meta.keys):  # newest first; what does not fit is dropped, oldest first
        text = entry.encode()
        if chunks and len(" ".join([*chunks[-1], text])) <= MAX_TAG_VALUE:
            chunks[-1].append(text)
        elif len(chunks) < room:
            chunks.append([text])
        else:
            break
    for n, chunk in enumerate(chunks, 1):
        physical[f"{KEYS_TAG}-{n}"] = " ".join(chunk)
    return physical


def _unpack(version: str, physical: Mapping[str, str]) -> _Meta:
    """The inverse of :func:`_pack`; entries that do not parse (hand edits) are skipped."""
    index: list[tuple[int, str]] = []
    rest: dict[str, str] = {}
    for key, value in physical.items():
        m = _INDEX.fullmatch(key)
        if m:
            index.append((int(m["n"]), value))
        else:
            rest[key] = value
    newest_first = [e for _, text in sorted(index) for e in map(_Entry.decode, text.split()) if e]
    logical = _join(rest)
    pending = None
    if PENDING_TAG in logical:
        key_id, _, when = logical[PENDING_TAG].partition("@")
        try:
            pending = (key_id, None if when in ("", "-") else parse_time(when))
        except ValueError:
            pending = (key_id, None)
    tags = {_store_key(k): v for k, v in logical.items() if not k.startswith(_RESERVED)}
    return _Meta(version, tags, tuple(reversed(newest_first)), pending, logical.get(NAME_TAG, ""))


def _with(keys: tuple[_Entry, ...], entry: _Entry) -> tuple[_Entry, ...]:
    """``keys`` with ``entry`` as the newest (a key stored again moves to the end)."""
    return (*[k for k in keys if k.key_id != entry.key_id], entry)


def _stored(name: str, tags: Mapping[str, str], keys: tuple[_Entry, ...]) -> StoredSecret:
    versions: dict[str, tuple[str, ...]] = {}
    issued: dict[str, datetime] = {}
    for n, entry in enumerate(keys):
        stage = "current" if n == len(keys) - 1 else "previous" if n == len(keys) - 2 else "older"
        versions[entry.key_id] = (stage,)
        if entry.issued is not None:
            issued[entry.key_id] = entry.issued
    return StoredSecret(name=name, exists=True, tags=dict(tags), versions=versions, issued_at=issued)


class KeyVaultStore(SecretStore):
    """See the module docstring."""

    def __init__(self, clients: AzureClients, target: str) -> None:
        self.seam = clients.seam
        self.target = target  # the subscription; the vault comes from azure.keyVaultUrl
        self.clients = clients
        self.client = self.clients.secrets

    @staticmethod
    def _fail(exc: CloudError) -> CloudError:
        """``exc`` as it left the seam, with what to do about a soft-deleted secret (read
        from Key Vault's error, the cause)."""
        cause = exc.__cause__
        if "deleted but recoverable" in str(getattr(cause, "message", "")) or \
                getattr(getattr(cause, "error", None), "code", None) == "Conflict":
            return CloudError(exc.operation, exc.code, exc.message,
                              "the Key Vault secret was deleted and can still be recovered: recover it "
                              "(az keyvault secret recover) to keep its key history, or purge it; then rerun",
                              kind=exc.kind)
        return exc

    # --- reads ----------------------------------------------------------------------

    def _read_meta(self, name: str) -> _Meta | None:
        """The metadata secret, or None if there is none (one call)."""
        try:
            secret = self.clients.call("keyvault.get_secret", self.client.get_secret, metadata_name(name))
        except CloudError as exc:
            if exc.kind == NOT_FOUND:
                return None
            raise self._fail(exc) from exc.__cause__
        props = secret.properties
        meta = _unpack(props.version or "", props.tags or {})
        if props.content_type != META_TYPE or meta.name != name:
            # Another name's index, or not an index at all (whatever its tags claim).
            raise self._collision(name, metadata_name(name),
                                  meta.name if props.content_type == META_TYPE else "")
        return meta

    @staticmethod
    def _collision(name: str, kv_name: str, other: str) -> ConflictError:
        held = f"holds the keys of {other!r}" if other else "was not made by workload-ids"
        return ConflictError(
            f"Key Vault secret {kv_name} (where secret {name!r} would live) {held}",
            "Key Vault names allow only letters, digits and '-', and ignore case: make "
            "credentials.secretName in workload-ids.yaml give names that differ in more than "
            "that, or remove the Key Vault secret if nothing uses it")

    def _scan(self, name: str) -> tuple[list[_Entry], int]:
        """Every version of the key secret that holds one of our keys, oldest first, and the
        number of versions that are not ours (paged: one call per 25 versions)."""
        found: list[tuple[datetime, datetime, str, _Entry]] = []
        foreign = 0
        operation = "keyvault.list_properties_of_secret_versions"
        try:
            for props in self.clients.pages(operation, self.client.list_properties_of_secret_versions(
                    vault_name(name), max_page_size=PAGE)):
                tags = _join(props.tags or {})
                key_id = tags.get(KEY_ID_TAG)
                if not key_id or not props.version:
                    foreign += 1
                    continue
                if tags.get(NAME_TAG) != name:
                    raise self._collision(name, vault_name(name), tags.get(NAME_TAG, ""))
                try:
                    issued: datetime | None = parse_time(tags.get(ISSUED_TAG, ""))
                except ValueError:
                    issued = None
                entry = _Entry(key_id, issued, props.version)
                found.append((props.created_on or _EPOCH, issued or _EPOCH, props.version, entry))
        except CloudError as exc:
            if exc.kind == NOT_FOUND:
                return [], 0
            raise self._fail(exc) from exc.__cause__
        return [item[3] for item in sorted(found, key=lambda item: item[:3])], foreign

    def _resolved(self, name: str, meta: _Meta) -> tuple[_Entry, ...]:
        """The index, with the pending key added if its version was stored before a crash."""
        if meta.pending is None:
            return meta.keys
        stored = [e for e in self._scan(name)[0] if e.key_id == meta.pending[0]]
        return _with(meta.keys, stored[-1]) if stored else meta.keys

    def describe(self, name: str) -> StoredSecret:
        """SecretStore.describe: reads the metadata secret only, never a value; scans when it is missing."""
        meta = self._read_meta(name)
        if meta is None:
            entries, _ = self._scan(name)
            return _stored(name, {}, tuple(entries)) if entries else StoredSecret(name=name, exists=False)
        return _stored(name, meta.tags, self._resolved(name, meta))

    def describe_many(self, prefix: str) -> dict[str, StoredSecret]:
        """Every secret whose name starts with ``prefix``, from the paged list of secrets."""
        metas: dict[str, _Meta] = {}
        keyed: set[str] = set()
        operation = "keyvault.list_properties_of_secrets"
        try:
            for props in self.clients.pages(operation, self.client.list_properties_of_secrets(
                    max_page_size=PAGE)):
                tags = _join(props.tags or {})
                original = tags.get(NAME_TAG, "")
                if not original.startswith(prefix) or not props.name:
                    continue
                if props.content_type == META_TYPE and props.name.lower() == metadata_name(original).lower():
                    metas[original] = _unpack("", props.tags or {})
                elif KEY_ID_TAG in tags and props.name.lower() == vault_name(original).lower():
                    keyed.add(original)
        except CloudError as exc:
            raise self._fail(exc) from exc.__cause__
        found = {name: _stored(name, meta.tags, self._resolved(name, meta)) for name, meta in metas.items()}
        for name in sorted(keyed - set(metas)):  # metadata lost: the versions say what we issued
            entries, _ = self._scan(name)
            if entries:
                found[name] = _stored(name, {}, tuple(entries))
        return found

    def read_key(self, name: str, key_id: str) -> SecretValue:
        """The stored secret of ``key_id``: the document's field that held the key's secret
        when it was stored, or the whole document if none did."""
        meta = self._read_meta(name)
        keys = self._resolved(name, meta) if meta is not None else ()
        entry = next((e for e in reversed(keys) if e.key_id == key_id), None)
        if entry is None:  # dropped from the index, or the metadata is gone: ask the versions
            entry = next((e for e in reversed(self._scan(name)[0]) if e.key_id == key_id), None)
        if entry is None:
            raise CloudError("keyvault.get_secret", "KeyNotStored",
                             f"secret {name} holds no version for key {key_id}",
                             "the key was never stored; rotate to issue a new one")
        try:
            secret = self.clients.call("keyvault.get_secret", self.client.get_secret, vault_name(name),
                                       entry.version)
        except CloudError as exc:
            raise self._fail(exc) from exc.__cause__
        value = secret.value or ""
        wanted = _join(secret.properties.tags or {}).get(FIELD_TAG)
        if wanted:
            try:
                document = json.loads(value)
            except ValueError:  # the message would not hold the value; we still do not keep it
                document = None
            if isinstance(document, dict) and isinstance(document.get(wanted), str):
                return SecretValue(document[wanted])
        return SecretValue(value)

    # --- writes ---------------------------------------------------------------------

    def _edit(self, name: str, change: Callable[[_Meta], _Meta]) -> _Meta:
        """Read the metadata, settle a pending key, apply ``change``, write if it differs.
        A missing metadata secret is created, its index rebuilt from the key secret."""
        meta = self._read_meta(name)
        if meta is None:
            entries, foreign = self._scan(name)
            if foreign and not entries:
                raise self._collision(name, vault_name(name), "")
            empty = _Meta("", {}, tuple(entries))
            new = change(empty)
            if new == empty and not entries:
                return new  # nothing to remember: do not create a secret to hold nothing
            return self._create(name, new)
        new = change(replace(meta, keys=self._resolved(name, meta), pending=None))
        if new == meta:
            return meta
        self._patch(name, new)
        return new

    def _create(self, name: str, meta: _Meta) -> _Meta:
        about = {"about": f"workload-ids metadata of secret {name}: which key each version of Key Vault "
                          f"secret {vault_name(name)} holds. Not a secret."}
        try:
            secret = self.clients.call("keyvault.set_secret", self.client.set_secret, metadata_name(name),
                                       json.dumps(about), content_type=META_TYPE, tags=_pack(name, meta))
        except CloudError as exc:
            raise self._fail(exc) from exc.__cause__
        return replace(meta, version=secret.properties.version or "")

    def _patch(self, name: str, meta: _Meta) -> None:
        try:
            self.clients.call("keyvault.update_secret_properties", self.client.update_secret_properties,
                              metadata_name(name), meta.version, tags=_pack(name, meta))
        except CloudError as exc:
            raise self._fail(exc) from exc.__cause__

    def ensure(self, name: str, tags: Mapping[str, str]) -> None:
        """SecretStore.ensure: checked tags go on the metadata secret, made if missing."""
        for key in tags:
            _tag_key(key)
        self._edit(name, lambda m: replace(m, tags={**m.tags, **tags}))

    def adopt(self, name: str, tags: Mapping[str, str], known: StoredSecret | None = None) -> None:
        """Every read already refuses a secret whose name or content type is not ours
        (:meth:`_collision`), and access is the vault's (RBAC or access policies), not
        the secret's; so this reads the metadata once to let that refusal happen."""
        self._read_meta(name)

    def set_tags(self, name: str, tags: Mapping[str, str]) -> None:
        """SecretStore.set_tags, on the metadata secret, after checking the tag names fit Key Vault."""
        for key in tags:
            _tag_key(key)
        self._edit(name, lambda m: replace(m, tags={**m.tags, **tags}))

    def remove_tags(self, name: str, keys: list[str]) -> None:
        """SecretStore.remove_tags, from the metadata secret's tags."""
        self._edit(name, lambda m: replace(m, tags={k: v for k, v in m.tags.items() if k not in keys}))

    def put_key(self, name: str, key: IssuedKey, document: Mapping[str, str]) -> None:
        """Write-ahead mark, new version, index entry: see the module docstring."""
        if not _KEY_ID.fullmatch(key.key_id):
            raise ValueError(f"key id {key.key_id!r} has characters the Key Vault store cannot index")
        meta = self._edit(name, lambda m: replace(m, pending=(key.key_id, key.issued)))
        secret = key.secret.reveal()
        fields = [f for f, v in document.items() if v == secret]
        tags = {**_split(NAME_TAG, name), KEY_ID_TAG: key.key_id, ISSUED_TAG: format_time(key.issued),
                **({FIELD_TAG: fields[0]} if len(fields) == 1 and len(fields[0]) <= MAX_TAG_VALUE else {})}
        for tag, value in meta.tags.items():  # ownership on the secret services read, as room allows
            extra = _split(_tag_key(tag), value)
            if tag not in (JOURNAL_TAG, RETIRED_TAG) and len(tags) + len(extra) <= MAX_TAGS:
                tags.update(extra)
        try:
            stored = self.clients.call("keyvault.set_secret", self.client.set_secret, vault_name(name),
                                       json.dumps(dict(document)), content_type=KEY_TYPE, tags=tags)
        except CloudError as exc:
            raise self._fail(exc) from exc.__cause__
        entry = _Entry(key.key_id, parse_time(format_time(key.issued)), stored.properties.version or "")
        self._patch(name, replace(meta, keys=_with(meta.keys, entry), pending=None))
