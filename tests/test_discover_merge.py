"""``workload-ids report merge``: the JSON documents of a sharded discover run combined into
the document an unsharded run writes, and every way a merge is refused (exit 1, the file
named and positioned, nothing written)."""

from __future__ import annotations

import copy
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.discover_documents import ATTACK_NAME, document, shards

from workload_ids.cli import main
from workload_ids.discover.merge import counts, key_position


def write(tmp: Path, docs: list[dict[str, Any]], prefix: str = "shard") -> list[str]:
    paths = []
    for n, doc in enumerate(docs, 1):
        path = tmp / f"{prefix}-{n}.json"
        path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("count", [1, 2, 4])
def test_merged_shards_equal_the_unsharded_run(tmp_path: Path, count: int) -> None:
    whole = document()
    whole["notes"] = ["owners are not checked against a directory: no owners source in the config"]
    parts = shards(whole, count)
    for part in parts:  # every shard's run says the same of the directory
        part["notes"] = list(whole["notes"])
    paths = write(tmp_path, parts)
    result = run_cli("report", "merge", *reversed(paths))
    assert result.code == 0, result.err
    assert json.loads(result.out) == whole


def test_overlapping_shards_keep_each_identity_and_target_once_newest_read_winning(tmp_path: Path) -> None:
    whole = document()
    first, second = shards(whole, 2)
    # A project listed under two folders is read by both shards: the later read wins.
    moved = copy.deepcopy(first["identities"][0])
    moved["lastUsed"] = "2026-12-03T09:59:00Z"
    second["identities"].append(moved)
    second["targets"].append(copy.deepcopy(next(t for t in first["targets"]
                                                if t["target"] == moved["target"])))
    result = run_cli("report", "merge", *write(tmp_path, [first, second]))
    assert result.code == 0, result.err
    merged = json.loads(result.out)
    assert len(merged["identities"]) == len(whole["identities"])
    assert len(merged["targets"]) == len(whole["targets"])
    assert [i for i in merged["identities"] if i["id"] == moved["id"]] == [moved]
    assert merged["counts"] == whole["counts"]
    assert merged["shard"] is None and merged["generated"] == whole["generated"]


def test_a_target_one_shard_read_beats_one_another_could_not_read(tmp_path: Path) -> None:
    first, second = shards(document(), 2)
    read = next(t for t in first["targets"] if t["status"] == "read")
    second["targets"].append({**read, "status": "error", "identities": 0, "error": "throttled"})
    merged = json.loads(run_cli("report", "merge", *write(tmp_path, [first, second])).out)
    assert [t for t in merged["targets"] if t["target"] == read["target"]] == [read]


def test_counts_are_recomputed_not_added(tmp_path: Path) -> None:
    first, second = shards(document(), 2)
    first["counts"] = second["counts"] = {"findings": {"admin-grant": 99}, "categories": {}, "owners": {}}
    merged = json.loads(run_cli("report", "merge", *write(tmp_path, [first, second])).out)
    assert merged["counts"] == counts(document()["identities"])
    assert merged["counts"]["findings"]["admin-grant"] == 2
    assert merged["counts"]["owners"]["(none)"] == 2
    assert merged["counts"]["categories"]["NHI5:2025"] == 4


def test_one_whole_run_alone_renders_as_it_is(tmp_path: Path) -> None:
    whole = document()
    out = tmp_path / "report.html"
    result = run_cli("report", "merge", *write(tmp_path, [whole]), "--output", "html", "--out", str(out))
    assert result.code == 0, result.err
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "&lt;script&gt;document.title" in page
    assert f"wrote {out}: 9 identities in 5 target(s), merged from 1 file(s)" in result.err
    assert result.out == ""


