"""Leaver steps on AWS: quarantine, release, transfer, teardown and restore of IAM roles
and users, each idempotent so that a rerun after a crash at any call converges.

Quarantine writes the mark first (the intent, including which keys it deactivates) and
then enforces it; release lifts the enforcement first and clears the mark last. Either
way a crash in between leaves a mark that the next cleanup finishes or undoes.

Teardown is data, as Cloud Custodian keeps it: :data:`TEARDOWN` lists, per kind of
identity and in order, every kind of thing IAM refuses to delete it over, how each is
found and the calls that remove it.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ... import clock
from ...calls import SeamClient
from ...errors import CloudError, ConflictError
from ...markers import NOT_AUTHENTICATED
from ...model import (
    IMMUTABLE_ID,
    MANAGED_BY,
    MARK_TAG,
    OWNERSHIP_KEYS,
    TAG_MAC,
    TAG_MANAGED_BY,
    TAG_OWNER,
    TRANSFERRED_FROM_TAG,
    Marker,
    ObservedIdentity,
    QuarantineMark,
    encode_mark,
)
from ..interface import LeaverBackend
from . import render
from .clients import KIND_OPS, AwsClients, call, if_present, operation, pages, tags_of
from .identity import JsonDocuments
from .keys import access_keys

QUARANTINE_POLICY = render.QUARANTINE_POLICY


def quarantine_document(since: datetime) -> dict[str, Any]:
    """Deny everything, and deny every session issued before ``since`` (how AWS revokes
    live sessions: a role's existing temporary credentials keep working otherwise)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "WorkloadIdsQuarantineDenyAll", "Effect": "Deny", "Action": "*", "Resource": "*"},
            {"Sid": "WorkloadIdsRevokeOlderSessions", "Effect": "Deny", "Action": "*", "Resource": "*",
             "Condition": {"DateLessThan": {"aws:TokenIssueTime": clock.format_time(since)}}},
        ],
    }


# --- teardown as data ------------------------------------------------------------------

# How the items of one part are found: the ids of what is attached to the identity.
Find = Callable[[SeamClient, ObservedIdentity], list[str]]


@dataclass(frozen=True, slots=True)
class Removal:
    """One IAM call that removes one found item, and the step it reports."""

    label: str  # the step as reported; ``{}`` is the item
    operation: str  # the IAM call
    item: str | None = None  # its parameter naming the item; None: the call names the identity alone
    owner: bool = True  # False: the call names the item alone (virtual MFA devices)
    only: Callable[[str], bool] | None = None  # the items it applies to (None: every one)


@dataclass(frozen=True, slots=True)
class Part:
    """One kind of thing IAM refuses to delete an identity over: how each is found, and
    the calls that remove it, in order."""

    find: Find
    removals: tuple[Removal, ...]


@dataclass(frozen=True, slots=True)
class Teardown:
    """How one kind of identity is torn down: its ``parts`` in order, then the identity
    itself; when IAM still says something is attached (DeleteConflict), the
    ``on_conflict`` parts are looked for and removed, and the identity deleted once more."""

    parts: tuple[Part, ...]
    itself: Part
    on_conflict: tuple[Part, ...]


def _itself(iam: SeamClient, identity: ObservedIdentity) -> list[str]:
    return [identity.name]


def _read(key: str) -> Find:
    """Found in the batch read (no call): ``identity.extra[key]``, a list or a dict's keys."""
    def find(iam: SeamClient, identity: ObservedIdentity) -> list[str]:
        return [str(item) for item in identity.extra.get(key) or ()]
    return find


def _listed(list_call: str, key: str, field: str | None = None) -> Find:
    """Found by a paged IAM list call naming the identity (``field`` of each entry)."""
    def find(iam: SeamClient, identity: ObservedIdentity) -> list[str]:
        owner = {KIND_OPS[identity.kind].param: identity.name}
        return [str(entry if field is None else entry[field])
                for page in pages(iam, list_call, key, **owner) for entry in page]
    return find


def _access_keys(iam: SeamClient, identity: ObservedIdentity) -> list[str]:
    return [key.key_id for key in access_keys(iam, identity.name)]


