"""GCP discovery against the emulators: service accounts made by hand through the real
Google clients (and one by workload-ids from an example manifest), read back as facts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.iam.v1 import policy_pb2
from support.gcp import POOL
from support.paths import EXAMPLES
from support.trust import TEST_TRUST_DATA

from workload_ids.calls import CallSeam, RetryPolicy
from workload_ids.clouds import connect
from workload_ids.config import Config, ConfigFile
from workload_ids.discovered import Credential, DiscoveredIdentity, Grant, Principal, UsageSignal
from workload_ids.model import Marker
from workload_ids.providers.gcp import render
from workload_ids.providers.gcp.discovery import SIGNAL, UNREAD_RESOURCE_BINDINGS
from workload_ids.sandbox.common.clock import ManualClock
from workload_ids.sandbox.gcp.iam import IamEmulator
from workload_ids.sandbox.gcp.local import start_key_store
from workload_ids.sandbox.gcp.policyanalyzer import PolicyAnalyzerEmulator
from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, ResourceManagerEmulator, project_number
from workload_ids.sandbox.gcp.resourcepolicy import ResourcePolicyEmulator
from workload_ids.validate import validate

PROJECT = "acme-prod"
DEV = "acme-dev1"
NUMBER = str(project_number(PROJECT))
START = datetime(2026, 1, 1, tzinfo=UTC)
NOW = START + timedelta(days=200)
EVERYDAY = ("Always", "true")
UNREAD = (UNREAD_RESOURCE_BINDINGS,)
STAFF = "principal://iam.googleapis.com/locations/global/workforcePools/acme-staff/subject/ana@acme.example"


class Gcp:
    """The emulators, a config pointing at them, and the real clients a person would use."""

    def __init__(self, iam: IamEmulator, rm: ResourceManagerEmulator, analyzer: PolicyAnalyzerEmulator,
                 config: Config, clock: ManualClock) -> None:
        self.iam, self.rm, self.analyzer, self.config, self.clock = iam, rm, analyzer, config, clock
        self.admin = iam.client()
        self.projects = rm.client()

    def account(self, account_id: str, description: str = "", project: str = PROJECT) -> Any:
        return self.admin.create_service_account(request={
            "name": f"projects/{project}", "account_id": account_id,
            "service_account": {"display_name": account_id, "description": description}})

    def key(self, account: Any) -> str:
        made = self.admin.create_service_account_key(request={"name": account.name})
        return str(made.name).rsplit("/", 1)[1]

    def account_policy(self, account: Any, *bindings: tuple[str, list[str]]) -> None:
        self.admin.set_iam_policy(request={"resource": account.name, "policy": policy_pb2.Policy(
            version=1, bindings=[policy_pb2.Binding(role=r, members=m) for r, m in bindings])})

    def bind(self, role: str, member: str, condition: tuple[str, str] | None = None) -> None:
        policy = self.projects.get_iam_policy(request={"resource": f"projects/{PROJECT}",
                                                       "options": {"requested_policy_version": 3}})
        new = policy_pb2.Policy(version=3, etag=policy.etag, bindings=list(policy.bindings))
        binding = new.bindings.add(role=role, members=[member])
        if condition:
            binding.condition.title, binding.condition.expression = condition
        self.projects.set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": new})

    def discover(self, project: str = PROJECT) -> tuple[dict[str, DiscoveredIdentity], CallSeam]:
        seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
        cloud = connect("gcp", self.config, seam)
        assert cloud.discovery is not None
        return {i.name: i for i in cloud.discovery.discover(project)}, seam


@pytest.fixture
def gcp() -> Iterator[Gcp]:
    clock = ManualClock(START)
    registry = ProjectRegistry()
    iam = IamEmulator(clock=clock, allow_public=True)
    iam.add_project(PROJECT)
    iam.add_project(DEV, key_expiry_hours=90 * 24)
    rm = ResourceManagerEmulator(projects=registry, principal_exists=iam.principal_exists)
    rm.add_project(PROJECT)
    rm.add_project(DEV)
    resources = ResourcePolicyEmulator(sandbox=True)
    analyzer = PolicyAnalyzerEmulator(projects=registry, clock=clock)
    keys, keys_url = start_key_store([PROJECT, DEV], registry)
    config = Config(ConfigFile.model_validate({"gcp": {
        "iamEndpoint": iam.start(), "resourceManagerEndpoint": rm.start(),
        "resourcePolicyEndpoint": resources.start(), "secretManagerEndpoint": keys_url,
        "policyAnalyzerEndpoint": analyzer.start(), "sandboxCredentials": True},
        "trust": TEST_TRUST_DATA}), Path.cwd(), None)
    yield Gcp(iam, rm, analyzer, config, clock)
    for server in (iam, rm, resources, analyzer, keys):
        server.stop()


def apply_example(gcp: Gcp, tmp_path: Path) -> str:
    """examples/gcp/catalog-sync.yaml planned and applied by workload-ids; its account's email."""
    path = tmp_path / "catalog-sync.yaml"
    path.write_text((EXAMPLES / "gcp" / "catalog-sync.yaml").read_text())
    checked = validate([path], gcp.config)
    checked.raise_for_errors()
    cloud = connect("gcp", gcp.config, CallSeam(RetryPolicy(), sleep=lambda s: None))
    desired = cloud.desired(checked.compiled[0])
    for change in cloud.identities.diff(desired, cloud.identities.observe_one(desired)):
        cloud.identities.apply(change)
    return desired.name


