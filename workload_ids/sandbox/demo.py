"""``workload-ids demo``: the whole joiner-and-mover loop against an in-process AWS.

No account or credentials: moto runs inside this process and is gone when the demo
ends. The examples are copied to a temporary folder so the mover edit touches nothing
of the installation.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..bundled import bundled_dir

if TYPE_CHECKING:
    from ..cli.console import Output

MOVER_WORKLOAD = "invoice-worker.yaml"
KEY_MODE_WORKLOAD = "partner-feed.yaml"
MOVER_ENTRY = "    - template: metrics.write\n      resources: [Acme/InvoiceWorker]\n"


def example_trust(examples: Path) -> dict[str, object]:
    """The trust roots the examples' own config lists (their issuers, GitHub owner, project)."""
    from ..config import load_config
    return load_config(examples / "workload-ids.yaml").trust.model_dump(exclude_defaults=True)


def _step(out: Output, number: int, title: str) -> None:
    out.text("")
    out.text(f"== {number}. {title}")


def run_demo(out: Output) -> int:
    """Run the tour; return the exit code (0 when every step behaved as shown)."""
    from .. import clock
    # The tour moves the clock (rotation, cleanup's grace) against clouds in this process
    # only: a drill by construction.
    previous = clock.enable_override("drill")
    try:
        return _tour(out)
    finally:
        clock.enable_override(previous)


def _tour(out: Output) -> int:
    from ..apply import apply_plan
    from ..calls import CallSeam
    from ..config import Config, ConfigFile
    from ..plan import build_plan, render_text
    from ..validate import validate
    from .aws import (
        SANDBOX_ACCOUNT,
        in_process_aws,
        seed_boundary,
        seed_oidc_providers,
        seed_signing_key,
    )

    with tempfile.TemporaryDirectory(prefix="workload-ids-demo-") as tmp:
        examples = Path(tmp) / "examples"
        shutil.copytree(bundled_dir("examples"), examples)
        aws_dir = examples / "aws"
        # moto accepts a new key at once; against real AWS keep the 2 s between sign-ins.
        config = Config(ConfigFile.model_validate({"credentials": {"verify": {"interval": "0s"}},
                                                   "trust": example_trust(examples)}),
                        examples, None)
        out.text("workload-ids demo: an in-process AWS (moto), account "
                 f"{SANDBOX_ACCOUNT}; nothing leaves this machine.")
        with in_process_aws():
            seed_oidc_providers()
            # What `workload-ids bootstrap --provider aws --apply` creates once per account.
            seed_boundary()
            seed_signing_key()
            _step(out, 1, "validate every example (AWS, GCP and Azure manifests)")
            checked = validate([examples], config)
            checked.raise_for_errors()
            for cw in checked.compiled:
                out.text(f"   ok  {cw.provider:<5} {cw.label:<32} {len(cw.grants)} grant(s)")

            def plan_aws() -> tuple[object, CallSeam]:
                seam = CallSeam()
                result = validate([aws_dir], config)
                result.raise_for_errors()
                return build_plan(result.compiled, config, seam, fleet=True), seam

            _step(out, 2, "plan the AWS services (one batched read of the account)")
            plan, seam = plan_aws()
            out.text(render_text(plan))  # type: ignore[arg-type]
            out.text(f"   ({seam.stats.total} AWS API calls)")

            _step(out, 3, "apply")
            result = apply_plan(plan)  # type: ignore[arg-type]
            for r in result.results:
                address = r.outputs.get("role_arn") or r.outputs.get("user_arn")
                out.text(f"   {r.workload}: {address}")
                if r.key is not None:
                    out.text(f"      key {r.key.keys[0]['id']} delivered to secret "
                             f"{r.outputs['secret_name']} (the secret itself is never printed)")
            if not result.ok:
                return 1

            _step(out, 4, "plan again: the cloud now matches the manifests")
            plan, _ = plan_aws()
            out.text(render_text(plan))  # type: ignore[arg-type]
            if plan.has_changes:  # type: ignore[attr-defined]
                return 1

            _step(out, 5, f"a mover: {MOVER_WORKLOAD} no longer publishes metrics")
            manifest = aws_dir / MOVER_WORKLOAD
            text = manifest.read_text(encoding="utf-8")
            manifest.write_text(text.replace(MOVER_ENTRY, ""), encoding="utf-8")
            out.text("   removed from spec.access:")
            out.text("".join(f"   - {line}\n" for line in MOVER_ENTRY.splitlines()).rstrip())

            _step(out, 6, "plan shows the removal")
            plan, _ = plan_aws()
            out.text(render_text(plan))  # type: ignore[arg-type]

            _step(out, 7, "apply the shrink, and show the role's policy as IAM holds it")
            result = apply_plan(plan)  # type: ignore[arg-type]
            import boto3
            iam = boto3.client("iam", region_name="us-east-1")
            role = next(r.identity for r in result.results if r.workload.endswith("invoice-worker"))
            doc = iam.get_role_policy(RoleName=role, PolicyName="workload-ids")["PolicyDocument"]
            out.text(json.dumps(doc, indent=2))
            plan, _ = plan_aws()
            out.text(render_text(plan))  # type: ignore[arg-type]
            if plan.has_changes or not result.ok:  # type: ignore[attr-defined]
                return 1
            if not _rotation_tour(out, aws_dir, config):
                return 1
            if not _leaver_tour(out, examples, aws_dir):
                return 1
            if not _gcp_tour(out, examples):
                return 1
            if not _azure_tour(out, examples):
                return 1
            out.text("")
            out.text("Done. Try it across separate commands with `workload-ids sandbox`.")
            return 0


