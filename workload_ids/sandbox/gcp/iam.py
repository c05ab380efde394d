"""A local Google IAM Admin API (``google.iam.admin.v1.IAM``) over gRPC, in this process.

The real ``google.cloud.iam_admin_v1.IAMClient`` talks to it unchanged: requests and
answers are encoded with the library's own message types, and refusals are gRPC status
codes (with ``RetryInfo`` details where Google sends them), so callers see the same
``google.api_core.exceptions`` as against Google.

It is as strict as Google where a tool is most likely to go wrong, the places the peers'
users complain about (see /work/shared/CLOUD-FACTS.md):

- service account ids (6–30 chars, RFC 1035), 100 accounts per project, 10 user-managed
  keys per account, display names and descriptions measured in UTF-8 bytes;
- every account has a system-managed key, so "list the keys" is not "list our keys";
- a private key is returned once, by CreateServiceAccountKey, and never kept;
- deleted accounts can be undeleted (by unique id) for 30 days unless the email was
  reused; deleted custom roles show as ``deleted`` for 7 days and their id stays taken
  for 37 (``FAILED_PRECONDITION``, as terraform users meet it);
- custom role updates honour the etag (a stale one is ``ABORTED``);
- ``projects/-/serviceAccounts/X`` for an account that is not there is
  ``PERMISSION_DENIED``, not ``NOT_FOUND`` (documented on ``ServiceAccount.name``);
- eventual consistency: with ``propagation_delay`` a new account or key is invisible to
  Get and List for that long (Google: seconds to minutes), measured on the injected clock;
- an account's own IAM policy (Get/Set/TestIamPermissions on
  ``projects/P/serviceAccounts/EMAIL``, as ``IAMClient.get_iam_policy`` sends them) follows
  the rules in :mod:`workload_ids.sandbox.gcp.resourcepolicy`: etags (stale is
  ``ABORTED``), version 3 for conditions, member syntax (workload identity federation
  ``principal://`` / ``principalSet://`` included), ``serviceAccount:`` members that must
  exist; it goes when the account is deleted (an undeleted account starts empty), while
  bindings naming the account elsewhere are other services' business. ``allUsers`` and
  ``allAuthenticatedUsers`` are refused there as the domain-restricted-sharing organization
  policy refuses them, unless the emulator is made with ``allow_public=True``;
- a project may carry the ``iam.serviceAccountKeyExpiryHours`` organization policy
  (``add_project(..., key_expiry_hours=N)``): its new user-managed keys are valid for N
  hours, where keys elsewhere never expire (valid before 9999-12-31T23:59:59Z).

Where Google's code for a refusal is not documented, the choice is written beside the
check. ``GetRole`` serves a handful of predefined roles with Google's own permissions
(:mod:`workload_ids.sandbox.gcp.predefined_roles`); any other predefined role, and every
write of one, is ``UNIMPLEMENTED``. Not served (the client gets ``UNIMPLEMENTED``): key
upload, SignBlob/SignJwt, organization-level custom roles, permission and grantable-role
queries, policy lint.

The model (``IamBackend``: state and rules, no gRPC) is kept apart from the wire
(``IamEmulator``: server, decoding, error mapping), as moto splits models and responses.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.cloud.iam_admin_v1 import types
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import any_pb2, duration_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ... import clock as _clock
from ..common.clock import Clock
from ..common.grpc import GrpcEmulator
from .resourcemanager import RpcError, render_policy
from .resourcepolicy import (
    apply_policy_write,
    check_permissions,
    check_policy_write,
    empty_policy,
    read_policy,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from google.cloud.iam_admin_v1 import IAMClient

SERVICE = "google.iam.admin.v1.IAM"

# Google's documented limits; IamEmulator takes the two quotas as arguments (they can be
# raised on request in a real project).
MAX_SERVICE_ACCOUNTS = 100
MAX_USER_KEYS = 10
MAX_CUSTOM_ROLES = 300
MAX_ROLE_PERMISSIONS = 3000
DISPLAY_NAME_BYTES = 100
DESCRIPTION_BYTES = 256
ROLE_TITLE_BYTES = 100
ROLE_DESCRIPTION_BYTES = 300
ACCOUNT_UNDELETE_WINDOW = timedelta(days=30)
ROLE_UNDELETE_WINDOW = timedelta(days=7)
ROLE_ID_RESERVED = timedelta(days=37)
SYSTEM_KEY_LIFETIME = timedelta(days=14)
# User-managed keys do not expire unless an org policy says so; Google writes this date.
NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
# What Google attaches to its daily quotas ("come back tomorrow"): a caller that retries
# RESOURCE_EXHAUSTED as throttling without reading this waits for nothing.
QUOTA_RETRY_DELAY = timedelta(seconds=86401)
TOKEN_URI = "https://oauth2.googleapis.com/token"  # a public URL  # nosec B105
PKCS12_PASSWORD = b"notasecret"  # Google's documented, fixed PKCS12 password  # nosec B105
LIST_ACCOUNTS_PAGE = (20, 100)  # (default, maximum) page sizes
LIST_ROLES_PAGE = (300, 1000)

ACCOUNT_ID = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])")
ROLE_ID = re.compile(r"[a-zA-Z0-9_.]{3,64}")
PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
# Loose on purpose: service.resource.verb (more segments allowed), no wildcards.
PERMISSION = re.compile(r"[a-z][a-z0-9]*(\.[a-zA-Z][a-zA-Z0-9_-]*){2,}")
PROJECT_NAME = re.compile(r"projects/([^/]+)")
ACCOUNT_NAME = re.compile(r"projects/([^/]+)/serviceAccounts/([^/]+)")
KEY_NAME = re.compile(r"projects/([^/]+)/serviceAccounts/([^/]+)/keys/([^/]+)")
ROLE_NAME = re.compile(r"projects/([^/]+)/roles/([^/]+)")

# TestIamPermissions on a service account answers for these permissions only.
ACCOUNT_PERMISSIONS = ("iam.serviceAccounts.", "iam.serviceAccountKeys.")

ACCOUNT_MASK = {"display_name": "display_name", "displayName": "display_name",
                "description": "description"}
ROLE_MASK = {"title": "title", "description": "description", "stage": "stage",
             "included_permissions": "included_permissions",
             "includedPermissions": "included_permissions"}

USER_MANAGED = int(types.ListServiceAccountKeysRequest.KeyType.USER_MANAGED)
SYSTEM_MANAGED = int(types.ListServiceAccountKeysRequest.KeyType.SYSTEM_MANAGED)

T = TypeVar("T")


def _tool_time() -> float:
    """The tool's own clock (``WORKLOAD_IDS_CLOCK`` honoured) in seconds since the epoch."""
    return _clock.now().timestamp()


