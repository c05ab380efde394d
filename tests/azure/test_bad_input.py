"""Bad input in Azure manifests: through ``validate`` and ``plan`` alike, each problem is
one ``FILE:LINE:COLUMN: message`` line saying what is wrong and how to fix it, exit 1, no
traceback, and ``plan`` stops before any backend is built (so before any cloud call, and
whether or not the Azure backend is registered yet).

The baseline manifest below has a fixed layout::

     5   provider: azure
     6   azure:
     7     subscription: "SUB"       <- value at column 19
     8     resourceGroup: rg-orders  <- value at column 20
     9     location: westeurope      <- value at column 15
    10   credentials:
    11     federation:
    12       - kind: github-actions  <- the first federation entry (mapping) at column 9
    13         repository: acme/svc-z    <- value at column 21
    14         environment: production
    15   access:
    16     - template: secret.read
    17       resources:
    18         - /subscriptions/...  <- the first resource at column 11
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import CliResult, run_cli

from workload_ids import clouds as clouds_module
from workload_ids.errors import UserError

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
OTHER_SUB = "11111111-2222-3333-4444-555555555555"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-orders/providers"
SECRET = f"{RG}/Microsoft.KeyVault/vaults/acme-kv/secrets/db"
GITHUB = "      - kind: github-actions\n        repository: acme/svc-z\n        environment: production\n"
AZURE = f"""\
apiVersion: workload-ids/v1
kind: Workload
metadata: {{name: svc-z, owner: team-a, environment: prod}}
spec:
  provider: azure
  azure:
    subscription: "{SUB}"
    resourceGroup: rg-orders
    location: westeurope
  credentials:
    federation:
{GITHUB}  access:
    - template: secret.read
      resources:
        - {SECRET}
"""
TEMPLATE_ENTRY = "    - template: secret.read\n"
RAW_ENTRY = "    - actions: [Microsoft.KeyVault/vaults/read]\n      reason: reads the vault's settings\n"
# What secret.read's refusals end with: the kinds it takes, and an example of the first.
ACCEPTS = ("it accepts keyvault-secret, keyvault-vault (e.g. /subscriptions/00000000-0000-0000-0000-"
           "000000000000/resourceGroups/rg-orders/providers/Microsoft.KeyVault/vaults/acme-orders-kv/"
           "secrets/db-password")
NOT_AVAILABLE = "backend is not available"


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The providers ``plan`` asks for. None is built: a test that gets this far gets a
    refusal of its own instead, so no test here can reach a cloud."""
    built: list[str] = []

    def refuse(name: str, *_: Any) -> Any:
        built.append(name)
        raise UserError(f"test: the {name} backend was asked for")
    monkeypatch.setattr(clouds_module, "connect", refuse)
    yield built


def refused(path: Path, verb: str) -> CliResult:
    result = run_cli(verb, str(path))
    assert result.code == 1, (verb, result)
    assert result.out == "", (verb, result.out)
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    assert NOT_AVAILABLE not in result.err, result.err
    return result


def expect_refused(manifests: Any, backends: list[str], text: str, line: int, column: int,
                   *words: str) -> None:
    """``validate`` and ``plan`` of ``text``: one problem, at ``line:column``, with ``words``."""
    path = manifests({"bad.yaml": text}) / "bad.yaml"
    for verb in ("validate", "plan"):
        result = refused(path, verb)
        lines = [line for line in result.err.splitlines() if line.strip()]
        assert len(lines) == 1, (verb, lines)
        prefix = f"{path}:{line}:{column}: "
        assert lines[0].startswith(prefix), (verb, lines[0])
        message = lines[0][len(prefix):]
        for word in words:
            assert word in message, (verb, word, message)
    assert backends == []


def with_resource(resource: str, entry: str = TEMPLATE_ENTRY) -> str:
    return AZURE.replace(SECRET, resource).replace(TEMPLATE_ENTRY, entry)


# --- the baseline, and the spy that the refusals below rely on ---------------------------

