"""Issue 13 items 2 and 4: escalation approved out of band, the tool's own namespace refused,
and federation trust roots taken from the config (security review H1, H5, H7, M2).

Every guard has an attack test that fails without it, and each refusal is checked for its
exit code (3: a guardrail), its position, what it tells the user to do, and, end to end on
moto, that nothing was created.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, workload
from support.cli import CliResult, run_cli
from support.trust import TEST_TRUST, TEST_TRUST_DATA

ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_worker"
PASS_ROLE = ("    - actions: [iam:PassRole]\n"
             f"      resources: [{ROLE_ARN}]\n"
             "      reason: starts ECS tasks with the worker role\n")
SELF_APPROVED = PASS_ROLE + '      escalation: {reason: "the service launches its own workers"}\n'
SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-orders/providers"
POOL = "projects/123456789012/locations/global/workloadIdentityPools/github"


QUICK = "credentials:\n  verify: {interval: 0s}\n"


def write_config(tmp_path: Path, body: str = "", trust: str = TEST_TRUST, credentials: str = QUICK) -> Path:
    path = tmp_path / "platform" / "workload-ids.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(credentials + trust + body, encoding="utf-8")
    return path


def trust_with(**extra: Any) -> str:
    """The tests' trust section with more fields."""
    return "trust: " + json.dumps({**TEST_TRUST_DATA, **extra}) + "\n"


def approval(workload: str = "prod/svc-a", actions: str = "[iam:PassRole]",
             resources: str = f"[{ROLE_ARN}]", extra: str = "") -> str:
    return ("guardrails:\n  approvedEscalations:\n"
            f"    - workload: {workload}\n{extra}"
            f"      actions: {actions}\n      resources: {resources}\n"
            "      reason: OPS-42 approved by the platform team\n")


def check(config: Path, manifest: Path, verb: str = "validate", *flags: str) -> CliResult:
    result = run_cli(verb, "--config", str(config), *flags, str(manifest))
    assert "Traceback" not in result.err and "internal error" not in result.err
    return result


def problems(result: CliResult) -> list[str]:
    """One positioned line per problem."""
    lines = [ln for ln in result.err.splitlines() if ln.strip()]
    assert all(re.match(r"^.+:\d+:\d+: ", ln) for ln in lines), lines
    return lines


def snippet(result: CliResult) -> str:
    """The config line a refusal tells the platform team to add (one line of flow YAML)."""
    found = [m.group(0) for ln in problems(result)
             if (m := re.search(r"(trust|guardrails): \{.*\}$", ln))]
    assert len(found) == 1, result.err
    return found[0] + "\n"


# Keyless needs someone to trust (validate refuses an empty federation); one line each, so
# the access entries' positions stay where the tests expect them.
GCP_GITHUB = ("[{kind: github-actions, repository: acme/svc, ref: refs/heads/main, "
              "workloadIdentityPool: projects/123456789012/locations/global/workloadIdentityPools/github}]")
AZURE_GITHUB = "[{kind: github-actions, repository: acme/svc, ref: refs/heads/main}]"


def gcp_workload(access: str = "", federation: str = GCP_GITHUB, name: str = "svc-g") -> str:
    access = access or ("    - template: topic.publish\n"
                        "      resources: [projects/acme-prod/topics/orders]\n")
    return ("apiVersion: workload-ids/v1\nkind: Workload\n"
            f"metadata: {{name: {name}, owner: team-a, environment: prod}}\n"
            "spec:\n  provider: gcp\n  gcp: {project: acme-prod}\n"
            f"  credentials:\n    mode: keyless\n    federation: {federation}\n"
            f"  access:\n{access}")


def azure_workload(access: str = "", federation: str = AZURE_GITHUB, name: str = "svc-z") -> str:
    access = access or ("    - template: queue.publish\n      resources:\n        - "
                        f"{RG}/Microsoft.Storage/storageAccounts/acmeorders/queueServices/default"
                        "/queues/jobs\n")
    return ("apiVersion: workload-ids/v1\nkind: Workload\n"
            f"metadata: {{name: {name}, owner: team-a, environment: prod}}\n"
            "spec:\n  provider: azure\n"
            f"  azure: {{subscription: \"{SUB}\", resourceGroup: rg-orders, location: westeurope}}\n"
            f"  credentials:\n    mode: keyless\n    federation: {federation}\n"
            f"  access:\n{access}")


