"""Supply chain (review finding H9): what the examples install and run, and what CI installs,
is pinned to content, never to a name or a tag that someone else can move.

Every file under examples/ is read, so a new example cannot bring an unpinned install back.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SHA = re.compile(r"[0-9a-f]{40}")


def _example_files() -> list[Path]:
    files = sorted(p for p in EXAMPLES.rglob("*") if p.is_file())
    assert files
    return files


def _text_files() -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for p in _example_files()]


def _walk(node: object) -> list[tuple[str, object]]:
    """Every (key, value) pair of a loaded YAML document, at any depth."""
    found: list[tuple[str, object]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((str(key), value))
            found.extend(_walk(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_walk(item))
    return found


def _yaml_pairs() -> list[tuple[Path, str, object]]:
    pairs: list[tuple[Path, str, object]] = []
    for path, text in _text_files():
        if path.suffix in (".yml", ".yaml"):
            for doc in yaml.safe_load_all(text):
                pairs.extend((path, k, v) for k, v in _walk(doc))
    return pairs


def test_every_action_is_pinned_by_commit_with_its_tag_in_a_comment() -> None:
    uses = [(path, line.strip()) for path, text in _text_files() for line in text.splitlines()
            if re.match(r"\s*(-\s*)?uses:", line)]
    assert uses, "the examples use GitHub Actions"
    for path, line in uses:
        m = re.fullmatch(r"(?:-\s*)?uses:\s*([\w.-]+/[\w./-]+)@(\S+)\s+#\s*(v\d+(?:\.\d+)*)", line)
        assert m is not None, f"{path.name}: {line!r} is not 'uses: OWNER/REPO@SHA  # vX.Y.Z'"
        assert SHA.fullmatch(m.group(2)), \
            f"{path.name}: {m.group(1)} is pinned to {m.group(2)!r}, not a commit"
    # The same check through the parsed YAML: nothing hides in a flow mapping.
    for path, key, value in _yaml_pairs():
        if key == "uses":
            assert isinstance(value, str) and SHA.fullmatch(value.rsplit("@", 1)[-1]), (path, value)


def test_no_action_outside_the_vetted_owners() -> None:
    # Third-party actions run with the job's OIDC token: only these publishers are used.
    owners = {str(v).split("/", 1)[0] for _, k, v in _yaml_pairs() if k == "uses"}
    assert owners <= {"actions", "aws-actions", "google-github-actions", "azure"}, owners


def test_pip_installs_are_hash_checked_and_never_fetch_workload_ids_by_name() -> None:
    installs = [(path, line) for path, text in _text_files() for line in text.splitlines()
                if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs, "the workflows install the tool"
    for path, line in installs:
        assert "--require-hashes" in line, f"{path.name}: {line.strip()!r} installs without hashes"
        assert "workload-ids" not in line.split("pip install", 1)[1], \
            f"{path.name}: {line.strip()!r} installs workload-ids by name"
        requirements = re.search(r"-r\s+(\S+)", line)
        assert requirements is not None, f"{path.name}: {line.strip()!r} names no lock file"
        assert (REPO / requirements.group(1)).is_file(), requirements.group(1)


def test_requirements_are_exact_versions_with_sha256_hashes() -> None:
    text = (EXAMPLES / "requirements-aws.txt").read_text()
    logical = re.sub(r"\\\n", " ", text)
    entries = [line.strip() for line in logical.splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    names = set()
    for entry in entries:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", entry)
        assert m is not None, f"requirements-aws.txt: {entry!r} is not NAME==VERSION --hash=sha256:..."
        names.add(m.group(1).lower().replace("_", "-"))
    # What workload-ids[aws] needs at run time, and what those need.
    assert {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3",
            "pydantic", "pydantic-core", "annotated-types", "typing-extensions",
            "typing-inspection", "pyyaml"} <= names


def test_container_images_are_pinned_by_digest() -> None:
    images = [(path, value) for path, key, value in _yaml_pairs() if key == "image"]
    assert images, "the CronJob example runs an image"
    for path, image in images:
        assert isinstance(image, str) and re.search(r"@sha256:[0-9a-f]{64}$", image), \
            f"{path.name}: image {image!r} is not pinned by digest"


def test_no_package_is_installed_when_a_pod_starts() -> None:
    for path, key, value in _yaml_pairs():
        if key in ("args", "command"):
            assert "pip " not in str(value), f"{path.name}: a container installs packages at start"


def test_scheduled_jobs_keep_the_audit_trail_in_the_durable_sink() -> None:
    """No artifact relay (a branch run could substitute the log, a failed run's records were
    dropped) and no volume (a PVC is one disk): the jobs' config names a signed sink in a
    bucket, and nothing downloads a previous run's trail."""
    workflow = yaml.safe_load((EXAMPLES / "schedules" / "cleanup-scheduled.yml").read_text())
    job = workflow["jobs"]["schedule"]
    assert job["if"] == "github.ref_name == github.event.repository.default_branch"
    assert "actions" not in workflow["permissions"]  # nothing reads other runs' artifacts
    for step in job["steps"]:
        assert "download-artifact" not in str(step.get("uses", "")), step
        assert "gh run download" not in str(step.get("run", "")), step
        assert "audit.jsonl" not in str(step), step
    cron = (EXAMPLES / "schedules" / "cleanup-cronjob.yaml").read_text()
    assert "persistentVolumeClaim" not in cron and "/audit" not in cron
    config = yaml.safe_load((EXAMPLES / "schedules" / "workload-ids.yaml").read_text())
    assert set(config["audit"]) == {"sink"}  # no local file beside it
    assert config["audit"]["sink"]["url"].startswith("s3://")
    assert config["audit"]["sink"]["signingKey"] == "workload-ids/audit-signing-key"
    for text in (yaml.safe_dump(workflow, width=1000), cron):
        commands = [line for line in text.splitlines()
                    if re.search(r"workload-ids (rotate|cleanup|audit)", line)
                    and not line.lstrip().startswith("#")]
        assert commands
        for command in commands:
            assert "--config examples/schedules/workload-ids.yaml" in command or \
                "--config /config/workload-ids.yaml" in command, command
            assert "--delete-with-local-audit" not in command, command


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_test_only_packages_stay_out_of_runtime_extras() -> None:
    extras = _extras()
    for runtime in ("aws", "gcp", "azure", "all"):
        assert not _names(extras[runtime]) & {"trustme", "moto", "pytest", "hypothesis"}, runtime
    assert "trustme" in _names(extras["demo"])


