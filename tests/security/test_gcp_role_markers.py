"""Issue 14 item 1 on GCP custom roles: a role's marker is believed only with its MAC.

A custom role's description carries the workload's marker (GCP roles have no labels), and
anyone with ``iam.roles.create`` can write one. The tool signs the marker line
(``mac=``, keyed by the project's signing key, bound to the role's full name) and acts
only on roles whose MAC verifies: a role someone else made with a copied description is
reported ``forged`` and never updated, unbound or deleted, by cleanup or by apply. The
upgrade path: a role signed before roles were (no MAC) at an id apply wants is re-marked by
apply, as service accounts are. Our GCP emulators through the real SDK.
"""

# ruff: noqa: F811  (the shared fixture gcp_keyed is imported, then named as an argument)
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from support.cli import run_cli
from support.marked_fleets import (
    AFTER_GRACE,
    START,
    gcp_keyed,  # noqa: F401  (a fixture)
)

from workload_ids.model import Marker
from workload_ids.providers.gcp import render

PROJECT = "acme-prod"


def _roles(iam: Any) -> dict[str, Any]:
    """Every live custom role of the project, by id."""
    return {r.name.rsplit("/", 1)[1]: r for r in iam.roles(PROJECT)}


def _of(iam: Any, workload: str) -> dict[str, Any]:
    base = render.role_base("wid", "prod", workload)
    return {rid: r for rid, r in _roles(iam).items() if rid.startswith(base)}


def _plant(iam: Any, rid: str, description: str, permissions: list[str]) -> Any:
    """A role made by someone with iam.roles.create, not by workload-ids."""
    iam.client().create_role(request={"parent": f"projects/{PROJECT}", "role_id": rid, "role": {
        "title": "workload-ids prod/svc", "description": description,
        "included_permissions": permissions, "stage": 2}})
    return _roles(iam)[rid]


def _copies(iam: Any, workload: str) -> dict[str, str]:
    """Descriptions an attacker can write from one of ``workload``'s real roles: copied
    whole (its MAC is over another role's name), without the MAC, with a made-up MAC."""
    real = next(iter(_of(iam, workload).values())).description
    mac = Marker.mac_of_text(real.split("\n", 1)[0])
    assert len(mac) == 32, real  # our own roles are signed
    bare = render.unsigned_role_description(real)
    return {"copied": real, "none": bare, "invalid": render.signed_role_description(bare, "0" * 32)}


def test_a_role_with_a_copied_marker_is_forged_and_left_alone_by_apply_and_cleanup(
        gcp_keyed: tuple[Any, Any, Path]) -> None:
    """Roles at svc-a's naming (declared) and at svc-d's (its manifest removed: cleanup
    quarantines, then deletes it): before, apply deleted the first as a stale permission
    set and cleanup the second with its account."""
    iam, _, folder = gcp_keyed
    planted: dict[str, Any] = {}
    for workload in ("svc-a", "svc-d"):
        for kind, text in _copies(iam, workload).items():
            rid = render.role_id("wid", "prod", workload, [f"resourcemanager.projects.{kind}"])
            planted[rid] = _plant(iam, rid, text, ["resourcemanager.projects.get", "iam.roles.get"])
    real_d = set(_of(iam, "svc-d")) - set(planted)
    plan = run_cli("plan", str(folder), "--output", "json")
    assert plan.code == 0, plan.out + plan.err
    forged = {f["role"]: f["reason"] for f in json.loads(plan.out)["forged"]}
    assert set(forged) == {rid for rid in planted if rid.startswith(render.role_base("wid", "prod", "svc-a"))}
    assert all("not authenticated" in why for why in forged.values())
    text = run_cli("plan", str(folder))
    assert "is forged (its marker is not authenticated" in text.out and "left alone" in text.out
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0  # nothing to change
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert {rid: _roles(iam).get(rid) for rid in planted} == planted
    dry = json.loads(run_cli("cleanup", str(folder), "--output", "json").out)
    for rid in planted:
        assert any("is forged" in n and rid in n for n in dry["notes"]), (rid, dry["notes"])
    for clock, extra in ((START, ()), (AFTER_GRACE, ("--delete-with-local-audit",))):
        os.environ["WORKLOAD_IDS_CLOCK"] = clock
        result = run_cli("cleanup", str(folder), "--apply", *extra)
        assert result.code == 0, result.out + result.err
    assert not set(_of(iam, "svc-d")) & real_d  # svc-d's own roles went with it
    assert {rid: _roles(iam).get(rid) for rid in planted} == planted  # every planted one stayed


