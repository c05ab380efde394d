"""AWS: the tool's own IAM roles and managed policies, and the workload boundary. Pure:
no boto3 here (``converge`` does the calls).

Every action listed is one the tool calls (tests/security/test_bootstrap_least_privilege.py
records each command's calls against moto and checks both ways). Where IAM can narrow an
action, it is narrowed:

- to the role path and name prefix (``role/workload-ids/wid_*``), never ``role/*``;
- writes that could widen an identity (create, put or attach a policy, set a boundary)
  only while the identity carries the workload boundary (``iam:PermissionsBoundary``),
  so a deployer can never make an identity more powerful than the boundary allows;
- changes to an existing identity only when it carries our ``managed-by`` tag, and
  creations and tag writes only when the request sets it;
- no one may remove a boundary (``Delete*PermissionsBoundary`` denied outright), and the
  boundary policy itself cannot be edited or deleted by these identities;
- no ``iam:PassRole`` and no ``AttachRolePolicy`` at all: the tool never needs them, and
  restore therefore cannot attach ``AdministratorAccess`` or a group;
- secrets only under the ``credentials.secretName`` prefix; lock secrets (``NAME.lock``,
  which Secrets Manager suffixes ``-XXXXXX``) are the only ones that may be deleted;
- the marker signing key (``workload-ids/signing-key``) may be read by every tool identity
  and written by none of them (its resource policy also denies writes to all but the
  administrator who ran bootstrap), so a tool identity cannot replace the key with one
  it knows and forge markers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..markers import AWS_KEY_SECRET
from ..model import MANAGED_BY, TAG_MANAGED_BY
from . import IDENTITIES, audit_sink

MANAGED_POLICY_MAX = 6_144  # characters of one managed policy document, whitespace excluded
BOOTSTRAP_TAG = "workload-ids:bootstrap"

COMMANDS = {
    "apply": "plan, apply (a key-mode workload's first key too)",
    "rotate": "rotate, recover, lint --cloud, inventory",
    "cleanup": "cleanup (dry run and --apply), inventory",
    "restore": "restore (a person, with MFA; add the rotate identity for --issue-key)",
    "discover": "discover, adopt without --apply (read-only; adopt --apply is an administrator's)",
}

# Actions whose resource IAM cannot name: AWS lists no resource type for them.
UNSCOPABLE = ("iam:GenerateCredentialReport", "iam:GetAccountAuthorizationDetails", "iam:GetCredentialReport",
              "iam:ListOpenIDConnectProviders", "iam:ListRoles", "organizations:ListAccounts",
              "secretsmanager:ListSecrets")


def tool_path(config: Config) -> str:
    """See :meth:`Config.aws_tool_path`."""
    return config.aws_tool_path()


def tool_name(config: Config, identity: str) -> str:
    """See :meth:`Config.aws_tool_name`."""
    return config.aws_tool_name(identity)


def secret_prefix(config: Config) -> str:
    """``workload-ids/`` from ``workload-ids/{environment}/{name}``: the fixed part every
    key-mode secret name starts with."""
    return config.credentials.secretName.split("{", 1)[0]


@dataclass(frozen=True, slots=True)
class ToolIdentity:
    """One of the tool's identities: a role with one managed policy."""

    identity: str
    role_name: str
    role_arn: str
    policy_name: str
    policy_arn: str
    path: str
    policy: dict[str, Any]
    trust: dict[str, Any]

    @property
    def size(self) -> int:
        """Characters as IAM counts them (no whitespace), to check against IAM's policy limit."""
        return len(compact(self.policy))

    def as_json(self) -> dict[str, Any]:
        """The tool identity as ``bootstrap --format json`` prints it."""
        return {"identity": self.identity, "commands": COMMANDS[self.identity],
                "role": self.role_arn, "policy": self.policy_arn, "path": self.path,
                "policySize": self.size, "policyDocument": self.policy, "trust": self.trust}


@dataclass(frozen=True, slots=True)
class Boundary:
    """A managed policy that is no one identity's: the permissions boundary every workload
    identity gets, or the audit trail's policy every tool role gets."""

    arn: str
    name: str
    path: str
    document: dict[str, Any]

    @property
    def size(self) -> int:
        """Characters as IAM counts them (no whitespace), to check against IAM's policy limit."""
        return len(compact(self.document))

    def as_json(self) -> dict[str, Any]:
        """The boundary as ``bootstrap --format json`` prints it."""
        return {"policy": self.arn, "path": self.path, "policySize": self.size,
                "policyDocument": self.document}


