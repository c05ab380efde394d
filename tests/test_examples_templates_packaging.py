"""Examples are fixtures, templates are data with rules, and the wheel carries both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from support.aws import PAYMENTS
from support.cli import run_cli
from support.paths import EXAMPLES, REPO
from support.trust import TEST_TRUST

from workload_ids.templates import TemplateFile, destructive, load_templates

BUILTIN = ["object-storage.read", "object-storage.write", "queue.consume", "queue.publish",
           "topic.publish", "table.read", "table.write", "secret.read", "key.decrypt",
           "key.encrypt", "logs.write", "metrics.write", "registry.pull", "registry.push",
           "function.invoke"]


def test_every_builtin_template_loads_for_the_clouds_that_have_the_service():
    templates = load_templates()
    assert set(BUILTIN) <= set(templates.names())
    for name in BUILTIN:
        t = templates.get(name)
        assert t is not None
        assert t.kinds("aws") and t.kinds("gcp"), name
        assert t.kinds("azure") or name == "function.invoke", name


@pytest.mark.parametrize("action", ["sqs:DeleteQueue", "sqs:PurgeQueue", "s3:DeleteBucket",
                                    "s3:PutBucketPolicy", "s3:PutObjectAcl", "sns:DeleteTopic",
                                    "dynamodb:DeleteTable", "kms:ScheduleKeyDeletion"])
def test_no_template_holds_destructive_actions(action):
    assert destructive("aws", action)
    for t in load_templates():
        for statements in t.spec.aws.values():
            assert not any(destructive("aws", a) for st in statements for a in st.actions), t.name
        for grant in t.spec.gcp.values():
            assert not any(destructive("gcp", p) for p in grant.permissions), t.name
        for agrant in t.spec.azure.values():
            assert not any(destructive("azure", a) for a in [*agrant.actions, *agrant.dataActions])


def test_template_with_a_destructive_action_is_refused(tmp_path, manifests):
    folder = tmp_path / "my-templates"
    folder.mkdir()
    (folder / "queue.drain.yaml").write_text(
        "name: queue.drain\ndescription: Empties a queue.\n"
        "aws:\n  sqs-queue:\n    - actions: [sqs:PurgeQueue]\n")
    config = tmp_path / "workload-ids.yaml"
    config.write_text("templates: [my-templates]\n" + TEST_TRUST)
    path = manifests({"p.yaml": PAYMENTS}) / "p.yaml"
    result = run_cli("validate", "--config", str(config), str(path))
    assert result.code == 1
    assert "queue.drain.yaml:1:7: template queue.drain: 'sqs:PurgeQueue' is destructive" in result.err


def test_user_template_folder_from_config(tmp_path, manifests):
    folder = tmp_path / "my-templates"
    folder.mkdir()
    (folder / "queue.peek.yaml").write_text(
        "name: queue.peek\ndescription: Read queue attributes only.\n"
        "aws:\n  sqs-queue:\n    - actions: [sqs:GetQueueAttributes]\n")
    config = tmp_path / "workload-ids.yaml"
    config.write_text("templates: [my-templates]\n" + TEST_TRUST)
    text = PAYMENTS.replace("template: queue.consume", "template: queue.peek")
    path = manifests({"p.yaml": text}) / "p.yaml"
    assert run_cli("validate", "--config", str(config), str(path)).code == 0
    (folder / "clash.yaml").write_text(
        "name: queue.consume\ndescription: A second meaning.\naws:\n  sqs-queue:\n"
        "    - actions: [sqs:GetQueueAttributes]\n")
    result = run_cli("validate", "--config", str(config), str(path))
    assert result.code == 1 and "'queue.consume' is already defined" in result.err


def test_all_examples_are_valid_and_cover_three_clouds_and_both_modes():
    from workload_ids.config import load_config
    from workload_ids.validate import validate
    checked = validate([EXAMPLES], load_config(EXAMPLES / "workload-ids.yaml"))
    assert checked.errors == []
    assert len(checked.compiled) >= 6
    assert {c.provider for c in checked.compiled} == {"aws", "gcp", "azure"}
    modes = {c.mode for c in checked.compiled}
    assert modes == {"keyless", "key"}
    owners = yaml.safe_load((EXAMPLES / "owners.yaml").read_text())["owners"]
    known = {o["id"] for o in owners}
    assert {c.owner for c in checked.compiled} <= known


def test_the_schedules_config_validates_the_examples():
    """examples/schedules/workload-ids.yaml is the scheduled jobs' config: the examples'
    trust roots and guardrails, the audit trail in the durable sink (audit.sink), which
    config validation accepts once the cloud audit sink is part of this version."""
    from workload_ids.config import AuditConfig, load_config
    from workload_ids.validate import validate
    if "sink" not in AuditConfig.model_fields:
        pytest.skip("audit.sink is not part of the config in this version yet")
    config = load_config(EXAMPLES / "schedules" / "workload-ids.yaml")
    checked = validate([EXAMPLES], config)
    assert checked.errors == []
    assert len(checked.compiled) >= 6


def test_examples_payments_is_the_documented_manifest():
    text = (EXAMPLES / "aws" / "payments-api.yaml").read_text()
    assert yaml.safe_load(text) == yaml.safe_load(PAYMENTS)


def test_github_actions_example_applies_one_manifest():
    workflow = yaml.safe_load((EXAMPLES / "github-actions" / "deploy.yml").read_text())
    steps = workflow["jobs"]["apply"]["steps"]
    runs = [s.get("run", "") for s in steps]
    apply = next(r for r in runs if "workload-ids apply" in r)
    assert "--auto-approve" in apply
    manifest = apply.split()[-1]
    assert (REPO / manifest).is_file()
    assert workflow["permissions"]["id-token"] == "write"
    words = apply.split()
    config = words[words.index("--config") + 1]
    assert run_cli("validate", "--config", str(REPO / config), str(REPO / manifest)).code == 0


def _workload_ids_commands(text: str) -> list[list[str]]:
    import shlex
    found = []
    for line in text.splitlines():
        for part in line.split("&&"):
            start = part.find("workload-ids ")
            if start < 0 or part.lstrip().startswith("#") or "name:" in part[:start]:
                continue
            words = shlex.split(part[start:].split("|")[0].split(">")[0], comments=True)
            found.append(words[1:])
    return found


def test_schedule_examples_run_cleanup_dry_run_then_apply_and_rotate():
    from workload_ids.cli import build_parser
    parser = build_parser()
    for name in ("cleanup-cronjob.yaml", "cleanup-scheduled.yml"):
        text = (EXAMPLES / "schedules" / name).read_text()
        list(yaml.safe_load_all(text))  # well-formed YAML
        commands = _workload_ids_commands(text)
        verbs = [c[0] for c in commands]
        assert "rotate" in verbs and "cleanup" in verbs, name
        cleanups = [c for c in commands if c[0] == "cleanup"]
        assert "--apply" not in cleanups[0] and "--apply" in cleanups[1], name
        for argv in commands:
            parser.parse_args(argv)  # every command line is one the CLI accepts


def test_pre_commit_hooks_run_real_commands(manifests):
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"workload-ids-validate", "workload-ids-lint"}
    folder = manifests({"p.yaml": PAYMENTS, "owners.yaml": "owners: []\n"})
    for hook in hooks:
        argv = [*hook["entry"].split()[1:], str(folder / "p.yaml"), str(folder / "owners.yaml")]
        result = run_cli(*argv)
        assert result.code == 0, (hook["id"], result.err)


def test_compiled_policy_is_identical_across_processes(tmp_path):
    script = (
        "import sys; from workload_ids.config import load_config; "
        "from workload_ids.validate import validate; "
        "from workload_ids.providers.aws.render import desired_identity; "
        "c = load_config(sys.argv[1] + '/workload-ids.yaml'); v = validate([sys.argv[1]], c); "
        "print('\\n'.join(desired_identity(w, c).documents['policy'] for w in v.compiled "
        "if w.provider == 'aws'))")
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", script, str(EXAMPLES)], env=env,
                              capture_output=True, text=True, check=True, cwd=tmp_path)
        outputs.add(proc.stdout)
    assert len(outputs) == 1 and outputs.pop().count('"Version"') == 4


def test_demo_runs_end_to_end():
    result = run_cli("demo")
    assert result.code == 0, result.err
    for step in ("1. validate", "2. plan", "3. apply", "4. plan again", "5. a mover",
                 "6. plan shows the removal", "7. apply the shrink", "8. a month of key rotation"):
        assert step in result.out
    assert "- cloudwatch:PutMetricData" in result.out
    assert "the old key is deleted" in result.out and "deleted AKIA" in result.out
    for step in ("9. leavers", "10. cleanup dry run", "11. cleanup --apply", "12. 8 days later",
                 "13. someone still needed it"):
        assert step in result.out
    assert "Dry run: 1 transfer, 1 quarantine" in result.out
    assert "+  owner: team-platform" in result.out
    assert "delete inline policy workload-ids-quarantine; delete role wid_prod_ledger-export" in result.out
    assert "create role wid_prod_ledger-export" in result.out
    assert "hash chain verifies" in result.out
    for step in ("14. GCP: plan and apply", "15. GCP: plan again"):
        assert step in result.out
    assert "Plan: 2 to create" in result.out and "No changes. 2 workload(s) match the cloud." in result.out
    assert result.out.rstrip().endswith("`workload-ids sandbox`.")


def test_python_api_matches_cli(aws, manifests):
    from workload_ids import api as workload_ids
    path = manifests({"p.yaml": PAYMENTS}) / "p.yaml"
    cli_plan = json.loads(run_cli("plan", "--output", "json", str(path)).out)
    config = workload_ids.load_config()
    plan = workload_ids.plan(workload_ids.validate([path], config), config)
    api_plan = plan.as_json()
    cli_plan["summary"].pop("apiCalls")
    api_plan["summary"].pop("apiCalls")
    assert api_plan == cli_plan
    result = workload_ids.apply(plan, config)
    assert result.ok
    assert run_cli("plan", "--detailed-exitcode", str(path)).code == 0


def test_progress_bar_only_on_a_terminal():
    import io

    from workload_ids.cli import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress("reading", stream)
        for i in range(1, 5):
            bar(i, 4)
    assert "[##############################] 4/4" in tty.getvalue()
    assert pipe.getvalue() == ""
    quick, slow = io.StringIO(), io.StringIO()
    now = [0.0]
    for stream in (quick, slow):
        bar = Progress("applying", stream, clock=lambda: now[0])
        now[0] = 0.5 if stream is quick else 5.0
        for i in range(1, 101):
            bar(i, 100)
    assert quick.getvalue() == ""  # a half-second run leaves no progress lines in a log
    assert slow.getvalue().splitlines() == [f"applying: {n}/100" for n in range(10, 101, 10)]


def test_sandbox_serves_separate_commands(tmp_path):
    config = tmp_path / "sandbox.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "workload_ids", "sandbox", "--config-out",
                             str(config)], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not config.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "sandbox did not write its config"
            time.sleep(0.1)
        manifest = EXAMPLES / "aws" / "payments-api.yaml"

        def cmd(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "workload_ids", *args, "--config",
                                   str(config)], env=env, cwd=tmp_path, capture_output=True,
                                  text=True, timeout=120)
        applied = cmd("apply", "--auto-approve", str(manifest))
        assert applied.returncode == 0, applied.stderr
        assert cmd("plan", "--detailed-exitcode", str(manifest)).returncode == 0
        inv = cmd("inventory", "--output", "json")
        assert [r["identity"] for r in json.loads(inv.stdout)["identities"]] == ["wid_prod_payments-api"]
        # The same sandbox serves GCP: the example's project and resources appear on first use.
        gcp_manifest = EXAMPLES / "gcp" / "catalog-sync.yaml"
        applied = cmd("apply", "--auto-approve", str(gcp_manifest))
        assert applied.returncode == 0, applied.stderr
        account = r"service_account=wid-prod-catalog-sync-[0-9a-f]{6}@acme-prod\.iam\.gserviceaccount\.com"
        assert re.search(account, applied.stdout), applied.stdout
        assert cmd("plan", "--detailed-exitcode", str(gcp_manifest)).returncode == 0
        # And Azure: the example's subscription and resource group appear on first use.
        for azure_manifest in sorted((EXAMPLES / "azure").glob("*.yaml")):
            applied = cmd("apply", "--auto-approve", str(azure_manifest))
            assert applied.returncode == 0, applied.stderr
            assert f"wid-prod-{azure_manifest.stem}" in applied.stdout, applied.stdout
            assert cmd("plan", "--detailed-exitcode", str(azure_manifest)).returncode == 0
        # The config lists the sandbox's targets: inventory without PATH reads all three clouds.
        inv = cmd("inventory", "--output", "json")
        assert inv.returncode == 0, inv.stderr
        assert {r["provider"] for r in json.loads(inv.stdout)["identities"]} == {"aws", "gcp", "azure"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Local AWS (moto) listening on http://127.0.0.1:" in (proc.stderr.read() if proc.stderr else "")


@pytest.mark.skipif(os.environ.get("WORKLOAD_IDS_SKIP_WHEEL") == "1", reason="wheel build disabled")
def test_wheel_ships_templates_and_examples_and_works_anywhere(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                            str(REPO)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    wheel = next(dist.glob("workload_ids-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "workload_ids/_bundled/templates/queue.consume.yaml" in names
    assert "workload_ids/_bundled/examples/aws/payments-api.yaml" in names
    for catalog in ("aws-actions.tsv.gz", "gcp-permissions.txt.gz", "gcp-permissions-extra.txt.gz",
                    "azure-operations.tsv.gz"):
        assert f"workload_ids/catalogs/data/{catalog}" in names
    assert "workload_ids/catalogs/PROVENANCE.md" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = subprocess.run(
        [sys.executable, "-c", "import workload_ids, sys; print(workload_ids.__file__); "
         "from workload_ids.cli import main; "
         "examples = __import__('workload_ids.bundled', fromlist=['x']).bundled_dir('examples'); "
         "sys.exit(main(['validate', '--config', str(examples / 'workload-ids.yaml'), str(examples)]))"],
        env=env, cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(str(target))
    assert "OK: 9 workload(s)" in probe.stdout
    demo = subprocess.run([sys.executable, "-m", "workload_ids", "demo"], env=env, cwd=elsewhere,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr


def test_schema_model_accepts_template_file_shape():
    assert "aws" in TemplateFile.model_json_schema()["properties"]
    assert Path(EXAMPLES).is_dir()
