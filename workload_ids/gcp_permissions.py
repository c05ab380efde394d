"""Known GCP permissions of the services our resource kinds live in, so that a typo in a
user template (``storage.objects.getx``) is an error at validate time, not a failed
custom-role creation at apply. Permissions of other services are not judged: the list
covers what templates can bind, not all of GCP.
"""

from __future__ import annotations

import difflib
from functools import cache

_CATALOG = {
    "storage": {
        "buckets": "create delete get getIamPolicy getObjectInsights list setIamPolicy update restore "
                   "enableObjectRetention",
        "objects": "create delete get getIamPolicy list setIamPolicy update restore move setRetention "
                   "overrideUnlockedRetention",
        "multipartUploads": "abort create list listParts",
        "managedFolders": "create delete get getIamPolicy list setIamPolicy",
        "folders": "create delete get list rename",
    },
    "pubsub": {
        "topics": "attachSubscription create delete detachSubscription get getIamPolicy list publish "
                  "setIamPolicy update updateTag",
        "subscriptions": "consume create delete get getIamPolicy list setIamPolicy update",
        "snapshots": "create delete get getIamPolicy list seek setIamPolicy update",
        "schemas": "attach commit create delete get getIamPolicy list listRevisions rollback "
                   "setIamPolicy validate",
    },
    "secretmanager": {
        "secrets": "create delete get getIamPolicy list setIamPolicy update",
        "versions": "access add destroy disable enable get list",
        "locations": "get list",
    },
    "cloudkms": {
        "cryptoKeyVersions": "create destroy get list restore update useToDecrypt useToEncrypt "
                             "useToSign useToVerify viewPublicKey useToDecryptViaDelegation "
                             "useToEncryptViaDelegation",
        "cryptoKeys": "create get getIamPolicy list setIamPolicy update",
        "keyRings": "create get getIamPolicy list setIamPolicy",
        "locations": "get list generateRandomBytes",
    },
    "bigquery": {
        "datasets": "create delete get getIamPolicy setIamPolicy update link createTagBinding "
                    "deleteTagBinding listTagBindings",
        "tables": "create createIndex createSnapshot delete deleteIndex deleteSnapshot export get getData "
                  "getIamPolicy list restoreSnapshot setCategory setIamPolicy update updateData "
                  "updateTag",
        "jobs": "create delete get list listAll update",
        "routines": "create delete get list update updateTag",
        "models": "create delete export getData getMetadata list updateData updateMetadata updateTag",
        "readsessions": "create getData update",
        "connections": "create delete get getIamPolicy list setIamPolicy update use",
    },
    "bigtable": {
        "tables": "checkConsistency create delete generateConsistencyToken get getIamPolicy list "
                  "mutateRows readRows sampleRowKeys setIamPolicy undelete update",
        "instances": "create delete get getIamPolicy list setIamPolicy update",
    },
    "logging": {"logEntries": "create list route download"},
    "monitoring": {"timeSeries": "create list", "metricDescriptors": "create delete get list"},
    "artifactregistry": {
        "repositories": "create delete deleteArtifacts downloadArtifacts get getIamPolicy list "
                        "readViaVirtualRepository setIamPolicy update uploadArtifacts",
        "tags": "create delete get list update",
        "versions": "delete get list",
        "packages": "delete get list",
        "files": "get list",
    },
    "run": {
        "routes": "invoke",
        "services": "create delete get getIamPolicy list setIamPolicy update",
        "jobs": "create delete get getIamPolicy list run runWithOverrides setIamPolicy update",
        "executions": "cancel delete get list",
    },
    "cloudfunctions": {
        "functions": "call create delete get getIamPolicy invoke list setIamPolicy sourceCodeGet "
                     "sourceCodeSet update",
    },
    "cloudtasks": {
        "tasks": "create delete fullView get list run",
        "queues": "create delete get getIamPolicy list pause purge resume setIamPolicy update",
    },
}


@cache
def known() -> frozenset[str]:
    return frozenset(f"{service}.{resource}.{verb}" for service, resources in _CATALOG.items()
                     for resource, verbs in resources.items() for verb in verbs.split())


def unknown_permission(permission: str) -> str | None:
    """A message when ``permission`` belongs to a catalogued service but is not one of its
    permissions (with the closest known one); None otherwise."""
    service = permission.split(".", 1)[0]
    if service not in _CATALOG or permission in known():
        return None
    close = difflib.get_close_matches(permission, sorted(known()), n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{permission!r} is not a {service} permission{hint}"
