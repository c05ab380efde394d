"""Existing service accounts for ``workload-ids adopt``: read one whole (the account, who
may act as it, every binding naming it that the tool can find, each role expanded into
its permissions as the cloud defines them), say what of it a manifest can express
exactly, and mark it ours.

Where bindings are read: the project's IAM policy, the account's own policy (who may act
as it: its trust), and the own policies of the project's other service accounts (the
resources discover reads too); in observe mode also the resources its manifest names.
Bindings on other resources (buckets, topics, secrets...) and in other projects are not
found: only Cloud Asset Inventory lists them. Every binding's role is expanded by
``GetRole`` (predefined ``roles/...`` and custom ``projects/P/roles/...`` alike), so the
proof compares permission by resource, exactly (GCP permissions are case-sensitive).

The pure half (:func:`permission_pairs_held`, :func:`trust_rows`) is shared with the
identity backend, which compares an adopted account in observe mode by what it holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...calls import DENIED, NOT_FOUND, OTHER
from ...config import Config
from ...errors import CloudError, ConflictError
from ...model import CompiledWorkload, GithubTrust, HeldIdentity, HeldPermissions, Marker, Trust
from ...resources import parse_resource
from ..interface import AdoptionBackend
from . import render
from .clients import GcpClients
from .identity import GcpIdentities
from .policies import GcpPolicies

PROJECT_POLICY = "project IAM policy"
NOT_READ = ("bindings on other resources (buckets, topics, secrets...) and in other projects were "
            "not read: only Cloud Asset Inventory lists them; whatever they grant the account is "
            "neither in this manifest nor in its proof")
_MEMBER = re.compile(r"principal://iam\.googleapis\.com/(?P<pool>projects/\d{1,20}/locations/global/"
                     r"workloadIdentityPools/[a-z0-9-]{4,32})/subject/(?P<subject>.+)")
_GITHUB = re.compile(r"repo:(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+):(?P<how>ref|environment):(?P<value>.+)")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _load(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


# --- what the account holds --------------------------------------------------------------


def permission_pairs_held(policies: Iterable[tuple[str, str]]) -> HeldPermissions:
    """Read the bindings of an account (``(source, document)``, as :meth:`GcpAdoption.held_policies`
    writes them) into :class:`HeldPermissions`, resources as a manifest names them."""
    held = HeldPermissions(case_insensitive=False)
    for source, text in policies:
        doc = _load(text)
        if not isinstance(doc, dict):
            continue
        if doc.get("note"):
            held.dropped.append(str(doc["note"]))
            continue
        resource, role = str(doc.get("resource", "")), str(doc.get("role", ""))
        condition = str(doc.get("condition") or "")
        if "unread" in doc:
            # Its permissions are unknown: held, but no manifest entry can say so.
            held.pairs.add((f"(role {role})", resource, condition))
            held.dropped.append(f"{source}: {doc['unread']}")
            continue
        permissions = [str(p) for p in doc.get("permissions") or []]
        for permission in permissions:
            held.pairs.add((permission, resource, condition))
        if not permissions:
            continue
        if condition:
            held.dropped.append(f"{source}: {len(permissions)} permission(s) of {role} on {resource} "
                                f"only under the condition {condition} (conditions cannot be adopted)")
        elif parse_resource("gcp", resource) is None:
            held.dropped.append(f"{source}: {role} on {resource} ({', '.join(permissions)}): a manifest "
                                "names no resource of that kind")
        else:
            for permission in permissions:
                held.exact.setdefault((permission, resource), source)
                held.spelling.setdefault(permission, permission)
    return held


def _bindings(trust: str) -> list[dict[str, Any]]:
    doc = _load(trust)
    return [b for b in doc if isinstance(b, dict)] if isinstance(doc, list) else []


def trust_rows(bindings: Sequence[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """(role, member, condition) of every binding of an account's own policy: whoever holds
    any role there can act as the account or change who may."""
    return {(str(b["role"]), str(m), str((b.get("condition") or {}).get("expression", "")))
            for b in bindings for m in b.get("members", [])}


def desired_trust_rows(workload: CompiledWorkload) -> set[tuple[str, str, str]]:
    """The (role, member, condition) rows a manifest puts on the account's own policy."""
    return {*((render.WORKLOAD_IDENTITY_USER, m, "") for m in render.federation_members(workload)),
            *((render.SERVICE_ACCOUNT_USER, m, "") for m in render.deployer_members(workload))}


