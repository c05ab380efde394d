"""The keyed proofs behind markers and audit records."""

from __future__ import annotations

import pytest

from workload_ids.signing import AUDIT, MARKER, SigningKey, SigningKeyError, new_key_material


def test_a_mac_verifies_only_for_its_key_purpose_and_fields() -> None:
    key = SigningKey.from_stored(new_key_material(), "test")
    other = SigningKey.from_stored(new_key_material(), "test")
    fields = {"id": "AROA1", "workload": "payments-api", "owner": "alice@example.com"}
    mac = key.mac(MARKER, fields)
    assert key.verify(MARKER, fields, mac)
    assert not other.verify(MARKER, fields, mac)
    assert not key.verify(AUDIT, fields, mac)
    assert not key.verify(MARKER, {**fields, "owner": "mallory@example.com"}, mac)
    assert not key.verify(MARKER, fields, None)
    assert not key.verify(MARKER, fields, mac[:-1])


def test_key_material_never_shows_and_bad_material_is_refused() -> None:
    text = new_key_material()
    key = SigningKey.from_stored(text, "secretsmanager:workload-ids/signing-key")
    assert text not in repr(key) and len(key.key_id) == 16
    with pytest.raises(SigningKeyError, match="not 64 hexadecimal characters"):
        SigningKey.from_stored("hunter2", "somewhere")
