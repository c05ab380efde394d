"""The local IAM Admin emulator, driven by the real ``google.cloud.iam_admin_v1`` client
over gRPC: what it accepts, what it refuses (with Google's own exception classes), and
the time-dependent behaviour (undelete windows, propagation) on a manual clock."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta

import grpc
import pytest
from google.api_core import exceptions
from google.cloud.iam_admin_v1 import IAMClient, types
from google.iam.v1 import policy_pb2
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2

from workload_ids.sandbox.common.clock import ManualClock
from workload_ids.sandbox.gcp.iam import IamEmulator

PROJECT = "proj-one"
KeyType = types.ListServiceAccountKeysRequest.KeyType
RSA_1024 = types.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_1024  # fast to generate


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emulator(clock: ManualClock) -> Iterator[IamEmulator]:
    with IamEmulator(clock=clock, projects=[PROJECT]) as emu:
        yield emu


@pytest.fixture
def iam(emulator: IamEmulator) -> IAMClient:
    return emulator.client()


def create(iam: IAMClient, account_id: str, project: str = PROJECT, **fields: str) -> types.ServiceAccount:
    return iam.create_service_account(request={"name": f"projects/{project}", "account_id": account_id,
                                               "service_account": fields})


def email(account_id: str, project: str = PROJECT) -> str:
    return f"{account_id}@{project}.iam.gserviceaccount.com"


def sa_name(account_id: str, project: str = PROJECT) -> str:
    return f"projects/{project}/serviceAccounts/{email(account_id, project)}"


def add_key(iam: IAMClient, name: str, **fields: object) -> types.ServiceAccountKey:
    return iam.create_service_account_key(request={"name": name, "key_algorithm": RSA_1024, **fields})


def retry_delay(exc: exceptions.GoogleAPICallError) -> int:
    infos = [d for d in exc.details if isinstance(d, error_details_pb2.RetryInfo)]
    assert infos, exc.details
    seconds: int = infos[0].retry_delay.seconds
    return seconds


# --- service accounts -------------------------------------------------------------------

def test_create_returns_google_shaped_account(iam: IAMClient) -> None:
    sa = create(iam, "svc-alpha", display_name="Alpha", description="owner=team-a")
    assert sa.name == sa_name("svc-alpha")
    assert sa.email == email("svc-alpha")
    assert sa.project_id == PROJECT
    assert re.fullmatch(r"1\d{20}", sa.unique_id)
    assert sa.oauth2_client_id == sa.unique_id
    assert sa.etag and isinstance(sa.etag, bytes)
    assert (sa.display_name, sa.description, sa.disabled) == ("Alpha", "owner=team-a", False)


def test_get_by_email_unique_id_and_wildcard(iam: IAMClient) -> None:
    sa = create(iam, "svc-alpha")
    for name in (sa.name, f"projects/{PROJECT}/serviceAccounts/{sa.unique_id}",
                 f"projects/-/serviceAccounts/{sa.email}", f"projects/-/serviceAccounts/{sa.unique_id}"):
        assert iam.get_service_account(name=name).unique_id == sa.unique_id
    with pytest.raises(exceptions.NotFound):
        iam.get_service_account(name=sa_name("svc-missing"))
    # Documented on ServiceAccount.name: under the wildcard, a missing account is a 403.
    with pytest.raises(exceptions.PermissionDenied):
        iam.get_service_account(name=f"projects/-/serviceAccounts/{email('svc-missing')}")
    with pytest.raises(exceptions.InvalidArgument):
        iam.get_service_account(name=f"projects/{PROJECT}/serviceAccounts/svc-alpha")


def test_list_pages_with_small_page_size(iam: IAMClient, emulator: IamEmulator) -> None:
    ids = [f"svc-{n:03d}" for n in range(7)]
    for account_id in reversed(ids):
        create(iam, account_id)
    first = iam.list_service_accounts(request={"name": f"projects/{PROJECT}", "page_size": 3})
    pages = list(first.pages)
    assert [len(p.accounts) for p in pages] == [3, 3, 1]
    assert [a.email for p in pages for a in p.accounts] == [email(i) for i in ids]
    assert pages[-1].next_page_token == ""
    assert emulator.calls["ListServiceAccounts"] == 3
    # A page token stays good while accounts come and go before it.
    raw = iam.list_service_accounts(request={"name": f"projects/{PROJECT}", "page_size": 3})
    token = raw.next_page_token
    iam.delete_service_account(name=sa_name("svc-000"))
    rest = iam.list_service_accounts(request={"name": f"projects/{PROJECT}", "page_token": token})
    assert [a.email for a in rest] == [email(i) for i in ids[3:]]
    with pytest.raises(exceptions.InvalidArgument):
        list(iam.list_service_accounts(request={"name": f"projects/{PROJECT}", "page_token": "%%%"}))


def test_patch_changes_only_the_masked_fields(iam: IAMClient) -> None:
    create(iam, "svc-alpha", display_name="Alpha", description="old")
    patched = iam.patch_service_account(request={
        "service_account": {"name": sa_name("svc-alpha"), "display_name": "ignored", "description": "new"},
        "update_mask": field_mask_pb2.FieldMask(paths=["description"])})
    assert (patched.display_name, patched.description) == ("Alpha", "new")
    got = iam.get_service_account(name=sa_name("svc-alpha"))
    assert (got.display_name, got.description) == ("Alpha", "new")
    for mask in (["email"], []):
        with pytest.raises(exceptions.InvalidArgument):
            iam.patch_service_account(request={
                "service_account": {"name": sa_name("svc-alpha"), "display_name": "x"},
                "update_mask": field_mask_pb2.FieldMask(paths=mask)})
    # Limits are UTF-8 bytes, not characters: 51 × "é" is 102 bytes.
    with pytest.raises(exceptions.InvalidArgument):
        iam.patch_service_account(request={
            "service_account": {"name": sa_name("svc-alpha"), "display_name": "é" * 51},
            "update_mask": field_mask_pb2.FieldMask(paths=["display_name"])})
    with pytest.raises(exceptions.InvalidArgument):
        create(iam, "svc-beta", description="d" * 257)


def test_disable_and_enable(iam: IAMClient, emulator: IamEmulator) -> None:
    create(iam, "svc-alpha")
    iam.disable_service_account(request={"name": sa_name("svc-alpha")})
    assert iam.get_service_account(name=sa_name("svc-alpha")).disabled
    assert [a.disabled for a in iam.list_service_accounts(name=f"projects/{PROJECT}")] == [True]
    iam.disable_service_account(request={"name": sa_name("svc-alpha")})  # idempotent
    iam.enable_service_account(request={"name": sa_name("svc-alpha")})
    assert not iam.get_service_account(name=sa_name("svc-alpha")).disabled
    assert not emulator.service_accounts(PROJECT)[0].disabled


def test_delete_then_undelete_by_unique_id(iam: IAMClient, emulator: IamEmulator,
                                           clock: ManualClock) -> None:
    sa = create(iam, "svc-alpha")
    iam.disable_service_account(request={"name": sa.name})
    iam.delete_service_account(name=sa.name)
    with pytest.raises(exceptions.NotFound):
        iam.get_service_account(name=sa.name)
    with pytest.raises(exceptions.NotFound):
        iam.delete_service_account(name=sa.name)
    assert list(iam.list_service_accounts(name=f"projects/{PROJECT}")) == []
    assert [s.deleted is not None for s in emulator.service_accounts(PROJECT, deleted=True)] == [True]

    clock.advance(days=29)
    restored = iam.undelete_service_account(
        request={"name": f"projects/-/serviceAccounts/{sa.unique_id}"}).restored_account
    assert (restored.email, restored.unique_id, restored.disabled) == (sa.email, sa.unique_id, True)
    assert iam.get_service_account(name=sa.name).unique_id == sa.unique_id
    with pytest.raises(exceptions.FailedPrecondition):  # not deleted
        iam.undelete_service_account(request={"name": f"projects/-/serviceAccounts/{sa.unique_id}"})
    with pytest.raises(exceptions.InvalidArgument):  # undelete wants the unique id
        iam.undelete_service_account(request={"name": f"projects/-/serviceAccounts/{sa.email}"})

    iam.delete_service_account(name=sa.name)
    clock.advance(days=30)
    with pytest.raises(exceptions.NotFound):
        iam.undelete_service_account(request={"name": f"projects/-/serviceAccounts/{sa.unique_id}"})
    assert emulator.service_accounts(PROJECT, deleted=True) == []


def test_undelete_fails_once_the_email_is_reused(iam: IAMClient) -> None:
    old = create(iam, "svc-alpha")
    iam.delete_service_account(name=old.name)
    new = create(iam, "svc-alpha")
    assert new.unique_id != old.unique_id
    with pytest.raises(exceptions.FailedPrecondition):
        iam.undelete_service_account(request={"name": f"projects/-/serviceAccounts/{old.unique_id}"})
    assert iam.get_service_account(name=new.name).unique_id == new.unique_id


@pytest.mark.parametrize("account_id", [
    "short", "a" * 31, "1starts-with-digit", "ends-with-dash-", "Upper-case", "under_score", "",
])
def test_account_id_format_is_enforced(iam: IAMClient, account_id: str) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        create(iam, account_id)


def test_account_id_length_bounds_are_inclusive(iam: IAMClient) -> None:
    assert create(iam, "abcdef").email == email("abcdef")
    assert create(iam, "a" * 29 + "z").email == email("a" * 29 + "z")


def test_duplicate_account_id_already_exists(iam: IAMClient) -> None:
    create(iam, "svc-alpha")
    with pytest.raises(exceptions.AlreadyExists):
        create(iam, "svc-alpha")


def test_hundred_accounts_per_project(iam: IAMClient) -> None:
    for n in range(100):
        create(iam, f"svc-{n:03d}")
    with pytest.raises(exceptions.ResourceExhausted) as caught:
        create(iam, "svc-100")
    assert retry_delay(caught.value) == 86401  # a daily quota, not throttling
    iam.delete_service_account(name=sa_name("svc-000"))
    create(iam, "svc-100")


# --- projects ---------------------------------------------------------------------------

def test_unknown_project_is_not_found_without_sandbox(iam: IAMClient, emulator: IamEmulator) -> None:
    with pytest.raises(exceptions.NotFound):
        create(iam, "svc-alpha", project="proj-unknown")
    with pytest.raises(exceptions.NotFound):
        list(iam.list_service_accounts(name="projects/proj-unknown"))
    with pytest.raises(exceptions.NotFound):
        iam.create_role(request={"parent": "projects/proj-unknown", "role_id": "r_one", "role": {}})
    assert emulator.projects() == [PROJECT]
    emulator.add_project("proj-unknown")
    assert create(iam, "svc-alpha", project="proj-unknown").project_id == "proj-unknown"


def test_sandbox_creates_projects_on_first_reference(clock: ManualClock) -> None:
    with IamEmulator(sandbox=True, clock=clock) as emu:
        iam = emu.client()
        assert list(iam.list_service_accounts(name="projects/fresh-project")) == []
        create(iam, "svc-alpha", project="other-project")
        assert emu.projects() == ["fresh-project", "other-project"]
        assert [s.email for s in emu.service_accounts("other-project")] == [
            email("svc-alpha", "other-project")]
        with pytest.raises(exceptions.InvalidArgument):  # not a project id
            list(iam.list_service_accounts(name="projects/-"))


def test_add_project_rejects_a_malformed_id(emulator: IamEmulator) -> None:
    with pytest.raises(ValueError, match="not a project id"):
        emulator.add_project("Bad_Project")


# --- keys -------------------------------------------------------------------------------

def test_key_private_data_is_returned_once(iam: IAMClient, emulator: IamEmulator) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    sa = create(iam, "svc-alpha")
    key = iam.create_service_account_key(name=sa.name)  # defaults: RSA 2048, JSON file
    assert re.fullmatch(re.escape(sa.name) + r"/keys/[0-9a-f]{40}", key.name)
    key_id = key.name.rsplit("/", 1)[1]
    assert key.private_key_type == types.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE
    assert key.key_algorithm == types.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048
    assert key.key_type == KeyType.USER_MANAGED and not key.disabled
    assert key.valid_before_time.year == 9999
    info = json.loads(key.private_key_data)
    assert info["type"] == "service_account"
    assert (info["client_email"], info["client_id"], info["private_key_id"], info["project_id"]) == (
        sa.email, sa.unique_id, key_id, PROJECT)
    private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)

    listed = iam.list_service_account_keys(name=sa.name).keys
    assert {k.name for k in listed} >= {key.name}
    assert all(k.private_key_data == b"" for k in listed)
    got = iam.get_service_account_key(name=key.name)
    assert got.private_key_data == b"" and got.public_key_data == b""
    with_cert = iam.get_service_account_key(request={
        "name": key.name, "public_key_type": types.ServiceAccountPublicKeyType.TYPE_X509_PEM_FILE})
    assert with_cert.private_key_data == b""
    cert = x509.load_pem_x509_certificate(with_cert.public_key_data)
    assert cert.public_key() == private.public_key()
    # Nothing the emulator keeps holds the private half (Google never retains it).
    record = emulator.backend.accounts[sa.unique_id].keys[key_id]
    assert not any(b"PRIVATE KEY" in value for value in vars(record).values() if isinstance(value, bytes))
    assert emulator.keys(sa.email)[-1].key_id == key_id


def test_pkcs12_key_file(iam: IAMClient) -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    sa = create(iam, "svc-alpha")
    key = add_key(iam, sa.name, private_key_type=types.ServiceAccountPrivateKeyType.TYPE_PKCS12_FILE)
    assert key.private_key_type == types.ServiceAccountPrivateKeyType.TYPE_PKCS12_FILE
    loaded = pkcs12.load_pkcs12(key.private_key_data, b"notasecret")
    assert loaded.key is not None and loaded.cert is not None


def test_key_type_filter_and_system_managed_keys(iam: IAMClient) -> None:
    sa = create(iam, "svc-alpha")
    user = add_key(iam, sa.name)
    everything = iam.list_service_account_keys(name=sa.name).keys
    assert sorted(k.key_type for k in everything) == [KeyType.USER_MANAGED, KeyType.SYSTEM_MANAGED]
    only_user = iam.list_service_account_keys(request={"name": sa.name, "key_types": [KeyType.USER_MANAGED]})
    assert [k.name for k in only_user.keys] == [user.name]
    only_system = iam.list_service_account_keys(request={"name": sa.name,
                                                         "key_types": [KeyType.SYSTEM_MANAGED]}).keys
    assert len(only_system) == 1 and only_system[0].valid_before_time.year < 9999
    for bad in ([KeyType.KEY_TYPE_UNSPECIFIED], [KeyType.USER_MANAGED, KeyType.USER_MANAGED]):
        with pytest.raises(exceptions.InvalidArgument):
            iam.list_service_account_keys(request={"name": sa.name, "key_types": bad})
    with pytest.raises(exceptions.FailedPrecondition):  # Google rotates those itself
        iam.delete_service_account_key(name=only_system[0].name)


def test_key_disable_enable_delete(iam: IAMClient) -> None:
    sa = create(iam, "svc-alpha")
    key = add_key(iam, sa.name)
    iam.disable_service_account_key(name=key.name)
    assert iam.get_service_account_key(name=key.name).disabled
    iam.enable_service_account_key(name=key.name)
    assert not iam.get_service_account_key(name=key.name).disabled
    iam.delete_service_account_key(name=key.name)
    for call in (iam.get_service_account_key, iam.delete_service_account_key,
                 iam.disable_service_account_key):
        with pytest.raises(exceptions.NotFound):
            call(name=key.name)


def test_ten_user_managed_keys_per_account(iam: IAMClient) -> None:
    sa = create(iam, "svc-alpha")
    keys = [add_key(iam, sa.name) for _ in range(10)]  # the system-managed key does not count
    iam.disable_service_account_key(name=keys[0].name)  # disabled keys still count
    with pytest.raises(exceptions.ResourceExhausted) as caught:
        add_key(iam, sa.name)
    assert retry_delay(caught.value) == 86401
    iam.delete_service_account_key(name=keys[0].name)
    add_key(iam, sa.name)


def test_key_limit_as_failed_precondition(clock: ManualClock) -> None:
    with IamEmulator(clock=clock, projects=[PROJECT], max_user_keys=2,
                     key_limit_code=grpc.StatusCode.FAILED_PRECONDITION) as emu:
        iam = emu.client()
        sa = create(iam, "svc-alpha")
        add_key(iam, sa.name)
        add_key(iam, sa.name)
        with pytest.raises(exceptions.FailedPrecondition, match="Precondition check failed"):
            add_key(iam, sa.name)


def test_key_creation_blocked_by_org_policy(iam: IAMClient, emulator: IamEmulator) -> None:
    emulator.add_project("locked-project", key_creation=False)
    sa = create(iam, "svc-alpha", project="locked-project")
    with pytest.raises(exceptions.FailedPrecondition, match="Key creation is not allowed"):
        add_key(iam, sa.name)


def test_keys_of_a_deleted_account_are_not_found(iam: IAMClient) -> None:
    sa = create(iam, "svc-alpha")
    key = add_key(iam, sa.name)
    iam.delete_service_account(name=sa.name)
    with pytest.raises(exceptions.NotFound):
        add_key(iam, sa.name)
    with pytest.raises(exceptions.NotFound):
        iam.list_service_account_keys(name=sa.name)
    with pytest.raises(exceptions.NotFound):
        iam.get_service_account_key(name=key.name)
    with pytest.raises(exceptions.NotFound):
        iam.delete_service_account_key(name=key.name)


# --- eventual consistency ---------------------------------------------------------------

def test_propagation_delay_hides_fresh_accounts_and_keys(clock: ManualClock) -> None:
    with IamEmulator(clock=clock, projects=[PROJECT], propagation_delay=10.0) as emu:
        iam = emu.client()
        sa = create(iam, "svc-alpha")
        with pytest.raises(exceptions.NotFound):
            iam.get_service_account(name=sa.name)
        with pytest.raises(exceptions.PermissionDenied):
            iam.get_service_account(name=f"projects/-/serviceAccounts/{sa.unique_id}")
        assert list(iam.list_service_accounts(name=f"projects/{PROJECT}")) == []
        with pytest.raises(exceptions.AlreadyExists):  # "retry after a 404" is a conflict
            create(iam, "svc-alpha")
        key = add_key(iam, sa.name)  # writes do not wait for reads to catch up
        assert len(emu.service_accounts(PROJECT)) == 1

        clock.advance(9.9)
        with pytest.raises(exceptions.NotFound):
            iam.get_service_account(name=sa.name)
        clock.advance(0.1)
        assert iam.get_service_account(name=sa.name).email == sa.email
        assert [a.email for a in iam.list_service_accounts(name=f"projects/{PROJECT}")] == [sa.email]
        assert iam.get_service_account_key(name=key.name).name == key.name

        later = add_key(iam, sa.name)
        names = {k.name for k in iam.list_service_account_keys(name=sa.name).keys}
        assert key.name in names and later.name not in names
        with pytest.raises(exceptions.NotFound):
            iam.get_service_account_key(name=later.name)
        clock.advance(10)
        assert later.name in {k.name for k in iam.list_service_account_keys(name=sa.name).keys}


# --- custom roles -----------------------------------------------------------------------

def make_role(iam: IAMClient, role_id: str, *permissions: str) -> types.Role:
    return iam.create_role(request={"parent": f"projects/{PROJECT}", "role_id": role_id, "role": {
        "title": f"Title {role_id}", "description": "d",
        "included_permissions": list(permissions) or ["storage.objects.get"],
        "stage": types.Role.RoleLaunchStage.GA}})


def test_role_create_get_list(iam: IAMClient) -> None:
    role = make_role(iam, "reader.v1", "storage.objects.get", "storage.objects.list")
    assert role.name == f"projects/{PROJECT}/roles/reader.v1"
    assert list(role.included_permissions) == ["storage.objects.get", "storage.objects.list"]
    assert role.stage == types.Role.RoleLaunchStage.GA and role.etag and not role.deleted
    assert iam.get_role(request={"name": role.name}).etag == role.etag
    basic = list(iam.list_roles(request={"parent": f"projects/{PROJECT}"}))
    assert [r.name for r in basic] == [role.name] and list(basic[0].included_permissions) == []
    full = list(iam.list_roles(request={"parent": f"projects/{PROJECT}", "view": types.RoleView.FULL}))
    assert list(full[0].included_permissions) == list(role.included_permissions)
    with pytest.raises(exceptions.AlreadyExists):
        make_role(iam, "reader.v1")
    with pytest.raises(exceptions.NotFound):
        iam.get_role(request={"name": f"projects/{PROJECT}/roles/missing"})


def test_role_paging(iam: IAMClient) -> None:
    for n in range(5):
        make_role(iam, f"role_{n}")
    pages = list(iam.list_roles(request={"parent": f"projects/{PROJECT}", "page_size": 2}).pages)
    assert [len(p.roles) for p in pages] == [2, 2, 1]
    assert [r.name.rsplit("/", 1)[1] for p in pages for r in p.roles] == [f"role_{n}" for n in range(5)]


@pytest.mark.parametrize(("role_id", "permissions"), [
    ("ab", ["storage.objects.get"]),
    ("has-dash", ["storage.objects.get"]),
    ("x" * 65, ["storage.objects.get"]),
    ("good_id", ["storage.objects"]),
    ("good_id", ["storage.*"]),
    ("good_id", ["Storage.objects.get"]),
])
def test_role_input_is_validated(iam: IAMClient, role_id: str, permissions: list[str]) -> None:
    with pytest.raises(exceptions.InvalidArgument):
        make_role(iam, role_id, *permissions)


def test_role_title_and_description_limits(iam: IAMClient) -> None:
    for role in ({"title": "t" * 101}, {"description": "d" * 301}):
        with pytest.raises(exceptions.InvalidArgument):
            iam.create_role(request={"parent": f"projects/{PROJECT}", "role_id": "r_one", "role": role})


def test_role_update_checks_the_etag(iam: IAMClient) -> None:
    role = make_role(iam, "reader")
    updated = iam.update_role(request={
        "name": role.name, "role": {"title": "New", "etag": role.etag},
        "update_mask": field_mask_pb2.FieldMask(paths=["title"])})
    assert updated.title == "New" and updated.etag != role.etag
    assert list(updated.included_permissions) == ["storage.objects.get"]
    with pytest.raises(exceptions.Aborted):  # someone else wrote since we read
        iam.update_role(request={
            "name": role.name, "role": {"title": "Stale", "etag": role.etag},
            "update_mask": field_mask_pb2.FieldMask(paths=["title"])})
    with pytest.raises(exceptions.Aborted):
        iam.delete_role(request={"name": role.name, "etag": role.etag})
    no_etag = iam.update_role(request={
        "name": role.name, "role": {"included_permissions": ["storage.buckets.get"]},
        "update_mask": field_mask_pb2.FieldMask(paths=["included_permissions"])})
    assert (no_etag.title, list(no_etag.included_permissions)) == ("New", ["storage.buckets.get"])
    with pytest.raises(exceptions.InvalidArgument):
        iam.update_role(request={"name": role.name, "role": {"title": "x"},
                                 "update_mask": field_mask_pb2.FieldMask(paths=["name"])})


def test_role_soft_delete_undelete_and_id_reservation(iam: IAMClient, emulator: IamEmulator,
                                                      clock: ManualClock) -> None:
    role = make_role(iam, "reader")
    deleted = iam.delete_role(request={"name": role.name, "etag": role.etag})
    assert deleted.deleted
    assert iam.get_role(request={"name": role.name}).deleted
    assert list(iam.list_roles(request={"parent": f"projects/{PROJECT}"})) == []
    shown = list(iam.list_roles(request={"parent": f"projects/{PROJECT}", "show_deleted": True}))
    assert [(r.name, r.deleted) for r in shown] == [(role.name, True)]
    with pytest.raises(exceptions.FailedPrecondition):
        make_role(iam, "reader")
    with pytest.raises(exceptions.FailedPrecondition):
        iam.update_role(request={"name": role.name, "role": {"title": "x"}})
    with pytest.raises(exceptions.FailedPrecondition):
        iam.delete_role(request={"name": role.name})

    restored = iam.undelete_role(request={"name": role.name, "etag": deleted.etag})
    assert not restored.deleted
    with pytest.raises(exceptions.FailedPrecondition):
        iam.undelete_role(request={"name": role.name})

    iam.delete_role(request={"name": role.name})
    clock.advance(days=7)  # past the undelete window: gone, but the id stays taken
    with pytest.raises(exceptions.NotFound):
        iam.get_role(request={"name": role.name})
    with pytest.raises(exceptions.NotFound):
        iam.undelete_role(request={"name": role.name})
    with pytest.raises(exceptions.FailedPrecondition, match="marked for deletion"):
        make_role(iam, "reader")
    assert [r.name for r in emulator.roles(PROJECT, deleted=True)] == [role.name]
    clock.advance(days=30)  # 37 days after deletion the id is free again
    assert not make_role(iam, "reader").deleted


# --- the server itself ------------------------------------------------------------------

def test_methods_not_served_are_unimplemented(iam: IAMClient) -> None:
    sa = create(iam, "svc-alpha")
    with pytest.raises(exceptions.MethodNotImplemented):
        iam.upload_service_account_key(request={"name": sa.name, "public_key_data": b"x"})
    with pytest.raises(exceptions.MethodNotImplemented, match=r"roles/pubsub\.subscriber"):
        iam.get_role(request={"name": "roles/viewer"})  # a predefined role it does not serve


def test_a_few_predefined_roles_are_served_with_googles_permissions(iam: IAMClient) -> None:
    """As iam-dataset recorded them (2073fa52, the catalogs' source): adopt expands
    bindings with them."""
    role = iam.get_role(request={"name": "roles/pubsub.subscriber"})
    assert (role.name, role.title) == ("roles/pubsub.subscriber", "Pub/Sub Subscriber")
    assert list(role.included_permissions) == [
        "pubsub.snapshots.seek", "pubsub.subscriptions.consume", "pubsub.topics.attachSubscription"]
    assert not role.deleted
    with pytest.raises(exceptions.MethodNotImplemented):
        iam.update_role(request={"name": "roles/pubsub.subscriber", "role": {"title": "mine"}})


def test_concurrent_clients(emulator: IamEmulator) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        iam = emulator.client()
        try:
            for n in range(10):
                sa = create(iam, f"svc-w{worker}-{n}")
                iam.disable_service_account(request={"name": sa.name})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    accounts = emulator.service_accounts(PROJECT)
    assert len(accounts) == 60 and all(a.disabled for a in accounts)
    assert len({a.unique_id for a in accounts}) == 60


def test_state_survives_stop_and_restart(clock: ManualClock) -> None:
    emu = IamEmulator(clock=clock, projects=[PROJECT])
    host = emu.start()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", host)
    create(emu.client(), "svc-alpha")
    emu.stop()
    emu.start()
    try:
        assert [a.email for a in emu.client().list_service_accounts(name=f"projects/{PROJECT}")] == [
            email("svc-alpha")]
    finally:
        emu.stop()


def test_key_expiry_org_policy_dates_new_keys(clock: ManualClock) -> None:
    with IamEmulator(clock=clock, projects=[PROJECT]) as emu:
        emu.add_project("proj-expiring", key_expiry_hours=48)
        iam = emu.client()
        create(iam, "lasting", PROJECT)
        create(iam, "expiring", "proj-expiring")
        lasting = add_key(iam, sa_name("lasting"))
        expiring = add_key(iam, sa_name("expiring", "proj-expiring"))
        assert lasting.valid_before_time.year == 9999  # Google's "never"
        assert expiring.valid_before_time - expiring.valid_after_time == timedelta(hours=48)
        # The certificate in the key file says the same.
        listed = iam.list_service_account_keys(request={
            "name": sa_name("expiring", "proj-expiring"), "key_types": [KeyType.USER_MANAGED]})
        assert [k.valid_before_time for k in listed.keys] == [expiring.valid_before_time]


def test_public_members_on_an_account_policy_only_when_allowed(clock: ManualClock) -> None:
    for allow in (False, True):
        with IamEmulator(clock=clock, projects=[PROJECT], allow_public=allow) as emu:
            iam = emu.client()
            account = create(iam, "public-one")
            request = {"resource": account.name, "policy": policy_pb2.Policy(bindings=[policy_pb2.Binding(
                role="roles/iam.serviceAccountTokenCreator", members=["allUsers"])])}
            if allow:
                iam.set_iam_policy(request=request)
                assert list(emu.service_account_policy(account.email).bindings[0].members) == ["allUsers"]
            else:
                # The domain-restricted-sharing organization policy's answer.
                with pytest.raises(exceptions.FailedPrecondition):
                    iam.set_iam_policy(request=request)
