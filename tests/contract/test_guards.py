"""Guards on every provider: what carries our naming but not our marker (a decoy) is
never modified by any command.

On AWS (moto), GCP and Azure (the repo's emulators) decoys are made directly through the
cloud SDK, never through workload-ids:

(a) an identity with exactly the name workload-ids would give a workload, and no marker;
(b) the same with a forged marker that lacks the manifest digest (every tag but
    ``workload-ids:manifest-sha256``; on GCP a description without ``sha256=``);
(c) on GCP and Azure, custom roles / role definitions with our naming and no marker, and
    bindings / assignments someone else made to our identities.

Every command then runs through the CLI in process: plan (per-service and fleet), apply,
rotate, recover, cleanup (dry run and --apply, the clock far in the future), restore and
inventory. Each decoy's full state is read through the SDK before and after every command
and must be equal. Our own, properly marked identities in the same account are converged,
rotated, quarantined, deleted and listed as usual, so a guard that refused everything, or
commands that did nothing, fail these tests too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.aws import KEY_MODE as AWS_KEY_MODE
from support.aws import workload
from support.azure import CONTAINER, RG, SUB, azure_workload
from support.cli import run_cli
from support.gcp import KEY_MODE as GCP_KEY_MODE
from support.gcp import gcp_workload
from support.trust import TEST_TRUST

from workload_ids.clock import format_time
from workload_ids.model import MARKER_KEYS, TAG_DIGEST
from workload_ids.providers.azure import render as azure_render
from workload_ids.providers.gcp import render as gcp_render

OWNERS = """\
owners:
  - {id: team-a, kind: group, active: true, members: [bob]}
  - {id: team-platform, kind: group, active: true, members: [bob]}
  - {id: team-payments, kind: group, active: true, members: [bob]}
  - {id: bob, kind: person, active: true}
