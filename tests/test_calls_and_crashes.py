"""The call seam (counting, faults, retries) and crash safety of apply: a failure or a
hard kill at any call, followed by a rerun, converges to the clean run's state."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from support.aws import PAYMENTS, snapshot, workload

from workload_ids.apply import apply_plan
from workload_ids.calls import (
    CallSeam,
    EventuallyConsistent,
    FailAt,
    FailOperation,
    Killed,
    RandomFaults,
    RetryPolicy,
)
from workload_ids.config import load_config
from workload_ids.errors import CloudError
from workload_ids.plan import build_plan
from workload_ids.validate import validate


def _seam(**retry: Any) -> CallSeam:
    return CallSeam(RetryPolicy(**retry) if retry else RetryPolicy(), seed=7, sleep=lambda s: None)


def run_apply(paths: list[Path], seam: CallSeam) -> Any:
    config = load_config()
    checked = validate(paths, config)
    checked.raise_for_errors()
    plan = build_plan(checked.compiled, config, seam)
    return apply_plan(plan, concurrency=1)


def test_seam_counts_and_retries_throttling():
    seam = _seam(max_attempts=4)
    from workload_ids.providers.aws.clients import classify, make_fault
    seam.register("aws", classify, make_fault)
    seam.inject(FailOperation("iam.get_role", "throttle", times=2))
    assert seam.call("aws", "iam.get_role", lambda **kw: "ok", RoleName="x") == "ok"
    assert seam.stats.calls["aws:iam.get_role"] == 3
    assert seam.stats.retries["aws:iam.get_role"] == 2
    assert seam.stats.failures["throttle"] == 2


def test_seam_gives_up_after_max_attempts_and_does_not_retry_denied():
    from botocore.exceptions import ClientError

    from workload_ids.providers.aws.clients import classify, make_fault
    seam = _seam(max_attempts=3)
    seam.register("aws", classify, make_fault)
    seam.inject(FailOperation("iam.get_role", "transient"))
    with pytest.raises(ClientError):
        seam.call("aws", "iam.get_role", lambda **kw: "ok")
    assert seam.stats.calls["aws:iam.get_role"] == 3
    seam.faults.clear()
    seam.inject(FailOperation("iam.put_role_policy", "denied"))
    with pytest.raises(ClientError):
        seam.call("aws", "iam.put_role_policy", lambda **kw: "ok")
    assert seam.stats.calls["aws:iam.put_role_policy"] == 1


@pytest.mark.parametrize(("kind", "attempts"), [("not-found", 1), ("denied", 1), ("conflict", 1),
                                               ("throttle", 3), ("transient", 3)])
def test_a_translating_seam_lets_failures_out_as_cloud_errors_of_their_kind(kind: str,
                                                                          attempts: int) -> None:
    """With register(translate=True) the code above the seam sees CloudError.kind, never
    an SDK exception: the SDK's own exception (as moto's boto3 raises it) is the cause."""
    from botocore.exceptions import ClientError

    from workload_ids.providers.aws.clients import classify, make_fault
    seam = _seam(max_attempts=3)
    seam.register("aws", classify, make_fault, translate=True)
    seam.inject(FailOperation("iam.get_role", kind))
    with pytest.raises(CloudError) as caught:
        seam.call("aws", "iam.get_role", lambda **kw: "ok", RoleName="x")
    assert caught.value.kind == kind and caught.value.operation == "iam.get_role"
    assert isinstance(caught.value.__cause__, ClientError)
    assert seam.stats.calls["aws:iam.get_role"] == attempts
    # An exception no classifier knows is a bug, not a cloud error: it passes unchanged.
    with pytest.raises(ZeroDivisionError):
        seam.call("aws", "iam.list_roles", lambda: 1 / 0)
    # Registering again without translate turns it off (every site must say the same).
    seam.register("aws", classify, make_fault)
    with pytest.raises(ClientError):
        seam.call("aws", "iam.get_role", lambda **kw: "ok", RoleName="x")


def _register_provider(seam: CallSeam) -> None:
    from workload_ids.providers.aws.clients import AwsClients
    AwsClients(load_config(), seam)


def _register_sink(seam: CallSeam) -> None:
    from workload_ids.audit.sink import _register
    _register(seam, "aws")


def _register_audit_key(seam: CallSeam) -> None:
    from workload_ids.audit.keys import _register_aws
    _register_aws(seam)


@pytest.mark.parametrize("register", [_register_provider, _register_sink, _register_audit_key],
                         ids=["provider", "audit-sink", "audit-key"])
def test_every_registration_of_aws_translates(register: Any) -> None:
    """Whichever part registers "aws" last decides for the whole seam: the AWS code decides
    by CloudError kind, so one registration without translation would let a ClientError
    through that no ``except CloudError`` catches (a missing role read as a crash)."""
    from botocore.exceptions import ClientError
    seam = _seam(max_attempts=2)
    register(seam)
    seam.inject(FailOperation("iam.get_role", "not-found"))
    with pytest.raises(CloudError) as caught:
        seam.call("aws", "iam.get_role", lambda **kw: "ok", RoleName="x")
    assert (caught.value.kind, caught.value.code) == ("not-found", "NoSuchEntity")
    assert isinstance(caught.value.__cause__, ClientError)


def _register_gcp_clients(seam: CallSeam) -> None:
    # The clients of the GCP backends, bootstrap and the audit key reader.
    from workload_ids.providers.gcp.clients import GcpClients
    GcpClients(load_config(), seam)


def _register_gcs_sink(seam: CallSeam) -> None:
    from workload_ids.audit.sink import _register
    _register(seam, "gcp")


@pytest.mark.parametrize("register", [_register_gcp_clients, _register_gcs_sink],
                         ids=["clients", "audit-sink"])
def test_every_registration_of_gcp_translates(register: Any) -> None:
    """As for "aws": the GCP code decides by CloudError kind, so one registration of "gcp"
    without translation would let a google.api_core exception through that no ``except
    CloudError`` catches (a missing service account read as a crash)."""
    from google.api_core import exceptions as gx
    seam = _seam(max_attempts=2)
    register(seam)
    seam.inject(FailOperation("iam.get_service_account", "not-found"))
    with pytest.raises(CloudError) as caught:
        seam.call("gcp", "iam.get_service_account", lambda **kw: "ok", name="x")
    assert (caught.value.kind, caught.value.code) == ("not-found", "NotFound")
    assert caught.value.operation == "iam.get_service_account"
    assert isinstance(caught.value.__cause__, gx.NotFound)


def test_a_gcp_failure_names_the_sdk_operation_and_what_to_do() -> None:
    """The seam's CloudError reaches the user as it left the seam: the operation that
    failed, Google's error class and the hint for its kind."""
    from workload_ids.clouds import connect
    from workload_ids.config import Config, ConfigFile
    config = Config(ConfigFile.model_validate({"gcp": {
        "resourceManagerEndpoint": "http://127.0.0.1:1", "sandboxCredentials": True}}), Path.cwd(), None)
    seam = _seam(max_attempts=1)
    cloud = connect("gcp", config, seam)
    seam.inject(FailOperation("resourcemanager.get_project", "denied"))
    with pytest.raises(CloudError) as caught:
        cloud.identities.verify_target("acme-prod")
    assert caught.value.kind == "denied" and caught.value.operation == "resourcemanager.get_project"
    assert "resourcemanager.get_project failed: PermissionDenied" in caught.value.diagnostics()
    assert "Permissions the tool needs" in caught.value.diagnostics()


