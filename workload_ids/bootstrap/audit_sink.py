"""What the tool's identities need for ``audit.sink``, per cloud. Pure: no SDK imports.

Every command that changes anything (apply, rotate and recover, cleanup, restore) checks
and appends to the trail, and cleanup, restore and inventory read it, so those four tool
identities (:data:`APPENDERS`) get the same rights: check the store's lock, list and read
the records, create new ones and move the head anchor, under the sink's prefix only, and
read the audit signing key. None of them may delete anything there, nor loosen the lock;
on AWS that is also an explicit Deny in every identity, whatever else it is granted. The
read-only ``discover`` identity (discover, adopt without --apply) reads the trail (the
targets it shows the tool wrote to) and verifies it with the key, but writes no record:
it gets the reads only (on AWS an explicit Deny of writes in its own policy).

- AWS: statements in each identity's managed policy (resource ARNs of the bucket and of
  ``PREFIX/*``), ``secretsmanager:GetSecretValue`` on the key; the key's own resource
  policy is the marker key's (deny-only).
- GCP: a custom role ``{namePrefix}_tool_audit`` bound on the bucket's IAM policy with a
  condition on the prefix, and ``roles/secretmanager.secretAccessor`` on the key secret's
  own policy.
- Azure: a custom role (blob read, write and append: no delete) assigned at the container,
  with an ABAC condition on the blob path, and *Key Vault Secrets User* at the key
  secret's own scope (``VAULT/secrets/NAME``), never the vault.

``bootstrap --apply`` creates the key (if absent, as the marker key) and checks the
store's append-only setting; the bucket or container itself, and the grants on it, are
printed for the operator (bootstrap does not own the store).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..endpoints import loopback_url
from . import IDENTITIES, marker

# The tool identities whose commands append to the trail; discover only reads it.
APPENDERS = tuple(i for i in IDENTITIES if i != "discover")
READERS = tuple(i for i in IDENTITIES if i not in APPENDERS)

# The key's marker: the value of the tag or annotation bootstrap's keys carry (the marker
# key's is "signing-key"; a different value, so neither is taken for the other).
AUDIT_KEY_TAG_VALUE = "audit-signing-key"

_AWS_ARN = re.compile(r"^arn:(aws[a-z-]*):secretsmanager:([a-z0-9-]+):(\d{12}):secret:(.+)$")
# A full secret ARN ends in '-' and six random characters Secrets Manager added.
_ARN_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")
_GCP_SECRET = re.compile(r"^projects/([^/]+)/secrets/([^/]+)$")

# What the sink's calls need (workload_ids/audit/s3.py, gcs.py, azure_blob.py).
S3_BUCKET_ACTIONS = ["s3:GetBucketObjectLockConfiguration", "s3:ListBucketVersions"]
S3_OBJECT_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"]
# Denied to every tool identity on the whole bucket: removing a record, or the lock that
# keeps it (GOVERNANCE mode yields to s3:BypassGovernanceRetention).
S3_DENIED = ["s3:BypassGovernanceRetention", "s3:Delete*", "s3:PutBucketObjectLockConfiguration",
             "s3:PutBucketPolicy", "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration",
             "s3:PutObjectRetention"]
GCS_PERMISSIONS = ["storage.buckets.get", "storage.objects.create", "storage.objects.get",
                   "storage.objects.list", "storage.objects.update"]
GCS_READ_PERMISSIONS = ["storage.buckets.get", "storage.objects.get", "storage.objects.list"]
_BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
AZURE_ACTIONS = ["Microsoft.Storage/storageAccounts/blobServices/containers/read"]
AZURE_DATA_ACTIONS = [f"{_BLOBS}/add/action", f"{_BLOBS}/read", f"{_BLOBS}/write"]
AZURE_READ_DATA_ACTIONS = [f"{_BLOBS}/read"]
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


@dataclass(frozen=True, slots=True)
class Sink:
    """``audit.sink`` as bootstrap needs it: where the store is, and whose key store."""

    url: str
    kind: str  # s3, gs, azure
    bucket: str  # bucket name; on Azure the container name
    prefix: str  # without slashes at either end; "" for the whole bucket
    account: str  # Azure: the storage account name; "" elsewhere
    key: str  # audit.sink.signingKey, as written
    key_kind: str  # aws, gcp, azure

    @property
    def cloud(self) -> str:
        """The cloud that holds this sink (``aws``, ``gcp`` or ``azure``)."""
        return {"s3": "aws", "gs": "gcp", "azure": "azure"}[self.kind]

    def as_json(self) -> dict[str, str]:
        """The sink's URL and where its signing key is kept (the key's location, never its value)."""
        return {"url": self.url, "signingKey": self.key}


def of(config: Config) -> Sink | None:
    """The config's sink, or None when it keeps the trail in a file (or none)."""
    audit = config.data.audit
    if audit is None or audit.sink is None:
        return None
    from ..endpoints import parse_sink_url, secret_reference_kind
    from ..errors import Diagnostic, InputErrors, Position, UserError
    url = audit.sink.url

    def bad(dotted: str, why: str) -> InputErrors:
        return InputErrors([Diagnostic(config.position(dotted) or Position(str(config.path)), why)])
    try:
        kind, bucket, prefix = parse_sink_url(url)
    except ValueError as exc:
        raise bad("audit.sink.url", f"{url!r}: {exc}") from None
    account = ""
    if kind == "azure":
        from ..audit.azure_blob import split_url
        try:
            base, bucket, prefix = split_url(url)
        except UserError as exc:
            raise bad("audit.sink.url", str(exc)) from None
        parts = urllib.parse.urlsplit(base)
        account = parts.path.strip("/") if loopback_url(base) else (parts.hostname or "").split(".")[0]
    sink = Sink(url=url, kind=kind, bucket=bucket, prefix=prefix.strip("/"), account=account,
                key=audit.sink.signingKey, key_kind=secret_reference_kind(audit.sink.signingKey))
    if sink.key_kind == "azure":
        try:
            azure_key_parts(sink)
        except ValueError as exc:
            raise bad("audit.sink.signingKey", str(exc)) from None
    return sink


