"""Issue 14 item 2 (review H4) on GCP and Azure, as test_authenticated_markers does it on
AWS: an identity is bound to its source (the manifest's path, or ``team:NAME``), so team
B's own file declaring team A's environment and name is refused (exit 1) even with team
A's owner, naming the current owner and source and the approval that would allow it
(``guardrails.approvedTransfers`` with ``fromSource``/``toSource``), with nothing changed
in the cloud: the identity, its federation, its roles and their bindings or assignments
read back exactly as before. An approved move then goes through and binds the new source.
"""

# ruff: noqa: F811  (the shared fixtures clouds/emulated are imported, then named as arguments)
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.attack_clouds import (  # noqa: F401  (clouds, emulated: fixtures)
    CONTAINER,
    CONTROLS,
    clouds,
    emulated,
    github,
    manifest,
    template,
)
from support.cli import run_cli
from support.trust import TEST_TRUST

EMULATED = ["gcp", "azure"]


def _state(provider: str, emulated: dict[str, Any]) -> str:
    """Everything an identity is, as the emulator holds it: GCP accounts (descriptions,
    their own policy: federation), custom roles, the project policy and resource
    policies; Azure identities (tags, federated credentials), role definitions, role
    assignments and resources."""
    if provider == "gcp":
        iam, rm, _, rp = emulated["gcp"].emulators
        return repr((iam.backend.accounts, iam.backend.roles, rm.policy("acme-prod"),
                     {r: rp.policy(r) for r in rp.resources()}))
    arm = emulated["azure"].arm
    return repr((arm._identities, arm._role_definitions, arm._role_assignments, arm._resources))


def _named(text: str, name: str) -> str:
    return text.replace("name: sneaky", f"name: {name}")


def _team_b(provider: str, name: str, owner: str) -> str:
    """Team B's file: team A's environment and name, B's repository and access."""
    access = {"gcp": template("object-storage.write", "projects/_/buckets/evil-drop"),
              "azure": template("object-storage.write", CONTAINER)}[provider]
    evil = github(pool=provider == "gcp").replace("acme/sneaky", "acme/evil-tools")
    return _named(manifest(provider, access, evil), name).replace("owner: team-a", f"owner: {owner}")