def test_an_aws_failure_names_the_sdk_operation_and_what_to_do(aws: Any) -> None:
    """The seam's CloudError reaches the user as it left the seam: the operation that
    failed, AWS's code, and the hint for its kind (no provider-side rewording)."""
    from workload_ids.clouds import connect
    seam = _seam(max_attempts=1)
    cloud = connect("aws", load_config(), seam)
    seam.inject(FailOperation("sts.get_caller_identity", "denied"))
    with pytest.raises(CloudError) as caught:
        cloud.identities.current_target()
    assert caught.value.kind == "denied" and caught.value.operation == "sts.get_caller_identity"
    assert "sts.get_caller_identity failed: AccessDenied" in caught.value.diagnostics()
    assert "Permissions the tool needs" in caught.value.diagnostics()


def test_seam_retry_time_budget_is_bounded():
    from botocore.exceptions import ClientError

    from workload_ids.providers.aws.clients import classify, make_fault
    slept: list[float] = []
    seam = CallSeam(RetryPolicy(max_attempts=50, max_seconds=1.0, base_delay=0.4, max_delay=5),
                    seed=1, sleep=slept.append)
    seam.register("aws", classify, make_fault)
    seam.inject(FailOperation("iam.get_role", "throttle"))
    # The sleep is recorded, not taken, so the elapsed clock barely moves: the budget is
    # enforced against the planned delay.
    with pytest.raises(ClientError):
        seam.call("aws", "iam.get_role", lambda **kw: "ok")
    assert all(d <= 5 for d in slept)
    assert seam.stats.calls["aws:iam.get_role"] < 50