@dataclass(frozen=True, slots=True)
class AwsBootstrap:
    """Everything bootstrap creates in one account."""

    account: str
    boundary: Boundary
    identities: tuple[ToolIdentity, ...]
    # With audit.sink: the sink, the audit key bootstrap makes here (or a note saying
    # where the sink and key are when not here), and the policy every tool role gets.
    audit: dict[str, Any] | None = None
    audit_policy: Boundary | None = None

    def as_json(self) -> dict[str, Any]:
        """The account's bootstrap plan as ``bootstrap --format json`` prints it."""
        out = {"provider": "aws", "target": self.account, "boundary": self.boundary.as_json(),
               "identities": [i.as_json() for i in self.identities]}
        if self.audit is not None:
            out["auditSink"] = self.audit
        return out


def compact(doc: dict[str, Any]) -> str:
    """The form IAM counts against its size limits (whitespace excluded)."""
    return json.dumps(doc, separators=(",", ":"))


def _statement(sid: str, actions: list[str], resources: list[str] | str,
               condition: dict[str, Any] | None = None, effect: str = "Allow") -> dict[str, Any]:
    st: dict[str, Any] = {"Sid": sid, "Effect": effect,
                          "Action": sorted(actions) if len(actions) > 1 else actions[0],
                          "Resource": resources if isinstance(resources, str) or len(resources) > 1
                          else resources[0]}
    if condition:
        st["Condition"] = condition
    return st


class _Arns:
    """The ARN patterns of one account under one config."""

    def __init__(self, config: Config, account: str) -> None:
        path, prefix = config.aws.rolePath, config.aws.namePrefix
        names = f"{prefix}_*" if prefix else "*"
        self.role = f"arn:aws:iam::{account}:role{path}{names}"
        self.user = f"arn:aws:iam::{account}:user{path}{names}"
        # Access advisor reports on groups and policies too, and linters (parliament, from
        # the Service Authorization Reference) want every such type named: ours, which the
        # tool never makes, so the statement stays on our path.
        self.our_groups_and_policies = [f"arn:aws:iam::{account}:group{path}{names}",
                                        f"arn:aws:iam::{account}:policy{path}{names}"]
        self.boundary = config.aws_boundary().replace("{account}", account)
        secrets = f"arn:aws:secretsmanager:*:{account}:secret:{secret_prefix(config)}"
        self.secrets = f"{secrets}*"
        self.locks = f"{secrets}*.lock-??????"
        self.groups = f"arn:aws:iam::{account}:group/*"
        # discover and adopt read every role of the account, and the managed policies
        # attached to them: the account's own and AWS's (arn:aws:iam::aws:policy/..., whose
        # "aws" account linters refuse in an ARN pattern; IAM reads no other account's).
        self.any_role = f"arn:aws:iam::{account}:role/*"
        self.any_policy = "arn:aws:iam::*:policy/*"
        # How discover reaches other accounts: the config's roleArn targets and the role an
        # organization entry names in every member account.
        self.target_roles = sorted({t.roleArn for t in config.data.targets.aws
                                    if t.roleArn and t.account != account})
        self.organization_role = next((f"arn:aws:iam::*:role/{t.organization.role}"
                                       for t in config.data.targets.aws
                                       if t.organization is not None and not t.retired), None)
        self.profiles = f"arn:aws:iam::{account}:instance-profile/*"
        self.mfa = f"arn:aws:iam::{account}:mfa/*"
        # Secrets Manager suffixes every secret's ARN with '-' and six random characters.
        self.signing_key = f"arn:aws:secretsmanager:*:{account}:secret:{AWS_KEY_SECRET}-??????"
        self.sink = audit_sink.of(config)
        self.audit_key = audit_sink.aws_key_arn(self.sink, account) if self.sink else None


def _ours() -> dict[str, Any]:
    return {"StringEquals": {f"aws:ResourceTag/{TAG_MANAGED_BY}": MANAGED_BY}}


def _requested() -> dict[str, Any]:
    return {"StringEquals": {f"aws:RequestTag/{TAG_MANAGED_BY}": MANAGED_BY}}


