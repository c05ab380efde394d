"""``workload-ids report merge`` of sharded ``inventory --output json`` documents: merged,
they are the document an unsharded run writes (the real runs are in
tests/test_targets_fanout.py); a mix with discover documents, a shard missing or twice
and a damaged file are refused (exit 1, the file named, nothing written)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.discover_documents import document as discover_document
from support.discover_documents import shards as discover_shards

TARGETS = [("aws", "123456789012"), ("aws", "210987654321"),
           ("azure", "1d5e2b7a-0d3f-4c8e-9a21-6f4b3d2e1c01"), ("gcp", "proj-one"), ("gcp", "proj-two")]


def row(provider: str, target: str, name: str, *, key_mode: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {"provider": provider, "target": target, "kind": "user" if key_mode else "role",
                           "identity": name, "workload": name.split("_")[-1], "environment": "prod",
                           "owner": "team-a", "declared": None, "lastUsed": "2026-12-01T10:00:00+00:00",
                           "quarantine": None, "state": "active", "forged": None}
    if key_mode:
        doc.update(keys=[{"id": "AKIAEXAMPLE", "role": "active", "status": "Active",
                          "created": "2026-11-01T00:00:00Z", "ageDays": 32.0}],
                   secret="workload-ids/prod/batch", nextStep="rotate", nextAt="2026-12-31T00:00:00Z")
    return doc


def inventory() -> dict[str, Any]:
    """An unsharded inventory document over five targets (one of them empty)."""
    rows = [row(p, t, f"wid_prod_svc-{n}", key_mode=n == 1) for n, (p, t) in enumerate(TARGETS[:4])]
    rows.append(row("aws", "123456789012", "wid_prod_svc-9"))
    rows.sort(key=lambda r: (r["provider"], r["target"], r["identity"]))
    per = {k: sum(1 for r in rows if (r["provider"], r["target"]) == k) for k in TARGETS}
    return {"kind": "workload-ids/inventory", "version": 1, "shard": None,
            "targets": [{"provider": p, "target": t, "status": "read", "identities": per[(p, t)]}
                        for p, t in TARGETS],
            "identities": rows, "summary": {"identities": len(rows), "apiCalls": 21}}


def shards(whole: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """``whole`` split by target, each shard's calls its own."""
    out = []
    for index in range(1, count + 1):
        mine = [t for n, t in enumerate(whole["targets"]) if n % count == index - 1]
        keys = {(t["provider"], t["target"]) for t in mine}
        rows = [copy.deepcopy(i) for i in whole["identities"] if (i["provider"], i["target"]) in keys]
        out.append({**copy.deepcopy(whole), "shard": {"index": index, "count": count},
                    "targets": copy.deepcopy(mine), "identities": rows,
                    "summary": {"identities": len(rows), "apiCalls": 21 // count}})
    return out


def write(tmp: Path, docs: list[dict[str, Any]], prefix: str = "inventory") -> list[str]:
    paths = []
    for n, doc in enumerate(docs, 1):
        path = tmp / f"{prefix}-{n}.json"
        path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        paths.append(str(path))
    return paths


def refused(tmp_path: Path, *args: str) -> str:
    out = tmp_path / "merged.json"
    result = run_cli("report", "merge", *args, "--out", str(out))
    assert result.code == 1, (result.out, result.err)
    assert "Traceback" not in result.err
    assert not out.exists()
    return result.err


@pytest.mark.parametrize("count", [1, 2, 3])
def test_merged_inventory_shards_equal_the_unsharded_run(tmp_path: Path, count: int) -> None:
    whole = inventory()
    parts = shards(whole, count)
    result = run_cli("report", "merge", *reversed(write(tmp_path, parts)))
    assert result.code == 0, result.err
    merged = json.loads(result.out)
    assert merged["summary"].pop("apiCalls") == sum(p["summary"]["apiCalls"] for p in parts)
    whole["summary"].pop("apiCalls")
    assert merged == whole


def test_a_merged_inventory_prints_as_the_inventory_table(tmp_path: Path) -> None:
    paths = write(tmp_path, shards(inventory(), 2))
    table = run_cli("report", "merge", *paths, "--output", "table")
    assert table.code == 0, table.err
    assert table.out.splitlines()[0].split() == ["IDENTITY", "KIND", "WORKLOAD", "OWNER", "TARGET",
                                                 "MANIFEST", "LAST", "USED", "STATE"]
    assert "wid_prod_svc-9" in table.out and "aws:123456789012" in table.out
    assert "wid_prod_svc-1: secret workload-ids/prod/batch" in table.out
    assert "key AKIAEXAMPLE  active Active  age 32.0d" in table.out
    err = refused(tmp_path, *paths, "--output", "html")
    assert "the HTML page is discover's report; an inventory merges to --output json or --output table" in err


def test_inventory_and_discover_documents_are_never_mixed(tmp_path: Path) -> None:
    first, _ = shards(inventory(), 2)
    _, second = discover_shards(discover_document(), 2)
    inv, = write(tmp_path, [first], "inv")
    disc, = write(tmp_path, [second], "disc")
    err = refused(tmp_path, inv, disc)
    assert f"{disc}:2:3: a discover document, but {inv} is an inventory document: report merge " \
        "combines the shards of one run of one command" in err
    assert "merge the discover and the inventory documents separately" in err


def test_a_missing_or_repeated_inventory_shard_is_refused(tmp_path: Path) -> None:
    paths = write(tmp_path, shards(inventory(), 3))
    err = refused(tmp_path, paths[0], paths[2])
    assert "have 1/3, 3/3: shard 2/3 is missing" in err
    err = refused(tmp_path, *paths, paths[1])
    assert f"{paths[1]}:" in err and "shard 2/3 again: the same file, given twice" in err
    whole, = write(tmp_path, [inventory()], "whole")
    err = refused(tmp_path, whole, *paths)
    assert "a whole run (shard: null), but" in err and "`inventory --shard I/N`" in err


def test_a_damaged_inventory_document_is_refused(tmp_path: Path) -> None:
    doc = inventory()
    del doc["identities"][0]["target"]
    path, = write(tmp_path, [doc], "damaged")
    err = refused(tmp_path, path)
    assert "identities[0] has no provider, target and identity: the file is damaged; write it again " \
        "with `workload-ids inventory --output json`" in err
    doc = inventory()
    doc["summary"] = []
    path, = write(tmp_path, [doc], "damaged")
    assert "summary must be an object, not array" in refused(tmp_path, path)
