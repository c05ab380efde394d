"""Bad key-mode input: a positioned message, exit 1, nothing changed in the cloud."""

from __future__ import annotations

import pytest
from support.aws import KEY_MODE
from support.cli import run_cli


def _path_line(result_err: str) -> str:
    return result_err.strip().splitlines()[0]


@pytest.mark.parametrize(("rotation", "line", "message"), [
    ("{maxAge: 30days, overlap: 2d}", "12:24", "'30days' is not a duration"),
    ("{maxAge: 30d, overlap: -2d}", "12:38", "'-2d' is not a duration"),
    ("{maxAge: 30d, overlap: 30d}", "12:38", "overlap must be shorter than maxAge"),
    ("{maxAge: 30d, overlap: 40d}", "12:38", "overlap must be shorter than maxAge"),
    ("{maxAge: 10d, overlap: 2d, grace: 9d}", "12:15",
     "overlap + grace (2d + 9d) must be shorter than maxAge"),
    ("{maxAge: 30m, overlap: 5m, grace: 5m}", "12:15", "maxAge must be at least 1h"),
    ("{maxAge: 30, overlap: 2d}", "12:24", "'maxAge' is a duration: a string like '12h' or '30d', not 30"),
])
def test_bad_rotation(aws, manifests, rotation, line, message):
    text = KEY_MODE.replace("rotation: {maxAge: 30d, overlap: 2d, grace: 7d}", f"rotation: {rotation}")
    path = manifests({"v.yaml": text}) / "v.yaml"
    for verb in (("validate",), ("apply", "--auto-approve")):
        result = run_cli(*verb, str(path))
        assert result.code == 1, result.err
        first = _path_line(result.err)
        assert first.startswith(f"{path}:{line}:"), first
        assert message in first, first
        assert "Traceback" not in result.err
    assert aws.list_users(PathPrefix="/workload-ids/")["Users"] == []


def test_key_mode_with_federation(aws, manifests):
    text = KEY_MODE.replace(
        "    rotation: {maxAge: 30d, overlap: 2d, grace: 7d}\n",
        "    federation:\n      - kind: github-actions\n"
        "        repository: acme/x\n        ref: refs/heads/main\n")
    path = manifests({"v.yaml": text}) / "v.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 1
    line = text.splitlines().index("    federation:") + 1
    assert _path_line(result.err).startswith(f"{path}:{line}:5: key mode takes no federation entries")
    assert aws.list_users()["Users"] == []


@pytest.mark.parametrize(("pattern", "message"), [
    ("workload-ids/{env}/{name}", "does not resolve: unknown placeholder(s) {env}"),
    ("secrets/{name}/{oops}", "unknown placeholder(s) {oops}"),
    ("bad name with spaces/{name}", "is not a valid secret name"),
])
def test_secret_name_pattern_that_does_not_resolve(aws, manifests, tmp_path, pattern, message):
    config = tmp_path / "wid.yaml"
    config.write_text(f"credentials:\n  secretName: \"{pattern}\"\n")
    path = manifests({"v.yaml": KEY_MODE}) / "v.yaml"
    result = run_cli("apply", "--auto-approve", "--config", str(config), str(path))
    assert result.code == 1
    first = _path_line(result.err)
    assert first.startswith(f"{config}:2:15:"), first
    assert message in first
    assert aws.list_users()["Users"] == []


def test_bad_clock_override(aws, manifests, monkeypatch):
    path = manifests({"v.yaml": KEY_MODE}) / "v.yaml"
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", "next tuesday")
    result = run_cli("rotate", str(path))
    assert result.code == 1
    assert "WORKLOAD_IDS_CLOCK='next tuesday' is not an ISO-8601 time" in result.err
    assert "Traceback" not in result.err
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", "2026-01-01T00:00:00")
    result = run_cli("rotate", str(path))
    assert result.code == 1 and "has no UTC offset" in result.err


def test_lint_key_mode_warnings(aws, manifests, monkeypatch):
    text = KEY_MODE.replace("  provider: aws\n", "  provider: aws\n  runtime: kubernetes\n")
    path = manifests({"v.yaml": text}) / "v.yaml"
    result = run_cli("lint", str(path))
    assert result.code == 0
    assert "runtime kubernetes can federate: use mode: keyless" in result.out
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    from datetime import UTC, datetime, timedelta
    later = datetime.now(UTC) + timedelta(days=45)
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", later.strftime("%Y-%m-%dT%H:%M:%SZ"))
    offline = run_cli("lint", str(path))
    assert "past its maxAge" not in offline.out
    result = run_cli("lint", "--cloud", str(path))
    assert "is 45d old, past its maxAge of 30d; run `workload-ids rotate`" in result.out
    assert run_cli("lint", "--cloud", "--strict", str(path)).code == 1


@pytest.mark.parametrize("verb", ["apply", "rotate", "recover"])
def test_bad_lock_timeout(aws, manifests, tmp_path, verb):
    path = manifests({"v.yaml": KEY_MODE}) / "v.yaml"
    result = run_cli(verb, "--lock-timeout", "3 minutes", str(path))
    assert result.code == 1 and "Traceback" not in result.err
    assert "--lock-timeout: '3 minutes' is not a duration" in result.err
    assert aws.list_users(PathPrefix="/workload-ids/")["Users"] == []  # nothing changed


def test_bad_lock_timeout_in_config(aws, manifests, tmp_path):
    path = manifests({"v.yaml": KEY_MODE}) / "v.yaml"
    config = tmp_path / "wid.yaml"
    config.write_text("credentials:\n  lockTimeout: soon\n")
    result = run_cli("apply", "--auto-approve", "--config", str(config), str(path))
    assert result.code == 1 and "Traceback" not in result.err
    assert f"{config}:2:" in result.err and "'soon' is not a duration" in result.err
    assert aws.list_users(PathPrefix="/workload-ids/")["Users"] == []