def write(manifests: Any, text: str, name: str = "svc.yaml") -> Path:
    return manifests({name: text}) / name


# --- A. escalation is approved in the config, never by the manifest -----------------------

def test_self_approved_escalation_is_refused_and_apply_creates_nothing(aws: Any, manifests: Any,
                                                                       tmp_path: Path) -> None:
    config = write_config(tmp_path)
    path = write(manifests, workload(access=SELF_APPROVED))
    result = check(config, path)
    assert result.code == 3, result.err
    [line] = problems(result)
    assert line.startswith(f"{path}:17:7: guardrail: iam:PassRole can escalate privilege")
    assert "a manifest cannot approve its own escalation" in line
    assert ("escalation.reason ('the service launches its own workers') documents the request; "
            "it does not approve it") in line
    # The refusal names exactly the approval the platform team would add.
    assert snippet(result) == (
        'guardrails: {approvedEscalations: [{workload: "prod/svc-a", provider: aws, '
        f'target: "{ACCOUNT}", actions: ["iam:PassRole"], resources: ["{ROLE_ARN}"], '
        'reason: "TICKET-123: who approved this, and why the workload needs it"}]}\n')
    applied = check(config, path, "apply", "--auto-approve")
    assert applied.code == 3
    assert aws.list_roles(PathPrefix="/workload-ids/")["Roles"] == []


def test_approved_escalation_passes_and_applies(aws: Any, manifests: Any, tmp_path: Path) -> None:
    path = write(manifests, workload(access=SELF_APPROVED))
    refused = check(write_config(tmp_path), path)
    # The snippet the refusal printed is what the platform team pastes into the config.
    config = write_config(tmp_path, snippet(refused).replace("TICKET-123", "OPS-42"))
    assert check(config, path).code == 0
    applied = check(config, path, "apply", "--auto-approve")
    assert applied.code == 0, applied.err
    policy = aws.get_role_policy(RoleName="wid_prod_svc-a", PolicyName="workload-ids")["PolicyDocument"]
    assert {"Sid": "Raw0", "Effect": "Allow", "Action": "iam:PassRole", "Resource": ROLE_ARN} \
        in policy["Statement"] or any(st.get("Resource") == ROLE_ARN and "iam:PassRole" in
                                      json.dumps(st["Action"]) for st in policy["Statement"])


def test_approval_without_a_manifest_reason_is_enough(manifests: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, approval())
    assert check(config, write(manifests, workload(access=PASS_ROLE))).code == 0


@pytest.mark.parametrize("other", [
    pytest.param(approval(workload="prod/svc-b"), id="another-workload"),
    pytest.param(approval(workload="staging/svc-a"), id="another-environment"),
    pytest.param(approval(actions="[iam:PutRolePolicy]"), id="another-action"),
    pytest.param(approval(resources=f"[{ROLE_ARN}-2]"), id="another-resource"),
    pytest.param(approval(resources=f"[{ROLE_ARN.upper()}]"), id="resource-in-another-case"),
    pytest.param(approval(extra="      provider: gcp\n"), id="another-provider"),
    pytest.param(approval(extra='      target: "210987654321"\n'), id="another-account"),
])
def test_an_approval_of_something_else_does_not_help(manifests: Any, tmp_path: Path,
                                                     other: str) -> None:
    config = write_config(tmp_path, other)
    result = check(config, write(manifests, workload(access=SELF_APPROVED)))
    assert result.code == 3
    assert "iam:PassRole can escalate privilege" in result.err


def test_an_approval_of_one_action_does_not_cover_a_second(manifests: Any, tmp_path: Path) -> None:
    access = PASS_ROLE.replace("[iam:PassRole]", "[iam:PassRole, sts:AssumeRole]")
    result = check(write_config(tmp_path, approval()), write(manifests, workload(access=access)))
    assert result.code == 3
    [line] = problems(result)
    assert "sts:AssumeRole can escalate" in line and "iam:PassRole," not in line
    assert 'actions: ["sts:AssumeRole"],' in result.err


