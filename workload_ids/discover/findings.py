"""The judge: what is wrong with one non-human identity, the same way on every cloud.

Pure: an identity's facts (``workload_ids.discovered``), the settings and the time in,
findings out. Each finding has a stable code, its OWASP Non-Human Identities Top 10 (2025)
category and a severity; the table is :data:`RULES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from ..discovered import Credential, DiscoveredIdentity, Grant
from ..durations import format_duration, parse_duration
from ..escalation import is_escalation

if TYPE_CHECKING:
    from ..config import Config
    from .owners import Ownership

Severity = Literal["low", "medium", "high"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high")

CATEGORIES = {
    "NHI1:2025": "Improper Offboarding",
    "NHI3:2025": "Vulnerable Third-Party NHI",
    "NHI5:2025": "Overprivileged NHI",
    "NHI6:2025": "Insecure Cloud Deployment Configurations",
    "NHI7:2025": "Long-Lived Secrets",
    "NHI10:2025": "Human Use of NHI",
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One finding code: its OWASP NHI category and severity."""

    code: str
    category: str
    severity: Severity
    when: str  # in words, for the README and --help


RULES = {r.code: r for r in (
    Rule("admin-grant", "NHI5:2025", "high", "holds an administrator grant (* on *, AdministratorAccess, "
         "IAMFullAccess, roles/owner, roles/editor, roles/iam.securityAdmin, Owner, Contributor, "
         "User Access Administrator)"),
    Rule("wildcard-grant", "NHI5:2025", "medium", "an action with a wildcard, or a non-read action on "
         "every resource"),
    Rule("escalation-grant", "NHI5:2025", "high", "an action that can gain more privilege"),
    Rule("key-too-old", "NHI7:2025", "medium", "an active key older than discover.maxKeyAge"),
    Rule("secret-never-expires", "NHI7:2025", "medium", "a client secret, certificate or service "
         "account key that never expires, or expires beyond discover.maxKeyAge"),
    Rule("unused", "NHI1:2025", "low", "no use by any signal within discover.unusedAfter"),
    Rule("no-owner", "NHI1:2025", "low", "no owner in its tags or our marker, or an owner the "
         "owner directory does not know as active"),
    Rule("external-trust", "NHI3:2025", "medium", "trusted by a principal outside its own account, "
         "project or tenant"),
    Rule("any-principal-trust", "NHI6:2025", "high", "trusted by any principal, or by an OIDC issuer "
         "without a subject condition or with a wildcard subject"),
    Rule("human-use", "NHI10:2025", "medium", "trusted by a SAML provider, an IAM user or an AWS "
         "account root: people can use it"),
)}

