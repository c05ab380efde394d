"""Azure's failures leave the seam as CloudError of their kind (issue 15 stage 2), whichever
part registered the SDK's classifier: the Azure code decides by ``CloudError.kind``, so one
registration without translation would let an azure-core error through that no
``except CloudError`` catches (a missing identity read as a crash)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import AzureError

from workload_ids.calls import CallSeam, FailOperation, RetryPolicy
from workload_ids.config import Config, ConfigFile
from workload_ids.errors import CloudError


def _seam() -> CallSeam:
    return CallSeam(RetryPolicy(max_attempts=2), seed=7, sleep=lambda s: None)


def _register_clients(seam: CallSeam) -> str:
    from workload_ids.providers.azure.clients import AzureClients
    AzureClients(Config(ConfigFile.model_validate({}), Path.cwd(), None), seam)
    return "azure"


def _register_sink(seam: CallSeam) -> str:
    from workload_ids.audit.sink import _register
    _register(seam, "azblob")
    return "azblob"


def _register_audit_key(seam: CallSeam) -> str:
    from workload_ids.audit.azure_blob import PROVIDER, register
    register(seam)  # what audit.keys does before it reads an Azure audit key
    return PROVIDER


@pytest.mark.parametrize("register", [_register_clients, _register_sink, _register_audit_key],
                         ids=["clients", "audit-sink", "audit-key"])
@pytest.mark.parametrize(("kind", "attempts"), [("not-found", 1), ("conflict", 1), ("denied", 1),
                                                ("throttle", 2), ("transient", 2)])
def test_every_registration_of_azure_translates(register: Any, kind: str, attempts: int) -> None:
    seam = _seam()
    provider = register(seam)
    seam.inject(FailOperation("msi.user_assigned_identities.get", kind))
    with pytest.raises(CloudError) as caught:
        seam.call(provider, "msi.user_assigned_identities.get", lambda: "ok")
    assert caught.value.kind == kind and caught.value.operation == "msi.user_assigned_identities.get"
    assert isinstance(caught.value.__cause__, AzureError)
    assert seam.stats.calls[f"{provider}:msi.user_assigned_identities.get"] == attempts
    # An exception no classifier knows is a bug, not a cloud error: it passes unchanged.
    with pytest.raises(ZeroDivisionError):
        seam.call(provider, "msi.user_assigned_identities.list", lambda: 1 / 0)


def test_an_azure_failure_names_the_sdk_operation_and_what_to_do(tmp_path: Path) -> None:
    """A denied read reaches the user as it left the seam: the operation, the code the SDK
    error carries, and the hint for its kind."""
    from workload_ids.clouds import connect
    seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
    cloud = connect("azure", Config(ConfigFile.model_validate({"azure": {"sandboxCredentials": True}}),
                                    tmp_path, None), seam)
    seam.inject(FailOperation("authorization.role_definitions.list", "denied"))
    with pytest.raises(CloudError) as caught:
        cloud.identities.verify_target("0b1f6471-1bf0-4dda-aec3-cb9272f09590")
    assert caught.value.kind == "denied" and caught.value.operation == "authorization.role_definitions.list"
    said = caught.value.diagnostics()
    assert "authorization.role_definitions.list failed: ClientAuthenticationError" in said
    assert "Permissions the tool needs" in said
