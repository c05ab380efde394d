"""Our Cloud Storage JSON-API emulator, through the real ``google.cloud.storage`` client:
the calls the audit sink makes, and the answers GCS gives them (preconditions, the
retention policy and its lock, listing pages, metadata patches, checked downloads)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions as gx

from workload_ids.sandbox.gcp.storage import StorageEmulator


@pytest.fixture
def gcs() -> Iterator[StorageEmulator]:
    emulator = StorageEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


def test_create_only_uploads_and_checked_downloads(gcs: StorageEmulator) -> None:
    gcs.create_bucket("b")
    bucket = gcs.client().bucket("b")
    blob = bucket.blob("p/records/000000000001.json")
    blob.upload_from_string(b'{"seq":1}', content_type="application/json", if_generation_match=0)
    with pytest.raises(gx.PreconditionFailed):
        bucket.blob(blob.name).upload_from_string(b"{}", if_generation_match=0, retry=None)
    fetched = bucket.get_blob(blob.name)
    assert fetched is not None and fetched.size == 9 and fetched.content_type == "application/json"
    assert bucket.blob(blob.name, generation=fetched.generation).download_as_bytes() == b'{"seq":1}'
    assert bucket.get_blob("p/none") is None


def test_the_retention_policy_and_its_lock(gcs: StorageEmulator) -> None:
    client = gcs.client()
    bucket = client.bucket("locked")
    bucket.retention_period = 3600
    bucket = client.create_bucket(bucket)
    assert bucket.retention_period == 3600 and not bucket.retention_policy_locked
    blob = bucket.blob("r")
    blob.upload_from_string(b"x")
    blob.reload()
    assert blob.retention_expiration_time is not None
    for attempt in (lambda: bucket.blob("r").upload_from_string(b"y", retry=None),
                    lambda: bucket.blob("r").delete(retry=None)):
        with pytest.raises(gx.Forbidden) as refused:
            attempt()
        assert "Object 'locked/r' is subject to bucket's retention policy" in str(refused.value)
    blob.metadata = {"k": "v"}
    blob.patch()  # metadata may change under the policy
    assert bucket.get_blob("r").metadata == {"k": "v"}  # type: ignore[union-attr]
    bucket.reload()
    bucket.lock_retention_policy()
    bucket.reload()
    assert bucket.retention_policy_locked
    bucket.retention_period = 60
    with pytest.raises(gx.Forbidden):
        bucket.patch(retry=None)


def test_listing_pages_in_name_order(gcs: StorageEmulator) -> None:
    gcs.create_bucket("b")
    bucket = gcs.client().bucket("b")
    for name in ("p/c", "p/a", "q/z", "p/b"):
        bucket.blob(name).upload_from_string(b"")
    pages: list[list[Any]] = [[b.name for b in page] for page in
                              gcs.client().list_blobs("b", prefix="p/", max_results=None,
                                                      page_size=2).pages]
    assert pages == [["p/a", "p/b"], ["p/c"]]
    with pytest.raises(gx.NotFound):
        list(gcs.client().list_blobs("nothing"))