def test_html_goes_to_a_pipe_but_not_to_a_terminal(tmp_path: Path) -> None:
    paths = write(tmp_path, shards(document(), 2))
    piped = run_cli("report", "merge", *paths, "--output", "html")
    assert piped.code == 0 and piped.out.startswith("<!DOCTYPE html>")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen, err = Terminal(), io.StringIO()
    with redirect_stdout(screen), redirect_stderr(err):
        code = main(["report", "merge", *paths, "--output", "html"])
    assert code == 1 and screen.getvalue() == ""
    assert "the HTML report is a page for a browser, not text for a terminal; nothing was written: " \
           "pass --out report.html" in err.getvalue()


def test_table_output_lists_identities_and_unread_targets(tmp_path: Path) -> None:
    result = run_cli("report", "merge", *write(tmp_path, shards(document(), 3)), "--output", "table")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    # The same table `discover` prints: identities, findings by severity, then the counts.
    assert lines[0].split() == ["KIND", "NAME", "TARGET", "OWNER", "MANAGED", "LAST", "USED", "FINDINGS"]
    assert any("legacy-uploader" in line and "key-too-old, unused, no-owner" in line for line in lines)
    assert any(ATTACK_NAME in line for line in lines)
    assert "9 identities in 4 of 5 target(s); 14 finding(s): admin-grant 2," in result.out
    assert "ERROR: aws 333333333333 could not be read: AccessDenied: sts:AssumeRole" in result.out


def test_a_table_line_cannot_be_split_by_a_name_from_the_cloud(tmp_path: Path) -> None:
    whole = document()
    whole["identities"][0]["name"] = "x\n::warning::forged"
    result = run_cli("report", "merge", *write(tmp_path, [whole]), "--output", "table")
    assert result.code == 0
    assert not any(line.startswith("::warning::") for line in result.out.splitlines())
    assert "x\\n::warning::forged" in result.out


# --- refusals ---------------------------------------------------------------------------

def refused(tmp_path: Path, *paths: str) -> str:
    out = tmp_path / "merged.json"
    result = run_cli("report", "merge", *paths, "--out", str(out))
    assert result.code == 1, (result.out, result.err)
    assert "Traceback" not in result.err
    assert not out.exists()
    return result.err


def test_a_missing_shard_is_refused_naming_it(tmp_path: Path) -> None:
    paths = write(tmp_path, shards(document(), 4))
    err = refused(tmp_path, paths[0], paths[1], paths[3])
    assert "have 1/4, 2/4, 4/4: shard 3/4 is missing; pass every shard's JSON document" in err
    err = refused(tmp_path, paths[1])
    assert "have 2/4: shards 1/4, 3/4, 4/4 are missing" in err


def test_a_shard_given_twice_is_refused_at_the_second_file(tmp_path: Path) -> None:
    docs = shards(document(), 3)
    paths = write(tmp_path, [*docs, docs[1]])
    err = refused(tmp_path, *paths)
    assert f"{paths[3]}:9:3: shard 2/3 again: {paths[1]} is shard 2/3 too; pass each shard's " \
           "document once" in err
    err = refused(tmp_path, *paths[:3], paths[1])
    assert f"{paths[1]}:9:3: shard 2/3 again: the same file, given twice" in err


def test_shards_of_different_splits_are_refused(tmp_path: Path) -> None:
    two = write(tmp_path, shards(document(), 2), "two")
    three = write(tmp_path, shards(document(), 3), "three")
    err = refused(tmp_path, *two, three[2])
    assert f"{three[2]}:9:3: shard 3/3, but {two[0]} is shard 1/2: these are shards of different " \
           "splits" in err


def test_a_whole_run_among_shards_is_refused(tmp_path: Path) -> None:
    paths = write(tmp_path, [*shards(document(), 2), document()])
    err = refused(tmp_path, *paths)
    assert f"{paths[2]}:9:3: a whole run (shard: null), but {paths[0]} is shard 1/2" in err
    whole = write(tmp_path, [document(), document()], "whole")
    assert f"{whole[1]}:9:3: a whole run (shard: null), as is {whole[0]}" in refused(tmp_path, *whole)


