"""Issue 14 item 3 (review H6), the cases test_secrets_and_takeover leaves out: a key
secret that someone else prepared, or opened after we made it, gets no key on any cloud.

Tags and annotations are easy to copy, so each attack here carries our marker: AWS, a
planted resource policy, our own secret moved to a foreign KMS key, a replica in another
region; GCP, an extra IAM binding on a secret with our annotations; Azure, a Key Vault
secret (or its metadata secret) that workload-ids did not write. Every refusal exits 1,
says why, issues no key and leaves the secret as it was. Real boto3 against moto, the
real Google and Azure SDKs against our emulators.
"""

# ruff: noqa: F811  (the shared fixtures aws_vendor/gcp_local are imported, then named as arguments)
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.aws import SECRET, USER
from support.cli import run_cli
from support.gcp import keys as gcp_keys
from support.secret_stores import (  # noqa: F401  (aws_vendor, gcp_local: fixtures)
    GCP_SECRET,
    OPEN_TO_MALLORY,
    _aws_keys,
    _bind,
    _sm,
    _versions,
    aws_vendor,
    gcp_local,
)
from support.trust import TEST_TRUST

from workload_ids.providers.gcp import render

NO_KEY = "no key was issued"


def _refused(result: Any, why: str) -> None:
    text = result.out + result.err
    assert result.code == 1, text
    assert why in text and NO_KEY in text, text
    assert "Traceback" not in text


# --- AWS -----------------------------------------------------------------------------

def _our_tags_then_gone(aws: Any, aws_vendor: Path) -> list[dict[str, str]]:
    """Apply once, keep the secret's tags (our marker, as anyone can read them), then
    remove the secret and the key: the name is free again for whoever is quicker."""
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    tags: list[dict[str, str]] = _sm().describe_secret(SecretId=SECRET)["Tags"]
    _sm().delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
    for key in _aws_keys(aws):
        aws.delete_access_key(UserName=USER, AccessKeyId=key)
    return tags


def test_aws_copied_marker_with_a_planted_policy_gets_no_key(aws: Any, aws_vendor: Path) -> None:
    tags = _our_tags_then_gone(aws, aws_vendor)
    sm = _sm()
    sm.create_secret(Name=SECRET, Tags=tags)
    sm.put_resource_policy(SecretId=SECRET, ResourcePolicy=OPEN_TO_MALLORY)
    _refused(run_cli("apply", "--auto-approve", str(aws_vendor)), "has a resource policy that grants access")
    assert _aws_keys(aws) == [] and _versions() == {}
    planted = sm.get_resource_policy(SecretId=SECRET)["ResourcePolicy"]
    assert json.loads(planted) == json.loads(OPEN_TO_MALLORY)


def _deny_all_but(*exempt: str, action: str = "secretsmanager:GetSecretValue") -> str:
    """A Deny-only policy in the shape workload-ids writes, leaving ``exempt`` out."""
    from workload_ids.providers.aws.secret_store import POLICY_SID
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": POLICY_SID, "Effect": "Deny", "Principal": "*", "Action": [action], "Resource": "*",
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": list(exempt)}}}]})


ROOT = "arn:aws:iam::123456789012:root"
MALLORY = "arn:aws:iam::123456789012:user/mallory"


@pytest.mark.parametrize(("policy", "why"), [
    # Deny only, so it "grants nothing": but it leaves mallory out of the deny, and
    # mallory's own IAM policy (GetSecretValue on *) then reads every value.
    (_deny_all_but(ROOT, MALLORY), f"exempts {MALLORY} from its deny"),
    # Deny only, and denies nothing that keeps a reader out.
    (_deny_all_but(ROOT, action="secretsmanager:DeleteSecret"), "is not the deny workload-ids writes"),
    (json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",
                                                         "Action": "secretsmanager:DeleteSecret",
                                                         "Resource": "*"}]}),
     "workload-ids did not write"),
], ids=["exempts-mallory", "denies-something-else", "no-statement-of-ours"])
def test_aws_copied_marker_with_a_deny_only_policy_not_ours_gets_no_key(
        aws: Any, aws_vendor: Path, policy: str, why: str) -> None:
    tags = _our_tags_then_gone(aws, aws_vendor)
    sm = _sm()
    sm.create_secret(Name=SECRET, Tags=tags)
    sm.put_resource_policy(SecretId=SECRET, ResourcePolicy=policy)
    result = run_cli("apply", "--auto-approve", str(aws_vendor))
    _refused(result, why)
    assert "delete-resource-policy" in result.out + result.err
    assert _aws_keys(aws) == [] and _versions() == {}
    assert json.loads(sm.get_resource_policy(SecretId=SECRET)["ResourcePolicy"]) == json.loads(policy)