_NAMES = {"aws": "AWS", "gcp": "GCP", "azure": "Azure"}


def elsewhere(sink: Sink, cloud: str) -> str | None:
    """A note for a cloud whose listing does not hold the sink (it lives on another)."""
    if sink.cloud == cloud and sink.key_kind == cloud:
        return None
    parts = []
    if sink.cloud != cloud:
        parts.append(f"the audit sink {sink.url} is on {_NAMES[sink.cloud]}: "
                     f"`workload-ids bootstrap --provider {sink.cloud}` lists its grants")
    if sink.key_kind != cloud:
        parts.append(f"the audit signing key {sink.key} is in {_NAMES[sink.key_kind]}'s secret store: "
                     f"`workload-ids bootstrap --provider {sink.key_kind} --apply` makes it")
    return "; ".join(parts) + ("; a tool identity of this cloud that writes the trail needs those grants "
                               "through federation" if parts else "")


# --- AWS ------------------------------------------------------------------------------------

def aws_key_name(sink: Sink) -> str:
    """The secret's name (what create_secret takes) from a name or an ARN."""
    match = _AWS_ARN.match(sink.key)
    if not match:
        return sink.key
    name = match.group(4)
    return _ARN_SUFFIX.sub("", name)


def aws_key_account(sink: Sink) -> str | None:
    """The account an ARN names; None for a name (the account being bootstrapped)."""
    match = _AWS_ARN.match(sink.key)
    return match.group(3) if match else None


def aws_key_arn(sink: Sink, account: str) -> str | None:
    """The ARN pattern of the audit key in ``account``; None when it is not an AWS key
    of that account."""
    if sink.key_kind != "aws":
        return None
    match = _AWS_ARN.match(sink.key)
    if match is None:
        return f"arn:aws:secretsmanager:*:{account}:secret:{sink.key}-??????"
    if match.group(3) != account:
        return None
    return sink.key if _ARN_SUFFIX.search(match.group(4)) else f"{sink.key}-??????"


def s3_resources(sink: Sink) -> tuple[str, str]:
    """(the bucket's ARN, the ARN pattern of every object under the prefix)."""
    bucket = f"arn:aws:s3:::{sink.bucket}"
    return bucket, f"{bucket}/{sink.prefix}/*" if sink.prefix else f"{bucket}/*"


