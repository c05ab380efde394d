"""The discover HTML report (``workload_ids.discover.html``): the page as written (complete
without JavaScript, nothing outside it referenced), then in a real headless Chromium
(Debian's ``chromium``, driven over the DevTools protocol by support/browser.py): it renders
the counts, sorts, filters, opens a detail panel, loads nothing from the network, shows the
attack values as text, and leaves a screenshot in the test's output folder.

The browser tests skip without chromium, except where WORKLOAD_IDS_REQUIRE_CHROMIUM=1 (CI)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from support.browser import REQUIRE, Browser, Page, chromium, running_browser
from support.discover_documents import ATTACK_DESCRIPTION, ATTACK_NAME, ATTACK_TAG, document

from workload_ids.discover.html import render


class Tree(HTMLParser):
    """Every start tag with its attributes, and the text inside #identities' body rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Tree:
    tree = Tree()
    tree.feed(page)
    tree.close()
    return tree


def days_old(created: str) -> int:
    return (datetime(2026, 12, 3, 10, tzinfo=UTC) - datetime.fromisoformat(created)).days


# --- the page as written ----------------------------------------------------------------

def test_without_javascript_the_table_and_every_panel_are_there() -> None:
    tree = parse(render(document()))
    rows = [a for t, a in tree.tags if t == "tr" and a.get("data-index") is not None]
    panels = [a for t, a in tree.tags if t == "section" and a.get("class") == "identity"]
    assert len(rows) == len(panels) == 9
    # Each name links to its panel, which the fragment shows (CSS :target) without the script.
    links = [a["href"] for t, a in tree.tags if t == "a" and a.get("class") == "open"]
    assert links == [f"#{a['id']}" for a in panels]
    # The controls only work with the script, which unhides them.
    controls = next(a for t, a in tree.tags if t == "div" and a.get("class") == "controls")
    assert "hidden" in controls
    assert any("Sorting and filtering need JavaScript" in text for text in tree.text)


def test_nothing_outside_the_page_is_referenced() -> None:
    page = render(document())
    tree = parse(page)
    assert not [t for t, _ in tree.tags if t in ("link", "img", "iframe", "object", "embed", "base", "audio",
                                                  "video", "source", "form")]
    links = [a.get("href") or a.get("src") for _, a in tree.tags if "href" in a or "src" in a]
    assert links and all(str(link).startswith("#") for link in links)
    assert "@import" not in page and "url(" not in page and "@font-face" not in page


def test_the_header_says_when_what_and_which_targets_failed_first() -> None:
    page = render(document())
    text = "".join(parse(page).text)
    assert "Read 2026-12-03 10:00 UTC by workload-ids: 9 identities in 5 targets." in text
    assert "1 target could not be read" in text
    assert "AccessDenied: sts:AssumeRole on arn:aws:iam::333333333333:role/discover; grant it <here> " \
           "& retry" in text
    assert page.index('id="target-errors"') < page.index('id="counts"') < page.index('id="identities"')
    assert "1 identity could not be read in full" in text
    assert "Shard" not in text
    sharded = "".join(parse(render(document(shard={"index": 2, "count": 4}))).text)
    assert "Shard 2 of 4 only: this run read part of the targets." in sharded


def test_the_panels_say_who_can_use_each_identity_and_how_old_its_keys_are() -> None:
    text = "".join(parse(render(document())).text)
    assert "workloads presenting OIDC tokens from token.actions.githubusercontent.com, when " \
           "sub = repo:acme/*" in text
    assert "any principal of AWS account 999999999999 that its own policies allow" in text
    assert "people signing in through the SAML provider arn:aws:iam::222222222222:saml-provider/okta" in text
    assert "the Google Cloud member serviceAccount:ci@other.iam.gserviceaccount.com, when " \
           "roles/iam.serviceAccountTokenCreator" in text
    assert f"({days_old('2020-02-02T00:00:00+00:00')} days old)" in text
    assert "access key AKIAEXAMPLEOLD00001 is 2131 days old (max 90d)" in text
    assert "attached policies: AccessDenied on iam:ListAttachedUserPolicies" in text
    assert "The cloud offers no usage signal for it." in text


def test_an_empty_run_renders() -> None:
    empty = {"kind": "workload-ids/discover", "version": 1, "generated": "2026-12-03T10:00:00Z",
             "settings": {"maxKeyAge": "90d", "unusedAfter": "90d"}, "shard": None, "targets": [],
             "identities": [], "counts": {"findings": {}, "categories": {}, "owners": {}}}
    text = "".join(parse(render(empty)).text)
    assert "0 identities in 0 targets" in text and "No identities found." in text


