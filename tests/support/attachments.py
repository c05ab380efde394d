"""Manifests and reads for ``spec.credentials.attachedTo`` on every cloud under contract:
svc-att's manifest (trusted only through an attachment), the ``att`` fixture that writes it
with its deployers listed in the config, and what each cloud holds for it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from workload_ids.providers.azure import render as azure_render
from workload_ids.providers.gcp import render as gcp_render

from .contract import Cloud
from .trust import TEST_TRUST_DATA

GCP_DEPLOYERS = ["group:deployers@acme.example", "serviceAccount:ci@acme-ci.iam.gserviceaccount.com"]
AZURE_DEPLOYERS = ["3f2504e0-4f89-41d3-9a0c-0305e82c3301", "7c9e6679-7425-40de-944b-e07fc1f90ae7"]
SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
SITE = f"/subscriptions/{SUB}/resourceGroups/rg-orders/providers/Microsoft.Web/sites/svc-att"
MI_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"


def attached(cloud: Cloud, deployers: list[str] | None = None, runtime: str = "svc-att") -> str:
    """The cloud's manifest for svc-att, trusted only through an attachment (to the Cloud
    Run service or site ``runtime``)."""
    if cloud.name == "gcp":
        who = GCP_DEPLOYERS if deployers is None else deployers
        block = (f"    attachedTo:\n      - kind: cloud-run\n        service: {runtime}\n"
                 f"        region: europe-west1\n        deployers: {json.dumps(who)}\n")
    elif cloud.name == "azure":
        who = AZURE_DEPLOYERS if deployers is None else deployers
        site = SITE.replace("svc-att", runtime)
        block = (f"    attachedTo:\n      - kind: app-service\n        site: {site}\n"
                 f"        deployers: {json.dumps(who)}\n")
    else:
        block = "    attachedTo:\n      - kind: lambda\n        function: svc-att\n"
    text = cloud.manifest("svc-att", "")
    return re.sub(r"  credentials:\n(    .*\n|      .*\n)*", "  credentials:\n" + block, text)


@pytest.fixture
def att(cloud: Cloud, folder: Path) -> Path:
    """svc-att's manifest beside the folder's two, and its deployers listed in the config."""
    config = Path("workload-ids.yaml")
    trust = {**TEST_TRUST_DATA, "allowedDeployers": [*GCP_DEPLOYERS, *AZURE_DEPLOYERS]}
    config.write_text(re.sub(r"(?m)^trust: .*$", "trust: " + json.dumps(trust), config.read_text()))
    if cloud.name == "azure":
        for principal in AZURE_DEPLOYERS:
            cloud.local.arm.add_principal(principal)
    path = folder / "svc-att.yaml"
    path.write_text(attached(cloud))
    return path


def held(cloud: Cloud) -> Any:
    """What the cloud holds for svc-att's attachment, in the cloud's own shapes."""
    if cloud.name == "gcp":
        iam = cloud.local.emulators[0]
        email = gcp_render.service_account_email(gcp_render.account_id("wid", "prod", "svc-att"), "acme-prod")
        return sorted((b.role, tuple(sorted(b.members))) for b in iam.service_account_policy(email).bindings)
    if cloud.name == "azure":
        from .azure import arm_clients
        _, authz = arm_clients(cloud.local)
        scope = identity_scope()
        return sorted((a.principal_id, a.role_definition_id, a.scope)
                      for a in authz.role_assignments.list_for_scope(scope, filter="atScope()")
                      if a.scope.lower() == scope.lower())
    role = cloud.local.get_role(RoleName="wid_prod_svc-att")["Role"]
    return role["AssumeRolePolicyDocument"]


def identity_scope() -> str:
    """svc-att's managed identity's resource id."""
    return (f"/subscriptions/{SUB}/resourceGroups/rg-orders/providers/Microsoft.ManagedIdentity/"
            f"userAssignedIdentities/{azure_render.identity_name('wid', 'prod', 'svc-att')}")


def expected(cloud: Cloud, deployers: list[str] | None = None) -> Any:
    """What :func:`held` reads when the deployers are ``deployers`` (the manifest's by default)."""
    if cloud.name == "gcp":
        who = GCP_DEPLOYERS if deployers is None else deployers
        return [("roles/iam.serviceAccountUser", tuple(sorted(who)))] if who else []
    if cloud.name == "azure":
        who = AZURE_DEPLOYERS if deployers is None else deployers
        role = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{MI_OPERATOR}"
        return sorted((p, role, identity_scope()) for p in who)
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "AwsServices", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}}]}
