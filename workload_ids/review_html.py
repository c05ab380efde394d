"""``workload-ids review --output html``: the review JSON document as one self-contained
page, in the discover report's family (its stylesheet, the same Content-Security-Policy
rules: nothing loaded, only the page's own script and style, allowed by hash).

Complete without JavaScript: per owner a table of every access entry with its verdict, and
each manifest's suggested edit in a ``<pre>``. The script only filters rows (by verdict,
owner and free text), reading data attributes and setting ``hidden``: no ``innerHTML``.
Every value from a manifest, the cloud or the audit trail is escaped as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .discover.html import _CSS as _DISCOVER_CSS
from .discover.html import _e, _sha256

_CSS = _DISCOVER_CSS + """
.v{display:inline-block;border-radius:9px;padding:0 7px;font-size:12px;white-space:nowrap;
border:1px solid var(--line)}
.v-unused,.v-partly-used{color:var(--high);background:var(--high-bg);border-color:var(--high)}
.v-cannot-tell,.v-too-new{color:var(--medium);background:var(--medium-bg);border-color:#d4a72c}
.v-used{color:var(--low);background:var(--low-bg);border-color:#54aeff}
pre.diff{background:var(--soft);border:1px solid var(--line);padding:8px;overflow-x:auto}
pre.diff span{display:block}pre.diff .del{background:#ffebe9}pre.diff .add{background:#dafbe1}
table.access{margin-bottom:12px}
"""

_JS = """
(function () {
  "use strict";
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.entry"));
  var verdict = document.getElementById("filter-verdict");
  var owner = document.getElementById("filter-owner");
  var text = document.getElementById("filter-text");
  var shown = document.getElementById("shown");
  document.querySelectorAll("[data-needs-script]").forEach(function (e) { e.hidden = false; });
  function apply() {
    var v = verdict.value, o = owner.value, t = text.value.toLowerCase(), n = 0;
    rows.forEach(function (r) {
      var ok = (!v || r.dataset.verdict === v) && (!o || r.dataset.owner === o) &&
               (!t || r.textContent.toLowerCase().indexOf(t) >= 0);
      r.hidden = !ok;
      if (ok) { n += 1; }
    });
    document.querySelectorAll("section.owner").forEach(function (s) {
      s.hidden = !s.querySelector("tr.entry:not([hidden])") && (v || o || t) ? true : false;
    });
    shown.textContent = n + " of " + rows.length + " access entries shown";
  }
  [verdict, owner, text].forEach(function (e) { e.addEventListener("input", apply); });
  apply();
})();
"""

CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src '{_sha256(_JS)}'; style-src '{_sha256(_CSS)}'; "
    "img-src 'none'; font-src 'none'; connect-src 'none'; media-src 'none'; object-src 'none'; "
    "frame-src 'none'; worker-src 'none'; manifest-src 'none'; form-action 'none'; base-uri 'none'")

VERDICT_ORDER = ("unused", "partly used", "cannot tell", "too new", "used")


def _slug(verdict: Any) -> str:
    return str(verdict or "none").replace(" ", "-") if verdict in VERDICT_ORDER else "none"


def _verdict(value: Any) -> str:
    return f'<span class="v v-{_slug(value)}">{_e(value or "not read")}</span>'


def _what(a: Mapping[str, Any]) -> str:
    template = a.get("template")
    actions = ", ".join(map(str, a.get("actions") or []))
    name = actions if template in (None, "raw") else str(template)
    return f"{name} on {', '.join(map(str, a.get('resources') or []))}"


def _diff(text: str) -> str:
    lines = []
    for line in text.splitlines():
        cls = "del" if line.startswith("-") and not line.startswith("---") else \
            "add" if line.startswith("+") and not line.startswith("+++") else ""
        lines.append(f'<span class="{cls}">{_e(line) or " "}</span>')
    return '<pre class="diff">' + "".join(lines) + "</pre>"


def render(document: Mapping[str, Any]) -> str:
    """The review JSON document (``review --output json``) as one HTML page."""
    workloads = [w for w in document.get("workloads") or [] if isinstance(w, Mapping)]
    owners = sorted({str(w.get("owner", "")) for w in workloads})
    review = document.get("review") or {}
    verdicts = document.get("verdicts") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CONTENT_SECURITY_POLICY)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>workload-ids access review</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        "<header><h1>Access review: granted versus used</h1>",
        f'<p class="meta">{len(workloads)} workload(s); usage judged over the last '
        f"{_e(review.get('window', '?'))}; entries younger than that are not judged. "
        + ", ".join(f"{_e(n)} {_e(v)}" for v, n in verdicts.items()) + "</p>",
        *(f'<p class="warn">{_e(n)}</p>' for n in document.get("notes") or []),
        "</header>",
        '<div class="controls" data-needs-script hidden>',
        '<label>Search<input type="search" id="filter-text" autocomplete="off" '
        'placeholder="workload, action, resource..."></label>',
        '<label>Verdict<select id="filter-verdict"><option value="">all</option>'
        + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in VERDICT_ORDER) + "</select></label>",
        '<label>Owner<select id="filter-owner"><option value="">all</option>'
        + "".join(f'<option value="{_e(o)}">{_e(o)}</option>' for o in owners) + "</select></label>",
        '<div><span id="shown" role="status" aria-live="polite"></span></div>',
        "</div>",
    ]
    for owner in owners:
        mine = [w for w in workloads if str(w.get("owner", "")) == owner]
        parts += [f'<section class="owner" data-owner="{_e(owner)}"><h2>{_e(owner)}</h2>',
                  '<div class="wide"><table class="access"><thead><tr><th>Workload</th><th>Attestation</th>'
                  "<th>Entry</th><th>Grants</th><th>Last used</th><th>Verdict</th><th>Why</th>"
                  "<th>Suggestion</th></tr></thead><tbody>"]
        for w in mine:
            access = [a for a in w.get("access") or [] if isinstance(a, Mapping)] or [{}]
            for a in access:
                parts.append(
                    f'<tr class="entry" data-verdict="{_e(a.get("verdict", ""))}" data-owner="{_e(owner)}">'
                    f"<td>{_e(w.get('workload'))}<br><span class=\"muted\">{_e(w.get('provider'))}:"
                    f"{_e(w.get('target'))}</span></td><td>{_e(w.get('state'))}</td>"
                    f"<td class=\"mono\">{_e(_what(a)) if a else '-'}</td>"
                    f"<td class=\"mono\">{_e(', '.join(map(str, a.get('actions') or [])))}</td>"
                    f"<td>{_e(a.get('lastUsed') or '-')}</td><td>{_verdict(a.get('verdict'))}</td>"
                    f"<td>{_e(a.get('usage') or '')}</td><td>{_e(a.get('suggestion') or '-')}</td></tr>")
        parts.append("</tbody></table></div></section>")
    suggestions = [s for s in document.get("suggestions") or [] if isinstance(s, Mapping)]
    if suggestions:
        parts.append("<h2>Suggested manifest edits</h2>")
        for s in suggestions:
            parts += [f"<h3 class=\"mono\">{_e(s.get('path'))}</h3>", _diff(str(s.get("diff", "")))]
    parts += [f"<script>{_JS}</script>", "</body></html>", ""]
    return "\n".join(parts)


__all__ = ["CONTENT_SECURITY_POLICY", "render"]
