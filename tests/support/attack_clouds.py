"""The three clouds an attacker's manifest is applied to (moto for AWS, our GCP and Azure
emulators): builders for the manifests an attack writes, a positive control per cloud, and
how many identities and roles each cloud holds (to prove "nothing created")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .aws import ACCOUNT
from .cli import run_cli
from .trust import TEST_TRUST

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
RG = "rg-orders"
ARM = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers"
CONTAINER = f"{ARM}/Microsoft.Storage/storageAccounts/acmeorders/blobServices/default/containers/invoices"
VAULT = f"{ARM}/Microsoft.KeyVault/vaults/acme-kv"
POOL = "projects/123456789012/locations/global/workloadIdentityPools/github"
FOREIGN_POOL = "projects/999999999999/locations/global/workloadIdentityPools/mine"
OWN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_sneaky"
OTHER_KEY = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:workload-ids/prod/partner-feed-AbCdEf"
ROGUE_ISSUER = "https://issuer.attacker.example/cluster"
BUCKET = "projects/_/buckets/acme-reports"


def github(owner: str = "acme", pool: bool = False) -> str:
    return (f"      - kind: github-actions\n        repository: {owner}/sneaky\n"
            "        ref: refs/heads/main\n" + (f"        workloadIdentityPool: {POOL}\n" if pool else ""))


def kubernetes(issuer: str, pool: str | None = None) -> str:
    return (f"      - kind: kubernetes\n        issuer: {issuer}\n        namespace: sneaky\n"
            "        serviceAccount: sneaky\n" + (f"        workloadIdentityPool: {pool}\n" if pool else ""))


def manifest(provider: str, access: str, federation: str | None = None, description: str = "") -> str:
    target = {"aws": f"  aws: {{account: \"{ACCOUNT}\", region: eu-west-1}}\n",
              "gcp": "  gcp: {project: acme-prod}\n",
              "azure": f"  azure: {{subscription: \"{SUB}\", resourceGroup: {RG}, location: westeurope}}\n"}
    federation = federation if federation is not None else github(pool=provider == "gcp")
    described = f"  description: {description}\n" if description else ""
    return ("apiVersion: workload-ids/v1\nkind: Workload\nmetadata:\n  name: sneaky\n  owner: team-a\n"
            f"  environment: prod\n{described}spec:\n  provider: {provider}\n{target[provider]}"
            f"  credentials:\n    mode: keyless\n    federation:\n{federation}  access:\n{access}")


def raw(actions: str, resource: str, escalation: bool = False, field: str = "actions") -> str:
    return (f"    - {field}: [{actions}]\n      resources: [\"{resource}\"]\n      reason: needs it\n"
            + ("      escalation: {reason: \"the workload manages its own policy\"}\n" if escalation else ""))


def template(name: str, resource: str) -> str:
    return f"    - template: {name}\n      resources: [\"{resource}\"]\n"


CONTROLS = {
    "aws": manifest("aws", template("queue.consume", f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q")),
    "gcp": manifest("gcp", template("object-storage.read", BUCKET)),
    "azure": manifest("azure", template("object-storage.read", CONTAINER)),
}


@dataclass
class Cloud:
    """One cloud the attacks run against: its config block and what it holds now."""

    config: str
    holdings: Callable[[], tuple[int, ...]]


@pytest.fixture(scope="module")
def emulated() -> Iterator[dict[str, Any]]:
    from workload_ids.sandbox.azure.local import start_local_azure
    from workload_ids.sandbox.gcp.local import start_local_gcp
    gcp, azure = start_local_gcp(), start_local_azure()
    try:
        yield {"gcp": gcp, "azure": azure}
    finally:
        gcp.stop()
        azure.stop()


@pytest.fixture
def clouds(aws: Any, emulated: dict[str, Any]) -> dict[str, Cloud]:
    iam, arm = emulated["gcp"].emulators[0].backend, emulated["azure"].arm

    def aws_holdings() -> tuple[int, ...]:
        return (len(aws.list_roles(PathPrefix="/workload-ids/")["Roles"]),
                len(aws.list_users(PathPrefix="/workload-ids/")["Users"]))

    def gcp_holdings() -> tuple[int, ...]:
        return (sum(1 for a in iam.accounts.values() if not getattr(a, "deleted", False)), len(iam.roles))

    def azure_holdings() -> tuple[int, ...]:
        return len(arm._identities), len(arm._role_definitions), len(arm._role_assignments)

    return {"aws": Cloud("", aws_holdings),
            "gcp": Cloud(emulated["gcp"].config_block(), gcp_holdings),
            "azure": Cloud(emulated["azure"].config_block(), azure_holdings)}


def _run(cloud: Cloud, text: str, tmp_path: Path) -> Any:
    config = tmp_path / "workload-ids.yaml"
    config.write_text(cloud.config + "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST)
    path = tmp_path / "sneaky.yaml"
    path.write_text(text)
    return run_cli("apply", "--auto-approve", "--config", str(config), str(path)), path