def _bounded(arns: _Arns, *, requested: bool = False) -> dict[str, Any]:
    # iam:PermissionsBoundary is an ARN-typed key: ArnEquals is its operator (StringEquals
    # works too, but linters rightly call the mismatch out).
    condition: dict[str, Any] = {"ArnEquals": {"iam:PermissionsBoundary": arns.boundary}}
    if requested:
        condition["StringEquals"] = {f"aws:RequestTag/{TAG_MANAGED_BY}": MANAGED_BY}
    return condition


# Every write Secrets Manager has on a secret: none is the tool's to make on its signing key.
SIGNING_KEY_WRITES = [
    "secretsmanager:CancelRotateSecret", "secretsmanager:CreateSecret", "secretsmanager:DeleteResourcePolicy",
    "secretsmanager:DeleteSecret", "secretsmanager:PutResourcePolicy", "secretsmanager:PutSecretValue",
    "secretsmanager:RemoveRegionsFromReplication", "secretsmanager:ReplicateSecretToRegions",
    "secretsmanager:RestoreSecret", "secretsmanager:RotateSecret", "secretsmanager:TagResource",
    "secretsmanager:UntagResource", "secretsmanager:UpdateSecret", "secretsmanager:UpdateSecretVersionStage",
]


def _read_signing_key(arns: _Arns) -> dict[str, Any]:
    """Every command reads the marker signing key once per account and run."""
    return _statement("ReadMarkerSigningKey", ["secretsmanager:GetSecretValue"], arns.signing_key)


def audit_policy(arns: _Arns) -> dict[str, Any] | None:
    """With ``audit.sink``: one managed policy attached to every tool role (every command
    that changes anything appends to the trail, and cleanup and restore read it), so the
    identity policies keep their room. On S3, what the sink calls
    (workload_ids/audit/s3.py), on the bucket and under the prefix only, and a Deny of
    every way to remove a record or loosen the lock that keeps it; the audit signing key
    read and never written (the key-mode statements' secret prefix may cover its name).
    None when neither the sink nor its key is on AWS in this account."""
    sink = arns.sink
    statements: list[dict[str, Any]] = []
    if sink is not None and sink.kind == "s3":
        bucket, objects = audit_sink.s3_resources(sink)
        statements += [
            _statement("AuditSinkCheckLock", ["s3:GetBucketObjectLockConfiguration"], bucket),
            _statement("AuditSinkListRecords", ["s3:ListBucketVersions"], bucket,
                       audit_sink.s3_list_condition(sink)),
            _statement("AuditSinkReadAndAppend", audit_sink.S3_OBJECT_ACTIONS, objects),
            _statement("DenyAuditTrailRemoval", audit_sink.S3_DENIED, [bucket, f"{bucket}/*"], effect="Deny"),
        ]
    if arns.audit_key:
        statements += [
            _statement("ReadAuditSigningKey", ["secretsmanager:GetSecretValue"], arns.audit_key),
            _statement("DenyAuditSigningKeyWrites", SIGNING_KEY_WRITES, arns.audit_key, effect="Deny"),
        ]
    return _document(statements) if statements else None


def _guards(arns: _Arns) -> list[dict[str, Any]]:
    """In every identity: a boundary is never removed, the boundary policy never changed,
    and the marker signing key never written, whatever else the principal is granted
    elsewhere."""
    return [
        # The key-mode statements' secret prefix covers the key's name by default.
        _statement("DenySigningKeyWrites", SIGNING_KEY_WRITES, arns.signing_key, effect="Deny"),
        _statement("DenyBoundaryRemoval", ["iam:DeleteRolePermissionsBoundary",
                                           "iam:DeleteUserPermissionsBoundary"], "*", effect="Deny"),
        _statement("DenyBoundaryPolicyChanges", ["iam:CreatePolicyVersion", "iam:DeletePolicy",
                                                 "iam:DeletePolicyVersion", "iam:SetDefaultPolicyVersion"],
                   arns.boundary, effect="Deny"),
    ]