# Administrator roles and policies by name; AWS and Azure compare names without regard to case.
_ADMIN_NAMES = {
    "aws": frozenset({"administratoraccess", "iamfullaccess"}),
    "gcp": frozenset({"roles/owner", "roles/editor", "roles/iam.securityAdmin"}),
    "azure": frozenset({"owner", "contributor", "user access administrator"}),
}
# Keys, secrets and certificates that should carry an expiry (AWS access keys cannot).
_EXPIRING_KINDS = frozenset({"client-secret", "certificate", "service-account-key"})
_READ_VERB = re.compile(r"(^|[:./])(get|list|describe|read|head|batchget|query|scan|select|search|view)"
                        r"[A-Za-z]*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with one identity."""

    code: str
    message: str

    @property
    def rule(self) -> Rule:
        """The code's rule (category, severity)."""
        return RULES[self.code]

    @property
    def severity(self) -> Severity:
        """low, medium or high."""
        return self.rule.severity

    @property
    def category(self) -> str:
        """The OWASP NHI Top 10 (2025) category id, ``NHI5:2025``."""
        return self.rule.category

    @property
    def category_name(self) -> str:
        """The category's title, ``Overprivileged NHI``."""
        return CATEGORIES[self.rule.category]

    def as_json(self) -> dict[str, Any]:
        """The finding as the JSON document holds it."""
        return {"code": self.code, "category": self.category, "categoryName": self.category_name,
                "severity": self.severity, "message": self.message}


@dataclass(frozen=True, slots=True)
class Settings:
    """How identities are judged (``discover:`` in the config)."""

    max_key_age: timedelta = timedelta(days=90)
    unused_after: timedelta = timedelta(days=90)
    owner_tags: tuple[str, ...] = ("owner", "team", "workload-ids-owner")

    @staticmethod
    def from_config(config: Config) -> Settings:
        """The config's ``discover:`` section (validated when the config was loaded)."""
        d = config.discover
        return Settings(parse_duration(d.maxKeyAge), parse_duration(d.unusedAfter), tuple(d.ownerTags))

    def as_json(self) -> dict[str, str]:
        """The settings as the JSON document records them."""
        return {"maxKeyAge": format_duration(self.max_key_age),
                "unusedAfter": format_duration(self.unused_after)}


def severity_at_least(severity: str, floor: str) -> bool:
    """Whether ``severity`` is ``floor`` or worse."""
    return SEVERITIES.index(severity) >= SEVERITIES.index(floor)


def _days(delta: timedelta) -> str:
    return f"{delta.days}d"


def _fold(provider: str, name: str) -> str:
    return name if provider == "gcp" else name.lower()


def is_read(provider: str, action: str) -> bool:
    """Whether ``action`` only reads (AWS: the catalog's Read or List access level;
    elsewhere and for names the catalog lacks: a read verb)."""
    if provider == "aws" and "*" not in action and "?" not in action:
        from ..catalogs import aws_access_level
        level = aws_access_level(action)
        if level is not None:
            return level in ("Read", "List")
    return bool(_READ_VERB.search(action.replace("*", "")))


@cache
def _escalations_matching(provider: str, pattern: str) -> tuple[str, ...]:
    """Escalation-capable names a wildcard action covers (from the shipped catalog)."""
    from ..catalogs import matching
    return tuple(n for n in matching(provider, pattern) if is_escalation(provider, n))


def _grant_findings(identity: DiscoveredIdentity) -> list[Finding]:
    provider = identity.provider
    out: list[Finding] = []
    admin_sources: set[str] = set()
    for grant in identity.grants:
        for action in grant.actions:
            if action.startswith("role:") and _fold(provider, action[5:]) in _ADMIN_NAMES.get(provider, ()):
                admin_sources.add(grant.source)
                out.append(Finding("admin-grant", f"holds {action[5:]} ({grant.source})"))
    for grant in identity.grants:
        if grant.source in admin_sources:
            continue  # its administrator finding says it all
        out += _one_grant(provider, grant, admin_sources)
    return out


def _one_grant(provider: str, grant: Grant, admin_sources: set[str]) -> list[Finding]:
    out: list[Finding] = []
    # NotResource (``* except ...``) is every resource but a few.
    every_resource = any(r == "*" or r.startswith("* except") for r in grant.resources)
    where = f"{', '.join(grant.resources)} ({grant.source}{', conditional' if grant.conditional else ''})"
    for action in grant.actions:
        if action.startswith("role:"):
            continue  # a role the cloud expands: judged by name above, its permissions unknown here
        if action in ("*", "*:*") and every_resource:
            admin_sources.add(grant.source)
            return [Finding("admin-grant", f"allows {action} on * ({grant.source})")]
    escalations: list[str] = []
    for action in grant.actions:
        if action.startswith("role:"):
            continue
        wild = "*" in action or "?" in action
        if wild or (every_resource and not is_read(provider, action)):
            what = "a wildcard action" if wild else "a non-read action on every resource"
            out.append(Finding("wildcard-grant", f"allows {action} on {where}: {what}"))
        if wild:
            covered = _escalations_matching(provider, action) if not action.startswith("* except") else ()
            if covered:
                shown = ", ".join(covered[:3]) + (f" and {len(covered) - 3} more" if len(covered) > 3 else "")
                escalations.append(f"{action} (covers {shown})")
        elif is_escalation(provider, action):
            escalations.append(action)
    if escalations:
        out.append(Finding("escalation-grant", f"allows escalation-capable {', '.join(escalations)} "
                                               f"on {where}"))
    return out


def _trust_findings(identity: DiscoveredIdentity) -> list[Finding]:
    out: list[Finding] = []
    for p in identity.principals:
        who = f"{p.kind} {p.value}" + (f" ({p.detail})" if p.detail else "")
        if p.kind == "any":
            said = f" ({p.detail})" if p.detail else ""
            out.append(Finding("any-principal-trust", f"anyone can use it: its trust admits {p.value}{said}"))
        elif p.wildcard:
            why = ("an OIDC issuer without a subject condition" if p.kind == "oidc" and "sub " not in p.detail
                   else "a subject pattern that admits more than one caller")
            out.append(Finding("any-principal-trust", f"can be used by {who}: {why}"))
        elif p.external:
            out.append(Finding("external-trust", f"can be used from outside {identity.target}: {who}"))
        if p.kind == "saml" or (p.kind == "aws-account") or (
                p.kind == "aws-principal" and (":user/" in p.value or p.value.endswith(":root"))):
            out.append(Finding("human-use", f"people can use it: trusted by {who}"))
    return out


def _credential_findings(identity: DiscoveredIdentity, settings: Settings, now: datetime) -> list[Finding]:
    out: list[Finding] = []
    for c in identity.credentials:
        if c.active and c.created is not None and now - c.created > settings.max_key_age:
            out.append(Finding("key-too-old", f"{_credential(c)} is {_days(now - c.created)} old "
                                              f"(discover.maxKeyAge {_days(settings.max_key_age)})"))
        if c.kind in _EXPIRING_KINDS and c.active:
            if c.expires is None:
                out.append(Finding("secret-never-expires", f"{_credential(c)} never expires"))
            elif c.expires - now > settings.max_key_age:
                out.append(Finding("secret-never-expires",
                                   f"{_credential(c)} expires in {_days(c.expires - now)} "
                                   f"(beyond discover.maxKeyAge {_days(settings.max_key_age)})"))
    return out


def _credential(c: Credential) -> str:
    return f"{c.kind} {c.id}"


def _usage_findings(identity: DiscoveredIdentity, settings: Settings, now: datetime) -> list[Finding]:
    if not identity.usage and not identity.credentials:
        return []  # the cloud offers no signal: unknown is not unused
    if identity.created is not None and now - identity.created < settings.unused_after:
        return []  # too young to tell
    last = identity.last_used()
    if last is not None and now - last <= settings.unused_after:
        return []
    signals = ", ".join(s.signal for s in identity.usage) or "its credentials"
    if last is None:
        # GCP does not say when a service account was made: one made today reads the same.
        age = ("" if identity.created is not None
               else " (its age is unknown: the cloud does not say when it was made)")
        return [Finding("unused", f"no use shown by {signals}{age}")]
    return [Finding("unused", f"last used {_days(now - last)} ago ({signals}; "
                              f"discover.unusedAfter {_days(settings.unused_after)})")]


def judge(identity: DiscoveredIdentity, settings: Settings, now: datetime,
          ownership: Ownership | None = None) -> list[Finding]:
    """Every finding about ``identity`` at ``now``, in the order of :data:`RULES`.

    ``ownership`` is what :mod:`.owners` decided (the directory included); without it the
    owner is taken from the identity's marker and tags alone."""
    from .owners import owner_of
    owned = ownership if ownership is not None else owner_of(identity, settings.owner_tags)
    found = (_grant_findings(identity) + _credential_findings(identity, settings, now)
             + _usage_findings(identity, settings, now) + _trust_findings(identity))
    if owned.problem:
        found.append(Finding("no-owner", owned.problem))
    order = list(RULES)
    unique: dict[tuple[str, str], Finding] = {}
    for f in found:
        unique.setdefault((f.code, f.message), f)
    return sorted(unique.values(), key=lambda f: order.index(f.code))


def count_by(findings: Iterable[Finding], key: str) -> dict[str, int]:
    """How many findings per ``code`` or ``category``."""
    counts: dict[str, int] = {}
    for f in findings:
        value = f.code if key == "code" else f.category
        counts[value] = counts.get(value, 0) + 1
    return counts
