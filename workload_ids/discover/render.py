"""The discover report for a terminal (a table, then each finding) and as CSV (one row
per identity, its findings joined), for a spreadsheet or a ticket import.

Names, tags and descriptions come from the cloud, where anyone allowed to tag an identity
writes them: every table cell is put on one line, and a CSV cell that a spreadsheet would
run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return)
is written with a leading ``'`` (OWASP's advice on CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from ..clock import format_time
from ..errors import one_line
from .findings import RULES, SEVERITIES
from .workflow import DiscoverReport, JudgedIdentity

CSV_HEADER = ("provider", "target", "kind", "id", "name", "managed", "serviceLinked", "owner",
              "ownerSource", "created", "lastUsed", "principals", "credentials", "severity",
              "findingCodes", "categories", "findings", "unread")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _last_used(j: JudgedIdentity) -> str:
    last = j.identity.last_used()
    return format_time(last) if last else "never"


def render_table(report: DiscoverReport) -> str:
    """A fixed-width table of identities, then every finding by severity, then counts."""
    lines: list[str] = []
    rows: list[tuple[str, ...]] = [("KIND", "NAME", "TARGET", "OWNER", "MANAGED", "LAST USED", "FINDINGS")]
    for j in report.identities:
        i = j.identity
        rows.append(tuple(one_line(cell) for cell in (
            i.kind + (" (service-linked)" if i.service_linked else ""), i.name, f"{i.provider}:{i.target}",
            j.ownership.owner or "-", "yes" if i.managed else "no", _last_used(j),
            ", ".join(f.code for f in j.findings) or "-")))
    if len(rows) > 1:
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    else:
        lines.append("No non-human identities were found in the targets read.")
    for severity in reversed(SEVERITIES):
        said = [(j, f) for j in report.identities for f in j.findings if f.severity == severity]
        if said:
            lines += ["", f"{severity.upper()} ({len(said)}):"]
            lines += [one_line(f"  {f.code} [{f.category} {f.category_name}] "
                               f"{j.identity.provider}:{j.identity.target} {j.identity.name}: {f.message}")
                      for j, f in said]
    unread = [(j, u) for j in report.identities for u in j.identity.unread]
    if unread:
        lines += ["", "Not read (a finding may be missing for these):"]
        lines += [one_line(f"  {j.identity.provider}:{j.identity.target} {j.identity.name}: {u}")
                  for j, u in unread]
    lines += ["", _summary(report)]
    for t in report.failed:
        lines.append(one_line(f"ERROR: {t.provider} {t.target} could not be read: {t.error}"))
    lines += [one_line(f"note: {n}") for n in report.notes]
    return "\n".join(lines)


def _summary(report: DiscoverReport) -> str:
    read = sum(1 for t in report.targets if t.status == "read")
    total = sum(len(j.findings) for j in report.identities)
    per_code: dict[str, int] = {}
    for j in report.identities:
        for f in j.findings:
            per_code[f.code] = per_code.get(f.code, 0) + 1
    shown = ", ".join(f"{code} {per_code[code]}" for code in RULES if code in per_code)
    return (f"{len(report.identities)} identities in {read} of {len(report.targets)} target(s); "
            f"{total} finding(s)" + (f": {shown}" if shown else ""))


def _cell(value: str) -> str:
    """``value`` safe to open in a spreadsheet."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _joined(items: Iterable[str]) -> str:
    return "; ".join(items)


def render_csv(report: DiscoverReport) -> str:
    """One row per identity (RFC 4180, a header first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for j in report.identities:
        i = j.identity
        created = format_time(i.created) if i.created else ""
        last = i.last_used()
        row = (
            i.provider, i.target, i.kind, i.id, i.name, "true" if i.managed else "false",
            "true" if i.service_linked else "false", j.ownership.owner or "", j.ownership.source or "",
            created, format_time(last) if last else "",
            _joined(f"{p.kind} {p.value}" + (f" ({p.detail})" if p.detail else "") for p in i.principals),
            _joined(f"{c.kind} {c.id}" + ("" if c.active else " (inactive)")
                    + (f" created {format_time(c.created)}" if c.created else "") for c in i.credentials),
            j.worst() or "", _joined(f.code for f in j.findings),
            _joined(sorted({f.category for f in j.findings})),
            _joined(f"{f.code}: {f.message}" for f in j.findings), _joined(i.unread))
        writer.writerow([_cell(str(v)) for v in row])
    return buffer.getvalue()