def test_seam_counts_can_be_read_while_other_threads_call():
    """Apply's threads (and lease renewals) call through one seam while a command reads its
    counts; each call here is a new operation, so the Counter grows under the reader."""
    import sys
    import threading
    import time
    seam = CallSeam()
    stop = threading.Event()

    def caller(thread: int) -> None:
        n = 0
        while not stop.is_set():
            seam.call("aws", f"iam.op_{thread}_{n}", lambda: None)
            n += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows at once
    threads = [threading.Thread(target=caller, args=(t,)) for t in range(4)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert seam.stats.by_provider("aws") <= seam.stats.total
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
    assert seam.stats.by_provider("aws") == seam.stats.total > 0


def test_cloud_error_has_no_traceback_and_a_hint(aws, manifests, cli):
    path = manifests({"p.yaml": PAYMENTS}) / "p.yaml"
    seam = _seam(max_attempts=2)
    seam.inject(FailOperation("iam.create_role", "denied"))
    result = run_apply([path], seam)
    assert not result.ok
    assert "AccessDenied" in (result.results[0].error or "")
    assert "lack the permission" in (result.results[0].error or "")
    assert aws.list_roles(PathPrefix="/workload-ids/")["Roles"] == []


def test_an_unexpected_failure_shows_where_it_came_from_with_verbose(aws, manifests, cli):
    from workload_ids import calls

    def surprise(record: Any, result: Any) -> None:
        if record.operation == "iam.create_role":
            raise RuntimeError("a surprise")

    calls.RESULT_HOOKS.append(surprise)
    try:
        folders = manifests({"a/a.yaml": workload("svc-a"), "b/b.yaml": workload("svc-b")})
        quiet = cli("apply", "--auto-approve", str(folders / "a"))
        loud = cli("apply", "--auto-approve", "--verbose", str(folders / "b"))
    finally:
        calls.RESULT_HOOKS.remove(surprise)
    for result, workload_name in ((quiet, "svc-a"), (loud, "svc-b")):
        assert result.code == 1
        assert f"error: prod/{workload_name}: unexpected RuntimeError: a surprise (rerun converges; " \
               "report it with what --verbose prints)" in result.err
    assert "Traceback" not in quiet.err
    assert "Traceback (most recent call last)" in loud.err
    assert 'raise RuntimeError("a surprise")' in loud.err


def _clean_state(aws: Any, paths: list[Path]) -> tuple[dict[str, Any], int]:
    seam = _seam()
    result = run_apply(paths, seam)
    assert result.ok
    state = snapshot(aws)
    for role in state:
        _delete_role(aws, role)
    return state, seam.stats.total


def _delete_role(iam: Any, name: str) -> None:
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    for att in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=att["PolicyArn"])
    iam.delete_role(RoleName=name)


