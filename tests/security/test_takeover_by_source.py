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
from conftest import TEST_TRUST, run_cli
from test_attacks_on_every_cloud import (  # noqa: F401  (clouds, emulated: fixtures)
    CONTAINER,
    CONTROLS,
    clouds,
    emulated,
    github,
    manifest,
    template,
)

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