def test_hand_made_accounts_read_as_facts(gcp: Gcp) -> None:
    legacy = gcp.account("legacy-batch", "nightly batch, made in 2025")
    old_key = gcp.key(legacy)
    used = START + timedelta(days=30)
    # Google saw the old key authenticate (and with it the account) a month after it was made.
    gcp.analyzer.record(PROJECT, legacy.email, legacy.unique_id, key_id=old_key, at=used)
    gcp.clock.now = NOW.timestamp()
    fresh_key = gcp.key(legacy)
    gcp.admin.disable_service_account_key(request={"name": f"{legacy.name}/keys/{fresh_key}"})
    public = gcp.account("public-runner")
    gcp.account_policy(
        public, ("roles/iam.serviceAccountTokenCreator", ["allUsers"]),
        ("roles/iam.serviceAccountUser", ["serviceAccount:ci@partner-proj.iam.gserviceaccount.com",
                                          f"serviceAccount:legacy-batch@{PROJECT}.iam.gserviceaccount.com"]),
        ("roles/iam.workloadIdentityUser", [f"principalSet://iam.googleapis.com/{POOL}/*"]),
        ("roles/iam.serviceAccountViewer", ["user:auditor@partner.example"]))
    gcp.bind("roles/owner", "user:root@acme.example")
    owner = gcp.account("owner-bot")
    gcp.bind("roles/owner", f"serviceAccount:{owner.email}")
    gcp.admin.create_role(request={"parent": f"projects/{PROJECT}", "role_id": "bucketReader", "role": {
        "title": "Bucket reader", "included_permissions": ["storage.objects.get", "storage.objects.list"]}})
    gcp.bind(f"projects/{PROJECT}/roles/bucketReader", f"serviceAccount:{owner.email}",
             ("Only bucket a", 'resource.name.startsWith("projects/_/buckets/a")'))
    gcp.bind("roles/iam.serviceAccountTokenCreator", "group:deployers@acme.example")

    found, seam = gcp.discover()

    deployers = Principal("gcp-member", "group:deployers@acme.example",
                          "roles/iam.serviceAccountTokenCreator on project IAM policy")
    assert sorted(found) == ["legacy-batch", "owner-bot", "public-runner"]
    legacy_read = found["legacy-batch"]
    assert legacy_read == DiscoveredIdentity(
        provider="gcp", target=PROJECT, kind="service-account",
        id=f"legacy-batch@{PROJECT}.iam.gserviceaccount.com", name="legacy-batch", created=None,
        managed=False, tags={}, principals=(deployers,), grants=(),
        credentials=tuple(sorted([
            Credential(old_key, "service-account-key", START, None, used, True),
            Credential(fresh_key, "service-account-key", NOW, None, None, False)], key=lambda c: c.id)),
        usage=(UsageSignal(SIGNAL, used),), description="nightly batch, made in 2025", unread=UNREAD)
    assert found["public-runner"].usage == (UsageSignal(SIGNAL, None),)  # never authenticated
    assert found["public-runner"].principals == (
        Principal("any", "allUsers", "anyone on the internet: roles/iam.serviceAccountTokenCreator "
                  "on its own IAM policy", external=True, wildcard=True),
        deployers,
        Principal("gcp-member", f"principalSet://iam.googleapis.com/{POOL}/*",
                  "every identity of workload identity pool github of project 123456789012: "
                  "roles/iam.workloadIdentityUser on its own IAM policy", external=False, wildcard=True),
        Principal("gcp-member", "serviceAccount:ci@partner-proj.iam.gserviceaccount.com",
                  "roles/iam.serviceAccountUser on its own IAM policy", external=True),
        Principal("gcp-member", f"serviceAccount:legacy-batch@{PROJECT}.iam.gserviceaccount.com",
                  "roles/iam.serviceAccountUser on its own IAM policy"),
    )  # the viewer cannot use it: not listed
    assert found["public-runner"].credentials == ()
    assert found["owner-bot"].grants == (
        Grant(("storage.objects.get", "storage.objects.list"), (f"projects/{PROJECT}",),
              f"project IAM policy binding projects/{PROJECT}/roles/bucketReader if Only bucket a",
              conditional=True),
        Grant(("role:roles/owner",), (f"projects/{PROJECT}",), "project IAM policy binding roles/owner"))
    # Calls: accounts (one page), the project, its policy, its roles (one page), the two
    # activity queries, and per account its keys and its own policy; no signing key read
    # (no account claims to be ours).
    assert dict(seam.stats.calls) == {
        "gcp:iam.list_service_accounts": 1, "gcp:resourcemanager.get_project": 1,
        "gcp:resourcemanager.get_iam_policy": 1, "gcp:iam.list_roles": 1,
        "gcp:policyanalyzer.query_activity": 2,
        "gcp:iam.list_service_account_keys": 3, "gcp:iam.get_iam_policy": 3}


