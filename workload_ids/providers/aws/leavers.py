"""Leaver steps on AWS: quarantine, release, transfer, teardown and restore of IAM roles
and users, each idempotent so that a rerun after a crash at any call converges.

Quarantine writes the mark first (the intent, including which keys it deactivates) and
then enforces it; release lifts the enforcement first and clears the mark last. Either
way a crash in between leaves a mark that the next cleanup finishes or undoes.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ... import clock
from ...calls import NOT_FOUND
from ...errors import CloudError, ConflictError
from ...markers import NOT_AUTHENTICATED
from ...model import (
    IMMUTABLE_ID,
    MANAGED_BY,
    MARK_TAG,
    TAG_MAC,
    TAG_MANAGED_BY,
    TAG_OWNER,
    TRANSFERRED_FROM_TAG,
    KeyInfo,
    Marker,
    ObservedIdentity,
    QuarantineMark,
    encode_mark,
)
from . import render

if TYPE_CHECKING:
    from ...calls import SeamClient

QUARANTINE_POLICY = "workload-ids-quarantine"


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


class RetireMixin:
    """The leaver half of :class:`~workload_ids.providers.aws.provider.AwsProvider`."""

    if TYPE_CHECKING:
        def client(self, target: str, service: str) -> SeamClient: ...
        def _ignore_missing(self, fn: Any, **kwargs: Any) -> None: ...
        def keys_of(self, target: str, name: str) -> list[KeyInfo]: ...
        def marker_mac(self, target: str, name: str, immutable_id: str, marker: Marker) -> str: ...
        def _pages(self, client: SeamClient, operation: str, key: str,
                   **kwargs: Any) -> Iterator[list[Any]]: ...

    def _iam(self, identity: ObservedIdentity) -> SeamClient:
        return self.client(identity.target, "iam")

    def _guard(self, identity: ObservedIdentity) -> None:
        if identity.marker is None:  # the workflow checks too; this is the last line
            raise ConflictError(f"IAM {identity.kind} {identity.name} does not carry the "
                                "workload-ids ownership tags", "it is never modified")
        if identity.forged:  # a marker outside our location or naming: never acted on
            raise ConflictError(f"{identity.kind} {identity.name} carries the workload-ids marker but "
                                f"{identity.forged}", "it is reported as forged and never modified; "
                                "find out who tagged it")

    def _tag(self, identity: ObservedIdentity, tags: dict[str, str]) -> None:
        iam = self._iam(identity)
        items = [{"Key": k, "Value": v} for k, v in tags.items()]
        if identity.kind == "role":
            iam.tag_role(RoleName=identity.name, Tags=items)
        else:
            iam.tag_user(UserName=identity.name, Tags=items)

    def _untag(self, identity: ObservedIdentity, keys: list[str]) -> None:
        iam = self._iam(identity)
        if identity.kind == "role":
            iam.untag_role(RoleName=identity.name, TagKeys=keys)
        else:
            iam.untag_user(UserName=identity.name, TagKeys=keys)

    # --- reads cleanup needs beyond the batch read ---------------------------------

    def last_used(self, identity: ObservedIdentity) -> datetime | None:
        """When the identity was last used: a role's last assumption (in the batch read),
        a user's latest key use by anything but STS (our own verification uses STS)."""
        if identity.kind == "role":
            value = identity.extra.get("lastUsed")
            return value if isinstance(value, datetime) else None
        iam = self._iam(identity)
        latest: datetime | None = None
        for key in self.keys_of(identity.target, identity.name):
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
            return not any(k.status == "active" for k in self.keys_of(identity.target, identity.name))
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
        """Disable without destroying; returns the mark as written."""
        self._guard(identity)
        iam = self._iam(identity)
        if identity.kind == "role":
            if identity.tags.get(MARK_TAG) != encode_mark(mark):
                self._tag(identity, {MARK_TAG: encode_mark(mark)})
            document = render.canonical(quarantine_document(mark.since))
            iam.put_role_policy(RoleName=identity.name, PolicyName=QUARANTINE_POLICY,
                                PolicyDocument=document)
            return mark
        active = [k.key_id for k in self.keys_of(identity.target, identity.name) if k.status == "active"]
        keys = tuple(dict.fromkeys([*mark.keys, *active]))
        written = QuarantineMark(mark.since, mark.reason, mark.delete_after, keys)
        if identity.tags.get(MARK_TAG) != encode_mark(written):
            self._tag(identity, {MARK_TAG: encode_mark(written)})
        for key_id in active:
            self._ignore_missing(iam.update_access_key, UserName=identity.name, AccessKeyId=key_id,
                                 Status="Inactive")
        return written

    def release(self, identity: ObservedIdentity, mark: QuarantineMark | None) -> None:
        """Undo a quarantine: lift the deny (or reactivate the keys it deactivated), then
        clear the mark."""
        self._guard(identity)
        iam = self._iam(identity)
        if identity.kind == "role":
            self._ignore_missing(iam.delete_role_policy, RoleName=identity.name,
                                 PolicyName=QUARANTINE_POLICY)
        else:
            existing = {k.key_id for k in self.keys_of(identity.target, identity.name)}
            for key_id in (mark.keys if mark else ()):
                if key_id in existing:
                    iam.update_access_key(UserName=identity.name, AccessKeyId=key_id, Status="Active")
        self._untag(identity, [MARK_TAG])

    def transfer(self, identity: ObservedIdentity, successor: str) -> None:
        """Hand the identity to ``successor``: re-tag the owner and remember who left."""
        self._guard(identity)
        marker = identity.marker
        assert marker is not None
        previous = identity.tags.get(TRANSFERRED_FROM_TAG) or marker.owner
        # The new owner and the MAC that authenticates it, in one call.
        mac = self.marker_mac(identity.target, identity.name, identity.immutable_id,
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
            raw = getattr(identity.documents, "raw", None)
            trust = raw.get("trust") if raw is not None else json.loads(identity.documents.get("trust", "{}"))
            bundle.update(trust=trust, description=identity.settings.get("description", ""),
                          maxSessionDuration=int(identity.settings.get("maxSessionDuration") or 3600),
                          instanceProfiles=list(identity.extra.get("instanceProfiles") or []))
        return bundle

    def delete(self, identity: ObservedIdentity) -> list[str]:
        """Ordered teardown; every step tolerates "already gone". IAM refuses to delete a
        role or user that still has keys, policies, profiles or group memberships (moto
        does not), so the order matters. Returns the steps taken."""
        self._guard(identity)
        steps: list[str] = []
        if identity.kind == "role":
            self._teardown_role(identity, steps)
        else:
            self._teardown_user(identity, steps)
        return steps

    def _step(self, steps: list[str], label: str, fn: Any, **kwargs: Any) -> None:
        self._ignore_missing(fn, **kwargs)
        steps.append(label)

    def _teardown_role(self, identity: ObservedIdentity, steps: list[str], *, reread: bool = False) -> None:
        iam = self._iam(identity)
        name = identity.name
        if reread:
            inline = [n for page in self._pages(iam, "list_role_policies", "PolicyNames", RoleName=name)
                      for n in page]
            attached = [p["PolicyArn"] for page in self._pages(
                iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name) for p in page]
            profiles = [p["InstanceProfileName"] for page in self._pages(
                iam, "list_instance_profiles_for_role", "InstanceProfiles", RoleName=name) for p in page]
        else:
            inline = list(dict(identity.extra.get("inline") or {}))
            attached = list(identity.extra.get("attached") or [])
            profiles = list(identity.extra.get("instanceProfiles") or [])
        for policy in inline:
            self._step(steps, f"delete inline policy {policy}",
                       iam.delete_role_policy, RoleName=name, PolicyName=policy)
        for arn in attached:
            self._step(steps, f"detach {arn}", iam.detach_role_policy,
                       RoleName=name, PolicyArn=arn)
        for profile in profiles:
            self._step(steps, f"remove from instance profile {profile}",
                       iam.remove_role_from_instance_profile, InstanceProfileName=profile, RoleName=name)
        try:
            self._step(steps, f"delete role {name}", iam.delete_role, RoleName=name)
        except CloudError as exc:
            # Something was attached after the batch read: list what is left and go again.
            if reread or exc.code != "DeleteConflict":
                raise
            self._teardown_role(identity, steps, reread=True)

    def _teardown_user(self, identity: ObservedIdentity, steps: list[str]) -> None:
        iam = self._iam(identity)
        name = identity.name
        for key in self.keys_of(identity.target, name):
            self._step(steps, f"delete access key {key.key_id}",
                       iam.delete_access_key, UserName=name, AccessKeyId=key.key_id)
        self._step(steps, "delete login profile", iam.delete_login_profile,
                   UserName=name)
        for page in self._pages(iam, "list_mfa_devices", "MFADevices", UserName=name):
            for device in page:
                serial = device["SerialNumber"]
                self._step(steps, f"deactivate MFA device {serial}",
                           iam.deactivate_mfa_device, UserName=name, SerialNumber=serial)
                if serial.startswith("arn:"):
                    self._step(steps, f"delete virtual MFA device {serial}",
                               iam.delete_virtual_mfa_device, SerialNumber=serial)
        for page in self._pages(iam, "list_signing_certificates", "Certificates", UserName=name):
            for cert in page:
                self._step(steps, f"delete signing certificate {cert['CertificateId']}",
                           iam.delete_signing_certificate, UserName=name, CertificateId=cert["CertificateId"])
        for page in self._pages(iam, "list_ssh_public_keys", "SSHPublicKeys", UserName=name):
            for ssh in page:
                self._step(steps, f"delete SSH key {ssh['SSHPublicKeyId']}",
                           iam.delete_ssh_public_key, UserName=name, SSHPublicKeyId=ssh["SSHPublicKeyId"])
        for policy in dict(identity.extra.get("inline") or {}):
            self._step(steps, f"delete inline policy {policy}",
                       iam.delete_user_policy, UserName=name, PolicyName=policy)
        for arn in identity.extra.get("attached") or []:
            self._step(steps, f"detach {arn}", iam.detach_user_policy,
                       UserName=name, PolicyArn=arn)
        for group in identity.extra.get("groups") or []:
            self._step(steps, f"remove from group {group}",
                       iam.remove_user_from_group, GroupName=group, UserName=name)
        try:
            self._step(steps, f"delete user {name}", iam.delete_user, UserName=name)
        except CloudError as exc:
            # Rare attachments (service-specific credentials for CodeCommit and the like)
            # are only looked for when IAM says something is still attached.
            if exc.code != "DeleteConflict":
                raise
            found = self._ignore_missing_value(iam.list_service_specific_credentials, UserName=name)
            for cred in (found or {}).get("ServiceSpecificCredentials", []):
                self._step(steps, f"delete service credential {cred['ServiceSpecificCredentialId']}",
                           iam.delete_service_specific_credential, UserName=name,
                           ServiceSpecificCredentialId=cred["ServiceSpecificCredentialId"])
            self._step(steps, f"delete user {name}", iam.delete_user, UserName=name)

    def _remark(self, iam: SeamClient, kind: str, name: str, target: str, immutable_id: str,
                marker: Marker) -> None:
        mac = self.marker_mac(target, name, immutable_id, marker)
        items = [{"Key": TAG_MANAGED_BY, "Value": MANAGED_BY}, {"Key": TAG_MAC, "Value": mac}]
        if kind == "role":
            iam.tag_role(RoleName=name, Tags=items)
        else:
            iam.tag_user(UserName=name, Tags=items)

    def _ignore_missing_value(self, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None

    def dead_grants(self, target: str) -> list[dict[str, str]]:
        """IAM drops a deleted role or user from everything that named it: none linger."""
        return []

    def remove_dead_grants(self, target: str, grants: list[dict[str, str]]) -> None:
        return None

    # --- restore -------------------------------------------------------------------

    def _converge_unsigned(self, iam: SeamClient, kind: str, name: str,
                           bundle: dict[str, Any]) -> list[str]:
        """Make an existing, unsigned identity exactly the bundle's: nothing it holds that
        the bundle does not survives (what the bundle holds is put back by the caller)."""
        steps: list[str] = []
        param = {"RoleName" if kind == "role" else "UserName": name}
        if kind == "role":
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=render.canonical(bundle["trust"]))
            steps.append("reset trust to the bundle's")
        if bundle.get("boundary"):
            put = iam.put_role_permissions_boundary if kind == "role" else iam.put_user_permissions_boundary
            put(**param, PermissionsBoundary=bundle["boundary"])
        else:
            drop = iam.delete_role_permissions_boundary if kind == "role" \
                else iam.delete_user_permissions_boundary
            self._ignore_missing_value(drop, **param)
        keep = set(dict(bundle.get("inlinePolicies") or {}))
        names = getattr(iam, f"list_{kind}_policies")(**param)
        for policy in names.get("PolicyNames", []):
            if policy not in keep:
                getattr(iam, f"delete_{kind}_policy")(**param, PolicyName=policy)
                steps.append(f"delete inline policy {policy}")
        attached = getattr(iam, f"list_attached_{kind}_policies")(**param)
        for item in attached.get("AttachedPolicies", []):
            if item["PolicyArn"] not in set(bundle.get("attachedPolicies") or []):
                getattr(iam, f"detach_{kind}_policy")(**param, PolicyArn=item["PolicyArn"])
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
        iam = self.client(target, "iam")
        kind, name = str(bundle["kind"]), str(bundle["name"])
        steps: list[str] = []
        held_tags = {str(k): str(v) for k, v in dict(bundle["tags"]).items()}
        marker = Marker.from_tags(held_tags)
        # Only an identity whose marker the tool authenticated has a bundle to restore: a
        # bundle naming a forged one (or edited since) recreates nothing.
        if marker is None or self.marker_mac(target, name, str(bundle.get(IMMUTABLE_ID) or ""),
                                             marker) != held_tags.get(TAG_MAC):
            raise ConflictError(f"the restore bundle of IAM {kind} {name} carries a marker that is "
                                f"not authenticated ({NOT_AUTHENTICATED.removeprefix('its marker is ')})",
                                "it is never restored: the identity it describes was not provably "
                                "made by workload-ids, or the bundle was edited")
        tags = [{"Key": k, "Value": v} for k, v in held_tags.items() if k not in (MARK_TAG, TAG_MAC)]
        params: dict[str, Any] = {"Path": bundle.get("path") or "/", "Tags": tags}
        if bundle.get("boundary"):
            params["PermissionsBoundary"] = bundle["boundary"]
        param = "RoleName" if kind == "role" else "UserName"
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
            self._remark(iam, kind, name, target, str(created.get("RoleId" if kind == "role" else "UserId")),
                         marker)
        except CloudError as exc:
            # Only the create's own "exists" means a rerun: the same code from the tag
            # call that follows it would be something else.
            if exc.code != "EntityAlreadyExists" or exc.operation != f"iam.create_{kind}":
                raise
            # A rerun, or a deletion that never finished: converge only what is ours.
            entity = getattr(iam, f"get_{kind}")(**{param: name})
            existing = entity["Role" if kind == "role" else "User"]
            found = {t["Key"]: t["Value"] for t in existing.get("Tags", [])}
            found_marker = Marker.from_tags(found)
            if found_marker is None:
                raise ConflictError(f"IAM {kind} {name} exists and does not carry the workload-ids "
                                    "ownership tags", "it is never modified; restore under that name "
                                    "is impossible until it is removed or renamed") from exc
            found_id = str(existing.get("RoleId" if kind == "role" else "UserId") or "")
            if self.marker_mac(target, name, found_id, found_marker) != found.get(TAG_MAC):
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
                self._ignore_missing(iam.delete_role_policy, RoleName=name, PolicyName=QUARANTINE_POLICY)
            if MARK_TAG in found:
                getattr(iam, f"untag_{kind}")(**{param: name}, TagKeys=[MARK_TAG])
            steps.append(f"{kind} {name} exists with our marker: converging it")
        put = iam.put_role_policy if kind == "role" else iam.put_user_policy
        for policy, doc in dict(bundle.get("inlinePolicies") or {}).items():
            text = doc if isinstance(doc, str) else render.canonical(doc)
            put(**{param: name}, PolicyName=policy, PolicyDocument=text)
            steps.append(f"put inline policy {policy}")
        attach = iam.attach_role_policy if kind == "role" else iam.attach_user_policy
        for arn in bundle.get("attachedPolicies") or []:
            attach(**{param: name}, PolicyArn=arn)
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
