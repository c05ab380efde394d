"""The leaver contract on every provider: a workload without a manifest is quarantined,
deleted after its grace period with a restore bundle, restored, and judged afresh."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.cli import run_cli
from support.contract import Cloud

from workload_ids.clock import format_time


def test_leaver_quarantine_release_delete_restore(cloud: Cloud, folder: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "svc-b.yaml").unlink()
    start = datetime.now(UTC) + timedelta(hours=2)
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start)
    quarantined = json.loads(run_cli("cleanup", str(folder), "--apply", "--output", "json").out)
    assert [(r["action"], r["ok"]) for r in quarantined["results"]] == [("quarantine", True)]
    identity = quarantined["results"][0]["identity"]
    held = cloud.snapshot()
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start + timedelta(days=8))
    deleted = json.loads(run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit",
                                 "--output", "json").out)
    assert [(r["identity"], r["action"], r["ok"]) for r in deleted["results"]] == \
        [(identity, "delete", True)]
    assert cloud.snapshot() != held
    assert run_cli("restore", identity).code == 0
    assert run_cli("audit", "verify").code == 0
    # Restored, it is judged afresh: still without a manifest, it is quarantined again.
    again = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    assert {i["identity"]: i["status"] for i in again["identities"]}[identity] == "no-manifest"


# AWS has no deployers: quarantine's deny-all policy binds every function the role is passed to.
@pytest.mark.parametrize("cloud", ["gcp", "azure"], indirect=True)
def test_quarantine_stops_new_attachment_and_restore_gives_it_back(cloud: Cloud, att: Path) -> None:
    """A quarantined identity can be attached to no new runtime: on Azure its deployers'
    Managed Identity Operator assignments go (recorded on the identity, given back on
    release); on GCP the account is disabled, so nothing attached to it gets a token, and
    its policy (deployers included) goes into the restore bundle. Teardown leaves no
    assignment at a deleted identity's scope; restore puts the deployers back."""
    from support.attachments import expected, held
    assert run_cli("apply", "--auto-approve", str(att)).code == 0
    manifest = att.read_text()
    att.unlink()
    start = datetime.now(UTC) + timedelta(hours=2)
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start)
    quarantined = json.loads(run_cli("cleanup", str(att.parent), "--apply", "--output", "json").out)
    assert [(r["action"], r["ok"]) for r in quarantined["results"]] == [("quarantine", True)]
    identity = quarantined["results"][0]["identity"]
    if cloud.name == "azure":
        assert held(cloud) == []
    else:
        assert held(cloud) == expected(cloud)
        assert [a.disabled for a in cloud.local.emulators[0].service_accounts("acme-prod")
                if a.email == identity] == [True]
    # The manifest is back: release gives the deployers back.
    att.write_text(manifest)
    released = json.loads(run_cli("cleanup", str(att.parent), "--apply", "--output", "json").out)
    assert [(r["action"], r["ok"]) for r in released["results"]] == [("release", True)]
    assert held(cloud) == expected(cloud)
    assert run_cli("plan", str(att), "--detailed-exitcode").code == 0
    # Gone for good: quarantined, then deleted with its bundle, then restored.
    att.unlink()
    assert run_cli("cleanup", str(att.parent), "--apply").code == 0
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(start + timedelta(days=8))
    deleted = json.loads(run_cli("cleanup", str(att.parent), "--apply", "--delete-with-local-audit",
                                 "--output", "json").out)
    assert [(r["identity"], r["action"], r["ok"]) for r in deleted["results"]] == [(identity, "delete", True)]
    if cloud.name == "azure":
        from support.attachments import identity_scope
        from support.azure import arm_clients
        _, authz = arm_clients(cloud.local)
        assert [a for a in authz.role_assignments.list_for_subscription()
                if a.scope.lower() == identity_scope().lower()] == []
    restored = run_cli("restore", identity)
    assert restored.code == 0, restored.err + restored.out
    assert held(cloud) == expected(cloud)
