"""Issue 17's first "Done when", literally: a new user starts ``workload-ids sandbox
--with-existing`` (hand-made identities on all three clouds), runs ``discover`` and opens
its HTML report, adopts one identity per cloud, and ``plan`` shows no change for them;
removing an adopted manifest (and running ``cleanup --apply``, which releases what it no
longer declares) deletes nothing: every identity is still there with its grants and its
trust, without our marker.

Everything runs as the user would: the sandbox in a process of its own, every command a
``python -m workload_ids`` process with ``--config`` the file the sandbox wrote."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from support.browser import REQUIRE, Browser, chromium

from workload_ids.clock import format_time
from workload_ids.model import Marker

ROLE = "arn:aws:iam::123456789012:role/legacy-deployer"
USER = "arn:aws:iam::123456789012:user/legacy-ci"
ACCOUNT = "legacy-runner@acme-prod.iam.gserviceaccount.com"
MANAGED_IDENTITY = ("/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/rg-orders/providers/"
                    "Microsoft.ManagedIdentity/userAssignedIdentities/legacy-deployer")
ADOPTED = {ROLE: "adopted-legacy-deployer.yaml", ACCOUNT: "adopted-legacy-runner.yaml",
           MANAGED_IDENTITY: "adopted-legacy-deployer-azure.yaml"}
# What an identity is, as discover reads it through each cloud's API: everything but how
# it is marked (tags on AWS and Azure, the description on GCP) and when it was last seen.
KEPT = ("provider", "target", "kind", "name", "principals", "grants", "credentials")


def _free_base(span: int = 10) -> int:
    """A port from which ``span`` consecutive ports are free on 127.0.0.1 now."""
    for base in range(31000 + (os.getpid() % 200) * 50, 60000, 50):
        sockets = []
        try:
            for offset in range(span):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free port range")


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without AWS settings (the config decides), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "WORKLOAD_IDS_CLOCK"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **extra}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``workload-ids sandbox --with-existing`` running; yields its config and what it printed."""
    config = tmp_path / "sandbox.yaml"
    printed = tmp_path / "sandbox.out"
    with printed.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "workload_ids", "sandbox", "--with-existing",
                                 "--port", str(_free_base()), "--config-out", str(config)],
                                env=_environment(PYTHONUNBUFFERED="1"), cwd=tmp_path, stdout=sink,
                                stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            # The config appears once everything is made; the start text follows it.
            while not config.exists() or not printed.read_text().rstrip().endswith(" adopted"):
                assert proc.poll() is None, printed.read_text()
                assert time.monotonic() < deadline, "the sandbox did not start: " + printed.read_text()
                time.sleep(0.2)
            yield config, printed.read_text()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung sandbox
                proc.kill()
                proc.wait()


def run(config: Path, *args: str, clock: str | None = None) -> subprocess.CompletedProcess[str]:
    """``workload-ids VERB --config CONFIG ARGS...`` as the user types it, in the config's folder."""
    extra = {"WORKLOAD_IDS_CLOCK": clock} if clock else {}
    return subprocess.run([sys.executable, "-m", "workload_ids", args[0], "--config", str(config), *args[1:]],
                          env=_environment(**extra), cwd=config.parent, capture_output=True, text=True,
                          timeout=300)