"""
SETTINGS = ("owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
            "cleanup: {grace: 7d, minAge: 1h, maxShare: 1}\ncredentials: {verify: {interval: 0s}}\n"
            + TEST_TRUST)
# Far in the future: everything is past minAge and every key is due for rotation.
_FAR = (datetime.now(UTC) + timedelta(days=400)).replace(microsecond=0)
FAR, AFTER_GRACE = format_time(_FAR), format_time(_FAR + timedelta(days=8))
GCP_PROJECT = "acme-prod"
READER = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/" \
         "acdd72a7-3385-48ef-bd42-f606fba81ae7"
NEVER = "it is never modified"  # rotate's refusal of an identity without our marker


def forged_tags(name: str, owner: str) -> dict[str, str]:
    """All of our marker keys but the manifest digest."""
    tags = {"workload-ids:managed-by": "workload-ids", "workload-ids:workload": name,
            "workload-ids:owner": owner, "workload-ids:environment": "prod"}
    assert set(tags) == set(MARKER_KEYS) - {TAG_DIGEST}
    return tags


def compiled(path: Path) -> Any:
    from workload_ids.config import load_config
    from workload_ids.validate import validate
    checked = validate([path], load_config())
    checked.raise_for_errors()
    return checked.compiled[0]


# --- one adapter per cloud: manifests, decoys through the SDK, state read back ----------------

class Cloud:
    """A provider's sandbox: the manifests workload-ids would apply there, decoys made
    through the SDK, and everything about an identity read back through the SDK."""

    # Whether quarantine takes away the grants someone else made to the identity (until
    # release gives them back), rather than disabling it with them in place.
    quarantine_withholds = False

    provider = ""
    target = ""  # the account, project or subscription
    owner = ""
    config = ""
    conflict = ""  # what plan and apply say about an identity that is not ours
    # Decoys a fleet read does not list at all: plan takes them for new, apply then finds
    # them and refuses (Azure lists applications by our managed-by tag).
    unseen_by_fleet: tuple[str, ...] = ()

    def manifest(self, name: str, key: bool = False) -> str:
        raise NotImplementedError

    def identity(self, name: str) -> str:
        raise NotImplementedError

    def decoy(self, name: str, key: bool, forged: bool) -> None:
        """An identity named as workload-ids would name workload ``name``, made by someone
        else, with keys, policies and grants of its own; ``forged``: our marker sans digest."""
        self.create(name, key)
        if forged:
            self.forge(name, key)

    def create(self, name: str, key: bool) -> None:
        raise NotImplementedError

    def forge(self, name: str, key: bool) -> None:
        raise NotImplementedError

    def snapshot(self, name: str, key: bool) -> dict[str, Any]:
        raise NotImplementedError

    def drift(self, name: str) -> None:
        """Change our own keyless identity ``name`` by hand, as apply would undo."""
        raise NotImplementedError

    def drifted(self, name: str) -> bool:
        raise NotImplementedError

    def keys(self, name: str) -> set[str]:
        """Key ids of our own key-mode identity ``name``."""
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        raise NotImplementedError

    def stop(self) -> None:
        return None

    # (c), on GCP and Azure: custom roles with our naming, grants someone else made

    def desired_roles(self, path: Path) -> dict[str, Any]:
        """Role id -> role, as workload-ids would render them for the manifest at ``path``."""
        raise NotImplementedError

    def squat_role(self, rid: str, doc: dict[str, Any], same_id: bool = True) -> str:
        raise NotImplementedError

    def role_state(self, rid: str) -> Any:
        raise NotImplementedError

    def decoy_roles(self, name: str) -> list[str]:
        raise NotImplementedError

    def naming_roles(self, name: str) -> list[Any]:
        raise NotImplementedError

    def live_roles(self, name: str) -> set[str]:
        raise NotImplementedError

    def mover(self, name: str) -> str:
        raise NotImplementedError

    def grant_foreign(self, name: str) -> None:
        raise NotImplementedError

    def bind_decoy_role(self, name: str) -> list[str]:
        raise NotImplementedError

    def foreign(self, name: str) -> dict[str, Any]:
        raise NotImplementedError


class Aws(Cloud):
    provider, target, owner = "aws", "123456789012", "team-a"
    conflict = "does not carry the workload-ids ownership tags, so it will not be modified"

    def __init__(self, iam: Any) -> None:
        import boto3
        self.iam = iam
        self.sm = boto3.client("secretsmanager", region_name="us-east-1")
        self.policy_arn = iam.create_policy(PolicyName="someone-elses", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",
                                                     "Resource": "arn:aws:s3:::theirs"}]}))["Policy"]["Arn"]

    def manifest(self, name: str, key: bool = False) -> str:
        return AWS_KEY_MODE.replace("name: vendor-sync", f"name: {name}") if key else workload(name)

    def identity(self, name: str) -> str:
        return f"wid_prod_{name}"

    def create(self, name: str, key: bool) -> None:
        ident, iam = self.identity(name), self.iam
        tags = [{"Key": "team", "Value": "someone-else"}]
        doc = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:eu-west-1:1:theirs"}]})
        if key:
            iam.create_user(UserName=ident, Path="/workload-ids/", Tags=tags)
            iam.put_user_policy(UserName=ident, PolicyName="theirs", PolicyDocument=doc)
            iam.attach_user_policy(UserName=ident, PolicyArn=self.policy_arn)
            iam.create_access_key(UserName=ident)
            old = iam.create_access_key(UserName=ident)["AccessKey"]["AccessKeyId"]
            iam.update_access_key(UserName=ident, AccessKeyId=old, Status="Inactive")
        else:
            trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                             "Principal": {"Service": "ec2.amazonaws.com"}}]}
            iam.create_role(RoleName=ident, Path="/workload-ids/", AssumeRolePolicyDocument=json.dumps(trust),
                            Description="someone else's", Tags=tags)
            iam.put_role_policy(RoleName=ident, PolicyName="theirs", PolicyDocument=doc)
            iam.attach_role_policy(RoleName=ident, PolicyArn=self.policy_arn)

    def forge(self, name: str, key: bool) -> None:
        tags = [{"Key": k, "Value": v} for k, v in forged_tags(name, self.owner).items()]
        if key:
            self.iam.tag_user(UserName=self.identity(name), Tags=tags)
        else:
            self.iam.tag_role(RoleName=self.identity(name), Tags=tags)

    def snapshot(self, name: str, key: bool) -> dict[str, Any]:
        iam, ident = self.iam, self.identity(name)
        if key:
            return {
                "user": iam.get_user(UserName=ident)["User"],
                "tags": iam.list_user_tags(UserName=ident)["Tags"],
                "keys": [(k["AccessKeyId"], k["Status"], k["CreateDate"])
                         for k in iam.list_access_keys(UserName=ident)["AccessKeyMetadata"]],
                "inline": {p: iam.get_user_policy(UserName=ident, PolicyName=p)["PolicyDocument"]
                           for p in iam.list_user_policies(UserName=ident)["PolicyNames"]},
                "attached": iam.list_attached_user_policies(UserName=ident)["AttachedPolicies"],
                "groups": iam.list_groups_for_user(UserName=ident)["Groups"],
            }
        return {
            "role": iam.get_role(RoleName=ident)["Role"],
            "tags": iam.list_role_tags(RoleName=ident)["Tags"],
            "inline": {p: iam.get_role_policy(RoleName=ident, PolicyName=p)["PolicyDocument"]
                       for p in iam.list_role_policies(RoleName=ident)["PolicyNames"]},
            "attached": iam.list_attached_role_policies(RoleName=ident)["AttachedPolicies"],
            "profiles": iam.list_instance_profiles_for_role(RoleName=ident)["InstanceProfiles"],
        }

    def drift(self, name: str) -> None:
        self.iam.delete_role_policy(RoleName=self.identity(name), PolicyName="workload-ids")

    def drifted(self, name: str) -> bool:
        return "workload-ids" not in self.iam.list_role_policies(RoleName=self.identity(name))["PolicyNames"]

    def keys(self, name: str) -> set[str]:
        return {k["AccessKeyId"] for k in
                self.iam.list_access_keys(UserName=self.identity(name))["AccessKeyMetadata"]}

    def exists(self, name: str) -> bool:
        return self.identity(name) in {r["RoleName"] for r in self.iam.list_roles()["Roles"]}

    def secrets(self) -> list[str]:
        return [s["Name"] for s in self.sm.list_secrets()["SecretList"]]


class Gcp(Cloud):
    provider, target, owner = "gcp", GCP_PROJECT, "team-platform"
    conflict = "description does not carry the workload-ids marker, so it will not be modified"

    def __init__(self) -> None:
        from workload_ids.sandbox.gcp.local import start_local_gcp
        self.local = start_local_gcp()
        self.iam, self.rm, self.sm, self.res = self.local.emulators
        self.client = self.iam.client()
        self.config = self.local.config_block()

    def stop(self) -> None:
        self.local.stop()

    def manifest(self, name: str, key: bool = False) -> str:
        return GCP_KEY_MODE.replace("name: vendor-sync", f"name: {name}") if key else gcp_workload(name=name)

    def identity(self, name: str) -> str:
        return f"{gcp_render.account_id('wid', 'prod', name)}@{GCP_PROJECT}.iam.gserviceaccount.com"

    def role_base(self, name: str) -> str:
        return gcp_render.role_base("wid", "prod", name)

    def create_role(self, rid: str, description: str = "someone else's role") -> str:
        self.client.create_role(request={"parent": f"projects/{GCP_PROJECT}", "role_id": rid, "role": {
            "title": "theirs", "description": description, "included_permissions": ["storage.objects.get"],
            "stage": 2}})
        return f"projects/{GCP_PROJECT}/roles/{rid}"

    def edit_project_policy(self, add: Sequence[tuple[str, list[str]]] = (),
                            drop: Callable[[Any, str], bool] = lambda b, m: False) -> None:
        """Someone else edits the project policy: adds bindings, drops members."""
        from google.iam.v1 import policy_pb2
        client = self.rm.client()
        policy = client.get_iam_policy(request={"resource": f"projects/{GCP_PROJECT}",
                                                "options": {"requested_policy_version": 3}})
        edited = policy_pb2.Policy(version=3, etag=policy.etag)
        for b in policy.bindings:
            members = [m for m in b.members if not drop(b, m)]
            if members:
                item = edited.bindings.add(role=b.role, members=members)
                if b.HasField("condition"):
                    item.condition.CopyFrom(b.condition)
        for role, members in add:
            edited.bindings.add(role=role, members=members)
        client.set_iam_policy(request={"resource": f"projects/{GCP_PROJECT}", "policy": edited})

    def create(self, name: str, key: bool) -> None:
        from google.iam.v1 import policy_pb2
        email = self.identity(name)
        address = f"projects/{GCP_PROJECT}/serviceAccounts/{email}"
        self.client.create_service_account(request={
            "name": f"projects/{GCP_PROJECT}", "account_id": email.split("@")[0],
            "service_account": {"display_name": "theirs", "description": "someone else's batch job"}})
        self.client.set_iam_policy(request={"resource": address, "policy": policy_pb2.Policy(bindings=[
            policy_pb2.Binding(role="roles/iam.serviceAccountUser", members=["user:alice@example.com"])])})
        # A custom role with this workload's role naming, bound to the decoy.
        role = self.create_role(self.role_base(name) + "dec0")
        self.edit_project_policy(add=[(role, [f"serviceAccount:{email}"]),
                                      ("roles/viewer", [f"serviceAccount:{email}"])])
        if key:
            for _ in range(2):
                made = self.client.create_service_account_key(request={"name": address})
            self.client.disable_service_account_key(request={"name": made.name})

    def forge(self, name: str, key: bool) -> None:
        email = self.identity(name)
        self.client.patch_service_account(request={
            "service_account": {"name": f"projects/{GCP_PROJECT}/serviceAccounts/{email}",
                                "description": f"workload-ids:v1 workload={name} owner={self.owner} "
                                               "environment=prod"},
            "update_mask": {"paths": ["description"]}})

    def snapshot(self, name: str, key: bool) -> dict[str, Any]:
        email = self.identity(name)
        member = f"serviceAccount:{email}"
        base = f"projects/{GCP_PROJECT}/roles/{self.role_base(name)}"
        [account] = [a for a in self.iam.service_accounts(GCP_PROJECT) if a.email == email]
        policy = self.iam.service_account_policy(email)
        return {
            "account": account,  # display name, description, disabled, unique id, deleted
            "keys": [k for k in self.iam.keys(email) if k.user_managed],
            "accountPolicy": sorted((b.role, sorted(b.members)) for b in policy.bindings),
            # (Other members of a binding are not the decoy's: only its own membership.)
            "projectBindings": sorted((b.role, b.condition.expression)
                                      for b in self.rm.policy(GCP_PROJECT).bindings if member in b.members),
            "roles": [r for r in self.iam.roles(GCP_PROJECT, deleted=True) if r.name.startswith(base)],
        }

    # -- (c): roles with our naming, grants by someone else --

    def desired_roles(self, path: Path) -> dict[str, Any]:
        return dict(gcp_render.desired_objects(compiled(path), "wid")["roles"])

    def squat_role(self, rid: str, doc: dict[str, Any], same_id: bool = True) -> str:
        """Someone else's role with exactly the id (which is the name) one of ours would have."""
        self.create_role(rid)
        return rid

    def role_state(self, rid: str) -> Any:
        roles = self.iam.roles(GCP_PROJECT, deleted=True)
        return next((r for r in roles if r.name.endswith(f"/{rid}")), None)

    def decoy_roles(self, name: str) -> list[str]:
        """Roles with workload ``name``'s naming: one without a marker, one with a forged one."""
        base = self.role_base(name)
        self.create_role(base + "dec0")
        self.create_role(base + "dec1", f"workload-ids:v1 workload={name} owner={self.owner} "
                                        "environment=prod")
        return [base + "dec0", base + "dec1"]

    def naming_roles(self, name: str) -> list[Any]:
        base = f"projects/{GCP_PROJECT}/roles/{self.role_base(name)}"
        return [r for r in self.iam.roles(GCP_PROJECT, deleted=True) if r.name.startswith(base)]

    def live_roles(self, name: str) -> set[str]:
        return {r.name.rsplit("/", 1)[1] for r in self.naming_roles(name) if r.deleted is None}

    def mover(self, name: str) -> str:
        """Workload ``name`` with less access and another federation subject."""
        return gcp_workload(name=name, access="    - template: object-storage.read\n"
                                              "      resources: [projects/_/buckets/bucket-a]\n"
                            ).replace("ref: refs/heads/main", "ref: refs/heads/release")

    def grant_foreign(self, name: str) -> None:
        """Someone else grants our identity ``name`` a predefined role, and lets alice act as it."""
        from google.iam.v1 import policy_pb2
        email = self.identity(name)
        self.edit_project_policy(add=[("roles/viewer", [f"serviceAccount:{email}",
                                                        "user:alice@example.com"])])
        address = f"projects/{GCP_PROJECT}/serviceAccounts/{email}"
        policy = self.client.get_iam_policy(request={"resource": address})
        edited = policy_pb2.Policy(version=1, etag=policy.etag, bindings=list(policy.bindings))
        edited.bindings.add(role="roles/iam.serviceAccountTokenCreator", members=["user:alice@example.com"])
        self.client.set_iam_policy(request={"resource": address, "policy": edited})

    def bind_decoy_role(self, name: str) -> list[str]:
        """Someone else binds our identity ``name`` (and alice) to a role with its naming."""
        roles = self.decoy_roles(name)
        self.edit_project_policy(add=[(f"projects/{GCP_PROJECT}/roles/{roles[0]}",
                                       [f"serviceAccount:{self.identity(name)}", "user:alice@example.com"])])
        return roles

    def foreign(self, name: str) -> dict[str, Any]:
        """Every grant to our identity ``name`` that is not ours, and who else holds it."""
        email = self.identity(name)
        ours = {f"projects/{GCP_PROJECT}/roles/{rid}" for rid, r in
                ((r.name.rsplit("/", 1)[1], r) for r in self.naming_roles(name))
                if gcp_render.role_marker(r.description) is not None}
        policy = self.iam.service_account_policy(email)
        return {
            "project": sorted((b.role, sorted(b.members), b.condition.expression)
                              for b in self.rm.policy(GCP_PROJECT).bindings
                              if f"serviceAccount:{email}" in b.members and b.role not in ours),
            "account": sorted((b.role, sorted(b.members)) for b in policy.bindings
                              if b.role != gcp_render.WORKLOAD_IDENTITY_USER),
        }

    def our_bindings(self, name: str) -> list[str]:
        member = f"serviceAccount:{self.identity(name)}"
        base = f"projects/{GCP_PROJECT}/roles/{self.role_base(name)}"
        return [b.role for b in self.rm.policy(GCP_PROJECT).bindings
                if member in b.members and b.role.startswith(base)]

    def drift(self, name: str) -> None:
        member = f"serviceAccount:{self.identity(name)}"
        self.edit_project_policy(drop=lambda b, m: m == member)

    def drifted(self, name: str) -> bool:
        return not self.our_bindings(name)

    def keys(self, name: str) -> set[str]:
        return {k.key_id for k in self.iam.keys(self.identity(name)) if k.user_managed}

    def exists(self, name: str) -> bool:
        return any(a.email == self.identity(name) for a in self.iam.service_accounts(GCP_PROJECT))

    def secrets(self) -> list[str]:
        return [s.name for s in self.sm.client().list_secrets(request={"parent": f"projects/{GCP_PROJECT}"})]