def _service_credentials(iam: SeamClient, identity: ObservedIdentity) -> list[str]:
    found = if_present(iam.list_service_specific_credentials, UserName=identity.name)
    return [c["ServiceSpecificCredentialId"] for c in (found or {}).get("ServiceSpecificCredentials", [])]


def _virtual(serial: str) -> bool:
    return serial.startswith("arn:")  # a hardware device's serial is not an ARN


_ROLE_POLICIES = Removal("delete inline policy {}", "delete_role_policy", "PolicyName")
_ROLE_ATTACHED = Removal("detach {}", "detach_role_policy", "PolicyArn")
_ROLE_PROFILES = Removal("remove from instance profile {}", "remove_role_from_instance_profile",
                         "InstanceProfileName")

# IAM refuses to delete a role or user that still has keys, policies, profiles or group
# memberships (moto does not), so the order matters; every call tolerates "already gone".
TEARDOWN = {
    "role": Teardown(
        parts=(Part(_read("inline"), (_ROLE_POLICIES,)),
               Part(_read("attached"), (_ROLE_ATTACHED,)),
               Part(_read("instanceProfiles"), (_ROLE_PROFILES,))),
        itself=Part(_itself, (Removal("delete role {}", "delete_role"),)),
        # Something was attached after the batch read: list what is left and go again.
        on_conflict=(Part(_listed("list_role_policies", "PolicyNames"), (_ROLE_POLICIES,)),
                     Part(_listed("list_attached_role_policies", "AttachedPolicies", "PolicyArn"),
                          (_ROLE_ATTACHED,)),
                     Part(_listed("list_instance_profiles_for_role", "InstanceProfiles",
                                  "InstanceProfileName"), (_ROLE_PROFILES,)))),
    "user": Teardown(
        parts=(Part(_access_keys, (Removal("delete access key {}", "delete_access_key", "AccessKeyId"),)),
               Part(_itself, (Removal("delete login profile", "delete_login_profile"),)),
               Part(_listed("list_mfa_devices", "MFADevices", "SerialNumber"), (
                   Removal("deactivate MFA device {}", "deactivate_mfa_device", "SerialNumber"),
                   Removal("delete virtual MFA device {}", "delete_virtual_mfa_device", "SerialNumber",
                           owner=False, only=_virtual))),
               Part(_listed("list_signing_certificates", "Certificates", "CertificateId"),
                    (Removal("delete signing certificate {}", "delete_signing_certificate",
                             "CertificateId"),)),
               Part(_listed("list_ssh_public_keys", "SSHPublicKeys", "SSHPublicKeyId"),
                    (Removal("delete SSH key {}", "delete_ssh_public_key", "SSHPublicKeyId"),)),
               Part(_read("inline"), (Removal("delete inline policy {}", "delete_user_policy",
                                              "PolicyName"),)),
               Part(_read("attached"), (Removal("detach {}", "detach_user_policy", "PolicyArn"),)),
               Part(_read("groups"), (Removal("remove from group {}", "remove_user_from_group",
                                              "GroupName"),))),
        itself=Part(_itself, (Removal("delete user {}", "delete_user"),)),
        # Rare attachments (service-specific credentials for CodeCommit and the like)
        # are only looked for when IAM says something is still attached.
        on_conflict=(Part(_service_credentials, (Removal(
            "delete service credential {}", "delete_service_specific_credential",
            "ServiceSpecificCredentialId"),)),)),
}


