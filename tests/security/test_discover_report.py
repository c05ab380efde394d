"""ATTACK: the discover HTML report shows what any principal in the account could write
(an identity's name, tags and their keys, description, an owner from a tag, a trust
condition, a target's error text). Opened by a security lead from a CI artifact, none of it
may become markup, script or a network load: values are escaped, the document rides along
as inert JSON, and the page's policy runs only its own script and style.

The browser-level counterpart (the same values shown as text in Chromium, nothing run, no
load) is tests/test_discover_html.py::test_the_attack_values_render_as_text."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from typing import Any

from support.discover_documents import ATTACK_DESCRIPTION, ATTACK_NAME, ATTACK_TAG, document

from workload_ids.discover.html import render, script_json

BREAKOUT = '" onmouseover="document.title=1" x="'


class Elements(HTMLParser):
    """Every element a browser would build from the page, with its attributes, and the text
    of every element (script content included, as the parser sees it)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text).append(data)


def elements(page: str) -> Elements:
    parsed = Elements()
    parsed.feed(page)
    parsed.close()
    return parsed


def hostile() -> dict[str, Any]:
    doc = document()
    evil = doc["identities"][2]
    assert evil["name"] == ATTACK_NAME
    evil["tags"][ATTACK_NAME] = BREAKOUT
    evil["owner"] = BREAKOUT  # an owner read from a tag: it lands in attributes (filters, options)
    evil["principals"][0]["detail"] = "aws:PrincipalTag/x = </script><script>alert(3)</script>"
    evil["grants"][0]["source"] = "inline policy <iframe src=http://127.0.0.1:9/>"
    evil["credentials"] = [{"id": "<svg onload=alert(4)>", "kind": "access-key", "created": None,
                            "expires": None, "lastUsed": None, "active": True}]
    evil["usage"][0]["signal"] = "<a href=http://127.0.0.1:9/>click</a>"
    evil["unread"] = ["<style>body{background:url(http://127.0.0.1:9/)}</style>"]
    evil["findings"][0]["message"] = "<meta http-equiv=refresh content=0;url=http://127.0.0.1:9/>"
    doc["counts"]["owners"][BREAKOUT] = 1
    doc["counts"]["findings"]["<b>code</b>"] = 1
    doc["identities"][3]["name"] = "line\u2028separator\u2029"
    return doc


def test_values_from_the_cloud_render_as_text_never_as_markup() -> None:
    doc = hostile()
    parsed = elements(render(doc))
    tags = [t for t, _ in parsed.elements]
    for forbidden in ("img", "b", "iframe", "svg", "a", "meta", "style", "script"):
        made = tags.count(forbidden)
        # The page's own: two scripts (data and code), one style, four metas, its own links.
        allowed = {"script": 2, "style": 1, "meta": 4}.get(forbidden, 0)
        if forbidden == "a":
            assert all(str(a.get("href", "")).startswith("#") for t, a in parsed.elements if t == "a")
        else:
            assert made == allowed, forbidden
    assert not [(t, k) for t, a in parsed.elements for k in a if k.startswith("on")]
    text = "".join(parsed.text)
    for value in (ATTACK_NAME, ATTACK_TAG, ATTACK_DESCRIPTION, BREAKOUT,
                  "aws:PrincipalTag/x = </script><script>alert(3)</script>", "<svg onload=alert(4)>",
                  "<a href=http://127.0.0.1:9/>click</a>", "<b>code</b>"):
        assert value in text, value


def test_a_value_cannot_leave_the_attribute_it_fills() -> None:
    parsed = elements(render(hostile()))
    filled = [a for _, a in parsed.elements if a.get("data-value") == BREAKOUT or a.get("value") == BREAKOUT]
    assert len(filled) == 2  # the owner count's button and the owner filter's option
    assert all("onmouseover" not in a and "x" not in a for a in filled)


def test_the_embedded_document_is_inert_json() -> None:
    doc = hostile()
    page = render(doc)
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert raw is not None
    block = raw.group(1)
    assert not set(block) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(block) == doc
    # Only the page's own two scripts close: no value ended the data block early.
    assert page.count("</script>") == 2
    tricky = {"a": "</script><!--<script>&\u2028"}
    assert json.loads(script_json(tricky)) == tricky


def test_the_policy_runs_only_the_pages_own_script_and_style_and_loads_nothing() -> None:
    page = render(hostile())
    parsed = elements(page)
    metas = [a for t, a in parsed.elements if t == "meta"]
    assert metas[0] == {"charset": "utf-8"}
    assert metas[1]["http-equiv"] == "Content-Security-Policy"
    # The policy comes before the page's style and script, so it governs them.
    assert page.index("Content-Security-Policy") < page.index("<style>") < page.index("<script")
    policy = dict((d.split()[0], d.split()[1:]) for d in str(metas[1]["content"]).split(";") if d.strip())

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    code = [s for s in parsed.scripts if not s.lstrip().startswith("{")]
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert len(code) == 1 and style is not None
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == [digest(code[0])]
    assert policy["style-src"] == [digest(style.group(1))]
    for directive in ("img-src", "font-src", "connect-src", "media-src", "object-src", "frame-src",
                      "form-action", "base-uri"):
        assert policy[directive] == ["'none'"], directive
    assert "unsafe" not in metas[1]["content"] and "http" not in str(metas[1]["content"])