class Azure(Cloud):
    provider, target, owner = "azure", SUB, "team-payments"
    conflict = "does not carry the workload-ids tags, so it will not be modified"
    unseen_by_fleet: tuple[str, ...] = ()
    # A managed identity has no switch: quarantine removes every assignment of it, someone
    # else's too (journalled), and release gives exactly those back.
    quarantine_withholds = True

    def __init__(self) -> None:
        from azure.keyvault.secrets import SecretClient
        from azure.mgmt.authorization import AuthorizationManagementClient
        from azure.mgmt.msi import ManagedServiceIdentityClient

        from workload_ids.providers.azure.graph import GraphClient
        from workload_ids.sandbox.azure.arm import StaticTokenCredential
        from workload_ids.sandbox.azure.local import start_local_azure
        self.local = start_local_azure()
        kwargs = self.local.arm.client_kwargs()
        self.msi = ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **kwargs)
        self.authz = AuthorizationManagementClient(StaticTokenCredential(), SUB, **kwargs)
        self.graph = GraphClient(StaticTokenCredential(), **self.local.graph.client_kwargs())
        self.vault = SecretClient(self.local.vault.url, StaticTokenCredential(),
                                  **self.local.vault.client_kwargs())
        self.config = self.local.config_block()

    def stop(self) -> None:
        self.local.stop()

    def manifest(self, name: str, key: bool = False) -> str:
        return azure_workload(name=name, mode="key" if key else "keyless")

    def identity(self, name: str) -> str:
        return f"wid-prod-{name}"

    def app(self, name: str) -> dict[str, Any]:
        [app] = self.graph.find_applications(f"displayName eq '{self.identity(name)}'")
        return app

    def assignments(self, principal: str) -> list[Any]:
        return list(self.authz.role_assignments.list_for_subscription(filter=f"principalId eq '{principal}'"))

    def principal(self, name: str, key: bool) -> str:
        if key:
            return str(self.graph.get_service_principal_by_app_id(self.app(name)["appId"])["id"])
        return str(self.msi.user_assigned_identities.get(RG, self.identity(name)).principal_id)

    def create_role(self, role_name: str, guid: str | None = None, scope: str = CONTAINER,
                    description: str = "someone else's role") -> str:
        guid = guid or str(uuid.uuid4())
        self.authz.role_definitions.create_or_update(scope, guid, {
            "role_name": role_name, "description": description, "role_type": "CustomRole",
            "permissions": [{"actions": ["Microsoft.Storage/storageAccounts/read"]}],
            "assignable_scopes": [scope]})
        return guid

    def assign(self, scope: str, role: str, principal: str) -> None:
        if not role.startswith("/"):
            role = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}"
        self.authz.role_assignments.create(scope, str(uuid.uuid4()), {
            "role_definition_id": role, "principal_id": principal, "principal_type": "ServicePrincipal"})

    def create(self, name: str, key: bool) -> None:
        ident = self.identity(name)
        if key:
            app = self.graph.create_application(ident, ["team=someone-else"])
            self.graph.add_password(app["id"], "theirs", datetime.now(UTC) + timedelta(days=900))
            self.graph.create_service_principal(app["appId"], ["team=someone-else"])
        else:
            self.msi.user_assigned_identities.create_or_update(RG, ident, {
                "location": "westeurope", "tags": {"team": "someone-else"}})
            self.msi.federated_identity_credentials.create_or_update(RG, ident, "theirs", {
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": "repo:other/repo:ref:refs/heads/main", "audiences": ["api://AzureADTokenExchange"]})
        principal = self.principal(name, key)
        # A role definition with this workload's role naming, assigned to the decoy.
        guid = str(uuid.uuid4())
        self.create_role(f"workload-ids prod/{name} {guid[:8]}", guid)
        self.assign(CONTAINER, guid, principal)
        self.assign(f"/subscriptions/{SUB}/resourceGroups/{RG}", READER, principal)

    def forge(self, name: str, key: bool) -> None:
        from workload_ids.providers.azure.applications import tag_list
        tags = forged_tags(name, self.owner)
        if key:
            self.graph.update_application(self.app(name)["id"], {
                "tags": tag_list({**tags, azure_render.SUBSCRIPTION_TAG: SUB.lower()})})
        else:
            self.msi.user_assigned_identities.create_or_update(RG, self.identity(name), {
                "location": "westeurope", "tags": tags})

    def snapshot(self, name: str, key: bool) -> dict[str, Any]:
        ident = self.identity(name)
        state: dict[str, Any] = {}
        if key:
            apps = self.graph.find_applications(f"displayName eq '{ident}'")
            state["apps"] = apps  # tags, notes, password credentials (ids, dates)
            state["principals"] = [self.graph.get_service_principal_by_app_id(a["appId"]) for a in apps]
            principal = str(state["principals"][0]["id"])
        else:
            found = self.msi.user_assigned_identities.get(RG, ident)
            state["identity"] = found.as_dict()
            state["federated"] = [c.as_dict() for c in
                                  self.msi.federated_identity_credentials.list(RG, ident)]
            principal = str(found.principal_id)
        state["assignments"] = sorted((a.name, a.scope, a.role_definition_id, a.principal_type, a.description)
                                      for a in self.assignments(principal))
        state["roles"] = sorted(
            (r.name, r.role_name, r.description, json.dumps([p.as_dict() for p in r.permissions]),
             r.assignable_scopes)
            for r in self.authz.role_definitions.list(f"/subscriptions/{SUB}", filter="type eq 'CustomRole'")
            if r.role_name.startswith(f"workload-ids prod/{name} "))
        return state

    # -- (c): role definitions with our naming, assignments by someone else --

    def desired_roles(self, path: Path) -> dict[str, Any]:
        return dict(azure_render.desired_objects(compiled(path), "wid")["roles"])

    def squat_role(self, guid: str, doc: dict[str, Any], same_id: bool = True) -> str:
        """Someone else's role definition with exactly the name one of ours would have, and
        its id too unless ``same_id`` is false."""
        return self.create_role(doc["roleName"], guid if same_id else None, doc["assignableScopes"][0])

    def role_state(self, guid: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError
        try:
            r = self.authz.role_definitions.get(f"/subscriptions/{SUB}", guid)
        except ResourceNotFoundError:
            return None
        return (r.name, r.role_name, r.description, json.dumps([p.as_dict() for p in r.permissions]),
                r.assignable_scopes)

    def decoy_roles(self, name: str) -> list[str]:
        """Role definitions with workload ``name``'s naming: one without a marker, one with a
        forged one."""
        unmarked, forged = str(uuid.uuid4()), str(uuid.uuid4())
        self.create_role(f"workload-ids prod/{name} {unmarked[:8]}", unmarked)
        self.create_role(f"workload-ids prod/{name} {forged[:8]}", forged,
                         description=f"workload-ids:v1 workload={name} owner={self.owner} environment=prod")
        return [unmarked, forged]

    def naming_roles(self, name: str) -> list[Any]:
        return [self.role_state(str(r.name)) for r in self.authz.role_definitions.list(
            f"/subscriptions/{SUB}", filter="type eq 'CustomRole'")
            if r.role_name.startswith(f"workload-ids prod/{name} ")]

    def live_roles(self, name: str) -> set[str]:
        return {str(r[0]) for r in self.naming_roles(name)}

    def mover(self, name: str) -> str:
        """Workload ``name`` with less access and another federation subject."""
        return azure_workload(name=name, access=f"    - template: object-storage.read\n"
                                                f"      resources: [{CONTAINER}]\n"
                              ).replace("environment: production", "environment: staging")

    def grant_foreign(self, name: str) -> None:
        """Someone else assigns our identity ``name`` Reader and a custom role of their own."""
        principal = self.principal(name, False)
        self.assign(f"/subscriptions/{SUB}/resourceGroups/{RG}", READER, principal)
        self.assign(CONTAINER, self.create_role(f"legacy reader for {name}"), principal)

    def bind_decoy_role(self, name: str) -> list[str]:
        """Someone else assigns our identity ``name`` a role definition with its naming."""
        roles = self.decoy_roles(name)
        self.assign(CONTAINER, roles[0], self.principal(name, False))
        return roles

    def foreign(self, name: str) -> dict[str, Any]:
        principal = self.principal(name, False)
        return {"assignments": sorted((a.name, a.scope, a.role_definition_id)
                                      for a in self.assignments(principal) if not made_by_us(a))}

    def our_assignments(self, name: str) -> set[str]:
        """Our assignments to our identity ``name`` (workload-ids describes them)."""
        principal = self.principal(name, False)
        return {str(a.name) for a in self.assignments(principal) if made_by_us(a)}

    def drift(self, name: str) -> None:
        principal = self.principal(name, False)
        [mine, *_] = [a for a in self.assignments(principal) if made_by_us(a)]
        self.authz.role_assignments.delete(mine.scope, mine.name)

    def drifted(self, name: str) -> bool:
        return len(self.our_assignments(name)) < 2

    def keys(self, name: str) -> set[str]:
        return {str(c["keyId"]) for c in self.app(name)["passwordCredentials"]}

    def exists(self, name: str) -> bool:
        return any(i.name == self.identity(name)
                   for i in self.msi.user_assigned_identities.list_by_subscription())

    def secrets(self) -> list[str]:
        return [str(p.name) for p in self.vault.list_properties_of_secrets()]


def made_by_us(assignment: Any) -> bool:
    """An Azure role assignment workload-ids made (it describes each one)."""
    return str(assignment.description or "").startswith("workload-ids ")


@pytest.fixture(params=["aws", "gcp", "azure"])
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    made: Cloud
    if request.param == "aws":
        made = Aws(request.getfixturevalue("aws"))
    elif request.param == "gcp":
        made = Gcp()
    else:
        made = Azure()
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(made.config + SETTINGS)
    try:
        yield made
    finally:
        made.stop()


# --- (a) and (b): decoy identities, every command --------------------------------------------

DECOYS = {"decoy-a": (False, False), "decoy-b": (False, True),  # name: (key mode, forged marker)
          "decoy-ka": (True, False), "decoy-kb": (True, True)}


def test_no_command_modifies_a_decoy_and_ours_are_handled_normally(
        cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own"  # ours: kept, retired (its manifest is removed later), two key-mode
    collide = tmp_path / "collide"  # manifests whose names collide with the decoys
    fleet = tmp_path / "fleet"  # both
    for folder in (own, collide, fleet):
        folder.mkdir()
    for name, key in (("svc-keep", False), ("svc-gone", False), ("vendor-own", True), ("vendor-two", True)):
        for folder in (own, fleet):
            (folder / f"{name}.yaml").write_text(cloud.manifest(name, key))
    for name, (key, _) in DECOYS.items():
        for folder in (collide, fleet):
            (folder / f"{name}.yaml").write_text(cloud.manifest(name, key))
    applied = run_cli("apply", "--auto-approve", str(own))
    assert applied.code == 0, applied.err + applied.out
    issued = {n: cloud.keys(n) for n in ("vendor-own", "vendor-two")}
    assert all(len(k) == 1 for k in issued.values()), issued

    for name, (key, forged) in DECOYS.items():
        cloud.decoy(name, key, forged)
    before = {name: cloud.snapshot(name, key) for name, (key, _) in DECOYS.items()}

    def unchanged(step: str) -> None:
        for name, (key, _) in DECOYS.items():
            assert cloud.snapshot(name, key) == before[name], f"{step} changed decoy {name}"
        assert not [s for s in cloud.secrets() if "decoy" in s], f"{step} made a secret for a decoy"

    def refused(result: Any, names: list[str], step: str) -> None:
        assert result.code == 1, f"{step}: {result.code}\n{result.out}\n{result.err}"
        assert result.err.startswith("error: ") and "what to do:" in result.err, result.err
        for name in names:
            assert f"prod/{name}: " in result.err and cloud.identity(name) in result.err, (step, result.err)
        assert result.err.count(cloud.conflict) == len(names), result.err

    # plan: per service (one read each), then fleets (one batched read of the account)
    for name in DECOYS:
        refused(run_cli("plan", str(collide / f"{name}.yaml")), [name], f"plan {name}")
    seen = [n for n in DECOYS if n not in cloud.unseen_by_fleet]
    refused(run_cli("plan", str(collide)), seen, "fleet plan")
    refused(run_cli("plan", str(fleet), "--detailed-exitcode"), seen, "fleet plan")
    unchanged("plan")

    # apply: refused for the colliding workloads; ours converge as usual
    cloud.drift("svc-keep")
    for name in DECOYS:
        refused(run_cli("apply", "--auto-approve", str(collide / f"{name}.yaml")), [name], f"apply {name}")
    refused(run_cli("apply", "--auto-approve", str(fleet)), seen, "fleet apply")
    for name in DECOYS:  # a fleet of one: what the batched read misses, apply finds and refuses
        alone = tmp_path / f"only-{name}"
        alone.mkdir()
        (alone / "w.yaml").write_text(cloud.manifest(name, DECOYS[name][0]))
        result = run_cli("apply", "--auto-approve", str(alone))
        if name in cloud.unseen_by_fleet:
            assert result.code == 1 and f"error: prod/{name}: " in result.err, result.out + result.err
            assert cloud.identity(name) in result.err and "will not adopt it" in result.err, result.err
            assert "Apply FAILED: 0 workload(s) changed, 1 failed" in result.out, result.out
        else:
            refused(result, [name], f"fleet apply of {name}")
    assert cloud.drifted("svc-keep"), "a refused apply changed nothing, ours included"
    assert run_cli("plan", str(own), "--detailed-exitcode").code == 2
    converged = run_cli("apply", "--auto-approve", str(own))
    assert converged.code == 0 and "1 workload(s) changed" in converged.out, converged.out + converged.err
    assert not cloud.drifted("svc-keep")
    assert run_cli("plan", str(own), "--detailed-exitcode").code == 0
    unchanged("apply")

    # cleanup, far in the future: the decoys are unmanaged; ours retire as usual
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", FAR)
    (own / "svc-gone.yaml").unlink()
    (fleet / "svc-gone.yaml").unlink()
    dry = run_cli("cleanup", str(fleet), "--output", "json")
    assert dry.code == 0, dry.err
    found = {i["identity"]: (i["status"], i["action"]) for i in json.loads(dry.out)["identities"]}
    assert found[cloud.identity("svc-gone")] == ("no-manifest", "quarantine")
    assert found[cloud.identity("svc-keep")][1] is None
    decoys_seen = {k: v for k, v in found.items() if "decoy" in k}
    assert decoys_seen and set(decoys_seen.values()) == {("unmanaged", None)}, found
    unchanged("cleanup dry run")
    for when, action in ((FAR, "quarantine"), (AFTER_GRACE, "delete")):
        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", when)
        for folder in (own, fleet):  # the decoys undeclared, then declared
            result = run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit",
                             "--output", "json")
            assert result.code == 0, result.err + result.out
            done = [(r["identity"], r["action"], r["ok"]) for r in json.loads(result.out)["results"]]
            assert done == ([(cloud.identity("svc-gone"), action, True)] if folder == own else []), done
            unchanged(f"cleanup --apply ({action})")
    assert not cloud.exists("svc-gone")

    # restore: a decoy's name has no bundle; a deleted identity of ours whose name a decoy
    # has taken since is not restored over it, marker forged or not
    missing = run_cli("restore", cloud.identity("decoy-a"))
    assert missing.code == 1 and f"no restore bundle for {cloud.identity('decoy-a')}" in missing.err
    cloud.create("svc-gone", False)
    for forge in (False, True):
        if forge:
            cloud.forge("svc-gone", False)
        taken = cloud.snapshot("svc-gone", False)
        result = run_cli("restore", cloud.identity("svc-gone"))
        assert result.code == 1, result.out + result.err
        assert cloud.identity("svc-gone") in result.err, result.err
        assert "restore under that name is impossible" in result.err, result.err
        assert cloud.snapshot("svc-gone", False) == taken, "restore changed the decoy that took the name"
    unchanged("restore")

    # rotate and recover: every key of ours is due; the decoys are refused
    rotated = run_cli("rotate", str(fleet), "--output", "json")
    assert rotated.code == 1, rotated.err
    reports = {w["workload"]: w for w in json.loads(rotated.out)["workloads"]}
    for name in ("vendor-own", "vendor-two"):
        assert reports[f"prod/{name}"]["error"] is None, reports[f"prod/{name}"]
        assert cloud.keys(name) > issued[name], f"rotate issued no new key for our {name}"
    for name in ("decoy-ka", "decoy-kb"):
        # A fleet rotation (more than three key-mode workloads) reads the account once: what
        # that read does not list (an Azure application without our tags) is reported missing.
        report = reports[f"prod/{name}"]
        assert report["actions"] == [] and report["keys"] == [], report
        assert ("does not exist" if name in cloud.unseen_by_fleet else NEVER) in report["error"], report
    unchanged("rotate (fleet)")
    for args in (["rotate", str(collide / "decoy-ka.yaml")], ["rotate", str(collide / "decoy-kb.yaml")],
                 ["rotate", str(fleet), "--now", "decoy-ka"], ["rotate", str(fleet), "--now", "decoy-kb"],
                 ["recover", str(collide)]):
        result = run_cli(*args, "--output", "json")
        assert result.code == 1, (args, result.out, result.err)
        doc = json.loads(result.out)
        assert doc["workloads"] and doc["summary"]["changed"] == 0, doc
        for report in doc["workloads"]:
            assert report["refused"] and NEVER in report["error"] and not report["actions"], (args, report)
        unchanged(" ".join(args[:1] + args[2:]))
    recovered = run_cli("recover", str(fleet), "--output", "json")
    assert recovered.code == 1 and json.loads(recovered.out)["summary"]["changed"] == 0
    unchanged("recover (fleet)")

    # inventory lists ours and none of the decoys, by manifests or by account
    for args in ([str(fleet)], ["--provider", cloud.provider, "--target", cloud.target]):
        listed = run_cli("inventory", *args, "--output", "json")
        assert listed.code == 0, listed.err
        rows = {r["identity"] for r in json.loads(listed.out)["identities"]}
        assert rows == {cloud.identity(n) for n in ("svc-keep", "vendor-own", "vendor-two")}, rows
        unchanged("inventory")


# --- (c): roles with our naming, grants someone else made to ours (GCP, Azure) ---------------


@pytest.mark.parametrize(("cloud", "same_id"), [
    ("gcp", True),
    ("azure", True),
    ("azure", False),  # the role name only (unique in a tenant); on GCP the name is the id
], indirect=["cloud"])
def test_apply_never_takes_over_a_role_holding_our_exact_naming(cloud: Cloud, same_id: bool,
                                                                 tmp_path: Path) -> None:
    """Someone else's custom role has exactly the id and name a new workload's role would
    get (on Azure: or just the name): apply refuses that workload and leaves the role alone,
    and applies the other workload of the same run."""
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("svc-new", "svc-other"):
        (folder / f"{name}.yaml").write_text(cloud.manifest(name))
    rid, doc = next(iter(cloud.desired_roles(folder / "svc-new.yaml").items()))
    taken = cloud.squat_role(rid, doc, same_id)
    before = cloud.role_state(taken)
    result = run_cli("apply", "--auto-approve", str(folder))
    assert cloud.role_state(taken) == before, "apply took over someone else's role"
    assert result.code == 1, result.out + result.err
    assert "error: prod/svc-new: " in result.err, result.err
    assert (rid if same_id else doc["roleName"]) in result.err, result.err
    assert "1 workload(s) changed, 1 failed, 2 in all" in result.out, result.out
    assert cloud.exists("svc-other")
    assert run_cli("plan", str(folder / "svc-other.yaml"), "--detailed-exitcode").code == 0
    again = run_cli("apply", "--auto-approve", str(folder / "svc-new.yaml"))
    assert again.code == 1 and cloud.role_state(taken) == before, again.out + again.err


@pytest.mark.parametrize("cloud", ["gcp", "azure"], indirect=True)
def test_roles_in_our_naming_without_our_marker_outlive_plan_cleanup_and_restore(
        cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Roles named like a workload's (no marker, or a forged one) are not drift to plan,
    not deleted with our identity after the grace period, and not in its restore bundle."""
    own = tmp_path / "own"
    own.mkdir()
    for name in ("svc-keep", "svc-gone"):
        (own / f"{name}.yaml").write_text(cloud.manifest(name))
    assert run_cli("apply", "--auto-approve", str(own)).code == 0
    ours = cloud.live_roles("svc-gone")
    assert len(ours) == 2, ours
    decoys = cloud.decoy_roles("svc-gone") + cloud.decoy_roles("svc-keep")
    before = {rid: cloud.role_state(rid) for rid in decoys}

    def unchanged(step: str) -> None:
        assert {rid: cloud.role_state(rid) for rid in decoys} == before, f"{step} changed a decoy role"

    for args in (["plan", str(own), "--detailed-exitcode"], ["plan", str(own / "svc-keep.yaml"),
                                                            "--detailed-exitcode"],
                 ["apply", "--auto-approve", str(own)]):
        result = run_cli(*args)
        assert result.code == 0, (args, result.out, result.err)
        unchanged(args[0])
    (own / "svc-gone.yaml").unlink()
    for when, action in ((FAR, "quarantine"), (AFTER_GRACE, "delete")):
        monkeypatch.setenv("WORKLOAD_IDS_CLOCK", when)
        result = run_cli("cleanup", str(own), "--apply", "--delete-with-local-audit", "--output", "json")
        assert result.code == 0, result.out + result.err
        assert [(r["action"], r["ok"]) for r in json.loads(result.out)["results"]] == [(action, True)]
        unchanged(f"cleanup --apply ({action})")
    assert not cloud.exists("svc-gone")
    assert cloud.live_roles("svc-gone") == set(decoys[:2]), "our roles go with our identity, and only ours"
    restored = run_cli("restore", cloud.identity("svc-gone"))
    assert restored.code == 0, restored.out + restored.err
    assert cloud.live_roles("svc-gone") == ours | set(decoys[:2])
    unchanged("restore")


@pytest.mark.parametrize("cloud", ["gcp", "azure"], indirect=True)
def test_grants_someone_else_made_to_our_identities_survive_every_command(
        cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Predefined roles, someone's own custom role, a person allowed to act as the account:
    plan reports them, and apply (a mover) and release leave them as they are; quarantine
    too, or (Azure, where an identity cannot be disabled) withholds them until release."""
    own = tmp_path / "own"
    own.mkdir()
    for name in ("svc-keep", "svc-gone"):
        (own / f"{name}.yaml").write_text(cloud.manifest(name))
    assert run_cli("apply", "--auto-approve", str(own)).code == 0
    for name in ("svc-keep", "svc-gone"):
        cloud.grant_foreign(name)
    before = {name: cloud.foreign(name) for name in ("svc-keep", "svc-gone")}
    assert all(len(v) for state in before.values() for v in state.values()), before

    def unchanged(step: str) -> None:
        want = {**before, "svc-gone": {"assignments": []}} if step.endswith("(quarantine)") and \
            cloud.quarantine_withholds else before
        assert {name: cloud.foreign(name) for name in before} == want, f"{step} changed a foreign grant"

    plan = run_cli("plan", str(own), "--output", "json", "--detailed-exitcode")
    assert plan.code == 0, plan.out + plan.err
    assert {g["identity"] for g in json.loads(plan.out)["foreignGrants"]} == \
        {cloud.identity("svc-keep"), cloud.identity("svc-gone")}
    (own / "svc-keep.yaml").write_text(cloud.mover("svc-keep"))
    moved = run_cli("apply", "--auto-approve", str(own))
    unchanged("apply (a mover)")
    assert moved.code == 0 and "1 workload(s) changed" in moved.out, moved.out + moved.err
    assert run_cli("plan", str(own), "--detailed-exitcode").code == 0
    gone = (own / "svc-gone.yaml").read_text()
    (own / "svc-gone.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", FAR)
    for action in ("quarantine", "release"):
        result = run_cli("cleanup", str(own), "--apply", "--output", "json")
        assert result.code == 0, result.out + result.err
        assert [(r["identity"], r["action"], r["ok"]) for r in json.loads(result.out)["results"]] == \
            [(cloud.identity("svc-gone"), action, True)]
        unchanged(f"cleanup --apply ({action})")
        (own / "svc-gone.yaml").write_text(gone)
    assert run_cli("plan", str(own), "--detailed-exitcode").code == 0


@pytest.mark.parametrize("cloud", ["gcp", "azure"], indirect=True)
def test_a_grant_of_a_role_in_our_naming_to_our_identity_is_left_alone(
        cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone else grants our identity their own role named like ours (no marker): it is
    not ours, so plan, apply (a mover) and cleanup leave both the role and the grant alone
    (Azure's quarantine withholds the grant until release, like any other)."""
    own = tmp_path / "own"
    own.mkdir()
    for name in ("svc-keep", "svc-gone"):
        (own / f"{name}.yaml").write_text(cloud.manifest(name))
    assert run_cli("apply", "--auto-approve", str(own)).code == 0
    roles = cloud.bind_decoy_role("svc-keep") + cloud.bind_decoy_role("svc-gone")
    before = ({n: cloud.foreign(n) for n in ("svc-keep", "svc-gone")},
              {rid: cloud.role_state(rid) for rid in roles})

    def unchanged(step: str) -> None:
        after = ({n: cloud.foreign(n) for n in ("svc-keep", "svc-gone")},
                 {rid: cloud.role_state(rid) for rid in roles})
        want = ({**before[0], "svc-gone": {"assignments": []}}, before[1]) \
            if step.endswith("(quarantine)") and cloud.quarantine_withholds else before
        assert after == want, f"{step} changed a grant someone else made to our identity, or their role"

    (own / "svc-keep.yaml").write_text(cloud.mover("svc-keep"))
    moved = run_cli("apply", "--auto-approve", str(own))
    unchanged("apply (a mover)")
    assert moved.code == 0 and "1 workload(s) changed" in moved.out, moved.out + moved.err
    assert run_cli("plan", str(own), "--detailed-exitcode").code == 0
    gone = (own / "svc-gone.yaml").read_text()
    (own / "svc-gone.yaml").unlink()
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", FAR)
    for action in ("quarantine", "release"):
        result = run_cli("cleanup", str(own), "--apply", "--output", "json")
        assert [(r["action"], r["ok"]) for r in json.loads(result.out)["results"]] == [(action, True)]
        unchanged(f"cleanup --apply ({action})")
        (own / "svc-gone.yaml").write_text(gone)
