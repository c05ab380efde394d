"""The durable, signed audit trail in a cloud sink (issue 14 items 4, 5, 7; review H3).

Each attack is made the way an attacker with write access to the store (but not the
signing key) would make it, through the cloud's own API, and each test checks that the
guard refuses it: ``prepare`` (the start of every changing run) and ``audit verify``
find forged, unsigned, truncated, reordered, gapped and edited trails, and nothing
changes in the cloud. A sink that is down changes nothing; a crash at every call of an
audit write, then a rerun, loses and doubles no record.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.aws import workload
from support.cli import run_cli
from support.trust import TEST_TRUST

from workload_ids.audit import digest, open_store
from workload_ids.calls import CallRecord, CallSeam, FailAt, Killed, RetryPolicy
from workload_ids.config import load_config
from workload_ids.signing import AUDIT, SigningKey, new_key_material

BUCKET = "acme-audit"
PREFIX = "workload-ids/prod"
SECRET = "workload-ids/audit-signing-key"
FOREIGN = "arn:aws:iam::999999999999:root"


# --- one sink per cloud, behind the same helpers ---------------------------------------------

@dataclass
class Sink:
    """A sink on one local cloud: its config block, and raw access to the store as an
    attacker (or a test) has it."""

    cloud: str
    config: str
    names: Callable[[], list[str]]  # record object names under PREFIX/, in order
    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]  # as an attacker: S3 a new version; elsewhere over the lock
    delete: Callable[[str], None]  # S3: a delete marker; elsewhere for good, over the lock
    purge: Callable[[str], None]  # for good: what an admin past the lock can do
    key: SigningKey
    head: str  # the anchor object's name under PREFIX/
    down: Callable[[], None]  # the store stops answering
    # which seam calls are the sink's, and which of those write a record
    ours: Callable[[CallRecord], bool]
    writes_record: Callable[[CallRecord], bool]

    def record(self, seq: int) -> dict[str, Any]:
        return dict(json.loads(self.read(f"records/{seq:012d}.json")))

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(self.read(n)) for n in self.names()]

    def anchor(self) -> dict[str, Any]:
        return dict(json.loads(self.read(self.head).strip().split(b"\n")[-1]))


def _s3_sink(*, lock: bool = True, retention: bool = True) -> Sink:
    import boto3
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=lock)
    if lock and retention:
        s3.put_object_lock_configuration(Bucket=BUCKET, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    material = new_key_material()
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=SECRET, SecretString=material)

    def names() -> list[str]:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/records/").get("Contents", [])
        return sorted(o["Key"][len(PREFIX) + 1:] for o in listed)

    def read(name: str) -> bytes:
        return bytes(s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}")["Body"].read())

    def write(name: str, data: bytes) -> None:
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=data)

    def delete(name: str) -> None:
        s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}")

    def purge(name: str) -> None:
        listed = s3.list_object_versions(Bucket=BUCKET, Prefix=f"{PREFIX}/{name}")
        for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]:
            if v["Key"] == f"{PREFIX}/{name}":
                s3.delete_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"],
                                 BypassGovernanceRetention=True)

    def down() -> None:  # moto in process cannot stop: the bucket is gone instead
        path = Path("workload-ids.yaml")
        path.write_text(path.read_text().replace(f"s3://{BUCKET}/", "s3://acme-audit-gone/"))

    config = f"audit:\n  sink:\n    url: s3://{BUCKET}/{PREFIX}\n    signingKey: {SECRET}\n"
    return Sink("aws", config, names, read, write, delete, purge,
                SigningKey.from_stored(material, SECRET), "head.json", down,
                lambda c: c.operation.startswith(("s3.", "secretsmanager.")),
                lambda c: c.operation == "s3.put_object" and "/records/" in str(c.params.get("Key")))


@contextlib.contextmanager
def _azure_sink(*, immutable: bool = True, blob: Any = None) -> Iterator[Sink]:
    """Our Key Vault emulator holding the key, and a blob service: ours (with the
    container's immutability policy, which Azurite lacks) unless ``blob`` is given."""
    import tempfile

    from azure.keyvault.secrets import SecretClient

    from workload_ids.audit.azure_blob import sandbox_token
    from workload_ids.providers.azure.clients import StaticTokenCredential
    from workload_ids.sandbox.azure.blob import BlobEmulator
    from workload_ids.sandbox.azure.keyvault import KeyVaultEmulator
    vault = KeyVaultEmulator()
    ours = BlobEmulator() if blob is None else None
    folder = tempfile.mkdtemp(prefix="sink-azure-")
    try:
        vault_url = vault.start()
        material = new_key_material()
        SecretClient(vault_url, StaticTokenCredential(),
                     **vault.client_kwargs()).set_secret("audit-signing-key", material)
        if ours is not None:
            ours.start()
            if immutable:
                ours.set_immutability_policy("audit", 1)
            else:
                ours.create_container("audit")
            container_url, blob_ca = ours.container_url("audit"), ours.ca_bundle_path
        else:
            container_url, blob_ca = blob.container_url("audit"), blob.ca_bundle
        bundle = Path(folder) / "ca.pem"
        bundle.write_text(Path(vault.ca_bundle_path).read_text() + Path(blob_ca).read_text())
        from azure.storage.blob import ContainerClient
        container = ContainerClient.from_container_url(
            container_url, credential=StaticTokenCredential(sandbox_token()),
            connection_verify=str(bundle), retry_total=0)
        if blob is not None:
            container.create_container()

        @contextlib.contextmanager
        def over_the_lock() -> Iterator[None]:
            """An admin deletes the container's (unlocked) policy, acts, and puts it back."""
            kept = ours._containers["audit"].immutability if ours is not None else None
            if ours is not None:
                ours._containers["audit"].immutability = None
            try:
                yield
            finally:
                if ours is not None:
                    ours._containers["audit"].immutability = kept

        def names() -> list[str]:
            return sorted(b.name[len(PREFIX) + 1:]
                          for b in container.list_blobs(name_starts_with=f"{PREFIX}/records/"))

        def read(name: str) -> bytes:
            return bytes(container.get_blob_client(f"{PREFIX}/{name}").download_blob().readall())

        def write(name: str, data: bytes) -> None:
            with over_the_lock():
                container.get_blob_client(f"{PREFIX}/{name}").upload_blob(data, overwrite=True)

        def delete(name: str) -> None:
            with over_the_lock():
                container.get_blob_client(f"{PREFIX}/{name}").delete_blob()

        config = (f"azure:\n  caBundle: {bundle}\n  sandboxCredentials: true\n"
                  f"audit:\n  sink:\n    url: {container_url}/{PREFIX}\n"
                  f"    signingKey: {vault_url}/secrets/audit-signing-key\n")
        yield Sink("azure", config, names, read, write, delete, delete,
                   SigningKey.from_stored(material, "vault"), "head-000000",
                   (ours or blob).stop, lambda c: c.provider == "azblob",
                   lambda c: c.operation == "blob.upload_blob")
    finally:
        vault.stop()
        if ours is not None:
            ours.stop()
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _gcs_sink(*, retention: bool = True) -> Iterator[Sink]:
    """Our Secret Manager emulator holding the key, and our Cloud Storage emulator (neither
    PyPI emulator keeps preconditions and retention policies) with a retention policy."""
    from workload_ids.sandbox.gcp.secretmanager import SecretManagerEmulator
    from workload_ids.sandbox.gcp.storage import StorageEmulator
    secrets, gcs = SecretManagerEmulator(sandbox=True), StorageEmulator()
    try:
        secrets.start()
        gcs.start()
        material = new_key_material()
        client = secrets.client()
        client.create_secret(request={"parent": "projects/acme-audit", "secret_id": "audit-key",
                                      "secret": {"replication": {"automatic": {}}}})
        client.add_secret_version(request={"parent": "projects/acme-audit/secrets/audit-key",
                                           "payload": {"data": material.encode()}})
        gcs.create_bucket(BUCKET, retention_seconds=86400 if retention else None)
        bucket = gcs.client().bucket(BUCKET)

        @contextlib.contextmanager
        def over_the_lock() -> Iterator[None]:
            """An admin removes the (unlocked) policy, acts, and puts it back."""
            gcs.drop_retention(BUCKET)
            try:
                yield
            finally:
                gcs.create_bucket(BUCKET, retention_seconds=86400 if retention else None)

        def names() -> list[str]:
            return sorted(b.name[len(PREFIX) + 1:] for b in gcs.client().list_blobs(
                BUCKET, prefix=f"{PREFIX}/records/"))

        def read(name: str) -> bytes:
            if name == "head":  # the anchor is the metadata of the object `head`
                blob = bucket.get_blob(f"{PREFIX}/head")
                return str(blob.metadata["workload-ids-head"]).encode()
            return bytes(bucket.blob(f"{PREFIX}/{name}").download_as_bytes())

        def write(name: str, data: bytes) -> None:
            if name == "head":
                blob = bucket.blob(f"{PREFIX}/head")
                blob.metadata = {"workload-ids-head": data.decode()}
                blob.patch()
                return
            with over_the_lock():
                bucket.blob(f"{PREFIX}/{name}").upload_from_string(data)

        def delete(name: str) -> None:
            with over_the_lock():
                bucket.blob(f"{PREFIX}/{name}").delete()

        config = (f"{_gcp_block(secrets.grpc_target, gcs.url)}"
                  f"audit:\n  sink:\n    url: gs://{BUCKET}/{PREFIX}\n"
                  f"    signingKey: projects/acme-audit/secrets/audit-key\n")
        yield Sink("gcp", config, names, read, write, delete, delete,
                   SigningKey.from_stored(material, "gcp"), "head", gcs.stop,
                   lambda c: c.provider == "gcp",
                   lambda c: c.operation == "storage.objects.insert"
                   and c.params.get("content_type") == "application/json")
    finally:
        secrets.stop()
        gcs.stop()


def _gcp_block(secret_manager: str, storage: str) -> str:
    return (f"gcp:\n  secretManagerEndpoint: '{secret_manager}'\n  storageEndpoint: '{storage}'\n"
            "  sandboxCredentials: true\n")


CLOUDS = ["aws", "azure", "gcp"]


@contextlib.contextmanager
def _any_sink(cloud: str) -> Iterator[Sink]:
    """A fresh sink on ``cloud``, and the working directory's config pointing at it."""
    with contextlib.ExitStack() as stack:
        if cloud == "aws":
            made = _s3_sink()
        elif cloud == "azure":
            made = stack.enter_context(_azure_sink())
        else:
            made = stack.enter_context(_gcs_sink())
        Path("workload-ids.yaml").write_text(
            "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + made.config)
        yield made


@pytest.fixture(params=CLOUDS)
def sink(request: pytest.FixtureRequest, aws: Any) -> Iterator[Sink]:
    """A sink on each cloud (the workloads the tests apply are AWS's, on moto: the sink's
    cloud need not be the workloads')."""
    with _any_sink(request.param) as made:
        assert made.cloud == request.param
        yield made


@pytest.fixture
def s3_sink(aws: Any) -> Sink:
    sink = _s3_sink()
    Path("workload-ids.yaml").write_text(
        "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + sink.config)
    return sink


def _apply(manifests: Any, *names: str) -> Any:
    folder = manifests({f"{n}.yaml": workload(n) for n in names})
    return run_cli("apply", "--auto-approve", str(folder))


def _roles(iam: Any) -> list[str]:
    return sorted(r["RoleName"] for r in iam.list_roles(PathPrefix="/workload-ids/")["Roles"])


# --- the happy path -----------------------------------------------------------------------------

def test_apply_writes_signed_chained_records_to_the_sink_and_verify_reads_them(sink: Sink, aws: Any,
                                                                        manifests: Any) -> None:
    result = _apply(manifests, "svc-a", "svc-b")
    assert result.code == 0, result.out + result.err
    records = sink.records()
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1)) and len(records) >= 2
    for r in records:
        assert r["keyId"] == sink.key.key_id
        assert sink.key.verify(AUDIT, {"seq": r["seq"], "hash": r["hash"]}, r["sig"])
    head = sink.anchor()
    assert (head["seq"], head["hash"]) == (len(records), records[-1]["hash"])
    assert not Path("audit.jsonl").exists()  # the sink replaces the local file
    check = run_cli("audit", "verify")
    assert check.code == 0, check.out + check.err
    assert f"OK: {len(records)} record(s) in " in check.out and PREFIX in check.out
    assert sink.key.material.hex() not in check.out + check.err + result.out + result.err


# --- attacks on the stored trail: prepare refuses, verify names the record, nothing changes ----

def _forge(sink: Sink, body: dict[str, Any], *, key: SigningKey | None,
           lifted: dict[str, Any] | None = None) -> bytes:
    """A record chained onto the last one, as someone with write access writes it: signed
    with ``key`` (an attacker's own), with the key id and signature ``lifted`` from a
    genuine record, or not signed at all."""
    last = sink.records()[-1]
    record = {**body, "seq": last["seq"] + 1, "prev": last["hash"]}
    if key is not None or lifted is not None:
        record["keyId"] = key.key_id if key is not None else lifted["keyId"]  # type: ignore[index]
    record["hash"] = digest(record)
    if key is not None:
        record["sig"] = key.mac(AUDIT, {"seq": record["seq"], "hash": record["hash"]})
    elif lifted is not None:
        record["sig"] = lifted["sig"]
    return json.dumps(record).encode()


BUNDLE = {"time": "2026-12-01T00:00:00Z", "actor": "cleanup", "command": "cleanup",
          "workload": "prod/ledger-export", "provider": "aws", "target": "123456789012",
          "identity": "wid_prod_ledger-export", "action": "restore-bundle", "result": "ok",
          "before": {"trust": FOREIGN, "inline": {"admin": "*:*"}}, "after": None}


def _refused(manifests: Any, aws: Any, fragment: str) -> None:
    """A changing run refuses with ``fragment`` and changes nothing; verify says TAMPERED."""
    before = _roles(aws)
    result = _apply(manifests, "svc-a", "svc-late")
    assert result.code == 1, result.out + result.err
    assert fragment in result.err, result.err
    assert "Nothing was changed" in result.err and "Traceback" not in result.err
    assert _roles(aws) == before and "wid_prod_svc-late" not in before


@pytest.mark.parametrize(("forgery", "fragment"), [
    ("unsigned", "unsigned record: it was not written by workload-ids"),
    ("own-key", "bad signature"),
    ("replayed-signature", "bad signature"),
])
def test_forged_records_are_refused_by_prepare_and_verify(sink: Sink, aws: Any, manifests: Any,
                                                          forgery: str, fragment: str) -> None:
    assert _apply(manifests, "svc-a").code == 0
    count = len(sink.names())
    if forgery == "unsigned":
        data = _forge(sink, BUNDLE, key=None)
    elif forgery == "own-key":
        data = _forge(sink, BUNDLE, key=SigningKey.from_stored(new_key_material(), "attacker"))
    else:  # the real key id and a genuine signature, lifted from another record
        data = _forge(sink, BUNDLE, key=None, lifted=sink.record(1))
    sink.write(f"records/{count + 1:012d}.json", data)
    _refused(manifests, aws, fragment)
    check = run_cli("audit", "verify")
    assert check.code == 1 and f"{PREFIX} record {count + 1}: " in check.out and "TAMPERED" in check.out
    assert fragment in check.out
    restore = run_cli("restore", "wid_prod_ledger-export")
    assert restore.code == 1 and fragment in restore.err  # the forged bundle is never used


def test_a_record_overwritten_in_place_is_found_and_the_original_is_what_is_read(
        s3_sink: Sink, aws: Any, manifests: Any) -> None:
    assert _apply(manifests, "svc-a", "svc-b").code == 0
    original = s3_sink.record(1)
    edited = {**original, "identity": "wid_prod_someone-else"}
    edited["hash"] = digest(edited)  # a consistent hash; the signature cannot follow
    s3_sink.write("records/000000000001.json", json.dumps(edited).encode())
    _refused(manifests, aws, "record 1 was overwritten or hidden after it was written")
    check = run_cli("audit", "verify")
    assert check.code == 1 and "record 1: record 1 was overwritten" in check.out
    from workload_ids.audit.sink import SinkCache, open_sink
    read = list(open_sink(load_config(), None, SinkCache())._walk(
        open_sink(load_config(), None, SinkCache())._shared.store.listing(CallSeam())))
    assert read[0][1]["identity"] == original["identity"]  # the locked first version


def test_a_record_edited_for_good_is_found(sink: Sink, aws: Any, manifests: Any) -> None:
    assert _apply(manifests, "svc-a", "svc-b").code == 0
    last = len(sink.names())
    record = sink.record(last)
    sink.purge(f"records/{last:012d}.json")
    sink.write(f"records/{last:012d}.json", json.dumps({**record, "action": "nothing"}).encode())
    _refused(manifests, aws, "record edited: its hash does not match")


def test_a_truncated_trail_is_refused(sink: Sink, aws: Any, manifests: Any) -> None:
    assert _apply(manifests, "svc-a", "svc-b").code == 0
    last = len(sink.names())
    sink.purge(f"records/{last:012d}.json")
    _refused(manifests, aws, f"the trail ends at record {last - 1}, but the head anchor names record "
                             f"{last}: records were removed from the end (truncated)")
    check = run_cli("audit", "verify")
    assert check.code == 1 and "truncated" in check.out


def test_a_gap_in_the_trail_is_refused(sink: Sink, aws: Any, manifests: Any) -> None:
    assert _apply(manifests, "svc-a", "svc-b").code == 0
    sink.purge("records/000000000001.json")
    _refused(manifests, aws, "record 1 is missing: a gap in the trail")
    assert run_cli("audit", "verify").code == 1


def test_reordered_records_are_refused(sink: Sink, aws: Any, manifests: Any) -> None:
    assert _apply(manifests, "svc-a", "svc-b").code == 0
    first, second = sink.read("records/000000000001.json"), sink.read("records/000000000002.json")
    for name in ("records/000000000001.json", "records/000000000002.json"):
        sink.purge(name)
    sink.write("records/000000000001.json", second)
    sink.write("records/000000000002.json", first)
    check = run_cli("audit", "verify")
    assert check.code == 1 and "record 1: record stored as number 1 says it is number 2" in check.out
    # prepare checks from the anchor on: here the tail still checks, so it is the first
    # reader of the whole trail (every changing command reads it) that refuses.
    result = _apply(manifests, "svc-late")
    assert result.code == 1 and "records were moved or reordered" in result.err
    assert "wid_prod_svc-late" not in _roles(aws)


def test_a_removed_anchor_or_a_forged_one_is_refused(sink: Sink, aws: Any, manifests: Any) -> None:
    assert _apply(manifests, "svc-a").code == 0
    head = sink.anchor()
    sink.write(sink.head, json.dumps({**head, "seq": 1, "hash": sink.record(1)["hash"],
                                      "sig": "0" * 64}).encode())
    _refused(manifests, aws, "the head anchor has a bad signature")
    sink.delete(sink.head)  # S3: a delete marker hides it
    _refused(manifests, aws, "records exist but the head anchor is missing")


def test_a_wiped_s3_trail_is_not_taken_for_a_new_one(s3_sink: Sink, aws: Any, manifests: Any) -> None:
    assert _apply(manifests, "svc-a").code == 0
    for name in [*s3_sink.names(), "head.json"]:
        s3_sink.delete(name)  # delete markers: the locked versions stay
    _refused(manifests, aws, "record 1 was overwritten or hidden")


@pytest.mark.parametrize(("lock", "retention", "fragment"), [
    (False, False, "does not have Object Lock enabled"),
    (True, False, "has Object Lock but no default retention"),
])
def test_a_bucket_that_is_not_append_only_is_refused(aws: Any, manifests: Any, lock: bool,
                                                     retention: bool, fragment: str) -> None:
    sink = _s3_sink(lock=lock, retention=retention)
    Path("workload-ids.yaml").write_text(
        "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + sink.config)
    result = _apply(manifests, "svc-a")
    assert result.code == 1 and fragment in result.err and "Nothing was changed" in result.err
    assert _roles(aws) == [] and sink.names() == []


def test_a_container_without_an_immutability_policy_is_refused(aws: Any, manifests: Any) -> None:
    with _azure_sink(immutable=False) as sink:
        Path("workload-ids.yaml").write_text(
            "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + sink.config)
        result = _apply(manifests, "svc-a")
        assert result.code == 1 and "container audit has no immutability policy" in result.err
        assert "Nothing was changed" in result.err and "--allow-protected-append-writes" in result.err
        assert _roles(aws) == [] and sink.names() == []


def test_under_the_immutability_policy_records_cannot_be_overwritten_or_deleted(
        aws: Any, manifests: Any) -> None:
    """The cloud's own control, which the sink relies on (our emulator, as Azurite has none)."""
    from azure.core.exceptions import HttpResponseError
    with _azure_sink() as sink:
        Path("workload-ids.yaml").write_text(
            "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + sink.config)
        assert _apply(manifests, "svc-a").code == 0
        container = open_store(load_config())._shared.store.container
        blob = container.get_blob_client(f"{PREFIX}/records/000000000001.json")
        for attempt in (lambda: blob.upload_blob(b"{}", overwrite=True), blob.delete_blob):
            with pytest.raises(HttpResponseError) as refused:
                attempt()
            assert refused.value.error_code == "BlobImmutableDueToPolicy"


def test_a_bucket_without_a_retention_policy_is_refused(aws: Any, manifests: Any) -> None:
    with _gcs_sink(retention=False) as sink:
        Path("workload-ids.yaml").write_text(
            "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + sink.config)
        result = _apply(manifests, "svc-a")
        assert result.code == 1 and f"bucket {BUCKET} has no retention policy" in result.err
        assert "Nothing was changed" in result.err and _roles(aws) == [] and sink.names() == []


def test_outside_the_sandbox_an_unlocked_retention_policy_is_refused() -> None:
    """The GCS check with real credentials: the policy must be locked. (The sandbox's
    emulator accepts an unlocked one; there the check is the same but for the lock.)"""
    from workload_ids.audit.gcs import GcsStore
    from workload_ids.sandbox.gcp.storage import StorageEmulator
    gcs = StorageEmulator()
    gcs.start()
    try:
        gcs.create_bucket(BUCKET, retention_seconds=86400)
        Path("workload-ids.yaml").write_text(
            f"gcp:\n  storageEndpoint: '{gcs.url}'\n  sandboxCredentials: true\n")
        store = GcsStore(load_config(), BUCKET, PREFIX)
        store.sandbox = False  # as with real credentials (never sent to an emulator)
        seam = CallSeam()
        from workload_ids.audit.gcs import register
        register(seam)
        assert "retention policy is not locked" in str(store.append_only(seam))
        gcs.create_bucket(BUCKET, retention_seconds=86400, locked=True)
        assert store.append_only(seam) is None
    finally:
        gcs.stop()


def test_under_the_retention_policy_records_cannot_be_replaced_or_deleted(aws: Any,
                                                                          manifests: Any) -> None:
    from google.api_core.exceptions import Forbidden
    with _gcs_sink() as sink:
        Path("workload-ids.yaml").write_text(
            "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + sink.config)
        assert _apply(manifests, "svc-a").code == 0
        bucket = open_store(load_config())._shared.store.bucket
        blob = bucket.blob(f"{PREFIX}/records/000000000001.json")
        for attempt in (lambda: blob.upload_from_string(b"{}"), blob.delete):
            with pytest.raises(Forbidden) as refused:
                attempt()
            assert "subject to bucket's retention policy" in str(refused.value)


# --- a sink that is down: nothing changes ----------------------------------------------------

def _no_retries() -> None:
    """The store is down for good in these tests: waiting out the retry budget proves nothing."""
    path = Path("workload-ids.yaml")
    path.write_text(path.read_text() + "calls: {maxAttempts: 1}\n")


def test_a_sink_that_cannot_be_read_at_the_start_changes_nothing(sink: Sink, aws: Any,
                                                               manifests: Any) -> None:
    _no_retries()
    sink.down()
    result = _apply(manifests, "svc-a")
    assert result.code == 1 and "the audit sink " in result.err and "cannot be read (" in result.err
    assert "Nothing more was changed" in result.err and "Traceback" not in result.err, result.err
    assert _roles(aws) == []


def test_an_append_that_fails_stops_the_command_before_its_next_change(sink: Sink, aws: Any,
                                                                     manifests: Any) -> None:
    from workload_ids.apply import apply_plan
    from workload_ids.audit.sink import AuditSinkError
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    folder = manifests({f"{n}.yaml": workload(n) for n in ("svc-a", "svc-b", "svc-c")})
    config = load_config()
    seam = CallSeam(RetryPolicy(max_attempts=2), sleep=lambda s: None)
    plan = build_plan(validate([folder], config).compiled, config, seam)

    def refuse_writes(call: CallRecord) -> str | None:  # the sink refuses writes from here on
        return "denied" if sink.writes_record(call) else None
    seam.inject(refuse_writes)
    with pytest.raises(AuditSinkError) as refused:
        apply_plan(plan, concurrency=1)
    assert "cannot be written (" in str(refused.value) and "Nothing more was changed" in str(refused.value)
    # The first change was made before its record failed; nothing after it was.
    assert len(_roles(aws)) == 1
    assert sink.names() == []


@pytest.mark.parametrize("cloud", CLOUDS)
def test_cleanup_with_the_sink_down_changes_nothing(aws: Any, manifests: Any, cloud: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from support.leavers import CONFIG, OWNERS, START
    with _any_sink(cloud) as sink:
        Path("owners.yaml").write_text(OWNERS)
        Path("workload-ids.yaml").write_text(CONFIG.replace("audit: {path: audit.jsonl}\n", "")
                                             + sink.config)
        folder = manifests({"svc-b.yaml": workload("svc-b", owner="alice")})
        assert run_cli("apply", "--auto-approve", str(folder)).code == 0
        tags = aws.list_role_tags(RoleName="wid_prod_svc-b")["Tags"]
        _no_retries()
        sink.down()
        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
        result = run_cli("cleanup", str(folder), "--apply")
        assert result.code == 1 and "the audit sink " in result.err and "Traceback" not in result.err
        assert aws.list_role_tags(RoleName="wid_prod_svc-b")["Tags"] == tags  # not quarantined


# --- a crash at every call of an audit write, then a rerun ------------------------------------

def _fresh_apply(cloud: str, fault: int | None, folder: Path) -> tuple[list[dict[str, Any]],
                                                                      list[CallRecord], Sink]:
    """Apply the manifests in ``folder`` on a fresh cloud and sink, with a kill at call
    ``fault`` (then a rerun); return the trail as stored and the sink's calls."""
    import boto3
    from support.aws import seed

    from workload_ids.apply import apply_plan
    from workload_ids.plan import build_plan
    from workload_ids.sandbox.aws import in_process_aws
    from workload_ids.validate import validate
    calls: list[CallRecord] = []
    with in_process_aws():
        seed(boto3.client("iam", region_name="us-east-1"))
        with _any_sink(cloud) as sink:

            def run(seam: CallSeam) -> None:
                config = load_config()  # a new process: nothing cached
                plan = build_plan(validate([folder], config).compiled, config, seam)
                apply_plan(plan, concurrency=1)
            seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
            seam.observers.append(lambda c: calls.append(c) if sink.ours(c) else None)
            if fault is not None:
                seam.inject(FailAt(fault, "kill"))
            with contextlib.suppress(Killed):
                run(seam)
            stored_after_crash = sink.records()
            if fault is not None:
                run(CallSeam(RetryPolicy(), sleep=lambda s: None))
            trail = sink.records()
            assert trail[:len(stored_after_crash)] == stored_after_crash, "a stored record was lost or moved"
            check = open_store(load_config()).verify()
            assert check.ok, check
            head = sink.anchor()
            assert (head["seq"], head["hash"]) == (len(trail), trail[-1]["hash"])
            return trail, calls, sink


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_crash_at_every_call_of_an_audit_write_loses_and_doubles_no_record(manifests: Any,
                                                                             cloud: str) -> None:
    folder = manifests({f"{n}.yaml": workload(n) for n in ("svc-a", "svc-b")})
    clean, calls, sink = _fresh_apply(cloud, None, folder)
    wanted = [(r["workload"], r["action"], r["identity"]) for r in clean]
    assert len(wanted) == len(set(wanted)) >= 2
    # prepare's reads, then for each record its write and its anchor's
    assert len(calls) >= 4 + 2 * len(clean) and sum(map(sink.writes_record, calls)) == len(clean)
    for call in calls:
        trail, _, _ = _fresh_apply(cloud, call.number, folder)
        got = [(r["workload"], r["action"], r["identity"]) for r in trail]
        where = f"kill at call {call.number} ({call.operation})"
        assert len(got) == len(set(got)), f"{where}: a record was doubled"
        missing = [w for w in wanted if w not in got]
        # A kill just before a record's own write loses that one record: its change was
        # made, and the rerun finds nothing left to change (a record follows its change,
        # as with the local file). Every other point loses nothing.
        assert len(missing) <= (1 if sink.writes_record(call) else 0), f"{where}: lost {missing}"


# --- a fresh container: cleanup in one, restore in another ------------------------------------

def test_cleanup_in_one_fresh_container_and_restore_in_another(aws: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from support.leavers import AFTER_GRACE, CONFIG, OWNERS, START
    sink = _s3_sink()
    config = CONFIG.replace("audit: {path: audit.jsonl}\n", "") + sink.config

    def container(name: str) -> Path:
        """An empty working directory holding only the config (and the owners it names)."""
        folder = tmp_path / name
        folder.mkdir()
        (folder / "workload-ids.yaml").write_text(config)
        (folder / "owners.yaml").write_text(OWNERS)
        monkeypatch.chdir(folder)
        return folder

    first = container("apply")
    (first / "m").mkdir()
    (first / "m" / "svc-b.yaml").write_text(workload("svc-b", owner="alice"))
    assert run_cli("apply", "--auto-approve", "m").code == 0
    original = aws.get_role(RoleName="wid_prod_svc-b")["Role"]["AssumeRolePolicyDocument"]
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    for moment, name in ((START, "quarantine"), (AFTER_GRACE, "delete")):
        os.environ["WORKLOAD_IDS_CLOCK"] = moment
        folder = container(name)
        (folder / "m").mkdir()
        (folder / "m" / "svc-b.yaml").write_text(workload("svc-b", owner="alice"))
        result = run_cli("cleanup", "m", "--apply")
        assert result.code == 0, result.out + result.err
    assert "wid_prod_svc-b" not in _roles(aws)
    container("restore")
    restored = run_cli("restore", "wid_prod_svc-b")
    assert restored.code == 0, restored.out + restored.err
    assert aws.get_role(RoleName="wid_prod_svc-b")["Role"]["AssumeRolePolicyDocument"] == original
    assert not list(tmp_path.rglob("audit.jsonl"))  # every record went to the sink
    actions = [r["action"] for r in sink.records()]
    assert actions.count("restore-bundle") == 1 and actions[-1] == "restore"
    assert run_cli("audit", "verify").code == 0


# --- the config is a trust root: where the sink and its key may be ------------------------------

@pytest.mark.parametrize(("block", "fragment"), [
    ("audit:\n  sink:\n    url: ftp://acme-audit/p\n    signingKey: k\n",
     "audit.sink.url"),
    ("audit:\n  sink:\n    url: https://evil.example.com/audit/p\n    signingKey: k\n",
     "audit.sink.url points at evil.example.com, which is not an Azure host of that kind"),
    ("audit:\n  sink:\n    url: https://127.0.0.1:9/acct/audit/p\n    signingKey: k\n",
     "audit.sink.url points at a local emulator, but azure.sandboxCredentials is not true"),
    ("audit:\n  sink:\n    url: s3://acme-audit/p\n    signingKey: https://evil.example.com/secrets/k\n",
     "audit.sink.signingKey points at evil.example.com"),
    ("gcp: {storageEndpoint: 'http://storage.example.com'}\n"
     "audit:\n  sink:\n    url: gs://acme-audit/p\n    signingKey: projects/p/secrets/s\n",
     "gcp.storageEndpoint points at storage.example.com, which is not this machine"),
])
def test_a_sink_or_key_off_the_cloud_or_off_this_machine_is_refused(aws: Any, manifests: Any, block: str,
                                                                   fragment: str) -> None:
    Path("workload-ids.yaml").write_text("credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + block)
    result = _apply(manifests, "svc-a")
    assert result.code == 1 and fragment in result.err, result.err
    assert "workload-ids.yaml:" in result.err and "Traceback" not in result.err
    assert _roles(aws) == []