def test_aws_approval_matches_action_names_in_any_case(manifests: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, approval(actions="[IAM:passrole]"))
    assert check(config, write(manifests, workload(access=PASS_ROLE))).code == 0


def test_action_comparison_per_cloud() -> None:
    from workload_ids.approvals import same_action
    assert same_action("aws", "iam:PassRole", "IAM:PASSROLE")
    assert same_action("azure", "Microsoft.Authorization/roleAssignments/write",
                       "microsoft.authorization/ROLEASSIGNMENTS/write")
    # GCP permissions are case-sensitive: a different case is a different (unknown) name.
    assert not same_action("gcp", "iam.serviceAccounts.actAs", "iam.serviceaccounts.actas")


# --- the approval list in the config ------------------------------------------------------

@pytest.mark.parametrize(("body", "line", "column", "words"), [
    pytest.param(approval(workload="payments-api"), 5, 17, "ENVIRONMENT/NAME", id="workload-form"),
    pytest.param(approval(actions="[]"), 6, 16, "actions", id="empty-actions"),
    pytest.param(approval(resources="[]"), 7, 18, "resources", id="empty-resources"),
    pytest.param(approval(actions="['iam:*']"), 6, 17, "wildcard", id="wildcard-action"),
    pytest.param(approval().replace("OPS-42 approved by the platform team", "ok"), 8, 15, "10",
                 id="reason-too-short"),
])
def test_a_bad_approval_is_a_positioned_config_error(manifests: Any, tmp_path: Path, body: str,
                                                     line: int, column: int, words: str) -> None:
    config = write_config(tmp_path, body, trust="")
    result = check(config, write(manifests, workload(access=PASS_ROLE)))
    assert result.code == 1, result.err
    assert result.err.startswith(f"{config}:{line}:{column}: "), result.err
    assert words in result.err


def test_lint_warns_about_stale_approvals(manifests: Any, tmp_path: Path) -> None:
    body = approval(actions="[iam:PassRole, iam:PutRolePolicy]") + (
        "    - workload: prod/gone\n      actions: [sts:AssumeRole]\n"
        f"      resources: [{ROLE_ARN}]\n      reason: OPS-7 for a retired service\n")
    config = write_config(tmp_path, body)
    folder = manifests({"svc.yaml": workload(access=PASS_ROLE)})
    result = check(config, folder, "lint")
    assert result.code == 0, result.err
    assert (f"{config}:6:7: warning: approval for prod/svc-a covers what the workload no longer "
            "asks for: iam:PutRolePolicy") in result.out
    assert (f"{config}:10:7: warning: approval for prod/gone is stale: no manifest declares that "
            "workload") in result.out
    # A per-service run sees one workload: approvals for the others are not judged there.
    single = check(config, folder / "svc.yaml", "lint")
    assert "prod/gone" not in single.out and "iam:PutRolePolicy" in single.out


# --- B. the tool's own namespace ----------------------------------------------------------

KEY_SECRET = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:workload-ids/prod/partner-feed-AbCdEf"


def secret_read(resource: str) -> str:
    return f"    - template: secret.read\n      resources: [{resource}]\n"


@pytest.mark.parametrize("resource", [
    pytest.param(KEY_SECRET, id="key-secret"),
    pytest.param(KEY_SECRET.replace("partner-feed-", "partner-feed.lock-"), id="lock"),
    pytest.param(KEY_SECRET.replace("workload-ids/prod", "workload-ids/staging"), id="other-env"),
])
def test_aws_grant_on_another_workloads_key_is_refused(manifests: Any, tmp_path: Path,
                                                       resource: str) -> None:
    # Even an approval for it does not help: nothing may read another workload's credentials.
    config = write_config(tmp_path, approval(actions="[secretsmanager:GetSecretValue]",
                                             resources=f"[{resource}]"))
    path = write(manifests, workload(access=secret_read(resource)))
    result = check(config, path)
    assert result.code == 3
    [line] = problems(result)
    assert line.startswith(f"{path}:18:19: guardrail: resource {resource!r} is a key-mode secret "
                           "or lock of workload-ids")
    assert "would give this workload another workload's credentials" in line


