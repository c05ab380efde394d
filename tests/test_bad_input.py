"""Bad input: every problem is reported as ``FILE:LINE:COLUMN: message`` at the node that
causes it, all at once, with exit 1 (exit 3 only when every problem is a guardrail
refusal), and never as a traceback. Nothing is changed in any cloud.

Most manifests here come from ``conftest.workload()``, whose layout is fixed::

     1 apiVersion: workload-ids/v1
     2 kind: Workload
     3 metadata:
     4   name: NAME              <- value at column 9
     5   owner: OWNER            <- value at column 10
     6   environment: ENV        <- value at column 16
     7 spec:
     8   provider: aws           <- value at column 13
     9   aws: {account: "123456789012", region: eu-west-1}
    10   credentials:
    11     mode: keyless
    12     federation:
    13       - kind: ...         <- the first federation entry (mapping) at column 9
    ..
    16   access:                 <- when the federation body is the default three lines
    17     - ...                 <- the first access entry (mapping) at column 7
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, workload
from support.cli import CliResult, run_cli
from support.trust import TEST_TRUST

QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:jobs"


def validate(*args: str) -> CliResult:
    result = run_cli("validate", *args)
    assert "Traceback" not in result.err
    assert "internal error" not in result.err
    return result


def error_lines(result: CliResult) -> list[str]:
    return [line for line in result.err.splitlines() if line.strip()]


def expect_one(manifests: Any, text: str, line: int, column: int, *words: str,
               code: int = 1, name: str = "bad.yaml") -> str:
    """Validate ``text`` as one file; exactly one problem, at ``line:column``."""
    path = manifests({name: text}) / name
    result = validate(str(path))
    assert result.code == code, result
    assert result.out == ""
    lines = error_lines(result)
    assert len(lines) == 1, lines
    prefix = f"{path}:{line}:{column}: "
    assert lines[0].startswith(prefix), lines[0]
    message = lines[0][len(prefix):]  # the words are looked for here, not in the tmp path
    for word in words:
        assert word in message, (word, message)
    return message


def block_entry(head: str, *resources: str, extra: str = "") -> str:
    """``    - HEAD`` with resources as a block list (each resource at column 11)."""
    items = "".join(f"        - {r}\n" for r in resources)
    return f"    - {head}\n      resources:\n{items}{extra}"


# --- malformed YAML -------------------------------------------------------------------

def test_bad_indentation(manifests: Any) -> None:
    text = ("apiVersion: workload-ids/v1\nkind: Workload\nmetadata:\n"
            "  name: svc-a\n   owner: team-a\n")
    # PyYAML notices the problem at the ':' after the over-indented key.
    expect_one(manifests, text, 5, 9, "invalid YAML", "mapping values are not allowed")


def test_unclosed_flow_mapping(manifests: Any) -> None:
    text = ("apiVersion: workload-ids/v1\nkind: Workload\n"
            "metadata: {name: svc-a, owner: team-a\nspec:\n  provider: aws\n")
    # Reported where the parser gave up (the ':' of 'spec:'), not at the '{' on line 3.
    expect_one(manifests, text, 4, 5, "invalid YAML", "did not find expected ',' or '}'")


def test_unclosed_flow_sequence(manifests: Any) -> None:
    text = workload(access="    - template: queue.consume\n      resources: [" + QUEUE + "\n")
    # The file has 18 lines; the parser reaches the end of the input (line 19) first.
    expect_one(manifests, text, 19, 1, "invalid YAML", "did not find expected ',' or ']'")


def test_tab_indentation(manifests: Any) -> None:
    text = "apiVersion: workload-ids/v1\nkind: Workload\nmetadata:\n\tname: svc-a\n"
    expect_one(manifests, text, 4, 1, "invalid YAML", "cannot start any token")


def test_duplicate_key(manifests: Any) -> None:
    text = workload().replace("  owner: team-a\n", "  owner: team-a\n  owner: team-b\n")
    expect_one(manifests, text, 6, 3, "invalid YAML", "duplicate key 'owner'")


def test_yaml_merge_key_is_refused(manifests: Any) -> None:
    text = ("base: &b {name: svc-a}\napiVersion: workload-ids/v1\nkind: Workload\n"
            "metadata:\n  <<: *b\n")
    expect_one(manifests, text, 5, 3, "invalid YAML", "merge keys")


def test_unreadable_manifest(manifests: Any) -> None:
    folder = manifests({})
    path = folder / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00not utf-8")
    result = validate(str(path))
    assert result.code == 1
    found = error_lines(result)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:1:1: cannot read file: ")


def test_missing_manifest_path(manifests: Any) -> None:
    missing = str(manifests({}) / "nope.yaml")
    result = validate(missing)
    assert result.code == 1
    assert error_lines(result) == [f"{missing}:1:1: no such file or directory"]


# --- unknown fields (with the close name suggested) ------------------------------------

@pytest.mark.parametrize(("text", "line", "column", "words"), [
    pytest.param(workload() + "spek: {}\n", 19, 1,
                 ("unknown field 'spek'", "did you mean 'spec'?"), id="top-level"),
    pytest.param(workload().replace("  owner: team-a\n", "  owner: team-a\n  ownr: x\n"), 6, 3,
                 ("unknown field 'ownr'", "did you mean 'owner'?", "allowed here: name, owner"),
                 id="metadata"),
    pytest.param(workload(federation="      - kind: github-actions\n        repository: acme/x\n"
                                     "        refs: refs/heads/main\n"), 15, 9,
                 ("unknown field 'refs'", "did you mean 'ref'?"), id="federation-entry"),
    pytest.param(workload(access=f"    - templat: queue.consume\n      resources: [{QUEUE}]\n"),
                 17, 7, ("unknown field 'templat'", "did you mean 'template'?"),
                 id="access-entry"),
])
def test_unknown_field(manifests: Any, text: str, line: int, column: int,
                       words: tuple[str, ...]) -> None:
    expect_one(manifests, text, line, column, *words)


def test_misspelt_required_field_is_one_error(manifests: Any) -> None:
    """The did-you-mean says it all: no "missing required field 'region'" beside it."""
    text = workload().replace("region: eu-west-1}", "regoin: eu-west-1}")
    path = manifests({"bad.yaml": text}) / "bad.yaml"
    result = validate(str(path))
    assert result.code == 1
    # the flow mapping {account: ..., regoin: ...} starts at column 8; 'regoin' at 34
    assert error_lines(result) == [
        f"{path}:9:34: unknown field 'regoin'; did you mean 'region'? "
        "(allowed here: account, region, maxSessionDuration)",
    ]


def test_unknown_federation_kind(manifests: Any) -> None:
    text = workload(federation="      - kind: gitlab\n        repository: acme/x\n")
    expect_one(manifests, text, 13, 9, "federation 'kind' must be one of", "github-actions")


# --- wrong types ------------------------------------------------------------------------

def test_account_as_unquoted_int(manifests: Any) -> None:
    text = workload().replace('account: "123456789012"', "account: 123456789012")
    expect_one(manifests, text, 9, 18, "'account' must be a string, not int", "quote")


def test_resources_as_a_string(manifests: Any) -> None:
    text = workload(access=f"    - template: queue.consume\n      resources: {QUEUE}\n")
    expect_one(manifests, text, 18, 18, "'resources' must be a list, not str")


def test_access_as_a_mapping(manifests: Any) -> None:
    text = workload(access=f"    template: queue.consume\n    resources: [{QUEUE}]\n")
    expect_one(manifests, text, 17, 5, "'access' must be a list, not dict")


def test_metadata_null(manifests: Any) -> None:
    text = workload().replace("metadata:\n  name: svc-a\n  owner: team-a\n  environment: prod\n",
                              "metadata:\n")
    expect_one(manifests, text, 3, 10, "'metadata' must be a mapping")


def test_empty_resources(manifests: Any) -> None:
    text = workload(access="    - template: queue.consume\n      resources: []\n")
    expect_one(manifests, text, 18, 18, "'resources' must not be empty")


# --- access entries ---------------------------------------------------------------------

def test_unknown_template_suggests_close_name(manifests: Any) -> None:
    text = workload(access=f"    - template: queue.consme\n      resources: [{QUEUE}]\n")
    expect_one(manifests, text, 17, 17, "unknown template 'queue.consme'",
               "did you mean 'queue.consume'?", "available:")


def test_raw_actions_without_reason(manifests: Any) -> None:
    text = workload(access=f"    - actions: [sqs:SendMessage]\n      resources: [{QUEUE}]\n")
    expect_one(manifests, text, 17, 7, "raw 'actions' need a 'reason'")


def test_template_and_actions_both(manifests: Any) -> None:
    text = workload(access=(f"    - template: queue.consume\n      actions: [sqs:SendMessage]\n"
                            f"      resources: [{QUEUE}]\n      reason: sends and consumes\n"))
    expect_one(manifests, text, 17, 7, "has both 'template' and raw 'actions'")


def test_wildcard_raw_actions(manifests: Any) -> None:
    text = workload(access=("    - actions: [s3:*, s3:Get*]\n      resources: [arn:aws:s3:::bucket-a]\n"
                            "      reason: reads the bucket\n"))
    path = manifests({"bad.yaml": text}) / "bad.yaml"
    result = validate(str(path))
    assert result.code == 1
    assert error_lines(result) == [
        f"{path}:17:17: action 's3:*' has a wildcard; list exact actions",
        f"{path}:17:23: action 's3:Get*' has a wildcard; list exact actions",
    ]


def test_wildcard_raw_resource(manifests: Any) -> None:
    text = workload(access=block_entry("actions: [s3:GetObject]", "arn:aws:s3:::bucket-a/*",
                                       extra="      reason: reads the bucket\n"))
    expect_one(manifests, text, 19, 11, "'arn:aws:s3:::bucket-a/*' has a wildcard")


def test_resource_of_the_wrong_kind(manifests: Any) -> None:
    text = workload(access=block_entry("template: object-storage.read", QUEUE))
    expect_one(manifests, text, 19, 11, "object-storage.read does not accept",
               "it is a sqs-queue", "it accepts s3-bucket")


@pytest.mark.parametrize(("resource", "words"), [
    pytest.param("arn:aws:sqs:eu-west-1:999999999999:jobs",
                 ("in account 999999999999", "workload is in 123456789012"), id="account"),
    pytest.param(f"arn:aws:sqs:us-east-1:{ACCOUNT}:jobs",
                 ("in region us-east-1", "workload is in eu-west-1"), id="region"),
])
def test_template_resource_elsewhere(manifests: Any, resource: str, words: tuple[str, ...]) -> None:
    text = workload(access=block_entry("template: queue.consume", QUEUE, resource))
    expect_one(manifests, text, 20, 11, repr(resource), *words)


@pytest.mark.parametrize(("resource", "words"), [
    pytest.param("arn:aws:dynamodb:eu-west-1:999999999999:table/orders",
                 ("in account 999999999999",), id="account"),
    pytest.param(f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/orders",
                 ("in region us-east-1",), id="region-unknown-kind"),
])
def test_raw_resource_elsewhere(manifests: Any, resource: str, words: tuple[str, ...]) -> None:
    text = workload(access=block_entry("actions: [dynamodb:GetItem]", resource,
                                       extra="      reason: reads one table\n"))
    expect_one(manifests, text, 19, 11, repr(resource), *words)


# --- names, apiVersion, kind, required fields -------------------------------------------

@pytest.mark.parametrize("name", ["Svc-A", "ab", "a" * 41, "-svc", "svc-"])
def test_bad_workload_name(manifests: Any, name: str) -> None:
    expect_one(manifests, workload(name=name), 4, 9, f"name {name!r} must be 3-40 characters",
               "lowercase")


@pytest.mark.parametrize("env", ["Prod", '""', "a" * 17, "-prod"])
def test_bad_environment_name(manifests: Any, env: str) -> None:
    shown = "" if env == '""' else env
    expect_one(manifests, workload(env=env), 6, 16,
               f"environment {shown!r} must be 1-16 characters")


def test_bad_api_version(manifests: Any) -> None:
    text = workload().replace("workload-ids/v1", "workload-ids/v2")
    expect_one(manifests, text, 1, 13, "'apiVersion' must be one of 'workload-ids/v1'",
               "'workload-ids/v2'")


def test_bad_kind_in_an_explicit_file(manifests: Any) -> None:
    text = workload().replace("kind: Workload", "kind: Workloads")
    expect_one(manifests, text, 2, 7, "not a workload manifest", "'Workloads'", "kind: Workload")


def test_missing_owner_points_at_metadata(manifests: Any) -> None:
    text = workload().replace("  owner: team-a\n", "")
    expect_one(manifests, text, 4, 3, "missing required field 'owner'")


def test_missing_provider_points_at_spec(manifests: Any) -> None:
    text = workload().replace("  provider: aws\n", "")
    expect_one(manifests, text, 8, 3, "missing required field 'provider'")


# --- provider blocks and credentials ------------------------------------------------------

GCP = """\
apiVersion: workload-ids/v1
kind: Workload
metadata: {name: svc-g, owner: team-a, environment: prod}
spec:
  provider: gcp
  gcp: {project: acme-prod}
  credentials:
    federation:
      - kind: github-actions
        repository: acme/svc-g
        ref: refs/heads/main
        workloadIdentityPool: projects/123456789012/locations/global/workloadIdentityPools/github
  access:
    - template: topic.publish
      resources:
        - projects/acme-prod/topics/orders
