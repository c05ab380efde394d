"""The fault matrix (issue 7): each operation on each provider is run once cleanly, which
counts its cloud calls N; then, for every call k in 1..N, it is run again on a fresh cloud
with a failure at call k (an SDK exception that is not retried, and separately a hard
stop: ``Killed``, a BaseException no handler in the tool catches, so nothing after that
call runs), followed by a rerun (and ``recover`` for rotation). Each time the end state
must equal the clean run's, no credential may exist only in the cloud, the decoy without
our marker must be untouched, and the audit log must verify.

Used by ``tests/test_fault_matrix.py`` (a stride through the points, to keep CI short) and
``benchmarks/fault_matrix.py`` (every point, with figures).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workload_ids.audit import open_store
from workload_ids.calls import TRANSIENT, CallSeam, FailAt, Killed, RetryPolicy
from workload_ids.clock import format_time
from workload_ids.config import load_config
from workload_ids.providers.interface import LEASE

OPERATIONS = ("apply-create", "apply-mover", "rotate", "cleanup-quarantine", "cleanup-delete", "restore",
              # the same with the audit trail in the cloud's append-only sink (audit.sink): its
              # calls (the key, the lock check, the anchor, each record) are fault points too
              "apply-create+sink", "cleanup-delete+sink")
SINK = "+sink"
PROVIDERS = ("aws", "gcp", "azure")
KINDS = ("exception", "kill")
OWNERS = """\
owners:
  - {id: team-a, kind: group, active: true, members: [bob]}
  - {id: bob, kind: person, active: true}
  - {id: alice, kind: person, active: false}