@pytest.mark.parametrize("kind", ["kill", "transient-exhausted"])
def test_create_converges_after_a_failure_at_every_call(aws, manifests, kind):
    folder = manifests({"p.yaml": PAYMENTS, "w.yaml": workload("svc-a")})
    paths = [folder / "p.yaml", folder / "w.yaml"]
    clean, calls = _clean_state(aws, paths)
    assert calls >= 8
    for k in range(1, calls + 1):
        seam = _seam(max_attempts=1)
        seam.inject(FailAt(k, "kill" if kind == "kill" else "transient"))
        with contextlib.suppress(Killed, CloudError):
            run_apply(paths, seam)
        rerun = run_apply(paths, _seam())
        assert rerun.ok, (k, [r.error for r in rerun.results])
        assert snapshot(aws) == clean, f"diverged after a {kind} at call {k}"
        for role in clean:
            _delete_role(aws, role)


def test_mover_converges_after_a_kill_at_every_call(aws, manifests):
    # The mover also hands the workload to another team and back, which the platform team
    # approves in the config (apply never changes an owner on a manifest's word alone).
    with open("workload-ids.yaml", "a", encoding="utf-8") as config:
        config.write("guardrails:\n  approvedTransfers:\n"
                     "    - {workload: prod/payments-api, from: team-payments, to: team-platform, "
                     "reason: \"PLAT-1 platform takes it over\"}\n"
                     "    - {workload: prod/payments-api, from: team-platform, to: team-payments, "
                     "reason: \"PLAT-2 and hands it back\"}\n")
    folder = manifests({"p.yaml": PAYMENTS})
    path = folder / "p.yaml"
    moved = PAYMENTS.replace("ref: refs/heads/main", "environment: production").replace(
        "owner: team-payments", "owner: team-platform").replace(
        "    - template: queue.consume\n      resources:\n"
        "        - arn:aws:sqs:eu-west-1:123456789012:payment-events\n", "")
    assert run_apply([path], _seam()).ok
    path.write_text(moved)
    seam = _seam()
    assert run_apply([path], seam).ok
    target = snapshot(aws)
    calls = seam.stats.total
    for k in range(1, calls + 1):
        path.write_text(PAYMENTS)
        assert run_apply([path], _seam()).ok
        path.write_text(moved)
        seam = _seam(max_attempts=1)
        seam.inject(FailAt(k, "kill"))
        with contextlib.suppress(Killed):
            run_apply([path], seam)
        assert run_apply([path], _seam()).ok
        assert snapshot(aws) == target, f"diverged after a kill at call {k}"


def test_throttling_storm_finishes_with_bounded_retries(aws, manifests):
    folder = manifests({f"w{i}.yaml": workload(f"svc-{i}") for i in range(12)})
    seam = _seam(max_attempts=12)
    seam.inject(RandomFaults(throttle=0.30, transient=0.05, seed=42))
    result = run_apply([folder], seam)
    assert result.ok, [r.error for r in result.results]
    assert len(snapshot(aws)) == 12
    retries = sum(seam.stats.retries.values())
    assert 0 < retries < seam.stats.total
    quiet = _seam()
    config = load_config()
    plan = build_plan(validate([folder], config).compiled, config, quiet)
    assert plan.changes == []


def test_eventual_consistency_after_create(aws, manifests):
    """A role invisible for a while after create_role: the rerun path (create says it
    exists, read says it does not) must not report success on a half-made role."""
    folder = manifests({"p.yaml": PAYMENTS})
    now = [0.0]
    seam = _seam()
    seam.inject(EventuallyConsistent(10.0, clock=lambda: now[0]))
    assert run_apply([folder / "p.yaml"], seam).ok
    assert json.dumps(snapshot(aws)).count("ObjectStorageRead0") == 1
    # Within the lag a plan sees no role; create then meets EntityAlreadyExists and must
    # converge the existing role rather than fail or duplicate it.
    seam2 = _seam()
    lag = EventuallyConsistent(10.0, clock=lambda: now[0])
    lag._created["wid_prod_payments-api"] = 0.0
    seam2.inject(lag)
    config = load_config()
    plan = build_plan(validate([folder / "p.yaml"], config).compiled, config, seam2)
    assert [c.action for c in plan.changes] == ["create"]
    now[0] = 11.0
    assert apply_plan(plan).ok
    assert len(snapshot(aws)) == 1