"""

SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
VAULT = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-orders/providers/"
         "Microsoft.KeyVault/vaults/acme-kv")
AZURE = f"""\
apiVersion: workload-ids/v1
kind: Workload
metadata: {{name: svc-z, owner: team-a, environment: prod}}
spec:
  provider: azure
  azure: {{subscription: "{SUBSCRIPTION}", resourceGroup: rg-orders, location: westeurope}}
  credentials:
    federation:
      - kind: github-actions
        repository: acme/svc-z
        environment: production
  access:
    - template: secret.read
      resources:
        - {VAULT}/secrets/db
"""


@pytest.mark.parametrize("text", [GCP, AZURE], ids=["gcp", "azure"])
def test_valid_gcp_and_azure_baselines(manifests: Any, text: str) -> None:
    # The bad variants below differ from these in one place only.
    path = manifests({"ok.yaml": text}) / "ok.yaml"
    result = validate(str(path))
    assert result.code == 0, result.err
    assert "OK: 1 workload(s)" in result.out


def test_aws_workload_with_a_gcp_block(manifests: Any) -> None:
    text = workload().replace("  credentials:", "  gcp: {project: acme-prod}\n  credentials:")
    expect_one(manifests, text, 10, 3, "spec.gcp does not apply", "remove it")


def test_aws_service_federation_on_gcp(manifests: Any) -> None:
    text = GCP.replace("  access:", "      - kind: aws-service\n"
                                    "        service: ecs-tasks.amazonaws.com\n  access:")
    expect_one(manifests, text, 13, 9, "aws-service federation works on AWS only, not gcp")


def test_gcp_federation_without_pool(manifests: Any) -> None:
    text = GCP.replace("        workloadIdentityPool: projects/123456789012/locations/global/"
                       "workloadIdentityPools/github\n", "")
    expect_one(manifests, text, 9, 9, "GCP federation needs 'workloadIdentityPool'")


def test_pool_on_aws_federation(manifests: Any) -> None:
    text = workload(federation=(
        "      - kind: github-actions\n        repository: acme/x\n        ref: refs/heads/main\n"
        "        workloadIdentityPool: projects/1/locations/global/workloadIdentityPools/github\n"))
    expect_one(manifests, text, 16, 9, "workloadIdentityPool applies to GCP only, not aws")


def test_gcp_resource_in_another_project(manifests: Any) -> None:
    text = GCP.replace("projects/acme-prod/topics/orders", "projects/other-prod/topics/orders")
    expect_one(manifests, text, 16, 11, "in project other-prod", "workload is in acme-prod")


def test_gcp_raw_resource_in_another_project(manifests: Any) -> None:
    text = GCP.replace("    - template: topic.publish\n",
                       "    - actions: [pubsub.topics.publish]\n      reason: publishes orders\n")
    text = text.replace("projects/acme-prod/topics/orders", "projects/other-prod/topics/orders")
    expect_one(manifests, text, 17, 11, "in project other-prod", "workload is in acme-prod")


def test_gcp_raw_action_that_is_no_permission(manifests: Any) -> None:
    text = GCP.replace("    - template: topic.publish\n",
                       "    - actions: [pubsub.topics.publishh]\n      reason: publishes orders\n")
    expect_one(manifests, text, 14, 17, "'pubsub.topics.publishh' is not a pubsub permission",
               "did you mean pubsub.topics.publish?")


def test_aws_arn_in_a_gcp_manifest(manifests: Any) -> None:
    text = GCP.replace("projects/acme-prod/topics/orders", "arn:aws:sns:eu-west-1:123456789012:orders")
    expect_one(manifests, text, 16, 11, "topic.publish does not accept", "pubsub-topic")


def test_unknown_permission_in_a_user_template(manifests: Any, tmp_path: Path) -> None:
    folder = tmp_path / "our-templates"
    folder.mkdir()
    (folder / "bucket.peek.yaml").write_text(
        "name: bucket.peek\ndescription: Peek at the objects of one bucket.\n"
        "gcp:\n  gcs-bucket:\n    permissions: [storage.objects.gett]\n")
    Path("workload-ids.yaml").write_text(f"templates: ['{folder}']\n")
    path = manifests({"ok.yaml": GCP}) / "ok.yaml"
    result = validate(str(path))
    assert result.code == 1 and result.out == ""
    [line] = error_lines(result)
    # At the permission itself (line 5, column 19), not at the template's name.
    assert line.startswith(f"{folder / 'bucket.peek.yaml'}:5:19:")
    assert "'storage.objects.gett' is not a storage permission; did you mean storage.objects.get?" in line


def test_azure_resource_in_another_subscription(manifests: Any) -> None:
    other = "11111111-2222-3333-4444-555555555555"
    text = AZURE.replace(f"/subscriptions/{SUBSCRIPTION}/", f"/subscriptions/{other}/")
    expect_one(manifests, text, 15, 11, f"in subscription {other}",
               f"workload is in {SUBSCRIPTION}")


def test_azure_resource_of_the_wrong_kind(manifests: Any) -> None:
    text = AZURE.replace("/vaults/acme-kv/secrets/db", "/vaults/acme-kv/keys/pii")
    expect_one(manifests, text, 15, 11, "secret.read does not accept", "it is a keyvault-key")


def test_key_mode_with_federation(manifests: Any) -> None:
    text = workload().replace("    mode: keyless", "    mode: key")
    expect_one(manifests, text, 12, 5, "key mode takes no federation entries")


KEY_MODE = ("    mode: key\n    rotation:\n      maxAge: 30d\n      overlap: {overlap}\n")
KEYLESS = ("    mode: keyless\n    federation:\n      - kind: github-actions\n"
           "        repository: acme/svc-a\n        ref: refs/heads/main\n")


@pytest.mark.parametrize("overlap", ["30d", "31d", "5w"])
def test_overlap_not_shorter_than_max_age(manifests: Any, overlap: str) -> None:
    text = workload().replace(KEYLESS, KEY_MODE.format(overlap=overlap))
    expect_one(manifests, text, 14, 16, "overlap must be shorter than maxAge")


def test_overlap_shorter_than_max_age_is_valid(manifests: Any) -> None:
    text = workload().replace(KEYLESS, KEY_MODE.format(overlap="2d"))
    path = manifests({"ok.yaml": text}) / "ok.yaml"
    assert validate(str(path)).code == 0


def test_keyless_with_rotation(manifests: Any) -> None:
    text = workload().replace("    mode: keyless\n", "    mode: keyless\n    rotation: {maxAge: 30d}\n")
    expect_one(manifests, text, 12, 5, "rotation applies to mode: key only")


@pytest.mark.parametrize("body", [
    "        ref: refs/heads/main\n        environment: production\n",
    "",
], ids=["both", "neither"])
def test_github_actions_ref_and_environment(manifests: Any, body: str) -> None:
    text = workload(federation="      - kind: github-actions\n        repository: acme/x\n" + body)
    expect_one(manifests, text, 13, 9, "exactly one of 'ref'", "'environment'")


# --- the whole set: duplicates ------------------------------------------------------------

def test_duplicate_workload_across_two_files(manifests: Any) -> None:
    folder = manifests({"a.yaml": workload(), "b.yaml": "# the same again\n" + workload()})
    a, b = folder / "a.yaml", folder / "b.yaml"
    for args in ([str(folder)], [str(a), str(b)]):
        result = validate(*args)
        assert result.code == 1
        assert error_lines(result) == [
            f"{b}:5:9: workload prod/svc-a on aws 123456789012 is already declared at "
            f"{a}:4:9; each workload is declared once"]


def test_same_name_in_another_environment_is_not_a_duplicate(manifests: Any) -> None:
    folder = manifests({"a.yaml": workload(), "b.yaml": workload(env="staging")})
    result = validate(str(folder))
    assert result.code == 0, result.err
    assert "OK: 2 workload(s)" in result.out


def test_same_file_given_twice_is_not_a_duplicate(manifests: Any) -> None:
    # Regression: workload_ids/manifest.py manifest_files() does not de-duplicate paths, so a file
    # named twice (directory + the file inside it, or the same file twice) is loaded twice
    # and validate._duplicates() reports it as "already declared at" its own position.
    # Expected: exit 0, one workload. Actual: exit 1, "FILE:4:9: workload prod/svc-a ...
    # is already declared at FILE:4:9".
    folder = manifests({"a.yaml": workload()})
    result = validate(str(folder), str(folder / "a.yaml"))
    assert result.code == 0, result.err
    assert "OK: 1 workload(s)" in result.out


# --- provider limits -------------------------------------------------------------------------

def test_oversize_policy_from_a_template(manifests: Any) -> None:
    buckets = [f"arn:aws:s3:::acme-a-rather-long-bucket-name-to-fill-the-policy-{i:03d}"
               for i in range(100)]
    text = workload(access=block_entry("template: object-storage.read", *buckets))
    expect_one(manifests, text, 16, 3, "workload prod/svc-a", "IAM policy would be",
               "AWS allows 10240")


def test_oversize_policy_from_raw_entries(manifests: Any) -> None:
    tables = [f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders-by-region-and-day-{i:03d}"
              for i in range(100)]
    text = workload(access=(
        block_entry("actions: [dynamodb:GetItem, dynamodb:Query]", *tables,
                    extra="      reason: reads the order tables\n")
        + block_entry("actions: [dynamodb:PutItem]", *tables,
                      extra="      reason: writes the order tables\n")))
    expect_one(manifests, text, 16, 3, "workload prod/svc-a", "IAM policy would be",
               "AWS allows 10240")


def test_policy_just_under_the_limit_is_valid(manifests: Any) -> None:
    buckets = [f"arn:aws:s3:::acme-bucket-{i:03d}" for i in range(100)]
    path = manifests({"ok.yaml": workload(access=block_entry("template: object-storage.read",
                                                              *buckets))}) / "ok.yaml"
    result = validate(str(path))
    assert result.code == 0, result.err


@pytest.mark.parametrize("duration", ["30m", "13h", "59m", "43201s"])
def test_max_session_duration_out_of_range(manifests: Any, duration: str) -> None:
    text = workload().replace("region: eu-west-1}",
                              f"region: eu-west-1, maxSessionDuration: {duration}}}")
    expect_one(manifests, text, 9, 73, "maxSessionDuration must be between 1h and 12h",
               f"not {duration}")


@pytest.mark.parametrize("duration", ["1h", "12h", "43200s"])
def test_max_session_duration_in_range(manifests: Any, duration: str) -> None:
    text = workload().replace("region: eu-west-1}",
                              f"region: eu-west-1, maxSessionDuration: {duration}}}")
    path = manifests({"ok.yaml": text}) / "ok.yaml"
    assert validate(str(path)).code == 0


def test_max_session_duration_not_a_duration(manifests: Any) -> None:
    text = workload().replace("region: eu-west-1}",
                              "region: eu-west-1, maxSessionDuration: 1 hour}")
    expect_one(manifests, text, 9, 73, "'1 hour' is not a duration", "'12h'")


# --- every problem at once --------------------------------------------------------------------

def test_three_problems_three_lines(manifests: Any) -> None:
    text = workload(access=(
        f"    - template: queue.consme\n      resources: [{QUEUE}]\n"          # 17-18
        "    - actions: [s3:*]\n      resources: [arn:aws:s3:::bkt]\n"         # 19-20
        "      reason: reads everything\n"                                     # 21
        "    - template: queue.consume\n"                                      # 22
        "      resources: [arn:aws:sqs:eu-west-1:999999999999:jobs]\n"))       # 23
    path = manifests({"bad.yaml": text}) / "bad.yaml"
    result = validate(str(path))
    assert result.code == 1
    lines = error_lines(result)
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{path}:17:17: unknown template 'queue.consme'")
    assert lines[1].startswith(f"{path}:19:17: action 's3:*' has a wildcard")
    assert lines[2].startswith(f"{path}:23:19: resource 'arn:aws:sqs:eu-west-1:999999999999:jobs'"
                               " is in account 999999999999")


def test_three_shape_problems_three_lines(manifests: Any) -> None:
    text = (workload(name="Bad").replace("  owner: team-a\n", "  owner: team-a\n  ownr: x\n")
            .replace('account: "123456789012"', "account: 123456789012"))
    path = manifests({"bad.yaml": text}) / "bad.yaml"
    result = validate(str(path))
    assert result.code == 1
    lines = error_lines(result)
    assert [ln.split(": ")[0] for ln in lines] == [
        f"{path}:4:9", f"{path}:6:3", f"{path}:10:18"], lines
    assert "name 'Bad'" in lines[0] and "'ownr'" in lines[1] and "'account'" in lines[2]


def test_problems_in_several_files_all_reported(manifests: Any) -> None:
    folder = manifests({"a.yaml": workload(name="svc-a", env="Prod"),
                        "b.yaml": workload(name="svc-b").replace("  owner: team-a\n", ""),
                        "c.yaml": workload(name="svc-c")})
    result = validate(str(folder))
    assert result.code == 1
    assert [ln.split(": ")[0] for ln in error_lines(result)] == [
        f"{folder / 'a.yaml'}:6:16", f"{folder / 'b.yaml'}:4:3"]


# --- escalation and guardrails ------------------------------------------------------------------

PASS_ROLE = ("    - actions: [iam:PassRole]\n"
             f"      resources: [arn:aws:iam::{ACCOUNT}:role/app]\n"
             "      reason: launches ECS tasks\n")


def test_escalation_without_approval_is_refused_with_exit_3(manifests: Any) -> None:
    message = expect_one(manifests, workload(access=PASS_ROLE), 17, 7,
                         "iam:PassRole can escalate privilege", "guardrails.approvedEscalations",
                         code=3)
    assert message.startswith("guardrail: ")


def test_escalation_with_only_a_manifest_reason_is_refused(manifests: Any) -> None:
    # The requester cannot approve its own escalation (security review H1).
    text = workload(access=PASS_ROLE + '      escalation: {reason: "starts ECS tasks as the app role"}\n')
    message = expect_one(manifests, text, 17, 7, "iam:PassRole can escalate privilege",
                         "documents the request; it does not approve it", code=3)
    assert message.startswith("guardrail: ")


@pytest.mark.parametrize(("text", "line", "column", "minimum"), [
    pytest.param(workload(access=PASS_ROLE + "      escalation: {reason: short}\n"), 20, 28, "10",
                 id="escalation.reason"),
    pytest.param(workload(access=PASS_ROLE.replace("reason: launches ECS tasks", "reason: x")),
                 19, 15, "3", id="reason"),
])
def test_reason_too_short_names_the_field(manifests: Any, text: str, line: int, column: int,
                                          minimum: str) -> None:
    # Regression: workload_ids/manifest.py _message() has no case for pydantic's
    # 'string_too_short', so the message is pydantic's own "String should have at least N
    # characters", which does not say which field. Expected: the message names 'reason'.
    expect_one(manifests, text, line, column, "'reason'", f"{minimum} characters")


def test_guardrail_refusal_and_error_together_exit_1(manifests: Any) -> None:
    text = workload(access=PASS_ROLE + f"    - template: queue.consme\n      resources: [{QUEUE}]\n")
    path = manifests({"bad.yaml": text}) / "bad.yaml"
    result = validate(str(path))
    assert result.code == 1
    lines = error_lines(result)
    assert lines[0].startswith(f"{path}:17:7: guardrail: iam:PassRole")
    assert lines[1].startswith(f"{path}:20:17: unknown template")


def test_too_many_resources_names_the_field(manifests: Any) -> None:
    queues = [f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q{i}" for i in range(101)]
    text = workload(access=block_entry("template: queue.consume", *queues))
    # Regression: workload_ids/manifest.py _message() passes pydantic's 'too_long' message through
    # unchanged: "List should have at most 100 items after validation, not 101" names
    # neither the field nor the manifest's rule. Expected: the message names 'resources'.
    # (the list itself starts at the "-" of its first item: 19:9)
    expect_one(manifests, text, 19, 9, "'resources'", "100")


# --- config files -------------------------------------------------------------------------------

def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config" / "workload-ids.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_config_unknown_field_is_positioned_in_the_config(manifests: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, "templates: []\nguardrails:\n  deniedActoins: [iam:PassRole]\n")
    manifest = manifests({"ok.yaml": workload()}) / "ok.yaml"
    result = validate("--config", str(config), str(manifest))
    assert result.code == 1
    lines = error_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith(f"{config}:3:3: unknown field 'deniedActoins'; "
                               "did you mean 'deniedActions'?")


def test_config_bad_yaml_is_positioned_in_the_config(manifests: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, "guardrails: [\n")
    manifest = manifests({"ok.yaml": workload()}) / "ok.yaml"
    result = validate("--config", str(config), str(manifest))
    assert result.code == 1
    assert error_lines(result) == [f"{config}:2:1: invalid YAML: did not find expected node content"]


def test_config_number_too_long_to_print_is_positioned(manifests: Any, tmp_path: Path) -> None:
    # A hex literal of 5,000 digits is a valid YAML int that Python refuses to repr (found
    # by the fuzz run): the message must describe it, not crash quoting it.
    config = write_config(tmp_path, "cleanup:\n  grace: 0x" + "f" * 5000 + "\n")
    manifest = manifests({"ok.yaml": workload()}) / "ok.yaml"
    result = validate("--config", str(config), str(manifest))
    assert result.code == 1
    assert error_lines(result) == [f"{config}:2:10: 'grace' is a duration: a string like '12h' or "
                                   "'30d', not a number of more than 60 digits"]


def test_missing_config_file(manifests: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    manifest = manifests({"ok.yaml": workload()}) / "ok.yaml"
    result = validate("--config", str(missing), str(manifest))
    assert result.code == 1
    assert error_lines(result) == [f"{missing}:1:1: config file not found; check the --config path"]


def test_config_guardrail_refusal_exit_3(manifests: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, "guardrails:\n  allowedEnvironments: [staging]\n" + TEST_TRUST)
    manifest = manifests({"ok.yaml": workload()}) / "ok.yaml"
    result = validate("--config", str(config), str(manifest))
    assert result.code == 3
    assert error_lines(result) == [
        f"{manifest}:6:16: guardrail: environment 'prod' is not in "
        "guardrails.allowedEnvironments (staging)"]


def test_config_denied_action_exit_3(manifests: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path, "guardrails:\n  deniedActions: [sqs:ReceiveMessage]\n" + TEST_TRUST)
    manifest = manifests({"ok.yaml": workload()}) / "ok.yaml"
    result = validate("--config", str(config), str(manifest))
    assert result.code == 3
    assert error_lines(result) == [
        f"{manifest}:17:7: guardrail: sqs:ReceiveMessage is denied by guardrails.deniedActions "
        "in the config"]


@pytest.mark.parametrize("duration", ["13h", "30m"])
def test_config_max_session_duration_out_of_range(manifests: Any, tmp_path: Path,
                                                  duration: str) -> None:
    # Regression: providers/aws/render.py static_checks() range-checks maxSessionDuration only when
    # the manifest sets it; the config default (aws.maxSessionDuration) is never checked, so
    # validate says OK (exit 0) and apply sends e.g. MaxSessionDuration=46800 to IAM, which
    # real IAM rejects (allowed 3600-43200). Expected: exit 1, positioned at the config value.
    config = write_config(tmp_path, f"aws:\n  maxSessionDuration: {duration}\n" + TEST_TRUST)
    manifest = manifests({"ok.yaml": workload()}) / "ok.yaml"
    result = validate("--config", str(config), str(manifest))
    assert result.code == 1, result.out
    prefix = f"{config}:2:23: "
    assert any(line.startswith(prefix) and "maxSessionDuration" in line[len(prefix):]
               for line in error_lines(result)), result.err


def test_config_not_utf8(manifests: Any, tmp_path: Path) -> None:
    config = tmp_path / "binary-config.yaml"
    config.write_bytes(b"\xff\xfe\x00not utf-8")
    manifest = manifests({"ok.yaml": workload()}) / "ok.yaml"
    # Regression: workload_ids/config.py load_config() calls file.read_text() without catching
    # UnicodeDecodeError/OSError (load_workloads does), so the user gets "internal error:
    # UnicodeDecodeError ... this is a bug in workload-ids". Expected: exit 1 and
    # "CONFIG:1:1: cannot read file: ..." like an unreadable manifest.
    result = run_cli("validate", "--config", str(config), str(manifest))
    assert result.code == 1
    assert "internal error" not in result.err
    assert result.err.startswith(f"{config}:1:1: ")


# --- plan and apply on bad input change nothing -------------------------------------------------

BAD_AND_GOOD = {
    "good.yaml": workload(name="svc-good"),
    "bad.yaml": workload(name="svc-bad", access=f"    - template: queue.consme\n"
                                                f"      resources: [{QUEUE}]\n"),
}


def roles(iam: Any) -> list[str]:
    return [r["RoleName"] for r in iam.list_roles(PathPrefix="/workload-ids/")["Roles"]]


@pytest.mark.parametrize("verb", [["plan"], ["apply", "--auto-approve"]], ids=["plan", "apply"])
def test_bad_input_changes_nothing(aws: Any, manifests: Any, verb: list[str]) -> None:
    folder = manifests(BAD_AND_GOOD)
    result = run_cli(*verb, str(folder))
    assert result.code == 1
    assert "Traceback" not in result.err
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{folder / 'bad.yaml'}:17:17: unknown template 'queue.consme'; "
                               "did you mean 'queue.consume'?")
    assert result.out == ""
    assert roles(aws) == []


@pytest.mark.parametrize("text", [
    workload(access=PASS_ROLE),                     # guardrail refusal
    workload(env="Prod"),                           # shape error
], ids=["guardrail", "shape"])
def test_apply_refused_input_changes_nothing(aws: Any, manifests: Any, text: str) -> None:
    path = manifests({"bad.yaml": text}) / "bad.yaml"
    result = run_cli("apply", "--auto-approve", str(path))
    assert result.code == (3 if "PassRole" in text else 1)
    assert result.err.startswith(f"{path}:")
    assert roles(aws) == []


def test_apply_of_the_good_file_alone_creates_its_role(aws: Any, manifests: Any) -> None:
    # The control for the tests above: the same account does get a role from valid input.
    folder = manifests(BAD_AND_GOOD)
    result = run_cli("apply", "--auto-approve", str(folder / "good.yaml"))
    assert result.code == 0, result.err
    assert roles(aws) == ["wid_prod_svc-good"]
