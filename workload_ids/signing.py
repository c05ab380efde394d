"""Keyed proofs that something was written by workload-ids, not by whoever can write beside it.

Tags, descriptions and audit files can be written by principals with ordinary rights
(``iam:TagRole``, ``iam.serviceAccounts.update``, Tag Contributor, write access to a log).
A value is believed only when it carries an HMAC-SHA256 made with a key that lives in the
cloud's own secret store, readable by the tool's identities alone (``workload-ids
bootstrap`` creates it). One stored key serves several purposes; each purpose gets its own
derived key, so a MAC made for one (an ownership marker) never verifies as another (an
audit record).

Key material is 32 random bytes, stored as 64 lowercase hex characters. It never appears
in output: :class:`SigningKey`'s repr shows only its key id (a fingerprint).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

# Purposes: the derived key for each.
MARKER = "identity-marker/v1"
AUDIT = "audit-record/v1"
ATTESTATION = "owner-attestation/v1"
# What quarantine removed that the tool did not make (Azure role assignments), journalled in
# the audit trail: release and restore recreate only what carries this MAC.
WITHHELD = "withheld-grants/v1"

_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")
# MACs are written where space and alphabet are tight (an IAM tag value: 256 characters
# of letters, digits, spaces and _.:/=+-@), so they are lowercase hex.
MAC_LENGTH = 64
# Where even 64 characters do not fit (a GCP service account's description holds 256 in
# all, and the marker text needs most of them), a MAC may be cut to 32 hex characters:
# 128 bits, still far beyond guessing (NIST SP 800-107 allows truncated HMACs of 64 bits
# and more), and the verifier insists on the same length.
SHORT_MAC_LENGTH = 32


class SigningKeyError(ValueError):
    """Stored key material that is not a key workload-ids made."""


def new_key_material() -> str:
    """Fresh key material, as stored in the cloud's secret store."""
    return secrets.token_hex(32)


def canonical(fields: Mapping[str, object]) -> bytes:
    """The exact bytes a MAC covers: sorted keys, no whitespace, UTF-8."""
    return json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key read from the cloud's secret store; ``where`` names that store, for messages."""

    material: bytes = field(repr=False)
    where: str

    @staticmethod
    def from_stored(text: str, where: str) -> SigningKey:
        """Parse a stored key (64 hex characters); raises SigningKeyError naming ``where`` otherwise."""
        value = text.strip()
        if not _HEX_KEY.match(value):
            raise SigningKeyError(
                f"the signing key at {where} is not 64 hexadecimal characters, so it is not one "
                "workload-ids made; recreate it with `workload-ids bootstrap --apply` (identities "
                "marked with the old key will then be reported as forged until apply re-marks them)")
        return SigningKey(bytes.fromhex(value), where)

    @property
    def key_id(self) -> str:
        """A fingerprint that names the key without revealing it."""
        return hashlib.sha256(b"workload-ids key id\0" + self.material).hexdigest()[:16]

    def _derived(self, purpose: str) -> bytes:
        return hmac.new(self.material, purpose.encode(), hashlib.sha256).digest()

    def mac(self, purpose: str, fields: Mapping[str, object], length: int = MAC_LENGTH) -> str:
        """The MAC of ``fields`` for ``purpose``, as lowercase hex, cut to ``length``
        characters (:data:`MAC_LENGTH` or :data:`SHORT_MAC_LENGTH`)."""
        if length not in (MAC_LENGTH, SHORT_MAC_LENGTH):
            raise ValueError(f"a MAC is {MAC_LENGTH} or {SHORT_MAC_LENGTH} hex characters, not {length}")
        return hmac.new(self._derived(purpose), canonical(fields), hashlib.sha256).hexdigest()[:length]

    def verify(self, purpose: str, fields: Mapping[str, object], mac: str | None,
               length: int = MAC_LENGTH) -> bool:
        """Whether ``mac`` is this key's MAC of ``fields`` for ``purpose`` at exactly
        ``length`` characters (constant time)."""
        if not mac or len(mac) != length:
            return False
        return hmac.compare_digest(self.mac(purpose, fields, length), mac)
