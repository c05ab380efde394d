"""``workload-ids sandbox --with-existing``: identities made by hand, the way a person with
the console or a CLI would have made them years ago, so that ``discover`` has something
unmanaged to find and ``adopt`` something to take over.

Each is made through the cloud's own client (boto3, the Google IAM and Resource Manager
clients, the azure-mgmt clients) against the sandbox's endpoints, never by writing into
an emulator's tables: what adopt reads back is what a real cloud would have stored. They
federate from GitHub repository acme/legacy, which the sandbox config's trust section
already allows (owner ``acme``; the GCP pool lives in acme-prod's project number), so an
adoption keeps their trust as it is.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from .aws import SANDBOX_ACCOUNT

GITHUB = "token.actions.githubusercontent.com"
LEGACY_SUBJECT = "repo:acme/legacy:ref:refs/heads/main"
REGION = "us-east-1"  # the sandbox's FAKE_CREDENTIALS region

AWS_ROLE = "legacy-deployer"
AWS_USER = "legacy-ci"
AWS_QUEUE = "legacy-jobs"
AWS_TABLE = "legacy"

GCP_PROJECT = "acme-prod"
GCP_PROJECT_NUMBER = 123456789012  # the sandbox trust's gcpProjectNumbers[acme-prod]
GCP_ACCOUNT = "legacy-runner"  # short: its marker (with source) must fit a 256-character description
GCP_POOL = f"projects/{GCP_PROJECT_NUMBER}/locations/global/workloadIdentityPools/github"

AZURE_SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"  # the examples' (sandbox targets)
AZURE_GROUP = "rg-orders"
AZURE_IDENTITY = "legacy-deployer"  # the AWS role's name too, as happens across clouds
AZURE_CONTAINER = (f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/{AZURE_GROUP}/providers/"
                   "Microsoft.Storage/storageAccounts/acmeorders/blobServices/default/containers/reports")
BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"  # Storage Blob Data Reader (built-in)


@dataclass(frozen=True)
class Existing:
    """One hand-made identity: the id ``discover`` shows and ``adopt`` takes, and what it is."""

    cloud: str
    id: str
    what: str
    adoptable: bool = True


def seed_aws(endpoint_url: str) -> list[Existing]:
    """A role a GitHub workflow deploys with (consumes a queue, reads a table, both of the
    sandbox account) and an IAM user with an access key, as made in the console."""
    import boto3
    iam = boto3.client("iam", endpoint_url=endpoint_url, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=REGION)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    sqs.create_queue(QueueName=AWS_QUEUE)
    dynamodb.create_table(TableName=AWS_TABLE, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    queue = f"arn:aws:sqs:{REGION}:{SANDBOX_ACCOUNT}:{AWS_QUEUE}"
    table = f"arn:aws:dynamodb:{REGION}:{SANDBOX_ACCOUNT}:table/{AWS_TABLE}"
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{SANDBOX_ACCOUNT}:oidc-provider/{GITHUB}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{GITHUB}:aud": "sts.amazonaws.com",
                                       f"{GITHUB}:sub": LEGACY_SUBJECT}}}]}
    role = iam.create_role(RoleName=AWS_ROLE, AssumeRolePolicyDocument=json.dumps(trust),
                           Description="made by hand in 2019")["Role"]["Arn"]
    iam.put_role_policy(RoleName=AWS_ROLE, PolicyName="jobs", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Resource": [queue],
             "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]},
            {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"], "Resource": [table]}]}))
    user = iam.create_user(UserName=AWS_USER)["User"]["Arn"]
    iam.put_user_policy(UserName=AWS_USER, PolicyName="reads", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": [table]}]}))
    iam.create_access_key(UserName=AWS_USER)  # its secret is discarded: nobody needs it here
    return [Existing("aws", str(role), "role trusted by GitHub acme/legacy (main); consumes queue "
                     f"{AWS_QUEUE}, reads table {AWS_TABLE}"),
            Existing("aws", str(user), "IAM user with an access key (discover reports it; adopt "
                     "takes roles only)", adoptable=False)]


def seed_gcp(iam_client: Any, projects_client: Any) -> list[Existing]:
    """A service account that writes logs to the project and that GitHub acme/legacy's main
    branch may impersonate through the project's ``github`` pool."""
    from google.iam.v1 import policy_pb2
    made = iam_client.create_service_account(request={
        "name": f"projects/{GCP_PROJECT}", "account_id": GCP_ACCOUNT,
        "service_account": {"display_name": "Legacy runner", "description": "made by hand in 2019"}})
    email = str(made.email)
    project = f"projects/{GCP_PROJECT}"
    current = projects_client.get_iam_policy(request={"resource": project,
                                                      "options": {"requested_policy_version": 3}})
    policy = policy_pb2.Policy(version=3, etag=current.etag)
    policy.bindings.extend(current.bindings)
    policy.bindings.add(role="roles/logging.logWriter", members=[f"serviceAccount:{email}"])
    projects_client.set_iam_policy(request={"resource": project, "policy": policy})
    address = f"{project}/serviceAccounts/{email}"
    current = iam_client.get_iam_policy(request={"resource": address})
    own = policy_pb2.Policy(version=1, etag=current.etag)
    own.bindings.extend(current.bindings)
    own.bindings.add(role="roles/iam.workloadIdentityUser",
                     members=[f"principal://iam.googleapis.com/{GCP_POOL}/subject/{LEGACY_SUBJECT}"])
    iam_client.set_iam_policy(request={"resource": address, "policy": own})
    return [Existing("gcp", email, "service account: logging.logWriter on the project; GitHub "
                     "acme/legacy (main) may impersonate it")]