"""
CONFIG = ("owners: {source: file, path: owners.yaml}\naudit: {path: audit.jsonl}\n"
          "cleanup: {grace: 7d, minAge: 1h, maxShare: 1, maxActions: 100}\n"
          "credentials: {verify: {interval: 0s}}\n"
          # the manifests' trust roots (benchmarks/ imports this module without conftest)
          'trust: {allowedGithubOwners: [acme], gcpProjectNumbers: {acme-prod: 123456789012}, '
          'allowedIssuers: ["https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7"]}\n')
NAME = "svc-f"


# --- the clouds ----------------------------------------------------------------------------

@dataclass
class Cloud:
    """One provider on a fresh local cloud: its config block, manifests, and the decoy
    (our naming, no marker) that must never change."""

    provider: str
    target: str
    config: str
    keyless: Callable[[str, str], str]  # (name, owner) -> manifest
    mover_entry: str  # an access entry of ``keyless`` the mover removes
    key_mode: Callable[[str, str], str]
    decoy: Callable[[], Any]  # the decoy's state, read through the SDK
    # Makes an append-only audit sink on this cloud; returns how to edit the config to use it.
    sink: Callable[[], Callable[[str], str]] = lambda: lambda text: text


def _use_sink(config: str, url: str, key: str, gcp_storage: str | None = None) -> str:
    """``config`` with the audit trail in the sink ``url`` (signed with ``key``) instead of
    the local file."""
    text = config.replace("audit: {path: audit.jsonl}\n",
                          f"audit: {{sink: {{url: '{url}', signingKey: '{key}'}}}}\n")
    if gcp_storage:
        text = text.replace("gcp:\n", f"gcp:\n  storageEndpoint: '{gcp_storage}'\n", 1)
    return text


@contextlib.contextmanager
def fresh_cloud(provider: str) -> Iterator[Cloud]:
    if provider == "aws":
        yield from _aws()
    elif provider == "gcp":
        yield from _gcp()
    else:
        yield from _azure()


def _aws() -> Iterator[Cloud]:
    import boto3

    from workload_ids.sandbox.aws import in_process_aws

    from .aws import KEY_MODE, seed, workload
    with in_process_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        seed(iam)
        iam.create_role(RoleName="wid_prod_decoy", Path="/workload-ids/",
                        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
                        Tags=[{"Key": "workload-ids:workload", "Value": "decoy"}])
        queue = "arn:aws:sqs:eu-west-1:123456789012:{name}"
        read = f"    - template: queue.consume\n      resources: [{queue}]\n"
        extra = f"    - template: queue.publish\n      resources: [{queue}-out]\n"

        def keyless(name: str, owner: str) -> str:
            return workload(name, access=(read + extra).format(name=name), owner=owner)

        def key_mode(name: str, owner: str) -> str:
            return KEY_MODE.replace("vendor-sync", name).replace("owner: team-a", f"owner: {owner}")

        def decoy() -> Any:
            role = iam.get_role(RoleName="wid_prod_decoy")["Role"]
            return {"tags": role.get("Tags"), "trust": role["AssumeRolePolicyDocument"],
                    "policies": iam.list_role_policies(RoleName="wid_prod_decoy")["PolicyNames"]}
        def sink() -> Callable[[str], str]:
            from workload_ids.signing import new_key_material
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket="acme-audit", ObjectLockEnabledForBucket=True)
            s3.put_object_lock_configuration(Bucket="acme-audit", ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
            boto3.client("secretsmanager", region_name="us-east-1").create_secret(
                Name="workload-ids/audit-key", SecretString=new_key_material())
            return lambda text: _use_sink(text, "s3://acme-audit/wid", "workload-ids/audit-key")
        yield Cloud("aws", "123456789012", "", keyless, extra.format(name=NAME), key_mode, decoy, sink)


def _gcp() -> Iterator[Cloud]:
    from workload_ids.sandbox.gcp.local import start_local_gcp

    from .gcp import KEY_MODE, gcp_workload
    local = start_local_gcp()
    iam = local.emulators[0]
    try:
        client = iam.client() if hasattr(iam, "client") else None
        if client is None:  # pragma: no cover - the emulator always offers a client
            raise RuntimeError("no IAM client")
        client.create_service_account(request={
            "name": "projects/acme-prod", "account_id": "wid-prod-decoy-000000",
            "service_account": {"description": "made by hand", "display_name": "decoy"}})
        decoy_name = ("projects/acme-prod/serviceAccounts/"
                      "wid-prod-decoy-000000@acme-prod.iam.gserviceaccount.com")
        _visible(lambda: client.get_service_account(name=decoy_name))  # GCP propagates new accounts
        read = "    - template: object-storage.read\n      resources: [projects/_/buckets/{name}-in]\n"
        extra = "    - template: topic.publish\n      resources: [projects/acme-prod/topics/{name}-out]\n"

        def keyless(name: str, owner: str) -> str:
            return gcp_workload(name=name, access=(read + extra).format(name=name), owner=owner)

        def key_mode(name: str, owner: str) -> str:
            return KEY_MODE.replace("vendor-sync", name).replace("owner: team-platform", f"owner: {owner}")

        def decoy() -> Any:
            account = client.get_service_account(name=decoy_name)
            keys = client.list_service_account_keys(request={"name": decoy_name, "key_types": [1]})
            return {"description": account.description, "display": account.display_name,
                    "disabled": account.disabled, "keys": len(keys.keys),
                    "policy": str(client.get_iam_policy(request={"resource": decoy_name}).bindings)}
        def sink() -> Callable[[str], str]:
            from workload_ids.sandbox.gcp.storage import StorageEmulator
            from workload_ids.signing import new_key_material
            storage = StorageEmulator()
            local.emulators.append(storage)  # stopped with the rest
            storage.start()
            storage.create_bucket("acme-audit", retention_seconds=86400)
            secrets = local.emulators[2].client()
            secrets.create_secret(request={"parent": "projects/acme-audit", "secret_id": "audit-key",
                                           "secret": {"replication": {"automatic": {}}}})
            secrets.add_secret_version(request={"parent": "projects/acme-audit/secrets/audit-key",
                                                "payload": {"data": new_key_material().encode()}})
            return lambda text: _use_sink(text, "gs://acme-audit/wid",
                                          "projects/acme-audit/secrets/audit-key", storage.url)
        yield Cloud("gcp", "acme-prod", local.config_block(), keyless, extra.format(name=NAME), key_mode,
                    decoy, sink)
    finally:
        local.stop()


def _visible(read: Callable[[], Any], seconds: float = 10.0) -> None:
    import time

    from google.api_core import exceptions as gx
    deadline = time.monotonic() + seconds
    while True:
        try:
            read()
            return
        except gx.NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _azure() -> Iterator[Cloud]:
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.msi import ManagedServiceIdentityClient

    from workload_ids.sandbox.azure.arm import StaticTokenCredential
    from workload_ids.sandbox.azure.local import start_local_azure

    from .azure import BASE, KEY_MODE, RG, SUB, azure_workload
    local = start_local_azure()
    try:
        kwargs = local.arm.client_kwargs()
        msi = ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **kwargs)
        authz = AuthorizationManagementClient(StaticTokenCredential(), SUB, **kwargs)
        made = msi.user_assigned_identities.create_or_update(RG, "wid-prod-decoy", {
            "location": "westeurope", "tags": {"workload-ids:workload": "decoy"}})
        account = f"{BASE}/Microsoft.Storage/storageAccounts/acmeorders/blobServices/default/containers"
        read = f"    - template: object-storage.read\n      resources: [{account}/{{name}}-in]\n"
        topics = f"{BASE}/Microsoft.ServiceBus/namespaces/acme-orders/topics"
        extra = f"    - template: topic.publish\n      resources: [{topics}/{{name}}-out]\n"

        def keyless(name: str, owner: str) -> str:
            text = azure_workload(name=name, access=(read + extra).format(name=name))
            return text.replace("owner: team-payments", f"owner: {owner}")

        def key_mode(name: str, owner: str) -> str:
            return KEY_MODE.replace("vendor-sync", name).replace("owner: team-payments", f"owner: {owner}")

        def decoy() -> Any:
            identity = msi.user_assigned_identities.get(RG, "wid-prod-decoy")
            assigned = [a.name for a in authz.role_assignments.list_for_subscription(
                filter=f"principalId eq '{made.principal_id}'")]
            federated = [c.name for c in msi.federated_identity_credentials.list(RG, "wid-prod-decoy")]
            return {"tags": identity.tags, "assigned": assigned, "federated": federated}
        def sink() -> Callable[[str], str]:
            from azure.keyvault.secrets import SecretClient

            from workload_ids.signing import new_key_material
            local.blob.set_immutability_policy("audit", 1)
            vault = local.settings["keyVaultUrl"]
            SecretClient(vault, StaticTokenCredential(), **local.vault.client_kwargs()).set_secret(
                "audit-signing-key", new_key_material())
            return lambda text: _use_sink(text, local.blob.container_url("audit") + "/wid",
                                          f"{vault}/secrets/audit-signing-key")
        yield Cloud("azure", SUB, local.config_block(), keyless, extra.format(name=NAME), key_mode, decoy,
                    sink)
    finally:
        local.stop()


# --- reading the end state ---------------------------------------------------------------

_VOLATILE = ("uniqueId", "principalId", "clientId", "appId", "appObjectId", "created", "lastUsed",
             "immutableId")


def _without_mac(tags: dict[str, str], settings: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A marker's MAC covers the cloud's own id, which differs between two equal runs:
    whether it is valid shows in ``extra`` (``unauthenticated``)."""
    from workload_ids.model import TAG_MAC, Marker
    tags = {k: ("(present)" if k == TAG_MAC else v) for k, v in tags.items()}
    mac = Marker.mac_of_text(settings.get("description"))
    if mac:
        settings = {**settings, "description": settings["description"].replace(mac, "(present)")}
    return tags, settings


