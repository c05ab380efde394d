"""Our blob emulator against Azurite, Microsoft's own emulator, on what both support.

The audit sink runs on Azurite where Azurite serves (create-only records, listing, reads,
the append-blob head anchor: :func:`test_the_audit_sink_store_on_azurite`); our emulator
is kept for what Azurite lacks, immutability policies (it reports none and answers the
immutability calls 501). Every call both serve is made on both here, the same way, and
must give the same result: status and error code, or the data read back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.azurite import Azurite, running

from workload_ids.audit.azure_blob import sandbox_token
from workload_ids.providers.azure.clients import StaticTokenCredential
from workload_ids.sandbox.azure.blob import BlobEmulator


@contextmanager
def _ours() -> Iterator[Azurite]:
    emulator = BlobEmulator(account="devstoreaccount1")
    url = emulator.start()
    try:
        yield Azurite(url, emulator.ca_bundle_path)
    finally:
        emulator.stop()


def _container(service: Azurite, name: str) -> Any:
    from azure.storage.blob import ContainerClient
    return ContainerClient(service.account_url, name, credential=StaticTokenCredential(sandbox_token()),
                           connection_verify=service.ca_bundle, retry_total=0)


def _outcome(fn: Callable[[], Any]) -> Any:
    from azure.core.exceptions import HttpResponseError
    try:
        return ("ok", fn())
    except HttpResponseError as exc:
        return ("error", exc.status_code, exc.error_code)


def _script(service: Azurite) -> list[tuple[str, Any]]:
    """The same calls, in the same order; what each gave."""
    from azure.core import MatchConditions
    from azure.storage.blob import BlobLeaseClient
    c = _container(service, "compare")
    record = c.get_blob_client("p/records/000000000001.json")
    head = c.get_blob_client("p/head-000000")
    other = c.get_blob_client("p/records/000000000002.json")
    lease_id = str(uuid.UUID(int=7))
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("create container", lambda: c.create_container() and None),
        ("create container again", lambda: c.create_container() and None),
        ("create-only upload", lambda: record.upload_blob(b'{"seq":1}', overwrite=False) and None),
        ("create-only upload again", lambda: record.upload_blob(b"{}", overwrite=False) and None),
        ("second record", lambda: other.upload_blob(b'{"seq":2}', overwrite=False) and None),
        ("read", lambda: record.download_blob().readall()),
        ("read a range", lambda: other.download_blob(offset=2, length=3).readall()),
        ("read a missing blob", lambda: c.get_blob_client("p/nothing").download_blob().readall()),
        ("list by prefix", lambda: [(b.name, b.size, b.blob_type) for b in
                                    c.list_blobs(name_starts_with="p/records/")]),
        ("list paged", lambda: [[b.name for b in page] for page in
                                c.list_blobs(name_starts_with="p/", results_per_page=2).by_page()]),
        ("append to a missing blob", lambda: head.append_block(b"x\n") and None),
        ("create append blob if missing", lambda: head.create_append_blob(
            match_condition=MatchConditions.IfMissing) and None),
        ("create append blob if missing, again", lambda: head.create_append_blob(
            match_condition=MatchConditions.IfMissing) and None),
        ("append", lambda: head.append_block(b"one\n")["blob_append_offset"]),
        ("append at a position", lambda: head.append_block(b"two\n", appendpos_condition=4)
         ["blob_append_offset"]),
        ("append at a stale position", lambda: head.append_block(b"3\n", appendpos_condition=4)
         and None),
        ("append to a block blob", lambda: record.append_block(b"x") and None),
        ("read the append blob's tail", lambda: head.download_blob(offset=4, length=4).readall()),
        ("append blob properties", lambda: (lambda p: (p.size, str(p.blob_type)))(
            head.get_blob_properties())),
        ("container immutability", lambda: c.get_container_properties().has_immutability_policy),
        ("lease", lambda: BlobLeaseClient(other, lease_id=lease_id).acquire(lease_duration=15) and None),
        ("lease held by another", lambda: BlobLeaseClient(other, lease_id=str(uuid.UUID(int=8)))
         .acquire(lease_duration=15) and None),
        ("write without the lease", lambda: other.set_blob_metadata({"a": "b"}) and None),
        ("write with the lease", lambda: other.set_blob_metadata({"a": "b"}, lease=lease_id) and None),
        ("release", lambda: BlobLeaseClient(other, lease_id=lease_id).release() and None),
        ("delete", lambda: other.delete_blob() and None),
        ("list after delete", lambda: [b.name for b in c.list_blobs(name_starts_with="p/")]),
    ]
    return [(name, _outcome(step)) for name, step in steps]


def test_our_blob_emulator_answers_as_azurite_does() -> None:
    with running() as azurite:
        theirs = _script(azurite)
    with _ours() as ours:
        mine = _script(ours)
    assert len(mine) == len(theirs)
    for (name, expected), (_, got) in zip(theirs, mine, strict=True):
        assert got == expected, f"{name}: Azurite gave {expected}, our emulator {got}"


def test_azurite_lacks_immutability_policies() -> None:
    """Why our emulator is kept: the sink's check needs a container that says it is
    immutable, and Azurite has no way to make one."""
    with running() as azurite:
        c = _container(azurite, "audit")
        c.create_container()
        assert c.get_container_properties().has_immutability_policy is False
        blob = c.get_blob_client("x")
        blob.upload_blob(b"x")
        from azure.core.exceptions import HttpResponseError
        with pytest.raises(HttpResponseError) as refused:
            blob.set_immutability_policy(immutability_policy=_policy())
        assert refused.value.status_code == 501


def _policy() -> Any:
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ImmutabilityPolicy
    return ImmutabilityPolicy(expiry_time=datetime.now(UTC) + timedelta(days=1), policy_mode="Unlocked")


def test_the_audit_sink_store_on_azurite(tmp_path: Path) -> None:
    """The Azure sink's every store call on Azurite: create-only records (the loser of a
    race learns it), listing, reads, and the head anchor on an append blob; only the
    append-only check fails, since Azurite has no immutability policies."""
    from workload_ids.audit.azure_blob import BlobStore
    from workload_ids.calls import CallSeam
    from workload_ids.config import load_config
    with running() as azurite:
        _container(azurite, "audit").create_container()
        (tmp_path / "workload-ids.yaml").write_text(
            f"azure: {{caBundle: {azurite.ca_bundle}, sandboxCredentials: true}}\n")
        config = load_config(tmp_path / "workload-ids.yaml")
        store = BlobStore(config, f"{azurite.container_url('audit')}/prod")
        seam = CallSeam()
        from workload_ids.audit.azure_blob import register
        register(seam)
        assert store.append_only(seam) == (
            "container audit has no immutability policy; add a time-based retention policy that "
            "allows protected append writes (az storage container immutability-policy create "
            "--period DAYS --allow-protected-append-writes true), then lock it")
        assert store.read_anchor(seam) is None
        assert store.create(seam, 1, b'{"seq":1}') is True
        assert store.create(seam, 1, b'{"seq":"again"}') is False
        assert store.create(seam, 2, b'{"seq":2}') is True
        listing = store.listing(seam)
        assert sorted(listing.records) == [1, 2] and not listing.strays and listing.history
        assert store.read(seam, 1, listing.records[1]) == b'{"seq":1}'
        store.write_anchor(seam, b'{"seq":1,"hash":"a"}')
        store.write_anchor(seam, b'{"seq":2,"hash":"b"}')
        assert store.read_anchor(seam) == b'{"seq":2,"hash":"b"}'
        store.write_anchor(seam, b'{"seq":40000,"hash":"c"}')  # the next head blob
        assert store.read_anchor(seam) == b'{"seq":40000,"hash":"c"}'


def test_the_blob_lease_lock_on_azurite(tmp_path: Path) -> None:
    """Key mode's workload lock (a lease on NAME.lock, locks/azure.py) on Azurite: one
    holder at a time, the busy answer names the holder, renew and release work, and the
    next run gets the lock."""

    from workload_ids.calls import CallSeam
    from workload_ids.config import load_config
    from workload_ids.providers.azure.clients import AzureClients
    from workload_ids.providers.azure.lock import BlobLeaseLock
    from workload_ids.providers.interface import Holder
    with running() as azurite:
        _container(azurite, "locks").create_container()
        (tmp_path / "workload-ids.yaml").write_text(
            f"azure: {{caBundle: {azurite.ca_bundle}, sandboxCredentials: true, "
            f"lockContainerUrl: '{azurite.container_url('locks')}'}}\n")
        config = load_config(tmp_path / "workload-ids.yaml")

        def lock() -> BlobLeaseLock:
            seam = CallSeam()
            clients = AzureClients(config, seam)
            # Azurite's --oauth basic reads a JWT's claims; our emulators take any token.
            clients._credential = StaticTokenCredential(sandbox_token())
            return BlobLeaseLock(clients, "sub")
        first, second = lock(), lock()
        one, two = Holder("host/1/aa", "rotate"), Holder("host/2/bb", "rotate")
        assert first.try_acquire("wid-prod-svc", one, {"workload-ids:workload": "svc"}) is None
        busy = second.try_acquire("wid-prod-svc", two, {"workload-ids:workload": "svc"})
        assert busy is not None and busy.holder == "host/1/aa" and busy.command == "rotate"
        assert first.renew("wid-prod-svc", one) is True
        first.release("wid-prod-svc", one)
        assert second.try_acquire("wid-prod-svc", two, {"workload-ids:workload": "svc"}) is None
        second.release("wid-prod-svc", two)
