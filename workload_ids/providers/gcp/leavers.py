"""Leaver steps on GCP: quarantine, release, transfer, teardown and restore of a service
account with its custom roles and bindings, each idempotent.

Service accounts have no labels, and the description holds the ownership marker, so the
quarantine mark (or, after a transfer, the owner who left) lives in the display name
(100 characters): ``quarantine since=… reason=… delete-after=…`` (see
:func:`.render.display_tags`). Quarantine writes the mark, then disables the account,
which rejects its tokens and keys at once; release enables it, then restores the display
name. Teardown is the ordered table :data:`TEARDOWN`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...calls import NOT_FOUND
from ...errors import CloudError, ConflictError
from ...model import (
    ADOPTED_BEFORE,
    MARK_TAG,
    TRANSFERRED_FROM_TAG,
    Marker,
    ObservedIdentity,
    QuarantineMark,
    encode_mark,
)
from ..interface import LeaverBackend
from . import render
from .clients import ALREADY_EXISTS, FAILED_PRECONDITION, GcpClients
from .identity import GcpIdentities
from .policies import GcpPolicies


@dataclass(frozen=True, slots=True)
class _Doomed:
    """What every teardown step needs to know about the account it removes."""

    identity: ObservedIdentity
    member: str  # ``serviceAccount:EMAIL``
    roles: Mapping[str, Any]  # its marked custom roles, as the read found them
    role_base: str  # only roles under its own naming are deleted


class GcpLeavers(LeaverBackend):
    """Cleanup's and restore's steps for the service accounts :class:`GcpIdentities` manages."""

    def __init__(self, clients: GcpClients, policies: GcpPolicies, identities: GcpIdentities) -> None:
        self.clients = clients
        self.policies = policies
        # Markers are signed, and the last fleet read is kept, by the identity backend.
        self.identities = identities
        self.prefix = identities.prefix

    def _guard(self, identity: ObservedIdentity) -> Marker:
        marker = identity.marker
        if marker is None:  # the workflow checks too; this is the last line
            raise ConflictError(f"service account {identity.name} does not carry the workload-ids "
                                "marker", "it is never modified")
        if identity.forged:  # a marker outside our location or naming: never acted on
            raise ConflictError(f"{identity.kind} {identity.name} carries the workload-ids marker but "
                                f"{identity.forged}", "it is reported as forged and never modified; "
                                "find out who tagged it")
        return marker

    def _patch(self, identity: ObservedIdentity, **fields: str) -> None:
        self.clients.iam.patch_service_account(request={
            "service_account": {"name": identity.address, **fields},
            "update_mask": {"paths": sorted(fields)}})

    # --- reads ---------------------------------------------------------------------

    def last_used(self, identity: ObservedIdentity) -> datetime | None:
        """GCP keeps last use in Policy Intelligence (activity analysis), not on the
        account; without it an account is never judged unused."""
        return None

    def quarantine_enforced(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool | None:
        """Whether the account is disabled (the batch read has it)."""
        return bool(identity.extra.get("disabled"))

    def quarantine_proven(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool:
        """Whether our own enforcement proves the mark: the account is disabled (the
        mark lives in the display name, written in the same quarantine)."""
        return bool(identity.extra.get("disabled"))

    # --- actions -------------------------------------------------------------------

    def quarantine(self, identity: ObservedIdentity, mark: QuarantineMark) -> QuarantineMark:
        """The mark goes into the display name, then the account is disabled.

        Deployers (``attachedTo``) keep roles/iam.serviceAccountUser on the account: a
        disabled account's tokens are refused, so a runtime they attach it to gets nothing,
        and the binding stays in the account's policy, which the restore bundle reads whole
        at deletion (removed here, nothing would remember it)."""
        self._guard(identity)
        text = render.MARK_PREFIX + encode_mark(mark)
        if identity.settings.get("displayName") != text:
            self._patch(identity, display_name=text)
        self.clients.iam.disable_service_account(request={"name": identity.address})
        return mark

    def release(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> None:
        """Enables the account, then writes its plain display name back."""
        marker = self._guard(identity)
        self.clients.iam.enable_service_account(request={"name": identity.address})
        self._patch(identity, display_name=render.plain_title(marker))

    def disown(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> list[str]:
        """Lift any quarantine (enable, plain display name), then clear the description
        that holds our marker and its MAC; roles, bindings and keys stay."""
        marker = self._guard(identity)
        if not marker.retain:  # the judge decides from the same marker; this is the last line
            raise ConflictError(f"{identity.kind} {identity.name} is not marked deletionPolicy retain",
                                "it is never released; cleanup quarantines it instead")
        steps: list[str] = []
        if mark is not None or identity.extra.get("disabled"):
            self.release(identity, mark)
            steps.append("lifted the quarantine")
        # The description adopt --apply replaced, from the audit trail (never a marker: a
        # description that read as one would have made adopt refuse the account).
        kept = str(identity.extra.get(ADOPTED_BEFORE) or "")
        if Marker.from_text(kept) is not None or len(kept) > render.DESCRIPTION_MAX:
            kept = ""
        self._patch(identity, description=kept)
        steps.append("removed the marker from the description"
                     + (", putting back the one it had before adoption" if kept else ""))
        return steps

    def transfer(self, identity: ObservedIdentity, successor: str) -> None:
        """Re-signs the description for ``successor``; the display name keeps who left."""
        marker = self._guard(identity)
        previous = identity.tags.get(TRANSFERRED_FROM_TAG) or marker.owner
        moved = marker.replace(owner=successor)
        fields = {"description": self.identities.marked_description(identity.target, identity.name,
                                                         identity.immutable_id, moved)}
        if MARK_TAG not in identity.tags:
            fields["display_name"] = render.FROM_PREFIX + previous
        self._patch(identity, **fields)

    def restore_bundle(self, identity: ObservedIdentity) -> dict[str, Any]:
        """The account, its roles and every binding it holds (the account's own policy and
        resource policies are read here: a fleet read leaves them out)."""
        marker = self._guard(identity)
        objects = dict(identity.extra.get("objects") or {})
        member = f"serviceAccount:{identity.name}"
        roles = dict(objects.get("roles") or {})
        account = self.policies.account_policy(identity.address)
        resource_bindings: list[dict[str, Any]] = []
        for resource in sorted({r for r in (render.role_resource(v.get("description", ""))
                                            for v in roles.values()) if r}):
            policy = self.policies.resource_policy(resource)
            resource_bindings.extend({"resource": resource, "role": b.role, "members": [member]}
                                     for b in policy.bindings if member in b.members)
        return {
            "provider": "gcp", "target": identity.target, "kind": identity.kind, "name": identity.name,
            "address": identity.address, "uniqueId": identity.extra.get("uniqueId", ""),
            # With its MAC: restore checks it against uniqueId before recreating anything.
            "description": identity.settings.get("description") or marker.as_text(),
            "displayName": render.plain_title(marker),
            "roles": roles,
            "projectBindings": [{"role": b["role"], **({"condition": b["condition"]}
                                                       if b.get("condition") else {}),
                                 "members": [member]} for b in objects.get("projectBindings", [])],
            "resourceBindings": resource_bindings,
            "accountBindings": [{"role": b.role, "members": list(b.members)} for b in account.bindings],
        }

    def delete(self, identity: ObservedIdentity) -> list[str]:
        """The steps of :data:`TEARDOWN` in order, each tolerant of what is already gone."""
        marker = self._guard(identity)
        roles = dict(dict(identity.extra.get("objects") or {}).get("roles") or {})
        doomed = _Doomed(identity, f"serviceAccount:{identity.name}", roles,
                         render.role_base(self.prefix, marker.environment, marker.workload))
        steps: list[str] = []
        for step in TEARDOWN:
            steps.extend(step(self, doomed))
        return steps

    def _unbind_project(self, doomed: _Doomed) -> list[str]:
        ours = {f"projects/{doomed.identity.target}/roles/{rid}" for rid in doomed.roles}
        # Only bindings of its own (marked) roles: a binding someone else made is never
        # changed; if it named this account, cleanup later lists the dead member it becomes.
        self.policies.set_project_bindings(doomed.identity.target, doomed.member, [],
                                           lambda role: role in ours)
        return ["remove its project policy bindings"]

    def _unbind_resources(self, doomed: _Doomed) -> list[str]:
        resources = sorted({r for r in (render.role_resource(v.get("description", ""))
                                        for v in doomed.roles.values()) if r})
        if not resources:
            return []
        self.policies.set_resource_bindings(doomed.member, [], resources)
        return [f"remove its bindings on {', '.join(resources)}"]

    def _delete_roles(self, doomed: _Doomed) -> list[str]:
        steps: list[str] = []
        for rid in sorted(doomed.roles):
            if not rid.startswith(doomed.role_base):
                continue
            try:
                self.clients.iam.delete_role(
                    request={"name": f"projects/{doomed.identity.target}/roles/{rid}"})
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
            steps.append(f"delete role {rid}")
        return steps

    def _delete_account(self, doomed: _Doomed) -> list[str]:
        try:
            self.clients.iam.delete_service_account(request={"name": doomed.identity.address})
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
        return [f"delete service account {doomed.identity.name}"]

    def dead_grants(self, target: str) -> list[dict[str, str]]:
        """``deleted:serviceAccount:`` members of accounts of ours (by our naming) left in
        the project policy read by the last fleet read. GCP keeps them after an account is
        deleted by other means; they count against the policy's size and would grant a
        recreated account of the same name nothing (GCP binds by unique id)."""
        pattern = re.compile(rf"^deleted:serviceAccount:{re.escape(self.prefix)}-[a-z0-9-]*-[0-9a-f]{{6}}"
                             rf"@{re.escape(target)}\.iam\.gserviceaccount\.com\?uid=\d+$")
        bindings = self.identities.scope_bindings(target)
        return [{"member": m, "role": str(b["role"]),
                 "condition": str((b.get("condition") or {}).get("expression", ""))}
                for b in bindings for m in b["members"] if pattern.match(m)]

    def remove_dead_grants(self, target: str, grants: list[dict[str, str]]) -> None:
        """Takes each dead member out of every binding of the project policy."""
        for member in sorted({g["member"] for g in grants}):
            self.policies.set_project_bindings(target, member, [], lambda role: True)

    def restore(self, bundle: dict[str, Any]) -> list[str]:
        """Undelete the account when GCP still can (30 days), else recreate it; then its
        roles and bindings. Converges when rerun."""
        from ...markers import NOT_AUTHENTICATED, check
        from ...signing import SHORT_MAC_LENGTH
        steps: list[str] = []
        project, email = str(bundle["target"]), str(bundle["name"])
        address = str(bundle["address"])
        marker = Marker.from_text(str(bundle.get("description", "")))
        # Only an account whose marker the tool authenticated has a bundle to restore.
        keys = self.clients.signing_keys
        if marker is None or check(keys.get(project), "gcp", project, email, str(bundle.get("uniqueId", "")),
                                   marker, Marker.mac_of_text(str(bundle["description"])),
                                   SHORT_MAC_LENGTH):
            raise ConflictError(f"the restore bundle of service account {email} carries a marker that is "
                                "not authenticated (no valid mac= in its description)",
                                "it is never restored: the account it describes was not provably made by "
                                "workload-ids, or the bundle was edited")
        existed = False
        try:
            self.clients.iam.get_service_account(name=address)
            existed = True
            steps.append(f"service account {email} exists: converging it")
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            try:
                self.clients.iam.undelete_service_account(
                    request={"name": f"projects/-/serviceAccounts/{bundle.get('uniqueId')}"})
                steps.append(f"undelete service account {email}")
            except CloudError:  # gone for good (past 30 days): made anew
                self.clients.iam.create_service_account(request={
                    "name": f"projects/{project}", "account_id": email.split("@", 1)[0],
                    "service_account": {"description": bundle["description"],
                                        "display_name": bundle["displayName"]}})
                steps.append(f"create service account {email}")
        account = self.clients.iam.get_service_account(name=address)
        found = Marker.from_text(account.description)
        if found is None:
            raise ConflictError(f"service account {email} exists without the workload-ids marker",
                                "it is never modified; restore under that name is impossible")
        if existed and check(keys.get(project), "gcp", project, email, str(account.unique_id), found,
                             Marker.mac_of_text(account.description), SHORT_MAC_LENGTH):
            raise ConflictError(f"service account {email} exists and carries the workload-ids marker but "
                                f"{NOT_AUTHENTICATED}", "it is reported as forged and never modified; "
                                "find out who wrote that description")
        self.clients.iam.enable_service_account(request={"name": address})
        # Undeleted, it keeps its unique id; recreated, it has a new one: marked anew either way.
        self.clients.iam.patch_service_account(request={
            "service_account": {"name": address, "description": self.identities.marked_description(
                project, email, str(account.unique_id), marker),
                                "display_name": bundle["displayName"]},
            "update_mask": {"paths": ["description", "display_name"]}})
        for rid, role in dict(bundle.get("roles") or {}).items():
            # Signed anew: a bundle written before roles were signed holds none.
            body = {"title": role["title"],
                    "description": self.identities.signed_role_description(
                        project, rid, str(role["description"])),
                    "included_permissions": role["includedPermissions"], "stage": 2}
            name = f"projects/{project}/roles/{rid}"
            try:
                self.clients.iam.create_role(request={"parent": f"projects/{project}", "role_id": rid,
                                                      "role": body})
            except CloudError as exc:  # taken, or deleted and not yet purged
                if exc.code not in (ALREADY_EXISTS, FAILED_PRECONDITION):
                    raise
                current = self.clients.iam.get_role(request={"name": name})
                if current.deleted:
                    current = self.clients.iam.undelete_role(request={"name": name, "etag": current.etag})
                # The account will be bound to it: it must hold exactly the bundle's
                # permissions, whoever wrote it meanwhile (a role at our id, as apply does).
                if (current.title, current.description, sorted(current.included_permissions)) != (
                        body["title"], body["description"], sorted(body["included_permissions"])):
                    self.identities.update_role(name, body, current.etag)
            steps.append(f"role {rid}")
        member = f"serviceAccount:{email}"
        self.policies.set_project_bindings(project, member, list(bundle.get("projectBindings") or []),
                                           lambda role: False)
        steps.append("project policy bindings")
        self.policies.set_resource_bindings(member, list(bundle.get("resourceBindings") or []), [])
        from google.iam.v1 import policy_pb2
        current_policy = self.policies.account_policy(address)
        wanted = policy_pb2.Policy(version=1, etag=current_policy.etag)
        for b in bundle.get("accountBindings") or []:
            wanted.bindings.add(role=b["role"], members=b["members"])
        self.clients.iam.set_iam_policy(request={"resource": address, "policy": wanted})
        steps.append("federation on the account")
        return steps


# Teardown, in order: bindings first (so no ``deleted:serviceAccount:`` member is left
# behind in a policy), then the roles, then the account (its keys go with it). Each step
# returns what it did and treats what is already gone as done.
TEARDOWN: tuple[Callable[[GcpLeavers, _Doomed], list[str]], ...] = (
    GcpLeavers._unbind_project,
    GcpLeavers._unbind_resources,
    GcpLeavers._delete_roles,
    GcpLeavers._delete_account,
)
