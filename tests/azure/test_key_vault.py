"""The Key Vault emulator through the real ``SecretClient`` (challenge authentication,
api-versions, names, limits, versions, soft delete), and the Key Vault secret store on it:
round trips, call counts, a crash at every call of ``put_key``, lost metadata, collisions."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets._shared import http_challenge_cache
from azure.keyvault.secrets._shared.client_base import DEFAULT_VERSION as SDK_DEFAULT

from workload_ids import calls
from workload_ids.calls import CallSeam, FailAt, Killed, RetryPolicy
from workload_ids.config import Config, ConfigFile
from workload_ids.errors import CloudError, ConflictError
from workload_ids.model import JOURNAL_TAG, RETIRED_TAG, IssuedKey, SecretValue
from workload_ids.providers.azure.clients import AzureClients, StaticTokenCredential
from workload_ids.providers.azure.secret_store import KeyVaultStore, metadata_name, vault_name
from workload_ids.sandbox.azure.keyvault import KeyVaultEmulator
from workload_ids.sandbox.common.clock import ManualClock

DEFAULT_VERSION = str(getattr(SDK_DEFAULT, "value", SDK_DEFAULT))  # what the installed SDK sends
TENANT = "0c5be0f2-b83d-4f68-ad52-18a90ea02883"
NAME = "workload-ids/prod/payments-api"
MARKER = {"workload-ids:managed-by": "workload-ids", "workload-ids:workload": "prod/payments-api",
          "workload-ids:owner": "team-payments", "workload-ids:environment": "prod",
          "workload-ids:manifest-sha256": "ab" * 32}


@dataclass
class Vault:
    emulator: KeyVaultEmulator
    clock: ManualClock
    config: Config

    def client(self, **kwargs: Any) -> SecretClient:
        options = {**self.emulator.client_kwargs(), **kwargs}
        return SecretClient(self.emulator.url, StaticTokenCredential(), **options)

    def store(self, seam: CallSeam | None = None) -> KeyVaultStore:
        return KeyVaultStore(AzureClients(self.config, seam or quiet()), "sub")


def quiet(max_attempts: int = 3) -> CallSeam:
    return CallSeam(RetryPolicy(max_attempts=max_attempts), sleep=lambda s: None)


@pytest.fixture
def vault() -> Iterator[Vault]:
    clock = ManualClock(1_790_000_000.0)
    with KeyVaultEmulator(clock=clock, page_size=4, tenant_id=TENANT) as emulator:
        config = Config(ConfigFile.model_validate({"azure": {
            "keyVaultUrl": emulator.url, "caBundle": emulator.ca_bundle_path, "sandboxCredentials": True}}),
            Path.cwd(), None)
        yield Vault(emulator, clock, config)


def issued(n: int) -> IssuedKey:
    return IssuedKey(f"{n:08d}-aaaa-bbbb-cccc-dddddddddddd", SecretValue(f"cs~{n}-not-for-logs-{n * 7919}"),
                     datetime(2026, 11, min(n, 28), 12, n % 60, tzinfo=UTC))


def document(key: IssuedKey) -> dict[str, str]:
    return {"tenantId": TENANT, "clientId": "7a1d2f3e-0000-4000-8000-000000000001",
            "clientSecret": key.secret.reveal(), "keyId": key.key_id}


def key_versions(vault: Vault, name: str) -> dict[str, str]:
    """Key id -> version, read from the key secret's own version tags (the ground truth)."""
    try:
        return {str(p.tags["wid-key-id"]): str(p.version)
                for p in vault.client().list_properties_of_secret_versions(vault_name(name))
                if p.tags and "wid-key-id" in p.tags}
    except ResourceNotFoundError:
        return {}


# --- the emulator through the real SecretClient ------------------------------------------