def end_state(cloud: Cloud, folder: Path) -> dict[str, Any]:
    """What the cloud holds of ours, read through the backend's fleet read (every identity
    under our naming, its documents, tags and marks) plus each key-mode workload's keys
    and secret versions; values that differ between two equal runs (ids the cloud
    assigns, key ids) are left out. Also checks that no credential exists only in the
    cloud."""
    from workload_ids.clouds import connect
    from workload_ids.validate import validate
    config = load_config()
    seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
    connected = connect(cloud.provider, config, seam)
    state: dict[str, Any] = {}
    for o in connected.identities.observe_scope(cloud.target):
        extra = {k: v for k, v in o.extra.items() if k not in (*_VOLATILE, "objects")}
        tags, settings = _without_mac(dict(o.tags), dict(o.settings))
        state[o.name] = {"kind": o.kind, "tags": tags, "documents": dict(o.documents),
                         "settings": {k: v for k, v in settings.items() if k not in ("clientId", "appId")},
                         "extra": json.loads(json.dumps(extra, default=str))}
    state["deadGrants"] = len(connected.leavers.dead_grants(cloud.target))
    key_files = [p for p in folder.glob("*.yaml") if "mode: key" in p.read_text()]
    if key_files:
        for cw in validate(key_files, config).compiled:
            if not cw.key_mode:  # "mode: key" is also the start of "mode: keyless"
                continue
            assert connected.keys is not None
            keys = connected.keys.list_keys(connected.desired(cw))
            stored = connected.store_for(cw.target).describe(cw.secret_name)
            only_in_cloud = {k.key_id for k in keys} - stored.issued()
            assert not only_in_cloud, f"keys only in the cloud: {only_in_cloud}"
            current = stored.current_key()
            state[f"keys:{cw.name}"] = {
                "statuses": sorted(k.status for k in keys),
                "current": None if current is None else next(
                    (k.status for k in keys if k.key_id == current), "missing"),
                "stages": sorted(sorted(s) for s in stored.versions.values())}
    return state


# --- the operations ----------------------------------------------------------------------