def test_apply_refuses_a_role_at_a_wanted_id_without_any_marker(gcp_keyed: tuple[Any, Any, Path]) -> None:
    """A role squatting the id apply is about to create, with no marker at all: a
    conflict, nothing written to it."""
    from support.gcp import gcp_workload
    iam, _, folder = gcp_keyed
    access = "    - template: object-storage.read\n      resources: [projects/_/buckets/bucket-z]\n"
    permissions = ["storage.objects.get", "storage.objects.list"]
    (folder / "svc-e.yaml").write_text(gcp_workload(name="svc-e", owner="team-a", access=access))
    rid = render.role_id("wid", "prod", "svc-e", permissions)
    squat = _plant(iam, rid, "made by hand", ["resourcemanager.projects.get"])
    result = run_cli("apply", "--auto-approve", str(folder))
    assert result.code == 1, result.out + result.err
    assert f"custom role projects/{PROJECT}/roles/{rid} exists without the workload-ids marker" in result.err
    assert _roles(iam)[rid] == squat


def test_a_role_signed_before_roles_were_is_re_marked_by_apply(gcp_keyed: tuple[Any, Any, Path]) -> None:
    """The upgrade: svc-a's roles lose their MAC (as every role had none before). Cleanup
    leaves them alone meanwhile; apply re-marks those it wants, and then plan is clean."""
    iam, _, folder = gcp_keyed
    client = iam.client()
    for role in _of(iam, "svc-a").values():
        client.update_role(request={
            "name": role.name, "role": {"description": render.unsigned_role_description(role.description),
                                        "etag": role.etag},
            "update_mask": {"paths": ["description"]}})
    assert all(not Marker.mac_of_text(r.description.split("\n", 1)[0]) for r in _of(iam, "svc-a").values())
    plan = json.loads(run_cli("plan", str(folder), "--output", "json").out)
    [change] = [c for c in plan["changes"] if c["action"] == "update-roles"]
    assert change["roles"]["remarked"] == sorted(_of(iam, "svc-a")) and plan["forged"] == []
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    after = _of(iam, "svc-a")
    assert all(len(Marker.mac_of_text(r.description.split("\n", 1)[0])) == 32 for r in after.values())
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0


def test_a_copy_at_an_id_apply_wants_becomes_exactly_the_role_apply_would_make(
        gcp_keyed: tuple[Any, Any, Path]) -> None:
    """The one case where a forged role is written: its id is the workload's own and the
    permission set's, so apply makes it what it would have created (permissions and
    signed description), and binds nothing more than the manifest grants."""
    from support.gcp import gcp_workload
    iam, _, folder = gcp_keyed
    access = "    - template: object-storage.read\n      resources: [projects/_/buckets/bucket-z]\n"
    (folder / "svc-e.yaml").write_text(gcp_workload(name="svc-e", owner="team-a", access=access))
    rid = render.role_id("wid", "prod", "svc-e", ["storage.objects.get", "storage.objects.list"])
    copied = next(iter(_copies(iam, "svc-a").values()))
    _plant(iam, rid, render.unsigned_role_description(copied), ["resourcemanager.projects.setIamPolicy"])
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    role = _roles(iam)[rid]
    assert sorted(role.permissions) == ["storage.objects.get", "storage.objects.list"]
    marker = render.role_marker(role.description)
    assert marker is not None and marker.workload == "svc-e"
    assert len(Marker.mac_of_text(role.description.split("\n", 1)[0])) == 32
    assert run_cli("plan", str(folder), "--detailed-exitcode").code == 0