def _rotation_tour(out: Output, aws_dir: Path, config: object) -> bool:
    """Step 8: a month of key rotation for the key-mode service, by moving the clock."""
    import os
    from datetime import timedelta

    from .. import clock
    from ..calls import CallSeam
    from ..config import Config
    from ..keys.fleet import rotate_workloads
    from ..validate import validate
    assert isinstance(config, Config)
    manifest = aws_dir / KEY_MODE_WORKLOAD
    start = clock.now()
    saved = os.environ.get(clock.ENV)
    _step(out, 8, f"a month of key rotation for {KEY_MODE_WORKLOAD} (maxAge 30d, overlap 2d, "
                  "grace 7d), moving the clock with WORKLOAD_IDS_CLOCK")
    try:
        for days, what in ((10, "day 10: nothing is due"),
                           (31, "day 31: the key is due: new key, stored, verified; old key stays active"),
                           (33.5, "day 33.5: the overlap is over: the old key is deactivated"),
                           (41, "day 41: the grace period is over: the old key is deleted")):
            os.environ[clock.ENV] = clock.format_time(start + timedelta(days=days))
            out.text(f"   -- {what}")
            checked = validate([manifest], config)
            for report in rotate_workloads(checked.compiled, config, CallSeam()):
                for action in report.actions:
                    out.text(f"      {action}")
                out.text("      keys: " + ", ".join(f"{k['id']} {k['status']}" for k in report.keys))
                if report.error:
                    out.text(f"      error: {report.error}")
                    return False
    finally:
        if saved is None:
            os.environ.pop(clock.ENV, None)
        else:
            os.environ[clock.ENV] = saved
    return True


def _leaver_tour(out: Output, examples: Path, aws_dir: Path) -> bool:
    """Steps 9-12: team-payments loses its last member (a transfer) and ledger-export is
    decommissioned (quarantine, then deletion after the grace period, then restore)."""
    import os
    from datetime import timedelta

    from .. import clock
    from ..calls import CallSeam
    from ..cleanup.restore import restore
    from ..cleanup.workflow import cleanup, render_report
    from ..config import load_config
    config_file = examples / "workload-ids.yaml"
    config_file.write_text(config_file.read_text(encoding="utf-8")
                           + "credentials: {verify: {interval: 0s}}\n", encoding="utf-8")
    config = load_config(config_file)
    saved = os.environ.get(clock.ENV)
    start = clock.now() + timedelta(hours=2)  # past cleanup.minAge for what the demo created
    try:
        os.environ[clock.ENV] = clock.format_time(start)
        _step(out, 9, "leavers: alice and bob leave team-payments; ledger-export is decommissioned")
        owners = examples / "owners.yaml"
        owners.write_text(owners.read_text(encoding="utf-8")
                          .replace("{id: alice, kind: person, active: true}",
                                   "{id: alice, kind: person, active: false}")
                          .replace("{id: bob, kind: person, active: true}",
                                   "{id: bob, kind: person, active: false}"), encoding="utf-8")
        (aws_dir / "ledger-export.yaml").unlink()
        out.text("   owners.yaml: alice and bob inactive (team-payments names team-platform as successor)")
        out.text("   examples/aws/ledger-export.yaml removed")
        _step(out, 10, "cleanup dry run: judge every identity we manage (one batched read)")
        report = cleanup([aws_dir], config, CallSeam())
        out.text(render_report(report))
        _step(out, 11, "cleanup --apply: transfer payments-api, quarantine ledger-export "
                       "(deny-all, sessions revoked, mark in tags)")
        report = cleanup([aws_dir], config, CallSeam(), apply=True)
        out.text(render_report(report))
        if not report.ok:
            return False
        os.environ[clock.ENV] = clock.format_time(start + timedelta(days=8))
        _step(out, 12, "8 days later, past the 7d grace period: cleanup --apply "
                       "--delete-with-local-audit deletes it, after writing its restore bundle to "
                       "the audit log (the demo's log is a local file; a real fleet sets audit.sink)")
        report = cleanup([aws_dir], config, CallSeam(), apply=True, delete_with_local_audit=True)
        out.text(render_report(report))
        for result in report.results:
            out.text(f"   {result.finding.identity.name}: " + "; ".join(result.steps))
        if not report.ok:
            return False
        _step(out, 13, "someone still needed it: workload-ids restore wid_prod_ledger-export")
        restored = restore("wid_prod_ledger-export", config, CallSeam())
        for step in restored.steps:
            out.text(f"   {step}")
        for note in restored.notes:
            out.text(f"   note: {note}")
        from ..audit import verify
        audit_path = config.audit_path()
        assert audit_path is not None
        check = verify(audit_path)
        out.text(f"   audit log: {check.records} records, hash chain "
                 f"{'verifies' if check.ok else 'BROKEN'} (workload-ids audit verify)")
        return check.ok
    finally:
        if saved is None:
            os.environ.pop(clock.ENV, None)
        else:
            os.environ[clock.ENV] = saved


