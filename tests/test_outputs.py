"""What apply hands a deployment: Azure's client id and principal id (AKS workload identity
and azure/login need them), GCP's account email and unique id; the same on the run that
creates the identity and on every later run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import run_cli
from support.trust import TEST_TRUST

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _outputs(config: Path, manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    github = tmp_path / "github_output"
    github.write_text("")
    monkeypatch.setenv("GITHUB_OUTPUT", str(github))
    result = run_cli("apply", "--auto-approve", "--config", str(config), "--output", "json", str(manifest))
    assert result.code == 0, result.err
    [workload] = json.loads(result.out)["results"]
    written = dict(line.split("=", 1) for line in github.read_text().splitlines() if "=" in line)
    assert {k: v for k, v in written.items() if k != "outputs_json"} == workload["outputs"]
    return dict(workload["outputs"])


def test_azure_outputs_carry_the_client_and_principal_ids(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from support.azure import arm_clients

    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure()
    try:
        config = tmp_path / "workload-ids.yaml"
        config.write_text(local.config_block() + TEST_TRUST)
        manifest = EXAMPLES / "azure" / "order-reconciliation.yaml"
        first = _outputs(config, manifest, tmp_path, monkeypatch)
        msi, _ = arm_clients(local)
        [identity] = list(msi.user_assigned_identities.list_by_subscription())
        assert first["client_id"] == identity.client_id and first["principal_id"] == identity.principal_id
        assert _outputs(config, manifest, tmp_path, monkeypatch) == first  # a run with nothing to do
    finally:
        local.stop()


def test_gcp_outputs_carry_the_account_email_and_unique_id(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from workload_ids.sandbox.gcp.local import start_local_gcp
    local = start_local_gcp()
    try:
        config = tmp_path / "workload-ids.yaml"
        config.write_text(local.config_block() + TEST_TRUST)
        manifest = EXAMPLES / "gcp" / "catalog-sync.yaml"
        first = _outputs(config, manifest, tmp_path, monkeypatch)
        iam = local.emulators[0]
        account = iam.backend.accounts[first["unique_id"]]
        assert account.email == first["service_account"]
        assert _outputs(config, manifest, tmp_path, monkeypatch) == first
    finally:
        local.stop()


def test_a_key_mode_plan_names_the_secret_as_the_store_does(tmp_path: Path) -> None:
    """Secret Manager ids allow no '/', Key Vault names neither: the plan shows the name a
    person will find the key under, never a blank or the unmapped pattern."""
    from support.azure import KEY_MODE as AZURE_KEY_MODE
    from support.gcp import KEY_MODE as GCP_KEY_MODE

    from workload_ids.sandbox.azure.local import start_local_azure
    from workload_ids.sandbox.gcp.local import start_local_gcp
    gcp, azure = start_local_gcp(), start_local_azure()
    try:
        config = tmp_path / "workload-ids.yaml"
        config.write_text(gcp.config_block() + azure.config_block() + TEST_TRUST)
        for text, secret in ((GCP_KEY_MODE, "workload-ids_prod_vendor-sync"),
                             (AZURE_KEY_MODE, "workload-ids--prod--vendor-sync")):
            manifest = tmp_path / "m.yaml"
            manifest.write_text(text)
            plan = run_cli("plan", "--config", str(config), str(manifest))
            assert plan.code == 0, plan.err
            assert f"+ issue-key into secret {secret}\n" in plan.out, plan.out
    finally:
        gcp.stop()
        azure.stop()