def test_challenge_authentication_as_the_sdk_expects(vault: Vault) -> None:
    emulator = vault.emulator
    http_challenge_cache.remove_challenge_for_url(emulator.url)  # a reused port may be cached
    context = ssl.create_default_context(cafile=emulator.ca_bundle_path)
    bare = urllib.request.Request(f"{emulator.url}/secrets/x?api-version={DEFAULT_VERSION}")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(bare, context=context)  # nosec B310: https to the emulator
    assert raised.value.code == 401
    challenge = raised.value.headers["WWW-Authenticate"]
    assert challenge == (f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                         'resource="https://vault.azure.net"')

    asked: list[tuple[tuple[str, ...], str | None]] = []

    class Recording(StaticTokenCredential):
        def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                      enable_cae: bool = False, **kwargs: Any) -> Any:
            asked.append((scopes, tenant_id))
            return super().get_token(*scopes)

    client = SecretClient(emulator.url, Recording(), **emulator.client_kwargs())
    client.set_secret("first", "v1")  # challenge: the body-less copy gets 401, then the real PUT
    client.set_secret("first", "v2")
    assert client.get_secret("first").value == "v2"
    assert emulator.calls["401 challenge"] == 2  # the urllib request and the SDK's first one only
    assert emulator.calls[f"PUT secrets/{{name}} {DEFAULT_VERSION}"] == 2  # authenticated ones
    assert asked[0] == (("https://vault.azure.net/.default",), TENANT)

    # Without verify_challenge_resource=False the SDK refuses a vault outside vault.azure.net.
    http_challenge_cache.remove_challenge_for_url(emulator.url)
    strict = SecretClient(emulator.url, StaticTokenCredential(), connection_verify=emulator.ca_bundle_path)
    with pytest.raises(ValueError, match="does not match the requested domain"):
        strict.get_secret("first")


def test_api_versions_the_sdk_sends_and_unknown_ones(vault: Vault) -> None:
    assert vault.client(api_version="7.4").set_secret("v74", "x").value == "x"
    with pytest.raises(HttpResponseError) as raised:
        vault.client(api_version="7.9").get_secret("v74")
    assert raised.value.status_code == 400 and raised.value.error is not None
    assert raised.value.error.code == "BadParameter"
    assert "The specified version (7.9) is not recognized" in str(raised.value.message)
    assert vault.emulator.calls["PUT secrets/{name} 7.4"] >= 1


def test_names_and_limits_are_enforced(vault: Vault) -> None:
    client = vault.client()
    for bad in ("a_b", "a.b", "x" * 128):
        with pytest.raises(HttpResponseError) as raised:
            client.set_secret(bad, "v")
        assert raised.value.status_code == 400 and raised.value.error is not None
        assert raised.value.error.code == "BadParameter"
    assert client.set_secret("x" * 127, "v").name == "x" * 127
    assert client.set_secret("Mixed-Case", "one").properties.version
    assert client.get_secret("mixed-case").value == "one"  # names ignore case

    fifteen = {f"t{i}": "v" for i in range(15)}
    assert client.set_secret("tags", "v", tags=fifteen).properties.tags == fifteen
    for tags in ({**fifteen, "t15": "v"}, {"long": "v" * 257}):
        with pytest.raises(HttpResponseError, match="Property has invalid value"):
            client.set_secret("tags", "v", tags=tags)
    assert client.set_secret("tags", "v", tags={"colon:key": "v" * 256}).properties.tags == {
        "colon:key": "v" * 256}
    assert client.set_secret("big", "b" * 25600).value == "b" * 25600
    with pytest.raises(HttpResponseError):
        client.set_secret("big", "b" * 25601)
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret("nope")
    assert missing.value.error is not None and missing.value.error.code == "SecretNotFound"


def test_versions_properties_and_paging(vault: Vault) -> None:
    client = vault.client()
    versions = [str(client.set_secret("multi", f"value-{i}", content_type="text/plain").properties.version)
                for i in range(6)]
    assert client.get_secret("multi").value == "value-5"
    assert client.get_secret("multi", versions[2]).value == "value-2"
    before = vault.emulator.calls[f"GET secrets/{{name}}/versions {DEFAULT_VERSION}"]
    listed = list(client.list_properties_of_secret_versions("multi"))
    assert sorted(str(p.version) for p in listed) == sorted(versions)
    assert vault.emulator.calls[f"GET secrets/{{name}}/versions {DEFAULT_VERSION}"] - before == 2  # 4 a page
    assert not hasattr(listed[0], "value")

    updated = client.update_secret_properties("multi", versions[0], tags={"k": "v"}, enabled=False)
    assert updated.tags == {"k": "v"} and updated.enabled is False
    with pytest.raises(HttpResponseError) as disabled:
        client.get_secret("multi", versions[0])
    assert disabled.value.status_code == 403
    latest = client.update_secret_properties("multi", tags={"latest": "yes"})  # no version: the latest
    assert latest.version == versions[5]
    for i in range(5):
        client.set_secret(f"other-{i}", "v", tags={"i": str(i)})
    names = [str(p.name) for p in client.list_properties_of_secrets()]
    assert names == sorted(names) and len(names) == 6
    assert next(p for p in client.list_properties_of_secrets() if p.name == "multi").tags == {"latest": "yes"}


