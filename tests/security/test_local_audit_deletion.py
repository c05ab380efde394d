"""Deletion needs an audit trail that outlives the runner (issue 14 item 4, review H3).

A deleted identity comes back only from the restore bundle cleanup writes before the
teardown. With the trail in a local file (a CI runner's checkout, a pod's disk) that
bundle is gone when the job ends, so ``cleanup --apply`` holds due deletions unless the
operator passes ``--delete-with-local-audit``; quarantine, release and transfer still run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from support.aws import snapshot, workload
from support.cli import run_cli
from support.leavers import AFTER_GRACE, CONFIG, OWNERS, START, by_identity

from workload_ids.audit import records
from workload_ids.model import MARK_TAG

HELD = "deletion needs a durable audit sink (audit.sink"


@pytest.fixture
def fleet(aws: Any, manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """svc-b (owner alice, gone) and svc-d (manifest removed), applied, with the audit trail
    in the local file ``audit.jsonl``."""
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    folder: Path = manifests({f"{n}.yaml": workload(n, owner=o) for n, o in
                              [("svc-a", "team-a"), ("svc-b", "alice"), ("svc-d", "team-a")]})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    (folder / "svc-d.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    return folder


def _roles(iam: Any) -> set[str]:
    return {r["RoleName"] for r in iam.list_roles()["Roles"]}


def test_without_the_flag_a_local_audit_file_deletes_nothing(aws: Any, fleet: Path) -> None:
    assert run_cli("cleanup", str(fleet), "--apply").code == 0  # quarantine svc-b and svc-d
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    before = snapshot(aws)
    logged = len(list(records(Path("audit.jsonl"))))

    dry = run_cli("cleanup", str(fleet), "--output", "json", "--detailed-exitcode")
    found = by_identity(json.loads(dry.out))
    assert dry.code == 2, dry.out + dry.err  # held, and waiting for a person: pending
    assert json.loads(dry.out)["summary"]["held"] == 2
    for role in ("wid_prod_svc-b", "wid_prod_svc-d"):
        assert found[role]["action"] is None and HELD in found[role]["problem"]

    result = run_cli("cleanup", str(fleet), "--apply")
    assert result.code == 0, result.out + result.err
    assert "note: 2 deletion(s) held: deletion needs a durable audit sink" in result.out
    assert "or rerun with --delete-with-local-audit" in result.out
    assert "WITHHELD: deletion needs a durable audit sink" in result.out
    assert snapshot(aws) == before
    written = list(records(Path("audit.jsonl")))[logged:]
    assert not [r for r in written if r["action"] in ("restore-bundle", "delete")]


def test_reversible_actions_still_run_while_deletions_are_held(aws: Any, fleet: Path) -> None:
    assert run_cli("cleanup", str(fleet), "--apply").code == 0
    Path("owners.yaml").write_text(OWNERS.replace("{id: alice, kind: person, active: false}",
                                                  "{id: alice, kind: person, active: true}"))
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    result = run_cli("cleanup", str(fleet), "--apply", "--output", "json")
    assert result.code == 0, result.out + result.err
    doc = json.loads(result.out)
    assert [(r["identity"], r["action"], r["ok"]) for r in doc["results"]] == \
        [("wid_prod_svc-b", "release", True)]
    assert MARK_TAG not in {t["Key"] for t in aws.list_role_tags(RoleName="wid_prod_svc-b")["Tags"]}
    assert by_identity(doc)["wid_prod_svc-d"]["problem"].startswith("deletion needs a durable")
    assert "wid_prod_svc-d" in _roles(aws)


def test_the_flag_accepts_the_local_file_and_deletes(aws: Any, fleet: Path) -> None:
    assert run_cli("cleanup", str(fleet), "--apply").code == 0
    os.environ["WORKLOAD_IDS_CLOCK"] = AFTER_GRACE
    result = run_cli("cleanup", str(fleet), "--apply", "--delete-with-local-audit", "--output", "json")
    assert result.code == 0, result.out + result.err
    assert sorted((r["identity"], r["action"]) for r in json.loads(result.out)["results"]) == \
        [("wid_prod_svc-b", "delete"), ("wid_prod_svc-d", "delete")]
    assert not {"wid_prod_svc-b", "wid_prod_svc-d"} & _roles(aws)
    assert {r["identity"] for r in records(Path("audit.jsonl")) if r["action"] == "restore-bundle"} == \
        {"wid_prod_svc-b", "wid_prod_svc-d"}


def test_help_names_the_flag() -> None:
    result = run_cli("cleanup", "--help")
    assert "--delete-with-local-audit" in result.out and "audit.sink" in result.out