@dataclass
class Step:
    """One operation, prepared in a fresh folder: ``run`` is what the fault hits,
    ``rerun`` what a user does next."""

    run: Callable[[CallSeam], Any]
    rerun: Callable[[], Any]


def _env_clock(moment: datetime) -> None:
    os.environ["WORKLOAD_IDS_CLOCK"] = format_time(moment)


def _seam() -> CallSeam:
    return CallSeam(RetryPolicy(), sleep=lambda s: None)


def _apply(folder: Path, seam: CallSeam) -> Any:
    from workload_ids.apply import apply_plan
    from workload_ids.plan import build_plan
    from workload_ids.validate import validate
    config = load_config()
    checked = validate([folder], config)
    checked.raise_for_errors()
    result = apply_plan(build_plan(checked.compiled, config, seam), concurrency=1)
    if not result.ok:
        raise RuntimeError(f"apply failed: {[r.error for r in result.results if r.error]}")
    return result


def _rotate(folder: Path, seam: CallSeam, *, recover_only: bool = False) -> Any:
    from workload_ids.keys.fleet import rotate_workloads
    from workload_ids.validate import validate
    config = load_config()
    return rotate_workloads(validate([folder], config).compiled, config, seam, recover_only=recover_only)


def _cleanup(folder: Path, seam: CallSeam) -> Any:
    from workload_ids.cleanup.workflow import cleanup
    return cleanup([folder], load_config(), seam, apply=True, delete_with_local_audit=True)


def _restore(identity: str, seam: CallSeam) -> Any:
    from workload_ids.cleanup.restore import restore
    return restore(identity, load_config(), seam)


def prepare(operation: str, cloud: Cloud, folder: Path, start: datetime) -> Step:
    """Bring a fresh cloud to the point just before ``operation``; return it and its rerun."""
    manifests = folder / "manifests"
    manifests.mkdir()
    path = manifests / f"{NAME}.yaml"
    _env_clock(start)
    if operation == "apply-create":
        path.write_text(cloud.keyless(NAME, "team-a"))
        return Step(lambda seam: _apply(manifests, seam), lambda: _apply(manifests, _seam()))
    if operation == "apply-mover":
        path.write_text(cloud.keyless(NAME, "team-a"))
        _apply(manifests, _seam())
        path.write_text(path.read_text().replace(cloud.mover_entry, ""))
        return Step(lambda seam: _apply(manifests, seam), lambda: _apply(manifests, _seam()))
    if operation == "rotate":
        path.write_text(cloud.key_mode(NAME, "team-a"))
        _apply(manifests, _seam())
        _env_clock(start + timedelta(days=31))

        def rerun() -> None:
            # A run killed holding the workload's lock leaves it held, as a dead process
            # does: the user's rerun proceeds once its lease has run out.
            _env_clock(start + timedelta(days=31) + LEASE + timedelta(seconds=1))
            _rotate(manifests, _seam(), recover_only=True)
            _rotate(manifests, _seam())
        return Step(lambda seam: _rotate(manifests, seam), rerun)
    path.write_text(cloud.keyless(NAME, "alice"))
    _apply(manifests, _seam())
    _env_clock(start + timedelta(hours=2))
    if operation == "cleanup-quarantine":
        return Step(lambda seam: _cleanup(manifests, seam), lambda: _cleanup(manifests, _seam()))
    _cleanup(manifests, _seam())
    _env_clock(start + timedelta(hours=2, days=8))
    if operation == "cleanup-delete":
        return Step(lambda seam: _cleanup(manifests, seam), lambda: _cleanup(manifests, _seam()))
    report = _cleanup(manifests, _seam())
    [deleted] = [f.identity.name for f in report.findings if f.action == "delete"]
    return Step(lambda seam: _restore(deleted, seam), lambda: _restore(deleted, _seam()))


# --- the matrix ----------------------------------------------------------------------------

@dataclass
class Outcome:
    provider: str
    operation: str
    calls: int = 0
    points: int = 0
    divergences: list[str] = field(default_factory=list)