def test_aws_raw_grant_on_a_key_secret_is_refused_end_to_end(aws: Any, manifests: Any,
                                                            tmp_path: Path) -> None:
    # A partial ARN (no random suffix) names the same secret in a policy with a wildcard;
    # the raw entry is refused in both forms, and apply creates nothing.
    raw = ("    - actions: [secretsmanager:GetSecretValue]\n"
           f"      resources: [{KEY_SECRET}, {KEY_SECRET[:-7]}]\n"
           "      reason: reads the partner feed's key\n")
    config = write_config(tmp_path)
    path = write(manifests, workload(access=raw))
    result = check(config, path, "apply", "--auto-approve")
    assert result.code == 3
    assert [ln.split(": guardrail: ")[0] for ln in problems(result)] == [
        f"{path}:18:19", f"{path}:18:{19 + len(KEY_SECRET) + 2}"]
    assert aws.list_roles(PathPrefix="/workload-ids/")["Roles"] == []


def test_the_namespace_follows_credentials_secret_name(manifests: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, credentials=QUICK + '  secretName: "keys/{environment}/{name}"\n')
    own = KEY_SECRET.replace("workload-ids/prod/partner-feed", "keys/prod/partner-feed")
    assert check(config, write(manifests, workload(access=secret_read(own)))).code == 3
    # ... and an ordinary secret is still granted
    assert check(config, write(manifests, workload(access=secret_read(KEY_SECRET)))).code == 0
    plain = KEY_SECRET.replace("workload-ids/prod/partner-feed", "payments/db")
    assert check(config, write(manifests, workload(access=secret_read(plain)))).code == 0


@pytest.mark.parametrize("secret", ["workload-ids_prod_partner-feed", "workload-ids_prod_partner-feed_lock"])
def test_gcp_grant_on_another_workloads_key_is_refused(manifests: Any, tmp_path: Path,
                                                       secret: str) -> None:
    resource = f"projects/acme-prod/secrets/{secret}"
    path = write(manifests, gcp_workload(access=secret_read(resource)))
    result = check(write_config(tmp_path), path)
    assert result.code == 3
    [line] = problems(result)
    assert line.startswith(f"{path}:12:19: guardrail: resource {resource!r} is a key-mode secret")
    ok = gcp_workload(access=secret_read("projects/acme-prod/secrets/orders-db-password"))
    assert check(write_config(tmp_path), write(manifests, ok, "ok.yaml")).code == 0


def test_gcp_namespace_maps_names_as_the_secret_store_does() -> None:
    pytest.importorskip("google.cloud.secretmanager")
    from workload_ids.approvals import gcp_secret_id
    from workload_ids.providers.gcp.render import secret_id
    for name in ("workload-ids/prod/partner-feed", "a.b@c+d=e/f", "x" * 300):
        assert gcp_secret_id(name) == secret_id(name)


AZURE_TOOL = ("azure:\n  keyVaultUrl: https://acme-keys.vault.azure.net\n"
              "  lockContainerUrl: https://acmelocks.blob.core.windows.net/workload-ids-locks\n")


@pytest.mark.parametrize("resource", [
    pytest.param(f"{RG}/Microsoft.KeyVault/vaults/acme-keys/secrets/prod-partner-feed", id="secret"),
    pytest.param(f"{RG}/microsoft.keyvault/VAULTS/ACME-KEYS/secrets/anything", id="secret-case"),
    pytest.param(f"{RG}/Microsoft.KeyVault/vaults/acme-keys", id="the-vault"),
])
def test_azure_grant_in_the_tools_vault_is_refused(manifests: Any, tmp_path: Path,
                                                   resource: str) -> None:
    config = write_config(tmp_path, AZURE_TOOL)
    path = write(manifests, azure_workload(access=secret_read(resource)))
    result = check(config, path)
    assert result.code == 3
    [line] = problems(result)
    assert line.startswith(f"{path}:12:19: guardrail: resource {resource!r} is in Key Vault ")
    assert "where workload-ids keeps every key-mode client secret" in line


