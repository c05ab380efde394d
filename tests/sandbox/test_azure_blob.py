"""The Blob Storage emulator, driven only through the real ``azure-storage-blob`` clients
over HTTPS: create-if-absent, the lease life cycle (acquire, conflict, renew, change,
release, expiry on the emulator's clock, break), writes under a lease, conditions,
containers, authentication, and injected faults. SDK retries are off (``retry_total=0``)
so that every error the emulator answers reaches the test."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

from workload_ids.providers.azure.clients import StaticTokenCredential
from workload_ids.sandbox.azure.blob import BlobEmulator
from workload_ids.sandbox.common.clock import ManualClock

CONTAINER = "locks"


@dataclass
class Storage:
    emulator: BlobEmulator
    clock: ManualClock

    def container(self, name: str = CONTAINER, **kwargs: Any) -> ContainerClient:
        """A client as a lock would build one: account URL, token credential, CA bundle."""
        options: dict[str, Any] = {"credential": StaticTokenCredential(),
                                   "connection_verify": self.emulator.ca_bundle_path, "retry_total": 0}
        return ContainerClient(self.emulator.account_url, name, **{**options, **kwargs})

    def blob(self, name: str = "prod/payments-api.lock", **kwargs: Any) -> BlobClient:
        return self.container(**kwargs).get_blob_client(name)


@pytest.fixture
def storage() -> Iterator[Storage]:
    clock = ManualClock(1_790_000_000.0)
    with BlobEmulator(clock=clock) as emulator:
        yield Storage(emulator, clock)


def lease_of(blob: BlobClient) -> tuple[str | None, str | None, str | None]:
    lease = blob.get_blob_properties().lease
    return lease.state, lease.status, lease.duration


def new_id() -> str:
    return str(uuid.uuid4())


# --- addressing, containers, authentication ---------------------------------------------


def test_path_style_account_and_the_helper_client(storage: Storage) -> None:
    emulator = storage.emulator
    assert emulator.account_url == f"{emulator.url}/sandbox"
    container = storage.container()
    assert container.account_name == "sandbox"
    assert container.url == f"{emulator.url}/sandbox/{CONTAINER}"
    container.create_container()
    with pytest.raises(ResourceExistsError) as exc:
        emulator.container_client(CONTAINER).create_container()
    assert exc.value.error_code == "ContainerAlreadyExists"
    assert emulator.calls["CreateContainer"] == 2


def test_clients_from_a_container_url(storage: Storage) -> None:
    url = storage.emulator.container_url(CONTAINER)
    container = ContainerClient.from_container_url(url, credential=StaticTokenCredential(),
                                                   connection_verify=storage.emulator.ca_bundle_path,
                                                   retry_total=0)
    assert (container.account_name, container.container_name) == ("sandbox", CONTAINER)
    container.get_blob_client("a/b.lock").upload_blob(b"x")
    assert storage.blob("a/b.lock").download_blob().readall() == b"x"


def test_container_not_found_without_sandbox() -> None:
    with BlobEmulator(sandbox=False) as emulator:
        container = emulator.container_client("absent")
        blob = container.get_blob_client("lock")
        with pytest.raises(ResourceNotFoundError) as exc:
            blob.upload_blob(b"x", overwrite=False)
        assert exc.value.error_code == "ContainerNotFound"
        with pytest.raises(ResourceNotFoundError) as exc:
            blob.get_blob_properties()  # HEAD: the code comes from the header alone
        assert exc.value.error_code == "ContainerNotFound"
        assert container.exists() is False
        container.create_container()
        blob.upload_blob(b"x", overwrite=False)
        assert blob.download_blob().readall() == b"x"


def test_sandbox_makes_containers_on_first_reference(storage: Storage) -> None:
    storage.blob().upload_blob(b"x")
    assert storage.container().exists() is True
    with pytest.raises(ResourceExistsError) as exc:
        storage.container().create_container()
    assert exc.value.error_code == "ContainerAlreadyExists"


def test_invalid_container_name(storage: Storage) -> None:
    with pytest.raises(HttpResponseError) as exc:
        storage.container("Bad--Name").get_blob_client("x").upload_blob(b"x")
    assert exc.value.status_code == 400
    assert exc.value.error_code == "InvalidResourceName"


def test_a_bearer_token_is_required(storage: Storage) -> None:
    anonymous = storage.blob(credential=None)
    with pytest.raises(ClientAuthenticationError) as exc:
        anonymous.upload_blob(b"x")
    assert exc.value.status_code == 401
    assert exc.value.error_code == "NoAuthenticationInformation"
    assert storage.emulator.calls["401 challenge"] == 1
    assert storage.emulator.calls["PutBlob"] == 0


# --- blobs ------------------------------------------------------------------------------


def test_create_if_absent(storage: Storage) -> None:
    blob = storage.blob()
    created = blob.upload_blob(b"holder-a", overwrite=False, metadata={"holder": "a"})
    assert created["etag"]
    assert created["version"] == blob.api_version  # x-ms-version is echoed
    with pytest.raises(ResourceExistsError) as exc:
        blob.upload_blob(b"holder-b", overwrite=False, metadata={"holder": "b"})
    assert exc.value.error_code == "BlobAlreadyExists"
    assert exc.value.status_code == 409
    props = blob.get_blob_properties()
    assert props.metadata == {"holder": "a"}
    assert props.size == len(b"holder-a")
    assert props.blob_type == "BlockBlob"
    assert props.etag == created["etag"]
    assert blob.download_blob().readall() == b"holder-a"
    blob.upload_blob(b"holder-c", overwrite=True)
    assert blob.download_blob().readall() == b"holder-c"
    assert blob.get_blob_properties().etag != created["etag"]


def test_empty_blob_and_missing_blob(storage: Storage) -> None:
    blob = storage.blob()
    with pytest.raises(ResourceNotFoundError) as exc:
        blob.get_blob_properties()
    assert exc.value.error_code == "BlobNotFound"
    with pytest.raises(ResourceNotFoundError) as exc:
        blob.acquire_lease(15)
    assert exc.value.error_code == "BlobNotFound"
    with pytest.raises(ResourceNotFoundError) as exc:
        blob.delete_blob()
    assert exc.value.error_code == "BlobNotFound"
    blob.upload_blob(b"")
    # The SDK reads a range first; that is 416 on an empty blob, and it reads the whole instead.
    assert blob.download_blob().readall() == b""
    assert blob.exists() is True
    blob.delete_blob()
    assert blob.exists() is False


def test_metadata_names_must_be_identifiers(storage: Storage) -> None:
    with pytest.raises(HttpResponseError) as exc:
        storage.blob().upload_blob(b"x", metadata={"not-an-identifier": "v"})
    assert exc.value.status_code == 400
    assert exc.value.error_code == "InvalidMetadata"


def test_conditions_on_etag(storage: Storage) -> None:
    blob = storage.blob()
    etag = blob.upload_blob(b"x")["etag"]
    blob.set_blob_metadata({"step": "1"}, etag=etag, match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceModifiedError) as exc:
        blob.set_blob_metadata({"step": "2"}, etag=etag, match_condition=MatchConditions.IfNotModified)
    assert exc.value.error_code == "ConditionNotMet"
    assert exc.value.status_code == 412
    with pytest.raises(HttpResponseError) as lease_exc:
        blob.acquire_lease(15, etag=etag, match_condition=MatchConditions.IfNotModified)
    assert lease_exc.value.status_code == 412
    assert lease_exc.value.error_code == "ConditionNotMet"
    current = blob.get_blob_properties().etag
    # A read whose condition fails is 304 with x-ms-error-code ConditionNotMet, as Azure
    # answers; the SDK maps by the code, so it raises ResourceModifiedError, not
    # ResourceNotModifiedError.
    with pytest.raises(ResourceModifiedError) as read_exc:
        blob.get_blob_properties(etag=current, match_condition=MatchConditions.IfModified)
    assert (read_exc.value.status_code, read_exc.value.error_code) == (304, "ConditionNotMet")
    assert blob.get_blob_properties().metadata == {"step": "1"}


# --- leases -----------------------------------------------------------------------------


def test_acquire_conflict_and_idempotent_reacquire(storage: Storage) -> None:
    blob = storage.blob()
    blob.upload_blob(b"")
    assert lease_of(blob) == ("available", "unlocked", None)
    mine = blob.acquire_lease(15)
    assert lease_of(blob) == ("leased", "locked", "fixed")
    with pytest.raises(ResourceExistsError) as exc:
        BlobLeaseClient(storage.blob()).acquire(15)
    assert exc.value.error_code == "LeaseAlreadyPresent"
    assert exc.value.status_code == 409
    again = BlobLeaseClient(blob, lease_id=mine.id)
    again.acquire(-1)  # the same id: succeeds, with the new duration
    assert again.id == mine.id
    assert lease_of(blob) == ("leased", "locked", "infinite")
    assert storage.emulator.calls["LeaseBlob:acquire"] == 3


def test_lease_duration_must_be_15_to_60_or_infinite(storage: Storage) -> None:
    blob = storage.blob()
    blob.upload_blob(b"")
    for duration in (14, 61, 0):
        with pytest.raises(HttpResponseError) as exc:
            blob.acquire_lease(duration)
        assert exc.value.status_code == 400
        assert exc.value.error_code == "InvalidHeaderValue"
        assert "x-ms-lease-duration" in str(exc.value)
    assert lease_of(blob) == ("available", "unlocked", None)


def test_renew_change_release(storage: Storage) -> None:
    blob = storage.blob()
    blob.upload_blob(b"")
    lease = blob.acquire_lease(60)
    first = lease.id
    storage.clock.now += 50
    lease.renew()
    assert lease.id == first
    storage.clock.now += 50  # 100 s after acquiring, 50 after the renewal: still held
    assert lease_of(blob) == ("leased", "locked", "fixed")

    stranger = BlobLeaseClient(blob, lease_id=new_id())
    for action in (stranger.renew, stranger.release):
        with pytest.raises(HttpResponseError) as exc:
            action()
        assert exc.value.status_code == 409
        assert exc.value.error_code == "LeaseIdMismatchWithLeaseOperation"

    changed = new_id()
    lease.change(changed)
    assert lease.id == changed
    BlobLeaseClient(blob, lease_id=first).change(changed)  # already changed: idempotent
    with pytest.raises(HttpResponseError) as exc:
        BlobLeaseClient(blob, lease_id=first).release()
    assert exc.value.error_code == "LeaseIdMismatchWithLeaseOperation"

    lease.release()
    assert lease_of(blob) == ("available", "unlocked", None)
    with pytest.raises(HttpResponseError) as exc:
        BlobLeaseClient(blob, lease_id=changed).renew()
    assert exc.value.error_code == "LeaseIdMismatchWithLeaseOperation"
    with pytest.raises(HttpResponseError) as exc:
        BlobLeaseClient(blob, lease_id=changed).change(new_id())
    assert exc.value.error_code == "LeaseNotPresentWithLeaseOperation"


def test_writes_under_a_lease(storage: Storage) -> None:
    blob = storage.blob()
    blob.upload_blob(b"v1", metadata={"holder": "a"})
    with pytest.raises(HttpResponseError) as exc:
        blob.set_blob_metadata({"holder": "b"}, lease=new_id())
    assert (exc.value.status_code, exc.value.error_code) == (412, "LeaseNotPresentWithBlobOperation")

    lease = blob.acquire_lease(-1)
    for write in (lambda **kw: blob.set_blob_metadata({"holder": "b"}, **kw),
                  lambda **kw: blob.upload_blob(b"v2", overwrite=True, **kw),
                  lambda **kw: blob.delete_blob(**kw)):
        with pytest.raises(HttpResponseError) as exc:
            write()
        assert (exc.value.status_code, exc.value.error_code) == (412, "LeaseIdMissing")
        with pytest.raises(HttpResponseError) as exc:
            write(lease=new_id())
        assert (exc.value.status_code, exc.value.error_code) == (412, "LeaseIdMismatchWithBlobOperation")
    assert blob.get_blob_properties().metadata == {"holder": "a"}  # reads need no lease

    blob.set_blob_metadata({"holder": "b"}, lease=lease)
    assert blob.get_blob_properties().metadata == {"holder": "b"}
    blob.upload_blob(b"v2", overwrite=True, lease=lease, metadata={"holder": "c"})
    assert blob.download_blob().readall() == b"v2"
    assert lease_of(blob) == ("leased", "locked", "infinite")  # Put Blob keeps the lease
    with pytest.raises(HttpResponseError) as exc:
        blob.get_blob_properties(lease=new_id())
    assert exc.value.status_code == 412
    blob.delete_blob(lease=lease)
    assert blob.exists() is False


def test_lease_expires_on_the_clock_and_another_client_takes_it(storage: Storage) -> None:
    blob_a, blob_b = storage.blob(), storage.blob()
    blob_a.upload_blob(b"", overwrite=False)
    lease_a = blob_a.acquire_lease(15)
    storage.clock.now += 14.9
    with pytest.raises(ResourceExistsError) as exc:
        blob_b.acquire_lease(15)
    assert exc.value.error_code == "LeaseAlreadyPresent"

    storage.clock.now += 0.1  # 15 s: expired
    assert lease_of(blob_b) == ("expired", "unlocked", None)
    blob_b.set_blob_metadata({"note": "no lease needed"})  # and this write forgets the old lease
    with pytest.raises(HttpResponseError) as exc:
        lease_a.renew()
    assert exc.value.error_code == "LeaseIdMismatchWithLeaseOperation"
    with pytest.raises(HttpResponseError) as exc:
        blob_a.set_blob_metadata({"holder": "a"}, lease=lease_a)
    assert (exc.value.status_code, exc.value.error_code) == (412, "LeaseNotPresentWithBlobOperation")

    lease_b = blob_b.acquire_lease(15)
    assert lease_b.id != lease_a.id
    assert lease_of(blob_a) == ("leased", "locked", "fixed")
    with pytest.raises(HttpResponseError) as exc:
        blob_a.set_blob_metadata({"holder": "a"}, lease=lease_a)
    assert (exc.value.status_code, exc.value.error_code) == (412, "LeaseIdMismatchWithBlobOperation")
    blob_b.set_blob_metadata({"holder": "b"}, lease=lease_b)


def test_an_expired_lease_renews_until_someone_writes_or_leases(storage: Storage) -> None:
    blob = storage.blob()
    blob.upload_blob(b"")
    lease = blob.acquire_lease(15)
    storage.clock.now += 20
    assert storage.emulator.lease_state(CONTAINER, blob.blob_name) == "expired"
    blob.download_blob().readall()  # a read does not end the right to renew
    lease.renew()
    assert lease_of(blob) == ("leased", "locked", "fixed")
    storage.clock.now += 14
    assert lease_of(blob) == ("leased", "locked", "fixed")  # renewed for 15 s from the renewal
    storage.clock.now += 1
    assert lease_of(blob) == ("expired", "unlocked", None)
    other = blob.acquire_lease(15)
    with pytest.raises(HttpResponseError) as exc:
        lease.renew()
    assert exc.value.error_code == "LeaseIdMismatchWithLeaseOperation"
    other.release()


def test_break_lease(storage: Storage) -> None:
    blob = storage.blob()
    blob.upload_blob(b"")
    with pytest.raises(HttpResponseError) as exc:
        BlobLeaseClient(blob).break_lease()
    assert (exc.value.status_code, exc.value.error_code) == (409, "LeaseNotPresentWithLeaseOperation")

    lease = blob.acquire_lease(-1)
    assert lease.break_lease(10) == 10
    assert lease_of(blob) == ("breaking", "locked", None)
    with pytest.raises(HttpResponseError) as exc:
        blob.set_blob_metadata({"k": "v"})
    assert exc.value.error_code == "LeaseIdMissing"  # a breaking lease still guards writes
    with pytest.raises(ResourceExistsError) as exc:
        blob.acquire_lease(15)
    assert exc.value.error_code == "LeaseAlreadyPresent"
    with pytest.raises(HttpResponseError) as exc:
        BlobLeaseClient(blob, lease_id=lease.id).acquire(15)
    assert exc.value.error_code == "LeaseIsBreakingAndCannotBeAcquired"
    with pytest.raises(HttpResponseError) as exc:
        lease.renew()
    assert exc.value.error_code == "LeaseIsBrokenAndCannotBeRenewed"
    storage.clock.now += 4
    assert BlobLeaseClient(blob).break_lease() == 6  # no period: the one already running
    storage.clock.now += 6
    assert lease_of(blob) == ("broken", "unlocked", None)
    with pytest.raises(HttpResponseError) as exc:
        lease.renew()
    assert exc.value.error_code == "LeaseIsBrokenAndCannotBeRenewed"
    assert BlobLeaseClient(blob).break_lease(0) == 0  # breaking a broken lease changes nothing

    taken = blob.acquire_lease(30)  # a broken lease can be acquired by anyone
    storage.clock.now += 10
    assert taken.break_lease() == 20  # a fixed lease, no period: breaks when it would have ended
    assert taken.break_lease(0) == 0
    assert lease_of(blob) == ("broken", "unlocked", None)
    taken.release()  # the holder may still release a broken lease
    assert lease_of(blob) == ("available", "unlocked", None)


def test_break_period_is_0_to_60(storage: Storage) -> None:
    blob = storage.blob()
    blob.upload_blob(b"")
    lease = blob.acquire_lease(-1)
    with pytest.raises(HttpResponseError) as exc:
        lease.break_lease(61)
    assert (exc.value.status_code, exc.value.error_code) == (400, "InvalidHeaderValue")
    assert lease_of(blob) == ("leased", "locked", "infinite")


def test_racing_clients_one_wins(storage: Storage) -> None:
    storage.blob().upload_blob(b"")
    start = threading.Barrier(8)

    def create(n: int) -> str:
        start.wait()
        try:
            storage.blob("race.lock").upload_blob(str(n).encode(), overwrite=False)
            return "created"
        except ResourceExistsError as exc:
            return str(exc.error_code)

    def acquire(n: int) -> str:
        start.wait()
        try:
            BlobLeaseClient(storage.blob()).acquire(15)
            return "acquired"
        except ResourceExistsError as exc:
            return str(exc.error_code)

    with ThreadPoolExecutor(8) as pool:
        created = sorted(pool.map(create, range(8)))
        acquired = sorted(pool.map(acquire, range(8)))
    assert created == ["BlobAlreadyExists"] * 7 + ["created"]
    assert acquired == ["LeaseAlreadyPresent"] * 7 + ["acquired"]


# --- faults -----------------------------------------------------------------------------


def test_injected_error_reaches_the_caller(storage: Storage) -> None:
    blob = storage.blob()
    blob.upload_blob(b"")
    storage.emulator.inject_error("LeaseBlob:acquire", 503, "ServerBusy", "Operations per second is over "
                                  "the account limit.")
    lease = BlobLeaseClient(blob)
    with pytest.raises(HttpResponseError) as exc:
        lease.acquire(15)
    assert (exc.value.status_code, exc.value.error_code) == (503, "ServerBusy")
    assert lease_of(blob) == ("available", "unlocked", None)
    lease.acquire(15)
    assert storage.emulator.calls["LeaseBlob:acquire"] == 2
    with pytest.raises(ValueError, match="unknown operation"):
        storage.emulator.inject_error("AcquireLease", 503, "ServerBusy")


def test_lost_answers_retry_idempotently_for_leases_but_not_for_create(storage: Storage) -> None:
    blob = storage.blob()
    storage.emulator.inject_error("PutBlob", 500, "InternalError", applied=True)
    with pytest.raises(HttpResponseError) as exc:
        blob.upload_blob(b"mine", overwrite=False)
    assert exc.value.status_code == 500
    with pytest.raises(ResourceExistsError) as exists:  # our own write, seen as someone else's
        blob.upload_blob(b"mine", overwrite=False)
    assert exists.value.error_code == "BlobAlreadyExists"

    storage.emulator.inject_error("LeaseBlob:acquire", 500, "InternalError", applied=True)
    lease = BlobLeaseClient(blob)
    with pytest.raises(HttpResponseError):
        lease.acquire(15)
    assert lease_of(blob) == ("leased", "locked", "fixed")
    lease.acquire(15)  # the same proposed id: the retry succeeds
    assert lease_of(blob) == ("leased", "locked", "fixed")
