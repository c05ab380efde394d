"""The GCP Secret Manager store (through the real client, against the emulator): key ids
mapped to versions in annotations, tags round-trip, current and previous, etag retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from workload_ids.calls import CallSeam, FailOperation, RetryPolicy
from workload_ids.config import Config, ConfigFile
from workload_ids.model import JOURNAL_TAG, IssuedKey, SecretValue
from workload_ids.providers.gcp.clients import GcpClients
from workload_ids.providers.gcp.secret_store import SecretManagerStore
from workload_ids.sandbox.gcp.secretmanager import SecretManagerEmulator

PROJECT = "acme-prod"
NAME = "workload-ids/prod/vendor-sync"


@pytest.fixture
def store() -> Iterator[tuple[Any, SecretManagerEmulator, CallSeam]]:
    emulator = SecretManagerEmulator(sandbox=True)
    endpoint = emulator.start()
    config = Config(ConfigFile.model_validate({"gcp": {"secretManagerEndpoint": endpoint,
                                                       "sandboxCredentials": True}}), Path.cwd(), None)
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    yield SecretManagerStore(GcpClients(config, seam), PROJECT), emulator, seam
    emulator.stop()


def key(key_id: str, day: int) -> IssuedKey:
    return IssuedKey(key_id, SecretValue(json.dumps({"private_key_id": key_id, "private_key": "PEM"})),
                     datetime(2026, 11, day, tzinfo=UTC))


def test_keys_versions_and_tags_round_trip(store: tuple[Any, SecretManagerEmulator, CallSeam]) -> None:
    secrets, _, _ = store
    assert not secrets.describe(NAME).exists
    secrets.ensure(NAME, {"workload-ids:managed-by": "workload-ids",
                          "workload-ids:manifest-sha256": "ab" * 32})
    secrets.set_tags(NAME, {JOURNAL_TAG: "create-key since=2026-11-20T00:00:00Z"})
    first, second = key("a" * 40, 20), key("b" * 40, 21)
    secrets.put_key(NAME, first, json.loads(first.secret.reveal()))
    secrets.put_key(NAME, second, json.loads(second.secret.reveal()))
    stored = secrets.describe(NAME)
    assert stored.current_key() == "b" * 40 and stored.previous_key() == "a" * 40
    assert stored.issued_at["a" * 40] == datetime(2026, 11, 20, tzinfo=UTC)
    assert stored.tags[JOURNAL_TAG] == "create-key since=2026-11-20T00:00:00Z"
    assert stored.tags["workload-ids:manifest-sha256"] == "ab" * 32
    assert json.loads(secrets.read_key(NAME, "a" * 40).reveal())["private_key_id"] == "a" * 40
    secrets.remove_tags(NAME, [JOURNAL_TAG])
    assert JOURNAL_TAG not in secrets.describe(NAME).tags
    assert set(secrets.describe_many("workload-ids/prod/")) == {NAME}


def test_annotation_edits_redo_on_a_stale_etag(store: tuple[Any, SecretManagerEmulator, CallSeam]) -> None:
    secrets, _, seam = store
    secrets.ensure(NAME, {"workload-ids:managed-by": "workload-ids"})
    seam.inject(FailOperation("secretmanager.update_secret", "conflict", times=2))
    secrets.set_tags(NAME, {"workload-ids:retired": "x"})
    assert secrets.describe(NAME).tags["workload-ids:retired"] == "x"
    assert seam.stats.calls["gcp:secretmanager.update_secret"] == 3
