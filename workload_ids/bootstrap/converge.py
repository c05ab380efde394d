"""Create what ``bootstrap`` prints, on AWS; a rerun converges and changes nothing when
all is in place.

Managed policies converge to our document (a new default version; the oldest one is
deleted when IAM's five are used). Roles are created with the placeholder trust and our
policy attached; a trust policy that exists is the operator's and is never changed, and
other policies attached to a role are left alone (and reported).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from .aws import BOOTSTRAP_TAG, AwsBootstrap, Boundary, ToolIdentity, compact

MAX_POLICY_VERSIONS = 5


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in ("NoSuchEntity", "NoSuchEntityException")


def _document(value: Any) -> Any:
    # boto3 decodes policy documents to dicts; some endpoints hand back the JSON text.
    return json.loads(value) if isinstance(value, str) else value


def ensure_policy(iam: Any, arn: str, name: str, path: str, document: dict[str, Any],
                  tag: str, description: str) -> str | None:
    """Create or converge one managed policy; returns what was done, None if nothing."""
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except ClientError as exc:
        if not _missing(exc):
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


def ensure_boundary(iam: Any, boundary: Boundary) -> str | None:
    """The workload boundary: what the sandbox, the demo and the test fixtures create too."""
    return ensure_policy(iam, boundary.arn, boundary.name, boundary.path, boundary.document,
                         "workload-boundary", "workload-ids: the permissions boundary of every "
                         "workload identity")


def ensure_identity(iam: Any, ident: ToolIdentity) -> list[str]:
    done: list[str] = []
    changed = ensure_policy(iam, ident.policy_arn, ident.policy_name, ident.path, ident.policy,
                            ident.identity, f"workload-ids {ident.identity}: least privilege for "
                            "its commands (workload-ids bootstrap)")
    if changed:
        done.append(changed)
    try:
        iam.get_role(RoleName=ident.role_name)
    except ClientError as exc:
        if not _missing(exc):
            raise
        iam.create_role(RoleName=ident.role_name, Path=ident.path,
                        AssumeRolePolicyDocument=compact(ident.trust),
                        Description=f"workload-ids {ident.identity} (workload-ids bootstrap)",
                        Tags=[{"Key": BOOTSTRAP_TAG, "Value": ident.identity}])
        done.append(f"created role {ident.role_arn} (placeholder trust: replace it with your "
                    "pipeline's)")
    attached = [p["PolicyArn"] for p in
                iam.list_attached_role_policies(RoleName=ident.role_name)["AttachedPolicies"]]
    if ident.policy_arn not in attached:
        iam.attach_role_policy(RoleName=ident.role_name, PolicyArn=ident.policy_arn)
        done.append(f"attached {ident.policy_arn} to {ident.role_name}")
    others = [a for a in attached if a != ident.policy_arn]
    if others:
        done.append(f"note: {ident.role_name} also has {', '.join(others)} attached (left alone; "
                    "it widens this identity beyond what bootstrap grants)")
    return done


def converge(iam: Any, plan: AwsBootstrap) -> list[str]:
    """Everything of ``plan``; the boundary first (the identities' policies name it)."""
    done: list[str] = []
    changed = ensure_boundary(iam, plan.boundary)
    if changed:
        done.append(changed)
    for ident in plan.identities:
        done.extend(ensure_identity(iam, ident))
    return done


SIGNING_KEY_TAG = "signing-key"


def ensure_signing_key(sm: Any, plan: AwsBootstrap, caller: str) -> str | None:
    """The marker signing key (``workload-ids/signing-key``): created with fresh material
    and locked down by a deny-only resource policy; returns what was done, None if it
    was in place. A secret of that name that bootstrap cannot show it made (our tag, the
    account's own encryption key, our deny-only policy, 64 hex characters) is refused:
    whoever made it may know the material, and with it could forge every marker."""
    from ..errors import UserError
    from ..markers import AWS_KEY_SECRET
    from ..secrets.aws import grants_nothing, reader_patterns
    from ..signing import SigningKey, new_key_material
    from .aws import SIGNING_KEY_READ_SID, SIGNING_KEY_WRITE_SID, signing_key_policy

    def refuse(why: str) -> UserError:
        return UserError(
            f"Secrets Manager secret {AWS_KEY_SECRET} in account {plan.account} exists but {why}, so "
            "bootstrap cannot show it made it and will not use it as the marker signing key; find "
            "out who created it, delete it (aws secretsmanager delete-secret --secret-id "
            f"{AWS_KEY_SECRET} --force-delete-without-recovery) and rerun")

    try:
        doc = sm.describe_secret(SecretId=AWS_KEY_SECRET)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) != "ResourceNotFoundException":
            raise
        doc = None
    if doc is not None:
        tags = {t["Key"]: t["Value"] for t in doc.get("Tags") or []}
        if tags.get(BOOTSTRAP_TAG) != SIGNING_KEY_TAG:
            raise refuse(f"does not carry the tag {BOOTSTRAP_TAG}={SIGNING_KEY_TAG}")
        if str(doc.get("KmsKeyId") or "") not in ("", "alias/aws/secretsmanager"):
            raise refuse(f"is encrypted with KMS key {doc.get('KmsKeyId')}, whose policy others control")
        policy = str(sm.get_resource_policy(SecretId=AWS_KEY_SECRET).get("ResourcePolicy") or "")
        sids = {str(st.get("Sid")) for st in (json.loads(policy).get("Statement") or [])} if policy else set()
        if not policy or not grants_nothing(policy) or \
                not {SIGNING_KEY_READ_SID, SIGNING_KEY_WRITE_SID} <= sids:
            raise refuse("its resource policy is not the deny-only one bootstrap writes")
        value = sm.get_secret_value(SecretId=AWS_KEY_SECRET)
        try:
            SigningKey.from_stored(str(value.get("SecretString") or ""), AWS_KEY_SECRET)
        except ValueError:
            raise refuse("its value is not 64 hexadecimal characters") from None
        return None
    admins = reader_patterns(caller, [])
    readers = [ident.role_arn for ident in plan.identities]
    sm.create_secret(Name=AWS_KEY_SECRET, SecretString=new_key_material(),
                     Description="workload-ids: the key that authenticates ownership markers "
                                 "(workload-ids bootstrap); never read by people",
                     Tags=[{"Key": BOOTSTRAP_TAG, "Value": SIGNING_KEY_TAG}])
    sm.put_resource_policy(SecretId=AWS_KEY_SECRET, BlockPublicPolicy=True,
                           ResourcePolicy=json.dumps(signing_key_policy(readers, admins), sort_keys=True))
    return (f"created the marker signing key: Secrets Manager secret {AWS_KEY_SECRET} (readable by the "
            "tool's identities only)")