def trust_change_rows(have: set[tuple[str, str, str]], want: set[tuple[str, str, str]]) -> list[str]:
    """``+ trust`` / ``- trust`` rows, as adopt's proof shows them."""
    def row(sign: str, r: tuple[str, str, str]) -> str:
        return f"{sign} trust {r[1]}  {r[0]}" + (f" if {r[2]}" if r[2] else "")
    return [row("+", r) for r in sorted(want - have)] + [row("-", r) for r in sorted(have - want)]


def federation_of(trust: str, project: str, config: Config) -> tuple[list[Trust], list[str]]:
    """The federation entries the account's own policy maps to, member by member: a
    Workload Identity User binding to a single GitHub subject of a pool the config trusts,
    where render gives back exactly that member; the rest in words."""
    from ...trust import pool_problem
    trusts: list[Trust] = []
    dropped: list[str] = []
    for b in _bindings(trust):
        role = str(b["role"])
        condition = (b.get("condition") or {}).get("expression")
        for member in (str(m) for m in b.get("members", [])):
            where = f"its own IAM policy: {role} for {member}"
            if role != render.WORKLOAD_IDENTITY_USER:
                hint = "; deployers go under credentials.attachedTo by hand" \
                    if role == render.SERVICE_ACCOUNT_USER else ""
                dropped.append(f"{where} (who may act as the account) cannot be written as a "
                               f"federation entry{hint}")
                continue
            if condition:
                dropped.append(f"{where} only under the condition {condition} (conditions cannot be adopted)")
                continue
            m = _MEMBER.fullmatch(member)
            if m is None:
                dropped.append(f"{where}: only a single subject of a workload identity pool "
                               "(principal://.../subject/...) maps to a federation entry"
                               + ("; a principalSet admits every identity it matches"
                                  if member.startswith("principalSet://") else ""))
                continue
            problem = pool_problem(config, project, m["pool"])
            if problem is not None:
                dropped.append(f"{where}: {problem}")
                continue
            found = _trust_of(m["subject"], m["pool"])
            if found is None:
                dropped.append(f"{where}: subject {m['subject']} is not a GitHub repository's ref or "
                               "environment (a Kubernetes subject needs its cluster's issuer, which the "
                               "pool's provider holds and adopt does not read: add it by hand)")
                continue
            if f"principal://iam.googleapis.com/{found.pool}/subject/{found.subject()}" != member:
                dropped.append(f"{where} does not map exactly to a federation entry")
                continue
            if found not in trusts:
                trusts.append(found)
    return trusts, dropped


def _trust_of(subject: str, pool: str) -> GithubTrust | None:
    m = _GITHUB.fullmatch(subject)
    if m is None or "*" in subject:
        return None
    if m["how"] == "ref":
        return GithubTrust(m["repo"], ref=m["value"], pool=pool)
    return GithubTrust(m["repo"], environment=m["value"], pool=pool)


# --- the backend ---------------------------------------------------------------------------