def test_valid_baseline_reaches_the_backend_only_after_validation(manifests: Any,
                                                                  backends: list[str]) -> None:
    path = manifests({"ok.yaml": AZURE}) / "ok.yaml"
    assert run_cli("validate", str(path)).code == 0
    result = run_cli("plan", str(path))
    assert "test: the azure backend was asked for" in result.err
    assert backends == ["azure"]


@pytest.mark.parametrize("resource", [
    SECRET.lower(),
    SECRET.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"),
    SECRET.replace("resourceGroups", "resourcegroups").replace("Microsoft.KeyVault", "microsoft.keyvault"),
    SECRET.replace(SUB, SUB.upper()),
], ids=["lowercase", "uppercase", "mixed", "subscription-uppercase"])
def test_arm_ids_are_case_insensitive(manifests: Any, resource: str) -> None:
    path = manifests({"ok.yaml": with_resource(resource)}) / "ok.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 0, result.err


@pytest.mark.parametrize(("group", "location"), [
    ("rg_orders(1).v2", "eastus2"),
    ("rg-ärger", "westeurope"),          # Azure allows letters of any script
    ("r", "westeurope"),
    ("a" * 90, "westeurope"),
], ids=["punctuation", "unicode-letters", "one-character", "ninety-characters"])
def test_valid_resource_groups_and_locations(manifests: Any, group: str, location: str) -> None:
    text = AZURE.replace("resourceGroup: rg-orders", f"resourceGroup: {group}")
    text = text.replace("location: westeurope", f"location: {location}")
    path = manifests({"ok.yaml": text}) / "ok.yaml"
    result = run_cli("validate", str(path))
    assert result.code == 0, result.err


# --- 1. malformed ARM resource IDs ---------------------------------------------------------

@pytest.mark.parametrize(("resource", "words"), [
    pytest.param(f"{RG}/Microsoft.KeyVault/vaults/acme-kv/db",
                 ("a segment is missing: after Microsoft.KeyVault an ARM resource ID alternates "
                  "TYPE/NAME, but 'vaults/acme-kv/db' has 3 segments",), id="missing-segment"),
    pytest.param(f"/subscriptions/{SUB}/providers/Microsoft.KeyVault/vaults/acme-kv/secrets/db",
                 ("it does not start with /subscriptions/SUBSCRIPTION_ID/resourceGroups/GROUP/providers/",),
                 id="no-resource-group"),
    pytest.param(SECRET.lstrip("/"),
                 ("it does not start with /subscriptions/SUBSCRIPTION_ID/resourceGroups/GROUP/providers/",),
                 id="no-leading-slash"),
    pytest.param(SECRET.replace("Microsoft.KeyVault", "Microsoft.Storage"),
                 ("it names a Microsoft.Storage/vaults/secrets resource, not one of "
                  "Microsoft.KeyVault/vaults/secrets, Microsoft.KeyVault/vaults",), id="wrong-namespace"),
    pytest.param(SECRET.replace("/secrets/", "/certificates/"),
                 ("it names a Microsoft.KeyVault/vaults/certificates resource",), id="wrong-type"),
    pytest.param(SECRET.replace("rg-orders", "rg!orders"),
                 ("its resource group 'rg!orders' is not valid: 1-90 letters, digits, underscores, "
                  "hyphens, periods and parentheses, not ending in a period",),
                 id="resource-group-characters"),
    pytest.param(SECRET.replace("rg-orders", "rg-orders."),
                 ("its resource group 'rg-orders.' is not valid", "not ending in a period"),
                 id="resource-group-trailing-period"),
    pytest.param(SECRET.replace("rg-orders", "r" * 91),
                 (f"its resource group '{'r' * 91}' is not valid: 1-90 letters",),
                 id="resource-group-too-long"),
    pytest.param(SECRET.replace(SUB, "acme-prod"),
                 ("its subscription 'acme-prod' is not a subscription id (a GUID)",), id="subscription-name"),
    pytest.param(SECRET.replace(SUB, SUB[:-1] + "z"),
                 (f"its subscription '{SUB[:-1]}z' is not a subscription id (a GUID)",),
                 id="guid-not-hex"),
    # 36 hex digits and hyphens, but not grouped 8-4-4-4-12: was taken for a GUID.
    pytest.param(SECRET.replace(SUB, "0b1f64711bf0-4dda-aec3-cb9272f09590-"),
                 ("its subscription '0b1f64711bf0-4dda-aec3-cb9272f09590-' is not a subscription id",),
                 id="guid-misgrouped"),
    pytest.param(SECRET + "/",
                 ("it ends with '/'; remove the trailing slash",), id="trailing-slash"),
    pytest.param(f'"{SECRET.replace("acme-kv", "acme kv")}"',
                 ("it contains whitespace, which no ARM resource ID has",), id="space"),
    pytest.param(SECRET.replace("/vaults/", "/vaults//"),
                 ("it has an empty segment ('//')",), id="empty-segment"),
    pytest.param(SECRET.replace("acme-kv", "kv"),
                 ("'kv' is not a valid name for vaults in a keyvault-secret",), id="vault-name-too-short"),
])
def test_malformed_arm_id(manifests: Any, backends: list[str], resource: str,
                          words: tuple[str, ...]) -> None:
    expect_refused(manifests, backends, with_resource(resource), 18, 11,
                   "secret.read does not accept", *words, ACCEPTS)


