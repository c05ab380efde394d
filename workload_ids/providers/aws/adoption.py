"""Existing IAM roles for ``workload-ids adopt``: read one whole (trust, inline and attached
policies, settings), say what of it a manifest can express exactly, and mark it ours.

The pure half (:func:`permission_pairs_held`, :func:`federation_of`, :func:`same_trust`)
is shared with the identity backend, which compares an adopted role in observe mode by
what it grants and whom it trusts, wherever the role keeps them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ...calls import NOT_FOUND, SeamClient
from ...errors import CloudError
from ...model import (
    TAG_MAC,
    CompiledWorkload,
    GithubTrust,
    HeldIdentity,
    HeldPermissions,
    KubernetesTrust,
    Marker,
    ServiceTrust,
    Trust,
)
from ..interface import AdoptionBackend, unchanged_since_proof
from . import render
from .clients import AwsClients, call, check_account, pages, tags_of

_REGION = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:([a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d):")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _doc(text_or_doc: Any) -> dict[str, Any]:
    if isinstance(text_or_doc, str):
        try:
            text_or_doc = json.loads(text_or_doc) if text_or_doc else {}
        except ValueError:
            return {}
    return text_or_doc if isinstance(text_or_doc, dict) else {}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _wild(text: str) -> bool:
    return "*" in text or "?" in text


def permission_pairs_held(policies: Iterable[tuple[str, str]]) -> HeldPermissions:
    """Read every policy of a role (``(source, document)``) into :class:`HeldPermissions`."""
    held = HeldPermissions(case_insensitive=True)
    for source, text in policies:
        for st in _as_list(_doc(text).get("Statement")):
            if not isinstance(st, dict):
                continue
            where = f"{source}" + (f" (Sid {st['Sid']})" if st.get("Sid") else "")
            effect = st.get("Effect")
            if effect != "Allow" or "NotAction" in st or "NotResource" in st or \
                    "Action" not in st or "Resource" not in st:
                held.pairs.add(("(statement)", _canonical(st), ""))
                if effect == "Deny":
                    held.denies.append(f"{where}: a Deny statement ({_canonical(st)[:200]})")
                    held.dropped.append(f"{where}: Deny statement cannot be expressed in a manifest")
                else:
                    what = "NotAction" if "NotAction" in st else "NotResource" if "NotResource" in st \
                        else "statement without Action or Resource"
                    held.dropped.append(f"{where}: {what} cannot be expressed in a manifest")
                continue
            condition = _canonical(st["Condition"]) if st.get("Condition") else ""
            for action in (str(a) for a in _as_list(st["Action"])):
                for resource in (str(r) for r in _as_list(st["Resource"])):
                    held.pairs.add((action.lower(), resource, condition))
                    if condition:
                        held.dropped.append(f"{where}: {action} on {resource} only under the "
                                            f"condition {condition} (conditions cannot be adopted)")
                    elif _wild(action):
                        held.dropped.append(f"{where}: wildcard action {action} on {resource}")
                    else:
                        # A wildcard resource (bucket/*) is kept for template matching: a
                        # template names it from the bucket; adopt drops what none takes.
                        held.exact.setdefault((action.lower(), resource), source)
                        held.spelling.setdefault(action.lower(), action)
    return held


# --- trust -------------------------------------------------------------------------


def _normal_statement(st: Mapping[str, Any]) -> str:
    """A trust statement without its Sid, single values and lists alike, lists sorted."""
    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in sorted(value.items())}
        if isinstance(value, list):
            items = sorted((norm(v) for v in value), key=_canonical)
            return items[0] if len(items) == 1 else items
        return value
    return _canonical(norm({k: v for k, v in st.items() if k != "Sid"}))


def normal_trust(document: Any) -> list[str]:
    """A trust document as sorted normal statements: equal lists, equal trust."""
    return sorted(_normal_statement(st) for st in _as_list(_doc(document).get("Statement"))
                  if isinstance(st, dict))


def same_trust(held: Any, desired: Any) -> bool:
    """Whether two trust documents admit exactly the same callers under the same conditions
    (statement order, Sids and one-item lists aside)."""
    return normal_trust(held) == normal_trust(desired)


def federation_of(document: Any, account: str) -> tuple[list[Trust], list[str]]:
    """The manifest federation entries a trust policy maps to, statement by statement,
    keeping only statements whose every admitted caller an entry renders back exactly;
    and the statements it cannot express, in words."""
    trusts: list[Trust] = []
    dropped: list[str] = []
    for st in _as_list(_doc(document).get("Statement")):
        if not isinstance(st, dict):
            continue
        found = _statement_trust(st, account)
        if found is None:
            dropped.append(f"trust statement {_canonical({k: v for k, v in st.items() if k != 'Sid'})} "
                           "cannot be expressed as federation entries")
            continue
        # Proof by rendering: the entries must give back this statement exactly.
        rendered = render.trust_document(account, found)["Statement"]
        if _any_account_service(st) and all(isinstance(t, ServiceTrust) for t in found):
            # The commonest hand-made trust: a service from any account. The entry binds it
            # to this account (the confused-deputy fix), which is a trust change adopt
            # reports and --apply refuses until the role carries the condition.
            dropped.append(f"trust statement {_canonical({k: v for k, v in st.items() if k != 'Sid'})} "
                           f"admits the service on behalf of any account; the manifest narrows it to "
                           f"aws:SourceAccount {account}")
        elif sorted(_normal_statement(s) for s in rendered) != [_normal_statement(st)]:
            dropped.append(f"trust statement {_canonical({k: v for k, v in st.items() if k != 'Sid'})} "
                           "does not map exactly to federation entries")
            continue
        trusts.extend(t for t in found if t not in trusts)
    return trusts, dropped


def _any_account_service(st: Mapping[str, Any]) -> bool:
    principal = st.get("Principal")
    return isinstance(principal, dict) and set(principal) == {"Service"} and \
        st.get("Action") == "sts:AssumeRole" and not st.get("Condition")


def _statement_trust(st: Mapping[str, Any], account: str) -> list[Trust] | None:
    if st.get("Effect") != "Allow" or set(st) - {"Sid", "Effect", "Principal", "Action", "Condition"}:
        return None
    principal = st.get("Principal")
    if not isinstance(principal, dict) or len(principal) != 1:
        return None
    condition = st.get("Condition") or {}
    if set(condition) - {"StringEquals"}:
        return None
    equals = dict(condition.get("StringEquals") or {})
    if "Service" in principal:
        services = [str(s) for s in _as_list(principal["Service"])]
        if st.get("Action") != "sts:AssumeRole" or (equals != {"aws:SourceAccount": account}
                                                    and not _any_account_service(st)):
            return None
        return [ServiceTrust(s) for s in services]
    federated = _as_list(principal.get("Federated"))
    if len(federated) != 1 or st.get("Action") != "sts:AssumeRoleWithWebIdentity":
        return None
    prefix = f"arn:aws:iam::{account}:oidc-provider/"
    if not str(federated[0]).startswith(prefix):
        return None
    issuer = str(federated[0])[len(prefix):]
    subjects = [str(s) for s in _as_list(equals.get(f"{issuer}:sub"))]
    if equals.get(f"{issuer}:aud") != "sts.amazonaws.com" or not subjects:
        return None
    out: list[Trust] = []
    if issuer == render.GITHUB_ISSUER:
        repo_id = equals.get(f"{issuer}:repository_id")
        for sub in subjects:
            parts = sub.split(":")
            if len(parts) < 4 or parts[0] != "repo" or _wild(sub):
                return None
            repository, how, value = parts[1], parts[2], ":".join(parts[3:])
            rid = int(repo_id) if isinstance(repo_id, str) and repo_id.isdigit() else None
            if how == "ref":
                out.append(GithubTrust(repository, ref=value, repository_id=rid))
            elif how == "environment":
                out.append(GithubTrust(repository, environment=value, repository_id=rid))
            else:
                return None
        return out
    for sub in subjects:
        parts = sub.split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"] or _wild(sub):
            return None
        out.append(KubernetesTrust(f"https://{issuer}", parts[2], parts[3]))
    return out


# --- the backend ---------------------------------------------------------------------


class AwsAdoption(AdoptionBackend):
    """Read an IAM role whole, and write our marker on it."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def read(self, target: str, address: str) -> HeldIdentity | None:
        """``GetRole``, its inline policies and the default version of each attached one."""
        iam = self.clients.client(target, "iam")
        name = address.rsplit("/", 1)[-1]
        try:
            role = call(iam, "get_role", RoleName=name)["Role"]
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None
        check_account(target, role["Arn"])
        if role["Arn"] != address:
            return None  # same name at another path is another role
        return HeldIdentity(
            provider="aws", target=target, kind="role", name=name, address=role["Arn"],
            immutable_id=str(role.get("RoleId") or ""), tags=tags_of(role.get("Tags")),
            trust=render.canonical(_doc(role.get("AssumeRolePolicyDocument"))),
            policies=tuple(self.policies_of(iam, name)),
            settings={"path": role.get("Path", "/"), "description": role.get("Description", ""),
                      "maxSessionDuration": str(role.get("MaxSessionDuration", 3600)),
                      "boundary": (role.get("PermissionsBoundary") or {}).get(
                          "PermissionsBoundaryArn", "")})

    def policies_of(self, iam: SeamClient, name: str) -> list[tuple[str, str]]:
        """(source, document) of every inline and attached policy of role ``name``."""
        out: list[tuple[str, str]] = []
        for page in pages(iam, "list_role_policies", "PolicyNames", RoleName=name):
            for policy in page:
                doc = call(iam, "get_role_policy", RoleName=name, PolicyName=policy)["PolicyDocument"]
                out.append((f"inline policy {policy}", render.canonical(_doc(doc))))
        for page in pages(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name):
            for attached in page:
                arn = attached["PolicyArn"]
                version = call(iam, "get_policy", PolicyArn=arn)["Policy"]["DefaultVersionId"]
                doc = call(iam, "get_policy_version", PolicyArn=arn,
                           VersionId=version)["PolicyVersion"]["Document"]
                out.append((f"managed policy {arn}", render.canonical(_doc(doc))))
        return out

    def permissions(self, held: HeldIdentity) -> HeldPermissions:
        """Every statement of the role's inline and attached policies."""
        return permission_pairs_held(held.policies)

    def federation(self, held: HeldIdentity) -> tuple[list[Trust], list[str]]:
        """The trust policy's statements as federation entries, where they map back exactly."""
        return federation_of(held.trust, held.target)

    def spec(self, held: HeldIdentity, permissions: HeldPermissions,
             region: str | None = None) -> dict[str, str]:
        """``spec.aws``: the account, the region most of its grants name (``region`` when
        given, else us-east-1) and its maximum session."""
        regions = Counter(m[1] for (_, r) in permissions.exact for m in [_REGION.match(r)] if m)
        chosen = region or (regions.most_common(1)[0][0] if regions else "us-east-1")
        seconds = int(held.settings.get("maxSessionDuration") or 3600)
        session = f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds}s"
        return {"account": held.target, "region": chosen, "maxSessionDuration": session}

    def trust_change(self, held: HeldIdentity, compiled: CompiledWorkload) -> list[str]:
        """The trust rows a manifest's trust policy adds or removes against the role's."""
        desired = render.trust_document(held.target, compiled.trust)
        if same_trust(held.trust, desired):
            return []
        have, new = render.trust_pairs(held.trust), render.trust_pairs(json.dumps(desired))
        return [f"+ trust {p}  {s}" for p, s in sorted(new - have)] + \
               [f"- trust {p}  {s}" for p, s in sorted(have - new)] or ["~ trust conditions differ"]

    def mark(self, held: HeldIdentity, marker: Marker) -> None:
        """Tag the marker and its MAC in one call, after reading the role again: the
        same role (its immutable id) and still without a marker."""
        unchanged_since_proof(self.read(held.target, held.address), held, "role",
                              "its trust or policies")
        iam = self.clients.client(held.target, "iam")
        mac = self.clients.marker_mac(held.target, held.name, held.immutable_id, marker)
        tags = {**marker.as_tags(), TAG_MAC: mac}
        call(iam, "tag_role", RoleName=held.name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