def _key_secrets(arns: _Arns) -> list[dict[str, Any]]:
    """Key mode's secret store and workload locks (apply issues the first key; rotate
    the rest)."""
    return [
        _statement("ListKeySecrets", ["secretsmanager:ListSecrets"], "*"),
        _statement("CreateKeySecretsAndLocks", ["secretsmanager:CreateSecret"], arns.secrets, _requested()),
        # Unconditional so that a foreign secret under our name is seen, and refused by
        # the tool with its own message rather than an access error.
        # GetResourcePolicy likewise: a planted policy must be seen to be refused (H6).
        _statement("ReadKeySecretsAndLocks", ["secretsmanager:DescribeSecret",
                                              "secretsmanager:GetResourcePolicy"], arns.secrets),
        _statement("WriteOurKeySecrets", ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                                          "secretsmanager:TagResource", "secretsmanager:UntagResource",
                                          "secretsmanager:PutResourcePolicy"],
                   arns.secrets, _ours()),
        _statement("RenewAndReleaseOurLocks", ["secretsmanager:DeleteSecret", "secretsmanager:UpdateSecret"],
                   arns.locks, _ours()),
    ]


_ACCOUNT_READS = ["iam:GetAccountAuthorizationDetails", "iam:ListRoles"]
_ROLE_READS = ["iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies"]
_USER_READS = ["iam:GetUser", "iam:GetUserPolicy", "iam:ListAccessKeys", "iam:ListAttachedUserPolicies",
               "iam:ListGroupsForUser", "iam:ListUserPolicies"]


def apply_policy(arns: _Arns) -> dict[str, Any]:
    """plan and apply: create and converge roles and users within the boundary."""
    return _document([
        _statement("ReadAccount", [*_ACCOUNT_READS, "iam:ListOpenIDConnectProviders"], "*"),
        _statement("ReadBoundary", ["iam:GetPolicy"], arns.boundary),
        _statement("ReadOurIdentities", [*_ROLE_READS, *_USER_READS], [arns.role, arns.user]),
        # A plan of an adopted role (outside the path) compares everything it holds: the
        # same facts GetAccountAuthorizationDetails, granted above, gives for every role.
        _statement("ReadAdoptedRoles", _ROLE_READS, arns.any_role),
        _statement("ReadPoliciesOfAdoptedRoles", ["iam:GetPolicy", "iam:GetPolicyVersion"], arns.any_policy),
        # A plan that removes a permission first asks whether the workload still uses it
        # (access advisor, of our roles and users only: an adopted role's usage is unread and
        # counts as used; the report itself names no resource).
        _statement("ReadUsage", ["iam:GenerateServiceLastAccessedDetails"],
                   [arns.role, arns.user, *arns.our_groups_and_policies]),
        _statement("ReadKeyUsage", ["iam:GetAccessKeyLastUsed"], arns.user),
        _statement("ReadUsageReports", ["iam:GetServiceLastAccessedDetails"], "*"),
        _statement("CreateWithinBoundary", ["iam:CreateRole", "iam:CreateUser"], [arns.role, arns.user],
                   _bounded(arns, requested=True)),
        _statement("WritePoliciesWithinBoundary", [
            "iam:DeleteRolePolicy", "iam:DeleteUserPolicy", "iam:DetachRolePolicy", "iam:DetachUserPolicy",
            "iam:PutRolePermissionsBoundary", "iam:PutRolePolicy", "iam:PutUserPermissionsBoundary",
            "iam:PutUserPolicy"], [arns.role, arns.user], _bounded(arns)),
        _statement("ConvergeOurRoles", ["iam:UpdateAssumeRolePolicy", "iam:UpdateRole"], arns.role, _ours()),
        _statement("TagAsOurs", ["iam:TagRole", "iam:TagUser"], [arns.role, arns.user], _requested()),
        # Drift: a foreign group membership of our user is removed. IAM names the group,
        # not the user, as the resource, so this cannot be narrowed further.
        _statement("LeaveForeignGroups", ["iam:RemoveUserFromGroup"], arns.groups),
        _statement("IssueKeysOfOurUsers", ["iam:CreateAccessKey", "iam:DeleteAccessKey"], arns.user, _ours()),
        *_key_secrets(arns),
        _read_signing_key(arns),
        *_guards(arns),
    ])