def test_a_partial_or_odd_document_still_renders() -> None:
    odd = {"generated": "not a time", "shard": {"index": 1},
           "targets": [{"status": "error"}], "counts": {"owners": {"a": "x"}, "findings": None},
           "identities": [{"provider": "aws", "id": "x", "tags": None, "credentials": None,
                           "findings": [{"severity": "unheard-of"}], "usage": [{"windowDays": 3}],
                           "principals": [{"kind": "a-kind-added-later", "value": "v"}]}]}
    text = "".join(parse(render(odd)).text)
    assert "1 target could not be read" in text and "a-kind-added-later v" in text
    assert "Read at an unknown time" in text
    assert "No identities found." in "".join(parse(render({})).text)


# --- in a real browser ------------------------------------------------------------------

def test_without_chromium_the_browser_tests_skip_unless_required(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        chromium()
    monkeypatch.setenv(REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="WORKLOAD_IDS_REQUIRE_CHROMIUM=1: apt-get install"):
        chromium()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with running_browser(tmp_path_factory.mktemp("chromium") / "profile") as running:
        yield running


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "report.html"
    path.write_text(render(document()), encoding="utf-8")
    return path


@pytest.fixture
def page(browser: Browser, report: Path) -> Iterator[Page]:
    tab = browser.new_page()
    tab.goto(report.as_uri())
    try:
        yield tab
    finally:
        tab.close()


PANELS = "Array.from(document.querySelectorAll('section.identity'))"
SHOWN_PANELS = f"{PANELS}.filter(d => d.getClientRects().length > 0).map(d => d.id)"
VISIBLE_NAMES = ("Array.from(document.querySelectorAll('#identities tbody tr'))"
                 ".filter(r => r.getClientRects().length > 0)"
                 ".map(r => r.querySelector('a.open').textContent)")


def shown(page: Page) -> tuple[list[str], str]:
    return page.evaluate(VISIBLE_NAMES), page.evaluate("document.getElementById('shown').textContent")


def screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    path = page.screenshot(tmp_path / name)
    print(f"screenshot: {path}")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    return path


def test_it_renders_the_counts_and_loads_nothing_from_the_network(page: Page, report: Path,
                                                                  tmp_path: Path) -> None:
    assert shown(page)[1] == "Showing 9 of 9 identities"
    expected = document()["counts"]
    for kind, key in (("code", "findings"), ("category", "categories"), ("owner", "owners")):
        buttons = page.evaluate(f"Object.fromEntries(Array.from(document.querySelectorAll("
                                f"'button.count[data-filter={kind}]'))"
                                ".map(b => [b.dataset.value, b.textContent]))")
        assert buttons == {k: str(v) for k, v in expected[key].items()}, kind
    alert = page.evaluate("(() => { const e = document.getElementById('target-errors');"
                          " return [e.getClientRects().length, e.textContent]; })()")
    assert alert[0] > 0 and "333333333333" in alert[1]
    assert page.evaluate("document.querySelector('.controls').hidden") is False
    # Loading the page asked for nothing but the page itself, and its script raised nothing.
    assert [e["request"]["url"] for e in page.events("Network.requestWillBeSent")] == [report.as_uri()]
    assert page.events("Runtime.exceptionThrown") == []
    assert [e for e in page.events("Log.entryAdded") if e["entry"]["level"] == "error"] == []
    screenshot(page, tmp_path, "report.png")


def test_its_policy_refuses_any_load_a_page_script_would_try(page: Page, report: Path) -> None:
    assert page.evaluate("fetch('http://127.0.0.1:9/x').then(() => 'loaded', e => String(e))") == \
        "TypeError: Failed to fetch"
    assert page.evaluate("new Promise(done => { const i = new Image(); i.onload = () => done('loaded');"
                         " i.onerror = () => done('blocked'); i.src = 'http://127.0.0.1:9/p.png'; })") \
        == "blocked"
    blocked = {e["requestId"] for e in page.events("Network.loadingFailed")
               if e.get("blockedReason") == "csp"}
    for request in page.events("Network.requestWillBeSent"):
        assert request["request"]["url"] == report.as_uri() or request["requestId"] in blocked
    assert any("violates the following Content Security Policy directive: \"connect-src 'none'\""
               in e["entry"]["text"] for e in page.events("Log.entryAdded"))


def test_a_click_on_a_column_header_sorts_by_it(page: Page, tmp_path: Path) -> None:
    original = shown(page)[0]
    page.click("th[data-key=keyAge] button")
    assert shown(page)[0] == ["legacy-uploader", "billing-sync",
                              *[n for n in original if n not in ("legacy-uploader", "billing-sync")]]
    assert page.evaluate("document.querySelector('th[data-key=keyAge]').getAttribute('aria-sort')") == \
        "descending"
    page.click("th[data-key=keyAge] button")
    # Identities without a key stay last either way.
    assert shown(page)[0][:2] == ["billing-sync", "legacy-uploader"]
    page.click("th[data-key=lastUsed] button")
    assert shown(page)[0] == ["legacy-uploader", "saml-ops", "deploy-admin", "ci-runner", "etl",
                              ATTACK_NAME, "AWSServiceRoleForSupport", "billing-sync", "quiet"]
    page.click("th[data-key=severity] button")
    assert shown(page)[0] == ["ci-runner", "deploy-admin", "saml-ops", "etl", ATTACK_NAME, "legacy-uploader",
                              "billing-sync", "AWSServiceRoleForSupport", "quiet"]
    page.click("th[data-key=name] button")
    names = shown(page)[0]
    assert names == sorted(names, key=lambda n: (n[0].isalnum(), n.lower()))
    screenshot(page, tmp_path, "sorted.png")


def test_the_filters_narrow_the_rows(page: Page, tmp_path: Path) -> None:
    page.type("#filter-text", "team-a")
    assert shown(page) == (["deploy-admin", "billing-sync"], "Showing 2 of 9 identities")
    page.type("#filter-text", "iam:passrole")
    assert shown(page)[0] == ["saml-ops"]
    page.type("#filter-text", "")
    assert shown(page)[1] == "Showing 9 of 9 identities"

    page.choose("#filter-severity", "high")
    assert shown(page) == (["ci-runner", "deploy-admin", "saml-ops", "etl"], "Showing 4 of 9 identities")
    page.choose("#filter-provider", "gcp")
    assert shown(page)[0] == ["etl"]
    page.choose("#filter-provider", "")
    page.choose("#filter-severity", "none")
    assert shown(page)[0] == ["quiet"]
    page.choose("#filter-severity", "")
    page.choose("#filter-managed", "true")
    assert shown(page)[0] == ["ci-runner"]
    page.choose("#filter-managed", "")

    # A count is a filter: press it, and again (or its chip) to lift it.
    page.click("button.count[data-filter=code][data-value=no-owner]")
    assert shown(page) == (["legacy-uploader", "AWSServiceRoleForSupport"], "Showing 2 of 9 identities")
    assert page.evaluate("document.querySelector('#active button').textContent") == "finding no-owner \u00d7"
    assert page.evaluate(f"{PANELS}.filter(d => d.hidden).length") == 7
    page.click("#active button")
    assert shown(page)[1] == "Showing 9 of 9 identities"
    page.click("button.count[data-filter=category][data-value='NHI7:2025']")
    assert shown(page)[0] == ["legacy-uploader", "billing-sync"]
    page.click("button.count[data-filter=category][data-value='NHI7:2025']")
    page.click("button.count[data-filter=owner][data-value=data]")
    assert shown(page)[0] == ["etl", "quiet"]
    assert page.evaluate("document.getElementById('filter-owner').value") == "data"
    page.choose("#filter-owner", "(none)")
    assert shown(page)[0] == ["legacy-uploader", "AWSServiceRoleForSupport"]
    screenshot(page, tmp_path, "filtered.png")


def test_a_click_on_a_name_opens_its_detail_panel(page: Page, tmp_path: Path) -> None:
    assert page.evaluate(SHOWN_PANELS) == []
    page.click("#identities a.open[data-index='3']")
    assert page.evaluate(SHOWN_PANELS) == ["identity-3"]
    panel = page.evaluate("(() => { const d = document.getElementById('identity-3'); const r = "
                          "d.getBoundingClientRect(); return [r.left > 0 && r.right <= innerWidth && "
                          "r.top <= 0 && r.bottom >= innerHeight, d.innerText]; })()")
    assert panel[0] is True, "the panel is a drawer over the table, in view"
    panel = panel[1:]
    assert page.evaluate("document.querySelector('tr.current a.open').textContent") == "legacy-uploader"
    for fact in ("legacy-uploader", "Not read",
                 "attached policies: AccessDenied on iam:ListAttachedUserPolicies",
                 "AKIAEXAMPLEOLD00001", f"({days_old('2020-02-02T00:00:00+00:00')} days old)",
                 "access key AKIAEXAMPLEOLD00001 last used", "key-too-old", "NHI7:2025 Long-Lived Secrets",
                 "no: made by hand or by another tool"):
        assert fact in panel[0], fact
    screenshot(page, tmp_path, "detail.png")
    page.click("#identities a.open[data-index='0']")
    assert page.evaluate(SHOWN_PANELS) == ["identity-0"]
    text = page.evaluate("document.getElementById('identity-0').innerText")
    assert "workloads presenting OIDC tokens from token.actions.githubusercontent.com, when sub = " \
           "repo:acme/*" in text and "wildcard" in text
    assert "yes: it carries workload-ids' authenticated marker" in text
    page.click("#identity-0 a.close")
    assert page.evaluate(SHOWN_PANELS) == []
    page.click("#identities a.open[data-index='6']")
    for kind in ("keyDown", "keyUp"):
        page.send("Input.dispatchKeyEvent", type=kind, key="Escape", code="Escape", windowsVirtualKeyCode=27)
    assert page.evaluate(SHOWN_PANELS) == []


def test_the_attack_values_render_as_text(page: Page, tmp_path: Path) -> None:
    assert page.evaluate("document.title") == "workload-ids discover report 2026-12-03 10:00 UTC"
    assert page.evaluate("document.querySelector(\"#identities a.open[data-index='2']\").textContent") == \
        ATTACK_NAME
    page.click("#identities a.open[data-index='2']")
    text = page.evaluate("document.getElementById('identity-2').innerText")
    assert ATTACK_TAG in text and ATTACK_DESCRIPTION in text
    page.choose("#filter-owner", ATTACK_TAG)
    assert shown(page)[0] == [ATTACK_NAME]
    # No element the values describe came to exist, and nothing ran.
    assert page.evaluate("document.querySelectorAll('img, b, [onerror], [onmouseover]').length") == 0
    assert page.evaluate("Array.from(document.scripts).map(s => s.type || 'js')") == \
        ["application/json", "js"]
    assert page.events("Page.javascriptDialogOpening") == []
    screenshot(page, tmp_path, "attack.png")


def test_without_javascript_the_page_is_a_plain_complete_table(browser: Browser, report: Path,
                                                              tmp_path: Path) -> None:
    tab = browser.new_page()
    tab.send("Emulation.setScriptExecutionDisabled", value=True)
    tab.goto(report.as_uri())
    try:
        assert len(tab.evaluate(VISIBLE_NAMES)) == 9
        assert tab.evaluate("document.querySelector('.controls').getClientRects().length") == 0
        assert tab.evaluate(SHOWN_PANELS) == []
        # A click on a name goes to its panel's fragment, which CSS shows.
        tab.click("#identities a.open[data-index='5']")
        deadline = time.monotonic() + 10
        while tab.evaluate(SHOWN_PANELS) != ["identity-5"]:
            assert time.monotonic() < deadline, tab.evaluate(SHOWN_PANELS)
            time.sleep(0.05)
        assert "people signing in through the SAML provider" in tab.evaluate(
            "document.getElementById('identity-5').innerText")
        screenshot(tab, tmp_path, "no-script.png")
    finally:
        tab.close()


def test_printed_it_drops_the_controls_and_shows_the_panels_of_the_rows_shown(page: Page,
                                                                              tmp_path: Path) -> None:
    page.choose("#filter-severity", "high")
    page.send("Emulation.setEmulatedMedia", media="print")
    assert page.evaluate("getComputedStyle(document.querySelector('.controls')).display") == "none"
    assert page.evaluate(SHOWN_PANELS) == ["identity-0", "identity-1", "identity-5", "identity-7"]
    pdf: dict[str, Any] = page.send("Page.printToPDF", printBackground=False)
    (tmp_path / "report.pdf").write_bytes(base64.b64decode(pdf["data"]))
    assert (tmp_path / "report.pdf").read_bytes()[:5] == b"%PDF-"
    print(f"printed: {tmp_path / 'report.pdf'}")
    page.send("Emulation.setEmulatedMedia", media="")
    assert page.evaluate(SHOWN_PANELS) == []
