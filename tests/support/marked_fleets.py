"""Fleets whose markers an attacker forges or copies: their owners file, configuration and
clock, a mark written long ago, and a GCP fleet holding its marker signing key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from workload_ids.clock import format_time
from workload_ids.model import QuarantineMark, encode_mark

from .cli import run_cli
from .gcp import OWNERS as GCP_OWNERS
from .gcp import PROJECT, gcp_workload
from .trust import TEST_TRUST

OWNERS = """\
owners:
  - {id: team-a, kind: group, active: true, members: [bob]}
  - {id: bob, kind: person, active: true}
  - {id: alice, kind: person, active: false}
  - {id: team-payments, kind: group, active: true, members: [bob]}
"""
CONFIG = """\
owners: {source: file, path: owners.yaml}
audit: {path: audit.jsonl}
cleanup: {grace: 7d, minAge: 1h, maxShare: 1}
credentials: {verify: {interval: 0s}}
""" + TEST_TRUST
_START = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
START = format_time(_START)
DUE = format_time(_START + timedelta(days=7))
AFTER_GRACE = format_time(_START + timedelta(days=7, seconds=1))
# What an attacker writes: quarantined long ago, due long ago.
PAST_MARK = encode_mark(QuarantineMark(datetime(2020, 1, 1, tzinfo=UTC), "no-manifest",
                                       datetime(2020, 1, 2, tzinfo=UTC)))
GRACE_RESTARTS = "quarantine mark not proven by enforcement; grace restarts"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


def by_identity(out: str) -> dict[str, dict[str, Any]]:
    """The identities of a cleanup JSON output, by identity name."""
    return {i["identity"]: i for i in json.loads(out)["identities"]}


def role_tags(iam: Any, role: str) -> dict[str, str]:
    """A role's tags as IAM holds them."""
    return {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role)["Tags"]}


@pytest.fixture
def gcp_keyed(manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, Path]]:
    """svc-a (declared) and svc-d (applied, its manifest then removed), at START; yields
    the IAM emulator, the Secret Manager emulator holding the signing key, the folder."""
    from workload_ids.sandbox.gcp.iam import IamEmulator
    from workload_ids.sandbox.gcp.local import start_key_store
    from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, ResourceManagerEmulator
    from workload_ids.sandbox.gcp.resourcepolicy import ResourcePolicyEmulator
    iam, rm = IamEmulator(), ResourceManagerEmulator(projects=ProjectRegistry())
    res = ResourcePolicyEmulator()
    iam.add_project(PROJECT)
    rm.add_project(PROJECT)
    keys, keys_url = start_key_store([PROJECT])
    Path("owners.yaml").write_text(GCP_OWNERS)
    Path("workload-ids.yaml").write_text(
        f"gcp: {{iamEndpoint: '{iam.start()}', resourceManagerEndpoint: '{rm.start()}', "
        f"resourcePolicyEndpoint: '{res.start()}', secretManagerEndpoint: '{keys_url}', "
        "sandboxCredentials: true}\n"
        "owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
        "cleanup: {grace: 7d, minAge: 1h, maxShare: 1}\n" + TEST_TRUST)
    folder = manifests({f"{n}.yaml": gcp_workload(name=n, owner="team-a") for n in ("svc-a", "svc-d")})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    (folder / "svc-d.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    yield iam, keys, folder
    for emulator in (iam, rm, res, keys):
        emulator.stop()