def test_azure_grant_on_the_lock_container_is_refused(manifests: Any, tmp_path: Path) -> None:
    container = (f"{RG}/Microsoft.Storage/storageAccounts/acmelocks/blobServices/default/"
                 "containers/workload-ids-locks")
    access = f"    - template: object-storage.read\n      resources: [{container}]\n"
    result = check(write_config(tmp_path, AZURE_TOOL), write(manifests, azure_workload(access=access)))
    assert result.code == 3
    assert "the blob container of workload-ids' locks (azure.lockContainerUrl)" in result.err


def test_whole_vault_grant_needs_an_approval(manifests: Any, tmp_path: Path) -> None:
    vault = f"{RG}/Microsoft.KeyVault/vaults/team-kv"
    path = write(manifests, azure_workload(access=secret_read(vault)))
    refused = check(write_config(tmp_path, AZURE_TOOL), path)
    assert refused.code == 3
    [line] = problems(refused)
    assert line.startswith(f"{path}:11:7: guardrail: a grant on a whole Key Vault ({vault}) reads "
                           "every secret in it")
    assert 'workload: "prod/svc-z"' in refused.err
    # The printed approval, pasted into the config, lets it through.
    config = write_config(tmp_path, AZURE_TOOL + snippet(refused))
    assert check(config, path).code == 0
    # A vault's secret (not the whole vault) needs none.
    one = write(manifests, azure_workload(access=secret_read(vault + "/secrets/db")), "one.yaml")
    assert check(write_config(tmp_path, AZURE_TOOL), one).code == 0


# The keys the tool signs markers and audit records with are its namespace too: a workload
# that reads one can forge the markers cleanup trusts or the records restore believes.
AWS_SECRET = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:"
SINK = {"aws": "s3://acme-audit/trail", "gcp": "gs://acme-audit/trail",
        "azure": "https://acmeaudit.blob.core.windows.net/trail/records"}


def sink(provider: str, key: str) -> str:
    return f"audit:\n  sink:\n    url: {SINK[provider]}\n    signingKey: {key}\n"


@pytest.mark.parametrize(("provider", "resource", "body"), [
    pytest.param("gcp", "projects/acme-prod/secrets/workload-ids-signing-key", "", id="gcp-marker-key"),
    pytest.param("aws", AWS_SECRET + "workload-ids/signing-key-AbCdEf",
                 '  secretName: "keys/{environment}/{name}"\n', id="aws-marker-key-other-prefix"),
    pytest.param("aws", AWS_SECRET + "platform/audit-key-AbCdEf", sink("aws", "platform/audit-key"),
                 id="aws-audit-key"),
    pytest.param("gcp", "projects/acme-prod/secrets/wid-audit-key",
                 sink("gcp", "projects/acme-prod/secrets/wid-audit-key"), id="gcp-audit-key"),
    pytest.param("azure", f"{RG}/Microsoft.KeyVault/vaults/audit-kv/secrets/WID-AUDIT",
                 sink("azure", "https://audit-kv.vault.azure.net/secrets/wid-audit"), id="azure-audit-key"),
    pytest.param("azure", f"{RG}/Microsoft.KeyVault/vaults/audit-kv",
                 sink("azure", "https://audit-kv.vault.azure.net/secrets/wid-audit"), id="azure-its-vault"),
])
def test_a_grant_on_a_signing_key_is_refused_even_when_approved(manifests: Any, tmp_path: Path, provider: str,
                                                                resource: str, body: str) -> None:
    text = {"aws": workload, "gcp": gcp_workload, "azure": azure_workload}[provider](
        access=secret_read(resource))
    path = write(manifests, text)
    credentials = QUICK + body if body.startswith("  secretName") else QUICK
    read = {"aws": "secretsmanager:GetSecretValue", "gcp": "secretmanager.versions.access",
            "azure": "Microsoft.KeyVault/vaults/secrets/getSecret/action"}[provider]
    name = {"aws": "svc-a", "gcp": "svc-g", "azure": "svc-z"}[provider]
    config = write_config(tmp_path, ("" if body.startswith("  secretName") else body) + approval(
        workload=f"prod/{name}", actions=f"[{read}]", resources=f'["{resource}"]',
        extra=f"      provider: {provider}\n"), credentials=credentials)
    result = check(config, path)
    assert result.code == 3, result.err
    [line] = problems(result)
    row = {"aws": 18, "gcp": 12, "azure": 12}[provider]
    assert line.startswith(f"{path}:{row}:19: guardrail: resource {resource!r} is a signing key of "
                           "workload-ids"), line
    assert "no manifest may hold a grant on it, approved or not" in line