def test_members_outside_the_project_are_external(gcp: Gcp) -> None:
    gcp.bind("roles/owner", "user:root@acme.example")
    account = gcp.account("shared-runner")
    other_pool = "projects/210987654321/locations/global/workloadIdentityPools/shared"
    gcp.account_policy(account, ("roles/iam.serviceAccountUser", [
        "user:dev@acme.example", "user:contractor@elsewhere.example", "domain:acme.example",
        "allAuthenticatedUsers",
        f"serviceAccount:{NUMBER}-compute@developer.gserviceaccount.com",
        f"serviceAccount:service-{NUMBER}@gcp-sa-cloudbuild.iam.gserviceaccount.com"]),
        ("roles/iam.workloadIdentityUser", [
            f"principal://iam.googleapis.com/{other_pool}/subject/repo:acme/api:ref:refs/heads/main",
            f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/acme/api",
            STAFF]))
    found, _ = gcp.discover()
    words = {p.value: (p.detail.split(": ")[0], p.external, p.wildcard)
             for p in found["shared-runner"].principals}
    use = "roles/iam.serviceAccountUser on its own IAM policy"
    assert words == {
        "user:dev@acme.example": (use, False, False),
        "user:contractor@elsewhere.example": (use, True, False),
        "domain:acme.example": (use, False, False),
        "allAuthenticatedUsers": ("anyone with a Google account", True, True),
        f"serviceAccount:{NUMBER}-compute@developer.gserviceaccount.com": (use, False, False),
        f"serviceAccount:service-{NUMBER}@gcp-sa-cloudbuild.iam.gserviceaccount.com": (use, False, False),
        f"principal://iam.googleapis.com/{other_pool}/subject/repo:acme/api:ref:refs/heads/main": (
            "workload identity pool shared of project 210987654321, "
            "subject = repo:acme/api:ref:refs/heads/main",
            True, False),
        f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/acme/api": (
            "workload identity pool github of project 123456789012, attribute.repository = acme/api",
            False, False),
        STAFF: (
            "people of workforce identity pool acme-staff, subject = ana@acme.example", False, False)}