class AwsLeavers(LeaverBackend):
    """Cleanup's and restore's steps for IAM roles and users."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def _iam(self, identity: ObservedIdentity) -> SeamClient:
        return self.clients.client(identity.target, "iam")

    def _guard(self, identity: ObservedIdentity) -> None:
        if identity.marker is None:  # the workflow checks too; this is the last line
            raise ConflictError(f"IAM {identity.kind} {identity.name} does not carry the "
                                "workload-ids ownership tags", "it is never modified")
        if identity.forged:  # a marker outside our location or naming: never acted on
            raise ConflictError(f"{identity.kind} {identity.name} carries the workload-ids marker but "
                                f"{identity.forged}", "it is reported as forged and never modified; "
                                "find out who tagged it")

    def _tag(self, identity: ObservedIdentity, tags: dict[str, str]) -> None:
        ops = KIND_OPS[identity.kind]
        call(self._iam(identity), ops.tag, **{ops.param: identity.name},
             Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def _untag(self, identity: ObservedIdentity, keys: list[str]) -> None:
        ops = KIND_OPS[identity.kind]
        call(self._iam(identity), ops.untag, **{ops.param: identity.name}, TagKeys=keys)

    # --- reads cleanup needs beyond the batch read ---------------------------------

    def last_used(self, identity: ObservedIdentity) -> datetime | None:
        """When the identity was last used: a role's last assumption (in the batch read),
        a user's latest key use by anything but STS (our own verification uses STS)."""
        if identity.kind == "role":
            value = identity.extra.get("lastUsed")
            return value if isinstance(value, datetime) else None
        iam = self._iam(identity)
        latest: datetime | None = None
        for key in access_keys(iam, identity.name):
            used = iam.get_access_key_last_used(AccessKeyId=key.key_id)["AccessKeyLastUsed"]
            when = used.get("LastUsedDate")
            if isinstance(when, datetime) and str(used.get("ServiceName", "")).lower() not in ("sts", "n/a"):
                latest = when if latest is None or when > latest else latest
        return latest

    def quarantine_enforced(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool | None:
        """Whether the deny is in place (roles: known from the batch read; users: None,
        the keys must be listed, which :meth:`quarantine` does anyway)."""
        if identity.kind == "role":
            return bool(identity.extra.get("quarantined"))
        return None

    def quarantine_proven(self, identity: ObservedIdentity, mark: QuarantineMark) -> bool:
        """Whether our own enforcement proves the mark's start: a role's deny policy
        (from the batch read) revoking sessions issued before exactly ``mark.since``; a
        user with no active key left (one list call)."""
        if identity.kind != "role":
            return not any(k.status == "active" for k in access_keys(self._iam(identity), identity.name))
        doc: Any = (identity.extra.get("inline") or {}).get(QUARANTINE_POLICY)
        if isinstance(doc, str):
            try:
                doc = json.loads(urllib.parse.unquote(doc))
            except ValueError:
                return False
        if not isinstance(doc, dict):
            return False
        statements = doc.get("Statement")
        want = quarantine_document(mark.since)["Statement"]
        return isinstance(statements, list) and all(s in statements for s in want)

    # --- actions -------------------------------------------------------------------

    def quarantine(self, identity: ObservedIdentity, mark: QuarantineMark) -> QuarantineMark:
        """A role gets a deny-all policy that also revokes older sessions; a user's active
        keys are deactivated (the mark lists them, so release reactivates only those)."""
        self._guard(identity)
        iam = self._iam(identity)
        if identity.kind == "role":
            if identity.tags.get(MARK_TAG) != encode_mark(mark):
                self._tag(identity, {MARK_TAG: encode_mark(mark)})
            document = render.canonical(quarantine_document(mark.since))
            iam.put_role_policy(RoleName=identity.name, PolicyName=QUARANTINE_POLICY,
                                PolicyDocument=document)
            return mark
        active = [k.key_id for k in access_keys(iam, identity.name) if k.status == "active"]
        keys = tuple(dict.fromkeys([*mark.keys, *active]))
        written = QuarantineMark(mark.since, mark.reason, mark.delete_after, keys)
        if identity.tags.get(MARK_TAG) != encode_mark(written):
            self._tag(identity, {MARK_TAG: encode_mark(written)})
        for key_id in active:
            if_present(iam.update_access_key, UserName=identity.name, AccessKeyId=key_id,
                       Status="Inactive")
        return written

    def release(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> None:
        """Undo a quarantine: lift the deny (or reactivate the keys it deactivated), then
        clear the mark."""
        self._guard(identity)
        iam = self._iam(identity)
        if identity.kind == "role":
            if_present(iam.delete_role_policy, RoleName=identity.name, PolicyName=QUARANTINE_POLICY)
        else:
            existing = {k.key_id for k in access_keys(iam, identity.name)}
            for key_id in (mark.keys if mark else ()):
                if key_id in existing:
                    iam.update_access_key(UserName=identity.name, AccessKeyId=key_id, Status="Active")
        self._untag(identity, [MARK_TAG])

    def disown(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> list[str]:
        """Lift any quarantine, then untag our marker, its MAC and our marks; policies,
        trust, keys and everyone else's tags stay as they are."""
        self._guard(identity)
        marker = identity.marker
        assert marker is not None
        if not marker.retain:  # the judge decides from the same marker; this is the last line
            raise ConflictError(f"{identity.kind} {identity.name} is not marked deletionPolicy retain",
                                "it is never released; cleanup quarantines it instead")
        steps: list[str] = []
        if mark is not None or identity.extra.get("quarantined"):
            self.release(identity, mark)
            steps.append("lifted the quarantine")
        ours = [k for k in identity.tags if k in (*OWNERSHIP_KEYS, MARK_TAG, TRANSFERRED_FROM_TAG)]
        self._untag(identity, ours)
        steps.append("removed tags " + ", ".join(sorted(ours)))
        return steps

    def transfer(self, identity: ObservedIdentity, successor: str) -> None:
        """Hand the identity to ``successor``: re-tag the owner and remember who left."""
        self._guard(identity)
        marker = identity.marker
        assert marker is not None
        previous = identity.tags.get(TRANSFERRED_FROM_TAG) or marker.owner
        # The new owner and the MAC that authenticates it, in one call.
        mac = self.clients.marker_mac(identity.target, identity.name, identity.immutable_id,
                                      marker.replace(owner=successor))
        self._tag(identity, {TAG_OWNER: successor, TRANSFERRED_FROM_TAG: previous, TAG_MAC: mac})

    def restore_bundle(self, identity: ObservedIdentity) -> dict[str, Any]:
        """The full definition, from the batch read (no calls): what :meth:`restore` needs."""
        inline = {name: doc for name, doc in dict(identity.extra.get("inline") or {}).items()
                  if name != QUARANTINE_POLICY}
        bundle: dict[str, Any] = {
            "provider": "aws", "target": identity.target, "kind": identity.kind, "name": identity.name,
            "address": identity.address, "path": identity.settings.get("path", "/"),
            "boundary": identity.settings.get("boundary", ""),
            "tags": {k: v for k, v in identity.tags.items() if k != MARK_TAG},
            "inlinePolicies": inline,
            "attachedPolicies": list(identity.extra.get("attached") or []),
            "groups": list(identity.extra.get("groups") or []),
            # What the marker's MAC covers: restore checks it before recreating anything.
            "immutableId": identity.immutable_id,
        }
        if identity.kind == "role":
            documents = identity.documents
            trust = documents.raw.get("trust") if isinstance(documents, JsonDocuments) \
                else json.loads(documents.get("trust", "{}"))
            bundle.update(trust=trust, description=identity.settings.get("description", ""),
                          maxSessionDuration=int(identity.settings.get("maxSessionDuration") or 3600),
                          instanceProfiles=list(identity.extra.get("instanceProfiles") or []))
        return bundle

    def delete(self, identity: ObservedIdentity) -> list[str]:
        """Ordered teardown by :data:`TEARDOWN`; every step tolerates "already gone"."""
        self._guard(identity)
        teardown = TEARDOWN[identity.kind]
        iam = self._iam(identity)
        steps: list[str] = []
        self._remove(iam, identity, teardown.parts, steps)
        try:
            self._remove(iam, identity, (teardown.itself,), steps)
        except CloudError as exc:
            if exc.code != "DeleteConflict":
                raise
            self._remove(iam, identity, (*teardown.on_conflict, teardown.itself), steps)
        return steps

    @staticmethod
    def _remove(iam: SeamClient, identity: ObservedIdentity, parts: tuple[Part, ...],
                steps: list[str]) -> None:
        """Find and remove each part's items in order, recording each step taken."""
        owner = {KIND_OPS[identity.kind].param: identity.name}
        for part in parts:
            for item in part.find(iam, identity):
                for removal in part.removals:
                    if removal.only is not None and not removal.only(item):
                        continue
                    params = dict(owner) if removal.owner else {}
                    if removal.item is not None:
                        params[removal.item] = item
                    if_present(operation(iam, removal.operation), **params)
                    steps.append(removal.label.format(item))

    def _remark(self, iam: SeamClient, kind: str, name: str, target: str, immutable_id: str,
                marker: Marker) -> None:
        ops = KIND_OPS[kind]
        mac = self.clients.marker_mac(target, name, immutable_id, marker)
        call(iam, ops.tag, **{ops.param: name}, Tags=[
            {"Key": TAG_MANAGED_BY, "Value": MANAGED_BY}, {"Key": TAG_MAC, "Value": mac}])

    def dead_grants(self, target: str) -> list[dict[str, str]]:
        """IAM drops a deleted role or user from everything that named it: none linger."""
        return []

    def remove_dead_grants(self, target: str, grants: list[dict[str, str]]) -> None:
        """Nothing to remove on AWS (see :meth:`dead_grants`)."""
        return None

    # --- restore -------------------------------------------------------------------

    def _converge_unsigned(self, iam: SeamClient, kind: str, name: str,
                           bundle: dict[str, Any]) -> list[str]:
        """Make an existing, unsigned identity exactly the bundle's: nothing it holds that
        the bundle does not survives (what the bundle holds is put back by the caller)."""
        steps: list[str] = []
        ops = KIND_OPS[kind]
        param = {ops.param: name}
        if kind == "role":
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=render.canonical(bundle["trust"]))
            steps.append("reset trust to the bundle's")
        if bundle.get("boundary"):
            call(iam, ops.put_boundary, **param, PermissionsBoundary=bundle["boundary"])
        else:
            if_present(operation(iam, ops.delete_boundary), **param)
        keep = set(dict(bundle.get("inlinePolicies") or {}))
        names = call(iam, ops.list_policies, **param)
        for policy in names.get("PolicyNames", []):
            if policy not in keep:
                call(iam, ops.delete_policy, **param, PolicyName=policy)
                steps.append(f"delete inline policy {policy}")
        attached = call(iam, ops.list_attached, **param)
        for item in attached.get("AttachedPolicies", []):
            if item["PolicyArn"] not in set(bundle.get("attachedPolicies") or []):
                call(iam, ops.detach, **param, PolicyArn=item["PolicyArn"])
                steps.append(f"detach {item['PolicyArn']}")
        if kind == "role":
            profiles = iam.list_instance_profiles_for_role(RoleName=name)
            for profile in profiles.get("InstanceProfiles", []):
                if profile["InstanceProfileName"] not in set(bundle.get("instanceProfiles") or []):
                    iam.remove_role_from_instance_profile(
                        InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
                    steps.append(f"remove from instance profile {profile['InstanceProfileName']}")
        else:
            groups = iam.list_groups_for_user(UserName=name)
            for group in groups.get("Groups", []):
                if group["GroupName"] not in set(bundle.get("groups") or []):
                    iam.remove_user_from_group(GroupName=group["GroupName"], UserName=name)
                    steps.append(f"remove from group {group['GroupName']}")
            # A restored user has no keys (they cannot be restored); any key is not ours.
            keys = iam.list_access_keys(UserName=name)
            for key in keys.get("AccessKeyMetadata", []):
                iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
                steps.append(f"delete access key {key['AccessKeyId']}")
        return steps

    def restore(self, bundle: dict[str, Any]) -> list[str]:
        """Recreate a deleted role or user from its bundle; converges when rerun. Access
        keys cannot be restored (AWS never shows a secret twice)."""
        target = str(bundle["target"])
        iam = self.clients.client(target, "iam")
        kind, name = str(bundle["kind"]), str(bundle["name"])
        ops = KIND_OPS[kind]
        steps: list[str] = []
        held_tags = {str(k): str(v) for k, v in dict(bundle["tags"]).items()}
        marker = Marker.from_tags(held_tags)
        # Only an identity whose marker the tool authenticated has a bundle to restore: a
        # bundle naming a forged one (or edited since) recreates nothing.
        if marker is None or self.clients.marker_mac(target, name, str(bundle.get(IMMUTABLE_ID) or ""),
                                                     marker) != held_tags.get(TAG_MAC):
            raise ConflictError(f"the restore bundle of IAM {kind} {name} carries a marker that is "
                                f"not authenticated ({NOT_AUTHENTICATED.removeprefix('its marker is ')})",
                                "it is never restored: the identity it describes was not provably "
                                "made by workload-ids, or the bundle was edited")
        tags = [{"Key": k, "Value": v} for k, v in held_tags.items() if k not in (MARK_TAG, TAG_MAC)]
        params: dict[str, Any] = {"Path": bundle.get("path") or "/", "Tags": tags}
        if bundle.get("boundary"):
            params["PermissionsBoundary"] = bundle["boundary"]
        try:
            if kind == "role":
                created = iam.create_role(
                    RoleName=name, AssumeRolePolicyDocument=render.canonical(bundle["trust"]),
                    Description=bundle.get("description", ""),
                    MaxSessionDuration=int(bundle.get("maxSessionDuration") or 3600), **params)["Role"]
            else:
                created = iam.create_user(UserName=name, **params)["User"]
            steps.append(f"create {kind} {name}")
            # A new identity has a new immutable id: mark it anew.
            self._remark(iam, kind, name, target, str(created.get(ops.immutable_id)), marker)
        except CloudError as exc:
            # Only the create's own "exists" means a rerun: the same code from the tag
            # call that follows it would be something else.
            if exc.code != "EntityAlreadyExists" or exc.operation != f"iam.{ops.create}":
                raise
            # A rerun, or a deletion that never finished: converge only what is ours.
            existing = call(iam, ops.get, **{ops.param: name})[ops.result]
            found = tags_of(existing.get("Tags"))
            found_marker = Marker.from_tags(found)
            if found_marker is None:
                raise ConflictError(f"IAM {kind} {name} exists and does not carry the workload-ids "
                                    "ownership tags", "it is never modified; restore under that name "
                                    "is impossible until it is removed or renamed") from exc
            found_id = str(existing.get(ops.immutable_id) or "")
            if self.clients.marker_mac(target, name, found_id, found_marker) != found.get(TAG_MAC):
                if TAG_MAC in found or found_marker != marker:
                    raise ConflictError(f"IAM {kind} {name} exists and carries the workload-ids tags but "
                                        f"{NOT_AUTHENTICATED}", "it is reported as forged and never "
                                        "modified; find out who tagged it") from exc
                # The bundle's own marker and never a MAC: what a restore that died between
                # creating the identity and signing it leaves. Nothing about it is believed:
                # it is made exactly the bundle's identity (trust, boundary, policies,
                # groups and profiles; no keys), and only then signed, so whoever may have
                # made it instead keeps no way in.
                steps.extend(self._converge_unsigned(iam, kind, name, bundle))
                self._remark(iam, kind, name, target, found_id, marker)
                steps.append(f"{kind} {name} was left unsigned by an interrupted restore: "
                             "made exactly the bundle's and signed")
            if kind == "role":
                if_present(iam.delete_role_policy, RoleName=name, PolicyName=QUARANTINE_POLICY)
            if MARK_TAG in found:
                call(iam, ops.untag, **{ops.param: name}, TagKeys=[MARK_TAG])
            steps.append(f"{kind} {name} exists with our marker: converging it")
        for policy, doc in dict(bundle.get("inlinePolicies") or {}).items():
            text = doc if isinstance(doc, str) else render.canonical(doc)
            call(iam, ops.put_policy, **{ops.param: name}, PolicyName=policy, PolicyDocument=text)
            steps.append(f"put inline policy {policy}")
        for arn in bundle.get("attachedPolicies") or []:
            call(iam, ops.attach, **{ops.param: name}, PolicyArn=arn)
            steps.append(f"attach {arn}")
        for profile in bundle.get("instanceProfiles") or []:
            try:
                iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=name)
                steps.append(f"add to instance profile {profile}")
            except CloudError as exc:
                if exc.code not in ("LimitExceeded", "EntityAlreadyExists"):
                    raise
        for group in bundle.get("groups") or []:
            iam.add_user_to_group(GroupName=group, UserName=name)
            steps.append(f"add to group {group}")
        return steps