def test_soft_delete_recover_purge_and_the_conflict(vault: Vault) -> None:
    client = vault.client()
    client.set_secret("doomed", "old", tags={"a": "1"})
    deleted = client.begin_delete_secret("doomed").result()
    assert deleted.recovery_id and deleted.scheduled_purge_date is not None
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("doomed")
    assert [d.name for d in client.list_deleted_secrets()] == ["doomed"]
    with pytest.raises(ResourceExistsError) as conflict:
        client.set_secret("doomed", "new")
    assert conflict.value.status_code == 409 and conflict.value.error is not None
    assert conflict.value.error.code == "Conflict"
    assert "deleted but recoverable state" in str(conflict.value.message)

    client.begin_recover_deleted_secret("doomed").wait()
    assert client.get_secret("doomed").value == "old"

    client.begin_delete_secret("doomed").wait()
    client.purge_deleted_secret("doomed")
    assert client.set_secret("doomed", "new").value == "new"
    assert len(list(client.list_properties_of_secret_versions("doomed"))) == 1

    client.begin_delete_secret("doomed").wait()
    vault.clock.now += 91 * 86400  # past the scheduled purge date
    assert list(client.list_deleted_secrets()) == []
    assert client.set_secret("doomed", "again").value == "again"


def test_without_soft_delete_a_deleted_name_is_free_at_once() -> None:
    with KeyVaultEmulator(soft_delete=False) as emulator:
        client = SecretClient(emulator.url, StaticTokenCredential(), **emulator.client_kwargs())
        client.set_secret("gone", "v")
        assert client.begin_delete_secret("gone").result().recovery_id is None
        assert client.set_secret("gone", "w").value == "w"
        with pytest.raises(ResourceNotFoundError):
            client.get_deleted_secret("gone")


# --- the store ---------------------------------------------------------------------------

def test_names_map_deterministically() -> None:
    assert vault_name(NAME) == "workload-ids--prod--payments-api"
    assert metadata_name(NAME) == "workload-ids--prod--payments-api--metadata"
    assert vault_name("a_b.c") == "a-b-c"
    long = "workload-ids/prod/" + "x" * 200
    assert len(metadata_name(long)) == 127 and vault_name(long) == vault_name(long)
    assert vault_name(long) != vault_name(long + "y")


def test_store_round_trip(vault: Vault) -> None:
    store = vault.store()
    assert not store.describe(NAME).exists
    store.ensure(NAME, MARKER)
    assert store.describe(NAME).exists and store.describe(NAME).issued() == set()
    journal = "create-key since=2026-11-20T00:00:00Z prev=- keys=" + "/".join(f"{n:036d}" for n in range(8))
    assert len(journal) > 256  # split over two Key Vault tags
    store.set_tags(NAME, {JOURNAL_TAG: journal})
    first, second, third = issued(1), issued(2), issued(3)
    for key in (first, second, third):
        store.put_key(NAME, key, document(key))
    stored = store.describe(NAME)
    assert stored.current_key() == third.key_id and stored.previous_key() == second.key_id
    assert stored.versions[first.key_id] == ("older",)
    assert stored.issued_at[first.key_id] == first.issued
    assert stored.tags == {**MARKER, JOURNAL_TAG: journal}
    # read_key returns the field that held the key's secret (what rotation verifies with)
    assert store.read_key(NAME, first.key_id).reveal() == first.secret.reveal()
    assert store.read_key(NAME, third.key_id).reveal() == third.secret.reveal()

    store.set_tags(NAME, {RETIRED_TAG: f"{first.key_id}=2026-11-25T00:00:00Z"})
    store.remove_tags(NAME, [JOURNAL_TAG, "workload-ids:absent"])
    tags = store.describe(NAME).tags
    assert JOURNAL_TAG not in tags and tags[RETIRED_TAG].startswith(first.key_id)

    # What services read: the key secret's latest version is the current key's document.
    client = vault.client()
    latest = client.get_secret(vault_name(NAME))
    assert json.loads(str(latest.value)) == document(third)
    assert latest.properties.tags is not None
    assert latest.properties.tags["workload-ids_managed-by"] == "workload-ids"
    meta = client.get_secret(metadata_name(NAME))
    assert "workload-ids_retired" in (meta.properties.tags or {})
    assert third.secret.reveal() not in json.dumps([meta.value, meta.properties.tags])

    other = "workload-ids/dev/payments-api"
    store.ensure(other, MARKER)
    many = store.describe_many("workload-ids/prod/")
    assert set(many) == {NAME}
    assert many[NAME] == store.describe(NAME)
    assert set(store.describe_many("workload-ids/")) == {NAME, other}


