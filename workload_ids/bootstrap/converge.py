"""Create what ``bootstrap`` prints, on AWS; a rerun converges and changes nothing when
all is in place.

Every client here is a :class:`~workload_ids.calls.SeamClient` of a seam that translates
"aws" (bootstrap's, or the sandbox's own), so a failure arrives as a CloudError of its kind.

Managed policies converge to our document (a new default version; the oldest one is
deleted when IAM's five are used). Roles are created with the placeholder trust and our
policy attached; a trust policy that exists is the operator's and is never changed, and
other policies attached to a role are left alone (and reported).
"""

from __future__ import annotations

import json
from typing import Any

from ..calls import NOT_FOUND, SeamClient
from ..errors import CloudError
from .aws import BOOTSTRAP_TAG, AwsBootstrap, Boundary, ToolIdentity, compact

MAX_POLICY_VERSIONS = 5


def _document(value: Any) -> Any:
    # boto3 decodes policy documents to dicts; some endpoints hand back the JSON text.
    return json.loads(value) if isinstance(value, str) else value


def ensure_policy(iam: SeamClient, arn: str, name: str, path: str, document: dict[str, Any],
                  tag: str, description: str) -> str | None:
    """Create or converge one managed policy; returns what was done, None if nothing."""
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except CloudError as exc:
        if exc.kind != NOT_FOUND:
            raise
        iam.create_policy(PolicyName=name, Path=path, PolicyDocument=compact(document),
                          Description=description, Tags=[{"Key": BOOTSTRAP_TAG, "Value": tag}])
        return f"created policy {arn}"
    current = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    if _document(current["Document"]) == document:
        return None
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    if len(versions) >= MAX_POLICY_VERSIONS:
        oldest = min((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
        iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=compact(document), SetAsDefault=True)
    return f"updated policy {arn} (new default version)"


def ensure_boundary(iam: SeamClient, boundary: Boundary) -> str | None:
    """The workload boundary: what the sandbox, the demo and the test fixtures create too."""
    return ensure_policy(iam, boundary.arn, boundary.name, boundary.path, boundary.document,
                         "workload-boundary", "workload-ids: the permissions boundary of every "
                         "workload identity")


def ensure_identity(iam: SeamClient, ident: ToolIdentity, shared: tuple[str, ...] = ()) -> list[str]:
    """One role with its own policy attached, and ``shared`` (the audit trail's policy)."""
    done: list[str] = []
    changed = ensure_policy(iam, ident.policy_arn, ident.policy_name, ident.path, ident.policy,
                            ident.identity, f"workload-ids {ident.identity}: least privilege for "
                            "its commands (workload-ids bootstrap)")
    if changed:
        done.append(changed)
    try:
        iam.get_role(RoleName=ident.role_name)
    except CloudError as exc:
        if exc.kind != NOT_FOUND:
            raise
        iam.create_role(RoleName=ident.role_name, Path=ident.path,
                        AssumeRolePolicyDocument=compact(ident.trust),
                        Description=f"workload-ids {ident.identity} (workload-ids bootstrap)",
                        Tags=[{"Key": BOOTSTRAP_TAG, "Value": ident.identity}])
        done.append(f"created role {ident.role_arn} (placeholder trust: replace it with your "
                    "pipeline's)")
    attached = [p["PolicyArn"] for p in
                iam.list_attached_role_policies(RoleName=ident.role_name)["AttachedPolicies"]]
    for arn in (ident.policy_arn, *shared):
        if arn not in attached:
            iam.attach_role_policy(RoleName=ident.role_name, PolicyArn=arn)
            done.append(f"attached {arn} to {ident.role_name}")
    others = [a for a in attached if a != ident.policy_arn and a not in shared]
    if others:
        done.append(f"note: {ident.role_name} also has {', '.join(others)} attached (left alone; "
                    "it widens this identity beyond what bootstrap grants)")
    return done


def converge(iam: SeamClient, plan: AwsBootstrap) -> list[str]:
    """Everything of ``plan``; the boundary first (the identities' policies name it)."""
    done: list[str] = []
    changed = ensure_boundary(iam, plan.boundary)
    if changed:
        done.append(changed)
    shared: tuple[str, ...] = ()
    if plan.audit_policy is not None:
        trail = plan.audit_policy
        changed = ensure_policy(iam, trail.arn, trail.name, trail.path, trail.document, "audit-trail",
                                "workload-ids: read and append to the audit trail, never delete "
                                "(workload-ids bootstrap)")
        if changed:
            done.append(changed)
        shared = (trail.arn,)
    for ident in plan.identities:
        done.extend(ensure_identity(iam, ident, shared))
    return done


SIGNING_KEY_TAG = "signing-key"


def ensure_signing_key(sm: SeamClient, plan: AwsBootstrap, caller: str, *, create: bool = True) -> str | None:
    """The marker signing key (``workload-ids/signing-key``): created with fresh material
    and locked down by a deny-only resource policy; returns what was done, None if it
    was in place. A secret of that name that bootstrap cannot show it made (our tag, the
    account's own encryption key, our deny-only policy, 64 hex characters) is refused:
    whoever made it may know the material, and with it could forge every marker."""
    from ..markers import AWS_KEY_SECRET
    made = _ensure_key(sm, plan, caller, AWS_KEY_SECRET, SIGNING_KEY_TAG, "marker",
                       "the key that authenticates ownership markers", create=create)
    return (f"created the marker signing key: Secrets Manager secret {AWS_KEY_SECRET} (readable by the "
            "tool's identities only)") if made else None


def ensure_audit_key(sm: SeamClient, plan: AwsBootstrap, caller: str, *, create: bool = True) -> str | None:
    """The audit signing key ``audit.sink.signingKey`` names, when it is a secret of this
    account: made, checked and refused exactly as the marker key (a key someone else
    made could sign forged audit records, restore bundles included)."""
    from .audit_sink import AUDIT_KEY_TAG_VALUE
    if plan.audit is None or "signingKey" not in plan.audit:
        return None
    name = str(plan.audit["signingKey"]["name"])
    made = _ensure_key(sm, plan, caller, name, AUDIT_KEY_TAG_VALUE, "audit",
                       "the key that signs audit records", reference=str(plan.audit["sink"]["signingKey"]),
                       create=create)
    return (f"created the audit signing key: Secrets Manager secret {name} (readable by the tool's "
            "identities only)") if made else None


def _ensure_key(sm: SeamClient, plan: AwsBootstrap, caller: str, name: str, tag_value: str, purpose: str,
                what: str, *, reference: str | None = None, create: bool = True) -> bool:
    """Make (True) or check (False) one of bootstrap's signing keys; raises UserError for
    a secret bootstrap cannot show it made. ``reference`` is how the config names it
    (an ARN can only be checked: a new secret's ARN ends in characters AWS picks).
    ``create=False`` only judges (a missing key is False): the run checks both keys
    before its first write, so a refusal changes nothing."""
    from ..errors import UserError
    from ..providers.aws.secret_store import grants_nothing, reader_patterns
    from ..signing import SigningKey, new_key_material
    from .aws import SIGNING_KEY_READ_SID, SIGNING_KEY_WRITE_SID, signing_key_policy
    secret_id = reference or name

    def refuse(why: str) -> UserError:
        return UserError(
            f"Secrets Manager secret {secret_id} in account {plan.account} exists but {why}, so "
            f"bootstrap cannot show it made it and will not use it as the {purpose} signing key; nothing "
            "was changed. Find out who created it, delete it (aws secretsmanager delete-secret "
            f"--secret-id {secret_id} --force-delete-without-recovery) and rerun")

    try:
        doc = sm.describe_secret(SecretId=secret_id)
    except CloudError as exc:
        if exc.kind != NOT_FOUND:
            raise
        doc = None
    if doc is not None:
        tags = {t["Key"]: t["Value"] for t in doc.get("Tags") or []}
        if tags.get(BOOTSTRAP_TAG) != tag_value:
            raise refuse(f"does not carry the tag {BOOTSTRAP_TAG}={tag_value}")
        if str(doc.get("KmsKeyId") or "") not in ("", "alias/aws/secretsmanager"):
            raise refuse(f"is encrypted with KMS key {doc.get('KmsKeyId')}, whose policy others control")
        policy = str(sm.get_resource_policy(SecretId=secret_id).get("ResourcePolicy") or "")
        sids = {str(st.get("Sid")) for st in (json.loads(policy).get("Statement") or [])} if policy else set()
        if not policy or not grants_nothing(policy) or \
                not {SIGNING_KEY_READ_SID, SIGNING_KEY_WRITE_SID} <= sids:
            raise refuse("its resource policy is not the deny-only one bootstrap writes")
        value = sm.get_secret_value(SecretId=secret_id)
        try:
            SigningKey.from_stored(str(value.get("SecretString") or ""), secret_id)
        except ValueError:
            raise refuse("its value is not 64 hexadecimal characters") from None
        return False
    if reference is not None and reference.startswith("arn:"):
        raise UserError(f"the {purpose} signing key {reference} does not exist, and bootstrap cannot make a "
                        "secret with a given ARN (AWS picks its last characters); nothing was changed. "
                        f"Write its name instead (audit.sink.signingKey: {name}) and rerun")
    if not create:
        return False
    admins = reader_patterns(caller, [])
    readers = [ident.role_arn for ident in plan.identities]
    sm.create_secret(Name=name, SecretString=new_key_material(),
                     Description=f"workload-ids: {what} (workload-ids bootstrap); never read by people",
                     Tags=[{"Key": BOOTSTRAP_TAG, "Value": tag_value}])
    sm.put_resource_policy(SecretId=name, BlockPublicPolicy=True,
                           ResourcePolicy=json.dumps(signing_key_policy(readers, admins), sort_keys=True))
    return True