def rotate_policy(arns: _Arns) -> dict[str, Any]:
    """rotate and recover: keys of our users, and the secrets that hold them."""
    return _document([
        _statement("ReadAccount", _ACCOUNT_READS, "*"),
        _statement("ReadKeys", ["iam:GetAccessKeyLastUsed", "iam:GetUser", "iam:ListAccessKeys"], arns.user),
        _statement("ManageKeysOfOurUsers",
                   ["iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:UpdateAccessKey"], arns.user, _ours()),
        *_key_secrets(arns),
        _read_signing_key(arns),
        *_guards(arns),
    ])


def cleanup_policy(arns: _Arns) -> dict[str, Any]:
    """cleanup: mark, quarantine, release, transfer and tear down our roles and users."""
    return _document([
        _statement("ReadAccount", _ACCOUNT_READS, "*"),
        _statement("ReadOurIdentities", [
            "iam:GetAccessKeyLastUsed", "iam:ListAccessKeys", "iam:ListAttachedRolePolicies",
            "iam:ListInstanceProfilesForRole", "iam:ListMFADevices", "iam:ListRolePolicies",
            "iam:ListSSHPublicKeys", "iam:ListServiceSpecificCredentials", "iam:ListSigningCertificates"],
            [arns.role, arns.user]),
        _statement("MarkOurs", ["iam:TagRole", "iam:TagUser", "iam:UntagRole", "iam:UntagUser"],
                   [arns.role, arns.user], _ours()),
        _statement("QuarantineWithinBoundary", ["iam:PutRolePolicy"], arns.role, _bounded(arns)),
        _statement("ReleaseAndTearDownOurs", [
            "iam:DeactivateMFADevice", "iam:DeleteAccessKey", "iam:DeleteLoginProfile", "iam:DeleteRole",
            "iam:DeleteRolePolicy", "iam:DeleteSSHPublicKey", "iam:DeleteServiceSpecificCredential",
            "iam:DeleteSigningCertificate", "iam:DeleteUser", "iam:DeleteUserPolicy", "iam:DetachRolePolicy",
            "iam:DetachUserPolicy", "iam:UpdateAccessKey"], [arns.role, arns.user], _ours()),
        # Teardown steps whose resource is the other side (IAM names the profile, the
        # group or the device): only ever taken for a role or user that is ours.
        _statement("DetachOursFromProfilesAndGroups", ["iam:RemoveRoleFromInstanceProfile",
                                                       "iam:RemoveUserFromGroup"],
                   [arns.groups, arns.profiles]),
        _statement("DeleteOurUsersMfaDevices", ["iam:DeleteVirtualMFADevice"], arns.mfa),
        _read_signing_key(arns),
        *_guards(arns),
    ])


def restore_policy(arns: _Arns) -> dict[str, Any]:
    """restore: recreate a deleted role or user within the boundary. No managed policy,
    group or instance profile: those would let a forged bundle grant anything."""
    return _document([
        _statement("ReadOurIdentities", ["iam:GetRole", "iam:GetUser"], [arns.role, arns.user]),
        _statement("RecreateWithinBoundary", ["iam:CreateRole", "iam:CreateUser"], [arns.role, arns.user],
                   _bounded(arns, requested=True)),
        _statement("PutPoliciesWithinBoundary", ["iam:PutRolePolicy", "iam:PutUserPolicy"],
                   [arns.role, arns.user], _bounded(arns)),
        # CreateRole and CreateUser with tags are also authorised as TagRole / TagUser; the
        # new identity's marker MAC is written right after it is created.
        _statement("TagAsOurs", ["iam:TagRole", "iam:TagUser"], [arns.role, arns.user], _requested()),
        _statement("LiftQuarantineOfOurs", ["iam:DeleteRolePolicy", "iam:UntagRole", "iam:UntagUser"],
                   [arns.role, arns.user], _ours()),
        _read_signing_key(arns),
        *_guards(arns),
    ])