class GcpAdoption(AdoptionBackend):
    """Read a service account whole, and write our marker in its description."""

    def __init__(self, config: Config, clients: GcpClients, policies: GcpPolicies,
                 identities: GcpIdentities) -> None:
        self.config = config
        self.clients = clients
        self.policies = policies
        self.identities = identities
        # Role name -> its permissions, or why they were not read (one GetRole per role a run).
        self._roles: dict[str, tuple[str, ...] | str] = {}

    def _role(self, role: str) -> tuple[str, ...] | str:
        """A role's permissions as the cloud defines them, or why they were not read."""
        if role not in self._roles:
            try:
                found = self.clients.iam.get_role(request={"name": role})
            except CloudError as exc:
                if exc.kind not in (NOT_FOUND, DENIED, OTHER):
                    raise
                self._roles[role] = f"the permissions of {role} could not be read ({exc.code}: {exc})"
            else:
                # GCP ignores bindings of a deleted custom role: it grants nothing now.
                self._roles[role] = () if found.deleted else tuple(sorted(found.included_permissions))
        return self._roles[role]

    def _entry(self, source: str, resource: str, binding: Mapping[str, Any]) -> tuple[str, str]:
        role = str(binding["role"])
        condition = binding.get("condition") or {}
        doc: dict[str, Any] = {"resource": resource, "role": role}
        if condition.get("expression"):
            doc["condition"] = condition["expression"]
            source += f" if {condition.get('title') or condition['expression']}"
        found = self._role(role)
        if isinstance(found, str):
            doc["unread"] = found
        else:
            doc["permissions"] = list(found)
        return source, _canonical(doc)

    def held_policies(self, project: str, email: str, resources: Sequence[str] = ()
                      ) -> list[tuple[str, str]]:
        """Every binding naming the account that the tool can find, as ``(source, document)``:
        the project policy's, the other service accounts' own policies', and those of
        ``resources`` (the ones a manifest names); and a note of what is not read."""
        member = f"serviceAccount:{email}"
        out: list[tuple[str, str]] = []
        for b in render.policy_bindings(self.policies.project_policy(project)):
            if member in b["members"]:
                out.append(self._entry(f"{PROJECT_POLICY} binding {b['role']}", f"projects/{project}", b))
        for account in self.identities.accounts_in(project):
            if account.email == email:
                continue
            address = f"projects/{project}/serviceAccounts/{account.email}"
            try:
                bindings = render.policy_bindings(self.policies.account_policy(address))
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
                continue  # deleted since the list
            for b in bindings:
                if member in b["members"]:
                    out.append(self._entry(f"IAM policy of service account {account.email} binding "
                                           f"{b['role']}", address, b))
        for resource in sorted(set(resources)):
            try:
                policy = self.policies.resource_policy(resource)
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
                continue
            for b in render.policy_bindings(policy):
                if member in b["members"]:
                    out.append(self._entry(f"IAM policy of {resource} binding {b['role']}", resource, b))
        out.append(("not read", _canonical({"note": NOT_READ})))
        return out

    def read(self, target: str, address: str) -> HeldIdentity | None:
        """The account, its own policy and every binding naming it that the tool finds."""
        account = self.identities.account(f"projects/{target}/serviceAccounts/{address}")
        if account is None or str(account.email) != address:
            return None
        marker = Marker.from_text(account.description)
        own = render.policy_bindings(self.policies.account_policy(
            f"projects/{target}/serviceAccounts/{address}"))
        return HeldIdentity(
            provider="gcp", target=target, kind="service-account", name=address.split("@", 1)[0],
            address=address, immutable_id=str(account.unique_id),
            tags=self.identities.account_tags(account, marker),
            trust=_canonical(sorted(own, key=_canonical)),
            policies=tuple(self.held_policies(target, address)),
            settings={"description": "" if marker else str(account.description),
                      "displayName": str(account.display_name),
                      "disabled": "true" if account.disabled else "false"})

    def permissions(self, held: HeldIdentity) -> HeldPermissions:
        """Every binding read, each role expanded into its permissions."""
        found = permission_pairs_held(held.policies)
        if held.settings.get("description"):
            found.dropped.append("its description (the manifest keeps it as metadata.description): "
                                 "--apply writes the workload-ids marker there, where GCP keeps it")
        if held.settings.get("disabled") == "true":
            found.dropped.append("the account is disabled: nothing it holds works until it is enabled")
        return found

    def federation(self, held: HeldIdentity) -> tuple[list[Trust], list[str]]:
        """Its own policy's Workload Identity Users as federation entries, where exact."""
        return federation_of(held.trust, held.target, self.config)

    def spec(self, held: HeldIdentity, permissions: HeldPermissions,
             region: str | None = None) -> dict[str, str]:
        """``spec.gcp``: the project (GCP identities have no region)."""
        return {"project": held.target}

    def trust_change(self, held: HeldIdentity, compiled: CompiledWorkload) -> list[str]:
        """The rows by which the manifest's account policy differs from the account's."""
        return trust_change_rows(trust_rows(_bindings(held.trust)), desired_trust_rows(compiled))

    def mark(self, held: HeldIdentity, marker: Marker) -> None:
        """Write the marker and its MAC (over the email and unique id) into the description,
        after reading the account again: the same account, still unmarked, holding the same."""
        now = self.read(held.target, held.address)
        if now is None or now.immutable_id != held.immutable_id:
            raise ConflictError(f"service account {held.address} changed (deleted or re-created) since "
                                "it was read", "rerun `workload-ids adopt`; nothing was marked")
        if now.marker is not None:
            raise ConflictError(f"service account {held.address} already carries a workload-ids marker",
                                "nothing was marked; see `workload-ids inventory` for whose it is")
        if now.trust != held.trust or now.policies != held.policies:
            raise ConflictError(f"service account {held.address} changed who may act as it or what it "
                                "holds since it was read",
                                "rerun `workload-ids adopt` to prove the manifest again; nothing was marked")
        description = self.identities.marked_description(held.target, held.address, held.immutable_id,
                                                         marker)
        self.clients.iam.patch_service_account(request={
            "service_account": {"name": f"projects/{held.target}/serviceAccounts/{held.address}",
                                "description": description},
            "update_mask": {"paths": ["description"]}})