def test_describe_costs_one_call_and_reads_no_secret(vault: Vault) -> None:
    setup = vault.store()
    setup.ensure(NAME, MARKER)
    for n in range(1, 8):  # more versions than one page of the emulator (4)
        setup.put_key(NAME, issued(n), document(issued(n)))
    seam = quiet()
    results: list[Any] = []
    calls.RESULT_HOOKS.append(lambda record, result: results.append(result))
    try:
        stored = vault.store(seam).describe(NAME)
    finally:
        calls.RESULT_HOOKS.pop()
    assert stored.current_key() == issued(7).key_id and stored.previous_key() == issued(6).key_id
    assert dict(seam.stats.calls) == {"azure:keyvault.get_secret": 1}
    assert [r.name for r in results] == [metadata_name(NAME)]  # not the key secret: no client secret read
    assert not any(issued(n).secret.reveal() in str(results[0].value) for n in range(1, 8))

    seam = quiet()
    assert not vault.store(seam).describe("workload-ids/prod/new").exists
    assert dict(seam.stats.calls) == {"azure:keyvault.get_secret": 1,
                                      "azure:keyvault.list_properties_of_secret_versions": 1}

    seam = quiet()
    writer = vault.store(seam)
    writer.put_key(NAME, issued(8), document(issued(8)))
    assert seam.stats.total == 4
    seam = quiet()
    vault.store(seam).set_tags(NAME, {JOURNAL_TAG: "create-key since=2026-11-28T00:00:00Z prev=- keys=-"})
    vault.store(seam).set_tags(NAME, {JOURNAL_TAG: "create-key since=2026-11-28T00:00:00Z prev=- keys=-"})
    assert seam.stats.calls["azure:keyvault.update_secret_properties"] == 1  # unchanged: no write

    # Fleet: one page per 4 secrets (the emulator's page), whatever each secret holds.
    for n in range(4):
        setup.ensure(f"workload-ids/prod/svc-{n}", MARKER)
        setup.put_key(f"workload-ids/prod/svc-{n}", issued(n + 1), document(issued(n + 1)))
    seam = quiet()
    many = vault.store(seam).describe_many("workload-ids/prod/")
    assert len(many) == 5 and many[NAME].current_key() == issued(8).key_id
    assert dict(seam.stats.calls) == {"azure:keyvault.list_properties_of_secrets": 3}  # 10 secrets


def test_a_crash_at_every_call_of_put_key_never_loses_a_key(vault: Vault) -> None:
    first, second, third = issued(1), issued(2), issued(3)
    probe = quiet()
    vault.store(probe).ensure("workload-ids/prod/probe", MARKER)
    before = probe.stats.total
    vault.store(probe).put_key("workload-ids/prod/probe", first, document(first))
    count = probe.stats.total - before
    assert count == 4
    outcomes = set()
    for k in range(1, count + 1):
        name = f"workload-ids/prod/crash-{k}"
        vault.store().ensure(name, MARKER)
        vault.store().put_key(name, first, document(first))
        dying = quiet(max_attempts=1)
        dying.inject(FailAt(k, "kill"))
        with pytest.raises(Killed):
            vault.store(dying).put_key(name, second, document(second))

        in_vault = second.key_id in key_versions(vault, name)
        outcomes.add(in_vault)
        seam = quiet()
        after = vault.store(seam).describe(name)
        assert first.key_id in after.issued(), k
        if in_vault:  # stored before the crash: issued, and current
            assert (after.current_key(), after.previous_key()) == (second.key_id, first.key_id), k
            assert vault.store().read_key(name, second.key_id).reveal() == second.secret.reveal()
        else:
            assert after.current_key() == first.key_id and second.key_id not in after.issued(), k
        assert seam.stats.total <= 3, k  # 1, plus the versions' pages (4 a page) while a mark is pending

        vault.store().put_key(name, third, document(third))  # the rerun issues the next key
        final = vault.store().describe(name)
        assert final.current_key() == third.key_id, k
        assert final.issued() == {first.key_id, third.key_id} | ({second.key_id} if in_vault else set()), k
        tags = vault.client().get_secret(metadata_name(name)).properties.tags or {}
        assert "wid-pending" not in tags, k
        assert final.tags == MARKER, k
    assert outcomes == {True, False}  # both sides of the version write were crashed on


