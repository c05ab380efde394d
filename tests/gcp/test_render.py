"""GCP rendering (pure): names, the marker in descriptions, roles per permission set,
conditions, resource bindings and federation principals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support.gcp import POOL, gcp_workload

from workload_ids.config import load_config
from workload_ids.model import Marker
from workload_ids.providers.gcp import render
from workload_ids.validate import validate

ACCOUNT = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")


def compiled(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    checked = validate([path], load_config())
    checked.raise_for_errors()
    return checked.compiled[0]


@pytest.mark.parametrize(("env", "name"), [("prod", "payments-api"), ("a", "b"), ("1x", "svc"),
                                           ("production-eu", "a-very-long-workload-name-of-forty-chr")])
def test_account_ids_are_valid_and_deterministic(env: str, name: str) -> None:
    first = render.account_id("wid", env, name)
    assert first == render.account_id("wid", env, name)
    assert 6 <= len(first) <= 30 and ACCOUNT.match(first), first


def test_account_ids_tell_apart_names_that_join_the_same() -> None:
    assert render.account_id("wid", "a-b", "c") != render.account_id("wid", "a", "b-c")
    assert render.account_id("wid", "prod", "payments-api") == "wid-prod-payments-api-" + \
        render._digest("prod", "payments-api")


def test_role_ids_fit_gcp_rules() -> None:
    rid = render.role_id("wid", "production-eu", "a-very-long-workload-name-of-forty-chr",
                         ["storage.objects.get"])
    assert len(rid) <= 64 and re.fullmatch(r"[A-Za-z0-9_.]{3,64}", rid)
    assert rid != render.role_id("wid", "production-eu", "a-very-long-workload-name-of-forty-chr",
                                 ["storage.objects.create"])


def test_marker_text_round_trips_and_forgeries_are_not_ours() -> None:
    marker = Marker("catalog-sync", "team-platform", "prod", "ab" * 32)
    assert Marker.from_text(marker.as_text()) == marker
    text = marker.as_text()
    assert Marker.from_text(text.replace(" sha256=" + "ab" * 32, "")) is None
    assert Marker.from_text(text.replace("ab" * 32, "ab" * 31)) is None
    assert Marker.from_text(text + " extra=1") is None
    assert Marker.from_text("managed by workload-ids") is None
    assert Marker.from_text(None) is None


def test_each_permission_set_gets_its_own_role_and_condition(tmp_path: Path) -> None:
    cw = compiled(tmp_path, gcp_workload())
    objects = render.desired_objects(cw, "wid")
    email = objects["serviceAccount"]["email"]
    assert email == f"{render.account_id('wid', 'prod', 'catalog-sync')}@acme-prod.iam.gserviceaccount.com"
    read = render.role_id("wid", "prod", "catalog-sync", ["storage.objects.get", "storage.objects.list"])
    write = render.role_id("wid", "prod", "catalog-sync", ["storage.objects.create"])
    # Roles carry the marker without the source (the account binds it).
    role_marker = cw.marker.replace(source="").as_text()
    assert objects["roles"] == {
        read: {"title": "workload-ids prod/catalog-sync", "description": role_marker,
               "includedPermissions": ["storage.objects.get", "storage.objects.list"], "stage": "GA"},
        write: {"title": "workload-ids prod/catalog-sync", "description": role_marker,
                "includedPermissions": ["storage.objects.create"], "stage": "GA"},
    }
    assert objects["serviceAccount"]["description"] == cw.marker.as_text() and cw.marker.source
    expressions = {b["role"].rsplit("/", 1)[1]: b["condition"]["expression"]
                   for b in objects["projectBindings"]}
    assert expressions == {
        read: '(resource.name == "projects/_/buckets/bucket-a" || '
              'resource.name.startsWith("projects/_/buckets/bucket-a/objects/"))',
        write: '(resource.name == "projects/_/buckets/bucket-b" || '
               'resource.name.startsWith("projects/_/buckets/bucket-b/objects/"))',
    }
    assert all(b["members"] == [f"serviceAccount:{email}"] for b in objects["projectBindings"])
    assert objects["accountBindings"] == [{
        "role": "roles/iam.workloadIdentityUser",
        "members": [f"principal://iam.googleapis.com/{POOL}/subject/repo:acme/catalog-sync:ref:refs/heads/main"],
    }]


def test_resource_and_project_bindings(tmp_path: Path) -> None:
    access = ("    - template: topic.publish\n      resources: [projects/acme-prod/topics/orders]\n"
              "    - template: secret.read\n      resources: [projects/acme-prod/secrets/api-token]\n"
              "    - template: logs.write\n      resources: [projects/acme-prod]\n")
    objects = render.desired_objects(compiled(tmp_path, gcp_workload(access=access)), "wid")
    assert [(b["resource"], b["role"].rsplit("_", 1)[0][-6:]) for b in objects["resourceBindings"]] == [
        ("projects/acme-prod/secrets/api-token", render._digest("prod", "catalog-sync")),
        ("projects/acme-prod/topics/orders", render._digest("prod", "catalog-sync"))]
    [project] = objects["projectBindings"]
    assert "condition" not in project
    assert objects["roles"][project["role"].rsplit("/", 1)[1]]["includedPermissions"] == \
        ["logging.logEntries.create"]


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    a = render.desired_identity(compiled(tmp_path, gcp_workload()), load_config())
    b = render.desired_identity(compiled(tmp_path, gcp_workload()), load_config())
    assert dict(a.documents) == dict(b.documents)


def test_marker_too_long_for_a_description_is_a_static_error(tmp_path: Path) -> None:
    from support.cli import run_cli
    path = tmp_path / "w.yaml"
    path.write_text(gcp_workload(owner="o" * 128))
    result = run_cli("validate", str(path))
    assert result.code == 1
    assert f"{path}:3:" in result.err and "ownership marker would be" in result.err
    assert "holds 256" in result.err