def test_keys_under_an_expiry_policy_say_when_they_expire(gcp: Gcp) -> None:
    account = gcp.account("dev-loader", project=DEV)
    key = gcp.key(account)
    found, _ = gcp.discover(DEV)
    assert found["dev-loader"].credentials == (
        Credential(key, "service-account-key", START, START + timedelta(days=90), None, True),)


def test_ours_is_managed_and_a_copied_marker_is_not(gcp: Gcp, tmp_path: Path) -> None:
    email = apply_example(gcp, tmp_path)
    ours = next(a for a in gcp.iam.service_accounts(PROJECT) if a.email == email)
    # Attack: the description (marker and MAC) copied onto an account made by hand.
    gcp.account("copycat-sync", ours.description)
    # Attack: an account at our naming for another workload, marked without a valid MAC.
    ghost = render.account_id("wid", "prod", "ghost")
    gcp.account(ghost, Marker("ghost", "team-platform", "prod", "0" * 64).as_text("A" * 22))
    found, seam = gcp.discover()
    assert {name: i.managed for name, i in found.items()} == {
        email.split("@")[0]: True, "copycat-sync": False, ghost: False}
    mine = found[email.split("@")[0]]
    assert mine.tags["workload-ids:workload"] == "catalog-sync"
    assert found["copycat-sync"].tags == {} and found[ghost].tags == {}
    assert [p.detail for p in mine.principals] == [
        "workload identity pool github of project 123456789012, subject = "
        "repo:acme/catalog-sync:ref:refs/heads/main: roles/iam.workloadIdentityUser on its own IAM policy"]
    assert all(g.source.startswith("project IAM policy binding projects/acme-prod/roles/wid_")
               for g in mine.grants) and mine.grants
    assert seam.stats.calls["gcp:secretmanager.access_secret_version"] == 1  # the signing key, once


def test_policy_analyzer_refused_is_said_unread(gcp: Gcp) -> None:
    gcp.account("quiet-batch")
    gcp.analyzer.enabled = False
    found, _ = gcp.discover()
    quiet = found["quiet-batch"]
    assert quiet.usage == ()
    assert quiet.unread[0] == UNREAD_RESOURCE_BINDINGS
    assert quiet.unread[1].startswith("last authentication of the account and its keys: Policy Analyzer "
                                      "refused its activity query (Forbidden: ")
    assert "SERVICE_DISABLED" in quiet.unread[1]
    assert quiet.unread[1].endswith("roles/policyanalyzer.activityAnalysisViewer")


def test_sandbox_config_without_an_analyzer_never_asks_google(gcp: Gcp) -> None:
    gcp.account("quiet-batch")
    settings = gcp.config.data.gcp.model_dump()
    settings["policyAnalyzerEndpoint"] = None
    gcp.config = Config(ConfigFile.model_validate({"gcp": settings, "trust": TEST_TRUST_DATA}),
                        Path.cwd(), None)
    found, seam = gcp.discover()
    assert "config names no gcp.policyAnalyzerEndpoint" in found["quiet-batch"].unread[1]
    assert "gcp:policyanalyzer.query_activity" not in seam.stats.calls


def test_an_organization_role_not_read_is_named_and_said(gcp: Gcp) -> None:
    account = gcp.account("org-auditor")
    gcp.bind("organizations/123456789/roles/auditor", f"serviceAccount:{account.email}")
    found, seam = gcp.discover()
    mine = found["org-auditor"]
    assert mine.grants == (Grant(("role:organizations/123456789/roles/auditor",), (f"projects/{PROJECT}",),
                                 "project IAM policy binding organizations/123456789/roles/auditor"),)
    assert mine.unread[0].startswith("permissions of custom role organizations/123456789/roles/auditor "
                                     "not read (other: ")
    assert seam.stats.calls["gcp:iam.get_role"] == 1


def test_default_accounts_are_named_as_google_names_them() -> None:
    from workload_ids.providers.gcp.discovery import _name
    assert _name(f"{NUMBER}-compute@developer.gserviceaccount.com", PROJECT, NUMBER) == \
        "Compute Engine default service account"
    assert _name(f"{PROJECT}@appspot.gserviceaccount.com", PROJECT, NUMBER) == \
        "App Engine default service account"
    assert _name(f"batch-runner@{PROJECT}.iam.gserviceaccount.com", PROJECT, NUMBER) == "batch-runner"
