"""Azure rendering (pure): identity names, deterministic role and assignment GUIDs, one
role definition per permission set assignable only at its scopes, federated credentials,
and the 20-credential limit as a validate error."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from support.cli import run_cli
from support.paths import EXAMPLES

from workload_ids.config import load_config
from workload_ids.providers.azure import render
from workload_ids.validate import validate

EXAMPLE = EXAMPLES / "azure" / "order-reconciliation.yaml"
SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-orders/providers"


def compiled(path: Path) -> Any:
    checked = validate([path], load_config())
    checked.raise_for_errors()
    return checked.compiled[0]


def test_example_renders_identity_roles_assignments_and_credentials() -> None:
    cw = compiled(EXAMPLE)
    desired = render.desired_identity(cw, load_config())
    objects = desired.objects
    assert desired.name == "wid-prod-order-reconciliation"
    assert desired.address == (f"/subscriptions/{SUB}/resourceGroups/rg-orders/providers/"
                               "Microsoft.ManagedIdentity/userAssignedIdentities/wid-prod-order-reconciliation")
    assert objects["identity"]["tags"] == cw.marker.as_tags()
    # Four listed resources with four different permission sets: four roles, each
    # assignable only at its own resource, and one assignment per resource.
    assert len(objects["roles"]) == 4
    scopes = sorted(s for role in objects["roles"].values() for s in role["assignableScopes"])
    assert scopes == sorted(a["scope"] for a in objects["assignments"].values())
    assert len(scopes) == 4 and all(s.startswith(RG) for s in scopes)
    for rid, role in objects["roles"].items():
        uuid.UUID(rid)
        assert role["description"] == cw.marker.as_text()
        [perm] = role["permissions"]
        assert "*" not in "".join(perm["actions"] + perm["dataActions"])
    for aid, assignment in objects["assignments"].items():
        assert aid == render.role_assignment_id("prod/order-reconciliation",
                                                assignment["roleDefinitionId"].rsplit("/", 1)[1],
                                                assignment["scope"])
        assert assignment["principalType"] == "ServicePrincipal"
    assert list(objects["federatedCredentials"].values()) == [{
        "issuer": "https://token.actions.githubusercontent.com",
        "subject": "repo:acme/order-reconciliation:environment:production",
        "audiences": ["api://AzureADTokenExchange"]}]


def test_rendering_is_deterministic() -> None:
    first = render.desired_objects(compiled(EXAMPLE), "wid")
    second = render.desired_objects(compiled(EXAMPLE), "wid")
    assert first == second


def test_more_than_twenty_federation_entries_is_a_validate_error(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    entries = "".join(f"      - kind: github-actions\n        repository: acme/repo-{i}\n"
                      f"        ref: refs/heads/main\n" for i in range(21))
    text = text.replace("      - kind: github-actions\n        repository: acme/order-reconciliation\n"
                        "        environment: production\n", entries)
    path = tmp_path / "many.yaml"
    path.write_text(text)
    result = run_cli("validate", str(path))
    assert result.code == 1
    assert "21 federation entries; Azure allows 20 federated credentials" in result.err
    assert f"{path}:" in result.err