def test_a_signing_key_elsewhere_leaves_ordinary_secrets_alone(manifests: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, sink("aws", "platform/audit-key"))
    for name in ("platform/audit-key-2-AbCdEf", "payments/db-AbCdEf"):
        assert check(config, write(manifests, workload(access=secret_read(AWS_SECRET + name)))).code == 0


def test_aws_grant_on_the_audit_key_creates_nothing(aws: Any, manifests: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, sink("aws", f"{AWS_SECRET}platform/audit-key-AbCdEf"))
    # A raw entry on the partial ARN (no random suffix), the config naming the full one.
    raw = ("    - actions: [secretsmanager:GetSecretValue]\n"
           f"      resources: [{AWS_SECRET}platform/audit-key]\n      reason: signs its own records\n")
    path = write(manifests, workload(access=raw))
    assert check(config, path, "apply", "--auto-approve").code == 3
    assert aws.list_roles(PathPrefix="/workload-ids/")["Roles"] == []


# --- C. trust roots come from the config --------------------------------------------------

def k8s(issuer: str, pool: str = "") -> str:
    return (f"\n      - kind: kubernetes\n        issuer: {issuer}\n        namespace: jobs\n"
            f"        serviceAccount: svc\n" + (f"        workloadIdentityPool: {pool}\n" if pool else ""))


def test_azure_kubernetes_issuer_not_allow_listed_is_refused(manifests: Any, tmp_path: Path) -> None:
    path = write(manifests, azure_workload(federation=k8s("https://attacker.example.net/oidc")))
    result = check(write_config(tmp_path), path)
    assert result.code == 3
    [line] = problems(result)
    assert line.startswith(f"{path}:11:17: guardrail: issuer https://attacker.example.net/oidc is "
                           "not in the config's trust.allowedIssuers")
    assert snippet(result) == 'trust: {allowedIssuers: ["https://attacker.example.net/oidc"]}\n'


def test_an_allow_listed_issuer_matches_with_or_without_a_trailing_slash(manifests: Any,
                                                                        tmp_path: Path) -> None:
    trust = "trust:\n  allowedIssuers: [https://aks.example.net/tenant/]\n"
    path = write(manifests, azure_workload(federation=k8s("https://aks.example.net/tenant")))
    assert check(write_config(tmp_path, trust=trust), path).code == 0


def test_without_trust_config_federation_is_refused_with_the_lines_to_add(manifests: Any,
                                                                         tmp_path: Path) -> None:
    path = write(manifests, workload())
    result = check(write_config(tmp_path, trust=""), path)
    assert result.code == 3
    assert problems(result)[0].startswith(f"{path}:14:21: guardrail: GitHub owner 'acme' is not in "
                                          "the config's trust.allowedGithubOwners")
    assert snippet(result) == 'trust: {allowedGithubOwners: ["acme"]}\n'
    # The printed line, pasted into the config, is the whole fix.
    assert check(write_config(tmp_path, trust=snippet(result)), path).code == 0


