"""IAM policies on service accounts (the IAM Admin emulator, driven by the real
``IAMClient``) and on Pub/Sub, Secret Manager, Artifact Registry, Cloud Run, Cloud
Functions and Cloud Tasks resources (the generic ``google.iam.v1.IAMPolicy`` emulator,
driven by the real ``IAMPolicyStub``): etags, existence, member syntax, conditions, and
a read-modify-write loop that converges under concurrent writers."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from functools import partial

import grpc
import pytest
from google.api_core import exceptions
from google.cloud.iam_admin_v1 import IAMClient
from google.iam.v1 import iam_policy_pb2, iam_policy_pb2_grpc, policy_pb2
from google.type import expr_pb2

from workload_ids.sandbox.common.clock import ManualClock
from workload_ids.sandbox.gcp.iam import IamEmulator
from workload_ids.sandbox.gcp.resourcemanager import RpcError
from workload_ids.sandbox.gcp.resourcepolicy import (
    EMPTY_POLICY_ETAG,
    ResourcePolicyEmulator,
    check_member,
)

PROJECT = "proj-one"
POOL = "projects/123456789012/locations/global/workloadIdentityPools/github-pool"
WIF_SUBJECT = f"principal://iam.googleapis.com/{POOL}/subject/repo:acme/x:ref:refs/heads/main"
WIF_REPO = f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/acme/x"
GKE_KSA = ("principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/"
           "proj-one.svc.id.goog/subject/ns/payments/sa/api")
WORKFORCE = "principalSet://iam.googleapis.com/locations/global/workforcePools/corp-pool/group/admins"
WI_USER = "roles/iam.workloadIdentityUser"

TOPIC = f"projects/{PROJECT}/topics/orders"
RESOURCES = [
    TOPIC,
    f"projects/{PROJECT}/subscriptions/orders-worker",
    f"projects/{PROJECT}/secrets/db_password",
    f"projects/{PROJECT}/locations/us/repositories/images",
    f"projects/{PROJECT}/locations/europe-west4/services/api",
    "projects/123456789012/locations/us-central1/functions/resize_image",
    f"projects/{PROJECT}/locations/us-central1/queues/emails",
]


def binding(role: str, *members: str, condition: expr_pb2.Expr | None = None) -> policy_pb2.Binding:
    out = policy_pb2.Binding(role=role, members=members)
    if condition is not None:
        out.condition.CopyFrom(condition)
    return out


def as_tuples(policy: policy_pb2.Policy) -> list[tuple[str, list[str]]]:
    return [(b.role, list(b.members)) for b in policy.bindings]


UNTIL_2030 = expr_pb2.Expr(title="until 2030", expression="request.time < timestamp('2030-01-01T00:00:00Z')")

BAD_MEMBERS = [
    "alice@example.com",  # no type
    "user:",
    "user:not-an-email",
    "serviceAccount:svc@",
    "projectOwner:proj-one",  # convenience values are for buckets
    "deleted:serviceAccount:old@proj-one.iam.gserviceaccount.com",  # no ?uid=
    "principal://iam.googleapis.com/projects/proj-one/locations/global/workloadIdentityPools/github-pool"
    "/subject/x",  # project id, not number
    f"principalSet://iam.googleapis.com/{POOL}/repository/acme/x",  # not attribute.repository
    f"principal://iam.googleapis.com/{POOL}/subject/",
    "principal://iam.googleapis.com/projects/1/locations/us/workloadIdentityPools/github-pool/subject/x",
    "principal://example.com/subject/x",
]


# --- service-account policies through the real IAMClient --------------------------------

@pytest.fixture
def iam_emulator() -> Iterator[IamEmulator]:
    with IamEmulator(clock=ManualClock(), projects=[PROJECT]) as emu:
        yield emu


@pytest.fixture
def iam(iam_emulator: IamEmulator) -> IAMClient:
    return iam_emulator.client()


def new_account(iam: IAMClient, account_id: str = "deployer") -> str:
    """Create ``account_id`` and return its resource name."""
    sa = iam.create_service_account(request={"name": f"projects/{PROJECT}", "account_id": account_id})
    name: str = sa.name
    return name


def sa_set(iam: IAMClient, resource: str, *bindings: policy_pb2.Binding, etag: bytes = b"",
           version: int = 1) -> policy_pb2.Policy:
    policy = policy_pb2.Policy(bindings=bindings, etag=etag, version=version)
    result: policy_pb2.Policy = iam.set_iam_policy(request={"resource": resource, "policy": policy})
    return result


def test_sa_policy_starts_empty_with_an_etag(iam: IAMClient) -> None:
    name = new_account(iam)
    policy = iam.get_iam_policy(request={"resource": name})
    assert isinstance(policy, policy_pb2.Policy)
    assert list(policy.bindings) == [] and policy.etag == EMPTY_POLICY_ETAG and policy.version == 1


def test_sa_policy_set_then_read_back_by_every_name(iam: IAMClient, iam_emulator: IamEmulator) -> None:
    name = new_account(iam)
    runner = new_account(iam, "ci-runner")
    email = name.rsplit("/", 1)[1]
    etag = iam.get_iam_policy(request={"resource": name}).etag
    written = sa_set(iam, name,
                     binding(WI_USER, WIF_REPO, WIF_SUBJECT, GKE_KSA),
                     binding("roles/iam.serviceAccountTokenCreator",
                             f"serviceAccount:{runner.rsplit('/', 1)[1]}", "group:deployers@example.com",
                             "user:ana@example.com", "domain:example.com", WORKFORCE,
                             "deleted:serviceAccount:old@proj-one.iam.gserviceaccount.com?uid=123"),
                     binding(WI_USER, WIF_SUBJECT),  # merged into the first, duplicate dropped
                     etag=etag)
    assert written.etag and written.etag != etag
    expected = [
        ("roles/iam.serviceAccountTokenCreator", sorted([
            "deleted:serviceAccount:old@proj-one.iam.gserviceaccount.com?uid=123", "domain:example.com",
            "group:deployers@example.com", f"serviceAccount:{runner.rsplit('/', 1)[1]}",
            "user:ana@example.com", WORKFORCE])),
        (WI_USER, sorted([GKE_KSA, WIF_REPO, WIF_SUBJECT])),
    ]
    assert as_tuples(written) == expected
    unique_id = iam.get_service_account(request={"name": name}).unique_id
    by_id = f"projects/{PROJECT}/serviceAccounts/{unique_id}"
    for ref in (name, f"projects/-/serviceAccounts/{email}", by_id):
        read = iam.get_iam_policy(request={"resource": ref})
        assert (as_tuples(read), read.etag) == (expected, written.etag)
    assert iam_emulator.service_account_policy(email) == written
    assert iam_emulator.calls["SetIamPolicy"] == 1 and iam_emulator.calls["GetIamPolicy"] == 4


def test_sa_policy_stale_etag_is_aborted(iam: IAMClient) -> None:
    name = new_account(iam)
    first = iam.get_iam_policy(request={"resource": name})
    second = iam.get_iam_policy(request={"resource": name})
    sa_set(iam, name, binding(WI_USER, WIF_REPO), etag=first.etag)
    with pytest.raises(exceptions.Aborted, match="concurrent policy changes"):
        sa_set(iam, name, binding(WI_USER, WIF_SUBJECT), etag=second.etag)
    assert as_tuples(iam.get_iam_policy(request={"resource": name})) == [(WI_USER, [WIF_REPO])]
    sa_set(iam, name, binding(WI_USER, WIF_SUBJECT))  # no etag: last writer wins
    assert as_tuples(iam.get_iam_policy(request={"resource": name})) == [(WI_USER, [WIF_SUBJECT])]


def test_sa_policy_of_a_missing_or_deleted_account(iam: IAMClient) -> None:
    ghost = f"projects/{PROJECT}/serviceAccounts/ghost-account@{PROJECT}.iam.gserviceaccount.com"
    with pytest.raises(exceptions.NotFound):
        iam.get_iam_policy(request={"resource": ghost})
    with pytest.raises(exceptions.NotFound):
        sa_set(iam, ghost, binding(WI_USER, WIF_REPO))
    with pytest.raises(exceptions.NotFound):
        iam.test_iam_permissions(request={"resource": ghost, "permissions": ["iam.serviceAccounts.get"]})
    with pytest.raises(exceptions.PermissionDenied):  # documented for the "-" wildcard
        iam.get_iam_policy(request={"resource": ghost.replace(PROJECT, "-", 1)})
    with pytest.raises(exceptions.InvalidArgument):
        iam.get_iam_policy(request={"resource": f"projects/{PROJECT}/topics/orders"})

    name = new_account(iam)
    unique_id = iam.get_service_account(request={"name": name}).unique_id
    old = sa_set(iam, name, binding(WI_USER, WIF_REPO))
    iam.delete_service_account(request={"name": name})
    with pytest.raises(exceptions.NotFound):
        iam.get_iam_policy(request={"resource": name})
    with pytest.raises(exceptions.NotFound):
        sa_set(iam, name, binding(WI_USER, WIF_REPO), etag=old.etag)
    iam.undelete_service_account(request={"name": f"projects/{PROJECT}/serviceAccounts/{unique_id}"})
    restored = iam.get_iam_policy(request={"resource": name})
    assert list(restored.bindings) == [] and restored.etag == EMPTY_POLICY_ETAG  # the policy went
    with pytest.raises(exceptions.Aborted):
        sa_set(iam, name, binding(WI_USER, WIF_SUBJECT), etag=old.etag)


@pytest.mark.parametrize("member", BAD_MEMBERS)
def test_sa_policy_refuses_malformed_members(iam: IAMClient, member: str) -> None:
    name = new_account(iam)
    with pytest.raises(exceptions.InvalidArgument):
        sa_set(iam, name, binding(WI_USER, member))
    assert list(iam.get_iam_policy(request={"resource": name}).bindings) == []


def test_sa_policy_refuses_unknown_accounts_roles_and_public_members(iam: IAMClient) -> None:
    name = new_account(iam)
    with pytest.raises(exceptions.InvalidArgument, match="does not exist"):
        sa_set(iam, name, binding(WI_USER, f"serviceAccount:nobody-here@{PROJECT}.iam.gserviceaccount.com"))
    # A Google service agent (a project not known here) is not ours to judge.
    sa_set(iam, name, binding(WI_USER, "serviceAccount:service-1@gcp-sa-cloudbuild.iam.gserviceaccount.com"))
    with pytest.raises(exceptions.InvalidArgument):
        sa_set(iam, name, binding("workloadIdentityUser", WIF_REPO))
    with pytest.raises(exceptions.InvalidArgument):
        sa_set(iam, name, binding(WI_USER))  # no members
    with pytest.raises(exceptions.FailedPrecondition, match="permitted customer"):
        sa_set(iam, name, binding(WI_USER, "allUsers"))


def test_sa_policy_conditions_need_version_3(iam: IAMClient) -> None:
    name = new_account(iam)
    with pytest.raises(exceptions.InvalidArgument, match="version 3"):
        sa_set(iam, name, binding(WI_USER, WIF_REPO, condition=UNTIL_2030))
    written = sa_set(iam, name, binding(WI_USER, WIF_REPO, condition=UNTIL_2030), version=3)
    assert written.version == 3 and written.bindings[0].condition == UNTIL_2030
    v3 = iam.get_iam_policy(request={"resource": name, "options": {"requested_policy_version": 3}})
    assert v3.bindings[0].condition == UNTIL_2030
    v1 = iam.get_iam_policy(request={"resource": name})
    assert v1.version == 1 and re.fullmatch(rf"{WI_USER}_withcond_[0-9a-f]+", v1.bindings[0].role)
    with pytest.raises(exceptions.InvalidArgument, match="cannot be less"):
        sa_set(iam, name, binding(WI_USER, WIF_SUBJECT), etag=v1.etag)  # would drop the condition
    with pytest.raises(exceptions.InvalidArgument):
        iam.get_iam_policy(request={"resource": name, "options": {"requested_policy_version": 2}})


def test_sa_test_iam_permissions(iam: IAMClient, iam_emulator: IamEmulator) -> None:
    name = new_account(iam)
    asked = ["iam.serviceAccounts.actAs", "iam.serviceAccounts.getAccessToken",
             "iam.serviceAccountKeys.create"]
    answer = iam.test_iam_permissions(request={"resource": name, "permissions": asked})
    assert list(answer.permissions) == asked
    iam_emulator.denied_permissions.add("iam.serviceAccountKeys.create")
    answer = iam.test_iam_permissions(request={"resource": name, "permissions": asked})
    assert list(answer.permissions) == asked[:2]
    for bad in ("iam.serviceAccounts.*", "pubsub.topics.publish", "actAs"):
        with pytest.raises(exceptions.InvalidArgument):
            iam.test_iam_permissions(request={"resource": name, "permissions": [bad]})


def test_sa_policy_read_modify_write_converges(iam_emulator: IamEmulator) -> None:
    name = new_account(iam_emulator.client())
    clients = [iam_emulator.client(), iam_emulator.client()]

    def read(worker: int) -> policy_pb2.Policy:
        policy: policy_pb2.Policy = clients[worker].get_iam_policy(request={"resource": name})
        return policy

    def write(worker: int, policy: policy_pb2.Policy) -> None:
        try:
            clients[worker].set_iam_policy(request={"resource": name, "policy": policy})
        except exceptions.Aborted:
            raise Conflict from None

    aborted = run_concurrent_writers(read, write, WI_USER)
    members = iam_emulator.service_account_policy(name.rsplit("/", 1)[1]).bindings[0].members
    assert len(members) == 2 * WRITES and aborted >= 1


# --- the generic IAMPolicy service through the real IAMPolicyStub ------------------------

class Conflict(Exception):
    """A write lost the race (stale etag)."""


WRITES = 8


def run_concurrent_writers(read: Callable[[int], policy_pb2.Policy],
                           write: Callable[[int, policy_pb2.Policy], None], role: str) -> int:
    """Two threads each add WRITES members to ``role`` by read-modify-write with retries.
    Both read before either writes the first time, so at least one conflict happens.
    Returns how many writes were aborted."""
    barrier = threading.Barrier(2)
    aborted = [0, 0]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(WRITES):
                for attempt in range(50):
                    policy = read(worker)
                    if n == 0 and attempt == 0:
                        barrier.wait(timeout=5)
                    member = f"{WIF_SUBJECT}-{worker}-{n}"
                    for b in policy.bindings:
                        if b.role == role:
                            b.members.append(member)
                            break
                    else:
                        policy.bindings.append(binding(role, member))
                    try:
                        write(worker, policy)
                        break
                    except Conflict:
                        aborted[worker] += 1
                else:  # pragma: no cover - reported below
                    raise AssertionError("no convergence after 50 attempts")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return sum(aborted)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ResourcePolicyEmulator]:
    with ResourcePolicyEmulator(sandbox=True) as emu:
        yield emu


@pytest.fixture(scope="module")
def stub(sandbox: ResourcePolicyEmulator) -> iam_policy_pb2_grpc.IAMPolicyStub:
    return sandbox.stub()


@pytest.fixture
def strict() -> Iterator[ResourcePolicyEmulator]:
    with ResourcePolicyEmulator(resources=[TOPIC]) as emu:
        yield emu


def get(stub: iam_policy_pb2_grpc.IAMPolicyStub, resource: str, version: int = 0) -> policy_pb2.Policy:
    request = iam_policy_pb2.GetIamPolicyRequest(resource=resource)
    if version:
        request.options.requested_policy_version = version
    policy: policy_pb2.Policy = stub.GetIamPolicy(request)
    return policy


def put(stub: iam_policy_pb2_grpc.IAMPolicyStub, resource: str, *bindings: policy_pb2.Binding,
        etag: bytes = b"", version: int = 1) -> policy_pb2.Policy:
    policy: policy_pb2.Policy = stub.SetIamPolicy(iam_policy_pb2.SetIamPolicyRequest(
        resource=resource, policy=policy_pb2.Policy(bindings=bindings, etag=etag, version=version)))
    return policy


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_resource_type_get_set_read_back(stub: iam_policy_pb2_grpc.IAMPolicyStub,
                                              sandbox: ResourcePolicyEmulator, resource: str) -> None:
    empty = get(stub, resource)
    assert list(empty.bindings) == [] and empty.etag == EMPTY_POLICY_ETAG
    written = put(stub, resource, binding("roles/viewer", "user:b@example.com", "group:a@example.com"),
                  binding("roles/editor", WIF_REPO), etag=empty.etag)
    expected = [("roles/editor", [WIF_REPO]), ("roles/viewer", ["group:a@example.com", "user:b@example.com"])]
    assert as_tuples(written) == expected and written.etag not in (b"", empty.etag)
    read = get(stub, resource)
    assert (as_tuples(read), read.etag, read.version) == (expected, written.etag, 1)
    assert sandbox.policy(resource) == read


def test_stale_etag_is_aborted(stub: iam_policy_pb2_grpc.IAMPolicyStub) -> None:
    resource = f"projects/{PROJECT}/topics/stale-etag"
    first, second = get(stub, resource), get(stub, resource)
    put(stub, resource, binding("roles/pubsub.publisher", WIF_REPO), etag=first.etag)
    with pytest.raises(grpc.RpcError) as caught:
        put(stub, resource, binding("roles/pubsub.publisher", WIF_SUBJECT), etag=second.etag)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert "read-modify-write" in caught.value.details()
    assert as_tuples(get(stub, resource)) == [("roles/pubsub.publisher", [WIF_REPO])]


def test_without_sandbox_only_added_resources_exist(strict: ResourcePolicyEmulator) -> None:
    stub = strict.stub()
    queue = f"projects/{PROJECT}/locations/us-central1/queues/emails"
    test = iam_policy_pb2.TestIamPermissionsRequest(resource=queue, permissions=["cloudtasks.tasks.create"])
    assert code_of(lambda: get(stub, queue)) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: put(stub, queue, binding("roles/cloudtasks.enqueuer", WIF_REPO))) == \
        grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stub.TestIamPermissions(test)) == grpc.StatusCode.NOT_FOUND
    assert strict.resources() == [TOPIC]
    strict.add_resource(queue)
    put(stub, queue, binding("roles/cloudtasks.enqueuer", WIF_REPO))
    assert list(stub.TestIamPermissions(test).permissions) == ["cloudtasks.tasks.create"]
    strict.remove_resource(queue)  # deleting a queue deletes its policy
    assert code_of(lambda: get(stub, queue)) == grpc.StatusCode.NOT_FOUND
    strict.add_resource(queue)
    assert list(get(stub, queue).bindings) == []
    with pytest.raises(ValueError):
        strict.add_resource("projects/proj-one/buckets/b")


@pytest.mark.parametrize("resource", [
    "projects/proj-one",  # projects are Resource Manager's
    "topics/orders",
    "projects/p1/topics/orders",  # project id too short
    "projects/proj-one/topics/goog-orders",  # reserved prefix
    "projects/proj-one/topics/ab",  # topic names have 3+ characters
    "projects/proj-one/secrets/db password",
    "projects/proj-one/locations/us-central1/services/Bad_Name",
    "projects/proj-one/locations/-/functions/f",
    "projects/proj-one/locations/us-central1/repositories/images/packages/p",
    "projects/proj-one/serviceAccounts/a@proj-one.iam.gserviceaccount.com",  # IAM Admin's
])
def test_malformed_resource_names_are_invalid(stub: iam_policy_pb2_grpc.IAMPolicyStub, resource: str) -> None:
    assert code_of(lambda: get(stub, resource)) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("member", BAD_MEMBERS)
def test_malformed_members_are_invalid(stub: iam_policy_pb2_grpc.IAMPolicyStub, member: str) -> None:
    with pytest.raises(RpcError) as caught:
        check_member(member)
    assert caught.value.status == "INVALID_ARGUMENT"
    call = lambda: put(stub, TOPIC, binding("roles/pubsub.publisher", member))  # noqa: E731
    assert code_of(call) == grpc.StatusCode.INVALID_ARGUMENT


def test_public_members_need_allow_public(stub: iam_policy_pb2_grpc.IAMPolicyStub) -> None:
    service = f"projects/{PROJECT}/locations/us-central1/services/public-site"
    assert code_of(lambda: put(stub, service, binding("roles/run.invoker", "allUsers"))) == \
        grpc.StatusCode.FAILED_PRECONDITION
    with ResourcePolicyEmulator(sandbox=True, allow_public=True) as open_emulator:
        written = put(open_emulator.stub(), service, binding("roles/run.invoker", "allUsers"))
        assert as_tuples(written) == [("roles/run.invoker", ["allUsers"])]


def test_conditions_only_where_google_accepts_them(stub: iam_policy_pb2_grpc.IAMPolicyStub) -> None:
    conditional = binding("roles/secretmanager.secretAccessor", WIF_REPO, condition=UNTIL_2030)
    for resource in (TOPIC, f"projects/{PROJECT}/locations/us/repositories/images"):
        assert code_of(partial(put, stub, resource, conditional, version=3)) == \
            grpc.StatusCode.INVALID_ARGUMENT
    secret = f"projects/{PROJECT}/secrets/conditional"
    assert code_of(lambda: put(stub, secret, conditional)) == grpc.StatusCode.INVALID_ARGUMENT  # version 1
    written = put(stub, secret, conditional, version=3)
    assert written.version == 3 and get(stub, secret, version=3).bindings[0].condition == UNTIL_2030
    assert "_withcond_" in get(stub, secret).bindings[0].role


def test_policy_limits_and_bad_requests(stub: iam_policy_pb2_grpc.IAMPolicyStub) -> None:
    resource = f"projects/{PROJECT}/subscriptions/limits"
    too_many = [f"user:u{n}@example.com" for n in range(1501)]
    assert code_of(lambda: put(stub, resource, binding("roles/pubsub.subscriber", *too_many))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: get(stub, resource, version=2)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: put(stub, resource, binding("pubsub.subscriber", WIF_REPO))) == \
        grpc.StatusCode.INVALID_ARGUMENT
    masked = iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy_pb2.Policy())
    masked.update_mask.paths.append("owner")
    assert code_of(lambda: stub.SetIamPolicy(masked)) == grpc.StatusCode.INVALID_ARGUMENT


def test_test_iam_permissions(stub: iam_policy_pb2_grpc.IAMPolicyStub,
                              sandbox: ResourcePolicyEmulator) -> None:
    secret = f"projects/{PROJECT}/secrets/perms"
    asked = ["secretmanager.versions.access", "secretmanager.secrets.setIamPolicy"]
    request = iam_policy_pb2.TestIamPermissionsRequest(resource=secret, permissions=asked)
    assert list(stub.TestIamPermissions(request).permissions) == asked
    sandbox.denied_permissions.add("secretmanager.secrets.setIamPolicy")
    try:
        assert list(stub.TestIamPermissions(request).permissions) == asked[:1]
    finally:
        sandbox.denied_permissions.clear()
    for bad in ("secretmanager.*", "pubsub.topics.publish"):
        wrong = iam_policy_pb2.TestIamPermissionsRequest(resource=secret, permissions=[bad])
        assert code_of(partial(stub.TestIamPermissions, wrong)) == grpc.StatusCode.INVALID_ARGUMENT


def test_calls_and_injected_errors(strict: ResourcePolicyEmulator) -> None:
    stub = strict.stub()
    strict.inject_error("GetIamPolicy", grpc.StatusCode.UNAVAILABLE, times=2)
    assert code_of(lambda: get(stub, TOPIC)) == grpc.StatusCode.UNAVAILABLE
    assert code_of(lambda: get(stub, TOPIC)) == grpc.StatusCode.UNAVAILABLE
    get(stub, TOPIC)
    strict.inject_error("SetIamPolicy", "RESOURCE_EXHAUSTED")
    assert code_of(lambda: put(stub, TOPIC, binding("roles/pubsub.publisher", WIF_REPO))) == \
        grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (strict.calls["GetIamPolicy"], strict.calls["SetIamPolicy"]) == (3, 1)
    assert list(strict.policy(TOPIC).bindings) == []
    with pytest.raises(ValueError):
        strict.inject_error("DeleteTopic", grpc.StatusCode.INTERNAL)


def test_service_accounts_must_exist_when_wired_to_iam(iam_emulator: IamEmulator, iam: IAMClient) -> None:
    name = new_account(iam, "publisher")
    with ResourcePolicyEmulator(sandbox=True, principal_exists=iam_emulator.principal_exists) as emu:
        stub = emu.stub()
        member = f"serviceAccount:{name.rsplit('/', 1)[1]}"
        put(stub, TOPIC, binding("roles/pubsub.publisher", member))
        ghost = f"serviceAccount:ghost-account@{PROJECT}.iam.gserviceaccount.com"
        assert code_of(lambda: put(stub, TOPIC, binding("roles/pubsub.publisher", ghost))) == \
            grpc.StatusCode.INVALID_ARGUMENT
        iam.delete_service_account(request={"name": name})
        assert code_of(lambda: put(stub, TOPIC, binding("roles/pubsub.publisher", member))) == \
            grpc.StatusCode.INVALID_ARGUMENT
        # The grant made before the deletion stays until someone cleans it up.
        assert as_tuples(emu.policy(TOPIC)) == [("roles/pubsub.publisher", [member])]


def test_read_modify_write_converges_with_concurrent_writers() -> None:
    with ResourcePolicyEmulator(sandbox=True) as emu:
        stubs = [emu.stub(), emu.stub()]
        resource = f"projects/{PROJECT}/locations/us-central1/functions/contended"

        def write(worker: int, policy: policy_pb2.Policy) -> None:
            try:
                stubs[worker].SetIamPolicy(
                    iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ABORTED:
                    raise
                raise Conflict from None

        aborted = run_concurrent_writers(lambda w: get(stubs[w], resource), write,
                                         "roles/cloudfunctions.invoker")
        members = emu.policy(resource).bindings[0].members
        assert len(members) == 2 * WRITES and aborted >= 1
        assert emu.calls["SetIamPolicy"] == 2 * WRITES + aborted


def test_state_survives_stop_and_restart() -> None:
    emu = ResourcePolicyEmulator(resources=[TOPIC])
    host = emu.start()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", host)
    written = put(emu.stub(), TOPIC, binding("roles/pubsub.publisher", WIF_REPO))
    emu.stop()
    emu.start()
    try:
        assert get(emu.stub(), TOPIC) == written
    finally:
        emu.stop()
