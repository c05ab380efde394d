"""AWS on moto: the account, seeding it as bootstrap does, manifest builders (keyless and
key mode), snapshots of what IAM holds, and reading a marker's MAC."""

from __future__ import annotations

import textwrap
from typing import Any

from workload_ids.sandbox.aws import EXAMPLE_ISSUERS, seed_boundary, seed_signing_key

ACCOUNT = "123456789012"


def seed(iam: Any, issuers: tuple[str, ...] = EXAMPLE_ISSUERS) -> None:
    """What a platform team does once per account: OIDC providers, the workload
    permissions boundary and the marker signing key (`workload-ids bootstrap --provider
    aws --apply`'s own code)."""
    seed_boundary(iam=iam)
    import boto3
    # The same credentials (so the same account) as ``iam``; boto3 reads AWS_ENDPOINT_URL.
    creds = iam._request_signer._credentials.get_frozen_credentials()
    seed_signing_key(sm=boto3.client("secretsmanager", region_name="us-east-1",
                                     aws_access_key_id=creds.access_key,
                                     aws_secret_access_key=creds.secret_key,
                                     aws_session_token=creds.token))
    for url in issuers:
        iam.create_open_id_connect_provider(Url=url, ClientIDList=["sts.amazonaws.com"],
                                            ThumbprintList=["0" * 40])


PAYMENTS = textwrap.dedent("""\
    apiVersion: workload-ids/v1
    kind: Workload
    metadata:
      name: payments-api            # lowercase letters, digits, hyphens; 3-40 chars
      owner: team-payments          # a person or group in the owner directory
      environment: prod             # lowercase letters, digits, hyphens; 1-16 chars
      description: Public payments API
    spec:
      provider: aws                 # aws | gcp | azure
      aws:
        account: "123456789012"
        region: eu-west-1
      credentials:
        mode: keyless               # keyless | key
        federation:                 # who may obtain the identity's credentials (keyless)
          - kind: github-actions
            repository: acme/payments
            ref: refs/heads/main
          - kind: kubernetes
            issuer: https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7
            namespace: payments
            serviceAccount: payments-api
          - kind: aws-service
            service: ecs-tasks.amazonaws.com
      access:
        - template: object-storage.read
          resources:
            - arn:aws:s3:::acme-invoices
        - template: queue.consume
          resources:
            - arn:aws:sqs:eu-west-1:123456789012:payment-events
        - actions: [dynamodb:GetItem, dynamodb:Query]      # escape hatch: raw actions
          resources:
            - arn:aws:dynamodb:eu-west-1:123456789012:table/payments
          reason: reads the payments table directly          # required with raw actions
    """)


def workload(name: str = "svc-a", env: str = "prod", access: str | None = None,
             federation: str | None = None, owner: str = "team-a") -> str:
    """A small valid AWS manifest; ``access``/``federation`` are YAML list bodies."""
    access = access or ("    - template: queue.consume\n"
                        "      resources: [arn:aws:sqs:eu-west-1:123456789012:" + name + "]\n")
    federation = federation or ("      - kind: github-actions\n"
                                f"        repository: acme/{name}\n"
                                "        ref: refs/heads/main\n")
    return (
        "apiVersion: workload-ids/v1\nkind: Workload\n"
        f"metadata:\n  name: {name}\n  owner: {owner}\n  environment: {env}\n"
        "spec:\n  provider: aws\n  aws: {account: \"123456789012\", region: eu-west-1}\n"
        f"  credentials:\n    mode: keyless\n    federation:\n{federation}"
        f"  access:\n{access}")


def aws_mac_state(entity: dict[str, Any], account: str = ACCOUNT) -> str:
    """``valid`` when a role's or user's marker carries the MAC the account's signing key
    makes for it (its immutable id changes on every create, so snapshots compare this,
    not the MAC itself), else ``invalid`` (or ``none`` without a MAC)."""
    import boto3

    from workload_ids.markers import AWS_KEY_SECRET, check
    from workload_ids.model import TAG_MAC, Marker
    from workload_ids.signing import SigningKey
    tags = {t["Key"]: t["Value"] for t in entity.get("Tags", [])}
    marker = Marker.from_tags(tags)
    if marker is None or TAG_MAC not in tags:
        return "none"
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    key = SigningKey.from_stored(sm.get_secret_value(SecretId=AWS_KEY_SECRET)["SecretString"], "test")
    name = entity.get("RoleName") or entity["UserName"]
    immutable_id = entity.get("RoleId") or entity["UserId"]
    return "valid" if check(key, "aws", account, name, immutable_id, marker, tags[TAG_MAC]) is None \
        else "invalid"


def stable_tags(entity: dict[str, Any]) -> dict[str, str]:
    """An entity's tags with the MAC replaced by :func:`aws_mac_state`."""
    tags = {t["Key"]: t["Value"] for t in entity.get("Tags", [])}
    if "workload-ids:mac" in tags:
        tags["workload-ids:mac"] = aws_mac_state(entity)
    return tags


# Key mode: one workload whose credential is an access key kept in Secrets Manager.
USER = "wid_prod_vendor-sync"
SECRET = "workload-ids/prod/vendor-sync"
KEY_MODE = workload(
    "vendor-sync",
    access="    - template: object-storage.write\n      resources: [arn:aws:s3:::acme-vendor-drop]\n",
).replace(
    "  credentials:\n    mode: keyless\n    federation:\n      - kind: github-actions\n"
    "        repository: acme/vendor-sync\n        ref: refs/heads/main\n",
    "  credentials:\n    mode: key\n    rotation: {maxAge: 30d, overlap: 2d, grace: 7d}\n")


def snapshot(iam: Any) -> dict[str, Any]:
    """Everything we manage under /workload-ids/, as IAM reports it."""
    state: dict[str, Any] = {}
    for role in iam.list_roles(PathPrefix="/workload-ids/")["Roles"]:
        name = role["RoleName"]
        full = iam.get_role(RoleName=name)["Role"]
        policies = {p: iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
                    for p in iam.list_role_policies(RoleName=name)["PolicyNames"]}
        state[name] = {
            "trust": full["AssumeRolePolicyDocument"],
            "tags": stable_tags(full),
            "session": full["MaxSessionDuration"],
            "policies": policies,
            "attached": iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"],
        }
    return state