def test_shards_read_with_other_settings_are_refused(tmp_path: Path) -> None:
    docs = shards(document(), 2)
    docs[1]["settings"]["maxKeyAge"] = "30d"
    paths = write(tmp_path, docs)
    err = refused(tmp_path, *paths)
    assert f'{paths[1]}:5:3: settings {{"maxKeyAge": "30d", "unusedAfter": "90d"}} differ from ' \
           f'{paths[0]}\'s {{"maxKeyAge": "90d", "unusedAfter": "90d"}}: the shards of one run are read ' \
           "with one config; rerun this shard with the same config" in err


def test_a_file_that_is_not_json_is_refused_at_its_position(tmp_path: Path) -> None:
    paths = write(tmp_path, shards(document(), 2))
    bad = tmp_path / "truncated.json"
    bad.write_text(Path(paths[1]).read_text()[:200], encoding="utf-8")
    err = refused(tmp_path, paths[0], str(bad))
    assert f"{bad}:" in err and "not JSON (" in err
    assert "report merge combines the JSON documents `workload-ids discover --output json` (or " \
        "`inventory --output json`) writes" in err
    html = tmp_path / "report.html"
    html.write_text("<!DOCTYPE html>", encoding="utf-8")
    assert f"{html}:1:1: not JSON (Expecting value)" in refused(tmp_path, str(html))


def test_documents_of_another_kind_or_version_are_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"changes": []}, indent=2), encoding="utf-8")
    assert f"{plan}:1:1: kind is None, not 'workload-ids/discover' or 'workload-ids/inventory': this " \
        "is not a discover or inventory report" in \
        refused(tmp_path, str(plan))
    later = document()
    later["version"] = 2
    (path,) = write(tmp_path, [later], "later")
    assert f"{path}:3:3: version 2 of the discover document is not one this workload-ids reads (1)" in \
        refused(tmp_path, path)
    listed = tmp_path / "list.json"
    listed.write_text("[]", encoding="utf-8")
    assert f"{listed}:1:1: a JSON array, not a discover or inventory document" in \
        refused(tmp_path, str(listed))


def test_every_bad_file_is_named_at_once(tmp_path: Path) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    one.write_text("{", encoding="utf-8")
    two.write_text(json.dumps({"kind": "workload-ids/plan"}), encoding="utf-8")
    err = refused(tmp_path, str(one), str(two), str(tmp_path / "absent.json"))
    assert f"{one}:1:2: not JSON" in err
    assert f"{two}:1:2: kind is 'workload-ids/plan'" in err
    assert f"{tmp_path / 'absent.json'}:1:1: cannot read it (No such file or directory)" in err


def test_a_damaged_document_is_refused(tmp_path: Path) -> None:
    damaged = document()
    damaged["identities"] = {"not": "a list"}
    damaged["shard"] = {"index": 5, "count": 4}
    (path,) = write(tmp_path, [damaged])
    err = refused(tmp_path, path)
    assert "identities must be an array, not object" in err
    assert 'shard must be null or {"index": I, "count": N} with 1 <= I <= N, not ' \
           '{"index": 5, "count": 4}' in err
    nameless = document()
    nameless["identities"][2].pop("id")
    assert "identities[2] has no provider and id" in refused(tmp_path, *write(tmp_path, [nameless], "x"))


def test_key_position_finds_top_level_keys_only() -> None:
    text = '{"identities": [{"kind": "role", "x": "\\"kind\\": 1"}],\n  "kind": "k"}'
    assert str(key_position("f.json", text, "kind")) == "f.json:2:3"
    assert str(key_position("f.json", text, "absent")) == "f.json:1:1"


def test_report_without_an_action_and_merge_without_files_explain_themselves() -> None:
    result = run_cli("report", "merge")
    assert result.code == 1
    assert "the following arguments are required: FILE" in result.err
    assert "`workload-ids report merge --help` lists what it takes" in result.err
