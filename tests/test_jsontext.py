"""The fast indented JSON writer is byte for byte ``json.dumps(value, indent=2)``,
including where it hands the value back to the standard library."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

from workload_ids.jsontext import dumps_indented


class _Text(str):
    pass


class _Level(enum.IntEnum):
    HIGH = 3


CASES: list[Any] = [
    {}, [], (), "text", 3, 2.5, None, True,
    [{}], {"a": []}, {"a": {}}, [[]], [1, [2, [3, {}]]], {"k": (1, 2)}, ((),),
    {"x": "é€\n\"\\\u2028", "y": [1.5, float("nan"), float("inf"), -0.0, 10**30, True, False, None]},
    {1: "a", 2.5: "b", None: "c"}, {True: "d", False: "e"}, {"a": {1: 2}}, {"a": {1: [2]}}, {_Text("s"): 1},
    {"e": _Level.HIGH, "l": [_Level.HIGH, _Text("t")]}, [True, 1, 1.0, 0, False],
    {"n": {"m": {"o": [{"p": []}, {"q": [1]}, "r", None]}}},
]


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_equals_the_standard_library(value: Any) -> None:
    assert dumps_indented(value) == json.dumps(value, indent=2)


def test_a_discover_document_is_written_the_same(tmp_path: Any) -> None:
    identity = {"provider": "aws", "target": "123456789012", "kind": "role", "id": "arn:aws:iam::1:role/r",
                "created": "2026-12-03T10:00:00Z", "managed": False, "owner": None, "tags": {"a": "b"},
                "principals": [{"kind": "any", "value": "*", "detail": "", "external": True}],
                "grants": [{"actions": ["s3:*"], "resources": ["*"], "source": "inline",
                            "conditional": False}],
                "credentials": [], "usage": [{"signal": "role last used", "at": None, "windowDays": 400}],
                "findings": [{"code": "admin-grant", "severity": "high", "message": "allows * on *"}]}
    doc = {"kind": "workload-ids/discover", "version": 1, "shard": None,
           "identities": [identity, dict(identity, id="other", tags={})], "counts": {"findings": {"x": 2}}}
    assert dumps_indented(doc) == json.dumps(doc, indent=2)


def test_what_json_refuses_it_refuses_the_same_way() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps_indented(loop)
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps_indented({"a": [object()]})
    with pytest.raises(TypeError, match="keys must be"):
        dumps_indented({"a": {(1, 2): 3}})