def s3_list_condition(sink: Sink) -> dict[str, Any] | None:
    """Listing is asked for with ``Prefix=PREFIX/`` only."""
    return {"StringLike": {"s3:prefix": f"{sink.prefix}/*"}} if sink.prefix else None


# --- GCP ------------------------------------------------------------------------------------

def gcp_condition(sink: Sink) -> dict[str, str] | None:
    """Objects under the prefix; the bucket itself (its lock, and listing, which Cloud
    Storage judges on the bucket) too."""
    if not sink.prefix:
        return None
    bucket = f"projects/_/buckets/{sink.bucket}"
    return {"title": "workload-ids audit trail only",
            "description": f"the bucket and the objects under {sink.prefix}/",
            "expression": f"resource.name == '{bucket}' || "
                          f"resource.name.startsWith('{bucket}/objects/{sink.prefix}/')"}


def gcp_render(config: Config, project: str, sink: Sink) -> dict[str, Any]:
    """The sink's part of the GCP listing, in ``project``'s terms."""
    def of_(names: tuple[str, ...]) -> list[str]:
        return sorted(f"serviceAccount:{config.gcp.namePrefix}-tool-{i}@{project}.iam.gserviceaccount.com"
                      for i in names)
    members = of_(IDENTITIES)
    out: dict[str, Any] = {"sink": sink.as_json()}
    if sink.kind == "gs":
        condition = gcp_condition(sink)
        # Double quotes: the expression holds single-quoted strings.
        cond = (f' --condition="title={condition["title"]},expression={condition["expression"]}"'
                if condition else "")
        out["bucket"] = f"gs://{sink.bucket}"
        out["commands"] = []
        for key, suffix, title, permissions, names in (
                ("", "audit", "workload-ids audit trail", GCS_PERMISSIONS, APPENDERS),
                ("read", "audit_read", "workload-ids audit trail (read)", GCS_READ_PERMISSIONS, READERS)):
            role = f"projects/{project}/roles/{config.gcp.namePrefix}_tool_{suffix}"
            binding: dict[str, Any] = {"role": role, "members": of_(names)}
            if condition:
                binding["condition"] = condition
            out[f"{key}Role" if key else "role"] = {
                "name": role, "title": title, "description": marker(suffix.replace("_", "-")),
                "stage": "GA", "includedPermissions": sorted(permissions)}
            out[f"{key}BucketBinding" if key else "bucketBinding"] = binding
            out["commands"] += [
                f"gcloud iam roles create {role.rsplit('/', 1)[1]} --project {project} "
                f"--title '{title}' --description '{marker(suffix.replace('_', '-'))}' "
                f"--permissions {','.join(sorted(permissions))} --stage GA",
                *(f"gcloud storage buckets add-iam-policy-binding gs://{sink.bucket} --member={m} "
                  f"--role {role}{cond}" for m in binding["members"])]
    if sink.key_kind == "gcp":
        match = _GCP_SECRET.match(sink.key)
        assert match is not None  # reference_kind said so
        from . import KEY_ANNOTATION, SECRET_ACCESSOR
        out["signingKey"] = {"name": sink.key, "secretId": match.group(2), "project": match.group(1),
                             "annotations": {KEY_ANNOTATION: AUDIT_KEY_TAG_VALUE},
                             "bindings": [{"role": SECRET_ACCESSOR, "members": members}]}
    return out


# --- Azure ----------------------------------------------------------------------------------

def azure_key_parts(sink: Sink) -> tuple[str, str]:
    """(vault URL, secret name) of a Key Vault secret URL; ValueError when it is none."""
    parts = urllib.parse.urlsplit(sink.key)
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) != 2 or segments[0] != "secrets":
        raise ValueError(f"audit.sink.signingKey {sink.key} is not a Key Vault secret URL; write "
                         "https://VAULT.vault.azure.net/secrets/NAME")
    return f"{parts.scheme}://{parts.netloc}", segments[1]


