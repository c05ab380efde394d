"""The few predefined roles the IAM emulator serves (``GetRole`` on ``roles/NAME``), with
Google's own titles and permissions.

Each is copied unchanged from github.com/iann0036/iam-dataset ``gcp/roles/NAME.json`` at
commit ``2073fa52ac008a45477aa0b1b4580cd99135bf60`` (2026-08-22), the data the permission
catalogs are built from (workload_ids/catalogs/PROVENANCE.md). Only a handful: enough for
``workload-ids adopt`` to expand the roles hand-made service accounts commonly hold
(logging, monitoring, storage, Pub/Sub, Secret Manager, the IAM roles that let a member
act as an account). Any other predefined role answers ``UNIMPLEMENTED``, so a test that
needs one says so rather than seeing a role without permissions.
"""

from __future__ import annotations

SOURCE = "iann0036/iam-dataset gcp/roles at 2073fa52ac008a45477aa0b1b4580cd99135bf60"

# name -> (title, description, stage, includedPermissions)
PREDEFINED_ROLES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "roles/logging.logWriter": (
        "Logs Writer", "Access to write logs.", "GA",
        ("logging.logEntries.create", "logging.logEntries.route")),
    "roles/monitoring.metricWriter": (
        "Monitoring Metric Writer",
        "Write-only access to metrics.  This provides exactly the permissions needed by the "
        "Stackdriver agent and other systems that send metrics.", "GA",
        ("monitoring.metricDescriptors.create", "monitoring.metricDescriptors.get",
         "monitoring.metricDescriptors.list", "monitoring.monitoredResourceDescriptors.get",
         "monitoring.monitoredResourceDescriptors.list", "monitoring.timeSeries.create")),
    "roles/storage.objectViewer": (
        "Storage Object Viewer",
        "Grants access to view objects and their metadata, excluding ACLs. Can also list the "
        "objects in a bucket.", "GA",
        ("resourcemanager.projects.get", "resourcemanager.projects.list", "storage.folders.get",
         "storage.folders.list", "storage.managedFolders.get", "storage.managedFolders.list",
         "storage.objects.get", "storage.objects.list")),
    "roles/pubsub.subscriber": (
        "Pub/Sub Subscriber",
        "Consume messages from a subscription, attach subscriptions to a topic, and seek to a "
        "snapshot.", "GA",
        ("pubsub.snapshots.seek", "pubsub.subscriptions.consume", "pubsub.topics.attachSubscription")),
    "roles/pubsub.publisher": (
        "Pub/Sub Publisher", "Publish messages to a topic.", "GA", ("pubsub.topics.publish",)),
    "roles/iam.workloadIdentityUser": (
        "Workload Identity User", "Impersonate service accounts from federated workloads.", "GA",
        ("iam.serviceAccounts.get", "iam.serviceAccounts.getAccessToken",
         "iam.serviceAccounts.getOpenIdToken", "iam.serviceAccounts.list")),
    "roles/iam.serviceAccountUser": (
        "Service Account User", "Run operations as the service account.", "GA",
        ("iam.serviceAccounts.actAs", "iam.serviceAccounts.get", "iam.serviceAccounts.list",
         "resourcemanager.projects.get", "resourcemanager.projects.list")),
    "roles/iam.serviceAccountTokenCreator": (
        "Service Account Token Creator",
        "Impersonate service accounts (create OAuth2 access tokens, sign blobs or JWTs, etc).", "GA",
        ("iam.serviceAccounts.get", "iam.serviceAccounts.getAccessToken",
         "iam.serviceAccounts.getOpenIdToken", "iam.serviceAccounts.implicitDelegation",
         "iam.serviceAccounts.list", "iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt",
         "resourcemanager.projects.get", "resourcemanager.projects.list")),
    "roles/secretmanager.secretAccessor": (
        "Secret Manager Secret Accessor", "Allows accessing the payload of secrets.", "GA",
        ("resourcemanager.projects.get", "resourcemanager.projects.list",
         "secretmanager.versions.access")),
}