@pytest.mark.parametrize(("resource", "words"), [
    pytest.param(SECRET + "/", ("it ends with '/'; remove the trailing slash",), id="trailing-slash"),
    pytest.param(SECRET.replace(SUB, "acme-prod"), ("its subscription 'acme-prod' is not a subscription id",),
                 id="subscription-name"),
    pytest.param(f"{RG}/Microsoft.Sql/servers/acme-sql",
                 ("it names a Microsoft.Sql/servers resource, not one of ",
                  "Microsoft.KeyVault/vaults/secrets"),
                 id="unknown-type"),
])
def test_malformed_arm_id_in_a_raw_entry(manifests: Any, backends: list[str], resource: str,
                                         words: tuple[str, ...]) -> None:
    # The raw entry has one line more than the template entry: the resource is on line 19.
    expect_refused(manifests, backends, with_resource(resource, RAW_ENTRY), 19, 11,
                   "is not a resource this tool recognises on azure", *words)


# --- 2. a resource in another subscription ---------------------------------------------------

@pytest.mark.parametrize(("entry", "line"), [(TEMPLATE_ENTRY, 18), (RAW_ENTRY, 19)], ids=["template", "raw"])
def test_resource_in_another_subscription(manifests: Any, backends: list[str], entry: str,
                                          line: int) -> None:
    expect_refused(manifests, backends, with_resource(SECRET.replace(SUB, OTHER_SUB), entry), line, 11,
                   f"is in subscription {OTHER_SUB}, but the workload is in {SUB}; list it in a "
                   f"workload whose spec.azure.subscription is {OTHER_SUB}, or correct the "
                   "subscription id in the resource ID")


# --- 3. more than 20 federation entries ------------------------------------------------------

def test_more_than_twenty_federation_entries(manifests: Any, backends: list[str]) -> None:
    entries = "".join(f"      - kind: github-actions\n        repository: acme/repo-{i}\n"
                      "        ref: refs/heads/main\n" for i in range(21))
    # Entry i starts on line 12 + 3i; the message points at the 21st (i = 20).
    expect_refused(manifests, backends, AZURE.replace(GITHUB, entries), 72, 9,
                   "workload prod/svc-z: 21 federation entries; Azure allows 20 federated "
                   "credentials per managed identity. Split the workload or trust fewer workflows")


# --- 4. another cloud's resource name ---------------------------------------------------------

@pytest.mark.parametrize(("resource", "what"), [
    ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf", "an AWS ARN"),
    ("projects/acme-prod/secrets/db", "a GCP resource name"),
    ("//secretmanager.googleapis.com/projects/acme-prod/secrets/db", "a GCP resource name"),
], ids=["aws-arn", "gcp-name", "gcp-full-name"])
def test_another_clouds_resource(manifests: Any, backends: list[str], resource: str, what: str) -> None:
    expect_refused(manifests, backends, with_resource(resource), 18, 11,
                   f"secret.read does not accept '{resource}': it is {what}, but Azure resources are "
                   "named by ARM resource IDs (/subscriptions/SUBSCRIPTION_ID/resourceGroups/GROUP/"
                   "providers/NAMESPACE/TYPE/NAME)", ACCEPTS)


