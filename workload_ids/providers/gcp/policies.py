"""IAM policies on GCP: the project's, each resource's and a service account's own, read
and changed by read-modify-write with the etag, redone whole on a conflict.

Shared by the identity backend (joiner, mover) and the leaver backend (teardown, restore,
dead grants). Every edit touches only one member's entries: a binding someone else made
keeps everyone else in it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ...calls import CONFLICT, NOT_FOUND
from ...errors import CloudError
from . import render
from .clients import GcpClients

# Whole read-modify-write cycles of a project policy before giving up on conflicts.
POLICY_ATTEMPTS = 10


def binding_key(binding: Mapping[str, Any]) -> tuple[str, str]:
    """A project binding's identity: its role and its condition's expression ("" without)."""
    condition = binding.get("condition") or {}
    return str(binding["role"]), str(condition.get("expression", ""))


def kind_of(resource: str) -> str:
    """The resource kind of a full resource name (which service answers its policy)."""
    from ...resources import parse_resource
    parsed = parse_resource("gcp", resource)
    return parsed.kind if parsed else ""


class GcpPolicies:
    """Reads and etag-guarded edits of project, resource and service-account IAM policies."""

    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients
        self.seam = clients.seam
        # One project policy edit at a time per project from this process: workloads
        # applied side by side would otherwise keep invalidating each other's etags.
        self._project_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # --- reads -----------------------------------------------------------------------

    def project_policy(self, project: str) -> Any:
        """The project's IAM policy (version 3: conditions included)."""
        return self.clients.projects.get_iam_policy(request={
            "resource": f"projects/{project}", "options": {"requested_policy_version": 3}})

    def account_policy(self, address: str) -> Any:
        """A service account's own IAM policy (who may act as it)."""
        return self.clients.iam.get_iam_policy(request={"resource": address})

    def resource_policy(self, resource: str) -> Any:
        """One resource's IAM policy, from the service that holds the resource."""
        from google.iam.v1 import iam_policy_pb2
        stub = self.clients.resource_policy(kind_of(resource))
        return stub.GetIamPolicy(iam_policy_pb2.GetIamPolicyRequest(resource=resource))

    # --- the project policy ------------------------------------------------------------

    def set_project_bindings(self, project: str, member: str, want_list: list[dict[str, Any]],
                             ours: Callable[[str], bool]) -> None:
        """Read-modify-write of the project policy with its etag; on a conflict the whole
        cycle is redone from a fresh read. Only ``member``'s entries change: it is added to
        every wanted binding and taken out of the others whose role ``ours`` accepts."""
        with self._locks_guard:
            lock = self._project_locks.setdefault(project, threading.Lock())
        with lock:
            self._edit_project_bindings(project, member, want_list, ours)

    def _edit_project_bindings(self, project: str, member: str, want_list: list[dict[str, Any]],
                               ours: Callable[[str], bool]) -> None:
        from google.iam.v1 import policy_pb2
        want = {binding_key(b): b for b in want_list}
        for attempt in range(POLICY_ATTEMPTS):
            policy = self.project_policy(project)
            original = render.policy_bindings(policy)
            bindings = render.policy_bindings(policy)  # edited in place below; compared to original
            present: set[tuple[str, str]] = set()
            kept: list[dict[str, Any]] = []
            for b in bindings:
                key = binding_key(b)
                if member in b["members"] and key not in want and ours(str(b["role"])):
                    b["members"] = [m for m in b["members"] if m != member]
                if key in want and member in b["members"]:
                    present.add(key)
                if b["members"]:
                    kept.append(b)
            for key, b in want.items():
                if key in present:
                    continue
                target = next((k for k in kept if binding_key(k) == key), None)
                if target is not None:
                    target["members"] = sorted({*target["members"], member})
                else:
                    kept.append({k: v for k, v in b.items()})
            if kept == original:
                return
            new = policy_pb2.Policy(version=3, etag=policy.etag)
            for b in kept:
                item = new.bindings.add(role=b["role"], members=b["members"])
                if b.get("condition"):
                    item.condition.title = b["condition"]["title"]
                    item.condition.description = b["condition"].get("description", "")
                    item.condition.expression = b["condition"]["expression"]
            try:
                self.clients.projects.set_iam_policy(request={"resource": f"projects/{project}",
                                                              "policy": new})
                return
            except CloudError as exc:
                if exc.kind != CONFLICT:
                    raise
                self.seam.conflict_pause(attempt)
        raise CloudError("resourcemanager.set_iam_policy", "Aborted",
                         f"project {project}'s IAM policy kept changing under us "
                         f"({POLICY_ATTEMPTS} attempts)",
                         "another tool is editing it; rerun (reruns converge)")

    # --- resource policies ---------------------------------------------------------------

    def set_resource_bindings(self, member: str, bindings_wanted: list[dict[str, Any]],
                              dropped: list[str]) -> None:
        """On each wanted resource, ``member`` in exactly its wanted bindings; on each
        dropped one (a mover, a deletion), in none. Read-modify-write with the etag."""
        from google.iam.v1 import iam_policy_pb2, policy_pb2
        want: dict[str, set[str]] = {}
        for b in bindings_wanted:
            want.setdefault(b["resource"], set()).add(b["role"])
        for resource in sorted({*want, *dropped}):
            roles = want.get(resource, set())
            stub = self.clients.resource_policy(kind_of(resource))
            for attempt in range(POLICY_ATTEMPTS):
                try:
                    policy = stub.GetIamPolicy(iam_policy_pb2.GetIamPolicyRequest(resource=resource))
                except CloudError as exc:
                    if exc.kind == NOT_FOUND and resource not in want:
                        break  # a dropped resource that is gone: nothing to revoke
                    raise
                bindings = [{"role": b.role, "members": [m for m in b.members
                                                         if m != member or b.role in roles]}
                            for b in policy.bindings]
                for role in roles:
                    entry = next((b for b in bindings if b["role"] == role), None)
                    if entry is None:
                        bindings.append({"role": role, "members": [member]})
                    elif member not in entry["members"]:
                        entry["members"] = sorted({*entry["members"], member})
                bindings = [b for b in bindings if b["members"]]
                if bindings == [{"role": b.role, "members": list(b.members)} for b in policy.bindings]:
                    break
                new = policy_pb2.Policy(version=policy.version or 1, etag=policy.etag)
                for b in bindings:
                    new.bindings.add(role=b["role"], members=b["members"])
                try:
                    stub.SetIamPolicy(iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=new))
                    break
                except CloudError as exc:
                    if exc.kind != CONFLICT or attempt == POLICY_ATTEMPTS - 1:
                        raise
                    self.seam.conflict_pause(attempt)

    # --- a service account's own policy --------------------------------------------------

    def set_account_users(self, address: str, name: str, members: list[str],
                          deployers: list[str] | None = None) -> None:
        """Who may act as the account (federation) and who may attach it to a runtime:
        exactly ``members`` as its Workload Identity users and ``deployers`` as its Service
        Account users (left as they are when None), every other binding of its own policy
        kept. Both are managed whole: a member someone added by hand could run code as the
        account, which the manifest must say."""
        from google.iam.v1 import policy_pb2
        managed = {render.WORKLOAD_IDENTITY_USER: sorted(members)}
        if deployers is not None:
            managed[render.SERVICE_ACCOUNT_USER] = sorted(deployers)
        for attempt in range(POLICY_ATTEMPTS):
            policy = self.account_policy(address)
            bindings = render.policy_bindings(policy)
            others = [b for b in bindings if b["role"] not in managed]
            have = {role: sorted(m for b in bindings if b["role"] == role for m in b["members"])
                    for role in managed}
            if have == managed:
                return
            new = policy_pb2.Policy(version=1, etag=policy.etag)
            for b in others:
                new.bindings.add(role=b["role"], members=b["members"])
            for role, wanted in managed.items():
                if wanted:
                    new.bindings.add(role=role, members=wanted)
            try:
                self.clients.iam.set_iam_policy(request={"resource": address, "policy": new})
                return
            except CloudError as exc:
                if exc.kind != CONFLICT:
                    raise
                self.seam.conflict_pause(attempt)
        raise CloudError("iam.set_iam_policy", "Aborted", f"{name}'s IAM policy kept changing",
                         "rerun (reruns converge)")