def discover_policy(arns: _Arns) -> dict[str, Any]:
    """discover and adopt (without --apply): read every identity of the account, its
    policies and its credentials' ages; write nothing. The account-wide reads are the
    point: discover judges what the tool did not make. adopt --apply's marker on a role
    outside aws.rolePath is not granted here nor anywhere in bootstrap: tagging any role of
    the account would let this identity vouch for roles it was never shown (and change
    what tag-based policies allow), so an administrator runs it (README 'Bootstrap')."""
    statements = [
        _statement("ReadAccount", ["iam:GenerateCredentialReport", "iam:GetAccountAuthorizationDetails",
                                   "iam:GetCredentialReport"], "*"),
        _statement("ReadAnyRoleWhole", ["iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies",
                                        "iam:ListRolePolicies"], arns.any_role),
        _statement("ReadAttachedPolicies", ["iam:GetPolicy", "iam:GetPolicyVersion"], arns.any_policy),
    ]
    if arns.organization_role:
        statements.append(_statement("ListOrganizationAccounts", ["organizations:ListAccounts"], "*"))
    reach = [*arns.target_roles, *([arns.organization_role] if arns.organization_role else [])]
    if reach:
        statements.append(_statement("ReachTargetAccounts", ["sts:AssumeRole"], reach))
    sink = arns.sink
    if sink is not None and sink.kind == "s3":
        # The trail's shared policy is attached to every tool role; discover reads the trail
        # (the targets it shows the tool wrote to) and never writes a record.
        statements.append(_statement("DenyAuditTrailWrites", ["s3:PutObject"],
                                     f"arn:aws:s3:::{sink.bucket}/*", effect="Deny"))
    return _document([*statements, _read_signing_key(arns), *_guards(arns)])


def boundary_policy(config: Config, arns: _Arns) -> dict[str, Any]:
    """Allow everything but: IAM, Organizations and account settings; assuming roles
    other than aws.boundaryAssumableRoles; federation tokens. IAM denied also means the
    boundary can never be removed or edited from inside."""
    account = arns.role.split(":")[4]
    assumable = sorted(r.replace("{account}", account) for r in config.aws.boundaryAssumableRoles)
    statements = [
        _statement("AllowWithinBoundary", ["*"], "*"),
        _statement("DenyIdentityAndAccountControl", ["account:*", "iam:*", "organizations:*"], "*",
                   effect="Deny"),
        _statement("DenyFederationTokens", ["sts:GetFederationToken"], "*", effect="Deny"),
    ]
    deny_assume: dict[str, Any] = {"Sid": "DenyAssumeRoleOutsideAllowList", "Effect": "Deny",
                                   "Action": "sts:AssumeRole"}
    if assumable:
        deny_assume["NotResource"] = assumable if len(assumable) > 1 else assumable[0]
    else:
        deny_assume["Resource"] = "*"
    statements.append(deny_assume)
    return _document(statements)