def test_aws_our_deny_rewritten_to_exempt_someone_stops_rotation_until_repaired(
        aws: Any, aws_vendor: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    [first] = _aws_keys(aws)
    sm = _sm()
    ours = json.loads(sm.get_resource_policy(SecretId=SECRET)["ResourcePolicy"])
    exempt = ours["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    sm.put_resource_policy(SecretId=SECRET, ResourcePolicy=_deny_all_but(*exempt, MALLORY))
    _refused(run_cli("rotate", "--now", "vendor-sync", str(aws_vendor)), f"exempts {MALLORY}")
    assert _aws_keys(aws) == [first]
    # What the message says: delete the policy; the next run writes ours again, then rotates.
    sm.delete_resource_policy(SecretId=SECRET)
    assert run_cli("rotate", "--now", "vendor-sync", str(aws_vendor)).code == 0
    assert json.loads(sm.get_resource_policy(SecretId=SECRET)["ResourcePolicy"]) == ours
    assert len(_aws_keys(aws)) == 2


def test_aws_our_secret_moved_to_a_foreign_kms_key_gets_no_new_key(aws: Any, aws_vendor: Path) -> None:
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    [first] = _aws_keys(aws)
    stored = _versions()
    kms = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    _sm().update_secret(SecretId=SECRET, KmsKeyId=kms)  # someone with UpdateSecret and their own key
    _refused(run_cli("rotate", "--now", "vendor-sync", str(aws_vendor)), f"is encrypted with KMS key {kms}")
    assert _aws_keys(aws) == [first] and _versions() == stored


def test_aws_replicated_secret_gets_no_key(aws: Any, aws_vendor: Path) -> None:
    """A replica is a second copy under the replica region's KMS key and IAM: refused
    whether it was planted with a copied marker or added to our own secret later."""
    tags = _our_tags_then_gone(aws, aws_vendor)
    sm = _sm()
    sm.create_secret(Name=SECRET, Tags=tags, AddReplicaRegions=[{"Region": "eu-west-1"}])
    _refused(run_cli("apply", "--auto-approve", str(aws_vendor)),
             f"secret {SECRET} is replicated to eu-west-1")
    assert _aws_keys(aws) == [] and _versions() == {}
    # Ours, then replicated by someone else: the next rotation stores nothing there.
    sm.remove_regions_from_replication(SecretId=SECRET, RemoveReplicaRegions=["eu-west-1"])
    sm.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
    assert run_cli("apply", "--auto-approve", str(aws_vendor)).code == 0
    [first] = _aws_keys(aws)
    sm.replicate_secret_to_regions(SecretId=SECRET, AddReplicaRegions=[{"Region": "eu-west-2"}])
    _refused(run_cli("rotate", "--now", "vendor-sync", str(aws_vendor)), "is replicated to eu-west-2")
    assert _aws_keys(aws) == [first]


# --- GCP -----------------------------------------------------------------------------

def _our_annotations_then_gone(iam: Any, client: Any) -> dict[str, str]:
    """Our secret's annotations (the marker, readable by anyone who can list secrets);
    then the secret and the account's key are removed, freeing the name."""
    annotations = {k: v for k, v in client.get_secret(name=GCP_SECRET).annotations.items()
                   if not k.startswith("wid-key-")}
    assert annotations.get("workload-ids_managed-by") == "workload-ids"
    client.delete_secret(name=GCP_SECRET)
    email = f"{render.account_id('wid', 'prod', 'vendor-sync')}@acme-prod.iam.gserviceaccount.com"
    for key_id in gcp_keys(iam):  # the key goes with its secret: no stray key is left
        iam.client().delete_service_account_key(name=f"projects/acme-prod/serviceAccounts/{email}/keys/{key_id}")
    return annotations


def test_gcp_copied_annotations_with_a_binding_get_no_key(gcp_local: tuple[Any, Path]) -> None:
    """The secret someone pre-creates carries our annotations (copied from the one we
    made, then deleted) and a binding for themselves."""
    gcp, folder = gcp_local
    iam, _, sm, _ = gcp.emulators
    client = sm.client()
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    annotations = _our_annotations_then_gone(iam, client)
    client.create_secret(request={"parent": "projects/acme-prod", "secret_id": GCP_SECRET.rsplit("/", 1)[1],
                                  "secret": {"replication": {"automatic": {}}, "annotations": annotations}})
    _bind(client, "user:mallory@example.com")
    _refused(run_cli("apply", "--auto-approve", str(folder)), "has IAM bindings for user:mallory@example.com")
    assert gcp_keys(iam) == {}  # no key issued
    assert list(client.list_secret_versions(request={"parent": GCP_SECRET})) == []
    assert dict(client.get_secret(name=GCP_SECRET).annotations) == annotations


@pytest.mark.parametrize("replication", [
    {"automatic": {"customer_managed_encryption": {
        "kms_key_name": "projects/mallory-kms/locations/global/keyRings/r/cryptoKeys/k"}}},
    {"user_managed": {"replicas": [
        {"location": "europe-west1"},
        {"location": "us-east1", "customer_managed_encryption": {
            "kms_key_name": "projects/mallory-kms/locations/us-east1/keyRings/r/cryptoKeys/k"}}]}},
], ids=["automatic", "one-replica"])
def test_gcp_copied_annotations_under_a_foreign_key_get_no_key(gcp_local: tuple[Any, Path],
                                                               replication: dict[str, Any]) -> None:
    """No binding this time, but a customer-managed key the attacker holds (on the whole
    secret, or on one replica of it)."""
    gcp, folder = gcp_local
    iam, _, sm, _ = gcp.emulators
    client = sm.client()
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    annotations = _our_annotations_then_gone(iam, client)
    client.create_secret(request={"parent": "projects/acme-prod", "secret_id": GCP_SECRET.rsplit("/", 1)[1],
                                  "secret": {"replication": replication, "annotations": annotations}})
    _refused(run_cli("apply", "--auto-approve", str(folder)), "is encrypted with a customer-managed key")
    assert gcp_keys(iam) == {}
    assert list(client.list_secret_versions(request={"parent": GCP_SECRET})) == []


# --- Azure ---------------------------------------------------------------------------

@pytest.fixture
def azure_vendor(manifests: Any) -> Iterator[tuple[Any, Path]]:
    from support.azure import KEY_MODE

    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure()
    Path("workload-ids.yaml").write_text(local.config_block() + "credentials: {verify: {interval: 0s}}\n"
                                         + TEST_TRUST)
    try:
        yield local, manifests({"vendor.yaml": KEY_MODE})
    finally:
        local.stop()


def _vault() -> Any:
    from workload_ids.calls import CallSeam
    from workload_ids.config import load_config
    from workload_ids.providers.azure.clients import AzureClients
    return AzureClients(load_config(), CallSeam()).secrets


def _passwords(local: Any) -> list[str]:
    """The password credentials of the workload's application (none if it has none yet)."""
    from workload_ids.providers.azure.graph import GraphClient
    from workload_ids.sandbox.azure.arm import StaticTokenCredential
    graph = GraphClient(StaticTokenCredential(), **local.graph.client_kwargs())
    return [c["keyId"] for app in graph.find_applications("displayName eq 'wid-prod-vendor-sync'")
            for c in app.get("passwordCredentials") or []]


def _held(vault: Any) -> dict[str, list[tuple[str | None, dict[str, str]]]]:
    """Every secret in the vault: its versions' content types and tags."""
    return {p.name: sorted(((v.content_type, dict(v.tags or {})) for v in
                            vault.list_properties_of_secret_versions(p.name)), key=repr)
            for p in vault.list_properties_of_secrets()}


@pytest.mark.parametrize("which", ["key", "metadata"])
def test_azure_secret_not_made_by_us_gets_no_key(azure_vendor: tuple[Any, Path], which: str) -> None:
    """Someone sets the Key Vault secret where the key (or the index of its versions)
    would go, tags copied or not: apply refuses it, and nothing is written to the vault."""
    from workload_ids.providers.azure.secret_store import metadata_name, vault_name
    local, folder = azure_vendor
    vault = _vault()
    name = "workload-ids/prod/vendor-sync"
    planted = vault_name(name) if which == "key" else metadata_name(name)
    vault.set_secret(planted, "mallory's", tags={"wid-name": name})
    before = _held(vault)
    result = run_cli("apply", "--auto-approve", str(folder))
    text = result.out + result.err
    assert result.code == 1, text
    assert (f"Key Vault secret {planted} (where secret '{name}' would live) was not made by "
            "workload-ids") in text
    assert "Traceback" not in text
    assert _passwords(local) == []  # no key issued
    assert _held(vault) == before
    assert vault.get_secret(planted).value == "mallory's"
