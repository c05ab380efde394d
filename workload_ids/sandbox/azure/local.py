"""A whole local Azure for ``workload-ids sandbox``, the demo and the tests: ARM (managed
identities, roles, assignments), the Graph subset (applications, service principals,
their secrets, and the token endpoint that proves a secret works), Key Vault and Blob
Storage (the key-mode workload locks), each on its own HTTPS port, with one CA bundle
that trusts them all. In sandbox mode subscriptions and resource groups exist on first
reference."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.clock import Clock


@dataclass
class LocalAzure:
    """Running emulators and the ``azure:`` config block that reaches them."""

    arm: Any
    graph: Any
    vault: Any
    blob: Any
    settings: dict[str, Any] = field(default_factory=dict)
    _tmpdir: str = ""

    @property
    def emulators(self) -> list[Any]:
        """The emulators this sandbox runs."""
        return [self.arm, self.graph, self.vault, self.blob]

    def config_block(self) -> str:
        """The config lines that point workload-ids at them."""
        lines = ["azure:"]
        lines += [f"  {key}: '{value}'" for key, value in self.settings.items()
                  if key != "sandboxCredentials"]
        lines.append("  sandboxCredentials: true   # a fixed token; only for local emulators")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        """Stop every emulator."""
        for emulator in self.emulators:
            emulator.stop()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = ""


def start_local_azure(*, sandbox: bool = True, clock: Clock | None = None,
                      replication_delay: float = 0.0, base_port: int = 0,
                      ca_bundle: Path | None = None) -> LocalAzure:
    """Start ARM, Graph, Key Vault and Blob Storage; ``sandbox=False`` makes unknown
    subscriptions and resource groups 404, as tests of those paths need.
    ``replication_delay`` seconds (on ``clock``) pass before Entra and ARM know a new
    principal, application or secret. With ``base_port`` they listen on the four ports
    from it, and with ``ca_bundle`` their CA certificates go to that file: the same
    endpoints and bundle path on every start, so a config written for them stays valid."""
    import time

    from ...clock import lease_now
    from .arm import ArmEmulator
    from .blob import BlobEmulator
    from .graph import GraphEmulator
    from .keyvault import KeyVaultEmulator
    # Leases run on the tool's lease clock, so a drill that moves the clock past a dead
    # run's lease frees its lock as Azure would.
    blob_clock = clock or (lambda: lease_now().timestamp())
    clock = clock or time.time
    arm = ArmEmulator(sandbox=sandbox, clock=clock, replication_delay=replication_delay)
    graph = GraphEmulator(directory=arm, tenant_id=arm.tenant_id, clock=clock,
                          replication_delay=replication_delay)
    vault = KeyVaultEmulator(clock=clock)
    blob = BlobEmulator(clock=blob_clock, tenant_id=arm.tenant_id)
    local = LocalAzure(arm, graph, vault, blob)
    urls = [e.start(base_port + i if base_port else 0) for i, e in enumerate(local.emulators)]
    if ca_bundle is None:
        local._tmpdir = tempfile.mkdtemp(prefix="local-azure-")
        ca_bundle = Path(local._tmpdir) / "ca.pem"
    bundle = ca_bundle
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text("".join(Path(e.ca_bundle_path).read_text() for e in local.emulators))
    local.settings = {"armEndpoint": urls[0], "graphEndpoint": urls[1], "authorityEndpoint": urls[1],
                      "keyVaultUrl": urls[2], "lockContainerUrl": blob.container_url("workload-ids-locks"),
                      "caBundle": str(bundle), "tenantId": arm.tenant_id,
                      "sandboxCredentials": True}
    seed_signing_key(local.settings)
    return local


def seed_signing_key(settings: dict[str, Any]) -> None:
    """The marker signing key in the vault ``settings`` (an ``azure:`` config block)
    reaches, made by `workload-ids bootstrap --apply`'s own code; idempotent."""
    from ...bootstrap.azure_apply import ensure_signing_key
    from ...calls import CallSeam
    from ...config import Config, ConfigFile
    from ...providers.azure.clients import AzureClients
    clients = AzureClients(Config(ConfigFile.model_validate({"azure": settings}), Path.cwd(), None),
                           CallSeam())
    ensure_signing_key(clients, clients.secrets)
