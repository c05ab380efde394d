"""Positions are found for messages only. A fleet's valid manifests are loaded, compiled,
planned and applied without keeping or rebuilding a YAML node tree (ten thousand
manifests held half a million nodes for the garbage collector to walk), and a message
still points at FILE:LINE:COLUMN, parsing the file again when it needs to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.aws import KEY_MODE, workload
from support.trust import TEST_TRUST

from workload_ids.apply import apply_plan
from workload_ids.calls import CallSeam
from workload_ids.config import load_config
from workload_ids.plan import build_plan
from workload_ids.validate import validate
from workload_ids.yamlpos import load_documents


def test_a_valid_fleet_is_planned_and_applied_without_a_node_tree(aws: Any, manifests: Any) -> None:
    folder = manifests({f"svc-{i}.yaml": workload(f"svc-{i}") for i in range(3)})
    config = load_config()
    for _ in range(2):  # a create, then a plan over identities that exist (owner checks)
        checked = validate([folder], config)
        checked.raise_for_errors()
        plan = build_plan(checked.compiled, config, CallSeam(), fleet=True)
        if plan.changes:
            assert not [r.error for r in apply_plan(plan, concurrency=1).results if r.error]
        assert [lw.source._node for lw in checked.loaded] == [None, None, None]
    assert not plan.changes
    assert len(aws.list_roles(PathPrefix="/workload-ids/")["Roles"]) == 3


def test_every_example_validates_without_a_node_tree() -> None:
    """Every cloud's examples and a key-mode manifest (its rotation checks) too."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    checked = validate([examples], load_config())
    assert checked.loaded and not checked.errors
    assert [lw.source.path for lw in checked.loaded if lw.source._node is not None] == []


def test_a_key_mode_manifest_validates_without_a_node_tree(manifests: Any) -> None:
    checked = validate([manifests({"vendor.yaml": KEY_MODE})], load_config())
    assert not checked.errors and checked.loaded[0].source._node is None


def test_a_message_is_positioned_from_the_text(manifests: Any) -> None:
    text = workload("svc-a").replace("queue.consume", "queue.consme")
    folder = manifests({"a.yaml": "# a comment first\n---\n" + text})
    checked = validate([folder], load_config())
    [error] = checked.errors
    line = ("# a comment first\n---\n" + text).splitlines().index(
        next(x for x in text.splitlines() if "queue.consme" in x)) + 1
    assert (Path(error.position.path).name, error.position.line) == ("a.yaml", line)
    assert "unknown template 'queue.consme'" in error.message


def test_each_document_of_a_file_gets_its_own_tree() -> None:
    docs, problems = load_documents("f.yaml", "a: 1\n---\nb:\n  c: [x, y]\n")
    assert not problems and [d.value for d in docs] == [{"a": 1}, {"b": {"c": ["x", "y"]}}]
    assert all(d._node is None for d in docs)
    assert (docs[1].position(("b", "c", 1)).line, docs[1].position(("b", "c", 1)).column) == (4, 10)
    assert docs[0].position(("a",)).line == 1


def test_sources_follow_a_symlinked_manifest_and_the_working_directory(tmp_path: Path,
                                                                        monkeypatch: Any) -> None:
    """Folders are listed once per run (no system call per manifest), and still: a manifest
    that is a link is bound to where it points, and a run from another directory binds the
    same sources."""
    real = tmp_path / "teams" / "a"
    real.mkdir(parents=True)
    (real / "svc.yaml").write_text(workload("svc-a"))
    links = tmp_path / "links"
    links.mkdir()
    (links / "svc.yaml").symlink_to(real / "svc.yaml")
    (links / "other.yaml").write_text(workload("svc-b"))
    config_file = tmp_path / "workload-ids.yaml"
    config_file.write_text(TEST_TRUST)
    monkeypatch.chdir(tmp_path)
    checked = validate([Path("links")], load_config(config_file))
    assert not checked.errors, checked.errors
    assert sorted(c.marker.source for c in checked.compiled) == ["links/other.yaml", "teams/a/svc.yaml"]
    monkeypatch.chdir(links)
    again = validate([Path(".")], load_config(config_file))
    assert sorted(c.marker.source for c in again.compiled) == ["links/other.yaml", "teams/a/svc.yaml"]