def _in_fresh_dir(cloud_name: str, operation: str, start: datetime,
                  fault: tuple[int, str] | None, *, storm: Any = None,
                  seams: list[CallSeam] | None = None,
                  rerun: bool = True) -> tuple[int, dict[str, Any], Any, Any]:
    """One run on a fresh cloud in a fresh folder: (calls of the operation, end state,
    the decoy before, the decoy after). With ``storm`` (a seam fault), the operation runs
    with retries under it and must succeed; its seam is appended to ``seams``."""
    from workload_ids.cli import main
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="wid-faults-") as tmp, fresh_cloud(cloud_name) as cloud:
        os.chdir(tmp)
        try:
            Path("owners.yaml").write_text(OWNERS)
            config = cloud.config + CONFIG
            if operation.endswith(SINK):
                config = cloud.sink()(config)
            Path("workload-ids.yaml").write_text(config)
            decoy_before = cloud.decoy()
            step = prepare(operation.removesuffix(SINK), cloud, Path(tmp), start)
            if storm is not None:
                seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
                seam.inject(storm)
                step.run(seam)  # must succeed within its retry budget
                if seams is not None:
                    seams.append(seam)
            else:
                seam = CallSeam(RetryPolicy(max_attempts=1), sleep=lambda s: None)
                if fault is not None:
                    k, kind = fault
                    seam.inject(FailAt(k, "kill" if kind == "kill" else TRANSIENT))
                with contextlib.suppress(Killed, Exception):  # the failure is the point
                    step.run(seam)
            calls = seam.stats.total
            if fault is not None and rerun:
                step.rerun()
            state = end_state(cloud, Path(tmp) / "manifests")
            with contextlib.redirect_stdout(None), contextlib.redirect_stderr(None):  # type: ignore[type-var]
                kept = Path("audit.jsonl").exists() or operation.endswith(SINK)
                audit = main(["audit", "verify", "--drill"]) if kept else 0
            state["auditVerifies"] = audit == 0
            if operation.endswith(SINK):
                state["auditDoubled"] = _doubled(open_store(load_config()).records())
            return calls, state, decoy_before, cloud.decoy()
        finally:
            os.chdir(previous)
            os.environ.pop("WORKLOAD_IDS_CLOCK", None)


def _doubled(records: Any) -> list[str]:
    """Records stored twice (the same change, whatever their time): a rerun after a crash
    must never record again what was recorded."""
    seen: set[str] = set()
    doubled = []
    for r in records:
        what = json.dumps({k: v for k, v in r.items()
                           if k not in ("time", "seq", "prev", "hash", "sig", "keyId")}, sort_keys=True)
        if what in seen:
            doubled.append(f"{r.get('action')} {r.get('identity')}")
        seen.add(what)
    return doubled


def run_matrix(provider: str, operation: str, *, stride: int = 1, kinds: tuple[str, ...] = KINDS,
               alternate: bool = False, progress: Callable[[str], None] | None = None) -> Outcome:
    """Every ``stride``-th fault point of one operation on one provider, with each kind
    (or, ``alternate``, one kind per point in turn)."""
    # A little ahead of the cloud's own clock: the emulators read the tool's clock too, and
    # an account created after "now" would not be visible yet.
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    calls, clean, decoy_before, decoy_after = _in_fresh_dir(provider, operation, start, None)
    outcome = Outcome(provider, operation, calls)
    if decoy_after != decoy_before:
        outcome.divergences.append("clean run: the decoy changed")
    if not clean["auditVerifies"]:
        outcome.divergences.append("clean run: the audit log does not verify")
    for index, k in enumerate(range(1, calls + 1, stride)):
        for kind in (kinds[index % len(kinds)],) if alternate else kinds:
            outcome.points += 1
            try:
                _, state, before, after = _in_fresh_dir(provider, operation, start, (k, kind))
            except AssertionError as exc:
                outcome.divergences.append(f"{kind} at call {k}: {exc}")
                continue
            if after != before:
                outcome.divergences.append(f"{kind} at call {k}: the decoy changed")
            if state != clean:
                diff = sorted(key for key in {*state, *clean} if state.get(key) != clean.get(key))
                outcome.divergences.append(f"{kind} at call {k}: end state differs in {diff}")
            if progress:
                progress(f"{provider} {operation} {kind}@{k}")
    return outcome


@dataclass
class StormOutcome:
    provider: str
    operation: str
    calls: int
    retries: int
    failures: dict[str, int]
    same_end_state: bool


def run_storm(provider: str, operation: str, *, throttle: float = 0.30, transient: float = 0.05,
              seed: int = 7) -> StormOutcome:
    """One operation under a seeded storm (``throttle`` of calls throttled, ``transient``
    failing with a 5xx): it must succeed and end where the clean run ends."""
    from workload_ids.calls import RandomFaults
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    _, clean, _, _ = _in_fresh_dir(provider, operation, start, None)
    seams: list[CallSeam] = []
    _, state, before, after = _in_fresh_dir(provider, operation, start, None,
                                            storm=RandomFaults(throttle, transient, seed), seams=seams)
    [seam] = seams
    return StormOutcome(provider, operation, seam.stats.total, sum(seam.stats.retries.values()),
                        dict(seam.stats.failures), state == clean and before == after)
