"""The editor schema (`workload-ids schema`): what it says agrees with `validate`, and it
works in a real YAML language server (Red Hat's yaml-language-server, over LSP).

Agreement, checked with the jsonschema package over the examples, hand-made structural
mistakes and a seeded corpus of mutations: every manifest the schema refuses, `validate`
refuses; and a manifest the schema accepts draws none of the structural errors the schema
claims to cover.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import yaml_ls
from support.cli import run_cli
from support.paths import EXAMPLES

from workload_ids.config import load_config
from workload_ids.validate import validate

CONFIG = EXAMPLES / "workload-ids.yaml"
MANIFESTS = sorted(p for p in EXAMPLES.rglob("*.yaml")
                   if p.name not in ("owners.yaml", "workload-ids.yaml")
                   and p.parent.name != "schedules")
TEMPLATES = sorted(p.stem for p in (EXAMPLES.parent / "templates").glob("*.yaml"))


def schema_text(*args: str) -> str:
    result = run_cli("schema", *args)
    assert result.code == 0, result.err
    return result.out


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(schema_text())
    return doc


@pytest.fixture(scope="module")
def check(schema: dict[str, Any]) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def example(name: str) -> dict[str, Any]:
    path = next(p for p in MANIFESTS if p.stem == name)
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def validate_errors(doc: Any, folder: Path) -> list[str]:
    """validate's errors for ``doc``, written beside a copy of the examples' config (the
    ownership marker holds the manifest's path from the config's folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("workload-ids.yaml", "owners.yaml"):
        if not (folder / name).exists():
            shutil.copy(EXAMPLES / name, folder / name)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    result = validate([path], load_config(folder / "workload-ids.yaml"))
    return [d.message for d in result.errors]


def schema_errors(check: Any, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in check.iter_errors(doc)]


# --- what the schema holds -----------------------------------------------------------------

def walk(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")


def test_every_field_has_a_title_a_description_and_examples(schema: dict[str, Any]) -> None:
    models = [schema, *schema["$defs"].values()]
    fields = [(name, field) for model in models for name, field in model.get("properties", {}).items()]
    assert len(fields) >= 45
    for name, field in fields:
        assert field.get("description"), name
        assert field.get("examples"), name
        assert field["title"].endswith(name) and " || " not in field["title"], name


def test_no_generated_titles_and_no_anyof(schema: dict[str, Any]) -> None:
    # anyOf is what made hover read "Template || Template"; pydantic's titles are "Dataactions".
    for where, node in walk(schema):
        assert "anyOf" not in node, where
        assert "discriminator" not in node, where
        title = node.get("title")
        if isinstance(title, str) and where != "#":
            assert "." in title or title in ("apiVersion", "kind", "metadata", "spec"), (where, title)


def test_template_names_are_an_enum_with_descriptions(schema: dict[str, Any]) -> None:
    template = schema["$defs"]["AccessEntry"]["properties"]["template"]
    assert template["enum"] == [*TEMPLATES, None]
    assert len(template["markdownEnumDescriptions"]) == len(template["enum"])
    assert "object-storage.read" in template["errorMessage"]


def config_with_a_template(folder: Path, template: str | None = None) -> Path:
    """A config whose templates: folder holds acme.blob-audit (AWS only), or ``template``."""
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    (folder / "templates" / "blob-audit.yaml").write_text(template or textwrap.dedent("""\
        name: acme.blob-audit
        description: Reads bucket objects for the audit job
        aws:
          s3-bucket:
            - actions: [s3:GetObject]
              resource: "arn:aws:s3:::{name}/*"
        """), encoding="utf-8")
    config = folder / "workload-ids.yaml"
    config.write_text("templates: [templates]\n", encoding="utf-8")
    return config


def test_schema_with_a_config_names_its_templates(tmp_path: Path) -> None:
    config = config_with_a_template(tmp_path)
    with_config = json.loads(schema_text("--config", str(config)))
    names = with_config["$defs"]["AccessEntry"]["properties"]["template"]["enum"]
    assert names == [*sorted([*TEMPLATES, "acme.blob-audit"]), None]
    # It has no GCP or Azure definition: on those clouds the schema refuses it, as validate does.
    spec_rules = with_config["$defs"]["Spec"]["allOf"]
    gcp = next(r for r in spec_rules if r["if"]["properties"]["provider"]["const"] == "gcp")
    narrowed = [rule["then"]["properties"]["template"]["enum"]
                for rule in gcp["then"]["properties"]["access"]["items"]["allOf"]
                if "template" in rule["then"].get("properties", {})]
    assert narrowed == [TEMPLATES]
    assert "acme.blob-audit" not in json.loads(schema_text())["$defs"]["AccessEntry"][
        "properties"]["template"]["enum"]


def test_schema_reads_the_config_validate_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ./workload-ids.yaml, as validate finds it: its templates are in the schema too.
    config_with_a_template(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    names = json.loads(schema_text())["$defs"]["AccessEntry"]["properties"]["template"]["enum"]
    assert "acme.blob-audit" in names


def test_schema_with_a_broken_config_template_says_where(tmp_path: Path) -> None:
    config = config_with_a_template(tmp_path, "name: acme.blob-audit\ndescription: Reads\naws: 7\n")
    result = run_cli("schema", "--config", str(config))
    assert result.code == 1
    assert "blob-audit.yaml:3:" in result.err, result.err
    assert result.out == "" and "Traceback" not in result.err


def test_schema_with_a_missing_config_says_so(tmp_path: Path) -> None:
    result = run_cli("schema", "--config", str(tmp_path / "nope.yaml"))
    assert result.code == 1
    assert "config file not found" in result.err
    assert "Traceback" not in result.err


def test_validate_imports_neither_the_schema_nor_jsonschema(tmp_path: Path) -> None:
    # The schema verb may import more; validate's cold start must not grow with it.
    script = textwrap.dedent(f"""
        import sys
        from workload_ids.cli import main
        try:
            main(["validate", "--config", {str(CONFIG)!r}, {str(EXAMPLES)!r}])
        except SystemExit:
            pass
        print(sorted(m for m in sys.modules if m == "workload_ids.schema" or m.startswith("jsonschema")))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, check=False)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr


# --- agreement with validate -----------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: tuple[Any, ...], value: Any) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        node = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return apply


def _delete(path: tuple[Any, ...]) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        node = doc
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return apply


FED = ("spec", "credentials", "federation")
ATT = ("spec", "credentials", "attachedTo")
# (example, mutation, what validate says): mistakes of structure, each refused by both.
STRUCTURAL: dict[str, tuple[str, Mutation, str]] = {
    "template typo": ("payments-api", _set(("spec", "access", 0, "template"), "object-storage.reed"),
                      "unknown template 'object-storage.reed'"),
    "11-digit account": ("payments-api", _set(("spec", "aws", "account"), "12345678901"),
                         "account '12345678901' is not valid"),
    "bad name": ("payments-api", _set(("metadata", "name"), "Payments_API"), "name 'Payments_API' must be"),
    "short name": ("payments-api", _set(("metadata", "name"), "pa"), "must be 3-40 characters"),
    "bad environment": ("payments-api", _set(("metadata", "environment"), "Prod"), "environment 'Prod'"),
    "github without ref": ("payments-api", _delete((*FED, 0, "ref")), "exactly one of 'ref'"),
    "github with ref and environment": ("payments-api", _set((*FED, 0, "environment"), "production"),
                                        "exactly one of 'ref'"),
    "30days": ("partner-feed", _set(("spec", "credentials", "rotation", "maxAge"), "30days"),
               "'30days' is not a duration"),
    "both aws and gcp": ("payments-api", _set(("spec", "gcp"), {"project": "acme-prod"}),
                         "spec.gcp does not apply to an aws workload"),
    "provider block missing": ("catalog-sync", _delete(("spec", "gcp")), "spec.gcp is missing"),
    "bad federation kind": ("payments-api", _set((*FED, 1, "kind"), "kubernetis"),
                            "federation 'kind' must be one of"),
    "aws-service on gcp": ("catalog-sync", _set((*FED, 0), {"kind": "aws-service",
                                                            "service": "ecs-tasks.amazonaws.com"}),
                           "aws-service federation works on AWS only"),
    "gcp federation without pool": ("catalog-sync", _delete((*FED, 0, "workloadIdentityPool")),
                                    "needs 'workloadIdentityPool'"),
    "pool on aws": ("payments-api", _set((*FED, 0, "workloadIdentityPool"),
                                         "projects/1/locations/global/workloadIdentityPools/github"),
                    "workloadIdentityPool applies to GCP only"),
    "key mode with federation": ("partner-feed", _set(("spec", "credentials", "federation"),
                                                      [{"kind": "aws-service",
                                                        "service": "ecs-tasks.amazonaws.com"}]),
                                 "key mode takes no federation entries"),
    "rotation on keyless": ("payments-api", _set(("spec", "credentials", "rotation"), {"maxAge": "30d"}),
                            "rotation applies to mode: key only"),
    "template and actions": ("payments-api", _set(("spec", "access", 0, "actions"), ["s3:GetObject"]),
                             "has both 'template' and raw 'actions'"),
    "neither template nor actions": ("payments-api", _delete(("spec", "access", 0, "template")),
                                     "neither 'template' nor raw 'actions'"),
    "raw without reason": ("payments-api", _delete(("spec", "access", 2, "reason")),
                           "raw 'actions' need a 'reason'"),
    "reason on a template entry": ("payments-api", _set(("spec", "access", 0, "reason"), "because"),
                                   "'reason' goes with raw 'actions'"),
    "dataActions on aws": ("payments-api", _set(("spec", "access", 2, "dataActions"), ["x"]),
                           "'dataActions' are Azure data-plane operations"),
    "template without an azure definition": ("order-reconciliation",
                                             _set(("spec", "access", 0, "template"), "function.invoke"),
                                             "has no azure definition"),
    "resource the template does not accept": ("payments-api", _set(
        ("spec", "access", 0, "resources", 0), "arn:aws:sqs:eu-west-1:123456789012:q"),
        "object-storage.read does not accept"),
    "gcp resource the template does not accept": ("catalog-sync", _set(
        ("spec", "access", 0, "resources", 0), "projects/_/buckets/acme-catalog-feeds"),
        "secret.read does not accept"),
    "bad subscription": ("order-reconciliation", _set(("spec", "azure", "subscription"), "not-a-guid"),
                         "subscription 'not-a-guid' is not valid"),
    "bad project": ("catalog-sync", _set(("spec", "gcp", "project"), "Acme"), "project 'Acme' is not valid"),
    "bad region": ("payments-api", _set(("spec", "aws", "region"), "eu-west"), "region 'eu-west'"),
    "tab in a description": ("payments-api", _set(("metadata", "description"), "Public\tAPI"),
                             "description holds '\\t'"),
    "line break in a reason": ("payments-api", _set(("spec", "access", 2, "reason"), "reads\nit"),
                               "reason holds '\\n'"),
    "unknown field": ("payments-api", _set(("spec", "acess"), []), "unknown field 'acess'"),
    "unquoted account": ("payments-api", _set(("spec", "aws", "account"), 123456789012),
                         "'account' must be a string"),
    "attachment kind typo": ("checkout-api", _set((*ATT, 0, "kind"), "cloud-runn"),
                             "'kind' must be one of"),
    "attachment with a wildcard": ("checkout-api", _set((*ATT, 0, "service"), "checkout-*"),
                                   "service 'checkout-*' is not valid"),
    "attachment in key mode": ("partner-feed", _set(ATT, [{"kind": "lambda"}]),
                               "key mode takes no attachedTo entries"),
    "attachment field misspelt": ("checkout-api", _set((*ATT, 0, "regoin"), "europe-west1"),
                                  "unknown field 'regoin'"),
}


@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_a_structural_mistake_is_refused_by_both(name: str, check: Any, tmp_path: Path) -> None:
    base, mutate, said = STRUCTURAL[name]
    doc = example(base)
    assert schema_errors(check, doc) == []
    mutate(doc)
    assert schema_errors(check, doc), name
    errors = validate_errors(doc, tmp_path)
    assert any(said in e for e in errors), errors


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_the_examples_are_clean_in_both(path: Path, check: Any, tmp_path: Path) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert schema_errors(check, doc) == []
    assert validate_errors(doc, tmp_path) == []


# What validate says about structure the schema covers: a manifest the schema accepts must
# draw none of these. (Not covered, so not listed: overlap longer than maxAge, empty raw
# actions, control characters in free text, the catalogs, trust roots, accounts in ARNs, and
# which resources an Azure template accepts: ARM ids ignore case, which a pattern cannot say.)
STRUCTURAL_MESSAGES = (
    "missing required field", "unknown field", "must be one of", "is not valid:",
    "must be 3-40", "must be 1-16", "must be 1-63", "is not a duration", "must be a string",
    "must be a list", "must be a mapping", "exactly one of 'ref'", "does not apply to",
    "is missing; add spec", "key mode takes no", "rotation applies to", "works on AWS only",
    "needs 'workloadIdentityPool'", "applies to GCP only", "has both 'template'",
    "neither 'template'", "goes with raw", "need a 'reason'", "'dataActions' are Azure",
    "unknown template", "definition", "does not accept", "needs a 'kind'",
)

# Values a hurried author writes; each mutation puts one at a random place of an example.
VALUES: tuple[Any, ...] = (
    "", "x", "Payments_API", "prod", "123456789012", "12345678901", 123456789012, None, True, 7,
    "30d", "30days", " 12h ", "refs/heads/main", "refs/heads/*", "acme/payments", "acme-prod",
    "0b1f6471-1bf0-4dda-aec3-cb9272f09590", "arn:aws:s3:::acme-invoices", "object-storage.read",
    "function.invoke", "table.reed", "keyless", "key", "aws", "gcp", "azure", "github-actions",
    "aws-service", [], {}, ["x"], {"project": "acme-prod"},
    {"account": "123456789012", "region": "eu-west-1"},
    "projects/123456789012/locations/global/workloadIdentityPools/github",
)
KEYS = ("ref", "environment", "gcp", "aws", "azure", "rotation", "reason", "actions", "template",
        "dataActions", "workloadIdentityPool", "federation", "mode", "kind", "acess")


def _places(node: Any, where: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*where, key)
            yield from _places(value, (*where, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*where, i)
            yield from _places(value, (*where, i))


def _mutants(count: int, seed: int) -> Iterator[tuple[str, Any]]:
    rng = random.Random(seed)
    bases = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in MANIFESTS]
    for n in range(count):
        doc = copy.deepcopy(rng.choice(bases))
        steps = []
        for _ in range(rng.choice((1, 1, 2))):
            places = [p for p in _places(doc) if p]
            place = rng.choice(places)
            parent = doc
            for part in place[:-1]:
                parent = parent[part]
            action = rng.random()
            if action < 0.2 and isinstance(parent, dict):
                del parent[place[-1]]
                steps.append(f"del {place}")
            elif action < 0.45 and isinstance(parent[place[-1]], dict):
                key, value = rng.choice(KEYS), copy.deepcopy(rng.choice(VALUES))
                parent[place[-1]][key] = value
                steps.append(f"{place}.{key}={value!r}")
            else:
                value = copy.deepcopy(rng.choice(VALUES))
                parent[place[-1]] = value
                steps.append(f"{place}={value!r}")
        yield f"#{n}: {'; '.join(steps)}", doc


def _provider(doc: Any) -> Any:
    spec = doc.get("spec") if isinstance(doc, dict) else None
    return spec.get("provider") if isinstance(spec, dict) else None


def test_schema_and_validate_agree_on_mutated_examples(check: Any, tmp_path: Path) -> None:
    refused = accepted = 0
    for label, doc in _mutants(300, seed=16):
        by_schema = schema_errors(check, doc)
        by_validate = validate_errors(doc, tmp_path)
        if by_schema:
            refused += 1
            assert by_validate, f"{label}: the schema refuses ({by_schema}) but validate accepts"
        else:
            accepted += 1
            structural = [e for e in by_validate if any(m in e for m in STRUCTURAL_MESSAGES)
                          and not (_provider(doc) == "azure" and "does not accept" in e)]
            assert structural == [], f"{label}: the schema accepts but validate says {structural}"
    # The corpus exercises both sides.
    assert refused > 150 and accepted > 20, (refused, accepted)


# --- in a real editor: yaml-language-server over LSP -----------------------------------------

PAYMENTS = (EXAMPLES / "aws" / "payments-api.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def editor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[yaml_ls.LanguageServer, Path]]:
    yaml_ls.require()
    root = tmp_path_factory.mktemp("editor")
    schema_file = root / "workload.schema.json"
    schema_file.write_text(schema_text(), encoding="utf-8")
    with yaml_ls.running(root) as server:
        # As the README writes it: a path from the workspace root.
        probe = root / "probe.workload.yaml"
        text = PAYMENTS.replace('"123456789012"', '"12345678901"', 1)
        probe.write_text(text, encoding="utf-8")
        server.configure_and_wait("./workload.schema.json", "*.workload.yaml", probe, text)
        yield server, root


def opened(editor: tuple[yaml_ls.LanguageServer, Path], name: str, text: str) -> list[dict[str, Any]]:
    server, root = editor
    path = root / name
    path.write_text(text, encoding="utf-8")
    server.open(path, text)
    return server.diagnostics(path)


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines()) if fragment in line)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_editor_finds_nothing_in_the_examples(editor: Any, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert opened(editor, f"ok-{path.stem}.workload.yaml", text) == []


EDITOR_CASES = {
    "template typo": (("template: object-storage.read", "template: object-storage.reed"),
                      "template: object-storage.reed",
                      "unknown template; the templates are: function.invoke"),
    "11-digit account": (('"123456789012"', '"12345678901"'), '"12345678901"',
                         'account: write the 12-digit account id'),
    "bad name": (("name: payments-api ", "name: Payments_API "), "Payments_API",
                 "name: 3-40 characters of lowercase letters"),
    "github without ref": (("        ref: refs/heads/main\n", ""), "kind: github-actions",
                           "github-actions federation needs exactly one of 'ref' (e.g. refs/heads/main) "
                           "or 'environment'"),
    "30days": (("    region: eu-west-1\n", "    region: eu-west-1\n    maxSessionDuration: 30days\n"),
               "30days", "a duration: a whole number and one unit"),
    "both aws and gcp": (("  credentials:\n", "  gcp:\n    project: acme-prod\n  credentials:\n"),
                         "project: acme-prod", "spec.gcp does not apply to an aws workload; remove it"),
    "bad federation kind": (("kind: kubernetes", "kind: kubernetis"), "kubernetis",
                            "federation 'kind' must be one of 'github-actions', 'kubernetes', 'aws-service'"),
    "resource the template does not accept": (
        ("arn:aws:s3:::acme-invoices", "arn:aws:sqs:eu-west-1:123456789012:q"), "sqs:eu-west-1",
        "object-storage.read accepts s3-bucket (e.g. arn:aws:s3:::acme-invoices)"),
    "raw without reason": (("      reason: reads the payments table directly", ""),
                           "actions: [dynamodb:GetItem", "raw 'actions' need a 'reason'"),
}


@pytest.mark.parametrize("name", sorted(EDITOR_CASES))
def test_editor_reports_a_mistake_where_it_is(editor: Any, name: str) -> None:
    (old, new), at, said = EDITOR_CASES[name]
    assert old in PAYMENTS
    text = PAYMENTS.replace(old, new, 1)
    found = opened(editor, f"{name.replace(' ', '-')}.workload.yaml", text)
    messages = [d["message"] for d in found]
    # One message, and the one we wrote: no "Matches multiple schemas", no bare pattern.
    assert len(found) == 1, messages
    assert said in messages[0], messages
    line = found[0]["range"]["start"]["line"]
    # Missing fields are reported at their mapping, whose first line names the entry.
    assert line in (line_of(text, at), line_of(text, at) - 1), (line, at, messages)


def test_editor_says_once_what_is_wrong_with_a_template_on_azure(editor: Any) -> None:
    text = (EXAMPLES / "azure" / "order-reconciliation.yaml").read_text(encoding="utf-8")
    typo = text.replace("template: object-storage.read", "template: object-storage.reed", 1)
    assert [d["message"] for d in opened(editor, "az-typo.workload.yaml", typo)] == [
        "unknown template; the templates are: " + ", ".join(TEMPLATES)]
    # function.invoke has no Azure definition
    other = text.replace("template: object-storage.read", "template: function.invoke", 1)
    messages = [d["message"] for d in opened(editor, "az-function.workload.yaml", other)]
    assert len(messages) == 1 and messages[0].startswith(
        "this template has no azure definition; the azure templates are: key.decrypt"), messages


def test_editor_says_once_what_is_wrong_with_a_federation_kind_on_gcp(editor: Any) -> None:
    text = (EXAMPLES / "gcp" / "catalog-sync.yaml").read_text(encoding="utf-8")
    typo = text.replace("kind: github-actions", "kind: github-action", 1)
    assert [d["message"] for d in opened(editor, "gcp-kind.workload.yaml", typo)] == [
        "federation 'kind' must be one of 'github-actions', 'kubernetes', 'aws-service'"]
    service = text.replace("      - kind: github-actions\n        repository: acme/catalog-sync\n"
                           "        ref: refs/heads/main\n",
                           "      - kind: aws-service\n        service: ecs-tasks.amazonaws.com\n"
                           "      - kind: github-actions\n        repository: acme/catalog-sync\n"
                           "        ref: refs/heads/main\n", 1)
    assert service != text
    assert [d["message"] for d in opened(editor, "gcp-service.workload.yaml", service)] == [
        "aws-service federation works on AWS only, not gcp"]


def test_editor_reports_both_template_entry_mistakes_at_once(editor: Any) -> None:
    text = PAYMENTS.replace("reason: reads the payments table directly",
                            "reason: reads the payments table directly\n"
                            "    - template: table.reed\n      resources: [x]\n      reason: y", 1)
    messages = [d["message"] for d in opened(editor, "two.workload.yaml", text)]
    assert any(m.startswith("unknown template") for m in messages), messages
    assert any("'reason' goes with raw 'actions'" in m for m in messages), messages
    assert not any("Matches multiple schemas" in m for m in messages), messages


def test_editor_completes_template_names(editor: Any) -> None:
    server, root = editor
    text = PAYMENTS.replace("template: object-storage.read", "template: ", 1)
    path = root / "complete.workload.yaml"
    path.write_text(text, encoding="utf-8")
    server.open(path, text)
    server.diagnostics(path)
    line = line_of(text, "template: ")
    items = server.completion(path, line, text.splitlines()[line].index("template: ") + len("template: "))
    labels = [item["label"] for item in items]
    assert set(TEMPLATES) <= set(labels), labels
    assert "Default value" not in labels


def test_editor_hover_shows_a_fields_description(editor: Any) -> None:
    server, root = editor
    path = root / "hover.workload.yaml"
    path.write_text(PAYMENTS, encoding="utf-8")
    server.open(path, PAYMENTS)
    server.diagnostics(path)
    lines = PAYMENTS.splitlines()
    at = line_of(PAYMENTS, "account:")
    shown = server.hover(path, at, lines[at].index("account") + 2)
    assert shown.startswith("#### spec.aws.account\n"), shown
    assert "The 12-digit AWS account id, quoted so YAML keeps it a string." in shown
    at = line_of(PAYMENTS, "template: object-storage.read")
    shown = server.hover(path, at, lines[at].index("template") + 2)
    assert "spec.access" in shown and "An access template by name" in shown, shown
    assert " || " not in shown, shown
    assert "Reads" in shown or "read" in shown.lower()


def test_editor_completes_a_configs_templates(editor: Any) -> None:
    server, root = editor
    config = config_with_a_template(root / "team")
    (root / "team" / "workload.schema.json").write_text(schema_text("--config", str(config)),
                                                        encoding="utf-8")
    text = "# yaml-language-server: $schema=./workload.schema.json\n" + PAYMENTS.replace(
        "template: object-storage.read", "template: ", 1)
    path = root / "team" / "manifest.yaml"
    path.write_text(text, encoding="utf-8")
    server.open(path, text)
    server.diagnostics(path)
    line = line_of(text, "template: ")
    items = server.completion(path, line, text.splitlines()[line].index("template: ") + len("template: "))
    labels = {item["label"] for item in items}
    assert {"acme.blob-audit", "object-storage.read"} <= labels, labels


def test_editor_follows_a_modeline(editor: Any) -> None:
    # Not matched by the yaml.schemas glob: only the README's modeline brings the schema in.
    text = "# yaml-language-server: $schema=./workload.schema.json\n" + PAYMENTS.replace(
        '"123456789012"', '"12345678901"', 1)
    messages = [d["message"] for d in opened(editor, "modeline.yaml", text)]
    assert any("12-digit account id" in m for m in messages), messages
    assert [d["message"] for d in opened(editor, "plain.yaml", PAYMENTS.replace(
        '"123456789012"', '"12345678901"', 1))] == []


def test_a_missing_server_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(yaml_ls, "SERVER", tmp_path / "not-installed")
    monkeypatch.delenv(yaml_ls.REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="npm ci --ignore-scripts"):
        yaml_ls.require()
    monkeypatch.setenv(yaml_ls.REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="yaml-language-server is not installed"):
        yaml_ls.require()
