"""The Resource Manager emulator's hierarchy (organizations > folders > projects), driven
through the real ``resourcemanager_v3`` ProjectsClient and FoldersClient over REST: listing
by parent returns direct children only, pages, hides shut-down projects unless asked, and
refuses parents the caller cannot see, as GCP does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import resourcemanager_v3

from workload_ids.sandbox.gcp.resourcemanager import ResourceManagerEmulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[ResourceManagerEmulator]:
    emu = ResourceManagerEmulator()
    emu.start()
    registry = emu.projects
    registry.add_folder("100", "organizations/1", "Production")
    registry.add_folder("200", "folders/100")
    for project in ("alpha-one", "beta-two", "gamma-three"):
        registry.set_parent(project, "folders/100")
    registry.set_parent("delta-four", "folders/200")
    registry.set_parent("top-level", "organizations/1")
    registry.set_state("gamma-three", "DELETE_REQUESTED")
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def folders(emulator: ResourceManagerEmulator) -> Any:
    return resourcemanager_v3.FoldersClient(transport="rest", credentials=AnonymousCredentials(),
                                            client_options={"api_endpoint": emulator.url})


def test_projects_are_listed_by_parent_one_level_at_a_time(emulator: ResourceManagerEmulator) -> None:
    projects = emulator.client()
    assert [p.project_id for p in projects.list_projects(parent="folders/100")] == ["alpha-one", "beta-two"]
    assert [p.project_id for p in projects.list_projects(parent="folders/200")] == ["delta-four"]
    assert [p.project_id for p in projects.list_projects(parent="organizations/1")] == ["top-level"]
    shown = {p.project_id: p.state.name for p in projects.list_projects(
        request={"parent": "folders/100", "show_deleted": True})}
    assert shown == {"alpha-one": "ACTIVE", "beta-two": "ACTIVE", "gamma-three": "DELETE_REQUESTED"}
    assert projects.get_project(name="projects/delta-four").parent == "folders/200"


def test_pages_follow_the_token(emulator: ResourceManagerEmulator) -> None:
    projects = emulator.client()
    first = projects.list_projects(request={"parent": "folders/100", "page_size": 1})
    assert [p.project_id for p in first.projects] == ["alpha-one"] and first.next_page_token
    second = projects.list_projects(request={"parent": "folders/100", "page_size": 1,
                                             "page_token": first.next_page_token})
    assert [p.project_id for p in second.projects] == ["beta-two"] and not second.next_page_token


def test_folders_are_listed_by_parent(emulator: ResourceManagerEmulator, folders: Any) -> None:
    top = list(folders.list_folders(parent="organizations/1"))
    assert [(f.name, f.display_name, f.state.name) for f in top] == [("folders/100", "Production", "ACTIVE")]
    assert [f.name for f in folders.list_folders(parent="folders/100")] == ["folders/200"]
    assert list(folders.list_folders(parent="folders/200")) == []


def test_unknown_and_malformed_parents_are_refused(emulator: ResourceManagerEmulator, folders: Any) -> None:
    with pytest.raises(exceptions.Forbidden):
        list(emulator.client().list_projects(parent="folders/999"))
    with pytest.raises(exceptions.Forbidden):
        list(folders.list_folders(parent="folders/999"))
    with pytest.raises(exceptions.BadRequest):
        list(emulator.client().list_projects(parent="projects/alpha-one"))
