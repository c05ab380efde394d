"""What a service account holds, wherever the tool can find it: every binding naming it
(the project policy's, the own policies of the project's other service accounts, and
those of resources a manifest names), each role expanded into its permissions as the
cloud defines them (``GetRole``, predefined and custom roles alike). Shared by
``adopt`` (:mod:`.adoption`) and the identity backend, which compares an adopted account
in observe mode by all it holds.

Not found: bindings on other resources (buckets, topics, secrets...) and in other
projects (only Cloud Asset Inventory lists them), and IAM deny policies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...calls import DENIED, NOT_FOUND, OTHER
from ...errors import CloudError
from ...model import CompiledWorkload, HeldPermissions
from ...resources import parse_resource
from . import render
from .clients import GcpClients
from .policies import GcpPolicies

PROJECT_POLICY = "project IAM policy"
NOT_READ = ("bindings on other resources (buckets, topics, secrets...) and in other projects were not "
            "read (only Cloud Asset Inventory lists them), nor IAM deny policies: whatever they grant "
            "or deny the account is neither in this manifest nor in its proof")


def canonical(value: Any) -> str:
    """``value`` as sorted compact JSON: documents compare as text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _load(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def permission_pairs_held(policies: Iterable[tuple[str, str]]) -> HeldPermissions:
    """Read the bindings of an account (``(source, document)``, as :meth:`Holdings.held_policies`
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


def bindings_of(trust: str) -> list[dict[str, Any]]:
    """The bindings of an account's own policy, from :attr:`HeldIdentity.trust`'s text."""
    doc = _load(trust)
    return [b for b in doc if isinstance(b, dict)] if isinstance(doc, list) else []


def trust_rows(bindings: Sequence[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """(role, member, condition) of every binding of an account's own policy: whoever holds
    any role there can act as the account or change who may. A deleted principal
    (``deleted:...?uid=N``) is no one: GCP grants it nothing."""
    return {(str(b["role"]), str(m), str((b.get("condition") or {}).get("expression", "")))
            for b in bindings for m in b.get("members", []) if not str(m).startswith("deleted:")}


def desired_trust_rows(workload: CompiledWorkload) -> set[tuple[str, str, str]]:
    """The (role, member, condition) rows a manifest puts on the account's own policy."""
    return {*((render.WORKLOAD_IDENTITY_USER, m, "") for m in render.federation_members(workload)),
            *((render.SERVICE_ACCOUNT_USER, m, "") for m in render.deployer_members(workload))}


def trust_change_rows(have: set[tuple[str, str, str]], want: set[tuple[str, str, str]]) -> list[str]:
    """``+ trust`` / ``- trust`` rows, as adopt's proof shows them."""
    def row(sign: str, r: tuple[str, str, str]) -> str:
        return f"{sign} trust {r[1]}  {r[0]}" + (f" if {r[2]}" if r[2] else "")
    return [row("+", r) for r in sorted(want - have)] + [row("-", r) for r in sorted(have - want)]


def service_accounts(clients: GcpClients, project: str) -> list[Any]:
    """Every service account of ``project`` (paged, 100 a call)."""
    accounts: list[Any] = []
    token = ""  # a page token, not a secret  # nosec B105
    while True:
        page = clients.iam.list_service_accounts(request={
            "name": f"projects/{project}", "page_size": 100, "page_token": token})
        accounts.extend(page.accounts)
        token = page.next_page_token
        if not token:
            return accounts


class Holdings:
    """Reads of every binding naming an account, with the run's role definitions."""

    def __init__(self, clients: GcpClients, policies: GcpPolicies, *, cache: bool = False) -> None:
        self.clients = clients
        self.policies = policies
        # Role name -> its permissions, or why they were not read (one GetRole per role a run).
        self._roles: dict[str, tuple[str, ...] | str] = {}
        # With ``cache`` (a plan's reads): each project's service-account policies are read
        # once for all its adopted accounts, not once per account. Adopt reads them afresh:
        # its mark compares a second read with the first.
        self._cache = cache
        self._account_policies: dict[str, list[tuple[str, str, list[dict[str, Any]]]]] = {}
        self._lock = threading.Lock()

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
        return source, canonical(doc)

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
        for other, address, bindings in self._service_account_policies(project):
            if other == email:
                continue
            for b in bindings:
                if member in b["members"]:
                    out.append(self._entry(f"IAM policy of service account {other} binding "
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
        out.append(("not read", canonical({"note": NOT_READ})))
        return out

    def _service_account_policies(self, project: str) -> list[tuple[str, str, list[dict[str, Any]]]]:
        """(email, address, bindings) of every service account's own policy in ``project``."""
        if self._cache:
            with self._lock:
                if project not in self._account_policies:
                    self._account_policies[project] = self._read_account_policies(project)
                return self._account_policies[project]
        return self._read_account_policies(project)

    def _read_account_policies(self, project: str) -> list[tuple[str, str, list[dict[str, Any]]]]:
        out: list[tuple[str, str, list[dict[str, Any]]]] = []
        for account in service_accounts(self.clients, project):
            address = f"projects/{project}/serviceAccounts/{account.email}"
            try:
                bindings = render.policy_bindings(self.policies.account_policy(address))
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
                continue  # deleted since the list
            out.append((str(account.email), address, bindings))
        return out

