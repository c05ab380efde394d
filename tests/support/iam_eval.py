"""A small IAM identity-policy evaluator for the bootstrap tests: explicit deny wins,
else an allow must match action, resource and every condition (StringEquals, ArnEquals,
StringLike, DateLessThan), with the request context taken from the recorded call or given
by hand. moto has no policy simulator, and its IAM enforcement evaluates StringEquals only
(it skips DateLessThan as if it held) (no ``simulate_custom_policy``), so this is how a policy is judged."""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime
from typing import Any

from .bootstrap_flows import ACCOUNT, Call

FREE = {"sts:GetCallerIdentity"}  # AWS never asks for a permission to call it


def _arn(call: Call) -> str:
    p = call.params
    api = call.operation
    if api == "RemoveRoleFromInstanceProfile":
        return f"arn:aws:iam::{ACCOUNT}:instance-profile/{p['InstanceProfileName']}"
    if api == "RemoveUserFromGroup":
        return f"arn:aws:iam::{ACCOUNT}:group/{p['GroupName']}"
    if api == "DeleteVirtualMFADevice":
        return str(p["SerialNumber"])
    if api in ("GetPolicy", "GetPolicyVersion"):
        return str(p["PolicyArn"])
    if api == "GenerateServiceLastAccessedDetails":  # the report is about the entity it names
        return str(p["Arn"])
    if call.entity:
        return str(call.entity["arn"])
    if "RoleName" in p:
        return f"arn:aws:iam::{ACCOUNT}:role{p.get('Path', '/workload-ids/')}{p['RoleName']}"
    if "UserName" in p:
        return f"arn:aws:iam::{ACCOUNT}:user{p.get('Path', '/workload-ids/')}{p['UserName']}"
    name = p.get("SecretId") or p.get("Name")
    if name:  # a secret that does not exist yet: Secrets Manager will add a random suffix
        return f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{name}-AbCdEf"
    return "*"


def _context(call: Call) -> dict[str, str]:
    ctx: dict[str, str] = {}
    p = call.params
    boundary = p.get("PermissionsBoundary") or (call.entity or {}).get("boundary")
    if boundary:
        ctx["iam:permissionsboundary"] = boundary
    for tag in p.get("Tags") or []:
        ctx[f"aws:requesttag/{tag['Key']}".lower()] = tag["Value"]
    for key, value in ((call.entity or {}).get("tags") or {}).items():
        ctx[f"aws:resourcetag/{key}".lower()] = value
    if "PolicyArn" in p:
        ctx["iam:policyarn"] = p["PolicyArn"]
    if call.service == "s3" and "Prefix" in p:
        ctx["s3:prefix"] = p["Prefix"]
    return ctx


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def _instant(text: str) -> datetime:
    """An ISO 8601 UTC instant with a Z, the one form our policies and contexts use."""
    if not _INSTANT.fullmatch(text):
        raise AssertionError(f"the evaluator reads UTC instants with a Z only, not {text!r}")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _condition_holds(condition: dict[str, Any], ctx: dict[str, str]) -> bool:
    for operator, pairs in condition.items():
        for key, wanted in pairs.items():
            have = ctx.get(key.lower())
            if have is None:
                return False  # a key missing from the request fails the condition, as in IAM
            options = _listed(wanted)
            if operator in ("StringEquals", "ArnEquals") and have not in options:
                return False
            if operator == "StringLike" and not any(fnmatch.fnmatchcase(have, o) for o in options):
                return False
            if operator == "DateLessThan" and not any(_instant(have) < _instant(o) for o in options):
                return False
            if operator not in ("StringEquals", "ArnEquals", "StringLike", "DateLessThan"):
                raise AssertionError(f"the evaluator does not know {operator}; teach it first")
    return True


def _matches(statement: dict[str, Any], action: str, arn: str, ctx: dict[str, str]) -> bool:
    if not any(fnmatch.fnmatch(action.lower(), a.lower()) for a in _listed(statement["Action"])):
        return False
    if "Resource" in statement:
        if not any(fnmatch.fnmatchcase(arn, r) for r in _listed(statement["Resource"])):
            return False
    elif any(fnmatch.fnmatchcase(arn, r) for r in _listed(statement["NotResource"])):
        return False
    return _condition_holds(statement.get("Condition") or {}, ctx)


def allowed(policy: dict[str, Any], call: Call) -> bool:
    """IAM's identity-policy evaluation for one request: an explicit deny wins, else an
    allow must match action, resource and every condition."""
    action = f"{call.service}:{call.operation}"
    if action in FREE:
        return True
    arn, ctx = _arn(call), _context(call)
    statements = policy["Statement"]
    if any(s["Effect"] == "Deny" and _matches(s, action, arn, ctx) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _matches(s, action, arn, ctx) for s in statements)


def request_allowed(policy: dict[str, Any], action: str, arn: str, ctx: dict[str, str]) -> bool:
    """:func:`allowed` for a request given by hand: ``action`` on ``arn`` with the request
    context ``ctx`` (condition keys, any case: aws:CurrentTime, aws:ResourceAccount)."""
    context = {k.lower(): v for k, v in ctx.items()}
    statements = policy["Statement"]
    if any(s["Effect"] == "Deny" and _matches(s, action, arn, context) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _matches(s, action, arn, context) for s in statements)


def granted(policy: dict[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in _listed(s["Action"])}
