"""Hand-made GCP service accounts for the adopt tests: the emulators behind a config file,
an account made through the real IAM client, and its bindings written through the real
Resource Manager and IAM clients, as a person with the console or gcloud would."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.iam.v1 import policy_pb2

from workload_ids.sandbox.gcp.iam import IamEmulator
from workload_ids.sandbox.gcp.local import start_key_store
from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, ResourceManagerEmulator
from workload_ids.sandbox.gcp.resourcepolicy import ResourcePolicyEmulator

from .leavers import CONFIG, OWNERS

PROJECT = "acme-prod"
POOL = "projects/123456789012/locations/global/workloadIdentityPools/github"
GITHUB_MAIN = f"principal://iam.googleapis.com/{POOL}/subject/repo:acme/legacy:ref:refs/heads/main"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/legacy-jobs"


def email(account_id: str) -> str:
    """The email of account ``account_id`` in the project."""
    return f"{account_id}@{PROJECT}.iam.gserviceaccount.com"


@dataclass
class GcpWorld:
    """The emulators and real clients to them."""

    iam: IamEmulator
    rm: ResourceManagerEmulator
    resources: ResourcePolicyEmulator
    iam_client: Any
    projects_client: Any

    def account(self, account_id: str, description: str = "made by hand in 2019",
                display_name: str = "Legacy deployer") -> str:
        """Create a service account; returns its email."""
        made = self.iam_client.create_service_account(request={
            "name": f"projects/{PROJECT}", "account_id": account_id,
            "service_account": {"display_name": display_name, "description": description}})
        return str(made.email)

    def grant_project(self, member: str, role: str, condition: dict[str, str] | None = None) -> None:
        """Add ``member`` to ``role`` on the project policy (read-modify-write)."""
        policy = self.projects_client.get_iam_policy(request={
            "resource": f"projects/{PROJECT}", "options": {"requested_policy_version": 3}})
        new = policy_pb2.Policy(version=3, etag=policy.etag)
        new.bindings.extend(policy.bindings)
        item = new.bindings.add(role=role, members=[member])
        if condition:
            item.condition.title = condition["title"]
            item.condition.expression = condition["expression"]
        self.projects_client.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": new})

    def grant_account(self, email_: str, role: str, members: Sequence[str]) -> None:
        """Add ``members`` to ``role`` on the service account's own policy."""
        address = f"projects/{PROJECT}/serviceAccounts/{email_}"
        policy = self.iam_client.get_iam_policy(request={"resource": address})
        new = policy_pb2.Policy(version=1, etag=policy.etag)
        new.bindings.extend(policy.bindings)
        new.bindings.add(role=role, members=list(members))
        self.iam_client.set_iam_policy(request={"resource": address, "policy": new})

    def custom_role(self, role_id: str, permissions: Sequence[str]) -> str:
        """A hand-made custom role of the project; returns its name."""
        made = self.iam_client.create_role(request={
            "parent": f"projects/{PROJECT}", "role_id": role_id,
            "role": {"title": role_id, "included_permissions": list(permissions), "stage": 2}})
        return str(made.name)

    def state(self, email_: str) -> dict[str, Any]:
        """Everything about an account a test compares: the account, its own policy, the
        project policy and the subscription's."""
        account = next(a for a in self.iam.service_accounts(PROJECT) if a.email == email_)
        return {"description": account.description, "display_name": account.display_name,
                "disabled": account.disabled,
                "own": str(self.iam.service_account_policy(email_).bindings),
                "project": str(self.rm.policy(PROJECT).bindings),
                "resource": str(self.resources.policy(SUBSCRIPTION).bindings),
                "roles": sorted(r.name for r in self.iam.roles(PROJECT))}


def gcp_world(tmp: Path) -> Iterator[GcpWorld]:
    """The emulators, a config naming them and the owners file, in the working folder."""
    iam, rm = IamEmulator(), ResourceManagerEmulator(projects=ProjectRegistry())
    resources = ResourcePolicyEmulator()
    resources.add_resource(SUBSCRIPTION)
    iam.add_project(PROJECT)
    rm.add_project(PROJECT)
    keys, keys_url = start_key_store([PROJECT])
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(
        f"gcp: {{iamEndpoint: '{iam.start()}', resourceManagerEndpoint: '{rm.start()}', "
        f"resourcePolicyEndpoint: '{resources.start()}', secretManagerEndpoint: '{keys_url}', "
        "sandboxCredentials: true}\n" + CONFIG)
    world = GcpWorld(iam, rm, resources, iam.client(), rm.client())
    try:
        yield world
    finally:
        for emulator in (iam, rm, resources, keys):
            emulator.stop()
