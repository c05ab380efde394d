"""Issue 14 item 0: every target is judged. Decommissioning the last workload of an
account, project or subscription (removing its manifests) gets its identities quarantined,
whether the target is listed under ``targets:`` in the config or known only from the audit
log; a target the tool wrote to and can no longer read stops the run (exit 1) with nothing
changed. On moto, the GCP emulators and the Azure emulators."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.aws import seed, workload
from support.azure import CONTAINER, SUB, TOPIC, azure_workload
from support.cli import run_cli
from support.gcp import gcp_workload
from support.trust import TEST_TRUST_DATA

from workload_ids.audit import records
from workload_ids.clock import format_time
from workload_ids.sandbox.gcp.iam import IamEmulator
from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, ResourceManagerEmulator
from workload_ids.sandbox.gcp.resourcepolicy import ResourcePolicyEmulator

OWNERS = "owners:\n  - {id: team-a, kind: group, active: true, members: [bob]}\n" \
         "  - {id: team-payments, kind: group, active: true, members: [bob]}\n" \
         "  - {id: team-platform, kind: group, active: true, members: [bob]}\n" \
         "  - {id: bob, kind: person, active: true}\n"
COMMON = ("owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
          "cleanup: {grace: 7d, minAge: 0s, maxShare: 1}\n"
          # TEST_TRUST, and the tests' pool (in acme-prod) for the second project's workloads
          + "trust: " + json.dumps({**TEST_TRUST_DATA, "allowedPools": [
              "projects/123456789012/locations/global/workloadIdentityPools/github"]}) + "\n")

ACCOUNT_B = "210987654321"
ROLE_B = f"arn:aws:iam::{ACCOUNT_B}:role/workload-ids-admin"
PROJECT_B = "acme-other"
SUB_B = "5c1e2b7a-0d3f-4c8e-9a21-6f4b3d2e1c0a"


@dataclass
class Fleet:
    """Two workloads in the target being decommissioned (G), one in a target that keeps
    its manifest (K): cleanup with the remaining manifests names K only."""

    provider: str
    gone_target: str
    config: str            # the config body, without targets:
    listing: str           # a targets: block that lists G
    kept: dict[str, str]   # K's manifest, which stays
    gone: dict[str, str]   # G's manifests, removed after apply
    held: Callable[[], dict[str, bool]]  # identity in G -> quarantined?
    cut_off: Callable[[], Callable[[], None]]  # make G unreadable; returns how to undo it


def _write_config(fleet: Fleet, *, listed: bool) -> None:
    Path("workload-ids.yaml").write_text(fleet.config + COMMON + (fleet.listing if listed else ""))


def _apply(fleet: Fleet, manifests: Any) -> Path:
    Path("owners.yaml").write_text(OWNERS)
    _write_config(fleet, listed=False)
    folder: Path = manifests({**fleet.kept, **fleet.gone})
    applied = run_cli("apply", "--auto-approve", str(folder))
    assert applied.code == 0, applied.err + applied.out
    for name in fleet.gone:
        (folder / name).unlink()
    return folder



# --- AWS: G is the ambient account; K is reached by assuming a role in it -------------------

def _aws_fleet() -> Iterator[Fleet]:
    sts = boto3.client("sts", region_name="us-east-1")
    creds = sts.assume_role(RoleArn=ROLE_B, RoleSessionName="seed")["Credentials"]
    iam_b = boto3.client("iam", region_name="us-east-1", aws_access_key_id=creds["AccessKeyId"],
                         aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"])
    seed(iam_b)
    iam = boto3.client("iam", region_name="us-east-1")

    def held() -> dict[str, bool]:
        roles = iam.list_roles(PathPrefix="/workload-ids/")["Roles"]
        return {r["RoleName"]: any(t["Key"] == "workload-ids:quarantine"
                                   for t in iam.list_role_tags(RoleName=r["RoleName"])["Tags"])
                for r in roles}

    def cut_off() -> Callable[[], None]:
        # The runner's credentials now reach account B, not the account G it wrote to.
        iam_b.create_user(UserName="runner")
        key = iam_b.create_access_key(UserName="runner")["AccessKey"]
        mp = pytest.MonkeyPatch()
        mp.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        mp.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        undo.append(mp)
        return mp.undo

    undo: list[pytest.MonkeyPatch] = []
    yield Fleet("aws", "123456789012", f"aws: {{accounts: {{'{ACCOUNT_B}': {{roleArn: '{ROLE_B}'}}}}}}\n",
                "targets:\n  aws: [{account: '123456789012'}]\n",
                {"keep.yaml": workload("svc-keep").replace("123456789012", ACCOUNT_B)},
                {"g1.yaml": workload("svc-g1"), "g2.yaml": workload("svc-g2")}, held, cut_off)
    for mp in undo:
        mp.undo()


# --- GCP: G is a second project ------------------------------------------------------------

def _gcp_fleet() -> Iterator[Fleet]:
    iam, rm = IamEmulator(), ResourceManagerEmulator(projects=ProjectRegistry())
    res = ResourcePolicyEmulator()
    for project in ("acme-prod", PROJECT_B):
        iam.add_project(project)
        rm.add_project(project)
    from workload_ids.sandbox.gcp.local import start_key_store
    keys, keys_url = start_key_store(["acme-prod", PROJECT_B])

    def in_b(name: str) -> str:
        return gcp_workload(name=name).replace("project: acme-prod", f"project: {PROJECT_B}")

    def held() -> dict[str, bool]:
        return {a.email: a.disabled for a in iam.service_accounts(PROJECT_B)}

    def cut_off() -> Callable[[], None]:
        rm.inject_error("GetProject", "PERMISSION_DENIED", "Permission denied on project", times=50)
        return lambda: None  # the IAM emulator, read directly, still answers

    yield Fleet("gcp", PROJECT_B,
                f"gcp: {{iamEndpoint: '{iam.start()}', resourceManagerEndpoint: '{rm.start()}', "
                f"resourcePolicyEndpoint: '{res.start()}', secretManagerEndpoint: '{keys_url}', "
                "sandboxCredentials: true}\n",
                f"targets:\n  gcp: [{{project: {PROJECT_B}}}]\n",
                {"keep.yaml": gcp_workload(name="svc-keep")},
                {"g1.yaml": in_b("svc-g1"), "g2.yaml": in_b("svc-g2")}, held, cut_off)
    for emulator in (iam, rm, res, keys):
        emulator.stop()


# --- Azure: G is a second subscription -----------------------------------------------------

def _azure_fleet() -> Iterator[Fleet]:
    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure(sandbox=False)
    for resource in (CONTAINER, TOPIC, CONTAINER.replace(SUB, SUB_B), TOPIC.replace(SUB, SUB_B)):
        local.arm.add_resource(resource)

    def in_b(name: str) -> str:
        return azure_workload(name=name).replace(SUB, SUB_B)

    def held() -> dict[str, bool]:
        from azure.mgmt.msi import ManagedServiceIdentityClient

        from workload_ids.sandbox.azure.arm import StaticTokenCredential
        msi = ManagedServiceIdentityClient(StaticTokenCredential(), SUB_B, base_url=local.arm.url,
                                           connection_verify=local.arm.ca_bundle_path)
        return {i.name: "workload-ids:quarantine" in (i.tags or {})
                for i in msi.user_assigned_identities.list_by_subscription()}

    def cut_off() -> Callable[[], None]:
        local.arm.remove_subscription(SUB_B)
        return lambda: local.arm.add_subscription(SUB_B)

    yield Fleet("azure", SUB_B, local.config_block(),
                f"targets:\n  azure: [{{subscription: '{SUB_B}'}}]\n",
                {"keep.yaml": azure_workload(name="svc-keep")},
                {"g1.yaml": in_b("svc-g1"), "g2.yaml": in_b("svc-g2")}, held, cut_off)
    local.stop()


@pytest.fixture(params=["aws", "gcp", "azure"])
def fleet(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    if request.param == "aws":
        request.getfixturevalue("aws")
        yield from _aws_fleet()
    elif request.param == "gcp":
        yield from _gcp_fleet()
    else:
        yield from _azure_fleet()


def _plan(folder: Path) -> dict[str, str | None]:
    result = run_cli("cleanup", str(folder), "--output", "json")
    assert result.code == 0, result.err + result.out
    return {i["identity"]: i["action"] for i in json.loads(result.out)["identities"]}


@pytest.mark.parametrize("listed", [True, False], ids=["listed-under-targets", "known-from-audit-log"])
def test_the_last_workload_of_a_target_is_quarantined_then_deleted(fleet: Fleet, manifests: Any, listed: bool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _apply(fleet, manifests)
    orphans = set(fleet.held())
    assert len(orphans) == 2 and not any(fleet.held().values())
    if not listed:
        # Known only from the audit log: the apply recorded its changes in G.
        assert any(r.get("target") == fleet.gone_target and r.get("action") == "create"
                   for r in records(Path("audit.jsonl")))
    _write_config(fleet, listed=listed)
    plan = _plan(folder)
    assert {name: plan.get(name) for name in orphans} == dict.fromkeys(orphans, "quarantine")
    assert not any(fleet.held().values())  # the dry run changed nothing
    applied = run_cli("cleanup", str(folder), "--apply")
    assert applied.code == 0, applied.err + applied.out
    assert fleet.held() == dict.fromkeys(orphans, True)
    # Like any other leaver: deleted once the grace period (7 days) is over.
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(datetime.now(UTC) + timedelta(days=8)))
    deleted = run_cli("cleanup", str(folder), "--apply", "--delete-with-local-audit")
    assert deleted.code == 0, deleted.err + deleted.out
    assert not set(fleet.held()) & orphans


def test_a_target_written_to_and_no_longer_readable_stops_the_run(fleet: Fleet, manifests: Any) -> None:
    # An orphan in the readable target too: the run must not act there either.
    (text,) = fleet.kept.values()
    fleet.gone["k-orphan.yaml"] = text.replace("svc-keep", "svc-kgone")
    folder = _apply(fleet, manifests)
    log = Path("audit.jsonl").read_text()
    reconnect = fleet.cut_off()
    for args in (("cleanup", str(folder), "--apply"), ("cleanup", str(folder)), ("inventory",),
                 ("rotate",), ("recover",)):
        result = run_cli(*args)
        assert result.code == 1, result.err + result.out
        assert f"cannot read {fleet.provider}" in result.err and fleet.gone_target in result.err
        assert "the audit log shows workload-ids changed it" in result.err
        assert "Traceback" not in result.err
    assert Path("audit.jsonl").read_text() == log  # nothing was done
    reconnect()
    assert not any(fleet.held().values())


def test_a_retired_target_is_left_out_with_a_note(fleet: Fleet, manifests: Any) -> None:
    folder = _apply(fleet, manifests)
    fleet.cut_off()
    key = {"aws": "account", "gcp": "project", "azure": "subscription"}[fleet.provider]
    entry = f"{{{key}: '{fleet.gone_target}', retired: true}}"
    Path("workload-ids.yaml").write_text(fleet.config + COMMON + f"targets:\n  {fleet.provider}: [{entry}]\n")
    result = run_cli("cleanup", str(folder))
    assert result.code == 0, result.err + result.out
    assert f"not read, marked retired under targets: {fleet.provider}:{fleet.gone_target}" in result.out


def test_inventory_without_paths_lists_every_configured_target(fleet: Fleet, manifests: Any) -> None:
    _apply(fleet, manifests)
    Path("audit.jsonl").unlink()  # only the config names the targets now
    _write_config(fleet, listed=True)
    result = run_cli("inventory", "--output", "json")
    assert result.code == 0, result.err + result.out
    listed = {(r["provider"], r["target"]) for r in json.loads(result.out)["identities"]}
    assert (fleet.provider, fleet.gone_target) in listed


# --- the config: malformed targets are refused where they are written ---------------------

@pytest.mark.parametrize(("body", "where", "says"), [
    ("targets:\n  aws:\n    - {account: '12345'}\n", ":3:", "account"),
    ("targets:\n  gcp:\n    - {project: Acme_Prod}\n", ":3:", "project"),
    ("targets:\n  azure:\n    - {subscription: not-a-guid}\n", ":3:", "subscription"),
    ("targets:\n  gcp:\n    - {projects: acme-prod}\n", ":3:", "projects"),
    ("targets:\n  aws:\n    - {account: '123456789012'}\n    - {account: '123456789012'}\n",
     ":4:", "listed twice"),
    (f"targets:\n  aws:\n    - account: '123456789012'\n      roleArn: '{ROLE_B}'\n",
     ":4:", f"a role in account {ACCOUNT_B}, not in 123456789012"),
    ("aws: {accounts: {'123456789012': {profile: a}}}\n"
     "targets:\n  aws:\n    - {account: '123456789012', profile: b}\n",
     ":4:", "keep its profile or roleArn in one place"),
])
def test_malformed_targets_are_positioned_errors(body: str, where: str, says: str) -> None:
    Path("workload-ids.yaml").write_text(body)
    result = run_cli("inventory")
    assert result.code == 1, result.err + result.out
    assert f"workload-ids.yaml{where}" in result.err and says in result.err, result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("provider", ["gcp", "azure"])
def test_without_any_target_the_message_says_where_to_list_them(provider: str) -> None:
    result = run_cli("inventory", "--provider", provider)
    assert result.code == 1, result.err + result.out
    assert f"targets.{provider} in the config" in result.err and "Traceback" not in result.err


def test_rotate_without_paths_reads_every_configured_target(fleet: Fleet, manifests: Any) -> None:
    _apply(fleet, manifests)
    Path("audit.jsonl").unlink()  # only the config names the targets now
    _write_config(fleet, listed=True)
    for verb in ("rotate", "recover"):
        result = run_cli(verb, "--output", "json")
        assert result.code == 0, result.err + result.out
        assert f"{fleet.provider}:{fleet.gone_target}" in json.loads(result.out)["fleet"]["targets"]
    assert not Path("audit.jsonl").exists()  # nothing was changed, so nothing recorded
