"""The GCP backend against the emulators, through the real Google clients: joiner, mover,
idempotence, federation on the account, and never touching what is not ours."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.gcp import POOL, gcp_workload
from support.trust import TEST_TRUST_DATA

from workload_ids.calls import CallSeam, RetryPolicy
from workload_ids.clouds import connect
from workload_ids.config import Config, ConfigFile
from workload_ids.errors import ConflictError
from workload_ids.model import Marker
from workload_ids.providers.gcp import render
from workload_ids.providers.interface import Backends
from workload_ids.sandbox.gcp.iam import IamEmulator
from workload_ids.sandbox.gcp.local import start_key_store
from workload_ids.sandbox.gcp.resourcemanager import ProjectRegistry, ResourceManagerEmulator
from workload_ids.sandbox.gcp.resourcepolicy import ResourcePolicyEmulator
from workload_ids.validate import validate

PROJECT = "acme-prod"
TOPIC = "projects/acme-prod/topics/catalog-updated"
SECRET = "projects/acme-prod/secrets/supplier-api-token"
WITH_RESOURCES = gcp_workload(access=(
    "    - template: topic.publish\n      resources: [" + TOPIC + "]\n"
    "    - template: secret.read\n      resources: [" + SECRET + "]\n"
    "    - template: object-storage.write\n      resources: [projects/_/buckets/bucket-b]\n"))


@pytest.fixture
def resources() -> Iterator[ResourcePolicyEmulator]:
    emulator = ResourcePolicyEmulator()
    for name in (TOPIC, SECRET):
        emulator.add_resource(name)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def gcp(resources: ResourcePolicyEmulator) -> Iterator[tuple[IamEmulator, ResourceManagerEmulator, Config]]:
    registry = ProjectRegistry()
    iam, rm = IamEmulator(), ResourceManagerEmulator(projects=registry)
    iam.add_project(PROJECT)
    rm.add_project(PROJECT)
    keys, keys_url = start_key_store([PROJECT])
    config = Config(ConfigFile.model_validate({"gcp": {
        "iamEndpoint": iam.start(), "resourceManagerEndpoint": rm.start(),
        "resourcePolicyEndpoint": resources.start(), "secretManagerEndpoint": keys_url,
        "sandboxCredentials": True}, "trust": TEST_TRUST_DATA}),
        Path.cwd(), None)
    yield iam, rm, config
    iam.stop()
    rm.stop()
    keys.stop()


def converge(tmp_path: Path, text: str, config: Config) -> tuple[Backends, Any, list[str]]:
    """One per-service plan and apply through the backends; returns the actions applied."""
    path = tmp_path / "w.yaml"
    path.write_text(text)
    checked = validate([path], config)
    checked.raise_for_errors()
    cloud = connect("gcp", config, CallSeam(RetryPolicy(), sleep=lambda s: None))
    desired = cloud.desired(checked.compiled[0])
    changes = cloud.identities.diff(desired, cloud.identities.observe_one(desired))
    for change in changes:
        cloud.identities.apply(change)
    return cloud, desired, [c.action for c in changes]


def bindings_of(rm: ResourceManagerEmulator, member: str) -> dict[str, str]:
    """role id -> condition expression ("" without) of every project binding of ``member``."""
    return {b.role.rsplit("/", 1)[1]: b.condition.expression for b in rm.policy(PROJECT).bindings
            if member in b.members}


def test_joiner_creates_account_roles_and_bindings_then_converges(
        tmp_path: Path, gcp: tuple[IamEmulator, ResourceManagerEmulator, Config]) -> None:
    iam, rm, config = gcp
    _, desired, actions = converge(tmp_path, gcp_workload(), config)
    assert actions == ["create"]
    [account] = iam.service_accounts(PROJECT)
    assert account.email == desired.name
    assert Marker.from_text(account.description) == desired.workload.marker
    roles = {r.name.rsplit("/", 1)[1]: sorted(r.permissions) for r in iam.roles(PROJECT)}
    read = render.role_id("wid", "prod", "catalog-sync", ["storage.objects.get", "storage.objects.list"])
    write = render.role_id("wid", "prod", "catalog-sync", ["storage.objects.create"])
    assert roles == {read: ["storage.objects.get", "storage.objects.list"],
                     write: ["storage.objects.create"]}
    assert bindings_of(rm, f"serviceAccount:{desired.name}") == {
        read: render.condition_for_text("gcs-bucket", "projects/_/buckets/bucket-a"),
        write: render.condition_for_text("gcs-bucket", "projects/_/buckets/bucket-b")}
    policy = iam.client().get_iam_policy(request={"resource": desired.address})
    assert [(b.role, list(b.members)) for b in policy.bindings] == [(
        "roles/iam.workloadIdentityUser",
        [f"principal://iam.googleapis.com/{POOL}/subject/repo:acme/catalog-sync:ref:refs/heads/main"])]
    assert converge(tmp_path, gcp_workload(), config)[2] == []  # idempotent


def test_mover_shrinks_roles_and_bindings_and_leaves_others_alone(
        tmp_path: Path, gcp: tuple[IamEmulator, ResourceManagerEmulator, Config]) -> None:
    iam, rm, config = gcp
    _, desired, _ = converge(tmp_path, gcp_workload(), config)
    member = f"serviceAccount:{desired.name}"
    # Someone else's bindings: alice's, one that also names our account, and a hand-made
    # grant of roles/editor to it. None was made by workload-ids: none is changed.
    from google.iam.v1 import policy_pb2
    policy = rm.client().get_iam_policy(request={"resource": f"projects/{PROJECT}",
                                                 "options": {"requested_policy_version": 3}})
    extra = policy_pb2.Policy(version=3, etag=policy.etag, bindings=list(policy.bindings))
    extra.bindings.add(role="roles/viewer", members=["user:alice@example.com", member])
    extra.bindings.add(role="roles/editor", members=[member])
    rm.client().set_iam_policy(request={"resource": f"projects/{PROJECT}", "policy": extra})
    only_read = gcp_workload(access="    - template: object-storage.read\n"
                                    "      resources: [projects/_/buckets/bucket-a]\n")
    cloud, _, actions = converge(tmp_path, only_read, config)
    assert actions == ["update-roles", "update-project-policy", "update-marker"]
    read = render.role_id("wid", "prod", "catalog-sync", ["storage.objects.get", "storage.objects.list"])
    assert [r.name.rsplit("/", 1)[1] for r in iam.roles(PROJECT)] == [read]
    assert bindings_of(rm, member) == {
        read: render.condition_for_text("gcs-bucket", "projects/_/buckets/bucket-a"),
        "viewer": "", "editor": ""}
    assert sorted(next(b.members for b in rm.policy(PROJECT).bindings if b.role == "roles/viewer")) == \
        sorted(["user:alice@example.com", member])
    assert converge(tmp_path, only_read, config)[2] == []
    # The plan reports what the account holds through bindings not ours.
    desired = cloud.desired(validate([tmp_path / "w.yaml"], config).compiled[0])
    observed = cloud.identities.observe_one(desired)
    assert observed is not None and observed.extra["foreignGrants"] == ["roles/editor", "roles/viewer"]


def test_account_without_our_marker_is_never_modified(
        tmp_path: Path, gcp: tuple[IamEmulator, ResourceManagerEmulator, Config]) -> None:
    iam, rm, config = gcp
    account_id = render.account_id("wid", "prod", "catalog-sync")
    iam.client().create_service_account(request={
        "name": f"projects/{PROJECT}", "account_id": account_id,
        "service_account": {"description": "workload-ids:v1 workload=catalog-sync owner=x environment=prod"}})
    with pytest.raises(ConflictError, match="does not carry the workload-ids marker"):
        converge(tmp_path, gcp_workload(), config)
    assert iam.roles(PROJECT) == []
    assert bindings_of(rm, f"serviceAccount:{account_id}@{PROJECT}.iam.gserviceaccount.com") == {}


def test_fleet_read_is_three_calls_and_finds_no_changes(
        tmp_path: Path, gcp: tuple[IamEmulator, ResourceManagerEmulator, Config]) -> None:
    _, _, config = gcp
    texts = {f"svc-{i}": gcp_workload(name=f"svc-{i}") for i in range(4)}
    for name, text in texts.items():
        (tmp_path / name).mkdir()
        converge(tmp_path / name, text, config)
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    cloud = connect("gcp", config, seam)
    scope = {o.name: o for o in cloud.identities.observe_scope(PROJECT)}
    assert seam.stats.calls == {"gcp:iam.list_service_accounts": 1, "gcp:iam.list_roles": 1,
                                "gcp:resourcemanager.get_iam_policy": 1,
                                "gcp:secretmanager.access_secret_version": 1}  # the signing key
    for name in texts:
        path = tmp_path / name / "w.yaml"
        checked = validate([path], config)
        desired = cloud.desired(checked.compiled[0])
        assert cloud.identities.diff(desired, scope[desired.name]) == [], name
    # A manifest changed since the last apply (its owner: in every marker): the batch read
    # left the account's own policy out, so plan reads that account again, alone, and the
    # plan is the one a per-service run makes: the roles' descriptions and the marker.
    changed = gcp_workload(name="svc-0").replace("owner: team-platform", "owner: team-data")
    (tmp_path / "svc-0" / "w.yaml").write_text(changed)
    desired = cloud.desired(validate([tmp_path / "svc-0" / "w.yaml"], config).compiled[0])
    assert not scope[desired.name].complete
    alone = cloud.identities.observe_one(desired)
    assert alone is not None and alone.complete
    assert [c.action for c in cloud.identities.diff(desired, alone)] == ["update-roles", "update-marker"]


def test_a_project_with_none_of_ours_costs_no_key_read_and_gets_nothing_without_one(
        tmp_path: Path, gcp: tuple[IamEmulator, ResourceManagerEmulator, Config]) -> None:
    """A fleet's project that holds no account claiming to be ours is read in three calls
    (no signing key: nothing there to believe); a project holding ours still reads its key
    once. Making an account still needs the key first: none is made without it."""
    from workload_ids.markers import NoSigningKey
    iam, rm, config = gcp
    empty = "acme-empty"  # no signing key in this project
    iam.add_project(empty)
    rm.add_project(empty)
    converge(tmp_path, gcp_workload(), config)
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    cloud = connect("gcp", config, seam)
    assert cloud.identities.observe_scope(empty) == []
    reads = {"gcp:iam.list_service_accounts": 1, "gcp:iam.list_roles": 1,
             "gcp:resourcemanager.get_iam_policy": 1}
    assert seam.stats.calls == reads
    assert [o.unauthenticated for o in cloud.identities.observe_scope(PROJECT)] == [None]
    assert seam.stats.calls == {k: 2 for k in reads} | {"gcp:secretmanager.access_secret_version": 1}
    (tmp_path / "new").mkdir()
    endpoints = ("iamEndpoint", "resourceManagerEndpoint", "resourcePolicyEndpoint",
                 "secretManagerEndpoint", "sandboxCredentials")
    # The test's pool is in project number 123456789012: say it is the empty project's own.
    numbers = {**TEST_TRUST_DATA["gcpProjectNumbers"], empty: 123456789012}
    there = Config(ConfigFile.model_validate({
        "gcp": {k: getattr(config.gcp, k) for k in endpoints},
        "trust": {**TEST_TRUST_DATA, "gcpProjectNumbers": numbers}}), Path.cwd(), None)
    path = tmp_path / "new" / "w.yaml"
    path.write_text(gcp_workload(name="svc-new").replace(f"project: {PROJECT}", f"project: {empty}"))
    fleet = connect("gcp", there, CallSeam(RetryPolicy(), sleep=lambda s: None))
    desired = fleet.desired(validate([path], there).compiled[0])
    # As a fleet plan reads it: the project's batch read, which needs no key.
    assert {o.name for o in fleet.identities.observe_scope(empty)} == set()
    [create] = fleet.identities.diff(desired, None)
    with pytest.raises(NoSigningKey, match=f"no signing key at Secret Manager secret .* in project {empty}"):
        fleet.identities.apply(create)
    assert iam.service_accounts(empty) == []


def resource_members(emulator: ResourcePolicyEmulator, resource: str) -> dict[str, list[str]]:
    return {b.role: sorted(b.members) for b in emulator.policy(resource).bindings}


def test_resource_bindings_get_a_role_per_resource_and_movers_revoke_them(
        tmp_path: Path, gcp: tuple[IamEmulator, ResourceManagerEmulator, Config],
        resources: ResourcePolicyEmulator) -> None:
    iam, _, config = gcp
    _, desired, actions = converge(tmp_path, WITH_RESOURCES, config)
    assert actions == ["create"]
    member = f"serviceAccount:{desired.name}"
    topic_role = render.role_id("wid", "prod", "catalog-sync", ["pubsub.topics.publish", f"@{TOPIC}"])
    secret_role = render.role_id("wid", "prod", "catalog-sync",
                                 ["secretmanager.versions.access", f"@{SECRET}"])
    assert resource_members(resources, TOPIC) == {f"projects/{PROJECT}/roles/{topic_role}": [member]}
    assert resource_members(resources, SECRET) == {f"projects/{PROJECT}/roles/{secret_role}": [member]}
    roles = {r.name.rsplit("/", 1)[1]: r for r in iam.roles(PROJECT)}
    assert roles[topic_role].description.endswith("\nresource=" + TOPIC)
    # Unchanged manifest: a per-service plan stays within five calls and finds nothing.
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    cloud = connect("gcp", config, seam)
    again = cloud.identities.diff(desired, cloud.identities.observe_one(desired))
    assert again == [] and seam.stats.total == 5  # 4 reads and the signing key
    # Someone else may publish too; a mover drops the topic.
    from google.iam.v1 import iam_policy_pb2
    stub = resources.stub()
    policy = stub.GetIamPolicy(iam_policy_pb2.GetIamPolicyRequest(resource=TOPIC))
    policy.bindings.add(role="roles/pubsub.publisher", members=["user:alice@example.com"])
    stub.SetIamPolicy(iam_policy_pb2.SetIamPolicyRequest(resource=TOPIC, policy=policy))
    topic_entry = "    - template: topic.publish\n      resources: [" + TOPIC + "]\n"
    without_topic = WITH_RESOURCES.replace(topic_entry, "")
    _, _, actions = converge(tmp_path, without_topic, config)
    assert actions == ["update-roles", "update-resource-policies", "update-marker"], actions
    assert resource_members(resources, TOPIC) == {"roles/pubsub.publisher": ["user:alice@example.com"]}
    assert topic_role not in {r.name.rsplit("/", 1)[1] for r in iam.roles(PROJECT)}
    assert resource_members(resources, SECRET) == {f"projects/{PROJECT}/roles/{secret_role}": [member]}
    assert converge(tmp_path, without_topic, config)[2] == []


def test_a_new_account_is_awaited_until_gcp_shows_it(tmp_path: Path,
                                                     resources: ResourcePolicyEmulator) -> None:
    from workload_ids.sandbox.common.clock import ManualClock
    clock = ManualClock()
    iam, rm = IamEmulator(propagation_delay=20.0, clock=clock), ResourceManagerEmulator()
    iam.add_project(PROJECT)
    rm.add_project(PROJECT)
    keys, keys_url = start_key_store([PROJECT])
    config = Config(ConfigFile.model_validate({"gcp": {
        "iamEndpoint": iam.start(), "resourceManagerEndpoint": rm.start(),
        "resourcePolicyEndpoint": resources.start(), "secretManagerEndpoint": keys_url,
        "sandboxCredentials": True}, "trust": TEST_TRUST_DATA}), Path.cwd(), None)
    try:
        path = tmp_path / "w.yaml"
        path.write_text(gcp_workload())
        seam = CallSeam(RetryPolicy(), sleep=lambda s: clock.advance(s))
        cloud = connect("gcp", config, seam)
        desired = cloud.desired(validate([path], config).compiled[0])
        for change in cloud.identities.diff(desired, cloud.identities.observe_one(desired)):
            cloud.identities.apply(change)
        # It waited (on the seam's clock) until three reads in a row saw the account.
        reads = seam.stats.calls["gcp:iam.get_service_account"]
        assert reads >= 4
        assert iam.service_account_policy(desired.name).bindings[0].role == "roles/iam.workloadIdentityUser"
    finally:
        iam.stop()
        rm.stop()
        keys.stop()


def test_a_plan_names_who_may_obtain_credentials_alone_or_in_a_fleet(tmp_path: Path) -> None:
    """The federation change in words (pool and subject, added and removed), and the same
    plan whether the workload is read alone or in a batch read of the project."""
    from support.trust import TEST_TRUST

    from workload_ids.apply import apply_plan
    from workload_ids.config import load_config
    from workload_ids.plan import build_plan, render_text
    from workload_ids.sandbox.gcp.local import start_local_gcp
    examples = Path(__file__).resolve().parents[2] / "examples"
    local = start_local_gcp()
    try:
        config_file = tmp_path / "workload-ids.yaml"
        config_file.write_text(local.config_block() + TEST_TRUST)
        config = load_config(config_file)
        path = tmp_path / "w.yaml"

        def plans(text: str) -> dict[bool, Any]:
            path.write_text(text)
            compiled = validate([path], config).compiled
            return {fleet: build_plan(compiled, config, CallSeam(RetryPolicy(), sleep=lambda s: None),
                                      fleet=fleet) for fleet in (False, True)}
        original = (examples / "gcp" / "catalog-sync.yaml").read_text()
        pool = "projects/123456789012/locations/global/workloadIdentityPools/github"
        created = plans(original)
        assert created[False].changes[0].details["trust"] == {
            "added": [{"principal": pool, "subject": "repo:acme/catalog-sync:ref:refs/heads/main"}],
            "removed": []}
        assert apply_plan(created[False]).ok
        moved = plans(original.replace("ref: refs/heads/main", "ref: refs/heads/release"))
        alone, batch = ([c.as_json() for c in moved[f].changes] for f in (False, True))
        assert alone == batch
        [federation] = [c for c in alone if c["action"] == "update-federation"]
        assert federation["trust"] == {
            "added": [{"principal": pool, "subject": "repo:acme/catalog-sync:ref:refs/heads/release"}],
            "removed": [{"principal": pool, "subject": "repo:acme/catalog-sync:ref:refs/heads/main"}]}
        assert "checkedAtApply" not in str(alone)
        text = render_text(moved[True])
        assert f"+ trust {pool}  repo:acme/catalog-sync:ref:refs/heads/release" in text
        assert f"- trust {pool}  repo:acme/catalog-sync:ref:refs/heads/main" in text
    finally:
        local.stop()