def test_github_owner_not_allowed_is_refused(aws: Any, manifests: Any, tmp_path: Path) -> None:
    fed = "      - kind: github-actions\n        repository: evil-corp/svc-a\n        ref: refs/heads/main\n"
    path = write(manifests, workload(federation=fed))
    result = check(write_config(tmp_path), path, "apply", "--auto-approve")
    assert result.code == 3
    assert "GitHub owner 'evil-corp' is not in the config's trust.allowedGithubOwners (acme)" in result.err
    assert aws.list_roles(PathPrefix="/workload-ids/")["Roles"] == []


def test_github_owner_matches_in_any_case(manifests: Any, tmp_path: Path) -> None:
    fed = "      - kind: github-actions\n        repository: ACME/svc-a\n        ref: refs/heads/main\n"
    config = write_config(tmp_path, trust="trust:\n  allowedGithubOwners: [Acme]\n")
    assert check(config, write(manifests, workload(federation=fed))).code == 0


def test_gcp_pool_in_another_project_is_refused(manifests: Any, tmp_path: Path) -> None:
    foreign = "projects/999999999999/locations/global/workloadIdentityPools/attacker"
    fed = f"\n      - kind: github-actions\n        repository: acme/svc\n        ref: refs/heads/main\n" \
          f"        workloadIdentityPool: {foreign}\n"
    path = write(manifests, gcp_workload(federation=fed))
    result = check(write_config(tmp_path), path)
    assert result.code == 3
    [line] = problems(result)
    assert line.startswith(f"{path}:13:31: guardrail: pool {foreign} is in project number "
                           "999999999999, not in the workload's project acme-prod (123456789012)")
    # Listed by name, or by its project: trusted.
    for listed in (foreign, "projects/999999999999"):
        assert check(write_config(tmp_path, trust=trust_with(allowedPools=[listed])), path).code == 0


def test_gcp_pool_of_a_project_whose_number_is_unknown_is_refused(manifests: Any,
                                                                  tmp_path: Path) -> None:
    fed = f"\n      - kind: github-actions\n        repository: acme/svc\n        ref: refs/heads/main\n" \
          f"        workloadIdentityPool: {POOL}\n"
    path = write(manifests, gcp_workload(federation=fed))
    result = check(write_config(tmp_path, trust="trust:\n  allowedGithubOwners: [acme]\n"), path)
    assert result.code == 3
    assert "the config does not say which number project acme-prod has" in result.err
    assert snippet(result) == 'trust: {gcpProjectNumbers: {"acme-prod": 123456789012}}\n'
    assert check(write_config(tmp_path), path).code == 0  # TEST_TRUST has the number


def test_aws_service_not_allowed_is_refused(manifests: Any, tmp_path: Path) -> None:
    fed = "      - kind: aws-service\n        service: ec2.amazonaws.com\n"
    path = write(manifests, workload(federation=fed))
    result = check(write_config(tmp_path), path)
    assert result.code == 3
    [line] = problems(result)
    assert line.startswith(f"{path}:14:18: guardrail: service ec2.amazonaws.com is not in "
                           "trust.allowedAwsServices (ecs-tasks.amazonaws.com, lambda.amazonaws.com)")
    listed = trust_with(allowedAwsServices=["ec2.amazonaws.com"])
    assert check(write_config(tmp_path, trust=listed), path).code == 0
    # The default list: ECS tasks and Lambda.
    ecs = write(manifests, workload(federation=fed.replace("ec2", "ecs-tasks")), "ecs.yaml")
    assert check(write_config(tmp_path), ecs).code == 0


def test_aws_preflight_hands_out_no_command_for_an_unlisted_issuer(bare_aws: Any, manifests: Any,
                                                                  tmp_path: Path) -> None:
    from workload_ids.calls import CallSeam
    from workload_ids.clouds import connect
    from workload_ids.config import load_config
    from workload_ids.validate import validate
    issuer = "https://oidc.example.net/cluster"
    path = write(manifests, workload(federation=k8s(issuer)[1:]))
    listed = load_config(write_config(tmp_path, trust=f"trust:\n  allowedIssuers: [{issuer}]\n"))
    compiled = validate([path], listed)
    compiled.raise_for_errors()
    # The platform team listed it: the preflight says how they register it.
    cloud: Any = connect("aws", listed, CallSeam())
    [known] = cloud.identities.missing_issuers([cloud.desired(cw) for cw in compiled.compiled])
    assert "aws iam create-open-id-connect-provider --url https://oidc.example.net/cluster" in known.message
    # With a config that does not list it, no ready-made command.
    unlisted = load_config(write_config(tmp_path, trust=""))
    cloud = connect("aws", unlisted, CallSeam())
    [message] = cloud.identities.missing_issuers([cloud.desired(cw) for cw in compiled.compiled])
    assert "create-open-id-connect-provider" not in message.message
    assert "not in the config's trust.allowedIssuers" in message.message