class ApiError(Exception):
    """A refusal, as Google would send it: a gRPC status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def status(self) -> grpc.Status:
        """The status with details, as ``grpc_status`` puts it on the wire."""
        details = []
        if self.retry_after is not None:
            packed = any_pb2.Any()
            packed.Pack(error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=int(self.retry_after.total_seconds()))))
            details.append(packed)
        code_number: int = self.code.value[0]
        return rpc_status.to_status(
            status_pb2.Status(code=code_number, message=self.message, details=details))


def _invalid(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _not_found(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message)


def _precondition(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message)


def _from_rpc(exc: RpcError) -> ApiError:
    """A refusal of the shared policy rules (:mod:`.resourcepolicy`) as an :class:`ApiError`."""
    return ApiError(grpc.StatusCode[exc.status], exc.message)


# --- values the tests can inspect (snapshots; the live records stay inside) ---------------

@dataclass(frozen=True, slots=True)
class ServiceAccountState:
    """One service account as the emulator holds it (no propagation delay applies)."""

    project: str
    email: str
    unique_id: str
    display_name: str
    description: str
    disabled: bool
    created: datetime
    deleted: datetime | None


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key of a service account. There is no private half: Google keeps none."""

    key_id: str
    user_managed: bool
    disabled: bool
    created: datetime
    valid_before: datetime


@dataclass(frozen=True, slots=True)
class RoleState:
    """One custom role."""

    name: str
    title: str
    description: str
    permissions: tuple[str, ...]
    stage: str
    etag: bytes
    deleted: datetime | None


# --- the records ------------------------------------------------------------------------

@dataclass
class _Key:
    key_id: str
    user_managed: bool
    algorithm: int
    created: datetime
    valid_before: datetime
    disabled: bool = False
    # Public halves only (PEM). System-managed keys get theirs when first asked for.
    certificate: bytes = b""
    public_key: bytes = b""


@dataclass
class _Account:
    project: str
    account_id: str
    unique_id: str
    display_name: str
    description: str
    created: datetime
    etag: bytes
    disabled: bool = False
    deleted: datetime | None = None
    keys: dict[str, _Key] = field(default_factory=dict)
    policy: policy_pb2.Policy | None = None  # its own IAM policy; None: never written

    @property
    def email(self) -> str:
        return f"{self.account_id}@{self.project}.iam.gserviceaccount.com"

    def name(self) -> str:
        return f"projects/{self.project}/serviceAccounts/{self.email}"


@dataclass
class _Role:
    project: str
    role_id: str
    title: str
    description: str
    permissions: list[str]
    stage: int
    etag: bytes
    deleted: datetime | None = None
    predefined: str = ""  # roles/NAME for one of Google's predefined roles

    @property
    def name(self) -> str:
        return self.predefined or f"projects/{self.project}/roles/{self.role_id}"


@dataclass(frozen=True, slots=True)
class _KeyMaterial:
    """What key creation hands back once: the private file and the public halves."""

    private_key_data: bytes
    certificate: bytes
    public_key: bytes


# --- the model --------------------------------------------------------------------------

