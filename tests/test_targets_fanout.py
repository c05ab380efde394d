"""Issue 17 items 1-4: every read command reads every target of every cloud; organisations,
folders and management groups listed at run time; reads fanned out per cloud; ``--shard I/N``.

On moto (an AWS Organization of three member accounts: one active, one suspended, one
excluded), the GCP emulators (a folder holding two projects and a subfolder with one) and
the Azure emulators (a management group of two subscriptions, one in a child group)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.aws import seed, workload
from support.cli import run_cli

from workload_ids.calls import CallRecord, CallSeam
from workload_ids.config import load_config
from workload_ids.errors import UserError
from workload_ids.inventory import inventory_report
from workload_ids.targets import Shard

ROLE = "OrgReader"
BASE_CONFIG = Path("workload-ids.yaml")  # the isolated cwd's (tests/conftest.py)
SUB_ONE = "1d5e2b7a-0d3f-4c8e-9a21-6f4b3d2e1c01"
SUB_TWO = "2d5e2b7a-0d3f-4c8e-9a21-6f4b3d2e1c02"
SUB_ELSEWHERE = "3d5e2b7a-0d3f-4c8e-9a21-6f4b3d2e1c03"


@dataclass
class Org:
    management: str
    active: str
    suspended: str
    excluded: str
    config: str  # the config body (clouds and targets), without the cwd's base


def _member_iam(account: str) -> Any:
    creds = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{ROLE}", RoleSessionName="seed")["Credentials"]
    return boto3.client("iam", region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


@pytest.fixture
def org(aws: Any) -> Iterator[Org]:
    """moto's Organization: the management account (the ambient one) and three members;
    the GCP and Azure emulators with a folder and a management group."""
    from workload_ids.sandbox.azure.local import start_local_azure
    from workload_ids.sandbox.gcp.local import start_local_gcp
    client = boto3.client("organizations", region_name="us-east-1")
    client.create_organization(FeatureSet="ALL")
    active, suspended, excluded = (
        client.create_account(AccountName=n, Email=f"{n}@example.com")["CreateAccountStatus"]["AccountId"]
        for n in ("active", "suspended", "excluded"))
    client.close_account(AccountId=suspended)
    seed(_member_iam(active))
    gcp = start_local_gcp()
    registry = gcp.emulators[1].projects
    registry.add_folder("100", "organizations/1")
    registry.add_folder("200", "folders/100")
    for project, parent in (("proj-one", "folders/100"), ("proj-two", "folders/100"),
                            ("proj-three", "folders/200"), ("proj-gone", "folders/100"),
                            ("proj-outside", "organizations/1")):
        registry.set_parent(project, parent)
    registry.set_state("proj-gone", "DELETE_REQUESTED")
    azure = start_local_azure()
    azure.arm.add_management_group("mg-prod")
    azure.arm.add_management_group("mg-team", parent="mg-prod")
    azure.arm.move_subscription(SUB_ONE, "mg-prod")
    azure.arm.move_subscription(SUB_TWO, "mg-team")
    body = (gcp.config_block() + azure.config_block()
            + "targets:\n"
            f"  aws:\n    - organization: {{role: {ROLE}}}\n      exclude: ['{excluded}']\n"
            "  gcp:\n    - folder: '100'\n"
            "  azure:\n    - managementGroup: mg-prod\n")
    try:
        yield Org("123456789012", active, suspended, excluded, body)
    finally:
        gcp.stop()
        azure.stop()


def _write(body: str) -> None:
    base = BASE_CONFIG.read_text()
    BASE_CONFIG.write_text(base.split("# --- test layer ---")[0] + "# --- test layer ---\n" + body)


def _inventory(*args: str) -> dict[str, Any]:
    result = run_cli("inventory", "--output", "json", *args)
    assert result.code == 0, result.err + result.out
    doc: dict[str, Any] = json.loads(result.out)
    return doc


def _targets(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["provider"], t["target"]) for t in doc["targets"]]


def test_inventory_reads_every_member_of_every_group_and_skips_the_rest(org: Org, manifests: Any) -> None:
    _write(org.config)
    folder = manifests({"main.yaml": workload("svc-main"),
                        "member.yaml": workload("svc-member").replace("123456789012", org.active)})
    # apply reaches the member account through the organization's role, as inventory does
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    doc = _inventory()
    assert _targets(doc) == sorted([("aws", org.management), ("aws", org.active),
                                    ("azure", SUB_ONE), ("azure", SUB_TWO),
                                    ("gcp", "proj-one"), ("gcp", "proj-three"), ("gcp", "proj-two")])
    assert doc["kind"] == "workload-ids/inventory" and doc["shard"] is None
    found = {(i["target"], i["workload"]) for i in doc["identities"]}
    assert found == {(org.management, "svc-main"), (org.active, "svc-member")}
    # the suspended and excluded accounts, the shut-down project and the project outside
    # the folder are never read
    text = run_cli("inventory")
    assert text.code == 0, text.err
    for absent in (org.suspended, org.excluded, "proj-gone", "proj-outside"):
        assert absent not in text.out


def test_provider_and_target_narrow_and_a_target_outside_the_config_is_read(org: Org) -> None:
    _write(org.config)
    assert _targets(_inventory("--provider", "gcp")) == [
        ("gcp", "proj-one"), ("gcp", "proj-three"), ("gcp", "proj-two")]
    assert _targets(_inventory("--target", "proj-two", "--target", SUB_TWO.upper())) == [
        ("azure", SUB_TWO), ("gcp", "proj-two")]
    # not in the config: read all the same (a look at one project), by form or PROVIDER:ID
    assert _targets(_inventory("--target", "gcp:proj-outside")) == [("gcp", "proj-outside")]
    assert _targets(_inventory("--provider", "azure", "--target", SUB_ELSEWHERE)) == [
        ("azure", SUB_ELSEWHERE)]
    bad = run_cli("inventory", "--target", "Not A Target")
    assert bad.code == 1 and "write PROVIDER:TARGET" in bad.err
    # narrowed to one project, no other cloud's group is listed (nor read)
    seam = CallSeam()
    report = inventory_report([], load_config(None), seam, targets=["proj-two"])
    assert report.scopes.ordered() == [("gcp", "proj-two")]
    assert {op.split(":")[0] for op in seam.stats.calls} == {"gcp"}


def test_shards_cover_every_target_once_and_merge_to_the_unsharded_run(org: Org, manifests: Any) -> None:
    _write(org.config)
    folder = manifests({"main.yaml": workload("svc-main"),
                        "member.yaml": workload("svc-member").replace("123456789012", org.active)})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    whole = _inventory()
    parts = [_inventory("--shard", f"{i}/3") for i in (1, 2, 3)]
    assert [p["shard"] for p in parts] == [{"index": i, "count": 3} for i in (1, 2, 3)]
    sets = [set(_targets(p)) for p in parts]
    assert set().union(*sets) == set(_targets(whole))
    assert sum(len(s) for s in sets) == len(whole["targets"])  # no target in two shards
    merged = sorted((i for p in parts for i in p["identities"]),
                    key=lambda i: (i["provider"], i["target"], i["identity"]))
    assert merged == whole["identities"]
    # report merge makes the three shards' documents the unsharded run's (the calls apart:
    # the merged summary adds up what the three runs made)
    paths = []
    for n, part in enumerate(parts, 1):
        paths.append(Path(f"inventory-{n}.json"))
        paths[-1].write_text(json.dumps(part), encoding="utf-8")
    result = run_cli("report", "merge", *map(str, reversed(paths)))
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["summary"]["apiCalls"] == sum(p["summary"]["apiCalls"] for p in parts)
    for doc in (document, whole):
        doc["summary"].pop("apiCalls")
    assert document == whole
    # the split is by a stable hash of provider:target: the same every run
    assert [set(_targets(_inventory("--shard", f"{i}/3"))) for i in (1, 2, 3)] == sets
    bad = run_cli("inventory", "--shard", "4/3")
    assert bad.code == 1 and "I/N with 1 <= I <= N" in bad.err


def test_the_calls_and_the_output_are_the_same_fanned_out_or_one_at_a_time(org: Org, manifests: Any) -> None:
    _write(org.config)
    folder = manifests({"main.yaml": workload("svc-main"),
                        "member.yaml": workload("svc-member").replace("123456789012", org.active)})
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0

    def run(fanout: str) -> tuple[dict[str, Any], dict[str, int]]:
        _write(org.config + fanout)
        config = load_config(None)
        seam = CallSeam()
        report = inventory_report([], config, seam)
        return report.as_json(0), dict(seam.stats.calls)
    concurrent, concurrent_calls = run("")
    serial, serial_calls = run("fanout: {aws: 1, gcp: 1, azure: 1}\n")
    assert concurrent == serial
    assert concurrent_calls == serial_calls
    assert concurrent_calls["gcp:resourcemanager.list_projects"] == 2  # folders 100 and 200, once each
    assert concurrent_calls["aws:organizations.list_accounts"] == 1


def test_a_member_account_that_cannot_be_reached_is_an_error_naming_it(org: Org) -> None:
    _write(org.config)
    seam = CallSeam()

    def deny(call: CallRecord) -> str | None:
        role = str(call.params.get("RoleArn", ""))
        return "denied" if call.operation == "sts.assume_role" and org.active in role else None
    seam.inject(deny)
    with pytest.raises(UserError) as caught:
        inventory_report([], load_config(None), seam)
    message = str(caught.value)
    assert f"aws account {org.active} (listed in organization" in message
    assert "Nothing was done" in message


def test_a_group_that_cannot_be_listed_stops_the_run_at_its_entry(org: Org) -> None:
    _write(org.config.replace("folder: '100'", "folder: '999'"))
    result = run_cli("inventory")
    assert result.code == 1
    assert "workload-ids.yaml:" in result.err and "cannot list the targets of folder 999" in result.err
    assert "resourcemanager.projects.list" in result.err


@pytest.mark.parametrize(("entry", "expected"), [
    ("  aws:\n    - {account: '123456789012', organization: {role: R}}\n", "names account and organization"),
    ("  aws:\n    - {account: '123456789012', exclude: ['111111111111']}\n",
     "exclude belongs to a group entry"),
    ("  aws:\n    - {organization: {role: R}, roleArn: 'arn:aws:iam::123456789012:role/x'}\n",
     "profile and roleArn name one account"),
    ("  aws:\n    - {organization: {role: 'arn:aws:iam::1:role/R'}}\n", "not its ARN"),
    ("  aws:\n    - {organization: {role: R}}\n    - {organization: {role: S}}\n", "listed twice"),
    ("  gcp:\n    - {folder: prod}\n", "not its display name"),
    ("  gcp:\n    - {folder: '1', organization: '2'}\n", "names folder and organization"),
    ("  azure:\n    - {}\n", "names no target"),
    ("  azure:\n    - {managementGroup: 'mg prod'}\n", "management group's id"),
])
def test_bad_target_entries_are_positioned(entry: str, expected: str) -> None:
    _write("targets:\n" + entry)
    result = run_cli("inventory")
    assert result.code == 1, result.out
    assert "workload-ids.yaml:" in result.err and expected in result.err, result.err
    assert "Traceback" not in result.err


def test_shard_parses_and_splits_stably() -> None:
    keys = [("aws", f"{n:012d}") for n in range(200)]
    for count in (1, 2, 5):
        shards = [Shard.parse(f"{i}/{count}") for i in range(1, count + 1)]
        owners = [[s.index for s in shards if s.holds(k)] for k in keys]
        assert all(len(o) == 1 for o in owners)  # each target in exactly one shard
    # adding a target moves no other: the shard of a key depends on the key alone
    four = Shard.parse("2/4")
    assert [four.holds(k) for k in keys] == [four.holds(k) for k in [*keys, ("gcp", "new-project")]][:200]
    for bad in ("0/3", "3", "a/b", "2/1"):
        with pytest.raises(UserError):
            Shard.parse(bad)


# --- the README's try-out: the examples of all three clouds applied to the sandbox ----------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_inventory_of_the_sandbox_lists_every_clouds_examples(aws_server: Any, moto_server: str,
                                                              tmp_path: Path) -> None:
    """`workload-ids sandbox --config-out sandbox.yaml`, the examples applied, then
    `workload-ids inventory --config sandbox.yaml` (README "Quick start"): the sandbox's
    config lists a target of every cloud it runs, and inventory reads them all."""
    from workload_ids.sandbox.aws import seed_boundary, seed_oidc_providers, seed_signing_key
    from workload_ids.sandbox.azure.local import start_local_azure
    from workload_ids.sandbox.commands import sandbox_config, sandbox_targets
    from workload_ids.sandbox.gcp.local import start_local_gcp
    for seeding in (seed_oidc_providers, seed_boundary, seed_signing_key):
        seeding(endpoint_url=moto_server)
    gcp, azure = start_local_gcp(), start_local_azure()
    try:
        config = tmp_path / "sandbox.yaml"
        config.write_text(sandbox_config(moto_server) + gcp.config_block() + azure.config_block()
                          + sandbox_targets(gcp=True, azure=True))
        assert "gcp: [{project: acme-prod}]" in config.read_text()
        applied = run_cli("apply", "--config", str(config), "--auto-approve",
                          str(EXAMPLES / "aws"), str(EXAMPLES / "gcp"), str(EXAMPLES / "azure"))
        assert applied.code == 0, applied.err + applied.out
        listed = run_cli("inventory", "--config", str(config), "--output", "json")
        assert listed.code == 0, listed.err
        doc = json.loads(listed.out)
    finally:
        gcp.stop()
        azure.stop()
    by_cloud: dict[str, set[str]] = {}
    for identity in doc["identities"]:
        by_cloud.setdefault(identity["provider"], set()).add(identity["workload"])
    assert by_cloud == {"aws": {"payments-api", "invoice-worker", "ledger-export", "partner-feed"},
                        "gcp": {"catalog-sync", "checkout-api", "order-analytics"},
                        "azure": {"order-reconciliation", "vendor-invoice-import"}}
    assert {t["provider"] for t in doc["targets"]} == {"aws", "gcp", "azure"}


def test_rotate_with_manifests_refuses_a_shard(manifests: Any) -> None:
    folder = manifests({"a.yaml": workload("svc-a")})
    for verb in ("rotate", "recover"):
        result = run_cli(verb, str(folder), "--shard", "1/2")
        assert result.code == 1 and "--shard splits the targets a run without PATH reads" in result.err
