"""The local Resource Manager and Secret Manager emulators, driven by the real Google
client libraries: what they enforce is what a GCP provider must handle on real GCP."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("google.cloud.resourcemanager_v3")
pytest.importorskip("google.cloud.secretmanager_v1")

from google.api_core import exceptions as gx
from google.cloud import resourcemanager_v3, secretmanager_v1
from google.iam.v1 import policy_pb2

from workload_ids.sandbox.common.clock import ManualClock
from workload_ids.sandbox.gcp.resourcemanager import (
    CONCURRENT_CHANGE,
    ProjectRegistry,
    ResourceManagerEmulator,
    project_number,
)
from workload_ids.sandbox.gcp.secretmanager import SecretManagerEmulator, crc32c

State = secretmanager_v1.SecretVersion.State
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def registry() -> ProjectRegistry:
    return ProjectRegistry()


@pytest.fixture(scope="module")
def rm(registry: ProjectRegistry) -> Iterator[ResourceManagerEmulator]:
    emulator = ResourceManagerEmulator(projects=registry)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def rmc(rm: ResourceManagerEmulator) -> resourcemanager_v3.ProjectsClient:
    return rm.client()


@pytest.fixture(scope="module")
def sm(registry: ProjectRegistry) -> Iterator[SecretManagerEmulator]:
    emulator = SecretManagerEmulator(projects=registry)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def smc(sm: SecretManagerEmulator) -> secretmanager_v1.SecretManagerServiceClient:
    return sm.client()


@pytest.fixture
def project(registry: ProjectRegistry) -> str:
    """A fresh project known to both emulators."""
    return registry.add(f"proj-{next(_ids):04d}").project_id


# --- Resource Manager: project IAM policy ---------------------------------------------

def binding(role: str, *members: str, condition: tuple[str, str, str] | None = None) -> policy_pb2.Binding:
    out = policy_pb2.Binding(role=role, members=list(members))
    if condition is not None:
        out.condition.title, out.condition.description, out.condition.expression = condition
    return out


def get_policy(client: resourcemanager_v3.ProjectsClient, project: str,
               version: int | None = 3) -> policy_pb2.Policy:
    request: dict[str, object] = {"resource": f"projects/{project}"}
    if version is not None:
        request["options"] = {"requested_policy_version": version}
    return client.get_iam_policy(request=request)


def set_policy(client: resourcemanager_v3.ProjectsClient, project: str,
               policy: policy_pb2.Policy) -> policy_pb2.Policy:
    return client.set_iam_policy(request={"resource": f"projects/{project}", "policy": policy})


def status_of(exc: gx.GoogleAPICallError) -> str:
    """The canonical status in a REST error body (what tells ABORTED from ALREADY_EXISTS)."""
    assert exc.response is not None
    status: str = exc.response.json()["error"]["status"]
    return status


EXPIRY = ("expires 2030", "temporary access — ünïcode & \"quotes\"",
          "request.time < timestamp('2030-01-01T00:00:00Z') &&\n"
          "resource.name.startsWith(\"projects/_/buckets/b\")")


def test_policy_round_trip_keeps_conditional_bindings_exactly(
        rmc: resourcemanager_v3.ProjectsClient, project: str) -> None:
    first = get_policy(rmc, project)
    assert first.version == 1 and not first.bindings and first.etag
    wanted = [binding("roles/editor", "serviceAccount:ci@p.iam.gserviceaccount.com", condition=EXPIRY),
              binding("roles/viewer", "group:devs@example.com", "user:ann@example.com")]
    answer = set_policy(rmc, project, policy_pb2.Policy(version=3, etag=first.etag, bindings=wanted))
    again = get_policy(rmc, project)
    assert list(again.bindings) == wanted == list(answer.bindings)
    condition = again.bindings[0].condition
    assert (condition.title, condition.description, condition.expression) == EXPIRY
    assert again.version == answer.version == 3
    assert again.etag == answer.etag != first.etag


def test_version_1_read_of_a_conditional_policy_renames_roles_and_hides_conditions(
        rmc: resourcemanager_v3.ProjectsClient, project: str) -> None:
    set_policy(rmc, project, policy_pb2.Policy(version=3, bindings=[
        binding("roles/editor", "user:ann@example.com", condition=EXPIRY),
        binding("roles/viewer", "user:bob@example.com")]))
    for version in (None, 1):
        seen = get_policy(rmc, project, version)
        assert seen.version == 1
        assert seen.bindings[0].role.startswith("roles/editor_withcond_")
        assert not seen.bindings[0].HasField("condition")
        assert seen.bindings[1] == binding("roles/viewer", "user:bob@example.com")


def test_stale_etag_is_409_aborted_which_the_rest_client_raises_as_conflict(
        rmc: resourcemanager_v3.ProjectsClient, project: str) -> None:
    read = get_policy(rmc, project)
    set_policy(rmc, project, policy_pb2.Policy(etag=read.etag, bindings=[
        binding("roles/viewer", "user:ann@example.com")]))
    with pytest.raises(gx.Conflict) as caught:
        set_policy(rmc, project, policy_pb2.Policy(etag=read.etag, bindings=[
            binding("roles/viewer", "user:bob@example.com")]))
    # The REST client picks the class by HTTP status alone: 409 is Conflict, never Aborted.
    assert type(caught.value) is gx.Conflict
    assert caught.value.code == 409 and status_of(caught.value) == "ABORTED"
    assert CONCURRENT_CHANGE in caught.value.message


def add_member(client: resourcemanager_v3.ProjectsClient, project: str, role: str, member: str,
               between_read_and_write: Callable[[int], None] = lambda attempt: None) -> int:
    """The read-modify-write loop a provider must run; returns the attempts it took."""
    for attempt in range(1, 6):
        policy = get_policy(client, project)
        between_read_and_write(attempt)
        policy.bindings.append(binding(role, member))
        try:
            set_policy(client, project, policy)
            return attempt
        except gx.Conflict as exc:
            if status_of(exc) != "ABORTED":
                raise
    raise AssertionError("gave up")


def test_read_modify_write_retry_wins_over_a_concurrent_writer(
        rm: ResourceManagerEmulator, rmc: resourcemanager_v3.ProjectsClient, project: str) -> None:
    other = rm.client()

    def interfere(attempt: int) -> None:
        if attempt == 1:
            add_member(other, project, "roles/browser", "user:other@example.com")

    before = rm.calls["SetIamPolicy"]
    assert add_member(rmc, project, "roles/viewer", "user:me@example.com", interfere) == 2
    assert rm.calls["SetIamPolicy"] - before == 3  # theirs, our refused write, our retry
    roles = {b.role: list(b.members) for b in get_policy(rmc, project).bindings}
    assert roles == {"roles/browser": ["user:other@example.com"], "roles/viewer": ["user:me@example.com"]}


def test_set_without_etag_overwrites_even_a_conditional_policy(
        rmc: resourcemanager_v3.ProjectsClient, project: str) -> None:
    set_policy(rmc, project, policy_pb2.Policy(version=3, bindings=[
        binding("roles/editor", "user:ann@example.com", condition=EXPIRY)]))
    set_policy(rmc, project, policy_pb2.Policy(bindings=[binding("roles/viewer", "user:bob@example.com")]))
    seen = get_policy(rmc, project)
    assert seen.version == 1 and list(seen.bindings) == [binding("roles/viewer", "user:bob@example.com")]


def test_conditions_need_version_3(rmc: resourcemanager_v3.ProjectsClient, project: str) -> None:
    for version in (0, 1):
        with pytest.raises(gx.BadRequest) as caught:
            set_policy(rmc, project, policy_pb2.Policy(version=version, bindings=[
                binding("roles/editor", "user:ann@example.com", condition=EXPIRY)]))
        assert status_of(caught.value) == "INVALID_ARGUMENT"
    conditional = set_policy(rmc, project, policy_pb2.Policy(version=3, bindings=[
        binding("roles/editor", "user:ann@example.com", condition=EXPIRY)]))
    # With an etag, a version-1 write may not silently drop the conditions.
    with pytest.raises(gx.BadRequest, match="cannot be less than the existing policy version"):
        set_policy(rmc, project, policy_pb2.Policy(version=1, etag=conditional.etag, bindings=[
            binding("roles/viewer", "user:bob@example.com")]))


def test_requested_policy_version_must_be_0_1_or_3(rmc: resourcemanager_v3.ProjectsClient,
                                                    project: str) -> None:
    with pytest.raises(gx.BadRequest):
        get_policy(rmc, project, 2)


def test_at_most_1500_members(rmc: resourcemanager_v3.ProjectsClient, project: str) -> None:
    members = [f"user:u{i}@example.com" for i in range(1501)]
    full = [binding("roles/viewer", *members[:750]), binding("roles/browser", *members[750:1500])]
    set_policy(rmc, project, policy_pb2.Policy(bindings=full))
    with pytest.raises(gx.BadRequest, match="maximum allowed size 1500"):
        set_policy(rmc, project, policy_pb2.Policy(bindings=[*full, binding("roles/editor", members[-1])]))


@pytest.mark.parametrize("bad", [
    binding("roles/viewer", "ann@example.com"),  # no principal type
    binding("viewer", "user:ann@example.com"),
    binding("roles/viewer_withcond_0123456789abcdef0123", "user:ann@example.com"),
    binding("roles/viewer"),  # no members
    binding("roles/viewer", "user:ann@example.com", condition=("", "", "true")),  # no title
])
def test_malformed_bindings_are_refused(rmc: resourcemanager_v3.ProjectsClient, project: str,
                                        bad: policy_pb2.Binding) -> None:
    with pytest.raises(gx.BadRequest):
        set_policy(rmc, project, policy_pb2.Policy(bindings=[bad]))


def test_bindings_are_merged_deduplicated_and_sorted(rmc: resourcemanager_v3.ProjectsClient,
                                                     project: str) -> None:
    stored = set_policy(rmc, project, policy_pb2.Policy(bindings=[
        binding("roles/viewer", "user:zed@example.com", "user:ann@example.com"),
        binding("roles/browser", "deleted:serviceAccount:old@p.iam.gserviceaccount.com?uid=123"),
        binding("roles/viewer", "user:ann@example.com", "domain:example.com")]))
    assert list(stored.bindings) == [
        binding("roles/browser", "deleted:serviceAccount:old@p.iam.gserviceaccount.com?uid=123"),
        binding("roles/viewer", "domain:example.com", "user:ann@example.com", "user:zed@example.com")]


def test_rm_unknown_project_is_not_found_unless_sandbox(rmc: resourcemanager_v3.ProjectsClient) -> None:
    with pytest.raises(gx.NotFound):
        get_policy(rmc, "nobody-made-this")
    with pytest.raises(gx.NotFound):
        set_policy(rmc, "nobody-made-this", policy_pb2.Policy())
    with pytest.raises(gx.NotFound):
        rmc.get_project(name="projects/nobody-made-this")
    with ResourceManagerEmulator(sandbox=True) as sandbox:
        client = sandbox.client()
        assert get_policy(client, "made-on-demand").etag
        found = client.get_project(name="projects/made-on-demand")
        assert found.project_id == "made-on-demand"
        assert found.name == f"projects/{project_number('made-on-demand')}"
        assert found.state == resourcemanager_v3.Project.State.ACTIVE
        assert client.get_project(name=found.name).project_id == "made-on-demand"  # by number


def test_unknown_project_can_answer_permission_denied_like_real_gcp() -> None:
    with ResourceManagerEmulator(unknown_project_status="PERMISSION_DENIED") as emulator, \
            pytest.raises(gx.Forbidden):
        get_policy(emulator.client(), "nobody-made-this")


def test_policy_changes_propagate_after_the_delay_on_the_injected_clock() -> None:
    clock = ManualClock(1_800_000_000.0)
    with ResourceManagerEmulator(propagation_delay=60, clock=clock) as emulator:
        emulator.add_project("slow-project")
        client = emulator.client()
        before = get_policy(client, "slow-project")
        written = set_policy(client, "slow-project", policy_pb2.Policy(etag=before.etag, bindings=[
            binding("roles/viewer", "user:ann@example.com")]))
        assert list(written.bindings)  # the writer sees its own write at once
        assert get_policy(client, "slow-project") == before  # readers do not, yet
        assert list(emulator.policy("slow-project").bindings) == list(written.bindings)
        with pytest.raises(gx.Conflict):  # a stale read cannot win a write
            set_policy(client, "slow-project", before)
        clock.advance(59.9)
        assert get_policy(client, "slow-project") == before
        clock.advance(0.2)
        assert get_policy(client, "slow-project") == written


def test_injected_faults_and_unemulated_calls(rm: ResourceManagerEmulator,
                                              rmc: resourcemanager_v3.ProjectsClient, project: str) -> None:
    rm.inject_error("GetProject", "PERMISSION_DENIED")
    with pytest.raises(gx.Forbidden):
        rmc.get_project(name=f"projects/{project}")
    assert rmc.get_project(name=f"projects/{project}").project_id == project
    with pytest.raises(gx.MethodNotImplemented):
        rmc.test_iam_permissions(request={"resource": f"projects/{project}", "permissions": ["a.b.c"]})


# --- Secret Manager -------------------------------------------------------------------

AUTOMATIC: dict[str, object] = {"automatic": {}}


def create(client: secretmanager_v1.SecretManagerServiceClient, project: str, secret_id: str,
           **fields: object) -> secretmanager_v1.Secret:
    return client.create_secret(request={"parent": f"projects/{project}", "secret_id": secret_id,
                                         "secret": {"replication": AUTOMATIC, **fields}})


def add(client: secretmanager_v1.SecretManagerServiceClient, secret: str, data: bytes,
        checksum: int | None = None) -> secretmanager_v1.SecretVersion:
    payload: dict[str, object] = {"data": data}
    if checksum is not None:
        payload["data_crc32c"] = checksum
    return client.add_secret_version(request={"parent": secret, "payload": payload})


def test_create_and_get_secret(smc: secretmanager_v1.SecretManagerServiceClient, project: str) -> None:
    made = create(smc, project, "db-password", labels={"owner": "workload-ids", "team": "pay"},
                  annotations={"workload-ids.managed": "true"})
    number = project_number(project)
    assert made.name == f"projects/{number}/secrets/db-password"  # GCP answers with the number
    assert dict(made.labels) == {"owner": "workload-ids", "team": "pay"}
    assert dict(made.annotations) == {"workload-ids.managed": "true"}
    assert "automatic" in made.replication and made.etag and made.create_time
    assert smc.get_secret(name=f"projects/{project}/secrets/db-password") == made
    assert smc.get_secret(name=made.name) == made
    with pytest.raises(gx.AlreadyExists):
        create(smc, project, "db-password")
    with pytest.raises(gx.NotFound):
        smc.get_secret(name=f"projects/{project}/secrets/nope")


@pytest.mark.parametrize("request_fields", [
    {"secret_id": "has.dot", "secret": {"replication": AUTOMATIC}},
    {"secret_id": "no-replication", "secret": {}},
    {"secret_id": "bad-label", "secret": {"replication": AUTOMATIC, "labels": {"Owner": "x"}}},
    {"secret_id": "bad-annotation", "secret": {"replication": AUTOMATIC, "annotations": {"-x": "y"}}},
    # Unlike Kubernetes annotations, Secret Manager's keys allow no "/" (no domain prefix).
    {"secret_id": "slash", "secret": {"replication": AUTOMATIC, "annotations": {"example.com/k": "v"}}},
    # A replication's customer-managed key: a crypto key, in global (automatic) or in the
    # replica's own location.
    {"secret_id": "cmek-name", "secret": {"replication": {"automatic": {
        "customer_managed_encryption": {"kms_key_name": "projects/p/keyRings/r/cryptoKeys/k"}}}}},
    {"secret_id": "cmek-regional", "secret": {"replication": {"automatic": {"customer_managed_encryption": {
        "kms_key_name": "projects/p/locations/us-east1/keyRings/r/cryptoKeys/k"}}}}},
    {"secret_id": "cmek-replica", "secret": {"replication": {"user_managed": {"replicas": [{
        "location": "us-east1", "customer_managed_encryption": {
            "kms_key_name": "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k"}}]}}}},
])
def test_invalid_secrets_are_refused(smc: secretmanager_v1.SecretManagerServiceClient, project: str,
                                     request_fields: dict[str, object]) -> None:
    with pytest.raises(gx.InvalidArgument):
        smc.create_secret(request={"parent": f"projects/{project}", **request_fields})


def test_a_replication_keeps_its_customer_managed_keys(smc: secretmanager_v1.SecretManagerServiceClient,
                                                      project: str) -> None:
    key = "projects/kms/locations/{}/keyRings/r/cryptoKeys/k"
    made = create(smc, project, "cmek", replication={"user_managed": {"replicas": [
        {"location": "us-east1", "customer_managed_encryption": {"kms_key_name": key.format("us-east1")}},
        {"location": "europe-west1"}]}})
    replicas = smc.get_secret(name=made.name).replication.user_managed.replicas
    assert [(r.location, r.customer_managed_encryption.kms_key_name) for r in replicas] == [
        ("us-east1", key.format("us-east1")), ("europe-west1", "")]
    auto = create(smc, project, "cmek-auto", replication={"automatic": {"customer_managed_encryption": {
        "kms_key_name": key.format("global")}}})
    assert auto.replication.automatic.customer_managed_encryption.kms_key_name == key.format("global")


def test_add_and_access_versions(smc: secretmanager_v1.SecretManagerServiceClient, project: str) -> None:
    secret = create(smc, project, "api-key").name
    one = add(smc, secret, b"first", crc32c(b"first"))
    two = add(smc, secret, b"second")
    assert one.name == f"{secret}/versions/1" and one.state == State.ENABLED
    assert one.client_specified_payload_checksum and not two.client_specified_payload_checksum
    latest = smc.access_secret_version(name=f"projects/{project}/secrets/api-key/versions/latest")
    assert latest.name == two.name  # the alias resolves to the number
    assert latest.payload.data == b"second" and latest.payload.data_crc32c == crc32c(b"second")
    assert smc.access_secret_version(name=f"{secret}/versions/1").payload.data == b"first"
    assert smc.get_secret_version(name=f"{secret}/versions/latest").name == two.name
    with pytest.raises(gx.NotFound):
        smc.access_secret_version(name=f"{secret}/versions/3")


def test_checksum_mismatch_and_payload_limits(smc: secretmanager_v1.SecretManagerServiceClient,
                                              project: str) -> None:
    secret = create(smc, project, "checked").name
    with pytest.raises(gx.InvalidArgument, match="Checksum mismatch"):
        add(smc, secret, b"data", crc32c(b"data") ^ 1)
    for bad in (b"", b"x" * 65537):
        with pytest.raises(gx.InvalidArgument):
            add(smc, secret, bad)
    with pytest.raises(gx.NotFound, match="has no versions"):
        smc.access_secret_version(name=f"{secret}/versions/latest")
    assert add(smc, secret, b"x" * 65536).name.endswith("/versions/1")


def test_disable_enable_destroy(smc: secretmanager_v1.SecretManagerServiceClient, project: str) -> None:
    secret = create(smc, project, "rotating").name
    add(smc, secret, b"old")
    new = add(smc, secret, b"new")
    disabled = smc.disable_secret_version(request={"name": new.name, "etag": new.etag})
    assert disabled.state == State.DISABLED and disabled.etag != new.etag
    with pytest.raises(gx.FailedPrecondition, match=r"versions/2\] is in DISABLED state"):
        smc.access_secret_version(name=f"{secret}/versions/latest")  # latest does not fall back
    assert smc.access_secret_version(name=f"{secret}/versions/1").payload.data == b"old"
    with pytest.raises(gx.Aborted):  # the etag from before the disable is stale
        smc.enable_secret_version(request={"name": new.name, "etag": new.etag})
    assert smc.enable_secret_version(name=new.name).state == State.ENABLED
    destroyed = smc.destroy_secret_version(name=new.name)
    assert destroyed.state == State.DESTROYED and destroyed.destroy_time
    with pytest.raises(gx.FailedPrecondition, match="DESTROYED"):
        smc.access_secret_version(name=new.name)
    with pytest.raises(gx.FailedPrecondition):
        smc.enable_secret_version(name=new.name)
    assert smc.get_secret_version(name=new.name).state == State.DESTROYED  # metadata stays


def test_update_labels_with_etag(smc: secretmanager_v1.SecretManagerServiceClient, project: str) -> None:
    made = create(smc, project, "labelled", labels={"owner": "a"}, annotations={"note": "keep"})
    changed = smc.update_secret(request={
        "secret": {"name": made.name, "labels": {"owner": "b", "quarantine": "2026-11-25"},
                   "etag": made.etag},
        "update_mask": {"paths": ["labels"]}})
    assert dict(changed.labels) == {"owner": "b", "quarantine": "2026-11-25"}
    assert dict(changed.annotations) == {"note": "keep"} and changed.etag != made.etag
    with pytest.raises(gx.Aborted):
        smc.update_secret(request={"secret": {"name": made.name, "labels": {}, "etag": made.etag},
                                   "update_mask": {"paths": ["labels"]}})
    with pytest.raises(gx.InvalidArgument):
        smc.update_secret(request={"secret": {"name": made.name, "labels": {}}})  # no mask
    with pytest.raises(gx.InvalidArgument):
        smc.update_secret(request={"secret": {"name": made.name, "replication": AUTOMATIC},
                                   "update_mask": {"paths": ["replication"]}})
    assert smc.get_secret(name=made.name) == changed


def test_list_secrets_pages_newest_first_and_filters(sm: SecretManagerEmulator,
                                                     smc: secretmanager_v1.SecretManagerServiceClient,
                                                     project: str) -> None:
    for i in range(7):
        create(smc, project, f"svc-{i}", labels={"team": "a" if i % 2 else "b"})
    pages = list(smc.list_secrets(request={"parent": f"projects/{project}", "page_size": 3}).pages)
    assert [len(p.secrets) for p in pages] == [3, 3, 1] and pages[0].total_size == 7
    ids = [s.name.rsplit("/", 1)[1] for p in pages for s in p.secrets]
    assert ids == [f"svc-{i}" for i in reversed(range(7))]

    def names(filter_: str) -> list[str]:
        found = smc.list_secrets(request={"parent": f"projects/{project}", "filter": filter_})
        return sorted(s.name.rsplit("/", 1)[1] for s in found)

    assert names("labels.team=a") == ["svc-1", "svc-3", "svc-5"]
    assert names("labels.team=a AND name:svc-3") == ["svc-3"]
    assert names("name:svc-1 OR name:svc-2") == ["svc-1", "svc-2"]
    assert names("NOT labels.team=a name:svc-*") == ["svc-0", "svc-2", "svc-4", "svc-6"]
    assert len(names("labels.team:*")) == 7 and names("labels.owner:*") == []
    with pytest.raises(gx.InvalidArgument):
        names("colour=red")
    with pytest.raises(gx.MethodNotImplemented):  # beyond what the emulator evaluates exactly
        names("(labels.team=a)")


def test_list_versions_and_filter_by_state(smc: secretmanager_v1.SecretManagerServiceClient,
                                           project: str) -> None:
    secret = create(smc, project, "many").name
    for i in range(4):
        add(smc, secret, f"v{i}".encode())
    smc.disable_secret_version(name=f"{secret}/versions/2")
    smc.destroy_secret_version(name=f"{secret}/versions/3")
    listed = smc.list_secret_versions(request={"parent": secret, "page_size": 2})
    assert [v.name.rsplit("/", 1)[1] for v in listed] == ["4", "3", "2", "1"]
    enabled = smc.list_secret_versions(request={"parent": secret, "filter": "state:ENABLED"})
    assert [v.name.rsplit("/", 1)[1] for v in enabled] == ["4", "1"]


def test_delete_secret(smc: secretmanager_v1.SecretManagerServiceClient, project: str) -> None:
    made = create(smc, project, "short-lived")
    add(smc, made.name, b"x")
    with pytest.raises(gx.Aborted):
        smc.delete_secret(request={"name": made.name, "etag": '"stale"'})
    smc.delete_secret(request={"name": made.name, "etag": made.etag})
    with pytest.raises(gx.NotFound):
        smc.access_secret_version(name=f"{made.name}/versions/1")
    with pytest.raises(gx.NotFound):
        smc.delete_secret(name=made.name)
    assert create(smc, project, "short-lived").name == made.name  # the id is free again


def test_sm_unknown_project_is_not_found_unless_sandbox(
        smc: secretmanager_v1.SecretManagerServiceClient) -> None:
    with pytest.raises(gx.NotFound):
        create(smc, "nobody-made-this", "s")
    with pytest.raises(gx.NotFound):
        smc.list_secrets(request={"parent": "projects/nobody-made-this"})
    with SecretManagerEmulator(sandbox=True) as sandbox:
        client = sandbox.client()
        made = create(client, "made-on-demand", "s")
        assert made.name == f"projects/{project_number('made-on-demand')}/secrets/s"


def test_projects_are_shared_through_the_registry(rm: ResourceManagerEmulator,
                                                  smc: secretmanager_v1.SecretManagerServiceClient) -> None:
    rm.add_project("added-via-rm")
    assert create(smc, "added-via-rm", "s").name.startswith(f"projects/{project_number('added-via-rm')}/")


def test_concurrent_writers_get_distinct_versions(smc: secretmanager_v1.SecretManagerServiceClient,
                                                  project: str) -> None:
    secret = create(smc, project, "busy").name
    names: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(5):
            made = add(smc, secret, f"{n}-{i}".encode())
            with lock:
                names.append(made.name)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(names) == sorted(f"{secret}/versions/{i}" for i in range(1, 41))


def test_rest_transport_maps_errors_by_http_status(sm: SecretManagerEmulator,
                                                   smc: secretmanager_v1.SecretManagerServiceClient,
                                                   project: str) -> None:
    rest = sm.client("rest")
    made = create(rest, project, "over-rest", labels={"owner": "a"})
    version = add(rest, made.name, b"payload", crc32c(b"payload"))
    assert smc.access_secret_version(name=version.name).payload.data == b"payload"  # one state
    assert rest.get_secret(name=made.name) == smc.get_secret(name=made.name)
    with pytest.raises(gx.Conflict) as exists:
        create(rest, project, "over-rest")
    with pytest.raises(gx.Conflict) as stale:
        rest.update_secret(request={"secret": {"name": made.name, "labels": {}, "etag": '"stale"'},
                                    "update_mask": {"paths": ["labels"]}})
    # Over REST both arrive as plain Conflict; only the body's status tells them apart.
    assert type(exists.value) is type(stale.value) is gx.Conflict
    assert (status_of(exists.value), status_of(stale.value)) == ("ALREADY_EXISTS", "ABORTED")
    rest.disable_secret_version(name=version.name)
    with pytest.raises(gx.BadRequest) as disabled:
        rest.access_secret_version(name=version.name)
    assert status_of(disabled.value) == "FAILED_PRECONDITION"
    with pytest.raises(gx.NotFound):
        rest.get_secret(name=f"projects/{project}/secrets/absent")
    pages = list(rest.list_secrets(request={"parent": f"projects/{project}", "page_size": 1,
                                            "filter": "labels.owner=a"}).pages)
    assert [len(p.secrets) for p in pages] == [1]