def test_the_azure_provider_never_imports_trustme() -> None:
    for path in (REPO / "workload_ids").rglob("*.py"):
        if "sandbox" in path.relative_to(REPO / "workload_ids").parts:
            continue
        assert "trustme" not in path.read_text(), path
    # And at run time: the provider and its modules import with trustme made unimportable.
    code = ("import sys; sys.modules['trustme'] = None\n"
            "import workload_ids.providers.azure.identity, workload_ids.providers.azure.clients\n"
            "import workload_ids.providers.azure.keys, workload_ids.providers.azure.graph\n"
            "import workload_ids.providers.azure.leavers, workload_ids.providers.azure.render\n"
            "import workload_ids.providers.azure.applications, workload_ids.providers.azure.roles\n"
            "import workload_ids.providers.azure.secret_store, workload_ids.providers.azure.lock\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


def _readme_test_command() -> str:
    lines = (REPO / "README.md").read_text().splitlines()
    return next(line for line in lines if "pytest" in line and "pip install" in line)


def test_ci_runs_the_readme_test_command_with_the_constraints_file() -> None:
    command = _readme_test_command()
    assert "-c .ci/constraints.txt" in command
    run = (REPO / ".ci" / "run").read_text().splitlines()
    assert command in run, "the README's test command and .ci/run differ"


def test_constraints_pin_every_test_dependency_exactly() -> None:
    pins: dict[str, str] = {}
    for line in (REPO / ".ci" / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", line.strip())
        assert m is not None, f"constraints.txt: {line!r} is not NAME==VERSION"
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    assert "workload-ids" not in pins
    extras = _extras()
    wanted = set()
    for extra in ("test", "demo", "aws", "gcp", "azure"):
        wanted |= {n.replace("_", "-") for n in _names(extras[extra]) if n != "workload-ids"}
    assert wanted - set(pins) == set(), "unpinned: " + ", ".join(sorted(wanted - set(pins)))


def test_pre_commit_rev_is_a_commit() -> None:
    revs = [line.strip() for line in (REPO / "README.md").read_text().splitlines()
            if line.strip().startswith("rev:")]
    assert revs
    for rev in revs:
        assert re.fullmatch(r"rev: [0-9a-f]{40}  # frozen: v\d+\.\d+\.\d+", rev), rev
