"""Existing user-assigned managed identities for ``workload-ids adopt``: read one whole (its
federated credentials, and every role assignment of its principal anywhere in the
subscription with the role definition each names, built-in or custom), say what of it a
manifest can express exactly, and mark it ours.

Applications and service principals (which hold secrets) are not adopted: a managed
identity holds no credential anyone can copy, which is what makes one safe to take over.

The pure half (:func:`held_permissions`, :func:`credential_rows`) is shared with the
identity backend, which compares an adopted identity in observe mode by what it holds.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...config import Config
from ...errors import ConflictError
from ...model import (
    CompiledWorkload,
    GithubTrust,
    HeldIdentity,
    HeldPermissions,
    KubernetesTrust,
    Marker,
    Trust,
)
from ...resources import parse_resource
from ...trust import issuer_allowed
from ..interface import AdoptionBackend, unchanged_since_proof
from . import render
from .clients import AzureClients
from .roles import AzureGrants, role_guid

if TYPE_CHECKING:  # the identity backend reads adopted identities with this module's helpers
    from .identity import AzureIdentities

_IDENTITY = re.compile(r"/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/"
                       r"Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>[^/]+)", re.IGNORECASE)
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _wild(text: str) -> bool:
    return "*" in text or "?" in text


def _excluded(action: str, patterns: Sequence[str]) -> bool:
    """Whether a notActions/notDataActions pattern removes ``action`` (ARM: case-insensitive)."""
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def assignment_policy(assignment: Any, role: Any | None) -> tuple[str, str]:
    """(source, document) of one role assignment: its scope, condition and the role's
    permissions as ARM defines them (None: the role could not be read)."""
    guid = role_guid(str(assignment.role_definition_id))
    name = str(role.role_name) if role is not None else guid
    kind = str(role.role_type) if role is not None else "unreadable role"
    source = f"role assignment {assignment.name} ({name}, " \
             f"{'built-in' if kind == 'BuiltInRole' else 'custom'} role)"
    doc = {"scope": str(assignment.scope), "role": guid, "roleName": name,
           "condition": str(getattr(assignment, "condition", None) or ""),
           "permissions": None if role is None else [
               {"actions": sorted(p.actions or []), "notActions": sorted(p.not_actions or []),
                "dataActions": sorted(p.data_actions or []),
                "notDataActions": sorted(p.not_data_actions or [])} for p in role.permissions or []]}
    return source, _canonical(doc)


def held_permissions(policies: Iterable[tuple[str, str]]) -> HeldPermissions:
    """Every role assignment (``(source, document)`` of :func:`assignment_policy`) as
    :class:`HeldPermissions`: exact operations at a scope a manifest can list are exact;
    wildcards, exclusions, conditions, unreadable roles and scopes no manifest can name
    (a subscription, a resource group, a resource of a kind the tool does not know) are
    held (the proof and the observe diff count them) but dropped, in words."""
    held = HeldPermissions(case_insensitive=True)
    for source, text in policies:
        doc = json.loads(text)
        scope, condition = str(doc["scope"]), str(doc.get("condition") or "")
        if doc.get("permissions") is None:
            held.pairs.add(("(role)", f"{doc['role']} at {scope}", ""))
            held.dropped.append(f"{source}: its role definition could not be read at the subscription, "
                                f"so what it grants at {scope} is unknown")
            continue
        expressible = parse_resource("azure", scope) is not None
        if not expressible:
            held.dropped.append(f"{source} at {scope}: a manifest lists resources of the kinds the tool "
                                "knows, not this scope (a subscription, resource group or other "
                                "resource), so its grant there is left out rather than widened")
        if condition:
            held.dropped.append(f"{source} at {scope}: only under the condition {condition} "
                                "(ABAC conditions cannot be adopted)")
        for block in doc["permissions"]:
            for field, excluded in (("actions", "notActions"), ("dataActions", "notDataActions")):
                exceptions = list(block.get(excluded) or [])
                if exceptions:
                    held.dropped.append(f"{source} at {scope}: {excluded} {', '.join(exceptions)} "
                                        "(a manifest lists what it grants, never exceptions)")
                for action in (str(a) for a in block.get(field) or []):
                    key = held.key(action)
                    if _wild(action):
                        held.pairs.add((key, scope, condition))
                        held.dropped.append(f"{source}: wildcard {field[:-1]} {action} at {scope}")
                        continue
                    if _excluded(action, exceptions):
                        continue  # the role itself takes it away again
                    held.pairs.add((key, scope, condition))
                    if field == "dataActions":
                        held.data.add(key)
                    if expressible and not condition:
                        held.exact.setdefault((key, scope), source)
                        held.spelling.setdefault(key, action)
    return held


def credential_rows(credentials: Iterable[Mapping[str, Any]]) -> Counter[tuple[str, str, tuple[str, ...]]]:
    """Federated credentials by what they admit (issuer, subject, audiences), names aside."""
    return Counter((str(c["issuer"]), str(c["subject"]), tuple(sorted(c.get("audiences") or ())))
                   for c in credentials)


def trust_rows(have: Counter[tuple[str, str, tuple[str, ...]]],
               want: Counter[tuple[str, str, tuple[str, ...]]]) -> list[str]:
    """``+ trust``/``- trust`` rows between two sets of federated credentials."""
    def row(sign: str, r: tuple[str, str, tuple[str, ...]]) -> str:
        audiences = "" if list(r[2]) == [render.AUDIENCE] else f" (audiences {', '.join(r[2]) or 'none'})"
        return f"{sign} trust {r[0]}  {r[1]}{audiences}"
    return [row("+", r) for r in sorted(want - have)] + [row("-", r) for r in sorted(have - want)]


def federation_of(credentials: Mapping[str, Mapping[str, Any]], config: Config
                  ) -> tuple[list[Trust], list[str]]:
    """The manifest federation entries the identity's federated credentials map back to
    exactly (rendering each entry gives that credential's issuer, subject and audience),
    from issuers the config trusts; the rest in words."""
    trusts: list[Trust] = []
    dropped: list[str] = []
    owners = {o.casefold() for o in config.trust.allowedGithubOwners}
    for name, c in sorted(credentials.items()):
        issuer, subject = str(c["issuer"]), str(c.get("subject") or "")
        audiences = list(c.get("audiences") or [])
        what = f"federated credential {name} (issuer {issuer}, subject {subject or '(none)'})"
        found: GithubTrust | KubernetesTrust | None = None
        why = "its subject is not one a federation entry writes"
        if audiences != [render.AUDIENCE]:
            why = f"its audiences are {', '.join(audiences) or 'none'}, not {render.AUDIENCE}"
        elif _wild(subject) or not subject:
            why = "it has no exact subject"
        elif issuer == render.GITHUB_ISSUER:
            parts = subject.split(":")
            if len(parts) >= 4 and parts[0] == "repo" and _REPOSITORY.fullmatch(parts[1]):
                repository, how, value = parts[1], parts[2], ":".join(parts[3:])
                if repository.split("/", 1)[0].casefold() not in owners:
                    why = (f"GitHub owner {repository.split('/', 1)[0]} is not in the config's "
                           "trust.allowedGithubOwners")
                elif how == "ref":
                    found = GithubTrust(repository, ref=value)
                elif how == "environment":
                    found = GithubTrust(repository, environment=value)
        elif not issuer_allowed(config, issuer):
            why = "its issuer is not in the config's trust.allowedIssuers"
        else:
            parts = subject.split(":")
            if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
                found = KubernetesTrust(issuer, parts[2], parts[3])
        if found is not None:
            # Proof by rendering: the entry must give back this credential exactly.
            issued = render.GITHUB_ISSUER if isinstance(found, GithubTrust) else found.issuer
            if (issued, found.subject(), [render.AUDIENCE]) != (issuer, subject, audiences):
                found, why = None, "it does not map exactly to a federation entry"
        if found is None:
            dropped.append(f"{what}: {why}; it cannot be written as a federation entry")
        elif found not in trusts:
            trusts.append(found)
    return trusts, dropped


class AzureAdoption(AdoptionBackend):
    """Read a user-assigned managed identity whole, and write our marker on it."""

    def __init__(self, clients: AzureClients, config: Config, grants: AzureGrants,
                 identities: AzureIdentities) -> None:
        self.clients = clients
        self.config = config
        self.grants = grants
        self.identities = identities

    def definitions(self, subscription: str) -> dict[str, Any]:
        """Every role definition usable in the subscription, built-in and custom (one answer)."""
        authz = self.clients.authorization(subscription)
        return {str(d.name).lower(): d for d in self.clients.pages(
            "authorization.role_definitions.list",
            authz.role_definitions.list(f"/subscriptions/{subscription}"))}

    def policies_of(self, subscription: str, principal: str) -> list[tuple[str, str]]:
        """(source, document) of every role assignment of ``principal`` visible in the
        subscription (at it, below it, or inherited from above), with its role's permissions."""
        return self.policies_for(subscription, self.grants.assignments(subscription, principal))

    def policies_for(self, subscription: str, assignments: Sequence[Any]) -> list[tuple[str, str]]:
        """(source, document) of ``assignments``, each with its role's permissions."""
        definitions = self.definitions(subscription) if assignments else {}
        return sorted(assignment_policy(a, definitions.get(role_guid(str(a.role_definition_id))))
                      for a in assignments)

    def read(self, target: str, address: str) -> HeldIdentity | None:
        """The identity, its federated credentials, its role assignments and their roles."""
        m = _IDENTITY.fullmatch(address)
        if m is None:  # pragma: no cover - adopt recognised the address by the same form
            return None
        subscription, group, name = m["subscription"], m["group"], m["name"]
        identity = self.identities.identity(target, group, name)
        if identity is None:
            return None
        group = str(identity.id).split("/")[4]  # as ARM spells it
        principal = str(identity.principal_id or "")
        federated = self.identities.federated(target, group, str(identity.name))
        return HeldIdentity(
            provider="azure", target=target, kind="managed-identity", name=str(identity.name),
            address=render.identity_scope(subscription, group, str(identity.name)),
            immutable_id=principal, tags=dict(identity.tags or {}),
            trust=render.canonical(dict(sorted(federated.items()))),
            policies=tuple(self.policies_of(target, principal)),
            settings={"subscription": subscription, "resourceGroup": group,
                      "location": str(identity.location), "clientId": str(identity.client_id or "")})

    def permissions(self, held: HeldIdentity) -> HeldPermissions:
        """Every role assignment of the identity's principal."""
        return held_permissions(held.policies)

    def federation(self, held: HeldIdentity) -> tuple[list[Trust], list[str]]:
        """The federated credentials as federation entries, where they map back exactly."""
        return federation_of(json.loads(held.trust or "{}"), self.config)

    def spec(self, held: HeldIdentity, permissions: HeldPermissions,
             region: str | None = None) -> dict[str, str]:
        """``spec.azure``: the identity's subscription, resource group and location."""
        return {key: held.settings[key] for key in ("subscription", "resourceGroup", "location")}

    def trust_change(self, held: HeldIdentity, compiled: CompiledWorkload) -> list[str]:
        """The federated credentials a plan of ``compiled`` would add or remove."""
        have = credential_rows(json.loads(held.trust or "{}").values())
        want = credential_rows(render.federated_credentials(compiled).values())
        return trust_rows(have, want)

    def mark(self, held: HeldIdentity, marker: Marker) -> None:
        """Write the marker tags and their MAC (bound to the principal id) in one PUT,
        after reading the identity again: the same identity (its principal id), still
        without a marker, holding what it held when the manifest was proven."""
        unchanged_since_proof(self.read(held.target, held.address), held, "managed identity",
                              "its federated credentials or role assignments")
        group = held.settings["resourceGroup"]
        identity = self.identities.identity(held.target, group, held.name)
        if identity is None or str(identity.principal_id or "") != held.immutable_id:
            raise ConflictError(f"managed identity {held.address} changed since it was read",
                                "rerun `workload-ids adopt`; nothing was marked")
        self.identities.write_tags(held.target, group, held.name, identity, marker.as_tags())