def test_aws_arn_in_a_raw_entry(manifests: Any, backends: list[str]) -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"
    expect_refused(manifests, backends, with_resource(arn, RAW_ENTRY), 19, 11,
                   "it is an AWS ARN, but Azure resources are named by ARM resource IDs")


# --- 5. where the identity lives, and who may federate ----------------------------------------

@pytest.mark.parametrize(("old", "new", "line", "column", "words"), [
    pytest.param(f'"{SUB}"', '"acme-prod"', 7, 19,
                 ("subscription 'acme-prod' is not valid: use the subscription id, a GUID such as "
                  "0b1f6471-1bf0-4dda-aec3-cb9272f09590",), id="subscription-name"),
    pytest.param(f'"{SUB}"', f'"{SUB[:-1]}"', 7, 19, ("is not valid: use the subscription id, a GUID",),
                 id="subscription-short"),
    pytest.param("rg-orders", "rg orders", 8, 20,
                 ("resourceGroup 'rg orders' is not valid: 1-90 letters, digits, underscores, hyphens, "
                  "periods and parentheses, not ending in a period",), id="resource-group-space"),
    pytest.param("rg-orders", "rg-orders.", 8, 20, ("resourceGroup 'rg-orders.' is not valid",),
                 id="resource-group-trailing-period"),
    pytest.param("rg-orders", "r" * 91, 8, 20, ("is not valid: 1-90 letters",), id="resource-group-too-long"),
    pytest.param("rg-orders", '""', 8, 20, ("resourceGroup '' is not valid",), id="resource-group-empty"),
    pytest.param("westeurope", "West Europe", 9, 15,
                 ("location 'West Europe' is not valid: use a location name such as westeurope",),
                 id="location-display-name"),
    pytest.param("westeurope", "west-europe", 9, 15, ("location 'west-europe' is not valid",),
                 id="location-hyphen"),
    pytest.param(GITHUB, "      - kind: kubernetes\n        namespace: orders\n"
                         "        serviceAccount: svc-z\n", 12, 9,
                 ("missing required field 'issuer'",), id="kubernetes-without-issuer"),
    pytest.param(GITHUB, "      - kind: kubernetes\n        issuer: http://oidc.example.com\n"
                         "        namespace: orders\n        serviceAccount: svc-z\n", 13, 17,
                 ("issuer 'http://oidc.example.com' is not valid: write the cluster's OIDC issuer URL, "
                  "starting with https://",), id="kubernetes-issuer-not-https"),
    pytest.param("acme/svc-z", "svc-z", 13, 21,
                 ("repository 'svc-z' is not valid: write OWNER/REPO, e.g. acme/payments",),
                 id="github-repository-without-owner"),
    pytest.param("acme/svc-z", "https://github.com/acme/svc-z", 13, 21,
                 ("is not valid: write OWNER/REPO",), id="github-repository-url"),
])
def test_bad_target_or_federation(manifests: Any, backends: list[str], old: str, new: str, line: int,
                                  column: int, words: tuple[str, ...]) -> None:
    assert old in AZURE
    expect_refused(manifests, backends, AZURE.replace(old, new, 1), line, column, *words)


# --- a folder: the fleet path of plan ------------------------------------------------------------

def test_plan_of_a_folder_with_bad_azure_manifests_builds_no_backend(manifests: Any,
                                                                     backends: list[str]) -> None:
    folder = manifests({"a.yaml": with_resource(SECRET + "/"),
                        "b.yaml": with_resource(SECRET.replace(SUB, OTHER_SUB)).replace("svc-z", "svc-y")})
    result = refused(folder, "plan")
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert [line.split(": ", 1)[0] for line in lines] == [f"{folder / 'a.yaml'}:18:11",
                                                          f"{folder / 'b.yaml'}:18:11"]
    assert backends == []
