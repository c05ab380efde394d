"""GCP on our emulators: the project, manifest builders (keyless and key mode), and reading
service accounts and keys back from the IAM emulator."""

from __future__ import annotations

from typing import Any

from workload_ids.providers.gcp import render
from workload_ids.sandbox.gcp.iam import IamEmulator

PROJECT = "acme-prod"
POOL = "projects/123456789012/locations/global/workloadIdentityPools/github"


def gcp_workload(name: str = "catalog-sync", access: str = "", owner: str = "team-platform") -> str:
    """A small valid keyless GCP manifest federating from GitHub; ``access`` is a YAML list body."""
    access = access or (
        "    - template: object-storage.read\n      resources: [projects/_/buckets/bucket-a]\n"
        "    - template: object-storage.write\n      resources: [projects/_/buckets/bucket-b]\n")
    return ("apiVersion: workload-ids/v1\nkind: Workload\n"
            f"metadata: {{name: {name}, owner: {owner}, environment: prod}}\n"
            "spec:\n  provider: gcp\n  gcp: {project: acme-prod}\n"
            "  credentials:\n    mode: keyless\n    federation:\n"
            "      - kind: github-actions\n        repository: acme/catalog-sync\n"
            f"        ref: refs/heads/main\n        workloadIdentityPool: {POOL}\n"
            f"  access:\n{access}")


# Key mode: one on-premises workload whose credential is a service-account key.
KEY_MODE = gcp_workload(name="vendor-sync").replace(
    "  credentials:\n    mode: keyless\n    federation:\n"
    "      - kind: github-actions\n        repository: acme/catalog-sync\n"
    "        ref: refs/heads/main\n"
    "        workloadIdentityPool: projects/123456789012/locations/global/workloadIdentityPools/github\n",
    "  runtime: on-premises\n  credentials:\n    mode: key\n"
    "    rotation: {maxAge: 30d, overlap: 2d, grace: 7d}\n")


def keys(iam: Any) -> dict[str, bool]:
    """The key-mode workload's user-managed keys: id -> disabled."""
    email = f"{render.account_id('wid', 'prod', 'vendor-sync')}@{PROJECT}.iam.gserviceaccount.com"
    return {k.key_id: k.disabled for k in iam.keys(email) if k.user_managed}


# The owners file of the leaver fleets.
OWNERS = """\
owners:
  - {id: team-a, kind: group, active: true, members: [bob]}
  - {id: bob, kind: person, active: true}
  - {id: alice, kind: person, active: false}
"""


def email(name: str) -> str:
    """The service-account email of workload NAME in prod."""
    return f"{render.account_id('wid', 'prod', name)}@{PROJECT}.iam.gserviceaccount.com"


def accounts(iam: IamEmulator) -> dict[str, Any]:
    """Every service account of the project, by email."""
    return {a.email: a for a in iam.service_accounts(PROJECT)}
