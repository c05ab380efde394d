"""A whole local GCP for ``workload-ids sandbox``: the four emulators in sandbox mode
(projects and target resources exist on first reference), and the config that points
the GCP backend at them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LocalGcp:
    """Running emulators and the ``gcp:`` config block that reaches them."""

    emulators: list[Any] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)
    analyzer: Any = None  # Policy Analyzer, served by the Resource Manager emulator
    recommender: Any = None  # Recommender's policy insights, served there too

    def config_block(self) -> str:
        """The config lines that point workload-ids at the emulators."""
        lines = ["gcp:"]
        lines += [f"  {key}: '{value}'" for key, value in self.endpoints.items()]
        lines.append("  sandboxCredentials: true   # anonymous; only for local emulators")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        """Stop every emulator."""
        for emulator in self.emulators:
            emulator.stop()


def start_local_gcp(base_port: int = 0, clock: Any = None) -> LocalGcp:
    """Start IAM Admin, Resource Manager, Secret Manager and resource IAM policies, on free
    ports, or with ``base_port`` on the five ports from it (the same on every start, so a
    config written for them stays valid). ``clock``: Resource Manager's (its access check
    evaluates time conditions by it; tests move a ManualClock), else the real one."""
    from .iam import IamEmulator
    from .policyanalyzer import PolicyAnalyzerEmulator
    from .recommender import RecommenderEmulator
    from .resourcemanager import ProjectRegistry, ResourceManagerEmulator
    from .resourcepolicy import ResourcePolicyEmulator
    from .secretmanager import SecretManagerEmulator
    registry = ProjectRegistry()
    def port(offset: int) -> int:
        return base_port + offset if base_port else 0
    iam = IamEmulator(sandbox=True, port=port(0))
    # Policy Analyzer answers on Resource Manager's port: the sandbox's ports stay five.
    analyzer = PolicyAnalyzerEmulator(sandbox=True, projects=registry)
    recommender = RecommenderEmulator(sandbox=True, projects=registry)
    rm = ResourceManagerEmulator(sandbox=True, projects=registry,
                                 extra_routes=analyzer.routes() + recommender.routes(),
                                 **({"clock": clock} if clock is not None else {}))
    rm.role_permissions = lambda role: next(
        (r.permissions for r in iam.roles(role.split("/")[1]) if r.name == role), ()) \
        if role.startswith("projects/") else ()
    sm = SecretManagerEmulator(sandbox=True, projects=registry)
    policies = ResourcePolicyEmulator(sandbox=True, port=port(4))
    local = LocalGcp([iam, rm, sm, policies])
    local.analyzer = analyzer
    local.recommender = recommender
    local.endpoints = {"iamEndpoint": iam.start(), "resourceManagerEndpoint": rm.start(port(1)),
                       "secretManagerEndpoint": sm.start(port(2), port(3)),
                       "resourcePolicyEndpoint": policies.start()}
    local.endpoints["policyAnalyzerEndpoint"] = local.endpoints["resourceManagerEndpoint"]
    return local


def _through_seam(client: Any, service: str) -> Any:
    """``client`` behind a seam of its own that translates "gcp" as every other does:
    bootstrap's code, which seeding reuses, decides by CloudError kind."""
    from ...calls import CallSeam, SeamClient
    from ...providers.gcp.clients import classify, make_fault
    if isinstance(client, SeamClient):
        return client
    seam = CallSeam()
    seam.register("gcp", classify, make_fault, translate=True)
    return SeamClient(seam, "gcp", service, client)


def seed_signing_keys(secrets: Any, projects: Iterable[str]) -> None:
    """The marker signing key of each project, made by `workload-ids bootstrap --apply`'s
    own code (for the default config) through ``secrets``, a Secret Manager client."""
    from pathlib import Path

    from ...bootstrap.gcp import signing_key
    from ...bootstrap.gcp_apply import ensure_signing_key
    from ...config import Config, ConfigFile
    config = Config(ConfigFile(), Path.cwd(), None)
    secrets = _through_seam(secrets, "secretmanager")
    for project in projects:
        ensure_signing_key(secrets, signing_key(config, project))


def start_key_store(projects: Iterable[str], registry: Any = None) -> tuple[Any, str]:
    """A Secret Manager emulator holding the signing key of each of ``projects`` (for
    setups that run IAM without the whole local GCP); returns it and its endpoint."""
    from .resourcemanager import ProjectRegistry
    from .secretmanager import SecretManagerEmulator
    sm = SecretManagerEmulator(projects=registry if registry is not None else ProjectRegistry())
    endpoint = sm.start()
    names = list(projects)
    for project in names:
        if sm.projects.find(project) is None:
            sm.add_project(project)
    seed_signing_keys(sm.client(), names)
    return sm, endpoint
