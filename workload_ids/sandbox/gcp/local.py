"""A whole local GCP for ``workload-ids sandbox``: the four emulators in sandbox mode
(projects and target resources exist on first reference), and the config that points
the GCP backend at them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LocalGcp:
    """Running emulators and the ``gcp:`` config block that reaches them."""

    emulators: list[Any] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)

    def config_block(self) -> str:
        lines = ["gcp:"]
        lines += [f"  {key}: '{value}'" for key, value in self.endpoints.items()]
        lines.append("  sandboxCredentials: true   # anonymous; only for local emulators")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        for emulator in self.emulators:
            emulator.stop()


def start_local_gcp() -> LocalGcp:
    """Start IAM Admin, Resource Manager, Secret Manager and resource IAM policies."""
    from .iam import IamEmulator
    from .resourcemanager import ProjectRegistry, ResourceManagerEmulator
    from .resourcepolicy import ResourcePolicyEmulator
    from .secretmanager import SecretManagerEmulator
    registry = ProjectRegistry()
    iam = IamEmulator(sandbox=True)
    rm = ResourceManagerEmulator(sandbox=True, projects=registry)
    sm = SecretManagerEmulator(sandbox=True, projects=registry)
    policies = ResourcePolicyEmulator(sandbox=True)
    local = LocalGcp([iam, rm, sm, policies])
    local.endpoints = {"iamEndpoint": iam.start(), "resourceManagerEndpoint": rm.start(),
                       "secretManagerEndpoint": sm.start(), "resourcePolicyEndpoint": policies.start()}
    return local
