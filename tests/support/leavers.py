"""The AWS leaver fleet's owners file, configuration and clock: the fixture world of the
cleanup tests (quarantine, transfer, release, deletion after grace, restore)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from workload_ids.clock import format_time

from .trust import TEST_TRUST

OWNERS = """\
owners:
  - {id: team-a, kind: group, active: true, members: [bob]}
  - {id: bob, kind: person, active: true}
  - {id: alice, kind: person, active: false}
  - {id: team-payments, kind: group, active: true, members: [alice], successor: team-platform}
  - {id: team-platform, kind: group, active: true, members: [bob]}
"""
CONFIG = """\
owners: {source: file, path: owners.yaml}
audit: {path: audit.jsonl}
cleanup: {grace: 7d, minAge: 1h, maxShare: 1}
credentials: {verify: {interval: 0s}}
""" + TEST_TRUST + """\
"""
# Two hours from now (past minAge for what a test creates), and past the 7d grace period.
_START = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
START, AFTER_GRACE = format_time(_START), format_time(_START + timedelta(days=7, seconds=1))
WITHIN_GRACE = format_time(_START + timedelta(days=4))
DELETE_AFTER = format_time(_START + timedelta(days=7))


def by_identity(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A cleanup JSON report's identities, by identity name."""
    return {i["identity"]: i for i in doc["identities"]}