def _gcp_tour(out: Output, examples: Path) -> bool:
    """Steps 14-15: the GCP examples against a local GCP (the emulators the sandbox uses)."""
    try:
        from .gcp.local import start_local_gcp
        local = start_local_gcp()
    except ModuleNotFoundError:
        out.text("")
        out.text("(GCP steps skipped: install workload-ids[gcp] to run them against a local GCP)")
        return True
    try:
        return _cloud_tour(out, examples, "gcp", {**local.endpoints, "sandboxCredentials": True}, 14, (
            "GCP: plan and apply the GCP examples against a local GCP (IAM Admin over gRPC, "
            "Resource Manager, resource policies)",
            "GCP: plan again: the project matches the manifests"))
    finally:
        local.stop()


def _azure_tour(out: Output, examples: Path) -> bool:
    """Steps 16-17: the Azure examples (a keyless managed identity and a key-mode
    application whose secret goes to Key Vault) against a local Azure."""
    try:
        from .azure.local import start_local_azure
        local = start_local_azure()
    except ModuleNotFoundError:
        out.text("")
        out.text("(Azure steps skipped: install workload-ids[azure] to run them against a local Azure)")
        return True
    try:
        return _cloud_tour(out, examples, "azure", local.settings, 16, (
            "Azure: plan and apply the Azure examples against a local Azure (ARM, Microsoft Graph and "
            "Key Vault over HTTPS): a managed identity with federated credentials, and an application "
            "whose client secret is delivered to Key Vault only",
            "Azure: plan again: the subscription matches the manifests"))
    finally:
        local.stop()


def _cloud_tour(out: Output, examples: Path, provider: str, settings: dict[str, object], first: int,
                titles: tuple[str, str]) -> bool:
    """Two steps on one local cloud: plan and apply its examples, then plan again."""
    from ..apply import apply_plan
    from ..calls import CallSeam
    from ..config import Config, ConfigFile
    from ..plan import build_plan, render_text
    from ..validate import validate
    config = Config(ConfigFile.model_validate({provider: settings,
                                               "credentials": {"verify": {"interval": "0s"}},
                                               "trust": example_trust(examples)}),
                    examples, None)
    folder = examples / provider
    _step(out, first, titles[0])
    checked = validate([folder], config)
    checked.raise_for_errors()
    plan = build_plan(checked.compiled, config, CallSeam(), fleet=True)
    out.text(render_text(plan))
    result = apply_plan(plan)
    for r in result.results:
        problem = f"  ERROR {r.error}" if r.error else ""
        out.text(f"   {r.workload}: {r.outputs.get('identity')}{problem}")
    if not result.ok:
        return False
    _step(out, first + 1, titles[1])
    again = build_plan(validate([folder], config).compiled, config, CallSeam(), fleet=True)
    out.text(render_text(again))
    return not again.has_changes
