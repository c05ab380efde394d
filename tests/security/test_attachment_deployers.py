"""Deployers are a trust root: whoever may attach an identity to a runtime (a Cloud Run
service, an App Service site) may run code as it. A manifest naming a deployer the config's
``trust.allowedDeployers`` does not list is refused (exit 3) and nothing changes in the
cloud; on AWS, where iam:PassRole lives on the deployer's own policy, an attachment's
service must be in ``trust.allowedAwsServices``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.attachments import AZURE_DEPLOYERS, GCP_DEPLOYERS, attached
from support.cli import run_cli
from support.contract import Cloud, cloud, folder
from support.trust import TEST_TRUST_DATA

__all__ = ["cloud", "folder"]

MALLORY = {"gcp": "user:mallory@evil.example", "azure": "9d3b0a10-0000-4000-8000-000000000bad"}


def _allow(deployers: list[str], **more: object) -> None:
    config = Path("workload-ids.yaml")
    trust = {**TEST_TRUST_DATA, "allowedDeployers": deployers, **more}
    config.write_text(re.sub(r"(?m)^trust: .*$", "trust: " + json.dumps(trust), config.read_text()))


@pytest.mark.parametrize("cloud", ["gcp", "azure"], indirect=True)
def test_an_unlisted_deployer_is_refused_and_nothing_changes(cloud: Cloud, folder: Path) -> None:
    listed = GCP_DEPLOYERS if cloud.name == "gcp" else AZURE_DEPLOYERS
    _allow(listed)
    if cloud.name == "azure":
        for principal in [*listed, MALLORY["azure"]]:
            cloud.local.arm.add_principal(principal)
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    path = folder / "svc-att.yaml"
    path.write_text(attached(cloud, [listed[0], MALLORY[cloud.name]]))
    before = cloud.snapshot()
    for verb in (("validate",), ("plan",), ("apply", "--auto-approve")):
        result = run_cli(*verb, str(path))
        assert result.code == 3, (verb, result.out, result.err)
        assert f"guardrail: deployer {MALLORY[cloud.name]} is not in the config's trust.allowedDeployers" \
            in result.err
        assert f'trust: {{allowedDeployers: ["{MALLORY[cloud.name]}"]}}' in result.err
        assert re.search(rf"{re.escape(str(path))}:\d+:\d+: guardrail: deployer", result.err)
    assert cloud.snapshot() == before
    # Listed, the same manifest applies.
    _allow([*listed, MALLORY[cloud.name]])
    assert run_cli("apply", "--auto-approve", str(path)).code == 0


@pytest.mark.parametrize("cloud", ["aws"], indirect=True)
def test_an_aws_attachment_needs_its_service_listed(cloud: Cloud, folder: Path) -> None:
    _allow([], allowedAwsServices=["ecs-tasks.amazonaws.com"])
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    path = folder / "svc-att.yaml"
    path.write_text(attached(cloud))
    before = cloud.snapshot()
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == 3, result.out + result.err
    assert "attachedTo kind lambda trusts the service lambda.amazonaws.com, which is not in " \
        "trust.allowedAwsServices (ecs-tasks.amazonaws.com)" in result.err
    assert cloud.snapshot() == before