def test_lost_metadata_is_rebuilt_from_the_versions(vault: Vault) -> None:
    store = vault.store()
    store.ensure(NAME, MARKER)
    for n in range(1, 7):  # the emulator lists versions in random order, as Key Vault may
        store.put_key(NAME, issued(n), document(issued(n)))
    expected = store.describe(NAME).versions
    client = vault.client()
    client.begin_delete_secret(metadata_name(NAME)).wait()

    # Deleted but recoverable: describe still knows the keys; a write says what to do.
    assert store.describe(NAME).versions == expected
    with pytest.raises(CloudError) as raised:
        store.set_tags(NAME, {JOURNAL_TAG: "create-key since=2026-11-28T00:00:00Z prev=- keys=-"})
    assert "recover" in raised.value.diagnostics()

    client.purge_deleted_secret(metadata_name(NAME))
    store.set_tags(NAME, {JOURNAL_TAG: "create-key since=2026-11-28T00:00:00Z prev=- keys=-"})
    seam = quiet()
    rebuilt = vault.store(seam).describe(NAME)
    assert seam.stats.total == 1
    assert rebuilt.versions == expected
    assert (rebuilt.current_key(), rebuilt.previous_key()) == (issued(6).key_id, issued(5).key_id)
    assert rebuilt.issued_at[issued(1).key_id] == issued(1).issued
    assert rebuilt.tags == {JOURNAL_TAG: "create-key since=2026-11-28T00:00:00Z prev=- keys=-"}


def test_the_index_keeps_the_newest_keys_within_the_tag_limit(vault: Vault) -> None:
    store = vault.store()
    store.ensure(NAME, MARKER)
    store.set_tags(NAME, {JOURNAL_TAG: "j" * 300, RETIRED_TAG: "r" * 100})
    keys = [issued(n) for n in range(1, 25)]
    for key in keys:
        store.put_key(NAME, key, document(key))  # the emulator refuses a 16th tag or a long value
    stored = store.describe(NAME)
    assert stored.current_key() == keys[-1].key_id and stored.previous_key() == keys[-2].key_id
    assert len(stored.issued()) >= 8 and keys[-1].key_id in stored.issued()
    assert stored.tags[JOURNAL_TAG] == "j" * 300
    physical = vault.client().get_secret(metadata_name(NAME)).properties.tags or {}
    assert len(physical) <= 15 and all(len(v) <= 256 for v in physical.values())
    # A key dropped from the index is still found through its version's own tags.
    assert keys[0].key_id not in stored.issued()
    assert store.read_key(NAME, keys[0].key_id).reveal() == keys[0].secret.reveal()


def test_names_that_meet_in_key_vault_are_refused(vault: Vault) -> None:
    store = vault.store()
    store.ensure("workload-ids/prod/API", MARKER)
    with pytest.raises(ConflictError, match="holds the keys of 'workload-ids/prod/API'"):
        store.ensure("workload-ids/prod/api", MARKER)
    vault.client().set_secret(vault_name("workload-ids/prod/hand-made"), "someone else's")
    with pytest.raises(ConflictError, match="was not made by workload-ids"):
        store.ensure("workload-ids/prod/hand-made", MARKER)


def test_a_secret_value_never_reaches_an_error(vault: Vault) -> None:
    store = vault.store()
    store.ensure(NAME, MARKER)
    key = issued(4)
    huge = {**document(key), "padding": "p" * 26000}
    with pytest.raises(CloudError) as raised:
        store.put_key(NAME, key, huge)
    assert key.secret.reveal() not in raised.value.diagnostics()
    assert key.secret.reveal() not in repr(raised.value.__cause__)
    assert key.key_id not in store.describe(NAME).issued()
