"""Real runs of every AWS command against moto, with each cloud call the tool makes
recorded per identity (apply, rotate, cleanup, restore, discover): what `workload-ids bootstrap`
must allow, and all it may allow."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from workload_ids import calls
from workload_ids.clock import format_time

from .aws import PAYMENTS, workload
from .cli import run_cli
from .trust import TEST_TRUST

ACCOUNT = "123456789012"
KEY_MODE = workload(
    "vendor-sync",
    access="    - template: object-storage.write\n      resources: [arn:aws:s3:::acme-vendor-drop]\n",
).replace(
    "  credentials:\n    mode: keyless\n    federation:\n      - kind: github-actions\n"
    "        repository: acme/vendor-sync\n        ref: refs/heads/main\n",
    "  credentials:\n    mode: key\n    rotation: {maxAge: 30d, overlap: 2d, grace: 7d}\n")
OWNERS = ("owners:\n  - {id: bob, kind: person, active: true}\n"
          "  - {id: team-a, kind: group, active: true, members: [bob]}\n"
          "  - {id: team-payments, kind: group, active: true, members: [bob]}\n")
CONFIG = ("owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
          "cleanup: {grace: 7d, minAge: 1h, maxShare: 1}\ncredentials: {verify: {interval: 0s}}\n")


@dataclass(frozen=True)
class Call:
    """One attempted call: the IAM action it needs and the request context it carries."""

    identity: str
    service: str
    operation: str  # the API name, e.g. CreateRole
    params: dict[str, Any]
    entity: dict[str, Any] | None  # the role/user/secret named, as it was before the call


@dataclass
class Recorder:
    """Records every seam call while ``identity`` is set."""

    iam: Any
    sm: Any
    identity: str = ""
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, record: calls.CallRecord) -> None:
        if record.provider != "aws" or not self.identity:
            return
        service, _, method = record.operation.partition(".")
        api = _api_name(service, method)
        entity = self._entity(service, record.params)
        with self._lock:
            self.calls.append(Call(self.identity, service, api, dict(record.params), entity))

    def _entity(self, service: str, params: dict[str, Any]) -> dict[str, Any] | None:
        try:
            if service == "iam" and "RoleName" in params:
                role = self.iam.get_role(RoleName=params["RoleName"])["Role"]
                return {"arn": role["Arn"], "tags": _tags(role.get("Tags")),
                        "boundary": (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")}
            if service == "iam" and "UserName" in params:
                user = self.iam.get_user(UserName=params["UserName"])["User"]
                return {"arn": user["Arn"], "tags": _tags(user.get("Tags")),
                        "boundary": (user.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")}
            if service == "iam" and "AccessKeyId" in params:
                for user in self.iam.list_users()["Users"]:
                    for key in self.iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]:
                        if key["AccessKeyId"] == params["AccessKeyId"]:
                            full = self.iam.get_user(UserName=user["UserName"])["User"]
                            return {"arn": full["Arn"], "tags": _tags(full.get("Tags")), "boundary": None}
            if service == "secretsmanager" and "SecretId" in params:
                doc = self.sm.describe_secret(SecretId=params["SecretId"])
                return {"arn": doc["ARN"], "tags": _tags(doc.get("Tags"))}
        except Exception:  # gone or not yet there: the call names it all the same
            return None
        return None

    @contextmanager
    def acting_as(self, identity: str) -> Iterator[None]:
        self.identity = identity
        try:
            yield
        finally:
            self.identity = ""


def _tags(items: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


_NAMES: dict[str, dict[str, str]] = {}


def _api_name(service: str, method: str) -> str:
    """boto3's method name -> the API operation (IAM action) name, from botocore's model."""
    if service not in _NAMES:
        import boto3
        client = boto3.client(service, region_name="us-east-1")
        _NAMES[service] = dict(client.meta.method_to_api_mapping)
    return _NAMES[service][method]


def _at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", format_time(when))


def run_all_flows(aws: Any, manifests: Any, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """apply (create, converge drift, fleet and per-file), rotate through a whole key
    cycle, cleanup (quarantine, release, delete with teardown of every attachment kind),
    restore; each under its identity."""
    import boto3
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    recorder = Recorder(aws, sm)
    calls.CALL_HOOKS.append(recorder)
    try:
        _flows(recorder, aws, manifests, monkeypatch)
    finally:
        calls.CALL_HOOKS.remove(recorder)
    return recorder


def _ok(result: Any) -> None:
    assert result.code == 0, result.out[-2000:] + result.err[-2000:]


def _flows(rec: Recorder, iam: Any, manifests: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG + TEST_TRUST)
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    _at(monkeypatch, start)
    folder = manifests({"payments.yaml": PAYMENTS, "vendor.yaml": KEY_MODE,
                        "svc-a.yaml": workload("svc-a"), "svc-b.yaml": workload("svc-b")})
    with rec.acting_as("apply"):
        _ok(run_cli("plan", str(folder)))
        _ok(run_cli("apply", "--auto-approve", str(folder)))
        # Drift of every kind apply converges, then per-file and fleet runs.
        iam.put_role_policy(RoleName="wid_prod_payments-api", PolicyName="foreign",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))
        foreign = iam.create_policy(PolicyName="foreign-managed", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))["Policy"]["Arn"]
        iam.attach_role_policy(RoleName="wid_prod_payments-api", PolicyArn=foreign)
        iam.create_group(GroupName="foreign-group")
        iam.add_user_to_group(GroupName="foreign-group", UserName="wid_prod_vendor-sync")
        iam.put_user_policy(UserName="wid_prod_vendor-sync", PolicyName="foreign",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))
        iam.attach_user_policy(UserName="wid_prod_vendor-sync", PolicyArn=foreign)
        changed = PAYMENTS.replace("Public payments API", "Public payments API v2").replace(
            "ref: refs/heads/main", "ref: refs/heads/release").replace("dynamodb:Query", "dynamodb:Scan")
        (folder / "payments.yaml").write_text(changed)
        (folder / "vendor.yaml").write_text(KEY_MODE.replace("acme-vendor-drop", "acme-vendor-drop2"))
        _ok(run_cli("apply", "--auto-approve", str(folder / "payments.yaml"), str(folder / "vendor.yaml")))
        iam.put_role_policy(RoleName="wid_prod_payments-api", PolicyName="foreign",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))
        iam.update_assume_role_policy(RoleName="wid_prod_svc-a", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "ec2.amazonaws.com"}}]}))
        _ok(run_cli("apply", "--auto-approve", str(folder)))
        _ok(run_cli("plan", "--detailed-exitcode", str(folder)))
    with rec.acting_as("rotate"):
        for days in (10, 30.5, 31.5, 32.6, 39.7):
            _at(monkeypatch, start + timedelta(days=days))
            _ok(run_cli("rotate", str(folder)))
            _ok(run_cli("rotate", str(folder / "vendor.yaml")))
        _ok(run_cli("rotate", "--now", "vendor-sync", str(folder)))
        _ok(run_cli("recover", str(folder)))
        _ok(run_cli("lint", "--cloud", str(folder)))
        _ok(run_cli("inventory", str(folder)))
    later = start + timedelta(days=40)
    _at(monkeypatch, later)
    # Everything a teardown may meet on a user and a role (added by someone else).
    iam.create_login_profile(UserName="wid_prod_vendor-sync", Password="Correct-Horse-1!")
    mfa = iam.create_virtual_mfa_device(VirtualMFADeviceName="vendor-mfa")["VirtualMFADevice"]
    iam.enable_mfa_device(UserName="wid_prod_vendor-sync", SerialNumber=mfa["SerialNumber"],
                          AuthenticationCode1="123456", AuthenticationCode2="654321")
    iam.create_instance_profile(InstanceProfileName="svc-a-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="svc-a-profile", RoleName="wid_prod_svc-a")
    (folder / "vendor.yaml").unlink()
    (folder / "svc-a.yaml").unlink()
    (folder / "svc-b.yaml").unlink()
    (folder / "payments.yaml").unlink()
    (folder / "keep.yaml").write_text(workload("keep"))
    with rec.acting_as("apply"):
        _ok(run_cli("apply", "--auto-approve", str(folder)))
    with rec.acting_as("cleanup"):
        _ok(run_cli("cleanup", str(folder)))
        _ok(run_cli("cleanup", "--apply", str(folder)))  # quarantine
        _ok(run_cli("inventory", str(folder)))
    (folder / "payments.yaml").write_text(PAYMENTS)
    with rec.acting_as("cleanup"):
        _ok(run_cli("cleanup", "--apply", str(folder)))  # payments-api is declared again: release
    _at(monkeypatch, later + timedelta(days=8))
    with rec.acting_as("cleanup"):
        _ok(run_cli("cleanup", "--apply", "--delete-with-local-audit", str(folder)))  # past grace: delete
    assert "wid_prod_vendor-sync" not in {u["UserName"] for u in iam.list_users()["Users"]}
    with rec.acting_as("restore"):
        _ok(run_cli("restore", "wid_prod_vendor-sync"))
        _ok(run_cli("restore", "wid_prod_svc-b"))
        _ok(run_cli("restore", "wid_prod_vendor-sync"))  # a rerun converges what exists
        # A rerun after the next cleanup quarantined it again: the mark and deny are lifted.
    with rec.acting_as("cleanup"):
        _ok(run_cli("cleanup", "--apply", str(folder)))
    with rec.acting_as("restore"):
        _ok(run_cli("restore", "wid_prod_svc-b"))
    _discover_flow(rec, iam, folder.parent)


def _discover_flow(rec: Recorder, iam: Any, base: Path) -> None:
    """discover over the account (a hand-made user with a key, a hand-made role with an
    inline and an attached policy beside ours), and adopt of that role without --apply."""
    iam.create_user(UserName="legacy-bot")
    iam.create_access_key(UserName="legacy-bot")
    role = iam.create_role(RoleName="Legacy.Reader", Path="/legacy/", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                  "Principal": {"Service": "lambda.amazonaws.com"},
                                                  "Condition": {"StringEquals": {
                                                      "aws:SourceAccount": ACCOUNT}}}]}))["Role"]["Arn"]
    read = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["dynamodb:GetItem"],
         "Resource": [f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/legacy"]}]}
    iam.put_role_policy(RoleName="Legacy.Reader", PolicyName="reads", PolicyDocument=json.dumps(read))
    managed = iam.create_policy(PolicyName="legacy-reads", PolicyDocument=json.dumps(read))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="Legacy.Reader", PolicyArn=managed)
    with rec.acting_as("discover"):
        _ok(run_cli("discover", "--output", "json"))
        _ok(run_cli("adopt", role, "--out", str(base / "adopted"), "--owner", "team-a"))
    # adopt --apply is an administrator's (not recorded); then the apply identity plans the
    # adopted role, alone (read whole) and in a fleet (the batch).
    _ok(run_cli("adopt", role, "--out", str(base / "marked"), "--owner", "team-a", "--apply"))
    with rec.acting_as("apply"):
        manifest = next((base / "marked").iterdir())
        _ok(run_cli("plan", "--detailed-exitcode", str(manifest)))
        _ok(run_cli("plan", "--detailed-exitcode", str(base / "marked")))
