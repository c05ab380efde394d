"""The review HTML report (``workload_ids.review_html``): self-contained, in the discover
report's family, and in a real headless Chromium (support/browser.py): it renders every
access entry with its verdict, the verdict and owner filters work, nothing is loaded from
the network, and a screenshot is left in the test's output folder. Skips without chromium
unless WORKLOAD_IDS_REQUIRE_CHROMIUM=1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import Browser, Page, running_browser

from workload_ids.review_html import CONTENT_SECURITY_POLICY, render

ATTACK = "</td></tr></table><script>alert(1)</script><img src=x onerror=alert(2)>```"


def _entry(index: int, verdict: str, actions: list[str], suggestion: str | None = None,
           usage: str = "sqs was used at 2026-12-01T10:00:00Z") -> dict[str, Any]:
    return {"entry": index, "template": "raw", "resources": [f"arn:aws:sqs:eu-west-1:1:q{index}"],
            "actions": actions, "lastUsed": None if verdict != "used" else "2026-12-01T10:00:00Z",
            "usage": usage, "verdict": verdict, "suggestion": suggestion}


def document() -> dict[str, Any]:
    return {
        "review": {"every": "90d", "window": "90d", "onExpiry": "report"},
        "workloads": [
            {"provider": "aws", "target": "123456789012", "workload": "prod/svc-a", "owner": "team-a",
             "state": "ok", "access": [_entry(0, "used", ["sqs:ReceiveMessage"]),
                                       _entry(1, "unused", ["dynamodb:GetItem"], "drop this entry")]},
            {"provider": "aws", "target": "123456789012", "workload": "prod/svc-b", "owner": "team-b",
             "state": "overdue", "access": [_entry(0, "too new", ["sns:Publish"], usage=ATTACK)]},
        ],
        "verdicts": {"unused": 1, "too new": 1, "used": 1},
        "notes": [],
        "suggestions": [{"path": "manifests/svc-a.yaml", "diff": "--- a/manifests/svc-a.yaml\n"
                         "+++ b/manifests/svc-a.yaml\n@@ -1,3 +1,1 @@\n   - x\n"
                         "-  - actions: [dynamodb:GetItem]\n"
                         f"-    reason: {ATTACK}\n"}],
    }


def test_the_page_is_self_contained_and_escapes_every_value() -> None:
    page = render(document())
    assert f'content="{CONTENT_SECURITY_POLICY}"' in page.replace("&#x27;", "'")
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1 and "http://" not in page and "https://" not in page


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with running_browser(tmp_path_factory.mktemp("chromium") / "profile") as running:
        yield running


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[tuple[Page, Path]]:
    report = tmp_path / "review.html"
    report.write_text(render(document()), encoding="utf-8")
    tab = browser.new_page()
    tab.goto(report.as_uri())
    try:
        yield tab, report
    finally:
        tab.close()


VISIBLE = ("Array.from(document.querySelectorAll('tr.entry')).filter(r => r.getClientRects().length > 0)"
           ".map(r => r.dataset.verdict)")


def test_it_renders_and_filters_in_a_browser(page: tuple[Page, Path], tmp_path: Path) -> None:
    tab, report = page
    assert tab.evaluate(VISIBLE) == ["used", "unused", "too new"]
    assert tab.evaluate("document.getElementById('shown').textContent") == "3 of 3 access entries shown"
    # The crafted text is text: no element came of it, no script ran.
    assert tab.evaluate("document.querySelectorAll('img').length") == 0
    assert "<script>alert(1)</script>" in tab.evaluate("document.body.textContent")
    assert tab.evaluate("document.querySelectorAll('pre.diff .del').length") == 2
    tab.choose("#filter-verdict", "unused")
    assert tab.evaluate(VISIBLE) == ["unused"]
    assert tab.evaluate("document.getElementById('shown').textContent") == "1 of 3 access entries shown"
    assert tab.evaluate("document.querySelector('section.owner[data-owner=\"team-b\"]').hidden") is True
    tab.choose("#filter-verdict", "")
    tab.choose("#filter-owner", "team-b")
    assert tab.evaluate(VISIBLE) == ["too new"]
    tab.choose("#filter-owner", "")
    tab.type("#filter-text", "dynamodb")
    assert tab.evaluate(VISIBLE) == ["unused"]
    assert [e["request"]["url"] for e in tab.events("Network.requestWillBeSent")] == [report.as_uri()]
    assert tab.events("Runtime.exceptionThrown") == []
    shot = tab.screenshot(tmp_path / "review.png")
    print(f"screenshot: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
