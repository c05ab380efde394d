"""The ARM emulator's management groups: ``descendants`` lists every subgroup and
subscription below a group at any depth, paged with ``nextLink``; an unknown group is 403
(ARM does not say whether it exists). Driven through the provider's own ARM pipeline
(workload_ids.providers.azure.organization), which is what the tool sends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from workload_ids.calls import CallSeam
from workload_ids.config import Config, ConfigFile
from workload_ids.errors import CloudError
from workload_ids.providers.azure.clients import AzureClients
from workload_ids.providers.azure.organization import AzureOrganization
from workload_ids.sandbox.azure.arm import ArmEmulator

SUBS = [f"{n}d5e2b7a-0d3f-4c8e-9a21-6f4b3d2e1c0{n}" for n in range(1, 5)]


@pytest.fixture(scope="module")
def emulator() -> Iterator[ArmEmulator]:
    with ArmEmulator(page_size=2) as emu:
        emu.add_management_group("mg-root")
        emu.add_management_group("mg-prod", parent="mg-root")
        emu.add_management_group("mg-team", parent="mg-prod")
        emu.move_subscription(SUBS[0], "mg-root")
        emu.move_subscription(SUBS[1], "mg-prod")
        emu.move_subscription(SUBS[2], "mg-team")
        emu.add_subscription(SUBS[3])  # under no group of ours
        yield emu


def _organization(emulator: ArmEmulator) -> tuple[AzureOrganization, CallSeam]:
    config = Config(ConfigFile.model_validate({"azure": {
        "armEndpoint": emulator.url, "caBundle": emulator.ca_bundle_path, "sandboxCredentials": True}}),
        Path.cwd(), None)
    seam = CallSeam()
    return AzureOrganization(AzureClients(config, seam)), seam


def test_descendants_cover_every_depth_across_pages(emulator: ArmEmulator) -> None:
    organization, seam = _organization(emulator)
    assert [m.target for m in organization.members("managementGroup", "mg-root")] == SUBS[:3]
    # 2 groups and 3 subscriptions, two to a page: three pages, one seam call each
    assert seam.stats.calls["azure:managementgroups.get_descendants"] == 3
    assert [m.target for m in organization.members("managementGroup", "mg-prod")] == SUBS[1:3]


def test_the_wire_format_is_arms(emulator: ArmEmulator) -> None:
    url = f"{emulator.url}/providers/Microsoft.Management/managementGroups/mg-team/descendants"
    answer = requests.get(url, params={"api-version": "2020-05-01"}, verify=emulator.ca_bundle_path,
                          headers={"Authorization": "Bearer sandbox"}, timeout=10)
    assert answer.status_code == 200
    (item,) = json.loads(answer.text)["value"]
    assert item == {"id": f"/subscriptions/{SUBS[2]}", "type": "/subscriptions", "name": SUBS[2],
                    "properties": {"displayName": SUBS[2], "parent": {
                        "id": "/providers/Microsoft.Management/managementGroups/mg-team"}}}
    old = requests.get(url, params={"api-version": "2019-11-01"}, verify=emulator.ca_bundle_path,
                       headers={"Authorization": "Bearer sandbox"}, timeout=10)
    assert old.status_code == 400 and "InvalidApiVersionParameter" in old.text


def test_an_unknown_group_is_forbidden(emulator: ArmEmulator) -> None:
    organization, _ = _organization(emulator)
    with pytest.raises(CloudError) as caught:
        organization.members("managementGroup", "mg-nobody")
    assert caught.value.kind == "denied" and "AuthorizationFailed" in str(caught.value)