class IamBackend:
    """IAM Admin state and rules for every project: one method per RPC, named after it,
    taking the request message and returning records (or raising :class:`ApiError`).
    Not thread-safe by itself: the emulator holds one lock around each call."""

    def __init__(self, *, sandbox: bool, propagation_delay: float, clock: Clock,
                 max_service_accounts: int, max_user_keys: int,
                 key_limit_code: grpc.StatusCode, allow_public: bool = False) -> None:
        self.sandbox = sandbox
        self.propagation_delay = timedelta(seconds=propagation_delay)
        self.clock = clock
        self.max_service_accounts = max_service_accounts
        self.max_user_keys = max_user_keys
        self.key_limit_code = key_limit_code
        self.allow_public = allow_public
        self.projects: dict[str, bool] = {}  # project id -> key creation allowed
        # project id -> how long its new user-managed keys live (iam.serviceAccountKeyExpiryHours)
        self.key_expiry: dict[str, timedelta] = {}
        self.accounts: dict[str, _Account] = {}  # by unique id, deleted ones included
        self.by_email: dict[str, str] = {}  # live accounts only
        self.roles: dict[str, _Role] = {}  # by full name, deleted ones included
        # What TestIamPermissions says the caller lacks (on every account).
        self.denied_permissions: set[str] = set()

    # -- projects and names --

    def add_project(self, project: str, *, key_creation: bool = True,
                    key_expiry_hours: int | None = None) -> None:
        """Make ``project`` known (with key creation allowed or refused by org policy, and
        new keys expiring after ``key_expiry_hours`` when that org policy is set)."""
        if not PROJECT_ID.fullmatch(project):
            raise ValueError(f"{project!r} is not a project id (6-30 characters: lowercase "
                             "letters, digits and hyphens, starting with a letter)")
        self.projects[project] = key_creation
        if key_expiry_hours is not None:
            self.key_expiry[project] = timedelta(hours=key_expiry_hours)

    def _project(self, project: str) -> str:
        if project in self.projects:
            return project
        if self.sandbox and PROJECT_ID.fullmatch(project):
            self.projects[project] = True
            return project
        # Google answers 403 or 404 here depending on the caller's rights; we say 404.
        raise _not_found(f"Project {project} not found or deleted.")

    def _parent(self, name: str) -> str:
        match = PROJECT_NAME.fullmatch(name)
        if not match or match.group(1) == "-":
            raise _invalid(f"Invalid resource name {name!r}: expected projects/PROJECT_ID.")
        return self._project(match.group(1))

    def now(self) -> datetime:
        """The time, once what Google has permanently removed by then is forgotten."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        self._purge(now)
        return now

    def _purge(self, now: datetime) -> None:
        """Forget what Google has permanently removed by ``now``."""
        gone = [uid for uid, a in self.accounts.items()
                if a.deleted is not None and now - a.deleted >= ACCOUNT_UNDELETE_WINDOW]
        for uid in gone:
            del self.accounts[uid]
        for name in [n for n, r in self.roles.items()
                     if r.deleted is not None and now - r.deleted >= ROLE_ID_RESERVED]:
            del self.roles[name]

    def _visible(self, created: datetime, now: datetime) -> bool:
        return now - created >= self.propagation_delay

    def _account(self, name: str, permission: str, *, reading: bool = False) -> _Account:
        """The live account ``name`` refers to (by email or unique id, in a project or
        under ``-``); ``reading`` hides accounts still propagating."""
        match = ACCOUNT_NAME.fullmatch(name)
        if not match:
            raise _invalid(f"Invalid resource name {name!r}: expected "
                           "projects/PROJECT_ID/serviceAccounts/EMAIL_OR_UNIQUE_ID.")
        return self._resolve(match.group(1), match.group(2), permission, reading=reading)

    def _resolve(self, project: str, ref: str, permission: str, *, reading: bool) -> _Account:
        if project != "-":
            self._project(project)
        now = self.now()
        if ref.isdigit():
            account = self.accounts.get(ref)
        elif "@" in ref:
            uid = self.by_email.get(ref)
            account = self.accounts.get(uid) if uid else None
        else:
            raise _invalid(f"Invalid service account {ref!r}: use its email or unique id.")
        if (account is None or account.deleted is not None
                or (project != "-" and account.project != project)
                or (reading and not self._visible(account.created, now))):
            if project == "-":
                # Documented on ServiceAccount.name: with the wildcard, a missing account
                # is a 403, because Google cannot tell which project to ask.
                raise ApiError(grpc.StatusCode.PERMISSION_DENIED,
                               f"Permission '{permission}' denied on resource "
                               "(or it may not exist).")
            raise _not_found(f"Unknown service account: projects/{project}/serviceAccounts/{ref}")
        return account

    # -- service accounts --

    def create_account(self, request: types.CreateServiceAccountRequest) -> _Account:
        """CreateServiceAccount."""
        project = self._parent(request.name)
        account_id = request.account_id
        if not (6 <= len(account_id) <= 30 and ACCOUNT_ID.fullmatch(account_id)):
            raise _invalid(f"Invalid form of account ID {account_id}. Should be "
                           "[Alphanumeric characters and dashes, starting with a lowercase "
                           "letter and ending with a letter or digit, 6-30 characters].")
        given = request.service_account
        _check_bytes("display_name", given.display_name, DISPLAY_NAME_BYTES)
        _check_bytes("description", given.description, DESCRIPTION_BYTES)
        now = self.now()
        email = f"{account_id}@{project}.iam.gserviceaccount.com"
        if email in self.by_email:
            # Also while the account is still invisible to Get: a "retry after 404" lands here.
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS,
                           f"Service account {account_id} already exists within project "
                           f"projects/{project}.")
        live = sum(1 for a in self.accounts.values() if a.project == project and a.deleted is None)
        if live >= self.max_service_accounts:
            raise ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           "Maximum number of service accounts on project reached.",
                           QUOTA_RETRY_DELAY)
        account = _Account(project=project, account_id=account_id, unique_id=self._unique_id(),
                           display_name=given.display_name, description=given.description,
                           created=now, etag=_etag())
        system = _Key(key_id=secrets.token_hex(20), user_managed=False,
                      algorithm=types.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048,
                      created=now, valid_before=now + SYSTEM_KEY_LIFETIME)
        account.keys[system.key_id] = system
        self.accounts[account.unique_id] = account
        self.by_email[email] = account.unique_id
        return account

    def _unique_id(self) -> str:
        while True:
            uid = "1" + "".join(secrets.choice("0123456789") for _ in range(20))
            if uid not in self.accounts:
                return uid

    def get_account(self, request: types.GetServiceAccountRequest) -> _Account:
        """GetServiceAccount."""
        return self._account(request.name, "iam.serviceAccounts.get", reading=True)

    def list_accounts(self, request: types.ListServiceAccountsRequest
                      ) -> tuple[list[_Account], str]:
        """ListServiceAccounts, one page."""
        project = self._parent(request.name)
        now = self.now()
        accounts = sorted((a for a in self.accounts.values()
                           if a.project == project and a.deleted is None
                           and self._visible(a.created, now)), key=lambda a: a.email)
        return _page(accounts, lambda a: a.email, request.page_size, request.page_token,
                     LIST_ACCOUNTS_PAGE)

    def patch_account(self, request: types.PatchServiceAccountRequest) -> _Account:
        """PatchServiceAccount (display name and description)."""
        account = self._account(request.service_account.name, "iam.serviceAccounts.update")
        paths = list(request.update_mask.paths)
        if not paths:
            raise _invalid("update_mask must name display_name and/or description.")
        for path in paths:
            if path not in ACCOUNT_MASK:
                raise _invalid(f"Invalid update_mask path {path!r}: only display_name and "
                               "description can be patched.")
        given = request.service_account
        fields = {ACCOUNT_MASK[p] for p in paths}
        if "display_name" in fields:
            _check_bytes("display_name", given.display_name, DISPLAY_NAME_BYTES)
            account.display_name = given.display_name
        if "description" in fields:
            _check_bytes("description", given.description, DESCRIPTION_BYTES)
            account.description = given.description
        account.etag = _etag()
        return account

    def update_account(self, request: types.ServiceAccount) -> _Account:
        """The deprecated PUT: only ``display_name`` changes."""
        account = self._account(request.name, "iam.serviceAccounts.update")
        _check_bytes("display_name", request.display_name, DISPLAY_NAME_BYTES)
        account.display_name = request.display_name
        account.etag = _etag()
        return account

    def delete_account(self, request: types.DeleteServiceAccountRequest) -> None:
        """DeleteServiceAccount."""
        account = self._account(request.name, "iam.serviceAccounts.delete")
        account.deleted = self.now()
        account.policy = None  # the account's own policy goes with it (not restored on undelete)
        del self.by_email[account.email]

    def undelete_account(self, request: types.UndeleteServiceAccountRequest) -> _Account:
        """UndeleteServiceAccount (within the 30 days Google keeps a deleted account)."""
        match = ACCOUNT_NAME.fullmatch(request.name)
        if not match or not match.group(2).isdigit():
            raise _invalid(f"Invalid resource name {request.name!r}: expected "
                           "projects/PROJECT_ID/serviceAccounts/UNIQUE_ID.")
        project, uid = match.groups()
        if project != "-":
            self._project(project)
        self.now()  # forgets accounts deleted 30 days ago or more
        account = self.accounts.get(uid)
        if account is None or (project != "-" and account.project != project):
            raise _not_found(f"Unknown service account: {request.name} (accounts can be "
                             "undeleted for 30 days after deletion).")
        # Google's codes for these two refusals are not documented; both are conflicts with
        # the account's state, so FAILED_PRECONDITION.
        if account.deleted is None:
            raise _precondition(f"Service account {account.email} is not deleted.")
        if account.email in self.by_email:
            raise _precondition(f"Cannot undelete {uid}: a service account with the email "
                                f"{account.email} was created after it was deleted.")
        account.deleted = None
        account.etag = _etag()
        self.by_email[account.email] = uid
        return account

    def set_account_disabled(self, name: str, disabled: bool) -> None:
        """Disable or enable an account."""
        verb = "disable" if disabled else "enable"
        account = self._account(name, f"iam.serviceAccounts.{verb}")
        account.disabled = disabled
        account.etag = _etag()

    # -- IAM policies on service accounts --

    def principal_exists(self, member: str) -> bool:
        """False for a ``serviceAccount:`` member of a project this emulator knows that
        has no such live (and visible) account; True for any other member."""
        if not member.startswith("serviceAccount:"):
            return True
        email = member.removeprefix("serviceAccount:")
        domain = email.partition("@")[2]
        project = domain.removesuffix(".iam.gserviceaccount.com")
        if project == domain or project not in self.projects:
            return True  # Google's service agents, other projects: not ours to judge
        uid = self.by_email.get(email)
        return uid is not None and self._visible(self.accounts[uid].created, self.now())

    def _policy_account(self, resource: str, permission: str) -> _Account:
        # A fresh account still propagating 404s here too (terraform's
        # google_service_account_iam_* right after google_service_account).
        return self._account(resource, permission, reading=True)

    def get_account_policy(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        """GetIamPolicy on a service account."""
        account = self._policy_account(request.resource, "iam.serviceAccounts.getIamPolicy")
        try:
            return read_policy(account.policy or empty_policy(), request.options.requested_policy_version)
        except RpcError as exc:
            raise _from_rpc(exc) from None

    def set_account_policy(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        """SetIamPolicy on a service account, checking the etag."""
        account = self._policy_account(request.resource, "iam.serviceAccounts.setIamPolicy")
        try:
            # Service accounts accept conditional bindings (terraform's
            # google_service_account_iam_* take a condition block).
            write = check_policy_write(request, conditions=True, allow_public=self.allow_public,
                                       principal_exists=self.principal_exists)
            account.policy = apply_policy_write(account.policy or empty_policy(), write, _etag())
        except RpcError as exc:
            raise _from_rpc(exc) from None
        return render_policy(account.policy, 3)

    def test_account_permissions(self, request: iam_policy_pb2.TestIamPermissionsRequest
                                 ) -> iam_policy_pb2.TestIamPermissionsResponse:
        """TestIamPermissions on a service account."""
        self._policy_account(request.resource, "iam.serviceAccounts.get")
        try:
            asked = check_permissions(list(request.permissions), ACCOUNT_PERMISSIONS)
        except RpcError as exc:
            raise _from_rpc(exc) from None
        return iam_policy_pb2.TestIamPermissionsResponse(
            permissions=[p for p in asked if p not in self.denied_permissions])

    # -- keys --

    def check_key_creation(self, request: types.CreateServiceAccountKeyRequest) -> _Account:
        """Everything CreateServiceAccountKey refuses for, checked before a key is made."""
        account = self._account(request.name, "iam.serviceAccountKeys.create")
        if not self.projects.get(account.project, True):
            raise _precondition("Key creation is not allowed on this service account.")
        user_keys = sum(1 for k in account.keys.values() if k.user_managed)
        if user_keys >= self.max_user_keys:
            if self.key_limit_code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise ApiError(self.key_limit_code, "Maximum number of keys on account reached.",
                               QUOTA_RETRY_DELAY)
            raise ApiError(self.key_limit_code, "Precondition check failed.")
        return account

    def add_key(self, request: types.CreateServiceAccountKeyRequest, key_id: str,
                material: _KeyMaterial, created: datetime) -> tuple[_Account, _Key]:
        """Record the public halves of a key made outside the lock."""
        account = self.check_key_creation(request)  # again: the world moved while we made it
        algorithm = (request.key_algorithm
                     or types.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048)
        key = _Key(key_id=key_id, user_managed=True, algorithm=algorithm, created=created,
                   valid_before=self.key_valid_before(account.project, created),
                   certificate=material.certificate,
                   public_key=material.public_key)
        account.keys[key_id] = key
        return account, key

    def key_valid_before(self, project: str, created: datetime) -> datetime:
        """When a user-managed key made now in ``project`` stops working."""
        lifetime = self.key_expiry.get(project)
        return NEVER if lifetime is None else created + lifetime

    def list_keys(self, request: types.ListServiceAccountKeysRequest
                  ) -> tuple[_Account, list[_Key]]:
        """ListServiceAccountKeys."""
        kinds = [int(t) for t in request.key_types]
        if len(set(kinds)) != len(kinds):
            raise _invalid("key_types must not repeat a key type.")
        if types.ListServiceAccountKeysRequest.KeyType.KEY_TYPE_UNSPECIFIED in kinds:
            raise _invalid("key_types must not contain KEY_TYPE_UNSPECIFIED.")
        account = self._account(request.name, "iam.serviceAccountKeys.list", reading=True)
        now = self.now()
        wanted = set(kinds) or {USER_MANAGED, SYSTEM_MANAGED}
        return account, [k for k in sorted(account.keys.values(), key=lambda k: k.created)
                if _key_type(k) in wanted and self._visible(k.created, now)]

    def key(self, name: str, permission: str, *, reading: bool = False) -> tuple[_Account, _Key]:
        """The key ``name`` and its live account; ``reading`` hides fresh ones."""
        match = KEY_NAME.fullmatch(name)
        if not match:
            raise _invalid(f"Invalid resource name {name!r}: expected "
                           "projects/PROJECT_ID/serviceAccounts/ACCOUNT/keys/KEY_ID.")
        project, ref, key_id = match.groups()
        account = self._resolve(project, ref, permission, reading=reading)
        key = account.keys.get(key_id)
        if key is None or (reading and not self._visible(key.created, self.now())):
            raise _not_found(f"Unknown service account key: {name}")
        return account, key

    def _user_key(self, name: str, permission: str) -> tuple[_Account, _Key]:
        account, key = self.key(name, permission)
        if not key.user_managed:
            # Google's code is not documented; system-managed keys are Google's to rotate.
            raise _precondition(f"Key {key.key_id} is system-managed and cannot be changed.")
        return account, key

    def delete_key(self, name: str) -> None:
        """DeleteServiceAccountKey."""
        account, key = self._user_key(name, "iam.serviceAccountKeys.delete")
        del account.keys[key.key_id]

    def set_key_disabled(self, name: str, disabled: bool) -> None:
        """Disable or enable a key."""
        verb = "disable" if disabled else "enable"
        _, key = self._user_key(name, f"iam.serviceAccountKeys.{verb}")
        key.disabled = disabled

    # -- custom roles --

    def _role(self, name: str) -> _Role:
        """A role Google still shows (live, or deleted less than 7 days ago)."""
        if name.startswith("roles/"):
            raise ApiError(grpc.StatusCode.UNIMPLEMENTED,
                           "The emulator serves project-level custom roles only.")
        match = ROLE_NAME.fullmatch(name)
        if not match or match.group(1) == "-":
            raise _invalid(f"Invalid resource name {name!r}: expected "
                           "projects/PROJECT_ID/roles/ROLE_ID.")
        self._project(match.group(1))
        now = self.now()
        role = self.roles.get(name)
        if role is None or (role.deleted is not None and now - role.deleted >= ROLE_UNDELETE_WINDOW):
            raise _not_found(f"The role named {name} was not found.")
        return role

    def _role_parent(self, parent: str) -> str:
        if parent == "" or parent.startswith("organizations/"):
            raise ApiError(grpc.StatusCode.UNIMPLEMENTED,
                           "The emulator serves project-level custom roles only.")
        return self._parent(parent)

    def create_role(self, request: types.CreateRoleRequest) -> _Role:
        """CreateRole."""
        project = self._role_parent(request.parent)
        role_id = request.role_id
        if not ROLE_ID.fullmatch(role_id):
            raise _invalid(f"The role_id ({role_id}) is not valid: use 3-64 letters, digits, "
                           "underscores and periods.")
        given = request.role
        _check_role_fields(given.title, given.description, list(given.included_permissions))
        self.now()  # forgets roles whose id is free again
        name = f"projects/{project}/roles/{role_id}"
        existing = self.roles.get(name)
        if existing is not None and existing.deleted is not None:
            raise _precondition(f"You can't create a role_id ({role_id}) which has been "
                                "marked for deletion.")
        if existing is not None:
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS,
                           f"A role named {role_id} in projects/{project} already exists.")
        # Deleted roles count until they are purged; the code here is not documented.
        if sum(1 for r in self.roles.values() if r.project == project) >= MAX_CUSTOM_ROLES:
            raise ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"Maximum number of custom roles ({MAX_CUSTOM_ROLES}) on project reached.")
        role = _Role(project=project, role_id=role_id, title=given.title,
                     description=given.description,
                     permissions=_unique(given.included_permissions),
                     stage=int(given.stage), etag=_etag())
        self.roles[name] = role
        return role

    def get_role(self, request: types.GetRoleRequest) -> _Role:
        """GetRole: a custom role, or one of the predefined roles the emulator knows."""
        if request.name.startswith("roles/"):
            from .predefined_roles import PREDEFINED_ROLES
            known = PREDEFINED_ROLES.get(request.name)
            if known is None:
                raise ApiError(grpc.StatusCode.UNIMPLEMENTED,
                               f"The emulator does not serve the predefined role {request.name}; it "
                               f"serves {', '.join(sorted(PREDEFINED_ROLES))}.")
            title, description, _, permissions = known
            return _Role(project="", role_id=request.name.removeprefix("roles/"), title=title,
                         description=description, permissions=list(permissions), stage=2,
                         etag=b"\x00", predefined=request.name)
        return self._role(request.name)

    def list_roles(self, request: types.ListRolesRequest) -> tuple[list[_Role], str]:
        """ListRoles, one page."""
        project = self._role_parent(request.parent)
        now = self.now()
        roles = sorted((r for r in self.roles.values() if r.project == project
                        and (r.deleted is None or (request.show_deleted
                                                   and now - r.deleted < ROLE_UNDELETE_WINDOW))),
                       key=lambda r: r.name)
        return _page(roles, lambda r: r.name, request.page_size, request.page_token, LIST_ROLES_PAGE)

    def update_role(self, request: types.UpdateRoleRequest) -> _Role:
        """UpdateRole (checking the etag)."""
        role = self._role(request.name)
        _check_etag(role, request.role.etag)
        if role.deleted is not None:
            raise _precondition(f"You can't update a deleted role ({role.name}); undelete it first.")
        paths = list(request.update_mask.paths) or ["title", "description",
                                                     "included_permissions", "stage"]
        for path in paths:
            if path not in ROLE_MASK:
                raise _invalid(f"Invalid update_mask path {path!r}.")
        fields = {ROLE_MASK[p] for p in paths}
        given = request.role
        _check_role_fields(given.title if "title" in fields else role.title,
                           given.description if "description" in fields else role.description,
                           list(given.included_permissions) if "included_permissions" in fields
                           else role.permissions)
        if "title" in fields:
            role.title = given.title
        if "description" in fields:
            role.description = given.description
        if "included_permissions" in fields:
            role.permissions = _unique(given.included_permissions)
        if "stage" in fields:
            role.stage = int(given.stage)
        role.etag = _etag()
        return role

    def delete_role(self, request: types.DeleteRoleRequest) -> _Role:
        """DeleteRole: marks it deleted (an undelete brings it back, as in GCP)."""
        role = self._role(request.name)
        _check_etag(role, request.etag)
        if role.deleted is not None:
            raise _precondition(f"The role {role.name} is already deleted.")
        role.deleted = self.now()
        role.etag = _etag()
        return role

    def undelete_role(self, request: types.UndeleteRoleRequest) -> _Role:
        """UndeleteRole."""
        role = self._role(request.name)
        _check_etag(role, request.etag)
        if role.deleted is None:
            raise _precondition(f"The role {role.name} is not deleted.")
        role.deleted = None
        role.etag = _etag()
        return role


def _etag() -> bytes:
    return b"\x07" + secrets.token_bytes(7)  # Google's etags are 8 opaque bytes


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _key_type(key: _Key) -> int:
    return USER_MANAGED if key.user_managed else SYSTEM_MANAGED


def _check_bytes(name: str, value: str, limit: int) -> None:
    if len(value.encode("utf-8")) > limit:
        raise _invalid(f"{name} is longer than {limit} UTF-8 bytes.")


def _check_role_fields(title: str, description: str, permissions: Sequence[str]) -> None:
    _check_bytes("title", title, ROLE_TITLE_BYTES)
    _check_bytes("description", description, ROLE_DESCRIPTION_BYTES)
    if len(permissions) > MAX_ROLE_PERMISSIONS:
        raise _invalid(f"A custom role can include at most {MAX_ROLE_PERMISSIONS} permissions.")
    for permission in permissions:
        if not PERMISSION.fullmatch(permission):
            raise _invalid(f"Permission {permission} is not valid.")


def _check_etag(role: _Role, etag: bytes) -> None:
    if etag and etag != role.etag:
        raise ApiError(grpc.StatusCode.ABORTED,
                       "There were concurrent policy changes. Please retry the whole "
                       "read-modify-write with exponential backoff.")


def _page(items: list[T], key: Callable[[T], str], size: int, token: str,
          sizes: tuple[int, int]) -> tuple[list[T], str]:
    """One page after the item named in ``token`` (stable while items come and go)."""
    if size < 0:
        raise _invalid("page_size must not be negative.")
    size = min(size or sizes[0], sizes[1])
    start = 0
    if token:
        try:
            after = base64.b64decode(token, altchars=b"-_", validate=True).decode("utf-8")
        except (ValueError, UnicodeError, binascii.Error):
            raise _invalid("Invalid page token.") from None
        start = next((i for i, item in enumerate(items) if key(item) > after), len(items))
    page = items[start:start + size]
    more = start + size < len(items)
    next_token = base64.urlsafe_b64encode(key(page[-1]).encode()).decode("ascii") if more else ""
    return page, next_token


# --- key material -----------------------------------------------------------------------

def _new_private_key(algorithm: int) -> RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric import rsa
    bits = 1024 if algorithm == types.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_1024 else 2048
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _certificate(private: RSAPrivateKey, unique_id: str, valid_after: datetime,
                 valid_before: datetime) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    # Named by the account's numeric id, as Google's key certificates are: an email can be
    # up to 100 characters and a common name at most 64 (RFC 5280's ub-common-name).
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, unique_id)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid_after).not_valid_after(valid_before)
            .sign(private, hashes.SHA256()))


def _key_material(account: ServiceAccountState, key_id: str, algorithm: int,
                      private_key_type: int, created: datetime,
                      valid_before: datetime = NEVER) -> _KeyMaterial:
    """A new key pair: the private file (JSON credentials or PKCS12) and public halves."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
    private = _new_private_key(algorithm)
    cert = _certificate(private, account.unique_id, created, valid_before)
    cert_pem: bytes = cert.public_bytes(serialization.Encoding.PEM)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private_key_type == types.ServiceAccountPrivateKeyType.TYPE_PKCS12_FILE:
        data = pkcs12.serialize_key_and_certificates(
            b"privatekey", private, cert, None,
            serialization.BestAvailableEncryption(PKCS12_PASSWORD))
    else:
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode("ascii")
        data = json.dumps({
            "type": "service_account",
            "project_id": account.project,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": account.email,
            "client_id": account.unique_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": TOKEN_URI,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
                                    + urllib.parse.quote(account.email),
            "universe_domain": "googleapis.com",
        }, indent=2).encode("utf-8")
    return _KeyMaterial(data, cert_pem, public_pem)


