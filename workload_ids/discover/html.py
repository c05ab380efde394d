"""The discover report as one self-contained HTML page, made from the JSON document alone
(``discover --output json``, or ``report merge``), for a security lead who opens it from a
CI artifact.

Everything a cloud returned is data written by someone else: an identity's name, its tags
and description can be set by any principal allowed to tag it. So every such value is
HTML-escaped where it is written, the document rides along as JSON inside a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped, and the
page's script reads it with ``JSON.parse`` and writes only ``textContent``. A
Content-Security-Policy forbids every load (scripts and styles only by the hash of the
page's own), so even a value that slipped through could neither run nor call home, and
nothing is fetched from the network when the page opens.

Without JavaScript the page is complete: the counts, the table and every identity's detail
panel (a click on an identity's name shows it, by the URL fragment). The script adds
sorting, the filters and clickable counts. The panels are laid out only when shown, so a
report of ten thousand identities still opens in seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

SEVERITY_RANK = {"high": 3, "medium": 2, "low": 1}
NO_OWNER = "(none)"

# How a principal reaches the identity, in words (see workload_ids.discovered.PrincipalKind).
_PRINCIPAL_WORDS = {
    "aws-account": "any principal of AWS account {value} that its own policies allow",
    "aws-principal": "the AWS principal {value}",
    "aws-service": "the AWS service {value}",
    "oidc": "workloads presenting OIDC tokens from {value}",
    "saml": "people signing in through the SAML provider {value}",
    "gcp-member": "the Google Cloud member {value}",
    "federated-credential": "workloads presenting tokens the federated credential {value} admits",
    "any": "anyone at all ({value})",
}

# key, header, type, first sort direction, width (%): fixed widths lay a table of thousands
# of rows out in a fraction of the time its content would take to measure.
_COLUMNS = (("provider", "Provider", "text", "asc", 6), ("target", "Target", "text", "asc", 11),
            ("kind", "Kind", "text", "asc", 8), ("name", "Name", "text", "asc", 16),
            ("owner", "Owner", "text", "asc", 10), ("managed", "Managed", "number", "desc", 6),
            ("created", "Created", "date", "asc", 7), ("lastUsed", "Last used", "date", "asc", 7),
            ("keyAge", "Oldest key (days)", "number", "desc", 6),
            ("findings", "Findings", "number", "desc", 16), ("severity", "Severity", "severity", "desc", 7))


_CSS = """
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa;
--high:#a40e26;--high-bg:#ffebe9;--medium:#7d4e00;--medium-bg:#fff8c5;--low:#0a3069;--low-bg:#ddf4ff}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;padding:16px 24px;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:20px 0 8px}h3{font-size:15px;margin:14px 0 6px}
.meta{color:var(--muted);margin:0 0 12px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;
overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
.alert{border:2px solid var(--high);background:var(--high-bg);padding:8px 14px;margin:12px 0}
.alert h2{margin-top:4px;color:var(--high)}
.warn{border:1px solid #d4a72c;background:var(--medium-bg);padding:6px 14px;margin:12px 0}
.cards{display:flex;flex-wrap:wrap;gap:16px}
.cards section{flex:1 1 300px;border:1px solid var(--line);padding:0 12px 10px}
.cards td.n,.cards th.n{text-align:right}
.cards code{white-space:nowrap}
#identities{table-layout:fixed;min-width:1100px}
#identities td{overflow-wrap:anywhere}
#identities th{white-space:normal}
#identities time{white-space:nowrap}
.wide{overflow-x:auto}
button{font:inherit;color:inherit}
button.count{border:1px solid var(--line);background:var(--soft);border-radius:10px;
padding:0 9px;cursor:pointer;min-width:2.5em}
button.count[aria-pressed=true]{background:#0969da;color:#fff;border-color:#0969da}
th button.sort{border:0;background:none;padding:0;font-weight:600;cursor:pointer}
th[aria-sort=ascending] button.sort::after{content:" \\25B2"}
th[aria-sort=descending] button.sort::after{content:" \\25BC"}
.controls{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin:14px 0 8px;
padding:8px 10px;background:var(--soft);border:1px solid var(--line)}
.controls label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}
.controls input,.controls select{font:inherit;padding:3px 6px;min-width:9em;max-width:18em}
.controls input[type=search]{min-width:18em}
#active{display:flex;gap:6px;flex-wrap:wrap}
#active button{border:1px solid #0969da;background:#ddf4ff;border-radius:10px;padding:0 8px;cursor:pointer}
.sev{display:inline-block;border-radius:9px;padding:0 7px;margin:1px 2px 1px 0;font-size:12px;
white-space:nowrap;border:1px solid transparent}
.sev-high{color:var(--high);background:var(--high-bg);border-color:var(--high)}
.sev-medium{color:var(--medium);background:var(--medium-bg);border-color:#d4a72c}
.sev-low{color:var(--low);background:var(--low-bg);border-color:#54aeff}
.tag{display:inline-block;font-size:11px;border:1px solid var(--line);border-radius:8px;padding:0 6px;
color:var(--muted)}
.tag.incomplete{color:var(--medium);border-color:#d4a72c;background:var(--medium-bg)}
.muted{color:var(--muted)}
.identity{display:none}
html:not(.js) .identity:target,.identity.shown{display:block;position:fixed;top:0;right:0;bottom:0;
width:min(780px,94vw);overflow:auto;background:var(--bg);border-left:1px solid var(--line);
box-shadow:-8px 0 24px rgba(0,0,0,.18);padding:4px 20px 20px;z-index:10}
.identity .head{display:flex;justify-content:space-between;align-items:baseline;gap:12px;
border-bottom:1px solid var(--line);position:sticky;top:-4px;background:var(--bg);padding:8px 0}
.identity .head h2{margin:0}
a.close{white-space:nowrap}
tr.current td{background:#ddf4ff}
.print-only{display:none}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
ul.findings,ul.principals{margin:4px 0;padding-left:20px}
[hidden]{display:none!important}
@media print{
body{max-width:none;padding:0;font-size:11px}
.controls,noscript{display:none!important}
button.count,th button.sort{border:0;background:none;padding:0;color:inherit}
tr,.cards section{break-inside:avoid}
.identity,.identity.shown{display:block;position:static;width:auto;overflow:visible;box-shadow:none;
border:0;border-top:1px solid #999;padding:0;margin-top:10px}
.identity[hidden]{display:none!important}
.identity .head{position:static}
.print-only{display:block}
a.close{display:none}
a{color:inherit;text-decoration:none}
.wide{overflow:visible}#identities{min-width:0}
}
""" + "".join(f".w{width}{{width:{width}%}}\n" for width in sorted({c[4] for c in _COLUMNS}))

# The page's only script. It reads the document from the JSON block and writes only
# textContent, attributes and the hidden flag: no innerHTML, no string built into code.
_JS = """
(function () {
  "use strict";
  var doc = JSON.parse(document.getElementById("report-data").textContent);
  var identities = doc.identities || [];
  var generated = Date.parse(doc.generated);
  var SEVERITY = {high: 3, medium: 2, low: 1};
  var table = document.getElementById("identities");
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var panels = {};
  document.querySelectorAll("section.identity").forEach(function (d) { panels[d.dataset.index] = d; });
  // From here the script shows the panels (the fragment only does without it).
  document.documentElement.classList.add("js");
  var current = null;
  function show(index) {
    hide();
    var panel = panels[index];
    if (!panel) { return; }
    panel.classList.add("shown");
    rows.forEach(function (r) { if (r.dataset.index === String(index)) { r.classList.add("current"); } });
    current = panel;
    panel.focus();
  }
  function hide() {
    if (current) { current.classList.remove("shown"); }
    current = null;
    rows.forEach(function (r) { r.classList.remove("current"); });
  }
  function time(text) { var t = text ? Date.parse(text) : NaN; return isNaN(t) ? null : t; }
  function words(i) {
    var parts = [i.provider, i.target, i.kind, i.id, i.name, i.owner || "", i.ownerSource || "",
                 i.description || ""];
    Object.keys(i.tags || {}).forEach(function (k) { parts.push(k, i.tags[k]); });
    (i.principals || []).forEach(function (p) { parts.push(p.kind, p.value, p.detail || ""); });
    (i.grants || []).forEach(function (g) {
      parts.push(g.source || ""); parts.push.apply(parts, g.actions || []);
      parts.push.apply(parts, g.resources || []);
    });
    (i.credentials || []).forEach(function (c) { parts.push(c.id, c.kind); });
    (i.findings || []).forEach(function (f) {
      parts.push(f.code, f.category, f.categoryName || "", f.severity, f.message || "");
    });
    parts.push.apply(parts, i.unread || []);
    return parts.join("\\n").toLowerCase();
  }
  function keyAge(i) {
    var oldest = null;
    (i.credentials || []).forEach(function (c) {
      var t = time(c.created);
      if (c.active && t !== null && (oldest === null || t < oldest)) { oldest = t; }
    });
    return oldest === null || isNaN(generated) ? null : (generated - oldest) / 86400000;
  }
  function highest(i) {
    return (i.findings || []).reduce(function (m, f) { return Math.max(m, SEVERITY[f.severity] || 0); }, 0);
  }
  var SORT = {
    provider: function (i) { return i.provider; },
    target: function (i) { return i.target; },
    kind: function (i) { return i.kind; },
    name: function (i) { return i.name; },
    owner: function (i) { return i.owner || null; },
    managed: function (i) { return i.managed ? 1 : 0; },
    created: function (i) { return time(i.created); },
    lastUsed: function (i) { return time(i.lastUsed); },
    keyAge: keyAge,
    findings: function (i) { return (i.findings || []).length; },
    severity: highest
  };
  var facts = rows.map(function (row) {
    var i = identities[Number(row.dataset.index)];
    return {row: row, identity: i, index: Number(row.dataset.index), text: words(i),
            severities: (i.findings || []).map(function (f) { return f.severity; }),
            codes: (i.findings || []).map(function (f) { return f.code; }),
            categories: (i.findings || []).map(function (f) { return f.category; }),
            owner: i.owner || "(none)"};
  });
  var state = {text: "", provider: "", severity: "", managed: "", owner: "", code: "", category: ""};
  var shown = document.getElementById("shown");
  var active = document.getElementById("active");
  var LABEL = {code: "finding ", category: "category ", owner: "owner "};
  function matches(f) {
    if (state.text) {
      var terms = state.text.toLowerCase().split(/\\s+/).filter(Boolean);
      for (var t = 0; t < terms.length; t++) { if (f.text.indexOf(terms[t]) < 0) { return false; } }
    }
    if (state.provider && f.identity.provider !== state.provider) { return false; }
    if (state.severity === "none" && f.severities.length) { return false; }
    if (state.severity && state.severity !== "none" &&
        f.severities.indexOf(state.severity) < 0) { return false; }
    if (state.managed && String(!!f.identity.managed) !== state.managed) { return false; }
    if (state.owner && f.owner !== state.owner) { return false; }
    if (state.code && f.codes.indexOf(state.code) < 0) { return false; }
    if (state.category && f.categories.indexOf(state.category) < 0) { return false; }
    return true;
  }
  function apply() {
    var n = 0;
    facts.forEach(function (f) {
      var ok = matches(f);
      f.row.hidden = !ok;
      if (panels[f.index]) { panels[f.index].hidden = !ok; }
      if (ok) { n += 1; }
    });
    shown.textContent = "Showing " + n + " of " + facts.length + " identities";
    document.querySelectorAll("button.count").forEach(function (b) {
      b.setAttribute("aria-pressed", String(state[b.dataset.filter] === b.dataset.value));
    });
    active.textContent = "";
    ["code", "category", "owner"].forEach(function (k) {
      if (!state[k]) { return; }
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = LABEL[k] + state[k] + " \\u00d7";
      b.title = "remove this filter";
      b.addEventListener("click", function () { set(k, ""); });
      active.appendChild(b);
    });
  }
  function set(key, value) {
    state[key] = value;
    var control = document.getElementById("filter-" + key);
    if (control) { control.value = value; }
    apply();
  }
  document.querySelectorAll(".controls [data-filter]").forEach(function (control) {
    control.addEventListener("input", function () { set(control.dataset.filter, control.value); });
  });
  document.querySelectorAll("button.count").forEach(function (b) {
    b.addEventListener("click", function () {
      var k = b.dataset.filter;
      set(k, state[k] === b.dataset.value ? "" : b.dataset.value);
      table.scrollIntoView({block: "start"});
    });
  });
  function compare(a, b) {
    if (a === b) { return 0; }
    if (a === null) { return 1; }
    if (b === null) { return -1; }
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    return String(a).localeCompare(String(b), undefined, {numeric: true, sensitivity: "base"});
  }
  var sortedBy = {key: null, dir: 1};
  table.querySelectorAll("th[data-key]").forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var key = th.dataset.key;
      sortedBy.dir = sortedBy.key === key ? -sortedBy.dir : (th.dataset.first === "desc" ? -1 : 1);
      sortedBy.key = key;
      var get = SORT[key];
      facts.sort(function (x, y) {
        var a = get(x.identity), b = get(y.identity);
        // Missing values stay last whichever way the column is sorted.
        if (a === null || b === null) { return compare(a, b) || x.index - y.index; }
        return sortedBy.dir * compare(a, b) || x.index - y.index;
      });
      // Rows move through a fragment: the table is laid out once, not per row.
      var body = table.tBodies[0];
      var moved = document.createDocumentFragment();
      facts.forEach(function (f) { moved.appendChild(f.row); });
      body.appendChild(moved);
      table.querySelectorAll("th[data-key]").forEach(function (other) {
        other.removeAttribute("aria-sort");
      });
      th.setAttribute("aria-sort", sortedBy.dir > 0 ? "ascending" : "descending");
    });
  });
  document.querySelectorAll("a.open").forEach(function (a) {
    a.addEventListener("click", function (event) { event.preventDefault(); show(a.dataset.index); });
  });
  document.querySelectorAll("a.close").forEach(function (a) {
    a.addEventListener("click", function (event) { event.preventDefault(); hide(); });
  });
  document.addEventListener("keydown", function (event) { if (event.key === "Escape") { hide(); } });
  document.querySelectorAll("[data-needs-script]").forEach(function (e) { e.hidden = false; });
  apply();
  var linked = location.hash ? document.getElementById(location.hash.slice(1)) : null;
  if (linked && linked.classList.contains("identity")) { show(linked.dataset.index); }
})();
"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


# Nothing may be loaded: no script, style, image, font, frame or connection but the page's
# own script and style, allowed by their hash (an injected <script> or style= would not run).
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src '{_sha256(_JS)}'; style-src '{_sha256(_CSS)}'; "
    "img-src 'none'; font-src 'none'; connect-src 'none'; media-src 'none'; object-src 'none'; "
    "frame-src 'none'; worker-src 'none'; manifest-src 'none'; form-action 'none'; base-uri 'none'")


def script_json(value: Any) -> str:
    """``value`` as JSON that is inert inside an HTML ``<script>`` element: ``<``, ``>`` and
    ``&`` as ``\\u003c``, ``\\u003e``, ``\\u0026`` (so no ``</script>`` or ``<!--`` can end
    or bend the block), and U+2028/U+2029 escaped too. ``JSON.parse`` reads it unchanged."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=False, separators=(",", ":"))
    for char, code in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                       ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def _e(value: Any) -> str:
    """A value from the document as HTML text (quotes too: the same helper fills attributes)."""
    return escape("" if value is None else str(value), quote=True)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _when(value: Any, never: str = "-") -> str:
    """A document time as ``2026-12-03 10:00 UTC`` inside ``<time>``, or ``never``."""
    at = _time(value)
    if at is None:
        return f'<span class="muted">{_e(never)}</span>'
    return f'<time datetime="{_e(value)}">{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC</time>'


def _day(value: Any, never: str = "-") -> str:
    at = _time(value)
    if at is None:
        return f'<span class="muted">{_e(never)}</span>'
    return f'<time datetime="{_e(value)}">{at.astimezone(UTC):%Y-%m-%d}</time>'


def _age_days(value: Any, now: datetime | None) -> int | None:
    at = _time(value)
    if at is None or now is None:
        return None
    return max(0, (now - at).days)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _sev(severity: Any, text: Any) -> str:
    name = severity if severity in SEVERITY_RANK else "low"
    return f'<span class="sev sev-{name}" title="{_e(severity)} severity">{_e(text)}</span>'


def _findings(identity: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [f for f in identity.get("findings") or [] if isinstance(f, Mapping)]


def _highest(identity: Mapping[str, Any]) -> str | None:
    ranked = [str(f.get("severity")) for f in _findings(identity) if f.get("severity") in SEVERITY_RANK]
    return max(ranked, key=SEVERITY_RANK.__getitem__, default=None)


def principal_words(principal: Mapping[str, Any]) -> str:
    """Who a trust entry admits, in words (plain text: the caller escapes it)."""
    kind = str(principal.get("kind", ""))
    value = str(principal.get("value", ""))
    words = _PRINCIPAL_WORDS.get(kind, kind + " {value}").format(value=value)
    detail = str(principal.get("detail") or "")
    if detail:
        words += f", when {detail}"
    elif kind == "oidc":
        words += ", with no condition on the token's subject"
    return words


def _oldest_key_age(identity: Mapping[str, Any], now: datetime | None) -> int | None:
    ages = [_age_days(c.get("created"), now) for c in identity.get("credentials") or []
            if isinstance(c, Mapping) and c.get("active", True)]
    known = [a for a in ages if a is not None]
    return max(known, default=None)


def _counts_by_code(document: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The severity of each finding code and the name of each category, as the findings say."""
    severity: dict[str, str] = {}
    names: dict[str, str] = {}
    for identity in document.get("identities") or []:
        for f in _findings(identity):
            severity.setdefault(str(f.get("code")), str(f.get("severity")))
            if f.get("categoryName"):
                names.setdefault(str(f.get("category")), str(f.get("categoryName")))
    return severity, names


def _category_order(category: str) -> tuple[int, str]:
    digits = "".join(c for c in category.split(":")[0] if c.isdigit())
    return (int(digits) if digits else 99, category)


def _count_button(kind: str, value: str, n: Any, label: str) -> str:
    return (f'<button type="button" class="count" data-filter="{_e(kind)}" data-value="{_e(value)}" '
            f'aria-pressed="false" title="show only identities with {_e(label)}">{_e(n)}</button>')


def _count_items(values: Any) -> list[tuple[str, Any]]:
    return [(str(k), v) for k, v in values.items()] if isinstance(values, Mapping) else []


def _header(document: Mapping[str, Any], identities: list[Mapping[str, Any]]) -> str:
    targets = [t for t in document.get("targets") or [] if isinstance(t, Mapping)]
    failed = [t for t in targets if t.get("status") != "read"]
    settings = document.get("settings") or {}
    parts = [
        "<header>",
        "<h1>Non-human identities: discover report</h1>",
        f'<p class="meta">Read {_when(document.get("generated"), "at an unknown time")} by workload-ids: '
        f"{_plural(len(identities), 'identity', 'identities')} in "
        f"{_plural(len(targets), 'target')}. Keys count as too old after "
        f"{_e(settings.get('maxKeyAge', '?'))}; an identity counts as unused after "
        f"{_e(settings.get('unusedAfter', '?'))} without use.</p>",
    ]
    if failed:
        parts += [
            '<section class="alert" role="alert" id="target-errors">',
            f"<h2>{_plural(len(failed), 'target')} could not be read</h2>",
            "<p>The identities in them, and their findings, are <strong>missing</strong> from this "
            "report. Fix the access named below and run <code>workload-ids discover</code> again.</p>",
            "<ul>",
            *(f"<li><strong>{_e(t.get('provider'))} {_e(t.get('target'))}</strong>: "
              f"{_e(t.get('error') or 'not read')}</li>" for t in failed),
            "</ul></section>",
        ]
    shard = document.get("shard")
    if isinstance(shard, Mapping):
        parts.append(
            f'<section class="warn" role="note"><strong>Shard {_e(shard.get("index"))} of '
            f'{_e(shard.get("count"))} only</strong>: this run read part of the targets. Combine the '
            "shards' JSON documents with <code>workload-ids report merge FILE...</code> for the whole "
            "picture.</section>")
    incomplete = [i for i in identities if i.get("unread")]
    if incomplete:
        parts.append(
            f'<section class="warn" role="note"><strong>{_plural(len(incomplete), "identity", "identities")} '
            "could not be read in full</strong> (marked <span class=\"tag incomplete\">incomplete</span>): a "
            "finding may be missing for them; their panels say which facts were not read.</section>")
    parts += ["<h2>Targets</h2>", "<table class=\"targets\"><thead><tr><th>Provider</th><th>Target</th>"
              "<th>Status</th><th>Identities</th></tr></thead><tbody>"]
    for t in targets:
        status = _e(t.get("status")) if t.get("status") == "read" else \
            f'<span class="sev sev-high">{_e(t.get("status"))}</span> {_e(t.get("error"))}'
        parts.append(f"<tr><td>{_e(t.get('provider'))}</td><td class=\"mono\">{_e(t.get('target'))}</td>"
                     f"<td>{status}</td><td>{_e(t.get('identities', ''))}</td></tr>")
    parts.append("</tbody></table></header>")
    return "\n".join(parts)


def _counts(document: Mapping[str, Any]) -> str:
    counts = document.get("counts") or {}
    severity, names = _counts_by_code(document)
    findings = sorted(_count_items(counts.get("findings")),
                      key=lambda kv: (-SEVERITY_RANK.get(severity.get(kv[0], ""), 0), kv[0]))
    categories = sorted(_count_items(counts.get("categories")), key=lambda kv: _category_order(kv[0]))
    owners = sorted(_count_items(counts.get("owners")),
                    key=lambda kv: (-kv[1] if isinstance(kv[1], int) else 0, kv[0]))
    out = ['<div class="cards" id="counts">',
           '<section><h2>Findings by code</h2><table><thead><tr><th>Code</th><th>Severity</th>'
           '<th class="n">Findings</th></tr></thead><tbody>']
    out += [f"<tr><td><code>{_e(code)}</code></td><td>{_sev(severity.get(code), severity.get(code, '?'))}"
            f"</td><td class=\"n\">{_count_button('code', code, n, 'finding ' + code)}</td></tr>"
            for code, n in findings] or ['<tr><td colspan="3" class="muted">no findings</td></tr>']
    out += ["</tbody></table></section>",
            "<section><h2>OWASP Non-Human Identities Top 10 (2025)</h2><table><thead><tr><th>Category</th>"
            '<th>Name</th><th class="n">Findings</th></tr></thead><tbody>']
    out += [f"<tr><td><code>{_e(cat)}</code></td><td>{_e(names.get(cat, ''))}</td><td class=\"n\">"
            f"{_count_button('category', cat, n, 'a finding in ' + cat)}</td></tr>"
            for cat, n in categories] or ['<tr><td colspan="3" class="muted">no findings</td></tr>']
    out += ["</tbody></table></section>",
            '<section><h2>Owners</h2><table><thead><tr><th>Owner</th><th class="n">Identities</th></tr>'
            "</thead><tbody>"]
    out += [f"<tr><td>{_e(owner) if owner != NO_OWNER else '<em>no owner</em>'}</td><td class=\"n\">"
            f"{_count_button('owner', owner, n, 'owner ' + owner)}</td></tr>" for owner, n in owners] \
        or ['<tr><td colspan="2" class="muted">no identities</td></tr>']
    out.append("</tbody></table></section></div>")
    return "\n".join(out)


def _options(values: Iterable[str], everything: str) -> str:
    return f'<option value="">{_e(everything)}</option>' + "".join(
        f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)


def _controls(identities: list[Mapping[str, Any]]) -> str:
    providers = sorted({str(i.get("provider")) for i in identities})
    owners = sorted({str(i.get("owner") or NO_OWNER) for i in identities})
    return "\n".join([
        '<div class="controls" data-needs-script hidden>',
        '<label>Search<input type="search" id="filter-text" data-filter="text" '
        'placeholder="name, id, tag, action, finding..." autocomplete="off"></label>',
        f'<label>Provider<select id="filter-provider" data-filter="provider">{_options(providers, "all")}'
        "</select></label>",
        '<label>Finding severity<select id="filter-severity" data-filter="severity">'
        '<option value="">any</option><option value="high">has a high finding</option>'
        '<option value="medium">has a medium finding</option><option value="low">has a low finding</option>'
        '<option value="none">no findings</option></select></label>',
        '<label>Managed<select id="filter-managed" data-filter="managed"><option value="">all</option>'
        '<option value="true">managed by workload-ids</option><option value="false">not managed</option>'
        "</select></label>",
        f'<label>Owner<select id="filter-owner" data-filter="owner">{_options(owners, "all")}'
        "</select></label>",
        '<div><span id="shown" role="status" aria-live="polite"></span><div id="active"></div></div>',
        "</div>",
        "<noscript><p class=\"muted\">Sorting and filtering need JavaScript; the table is complete "
        "without it, and a click on a name shows that identity's details.</p></noscript>",
    ])


def _table(identities: list[Mapping[str, Any]], now: datetime | None) -> str:
    head = "".join(f'<th data-key="{key}" data-type="{kind}" data-first="{first}" scope="col">'
                   f'<button type="button" class="sort">{label}</button></th>'
                   for key, label, kind, first, _ in _COLUMNS)
    widths = "".join(f'<col class="w{width}">' for *_, width in _COLUMNS)
    out = ['<h2>Identities</h2><div class="wide">',
           f'<table id="identities"><colgroup>{widths}</colgroup><thead><tr>{head}</tr></thead><tbody>']
    for index, i in enumerate(identities):
        badges = ""
        if i.get("serviceLinked"):
            badges += ' <span class="tag">service-linked</span>'
        if i.get("unread"):
            badges += ' <span class="tag incomplete">incomplete</span>'
        owner = (f'<span title="from {_e(i.get("ownerSource") or "?")}">{_e(i.get("owner"))}</span>'
                 if i.get("owner") else '<span class="muted">none</span>')
        age = _oldest_key_age(i, now)
        findings = "".join(_sev(f.get("severity"), f.get("code")) for f in _findings(i)) or \
            '<span class="muted">none</span>'
        highest = _highest(i)
        out.append(
            f'<tr data-index="{index}"><td>{_e(i.get("provider"))}</td>'
            f'<td class="mono">{_e(i.get("target"))}</td><td>{_e(i.get("kind"))}</td>'
            f'<td><a class="open" data-index="{index}" href="#identity-{index}">{_e(i.get("name"))}</a>'
            f"{badges}</td><td>{owner}</td><td>{'yes' if i.get('managed') else 'no'}</td>"
            f'<td>{_day(i.get("created"))}</td><td>{_day(i.get("lastUsed"), "never")}</td>'
            f'<td>{"" if age is None else age}</td><td>{findings}</td>'
            f'<td>{_sev(highest, highest) if highest else ""}</td></tr>')
    if not identities:
        out.append(f'<tr><td colspan="{len(_COLUMNS)}" class="muted">No identities found.</td></tr>')
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _rows(header: Iterable[str], rows: Iterable[Iterable[str]], empty: str) -> str:
    body = ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    if not body:
        return f'<p class="muted">{empty}</p>'
    return ("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _panel(index: int, i: Mapping[str, Any], now: datetime | None) -> str:
    unread = [str(u) for u in i.get("unread") or []]
    out = [f'<section class="identity" id="identity-{index}" data-index="{index}" tabindex="-1" '
           f'aria-label="{_e(i.get("name"))}">',
           f"<div class=\"head\"><h2>{_e(i.get('name'))} <span class=\"muted\">{_e(i.get('kind'))} in "
           f"{_e(i.get('provider'))} {_e(i.get('target'))}</span></h2>"
           '<a class="close" href="#identities">close \u00d7</a></div>']
    if unread:
        out.append('<div class="warn" role="note"><strong>Not read</strong> (a finding may be missing):<ul>'
                   + "".join(f"<li>{_e(u)}</li>" for u in unread) + "</ul></div>")
    owner = (f"{_e(i.get('owner'))} <span class=\"muted\">(from {_e(i.get('ownerSource') or '?')})</span>"
             if i.get("owner") else '<span class="muted">none found</span>')
    managed = ("yes: it carries workload-ids' authenticated marker" if i.get("managed")
               else "no: made by hand or by another tool")
    out.append(
        '<dl class="facts">'
        f'<dt>Id</dt><dd class="mono">{_e(i.get("id"))}</dd>'
        f"<dt>Managed by workload-ids</dt><dd>{managed}</dd>"
        f"<dt>Owner</dt><dd>{owner}</dd>"
        f'<dt>Created</dt><dd>{_when(i.get("created"), "unknown")}</dd>'
        f'<dt>Last used</dt><dd>{_when(i.get("lastUsed"), "never, as far as the cloud says")}</dd>'
        + ("<dt>Service-linked</dt><dd>yes: created and owned by a cloud service</dd>"
           if i.get("serviceLinked") else "")
        + (f'<dt>Description</dt><dd>{_e(i.get("description"))}</dd>' if i.get("description") else "")
        + "</dl>")
    findings = _findings(i)
    out.append(f"<h3>Findings ({len(findings)})</h3>")
    out.append('<ul class="findings">' + "".join(
        f"<li>{_sev(f.get('severity'), f.get('severity'))} <code>{_e(f.get('code'))}</code> "
        f"{_e(f.get('message'))} <span class=\"muted\">({_e(f.get('category'))} "
        f"{_e(f.get('categoryName'))})</span></li>" for f in findings) + "</ul>"
        if findings else '<p class="muted">None.</p>')
    principals = [p for p in i.get("principals") or [] if isinstance(p, Mapping)]
    out.append("<h3>Who can use it</h3>")
    out.append('<ul class="principals">' + "".join(
        f"<li>{_e(principal_words(p))}"
        + (' <span class="sev sev-medium">outside its own account, project or tenant</span>'
           if p.get("external") else "")
        + (' <span class="sev sev-high">wildcard</span>' if p.get("wildcard") else "")
        + "</li>" for p in principals) + "</ul>"
        if principals else '<p class="muted">No principal in its trust: only what its credentials give.</p>')
    grants = [g for g in i.get("grants") or [] if isinstance(g, Mapping)]
    out.append("<h3>Grants</h3>")
    out.append(_rows(("Actions", "Resources", "From", "Conditional"), (
        ("<code>" + "<br>".join(_e(a) for a in g.get("actions") or []) + "</code>",
         "<code>" + "<br>".join(_e(r) for r in g.get("resources") or []) + "</code>",
         _e(g.get("source")), "yes" if g.get("conditional") else "no") for g in grants), "No grants."))
    credentials = [c for c in i.get("credentials") or [] if isinstance(c, Mapping)]
    out.append("<h3>Credentials</h3>")

    def age(c: Mapping[str, Any]) -> str:
        days = _age_days(c.get("created"), now)
        return "" if days is None else f" <span class=\"muted\">({_plural(days, 'day')} old)</span>"

    out.append(_rows(("Id", "Kind", "Created", "Expires", "Last used", "Active"), (
        (f'<span class="mono">{_e(c.get("id"))}</span>', _e(c.get("kind")),
         _when(c.get("created"), "unknown") + age(c), _when(c.get("expires"), "never"),
         _when(c.get("lastUsed"), "never"), "yes" if c.get("active", True) else "no")
        for c in credentials), "No long-lived credentials."))
    usage = [u for u in i.get("usage") or [] if isinstance(u, Mapping)]
    out.append("<h3>Usage signals</h3>")
    out.append(_rows(("Signal", "Last use", "The cloud keeps"), (
        (_e(u.get("signal")), _when(u.get("at"), "no use recorded"),
         _plural(u["windowDays"], "day") if isinstance(u.get("windowDays"), int) else "")
        for u in usage), "The cloud offers no usage signal for it."))
    tags = i.get("tags") if isinstance(i.get("tags"), Mapping) else {}
    if tags:
        out.append("<h3>Tags</h3>")
        out.append(_rows(("Key", "Value"), ((_e(k), _e(v)) for k, v in sorted(tags.items())), ""))
    out.append("</section>")
    return "\n".join(out)


def render(document: Mapping[str, Any]) -> str:
    """The discover JSON document as one self-contained HTML page (see the module doc)."""
    identities = [i for i in document.get("identities") or [] if isinstance(i, Mapping)]
    now = _time(document.get("generated"))
    title = "workload-ids discover report"
    if now is not None:
        title += f" {now:%Y-%m-%d %H:%M} UTC"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CONTENT_SECURITY_POLICY)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        _header(document, identities),
        _counts(document),
        _controls(identities),
        _table(identities, now),
        '<div id="panels"><h2 class="print-only">Identities in detail</h2>',
        *(_panel(index, i, now) for index, i in enumerate(identities)),
        "</div>",
        f'<script type="application/json" id="report-data">{script_json(dict(document))}</script>',
        f"<script>{_JS}</script>",
        "</body></html>",
        "",
    ])