def _document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def trust_policy(account: str, identity: str) -> dict[str, Any]:
    """A placeholder: principals of this account whose own policy lets them assume the
    role. Replace it with your pipeline's OIDC trust; bootstrap never changes a trust
    policy once the role exists. restore requires MFA: it is for people."""
    st: dict[str, Any] = {"Sid": "AssumeFromThisAccount", "Effect": "Allow",
                          "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}
    if identity == "restore":
        st["Condition"] = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    return _document([st])


POLICIES = {"apply": apply_policy, "rotate": rotate_policy, "cleanup": cleanup_policy,
            "restore": restore_policy, "discover": discover_policy}


def render(config: Config, account: str) -> AwsBootstrap:
    """Everything bootstrap prints and creates for ``account``. The config must name a
    boundary (it does unless guardrails.requirePermissionsBoundary is false)."""
    arns = _Arns(config, account)
    path = tool_path(config)
    identities = []
    for identity in IDENTITIES:
        name = tool_name(config, identity)
        identities.append(ToolIdentity(
            identity=identity, role_name=name, role_arn=f"arn:aws:iam::{account}:role{path}{name}",
            policy_name=name, policy_arn=f"arn:aws:iam::{account}:policy{path}{name}", path=path,
            policy=POLICIES[identity](arns), trust=trust_policy(account, identity)))
    boundary_path, _, boundary_name = arns.boundary.split(":policy", 1)[1].rpartition("/")
    boundary = Boundary(arn=arns.boundary, name=boundary_name, path=boundary_path + "/",
                        document=boundary_policy(config, arns))
    shared = audit_policy(arns)
    trail = None if shared is None else Boundary(
        arn=f"arn:aws:iam::{account}:policy{path}{tool_name(config, 'audit')}",
        name=tool_name(config, "audit"), path=path, document=shared)
    audit = _audit_json(arns, account)
    if audit is not None and trail is not None:
        audit["policy"] = {**trail.as_json(), "attachedTo": [i.role_name for i in identities]}
    return AwsBootstrap(account=account, boundary=boundary, identities=tuple(identities),
                        audit=audit, audit_policy=trail)


def _audit_json(arns: _Arns, account: str) -> dict[str, Any] | None:
    sink = arns.sink
    if sink is None:
        return None
    out: dict[str, Any] = {"sink": sink.as_json()}
    if sink.kind == "s3":
        bucket, objects = audit_sink.s3_resources(sink)
        out["grants"] = {"bucket": bucket, "objects": objects,
                         "actions": sorted([*audit_sink.S3_BUCKET_ACTIONS, *audit_sink.S3_OBJECT_ACTIONS]),
                         "denied": audit_sink.S3_DENIED}
    if arns.audit_key:
        out["signingKey"] = {"name": audit_sink.aws_key_name(sink), "arn": arns.audit_key,
                             "readers": "the tool's roles only (a deny-only resource policy, as the "
                                        "marker key's)"}
    note = audit_sink.elsewhere(sink, "aws")
    if sink.key_kind == "aws" and not arns.audit_key:
        note = (f"the audit signing key {sink.key} is in account {audit_sink.aws_key_account(sink)}, not "
                f"{account}: bootstrap that account to make it, and let these roles read it")
    if note:
        out["note"] = note
    return out


def render_text(plan: AwsBootstrap) -> str:
    """The policies as an operator reads them: one block per identity, then the boundary."""
    lines = [f"AWS account {plan.account}: the tool's identities (role path {plan.identities[0].path})"]
    for ident in plan.identities:
        lines += ["", f"== {ident.identity}: role {ident.role_arn}",
                  f"   for: {COMMANDS[ident.identity]}",
                  f"   managed policy {ident.policy_arn} ({ident.size} of {MANAGED_POLICY_MAX} characters):",
                  json.dumps(ident.policy, indent=2),
                  "   trust (a placeholder: replace it with your pipeline's OIDC trust):",
                  json.dumps(ident.trust, indent=2)]
    lines += ["", f"== workload boundary: {plan.boundary.arn} ({plan.boundary.size} of {MANAGED_POLICY_MAX} "
                  "characters); every role and user apply creates carries it:",
              json.dumps(plan.boundary.document, indent=2)]
    if plan.audit is not None:
        audit = plan.audit
        lines += ["", f"== audit trail {audit['sink']['url']}: every identity above reads it, and all but "
                      "discover append to it (discover's own policy denies s3:PutObject there)"]
        trail = plan.audit_policy
        if trail is not None:
            lines += [f"   managed policy {trail.arn} ({trail.size} of {MANAGED_POLICY_MAX} characters), "
                      f"attached to all {len(plan.identities)} roles (no delete; deletes and lock changes "
                      "denied):",
                      json.dumps(trail.document, indent=2)]
        if "signingKey" in audit:
            lines.append(f"   audit signing key: Secrets Manager secret {audit['signingKey']['name']} (64 "
                         "random hex characters, made by `--apply`), readable by the tool's roles only")
        if "note" in audit:
            lines.append(f"   note: {audit['note']}")
    return "\n".join(lines)


SIGNING_KEY_READ_SID = "WorkloadIdsOnlyToolReadsSigningKey"
SIGNING_KEY_WRITE_SID = "WorkloadIdsOnlyAdminsWriteSigningKey"


def signing_key_policy(readers: list[str], admins: list[str]) -> dict[str, Any]:
    """The signing key's resource policy: Deny only (it opens the key to nobody). Reading
    is denied to every principal but the tool's identities and the administrators;
    every write to all but the administrators (who ran bootstrap, and the account)."""
    writes = [a for a in SIGNING_KEY_WRITES if a != "secretsmanager:CreateSecret"]
    return _document([
        {"Sid": SIGNING_KEY_READ_SID, "Effect": "Deny", "Principal": "*",
         "Action": "secretsmanager:GetSecretValue", "Resource": "*",
         "Condition": {"ArnNotLike": {"aws:PrincipalArn": sorted({*readers, *admins})}}},
        {"Sid": SIGNING_KEY_WRITE_SID, "Effect": "Deny", "Principal": "*", "Action": writes,
         "Resource": "*", "Condition": {"ArnNotLike": {"aws:PrincipalArn": sorted(set(admins))}}},
    ])