def discovered(config: Path) -> dict[str, dict[str, Any]]:
    """``discover --output json``'s identities, by the id adopt takes (ARM's id spelled as
    the sandbox printed it)."""
    result = run(config, "discover", "--output", "json")
    assert result.returncode == 0, result.stderr
    return {i["id"].replace("/resourcegroups/", "/resourceGroups/"): i
            for i in json.loads(result.stdout)["identities"]}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _open_in_a_browser(report: Path, tmp_path: Path) -> None:
    """Open the report as the user would, in a real headless Chromium (skipped without one,
    unless WORKLOAD_IDS_REQUIRE_CHROMIUM=1): it shows all four identities, loads nothing but
    itself, raises nothing, and leaves a screenshot in the test's folder."""
    if not shutil.which("chromium") and os.environ.get(REQUIRE) != "1":
        print("chromium is not installed: the report was not opened in a browser")
        return
    chromium()
    browser = Browser(tmp_path / "chromium")
    try:
        page = browser.new_page()
        page.goto(report.as_uri())
        assert page.evaluate("document.getElementById('shown').textContent") == "Showing 4 of 4 identities"
        names = page.evaluate("Array.from(document.querySelectorAll('#identities tbody tr a.open'))"
                              ".map(a => a.textContent)")
        assert sorted(names) == ["legacy-ci", "legacy-deployer", "legacy-deployer", "legacy-runner"]
        assert [e["request"]["url"] for e in page.events("Network.requestWillBeSent")] == [report.as_uri()]
        assert page.events("Runtime.exceptionThrown") == []
        shot = page.screenshot(tmp_path / "report.png")
        print(f"screenshot: {shot}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        browser.close()


def test_discover_adopt_plan_then_removing_the_manifests_deletes_nothing(
        sandbox: tuple[Path, str], tmp_path: Path) -> None:
    config, printed = sandbox
    assert "Hand-made identities to try discover and adopt on:" in printed, printed
    for identity in (ROLE, USER, ACCOUNT, MANAGED_IDENTITY):
        assert identity in printed

    # discover: the HTML report a security lead opens, self-contained.
    report = run(config, "discover", "--output", "html", "--out", "report.html")
    assert report.returncode == 0, report.stderr
    page = (config.parent / "report.html").read_text()
    for text in ("legacy-deployer", "legacy-ci", "legacy-runner", ACCOUNT, "no-owner"):
        assert text in page, text
    parser = _Tags()
    parser.feed(page)
    assert ("meta", {"http-equiv": "Content-Security-Policy"}) in \
        [(t, {k: v for k, v in a.items() if k == "http-equiv"}) for t, a in parser.tags]
    for tag, attrs in parser.tags:
        assert not (tag == "script" and attrs.get("src")), attrs
        assert not (tag == "link" and attrs.get("rel") == "stylesheet"), attrs
        for key in ("src", "href"):
            assert not (attrs.get(key) or "").startswith(("http:", "https:", "//")), (tag, attrs)
    _open_in_a_browser(config.parent / "report.html", tmp_path)
    before = discovered(config)
    for identity in (ROLE, USER, ACCOUNT, MANAGED_IDENTITY):
        assert identity in before and before[identity]["managed"] is False, identity
        assert before[identity]["grants"], identity

    # adopt one per cloud, marked (the Azure identity shares the AWS role's name: its
    # manifest takes the cloud's name after it).
    adopted = run(config, "adopt", ROLE, ACCOUNT, MANAGED_IDENTITY, "--out", "adopted", "--owner", "team-x",
                  "--apply")
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert adopted.stdout.count("marked as adopted") == 3, adopted.stdout
    assert adopted.stdout.count("proof: grants nothing the identity does not hold today") == 3
    assert adopted.stdout.count("trust: unchanged") == 3
    folder = config.parent / "adopted"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ADOPTED.values())
    marked = discovered(config)
    for identity in ADOPTED:
        assert marked[identity]["managed"] is True and marked[identity]["owner"] == "team-x", identity
        assert {k: marked[identity][k] for k in KEPT} == {k: before[identity][k] for k in KEPT}

    # plan: no change for them.
    plan = run(config, "plan", "adopted")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes. 3 workload(s) match the cloud." in plan.stdout
    assert run(config, "plan", "--detailed-exitcode", "adopted").returncode == 0

    # Remove the manifests, one at a time, each followed by cleanup: nothing is deleted.
    # Cleanup judges an identity an hour after it was made (cloud reads lag), so the clock
    # runs two hours ahead (honoured on sandbox credentials).
    later = format_time((datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0))
    for name in ADOPTED.values():
        (folder / name).unlink()
        cleaned = run(config, "cleanup", "adopted", "--apply", clock=later)
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        assert "1 disown" in cleaned.stdout and "deletionPolicy retain: released" in cleaned.stdout, \
            cleaned.stdout
    after = discovered(config)
    for identity in (*ADOPTED, USER):
        assert identity in after, f"{identity} was deleted"
        assert after[identity]["managed"] is False, identity
        assert {k: after[identity][k] for k in KEPT} == {k: before[identity][k] for k in KEPT}, identity
        assert not any(k.startswith("workload-ids:") for k in after[identity]["tags"]), identity
        assert Marker.from_text(after[identity]["description"]) is None
    # GCP keeps the marker in the account's description: the hand-written one comes back.
    assert after[ACCOUNT]["description"] == before[ACCOUNT]["description"] == "made by hand in 2019"
    audit = [json.loads(line) for line in (config.parent / "sandbox-audit.jsonl").read_text().splitlines()]
    for action in ("adopt", "release-identity"):
        assert sorted(r["provider"] for r in audit if r["action"] == action) == ["aws", "azure", "gcp"]
    assert not [r for r in audit if r["action"].startswith("delete")]