def seed_azure(credential: Any, client_kwargs: dict[str, Any]) -> list[Existing]:
    """A user-assigned managed identity GitHub acme/legacy's main branch federates into,
    that reads the blobs of the orders container."""
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.msi import ManagedServiceIdentityClient
    msi = ManagedServiceIdentityClient(credential, AZURE_SUBSCRIPTION, **client_kwargs)
    authz = AuthorizationManagementClient(credential, AZURE_SUBSCRIPTION, **client_kwargs)
    made = msi.user_assigned_identities.create_or_update(AZURE_GROUP, AZURE_IDENTITY,
                                                         {"location": "westeurope", "tags": {}})
    msi.federated_identity_credentials.create_or_update(AZURE_GROUP, AZURE_IDENTITY, "legacy-main", {
        "issuer": f"https://{GITHUB}", "subject": LEGACY_SUBJECT, "audiences": ["api://AzureADTokenExchange"]})
    authz.role_assignments.create(AZURE_CONTAINER, str(uuid.uuid4()), {
        "role_definition_id": f"/subscriptions/{AZURE_SUBSCRIPTION}/providers/Microsoft.Authorization/"
                              f"roleDefinitions/{BLOB_READER}",
        "principal_id": str(made.principal_id), "principal_type": "ServicePrincipal"})
    address = (f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/{AZURE_GROUP}/providers/"
               f"Microsoft.ManagedIdentity/userAssignedIdentities/{AZURE_IDENTITY}")
    return [Existing("azure", address, "user-assigned managed identity: Storage Blob Data Reader on "
                     "container reports; GitHub acme/legacy (main) federates into it")]


def start_text(made: list[Existing], config_out: str | None) -> str:
    """The lines the sandbox prints about them: ids, and the commands to try."""
    config = config_out or "sandbox.yaml"
    lines = ["", "Hand-made identities to try discover and adopt on:"]
    lines += [f"  {e.cloud:<6} {e.id}\n         {e.what}" for e in made]
    ids = " ".join(e.id for e in made if e.adoptable)
    lines += ["Try:",
              f"  workload-ids discover --config {config} --output html --out report.html",
              f"  workload-ids adopt --config {config} {ids} --out adopted --owner team-x --apply",
              f"  workload-ids plan --config {config} adopted"]
    return "\n".join(lines)