# --- lint: trust that is weaker than it reads ---------------------------------------------

def test_lint_warns_on_environment_and_tag_trust(manifests: Any, tmp_path: Path) -> None:
    fed = ("      - kind: github-actions\n        repository: acme/svc-a\n        environment: production\n"
           "      - kind: github-actions\n        repository: acme/svc-a\n        ref: refs/tags/v1.0.0\n")
    path = write(manifests, workload(federation=fed))
    result = check(write_config(tmp_path), path, "lint")
    assert result.code == 0, result.err
    assert (f"{path}:15:22: warning: environment 'production' trusts any workflow run that deploys "
            "to it, from any branch, unless the GitHub environment has protection rules") in result.out
    assert (f"{path}:18:14: warning: refs/tags/v1.0.0 is a tag: anyone who can push tags can move "
            "or create it") in result.out


# --- immutable GitHub ids -----------------------------------------------------------------

IDS = ("      - kind: github-actions\n        repository: acme/svc-a\n        ref: refs/heads/main\n"
       "        repositoryId: 123456\n")


def test_aws_trust_checks_the_repository_id(aws: Any, manifests: Any, tmp_path: Path) -> None:
    other = "      - kind: github-actions\n        repository: acme/tools\n        ref: refs/heads/main\n"
    path = write(manifests, workload(federation=IDS + other))
    applied = check(write_config(tmp_path), path, "apply", "--auto-approve")
    assert applied.code == 0, applied.err
    trust = aws.get_role(RoleName="wid_prod_svc-a")["Role"]["AssumeRolePolicyDocument"]
    gh = "token.actions.githubusercontent.com"
    conditions = [st["Condition"]["StringEquals"] for st in trust["Statement"]
                  if st["Action"] == "sts:AssumeRoleWithWebIdentity"]
    # The entry with an id gets a statement of its own; the other keeps the plain subject.
    assert {f"{gh}:aud": "sts.amazonaws.com", f"{gh}:sub": "repo:acme/svc-a:ref:refs/heads/main",
            f"{gh}:repository_id": "123456"} in conditions
    assert {f"{gh}:aud": "sts.amazonaws.com", f"{gh}:sub": "repo:acme/tools:ref:refs/heads/main"} \
        in conditions


@pytest.mark.parametrize(("provider", "field", "words"), [
    pytest.param("aws", "repositoryOwnerId", "AWS STS checks GitHub's repository_id claim but not "
                 "repository_owner_id", id="aws-owner-id"),
    pytest.param("gcp", "repositoryId", "assertion.repository_id == '123456'", id="gcp"),
    pytest.param("azure", "repositoryId", "match only issuer, subject and audience", id="azure"),
])
def test_an_id_the_cloud_cannot_check_is_refused(manifests: Any, tmp_path: Path, provider: str,
                                                 field: str, words: str) -> None:
    entry = IDS.replace("repositoryId", field)
    if provider == "aws":
        text = workload(federation=entry)
    elif provider == "gcp":
        text = gcp_workload(federation="\n" + entry + f"        workloadIdentityPool: {POOL}\n")
    else:
        text = azure_workload(federation="\n" + entry)
    path = write(manifests, text)
    result = check(write_config(tmp_path), path)
    assert result.code == 1, result.err
    [line] = problems(result)
    row = {"aws": 16, "gcp": 13, "azure": 13}[provider]
    assert line.startswith(f"{path}:{row}:9: {field} cannot be enforced on {provider}: "), line
    assert words in line and f"Remove {field} from this entry" in line
