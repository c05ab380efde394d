"""examples/schedules/discover-*: a Kubernetes Indexed Job and a GitHub Actions matrix that split an
organisation's targets into N shards and merge the N reports (issue 17 item 5). Each is
valid YAML, its shards cover 1..N exactly, every workload-ids command line in it is one
the CLI accepts, and its credentials are keyless."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from workload_ids.cli import build_parser

SCHEDULING = Path(__file__).resolve().parents[1] / "examples" / "schedules"


def _commands(script: str, substitute: dict[str, str]) -> list[list[str]]:
    """The workload-ids command lines of a shell script, variables substituted."""
    found: list[list[str]] = []
    for line in script.splitlines():
        line = line.strip()
        for name, value in substitute.items():
            line = line.replace(name, value)
        if line.startswith("workload-ids "):
            found.append(shlex.split(line.split(">")[0])[1:])
    return found


def _known_verb(argv: list[str]) -> bool:
    """discover and report merge come with issue 17's other parts; parse them once they exist."""
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    return argv[0] in verbs


def _check(argv: list[str]) -> None:
    if _known_verb(argv):
        build_parser().parse_args(argv)


def test_the_indexed_job_covers_every_shard_and_merges_them_all() -> None:
    docs = list(yaml.safe_load_all((SCHEDULING / "discover-indexed-job.yaml").read_text()))
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}
    readers = jobs["workload-ids-discover"]["spec"]
    assert readers["completionMode"] == "Indexed"
    n = readers["completions"]
    assert readers["parallelism"] == n
    pod = readers["template"]["spec"]
    script = pod["containers"][0]["args"][0]
    shards: set[tuple[int, int]] = set()
    for index in range(n):
        # the pod's shell arithmetic, for each JOB_COMPLETION_INDEX Kubernetes hands out
        values = {f"$((JOB_COMPLETION_INDEX+1))/{n}": f"{index + 1}/{n}",
                  "$((JOB_COMPLETION_INDEX+1))": str(index + 1)}
        assignments = dict(re.findall(r'^\s*(\w+)="([^"]*)"', script, re.M))
        resolved = {f'"${name}"': values.get(value, value) for name, value in assignments.items()}
        commands = _commands(script, resolved)
        assert {c[0] for c in commands} == {"discover", "inventory"}
        for argv in commands:
            shard = argv[argv.index("--shard") + 1]
            i, total = (int(x) for x in shard.split("/"))
            shards.add((i, total))
            _check(argv)
    assert shards == {(i, n) for i in range(1, n + 1)}
    # keyless: a service account bound to a cloud identity; no secret or key file mounted
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert pod["serviceAccountName"] == accounts[0]["metadata"]["name"]
    assert "eks.amazonaws.com/role-arn" in accounts[0]["metadata"]["annotations"]
    assert not any("secret" in v for v in pod["volumes"])
    merge = jobs["workload-ids-discover-merge"]["spec"]["template"]["spec"]
    for argv in _commands(merge["containers"][0]["args"][0], {}):
        assert argv[:2] == ["report", "merge"]
        assert [a for a in argv if a.endswith(".json") and "discover-" in a] == [
            f"/reports/discover-{i}.json" for i in range(1, n + 1)]
        _check(argv)


def test_the_actions_matrix_covers_every_shard_and_merges_them_all() -> None:
    workflow: dict[str, Any] = yaml.safe_load((SCHEDULING / "discover-matrix.yml").read_text())
    discover = workflow["jobs"]["discover"]
    values = discover["strategy"]["matrix"]["shard"]
    n = len(values)
    assert values == list(range(1, n + 1))
    assert discover["permissions"]["id-token"] == "write"  # keyless: GitHub's OIDC token
    steps = discover["steps"]
    script = next(s["run"] for s in steps if s.get("name") == "Discover this shard")
    for shard in values:
        for argv in _commands(script, {"${{ matrix.shard }}": str(shard)}):
            assert argv[argv.index("--shard") + 1] == f"{shard}/{n}"
            _check(argv)
    for step in steps:
        with_ = step.get("with", {})
        assert not any(k in with_ for k in ("aws-secret-access-key", "credentials_json", "creds"))
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    merge = workflow["jobs"]["merge"]
    assert merge["needs"] == "discover" and "id-token" not in merge["permissions"]
    script = next(s["run"] for s in merge["steps"] if s.get("name") == "Merge the shards into one report")
    for argv in _commands(script, {}):
        assert [a for a in argv if a.startswith("shards/")] == [
            f"shards/discover-{i}.json" for i in range(1, n + 1)]
        _check(argv)


@pytest.mark.parametrize("name", ["discover-indexed-job.yaml", "discover-matrix.yml"])
def test_the_scheduling_examples_are_no_manifests(name: str) -> None:
    """examples/ is validated as a folder of manifests: these hold no kind: Workload."""
    docs = list(yaml.safe_load_all((SCHEDULING / name).read_text()))
    assert all(d.get("kind") != "Workload" for d in docs if isinstance(d, dict))
