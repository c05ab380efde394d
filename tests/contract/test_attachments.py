"""``spec.credentials.attachedTo`` on every provider, through the CLI: the identity a
runtime runs as (a Cloud Run service's service account, an App Service's managed identity,
a Lambda function's role), with exactly the grants its deployers need to attach it and no
other, shown in the plan in words, removed by a mover."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.attachments import (
    AZURE_DEPLOYERS,
    GCP_DEPLOYERS,
    MI_OPERATOR,
    SUB,
    attached,
    expected,
    held,
    identity_scope,
)
from support.cli import run_cli
from support.contract import Cloud

from workload_ids.providers.gcp import render as gcp_render


def test_apply_grants_exactly_what_attachment_needs(cloud: Cloud, att: Path) -> None:
    applied = run_cli("apply", "--auto-approve", str(att))
    assert applied.code == 0, applied.err + applied.out
    assert held(cloud) == expected(cloud)
    assert run_cli("plan", str(att), "--detailed-exitcode").code == 0


def test_plan_shows_the_attachment_and_its_deployers_in_words(cloud: Cloud, att: Path) -> None:
    plan = run_cli("plan", str(att), "--output", "json")
    assert plan.code == 0, plan.err
    (create,) = [c for c in json.loads(plan.out)["changes"] if c["workload"] == "prod/svc-att"]
    rows = create["trust"]["added"]
    text = run_cli("plan", str(att)).out
    if cloud.name == "aws":
        assert rows == [{"principal": "Service:lambda.amazonaws.com", "subject": "account 123456789012"}]
        assert "+ trust Service:lambda.amazonaws.com  account 123456789012" in text
        return
    runtime = "Cloud Run service svc-att in europe-west1" if cloud.name == "gcp" else \
        "App Service site svc-att"
    deployers = GCP_DEPLOYERS if cloud.name == "gcp" else AZURE_DEPLOYERS
    assert rows[0]["principal"] == runtime
    assert rows[0]["subject"].endswith("deployed by " + ", ".join(deployers))
    assert [r["principal"] for r in rows[1:]] == deployers
    assert all("may attach it" in r["subject"] for r in rows[1:])
    assert create["deployers"]["added"] == deployers
    assert f"+ trust {runtime}  runs as the" in text
    for deployer in deployers:
        assert f"+ trust {deployer}  may attach it" in text


@pytest.mark.parametrize("cloud", ["gcp", "azure"], indirect=True)  # AWS takes no deployers
def test_mover_removes_a_deployer_and_the_plan_says_so(cloud: Cloud, att: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(att)).code == 0
    keep = (GCP_DEPLOYERS if cloud.name == "gcp" else AZURE_DEPLOYERS)[:1]
    gone = (GCP_DEPLOYERS if cloud.name == "gcp" else AZURE_DEPLOYERS)[1]
    att.write_text(attached(cloud, keep))
    plan = run_cli("plan", str(att), "--output", "json", "--detailed-exitcode")
    assert plan.code == 2, plan.err
    (change,) = [c for c in json.loads(plan.out)["changes"] if c["action"] == "update-deployers"]
    assert change["deployers"]["removed"] == [gone] and change["deployers"]["added"] == []
    assert change["trust"]["removed"][0]["principal"] == gone
    assert f"- trust {gone}  may attach it" in run_cli("plan", str(att)).out
    assert run_cli("apply", "--auto-approve", str(att)).code == 0
    assert held(cloud) == expected(cloud, keep)
    assert run_cli("plan", str(att), "--detailed-exitcode").code == 0


@pytest.mark.parametrize("cloud", ["gcp", "azure"], indirect=True)  # AWS: PassRole is the deployer's
def test_a_deployer_added_by_hand_is_removed(cloud: Cloud, att: Path) -> None:
    """Whoever may attach the identity may run code as it: the manifest says who, whole."""
    att.write_text(attached(cloud, []))
    assert run_cli("apply", "--auto-approve", str(att)).code == 0
    assert held(cloud) == expected(cloud, [])
    if cloud.name == "gcp":
        from google.iam.v1 import iam_policy_pb2, policy_pb2
        iam = cloud.local.emulators[0]
        email = gcp_render.service_account_email(gcp_render.account_id("wid", "prod", "svc-att"), "acme-prod")
        with iam._lock:  # what someone with setIamPolicy on the account does by hand
            iam.backend.set_account_policy(iam_policy_pb2.SetIamPolicyRequest(
                resource=f"projects/acme-prod/serviceAccounts/{email}", policy=policy_pb2.Policy(
                    bindings=[policy_pb2.Binding(role="roles/iam.serviceAccountUser",
                                                 members=["user:mallory@evil.example"])])))
    else:
        from support.azure import arm_clients
        _, authz = arm_clients(cloud.local)
        cloud.local.arm.add_principal("9d3b0a10-0000-4000-8000-000000000bad")
        authz.role_assignments.create(identity_scope(), "5d1f2c3a-7b9e-4c2d-8e1f-0a9b8c7d6e5f", {
            "role_definition_id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/"
                                  f"roleDefinitions/{MI_OPERATOR}",
            "principal_id": "9d3b0a10-0000-4000-8000-000000000bad"})
    # The identity's own grants are read when the manifest changes (as federation is,
    # alone or in a fleet): the workload moves to another service meanwhile.
    att.write_text(attached(cloud, [], runtime="svc-att-v2"))
    plan = run_cli("plan", str(att.parent), "--output", "json")
    removed = [r for c in json.loads(plan.out)["changes"] if c["action"] == "update-deployers"
               for r in c["deployers"]["removed"]]
    assert removed in (["user:mallory@evil.example"], ["9d3b0a10-0000-4000-8000-000000000bad"]), plan.out
    assert run_cli("apply", "--auto-approve", str(att)).code == 0
    assert held(cloud) == expected(cloud, [])


@pytest.mark.parametrize("cloud", ["gcp", "azure"], indirect=True)  # AWS takes no deployers
def test_a_plan_of_deployers_is_the_same_alone_or_in_a_fleet(cloud: Cloud, att: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(att)).code == 0
    keep = (GCP_DEPLOYERS if cloud.name == "gcp" else AZURE_DEPLOYERS)[1:]
    att.write_text(attached(cloud, keep))
    alone = json.loads(run_cli("plan", str(att), "--output", "json").out)["changes"]
    fleet = [c for c in json.loads(run_cli("plan", str(att.parent), "--output", "json").out)["changes"]
             if c["workload"] == "prod/svc-att"]
    assert alone == fleet
    (change,) = [c for c in alone if c["action"] == "update-deployers"]
    assert change["deployers"]["removed"] == (GCP_DEPLOYERS if cloud.name == "gcp" else AZURE_DEPLOYERS)[:1]


@pytest.mark.parametrize("cloud", ["azure"], indirect=True)  # Entra object ids are Azure's
def test_an_azure_deployer_the_directory_does_not_know_says_what_to_check(cloud: Cloud, att: Path) -> None:
    unknown = "0f0f0f0f-0000-4000-8000-00000000cafe"
    config = Path("workload-ids.yaml")
    config.write_text(config.read_text().replace(f'"{AZURE_DEPLOYERS[0]}"', f'"{unknown}"'))
    att.write_text(attached(cloud, [unknown]))
    applied = run_cli("apply", "--auto-approve", str(att))
    assert applied.code != 0
    assert f"deployer {unknown} of prod/svc-att is not a principal of this tenant's directory" in applied.err
    assert "throttling" not in applied.err and "Traceback" not in applied.err


def test_a_mover_that_drops_the_attachment_drops_what_it_granted(cloud: Cloud, att: Path) -> None:
    """From attachedTo back to federation: the deployers' grants go (GCP, Azure), and on
    AWS the role no longer trusts the Lambda service."""
    assert run_cli("apply", "--auto-approve", str(att)).code == 0
    att.write_text(cloud.manifest("svc-att", ""))  # the contract's manifest: federation only
    assert run_cli("apply", "--auto-approve", str(att)).code == 0
    if cloud.name == "aws":
        statements = held(cloud)["Statement"]
        assert statements and all("Service" not in s["Principal"] for s in statements)
    else:
        assert [b for b in held(cloud) if "serviceAccountUser" in str(b) or MI_OPERATOR in str(b)] == []
    assert run_cli("plan", str(att), "--detailed-exitcode").code == 0
