"""IAM's policy simulator (``SimulatePrincipalPolicy``) in the local AWS, which moto 5.2
does not implement.

moto's own IAM enforcement evaluates ``StringEquals`` only and treats every other condition
operator as met, so it cannot show that a ``DateLessThan aws:CurrentTime`` statement stops
granting. This teaches moto's IAM response class the simulator's action (as moto_users.py
teaches it user boundaries), answering in AWS's own shape (``EvaluationResults`` with
``EvalDecision`` allowed / explicitDeny / implicitDeny, ``MatchedStatements``,
``MissingContextValues``) from the principal's inline and attached policies and its
permissions boundary, with the request context the caller passes (``ContextEntries``).

The evaluator is small and strict: the condition operators workload-ids and its bootstrap
write (String/Arn Equals and Like, DateLessThan, DateGreaterThan, Bool), case-insensitive
keys, a key missing from the context fails its condition (as in IAM). An operator it does
not know never allows, and always denies in a Deny statement: a looser simulator would let
a test pass on a policy AWS reads differently.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import unquote

_INSTALLED = False
_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")


class NotUnderstood(ValueError):
    """A condition this simulator does not evaluate."""


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _instant(text: str) -> datetime:
    if not _INSTANT.fullmatch(text):
        raise NotUnderstood(f"{text!r} is not a UTC instant with a Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00")[:19] + "+00:00")


def _operator_holds(operator: str, have: str, wanted: list[str]) -> bool:
    if operator in ("StringEquals", "ArnEquals"):
        return have in wanted
    if operator in ("StringLike", "ArnLike"):
        return any(fnmatch.fnmatchcase(have, w) for w in wanted)
    if operator == "DateLessThan":
        return any(_instant(have) < _instant(w) for w in wanted)
    if operator == "DateGreaterThan":
        return any(_instant(have) > _instant(w) for w in wanted)
    if operator == "Bool":
        return have.lower() in [w.lower() for w in wanted]
    raise NotUnderstood(f"condition operator {operator}")


def conditions_hold(condition: dict[str, Any], context: dict[str, str], missing: set[str]) -> bool:
    """Whether every condition of a statement holds for ``context`` (keys lower case);
    keys the context lacks are added to ``missing``."""
    held = True
    for operator, pairs in condition.items():
        for key, wanted in pairs.items():
            have = context.get(key.lower())
            if have is None:
                missing.add(key)
                held = False
                continue
            if not _operator_holds(operator, have, _listed(wanted)):
                held = False
    return held


def _statement_matches(st: dict[str, Any], action: str, resource: str) -> bool:
    def any_glob(patterns: Any, value: str, fold: bool) -> bool:
        return any(fnmatch.fnmatchcase(value.lower() if fold else value, p.lower() if fold else p)
                   for p in _listed(patterns))
    if "Action" in st:
        if not any_glob(st["Action"], action, True):
            return False
    elif any_glob(st.get("NotAction", []), action, True):
        return False
    if "Resource" in st:
        return any_glob(st["Resource"], resource, False)
    return not any_glob(st.get("NotResource", []), resource, False)


def _statements(documents: Iterable[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for source, doc in documents:
        statements = doc.get("Statement", [])
        out.extend((source, st) for st in ([statements] if isinstance(statements, dict) else statements))
    return out


def decide(identity: list[tuple[str, dict[str, Any]]], boundary: list[tuple[str, dict[str, Any]]] | None,
           action: str, resource: str, context: dict[str, str]) -> dict[str, Any]:
    """One evaluation result: explicit deny anywhere wins; else the identity policies must
    allow, and the boundary (when the principal has one) must allow too."""
    missing: set[str] = set()
    matched: list[str] = []

    def applies(source: str, st: dict[str, Any], effect: str) -> bool:
        if st.get("Effect") != effect or not _statement_matches(st, action, resource):
            return False
        try:
            holds = conditions_hold(st.get("Condition") or {}, context, missing)
        except NotUnderstood:
            holds = effect == "Deny"  # fail closed
        if holds:
            matched.append(source)
        return holds

    everything = [*identity, *(boundary or [])]
    if any([applies(s, st, "Deny") for s, st in everything]):
        decision = "explicitDeny"
    elif any([applies(s, st, "Allow") for s, st in identity]) and (
            boundary is None or any([applies(s, st, "Allow") for s, st in boundary])):
        decision = "allowed"
    else:
        decision = "implicitDeny"
    return {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision,
            "MatchedStatements": [{"SourcePolicyId": s} for s in sorted(set(matched))],
            "MissingContextValues": sorted(missing)}


def _document(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        doc: dict[str, Any] = json.loads(str(text))
    except json.JSONDecodeError:
        doc = json.loads(unquote(str(text)))  # as IAM returns documents: URL-encoded
    return doc


def _default_document(policy: Any) -> dict[str, Any]:
    """A managed policy's default version's document."""
    version = next(v for v in policy.versions if v.version_id == policy.default_version_id)
    return _document(version.document)


def install() -> None:
    """Idempotent; call before moto serves a request."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.core.responses import ActionResult
    from moto.iam import responses

    def simulate_principal_policy(self: Any) -> Any:
        params = self._get_params()
        arn = str(params.get("PolicySourceArn", ""))
        kind, _, name = arn.split(":", 5)[-1].partition("/")
        name = name.rsplit("/", 1)[-1]
        backend = self.backend
        principal = backend.get_role(name) if kind == "role" else backend.get_user(name)
        inline = principal.policies.items()
        identity = _statements(
            [(f"{name}_{policy}", _document(doc)) for policy, doc in inline]
            + [(p.arn, _default_document(p))
               for p in getattr(principal, "managed_policies", {}).values()])
        boundary_arn = getattr(principal, "permissions_boundary_arn", None) or (
            (getattr(principal, "permissions_boundary", None) or {}).get("PermissionsBoundaryArn")
            if kind == "user" else getattr(principal, "permissions_boundary", None))
        boundary = None
        if boundary_arn:
            policy = backend.get_policy(boundary_arn)
            boundary = _statements([(boundary_arn, _default_document(policy))])
        context = {str(e["ContextKeyName"]).lower(): str(_listed(e["ContextKeyValues"])[0])
                   for e in params.get("ContextEntries", [])}
        results = [decide(identity, boundary, action, resource, context)
                   for action in params.get("ActionNames", [])
                   for resource in params.get("ResourceArns", ["*"])]
        return ActionResult({"EvaluationResults": results, "IsTruncated": False})

    responses.IamResponse.simulate_principal_policy = simulate_principal_policy  # type: ignore[attr-defined]
    _INSTALLED = True
