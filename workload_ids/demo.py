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

from .bundled import bundled_dir

if TYPE_CHECKING:
    from .cli import Output

MOVER_WORKLOAD = "invoice-worker.yaml"
MOVER_ENTRY = "    - template: metrics.write\n      resources: [Acme/InvoiceWorker]\n"


def _step(out: Output, number: int, title: str) -> None:
    out.text("")
    out.text(f"== {number}. {title}")


def run_demo(out: Output) -> int:
    """Run the tour; return the exit code (0 when every step behaved as shown)."""
    from .apply import apply_plan
    from .calls import CallSeam
    from .config import Config, ConfigFile
    from .plan import build_plan, render_text
    from .sandbox.aws import SANDBOX_ACCOUNT, in_process_aws, seed_oidc_providers
    from .validate import validate

    with tempfile.TemporaryDirectory(prefix="workload-ids-demo-") as tmp:
        examples = Path(tmp) / "examples"
        shutil.copytree(bundled_dir("examples"), examples)
        aws_dir = examples / "aws"
        config = Config(ConfigFile(), examples, None)
        out.text("workload-ids demo: an in-process AWS (moto), account "
                 f"{SANDBOX_ACCOUNT}; nothing leaves this machine.")
        with in_process_aws():
            seed_oidc_providers()
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
                out.text(f"   {r.workload}: role_arn={r.outputs['role_arn']}")
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
            role = result.results[0].identity
            for r in result.results:
                if r.workload.endswith("invoice-worker"):
                    role = r.identity
            doc = iam.get_role_policy(RoleName=role, PolicyName="workload-ids")["PolicyDocument"]
            out.text(json.dumps(doc, indent=2))
            plan, _ = plan_aws()
            out.text(render_text(plan))  # type: ignore[arg-type]
            out.text("")
            out.text("Done. Try it across separate commands with `workload-ids sandbox`.")
            return 0 if result.ok and not plan.has_changes else 1  # type: ignore[attr-defined]
