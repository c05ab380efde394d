"""Every attack of issue 13 that a manifest can make, run as `apply --auto-approve` against
each cloud where it applies (moto for AWS, our GCP and Azure emulators, reached by the real
SDKs), asserting the refusal, its exit code and that the cloud holds nothing afterwards.

The per-guard suites beside this file test each guard in depth; this one is the attacker's
view: the command a pipeline runs, and the state the cloud ends in. A positive control per
cloud proves the "nothing created" measurement sees a creation.
"""

# ruff: noqa: F811  (the shared fixtures clouds/emulated are imported, then named as arguments)
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from support.attack_clouds import (  # noqa: F401  (clouds, emulated: fixtures)
    BUCKET,
    CONTAINER,
    CONTROLS,
    FOREIGN_POOL,
    OTHER_KEY,
    OWN_ROLE,
    POOL,
    ROGUE_ISSUER,
    VAULT,
    Cloud,
    _run,
    clouds,
    emulated,
    github,
    kubernetes,
    manifest,
    raw,
    template,
)
from support.aws import ACCOUNT


@dataclass(frozen=True)
class Attack:
    """One manifest an attacker writes, the exit code that refuses it, and words of the refusal."""

    provider: str
    name: str
    text: str
    code: int
    words: str


ATTACKS = [
    # 1. case: AWS and Azure compare action names without regard to case
    Attack("aws", "case-variant-escalation",
           manifest("aws", raw("iam:putrolepolicy, iam:passrole, sts:assumerole", OWN_ROLE)), 3,
           "can escalate privilege"),
    Attack("azure", "case-variant-escalation",
           manifest("azure", raw("Microsoft.authorization/roleassignments/write", CONTAINER)), 3,
           "can escalate privilege"),
    # 2. self-approved escalation: a reason in the manifest approves nothing
    Attack("aws", "self-approved-escalation",
           manifest("aws", raw("iam:PassRole", OWN_ROLE, escalation=True)), 3,
           "a manifest cannot approve its own escalation"),
    Attack("gcp", "self-approved-escalation",
           manifest("gcp", raw("iam.serviceAccounts.actAs", "projects/acme-prod", escalation=True)), 3,
           "a manifest cannot approve its own escalation"),
    Attack("azure", "self-approved-escalation",
           manifest("azure", raw("Microsoft.Authorization/roleAssignments/write", CONTAINER,
                                 escalation=True)), 3,
           "a manifest cannot approve its own escalation"),
    # 4. trust roots chosen by the manifest
    Attack("aws", "foreign-github-owner", manifest("aws", template("queue.consume", (
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q")), github("attacker")), 3, "trust.allowedGithubOwners"),
    Attack("gcp", "foreign-github-owner", manifest("gcp", template("object-storage.read", (
        BUCKET)), github("attacker", pool=True)), 3, "trust.allowedGithubOwners"),
    Attack("azure", "foreign-github-owner", manifest("azure", template("object-storage.read", CONTAINER),
                                                     github("attacker")), 3, "trust.allowedGithubOwners"),
    Attack("aws", "rogue-issuer", manifest("aws", template("queue.consume", (
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q")), kubernetes(ROGUE_ISSUER)), 3, "trust.allowedIssuers"),
    Attack("gcp", "rogue-issuer", manifest("gcp", template("object-storage.read", BUCKET),
                                           kubernetes(ROGUE_ISSUER, POOL)), 3, "trust.allowedIssuers"),
    Attack("azure", "rogue-issuer", manifest("azure", template("object-storage.read", CONTAINER),
                                             kubernetes(ROGUE_ISSUER)), 3, "trust.allowedIssuers"),
    Attack("gcp", "foreign-pool", manifest("gcp", template("object-storage.read", BUCKET),
                                           github().replace("ref: refs/heads/main\n",
                                                            f"ref: refs/heads/main\n        "
                                                            f"workloadIdentityPool: {FOREIGN_POOL}\n")),
           3, "not in the workload's project"),
    Attack("aws", "unlisted-aws-service", manifest("aws", template("queue.consume", (
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q")), "      - kind: aws-service\n"
        "        service: ec2.amazonaws.com\n"), 3, "trust.allowedAwsServices"),
    # 5. other workloads' keys, and whole vaults
    Attack("aws", "another-workloads-key", manifest("aws", template("secret.read", OTHER_KEY)), 3,
           "another workload's"),
    Attack("gcp", "another-workloads-key", manifest("gcp", template(
        "secret.read", "projects/acme-prod/secrets/workload-ids_prod_partner-feed")), 3,
        "another workload's"),
    Attack("azure", "whole-vault", manifest("azure", template("secret.read", VAULT)), 3,
           "a grant on a whole Key Vault"),
    # 8. resources that are not one exact resource
    Attack("aws", "policy-variable", manifest("aws", raw("dynamodb:GetItem", (
        f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/${{aws:username}}"))), 1, "policy variable"),
    Attack("aws", "foreign-account-arn", manifest("aws", raw("dynamodb:GetItem", (
        "arn:aws:dynamodb:eu-west-1:999999999999:table/t"))), 1, "account 999999999999"),
    # 9. log injection through an echoed string
    Attack("aws", "workflow-command-injection", manifest("aws", template("queue.consume", (
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q")), description='"ok\\n::add-mask::iam:PutRolePolicy"'), 1,
        "description"),
    # 11. and the other side of real catalogs: names that do not exist
    Attack("aws", "unknown-action", manifest("aws", raw("dynamodb:GetItemz", (
        f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/t"))), 1, "did you mean dynamodb:GetItem"),
    Attack("gcp", "case-variant-permission",
           manifest("gcp", raw("Storage.objects.get", "projects/acme-prod")), 1, "storage.objects.get"),
    Attack("azure", "data-action-as-action", manifest("azure", raw(
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", CONTAINER)), 1,
        "move it from actions to dataActions"),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: f"{a.provider}-{a.name}")
def test_attack_is_refused_and_the_cloud_holds_nothing_new(attack: Attack, clouds: dict[str, Cloud],
                                                           tmp_path: Path) -> None:
    cloud = clouds[attack.provider]
    before = cloud.holdings()
    result, path = _run(cloud, attack.text, tmp_path)
    assert result.code == attack.code, result
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    first = result.err.splitlines()[0]
    assert first.startswith(f"{path}:"), first  # positioned in the manifest
    assert attack.words in result.err, result.err
    assert not any(line.startswith("::") for line in (result.out + result.err).splitlines())
    assert cloud.holdings() == before


@pytest.mark.parametrize("provider", sorted(CONTROLS))
def test_control_a_legitimate_manifest_is_created(provider: str, clouds: dict[str, Cloud],
                                                  tmp_path: Path) -> None:
    cloud = clouds[provider]
    before = cloud.holdings()
    result, _ = _run(cloud, CONTROLS[provider], tmp_path)
    assert result.code == 0, result.err
    assert cloud.holdings() != before