def _setup(cloud: Any, tmp_path: Path, provider: str, name: str, extra: str = "") -> Path:
    """Team A's file applied: ``team-a/NAME.yaml`` beside the config."""
    config = tmp_path / "workload-ids.yaml"
    config.write_text(cloud.config + "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + extra)
    for team in ("team-a", "team-b"):
        (tmp_path / team).mkdir(exist_ok=True)
    (tmp_path / "team-a" / f"{name}.yaml").write_text(_named(CONTROLS[provider], name))
    first = _apply(config, tmp_path / "team-a" / f"{name}.yaml")
    assert first.code == 0, first.out + first.err
    return config


def _apply(config: Path, path: Path) -> Any:
    return run_cli("apply", "--auto-approve", "--config", str(config), str(path))


@pytest.mark.parametrize("provider", EMULATED)
def test_same_owner_from_another_source_is_refused_then_an_approved_move_applies(
        provider: str, clouds: dict[str, Any], emulated: dict[str, Any], tmp_path: Path) -> None:
    name = f"src-{provider}"
    config = _setup(clouds[provider], tmp_path, provider, name)
    before = _state(provider, emulated)
    assert f"team-a/{name}.yaml" in before  # bound to team A's file
    b_file = tmp_path / "team-b" / f"{name}.yaml"
    b_file.write_text(_team_b(provider, name, "team-a"))
    taken = _apply(config, b_file)
    assert taken.code == 1, taken.out + taken.err
    assert f"{b_file}:" in taken.err  # positioned in B's manifest
    assert (f"belongs to owner team-a and is declared by team-a/{name}.yaml, but this manifest is "
            f"team-b/{name}.yaml (owner team-a)") in taken.err
    assert "nothing was changed" in taken.err
    assert (f"fromSource: team-a/{name}.yaml, toSource: team-b/{name}.yaml") in taken.err
    assert "Traceback" not in taken.err
    assert _state(provider, emulated) == before  # trust, permissions, marker as they were
    # The platform team approves the move: it goes through and binds B's file.
    config.write_text(config.read_text() + (
        "guardrails:\n  approvedTransfers:\n"
        f"    - {{workload: prod/{name}, from: team-a, to: team-a, fromSource: team-a/{name}.yaml,\n"
        f"       toSource: team-b/{name}.yaml, reason: \"PLAT-7: team B runs it now\"}}\n"))
    moved = _apply(config, b_file)
    assert moved.code == 0, moved.out + moved.err
    assert f"team-b/{name}.yaml" in _state(provider, emulated)
    assert run_cli("plan", "--detailed-exitcode", "--config", str(config), str(b_file)).code == 0
    # A's file is now the other source: refused in its turn.
    back = _apply(config, tmp_path / "team-a" / f"{name}.yaml")
    assert back.code == 1 and f"is declared by team-b/{name}.yaml" in back.err


@pytest.mark.parametrize("provider", EMULATED)
def test_another_owner_from_another_source_is_refused_and_changes_nothing(
        provider: str, clouds: dict[str, Any], emulated: dict[str, Any], tmp_path: Path) -> None:
    name = f"own-{provider}"
    config = _setup(clouds[provider], tmp_path, provider, name)
    before = _state(provider, emulated)
    b_file = tmp_path / "team-b" / f"{name}.yaml"
    b_file.write_text(_team_b(provider, name, "team-evil"))
    taken = _apply(config, b_file)
    assert taken.code == 1, taken.out + taken.err
    assert (f"belongs to owner team-a and is declared by team-a/{name}.yaml, but this manifest is "
            f"team-b/{name}.yaml (owner team-evil)") in taken.err
    assert (f"from: team-a, to: team-evil, fromSource: team-a/{name}.yaml, "
            f"toSource: team-b/{name}.yaml") in taken.err
    assert _state(provider, emulated) == before
    # An approval of the owner alone does not move the source.
    config.write_text(config.read_text() + (
        "guardrails:\n  approvedTransfers:\n"
        f"    - {{workload: prod/{name}, from: team-a, to: team-evil, reason: \"PLAT-8: owner only\"}}\n"))
    still = _apply(config, b_file)
    assert still.code == 1 and f"is declared by team-a/{name}.yaml" in still.err, still.err
    assert _state(provider, emulated) == before


@pytest.mark.parametrize("provider", ["aws", *EMULATED])
def test_an_approved_owner_change_is_what_the_audit_trail_remembers(
        provider: str, clouds: dict[str, Any], emulated: dict[str, Any], tmp_path: Path) -> None:
    """With an audit log, whose an identity is comes from the owner the tool last wrote.
    Once an approved transfer is applied, the new owner applies without the approval, and
    the old owner's manifest is a takeover: the approval names one direction only."""
    name = f"rec-{provider}"
    config = _setup(clouds[provider], tmp_path, provider, name, "audit:\n  path: audit.jsonl\n")
    path = tmp_path / "team-a" / f"{name}.yaml"
    original = path.read_text()
    plain = config.read_text()
    config.write_text(plain + (
        "guardrails:\n  approvedTransfers:\n"
        f"    - {{workload: prod/{name}, from: team-a, to: team-b, reason: \"PLAT-9: team B owns it\"}}\n"))
    path.write_text(original.replace("owner: team-a", "owner: team-b"))
    moved = _apply(config, path)
    assert moved.code == 0, moved.out + moved.err
    config.write_text(plain)  # the approval is spent
    again = _apply(config, path)
    assert again.code == 0, again.out + again.err
    path.write_text(original)
    back = _apply(config, path)
    assert back.code == 1, back.out + back.err
    assert "belongs to owner team-b, and this manifest says owner team-a" in back.err


def _strip_mac(provider: str, name: str, aws: Any, emulated: dict[str, Any]) -> None:
    """What anyone with tagging rights (or iam.serviceAccounts.update) can do: remove the
    marker's MAC, which makes it look like one made before markers were signed."""
    if provider == "aws":
        aws.untag_role(RoleName=f"wid_prod_{name}", TagKeys=["workload-ids:mac"])
    elif provider == "gcp":
        from workload_ids.model import Marker
        from workload_ids.providers.gcp import render
        iam = emulated["gcp"].emulators[0]
        email = f"{render.account_id('wid', 'prod', name)}@acme-prod.iam.gserviceaccount.com"
        address = f"projects/acme-prod/serviceAccounts/{email}"
        text = iam.client().get_service_account(name=address).description
        iam.client().patch_service_account(request={
            "service_account": {"name": address,
                                "description": text.removesuffix(f" mac={Marker.mac_of_text(text)}")},
            "update_mask": {"paths": ["description"]}})
    else:
        from support.attack_clouds import RG
        from support.azure import arm_clients
        msi, _ = arm_clients(emulated["azure"])
        found = msi.user_assigned_identities.get(RG, f"wid-prod-{name}")
        tags = {k: v for k, v in (found.tags or {}).items() if k != "workload-ids:mac"}
        msi.user_assigned_identities.create_or_update(RG, f"wid-prod-{name}",
                                                      {"location": found.location, "tags": tags})


def _everything(provider: str, name: str, aws: Any, emulated: dict[str, Any]) -> str:
    if provider != "aws":
        return _state(provider, emulated)
    role = f"wid_prod_{name}"
    return repr((aws.get_role(RoleName=role)["Role"],
                 {p: aws.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
                  for p in aws.list_role_policies(RoleName=role)["PolicyNames"]}))


@pytest.mark.parametrize("provider", ["aws", *EMULATED])
def test_a_stripped_mac_does_not_open_a_takeover_from_another_source(
        provider: str, clouds: dict[str, Any], emulated: dict[str, Any], aws: Any, tmp_path: Path) -> None:
    """Apply re-marks an identity whose MAC is missing (the upgrade path) only for the
    owner and the source the audit trail records: team B, with team A's owner in its own
    file, is still another source."""
    name = f"mac-{provider}"
    config = _setup(clouds[provider], tmp_path, provider, name, "audit:\n  path: audit.jsonl\n")
    _strip_mac(provider, name, aws, emulated)
    before = _everything(provider, name, aws, emulated)
    b_file = tmp_path / "team-b" / f"{name}.yaml"
    b_file.write_text(_team_b(provider, name, "team-a") if provider != "aws" else
                      _named(CONTROLS["aws"], name).replace("acme/sneaky", "acme/evil-tools"))
    taken = _apply(config, b_file)
    assert taken.code == 1, taken.out + taken.err
    assert (f"is declared by team-a/{name}.yaml (the audit log records it; the identity's marker is not "
            f"authenticated), but this manifest is team-b/{name}.yaml") in taken.err
    assert f"fromSource: team-a/{name}.yaml, toSource: team-b/{name}.yaml" in taken.err
    assert _everything(provider, name, aws, emulated) == before
    # Team A's own file re-marks it (the upgrade path still works).
    assert _apply(config, tmp_path / "team-a" / f"{name}.yaml").code == 0
    assert _apply(config, b_file).code == 1