# --- wire format ------------------------------------------------------------------------

def _account_message(account: _Account) -> types.ServiceAccount:
    return types.ServiceAccount(
        name=account.name(), project_id=account.project, unique_id=account.unique_id,
        email=account.email, display_name=account.display_name, etag=account.etag,
        description=account.description, oauth2_client_id=account.unique_id,
        disabled=account.disabled)


def _key_message(account: _Account, key: _Key, **extra: Any) -> types.ServiceAccountKey:
    return types.ServiceAccountKey(
        name=f"{account.name()}/keys/{key.key_id}", key_algorithm=key.algorithm,
        valid_after_time=key.created, valid_before_time=key.valid_before,
        key_origin=types.ServiceAccountKeyOrigin.GOOGLE_PROVIDED,
        key_type=_key_type(key), disabled=key.disabled, **extra)


def _role_message(role: _Role, *, full: bool = True) -> types.Role:
    return types.Role(
        name=role.name, title=role.title, description=role.description,
        included_permissions=role.permissions if full else [], stage=role.stage,
        etag=role.etag, deleted=role.deleted is not None)


def _account_state(account: _Account) -> ServiceAccountState:
    return ServiceAccountState(
        project=account.project, email=account.email, unique_id=account.unique_id,
        display_name=account.display_name, description=account.description,
        disabled=account.disabled, created=account.created, deleted=account.deleted)