def azure_condition(sink: Sink) -> str | None:
    """ABAC (version 2.0): blob reads, writes and appends only under the prefix; listing
    (a read whose sub-operation is Blob.List) has no blob path, so it is judged on the
    container."""
    if not sink.prefix:
        return None
    return ("((!(ActionMatches{'" + f"{_BLOBS}/read" + "'} AND NOT SubOperationMatches{'Blob.List'}) "
            "AND !(ActionMatches{'" + f"{_BLOBS}/write" + "'}) AND !(ActionMatches{'"
            + f"{_BLOBS}/add/action" + "'})) OR (@Resource[" + f"{_BLOBS}:path"
            + f"] StringStartsWith '{sink.prefix}/'))")


def azure_render(config: Config, subscription: str, sink: Sink) -> dict[str, Any]:
    """The sink's part of the Azure listing. The storage account's and the vault's
    resource groups are not in their URLs: the scopes carry placeholders for them."""
    from . import role_guid
    scope = f"/subscriptions/{subscription}"
    principals = [f"{config.azure.namePrefix}-tool-{i}" for i in IDENTITIES]
    out: dict[str, Any] = {"sink": sink.as_json()}
    if sink.kind == "azure":
        container = (f"{scope}/resourceGroups/STORAGE_ACCOUNT_RESOURCE_GROUP/providers/Microsoft.Storage/"
                     f"storageAccounts/{sink.account}/blobServices/default/containers/{sink.bucket}")
        condition = azure_condition(sink)
        for key, suffix, what, data, names in (
                ("", "audit", "read, create and append blobs, never delete", AZURE_DATA_ACTIONS, APPENDERS),
                ("read", "audit-read", "read blobs only", AZURE_READ_DATA_ACTIONS, READERS)):
            guid = role_guid(subscription, suffix)  # beside the identities' roles, as fixed
            prefix = config.azure.namePrefix
            definition = {"id": f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
                          "properties": {"roleName": f"{prefix}-tool-{suffix} ({subscription})",
                                         "description": f"workload-ids audit trail: {what} (workload-ids "
                                                        "bootstrap)",
                                         "type": "CustomRole",
                                         "permissions": [{"actions": AZURE_ACTIONS, "notActions": [],
                                                          "dataActions": data, "notDataActions": []}],
                                         "assignableScopes": [scope]}}
            props: dict[str, Any] = {"roleDefinitionId": definition["id"],
                                     "principalType": "ServicePrincipal"}
            if condition:
                props.update(condition=condition, conditionVersion="2.0")
            out[f"{key}RoleDefinition" if key else "roleDefinition"] = definition
            out[f"{key}RoleAssignments" if key else "roleAssignments"] = [
                {"scope": container, "principal": f"{prefix}-tool-{name}",
                 "properties": {**props, "principalId": f"PRINCIPAL_ID_OF_{prefix}-tool-{name}"}}
                for name in names]
    if sink.key_kind == "azure":
        vault, name = azure_key_parts(sink)
        host = urllib.parse.urlsplit(vault).hostname or ""
        vault_name = host.split(".")[0] if not loopback_url(vault) else "VAULT"
        out["signingKey"] = {
            "secret": sink.key, "vault": vault, "name": name,
            "role": f"Key Vault Secrets User ({KEY_VAULT_SECRETS_USER})",
            "scope": f"{scope}/resourceGroups/VAULT_RESOURCE_GROUP/providers/Microsoft.KeyVault/vaults/"
                     f"{vault_name}/secrets/{name}",
            "principals": principals}
    return out


def azure_text(part: dict[str, Any]) -> list[str]:
    """The bootstrap plan's text for an Azure audit sink: role, assignments, signing key."""
    import json
    lines = ["", f"== audit trail {part['sink']['url']} (every tool identity reads it; all but discover "
                 "append to it):"]
    if "roleDefinition" in part:
        lines += [json.dumps(part["roleDefinition"], indent=2),
                  "   assigned to each tool identity but discover at the container (no delete is granted):",
                  json.dumps(part["roleAssignments"], indent=2)]
    if "readRoleDefinition" in part:
        lines += [json.dumps(part["readRoleDefinition"], indent=2),
                  "   assigned to discover at the container (it reads the trail, never writes it):",
                  json.dumps(part["readRoleAssignments"], indent=2)]
    if "signingKey" in part:
        key = part["signingKey"]
        lines.append(f"   audit signing key {key['secret']}: {key['role']} at the secret's own scope "
                     f"{key['scope']} for {', '.join(key['principals'])} (`--apply` makes the secret)")
    return lines