class IamEmulator(GrpcEmulator):
    """Google IAM Admin on 127.0.0.1 over gRPC, state in memory.

    ``sandbox``: projects spring into being when first named; otherwise only those given
    to :meth:`add_project` (or ``projects``) exist and others are NOT_FOUND.
    ``propagation_delay``: seconds a new account or key stays invisible to Get and List.
    ``clock``: the time the emulator lives by (undelete windows, propagation); defaults to
    :func:`workload_ids.clock.now` (so a clock frozen by ``WORKLOAD_IDS_CLOCK`` never lets
    a propagation delay pass); tests pass a
    :class:`~workload_ids.sandbox.common.clock.ManualClock`.
    ``allow_public``: accept ``allUsers`` and ``allAuthenticatedUsers`` in an account's own
    policy (refused by default, as under the domain-restricted-sharing organization policy).
    ``key_limit_code``: how the 11th user-managed key is refused. Google sent
    RESOURCE_EXHAUSTED ("Maximum number of keys on account reached.", retry in 86401 s) for
    years; reports since 2023 (firebase-tools PR #6192) show 400 FAILED_PRECONDITION
    "Precondition check failed.". A client should handle both.
    """

    thread_name = "iam-emulator"

    def __init__(self, *, sandbox: bool = False, propagation_delay: float = 0.0,
                 clock: Clock | None = None, projects: Iterable[str] = (),
                 max_service_accounts: int = MAX_SERVICE_ACCOUNTS,
                 max_user_keys: int = MAX_USER_KEYS,
                 key_limit_code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED,
                 allow_public: bool = False, port: int = 0, workers: int = 8) -> None:
        self.backend = IamBackend(
            sandbox=sandbox, propagation_delay=propagation_delay, clock=clock or _tool_time,
            max_service_accounts=max_service_accounts, max_user_keys=max_user_keys,
            key_limit_code=key_limit_code, allow_public=allow_public)
        for project in projects:
            self.backend.add_project(project)
        self.calls: Counter[str] = Counter()  # RPCs served, by method name
        self.host = ""
        self._port = port
        self._workers = workers
        self._lock = threading.RLock()
        self._channels: list[grpc.Channel] = []

    # -- life cycle --

    def client(self) -> IAMClient:
        """A real ``IAMClient`` connected to this emulator (no credentials needed)."""
        from google.cloud.iam_admin_v1 import IAMClient
        from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
        if self._server is None:
            self.start()
        channel = grpc.insecure_channel(self.host)
        self._channels.append(channel)
        return IAMClient(transport=IAMGrpcTransport(channel=channel))

    # -- set-up and inspection (no propagation delay, no RPC) --

    def add_project(self, project_id: str, *, key_creation: bool = True,
                    key_expiry_hours: int | None = None) -> None:
        """Make a project exist. ``key_creation=False`` acts as the org policy
        ``iam.disableServiceAccountKeyCreation`` (enforced by default in organizations
        created since 2024); ``key_expiry_hours`` as ``iam.serviceAccountKeyExpiryHours``."""
        with self._lock:
            self.backend.add_project(project_id, key_creation=key_creation,
                                     key_expiry_hours=key_expiry_hours)

    def projects(self) -> list[str]:
        """Every project the emulator knows."""
        with self._lock:
            return sorted(self.backend.projects)

    def service_accounts(self, project: str, *, deleted: bool = False) -> list[ServiceAccountState]:
        """The project's accounts by email; deleted ones (still undeletable) too if asked."""
        with self._lock:
            self.backend.now()
            return sorted((_account_state(a) for a in self.backend.accounts.values()
                           if a.project == project and (deleted or a.deleted is None)),
                          key=lambda s: (s.email, s.deleted is not None))

    def keys(self, email: str) -> list[KeyState]:
        """The keys of the live account ``email`` (user- and system-managed)."""
        with self._lock:
            uid = self.backend.by_email.get(email)
            if uid is None:
                raise KeyError(email)
            return [KeyState(k.key_id, k.user_managed, k.disabled, k.created, k.valid_before)
                    for k in sorted(self.backend.accounts[uid].keys.values(),
                                    key=lambda k: k.created)]

    def service_account_policy(self, email: str) -> policy_pb2.Policy:
        """The IAM policy of the live account ``email``, conditions included (no
        propagation delay applies)."""
        with self._lock:
            uid = self.backend.by_email.get(email)
            if uid is None:
                raise KeyError(email)
            out = policy_pb2.Policy()
            out.CopyFrom(self.backend.accounts[uid].policy or empty_policy())
            return out

    def principal_exists(self, member: str) -> bool:
        """Whether IAM would accept ``member`` as an existing principal: False only for a
        ``serviceAccount:`` of a project known here with no such live, visible account.
        Pass it as ``principal_exists`` to the Resource Manager and resource policy
        emulators so their policies refuse accounts that do not exist."""
        with self._lock:
            return self.backend.principal_exists(member)

    @property
    def denied_permissions(self) -> set[str]:
        """What TestIamPermissions on a service account says the caller lacks (mutable)."""
        return self.backend.denied_permissions

    def roles(self, project: str, *, deleted: bool = False) -> list[RoleState]:
        """The project's custom roles; deleted ones (until purged) too if asked."""
        with self._lock:
            self.backend.now()
            return [RoleState(r.name, r.title, r.description, tuple(r.permissions),
                              types.Role.RoleLaunchStage(r.stage).name, r.etag, r.deleted)
                    for r in sorted(self.backend.roles.values(), key=lambda r: r.name)
                    if r.project == project and (deleted or r.deleted is None)]

    # -- the wire --

    def _handlers(self) -> grpc.GenericRpcHandler:
        b = self.backend
        empty = empty_pb2.Empty

        def accounts_page(result: tuple[list[_Account], str]) -> types.ListServiceAccountsResponse:
            page, token = result
            return types.ListServiceAccountsResponse(
                accounts=[_account_message(a) for a in page], next_page_token=token)

        def roles_page(request: types.ListRolesRequest
                       ) -> types.ListRolesResponse:
            page, token = b.list_roles(request)
            full = request.view == types.RoleView.FULL
            return types.ListRolesResponse(roles=[_role_message(r, full=full) for r in page],
                                         next_page_token=token)

        def delete_account(request: types.DeleteServiceAccountRequest) -> empty_pb2.Empty:
            b.delete_account(request)
            return empty()

        def disable_account(request: types.DisableServiceAccountRequest) -> empty_pb2.Empty:
            b.set_account_disabled(request.name, True)
            return empty()

        def enable_account(request: types.EnableServiceAccountRequest) -> empty_pb2.Empty:
            b.set_account_disabled(request.name, False)
            return empty()

        def delete_key(request: types.DeleteServiceAccountKeyRequest) -> empty_pb2.Empty:
            b.delete_key(request.name)
            return empty()

        def disable_key(request: types.DisableServiceAccountKeyRequest) -> empty_pb2.Empty:
            b.set_key_disabled(request.name, True)
            return empty()

        def enable_key(request: types.EnableServiceAccountKeyRequest) -> empty_pb2.Empty:
            b.set_key_disabled(request.name, False)
            return empty()

        def list_keys(request: types.ListServiceAccountKeysRequest
                      ) -> types.ListServiceAccountKeysResponse:
            account, keys = b.list_keys(request)
            return types.ListServiceAccountKeysResponse(keys=[_key_message(account, k) for k in keys])

        def get_key(request: types.GetServiceAccountKeyRequest) -> types.ServiceAccountKey:
            account, key = b.key(request.name, "types.serviceAccountKeys.get", reading=True)
            kind = request.public_key_type
            if kind == types.ServiceAccountPublicKeyType.TYPE_NONE:
                return _key_message(account, key)
            if not key.certificate:
                self._system_key_material(account, key)
            data = (key.certificate if kind == types.ServiceAccountPublicKeyType.TYPE_X509_PEM_FILE
                    else key.public_key)
            return _key_message(account, key, public_key_data=data)

        table: dict[str, tuple[Callable[[Any], Any], type[Any], Callable[[Any], bytes]]] = {
            "CreateServiceAccount": (lambda r: _account_message(b.create_account(r)),
                                     types.CreateServiceAccountRequest, types.ServiceAccount.serialize),
            "GetServiceAccount": (lambda r: _account_message(b.get_account(r)),
                                  types.GetServiceAccountRequest, types.ServiceAccount.serialize),
            "ListServiceAccounts": (lambda r: accounts_page(b.list_accounts(r)),
                                    types.ListServiceAccountsRequest,
                                    types.ListServiceAccountsResponse.serialize),
            "PatchServiceAccount": (lambda r: _account_message(b.patch_account(r)),
                                    types.PatchServiceAccountRequest, types.ServiceAccount.serialize),
            "UpdateServiceAccount": (lambda r: _account_message(b.update_account(r)),
                                     types.ServiceAccount, types.ServiceAccount.serialize),
            "DeleteServiceAccount": (delete_account,
                                     types.DeleteServiceAccountRequest, empty.SerializeToString),
            "UndeleteServiceAccount": (
                lambda r: types.UndeleteServiceAccountResponse(
                    restored_account=_account_message(b.undelete_account(r))),
                types.UndeleteServiceAccountRequest, types.UndeleteServiceAccountResponse.serialize),
            "DisableServiceAccount": (disable_account,
                                      types.DisableServiceAccountRequest, empty.SerializeToString),
            "EnableServiceAccount": (enable_account,
                                     types.EnableServiceAccountRequest, empty.SerializeToString),
            "ListServiceAccountKeys": (list_keys, types.ListServiceAccountKeysRequest,
                                       types.ListServiceAccountKeysResponse.serialize),
            "GetServiceAccountKey": (get_key, types.GetServiceAccountKeyRequest,
                                     types.ServiceAccountKey.serialize),
            "DeleteServiceAccountKey": (delete_key,
                                        types.DeleteServiceAccountKeyRequest,
                                        empty.SerializeToString),
            "DisableServiceAccountKey": (disable_key,
                                         types.DisableServiceAccountKeyRequest,
                                         empty.SerializeToString),
            "EnableServiceAccountKey": (enable_key,
                                        types.EnableServiceAccountKeyRequest,
                                        empty.SerializeToString),
            "CreateRole": (lambda r: _role_message(b.create_role(r)), types.CreateRoleRequest,
                           types.Role.serialize),
            "GetRole": (lambda r: _role_message(b.get_role(r)), types.GetRoleRequest, types.Role.serialize),
            "ListRoles": (roles_page, types.ListRolesRequest, types.ListRolesResponse.serialize),
            "UpdateRole": (lambda r: _role_message(b.update_role(r)), types.UpdateRoleRequest,
                           types.Role.serialize),
            "DeleteRole": (lambda r: _role_message(b.delete_role(r)), types.DeleteRoleRequest,
                           types.Role.serialize),
            "UndeleteRole": (lambda r: _role_message(b.undelete_role(r)), types.UndeleteRoleRequest,
                             types.Role.serialize),
        }
        handlers = {method: self._unary(method, fn, request_type, serialize, locked=True)
                    for method, (fn, request_type, serialize) in table.items()}
        # IAM policies on service accounts: plain protobuf messages (google.iam.v1), not proto-plus.
        policy_table: dict[str, tuple[Callable[[Any], Any], Any, Callable[[Any], bytes]]] = {
            "GetIamPolicy": (b.get_account_policy, iam_policy_pb2.GetIamPolicyRequest,
                             policy_pb2.Policy.SerializeToString),
            "SetIamPolicy": (b.set_account_policy, iam_policy_pb2.SetIamPolicyRequest,
                             policy_pb2.Policy.SerializeToString),
            "TestIamPermissions": (b.test_account_permissions, iam_policy_pb2.TestIamPermissionsRequest,
                                   iam_policy_pb2.TestIamPermissionsResponse.SerializeToString),
        }
        for method, (fn, message, serialize) in policy_table.items():
            handlers[method] = self._unary(method, fn, message, serialize, locked=True,
                                           deserialize=message.FromString)
        # Key creation makes an RSA key (~75 ms for 2048 bits): outside the lock, so other
        # calls are not held up behind it.
        handlers["CreateServiceAccountKey"] = self._unary(
            "CreateServiceAccountKey", self._create_key, types.CreateServiceAccountKeyRequest,
            types.ServiceAccountKey.serialize, locked=False)
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _unary(self, method: str, fn: Callable[[Any], Any], request_type: type[Any],
               serialize: Callable[[Any], bytes], *, locked: bool,
               deserialize: Callable[[bytes], Any] | None = None) -> grpc.RpcMethodHandler:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.calls[method] += 1
            try:
                if not locked:
                    return fn(request)
                with self._lock:
                    return fn(request)
            except ApiError as exc:
                context.abort_with_status(exc.status())
        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=deserialize or request_type.deserialize,
            response_serializer=serialize)

    def _create_key(self, request: types.CreateServiceAccountKeyRequest) -> types.ServiceAccountKey:
        b = self.backend
        with self._lock:
            snapshot = _account_state(b.check_key_creation(request))
            created = b.now()
            valid_before = b.key_valid_before(snapshot.project, created)
        key_id = secrets.token_hex(20)
        algorithm = request.key_algorithm or types.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048
        private_type = (request.private_key_type
                        or types.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE)
        material = _key_material(snapshot, key_id, algorithm, private_type, created, valid_before)
        with self._lock:
            account, key = b.add_key(request, key_id, material, created)
            # The one answer that carries the private key; nothing here keeps it.
            return _key_message(account, key, private_key_type=private_type,
                                private_key_data=material.private_key_data)

    def _system_key_material(self, account: _Account, key: _Key) -> None:
        # Made on first request, under the lock (rare: only Get with a public key type).
        # The private half is dropped here as well: Google never hands it out.
        material = _key_material(_account_state(account), key.key_id, key.algorithm,
                                     types.ServiceAccountPrivateKeyType.TYPE_GOOGLE_CREDENTIALS_FILE,
                                     key.created, key.valid_before)
        key.certificate, key.public_key = material.certificate, material.public_key

