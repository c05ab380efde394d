"""`workload-ids bootstrap` with `audit.sink` (issue 14 items 2 and 4), on all three clouds:
the listing grants every tool identity the sink's reads and appends, scoped to its bucket,
prefix or container, and nothing that deletes; `--apply` makes the audit signing key once,
with the marker key's protections, never prints it, and refuses a key it did not make
(judged before the first write, so nothing changes). AWS runs on moto, GCP and Azure on
our emulators through the real SDKs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.aws import ACCOUNT, workload
from support.bootstrap_flows import Call
from support.cli import run_cli
from support.iam_eval import allowed
from support.trust import TEST_TRUST

from workload_ids import calls
from workload_ids.bootstrap import audit_sink
from workload_ids.bootstrap import aws as boot_aws
from workload_ids.config import Config, ConfigFile

BUCKET = "acme-audit"
PREFIX = "workload-ids/prod"
AWS_KEY = "workload-ids/audit-signing-key"
S3_SINK = f"audit:\n  sink:\n    url: s3://{BUCKET}/{PREFIX}\n    signingKey: {AWS_KEY}\n"
IDENTITIES = ("apply", "rotate", "cleanup", "restore", "discover")
APPENDERS = IDENTITIES[:-1]  # discover reads the trail and never writes it
OURS = {"workload-ids:managed-by": "workload-ids"}


def _config(data: dict[str, Any]) -> Config:
    return Config(ConfigFile.model_validate(data), Path("."), None)


def _s3_config(url: str = f"s3://{BUCKET}/{PREFIX}", key: str = AWS_KEY) -> Config:
    return _config({"audit": {"sink": {"url": url, "signingKey": key}}})


def _policies(config: Config) -> dict[str, dict[str, Any]]:
    """Each role's effective identity policy: its own and the shared audit policy attached
    beside it (IAM evaluates the union of a role's policies)."""
    plan = boot_aws.render(config, ACCOUNT)
    shared = plan.audit_policy.document["Statement"] if plan.audit_policy else []
    return {i.identity: {"Version": "2012-10-17", "Statement": [*i.policy["Statement"], *shared]}
            for i in plan.identities}


def _s3(identity: str, action: str, key: str | None, **params: Any) -> Call:
    arn = f"arn:aws:s3:::{BUCKET}" + (f"/{key}" if key is not None else "")
    return Call(identity, "s3", action, params, {"arn": arn, "tags": {}})


def _secret(identity: str, action: str, name: str, tags: dict[str, str] | None = None) -> Call:
    arn = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{name}-AbCdEf"
    return Call(identity, "secretsmanager", action, {"SecretId": name}, {"arn": arn, "tags": tags or OURS})


def _allows(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _resources(statement: dict[str, Any]) -> list[str]:
    res = statement.get("Resource", [])
    return [res] if isinstance(res, str) else list(res)


# --- AWS: the listing ---------------------------------------------------------------------------

def test_aws_listing_grants_every_identity_the_sink_under_its_prefix_and_no_delete(cli: Any) -> None:
    Path("workload-ids.yaml").write_text(S3_SINK)
    result = cli("bootstrap", "--provider", "aws", "--output", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)["aws"]
    audit = doc["auditSink"]
    assert audit["grants"] == {
        "bucket": f"arn:aws:s3:::{BUCKET}", "objects": f"arn:aws:s3:::{BUCKET}/{PREFIX}/*",
        "actions": ["s3:GetBucketObjectLockConfiguration", "s3:GetObject", "s3:GetObjectVersion",
                    "s3:ListBucketVersions", "s3:PutObject"],
        "denied": audit_sink.S3_DENIED}
    assert audit["signingKey"]["name"] == AWS_KEY
    # One policy, attached to every tool role; the identities' own policies keep their room.
    shared = audit["policy"]
    assert shared["policy"] == "arn:aws:iam::ACCOUNT_ID:policy/workload-ids-tool/wid-tool-audit"
    assert shared["attachedTo"] == [f"wid-tool-{i}" for i in IDENTITIES]
    assert [i["identity"] for i in doc["identities"]] == list(IDENTITIES)
    for ident in doc["identities"]:
        s3 = [st for st in ident["policyDocument"]["Statement"] if "s3:" in json.dumps(st)]
        if ident["identity"] == "discover":  # its only word on the trail: no writes
            assert s3 == [{"Sid": "DenyAuditTrailWrites", "Effect": "Deny", "Action": "s3:PutObject",
                           "Resource": f"arn:aws:s3:::{BUCKET}/*"}]
        else:
            assert s3 == []
    policy = shared["policyDocument"]
    s3_allows = [(a, r) for st in policy["Statement"] if st["Effect"] == "Allow"
                 for a in _allows(st) if a.startswith("s3:") for r in _resources(st)]
    assert sorted({a for a, _ in s3_allows}) == audit["grants"]["actions"]
    # Bucket-level actions on the bucket; object actions under the prefix, never wider.
    for action, resource in s3_allows:
        assert resource in (f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/{PREFIX}/*"), (action, resource)
        assert "Delete" not in action
    listing = next(st for st in policy["Statement"] if st.get("Sid") == "AuditSinkListRecords")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": f"{PREFIX}/*"}}
    allows = [a for st in policy["Statement"] if st["Effect"] == "Allow" for a in _allows(st)]
    assert sorted(allows) == [*audit["grants"]["actions"], "secretsmanager:GetSecretValue"]
    text = cli("bootstrap", "--provider", "aws")
    assert f"== audit trail s3://{BUCKET}/{PREFIX}: every identity above reads it, and all but discover " \
        "append to it" in text.out
    assert f"audit signing key: Secrets Manager secret {AWS_KEY}" in text.out


@pytest.mark.parametrize("identity", IDENTITIES)
def test_aws_each_identity_appends_and_reads_but_cannot_delete_or_unlock(identity: str) -> None:
    """Judged by evaluation: a Deny wins over whatever else the principal is granted.
    discover reads and never appends."""
    policy = _policies(_s3_config())[identity]
    record = f"{PREFIX}/records/000000000001.json"
    for action in ("GetObject", "GetObjectVersion"):
        assert allowed(policy, _s3(identity, action, record)), action
    assert allowed(policy, _s3(identity, "PutObject", record)) == (identity in APPENDERS)
    assert allowed(policy, _s3(identity, "GetBucketObjectLockConfiguration", None))
    for action in ("DeleteObject", "DeleteObjectVersion", "BypassGovernanceRetention", "PutObjectRetention"):
        assert not allowed(policy, _s3(identity, action, record)), action
    for action in ("PutBucketObjectLockConfiguration", "PutLifecycleConfiguration", "PutBucketPolicy",
                   "DeleteBucket", "PutBucketVersioning"):
        assert not allowed(policy, _s3(identity, action, None)), action
    # Nothing outside the prefix, in the same bucket or another.
    assert not allowed(policy, _s3(identity, "PutObject", "other-team/records/000000000001.json"))
    assert not allowed(policy, _s3(identity, "GetObject", "workload-ids/prod-other/head.json"))
    other = Call(identity, "s3", "PutObject", {},
                 {"arn": f"arn:aws:s3:::other-bucket/{PREFIX}/x", "tags": {}})
    assert not allowed(policy, other)
    # The key: read, never written, replaced or made, even tagged as a key-mode secret.
    assert allowed(policy, _secret(identity, "GetSecretValue", AWS_KEY))
    for action in ("PutSecretValue", "UpdateSecret", "DeleteSecret", "PutResourcePolicy", "TagResource"):
        assert not allowed(policy, _secret(identity, action, AWS_KEY)), action
    create = Call(identity, "secretsmanager", "CreateSecret",
                  {"Name": AWS_KEY, "Tags": [{"Key": k, "Value": v} for k, v in OURS.items()]}, None)
    assert not allowed(policy, create)


def test_aws_listing_without_a_prefix_or_with_a_key_arn_stays_exact() -> None:
    arn = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:audit-key-AbC123"
    plan = boot_aws.render(_s3_config(url=f"s3://{BUCKET}", key=arn), ACCOUNT)
    assert plan.audit_policy is not None
    policy = plan.audit_policy.document
    listing = next(st for st in policy["Statement"] if st.get("Sid") == "AuditSinkListRecords")
    assert "Condition" not in listing
    objects = next(st for st in policy["Statement"] if st.get("Sid") == "AuditSinkReadAndAppend")
    assert objects["Resource"] == f"arn:aws:s3:::{BUCKET}/*"
    read = next(st for st in policy["Statement"] if st.get("Sid") == "ReadAuditSigningKey")
    assert read["Resource"] == arn
    assert plan.audit is not None and plan.audit["signingKey"]["name"] == "audit-key"
    # A key in another account is not this account's to grant or make.
    foreign = boot_aws.render(_s3_config(key=arn.replace(ACCOUNT, "999999999999")), ACCOUNT)
    assert foreign.audit is not None and "signingKey" not in foreign.audit
    assert "in account 999999999999, not 123456789012" in foreign.audit["note"]


def test_aws_policies_with_a_sink_fit_and_pass_parliament_cloudsplaining_and_the_catalogs() -> None:
    import fnmatch

    from cloudsplaining.scan.policy_document import PolicyDocument
    from parliament import analyze_policy_string, enhance_finding

    from workload_ids import catalogs
    from workload_ids.catalogs import check
    plan = boot_aws.render(_s3_config(), ACCOUNT)
    assert plan.audit_policy is not None
    documents = {"audit": plan.audit_policy.document, **{i.identity: i.policy for i in plan.identities}}
    for name, policy in documents.items():
        assert len(boot_aws.compact(policy)) <= boot_aws.MANAGED_POLICY_MAX, name
        found = analyze_policy_string(json.dumps(policy), include_community_auditors=False)
        assert [(f.issue, f.detail) for f in map(enhance_finding, found.findings)] == [], name
        document = PolicyDocument(policy)
        assert document.allows_privilege_escalation == [] and document.service_wildcard == []
        assert document.write_actions_without_constraints == []
        assert document.permissions_management_without_constraints == []
        for statement in policy["Statement"]:
            for action in _allows(statement):
                if "*" in action:
                    assert any(fnmatch.fnmatchcase(real, action) for real in catalogs.names("aws")), action
                else:
                    assert check("aws", action).name == action, action


def test_aws_other_clouds_sinks_are_named_not_granted(cli: Any) -> None:
    Path("workload-ids.yaml").write_text(
        "audit:\n  sink:\n    url: gs://acme-audit/wid\n    signingKey: projects/acme/secrets/audit-key\n")
    result = cli("bootstrap", "--provider", "aws", "--output", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)["aws"]
    assert "s3:" not in json.dumps(doc["identities"]) and "policy" not in doc["auditSink"]
    assert "`workload-ids bootstrap --provider gcp` lists its grants" in doc["auditSink"]["note"]


def test_a_malformed_key_reference_is_a_positioned_error(cli: Any) -> None:
    Path("workload-ids.yaml").write_text(
        "audit:\n  sink:\n    url: https://acme.blob.core.windows.net/audit/wid\n"
        "    signingKey: https://acme-kv.vault.azure.net/keys/audit\n")
    result = cli("bootstrap", "--provider", "azure")
    assert result.code == 1
    assert ("workload-ids.yaml:4:17: audit.sink.signingKey https://acme-kv.vault.azure.net/keys/audit "
            "is not a Key Vault secret URL") in result.err
    assert "Traceback" not in result.err and result.out == ""


# --- AWS: least privilege both ways, by running the sink ---------------------------------------

_S3_ACTIONS = {"get_object_lock_configuration": "GetBucketObjectLockConfiguration",
               "list_object_versions": "ListBucketVersions", "put_object": "PutObject"}


def _as_call(record: calls.CallRecord) -> Call | None:
    """A recorded sink or key call as the IAM request it is (None: not the sink's)."""
    service, _, operation = record.operation.partition(".")
    p = record.params
    if service == "s3":
        if operation == "get_object":
            action = "GetObjectVersion" if p.get("VersionId") else "GetObject"
        else:
            action = _S3_ACTIONS[operation]
        key = p.get("Key")
        arn = f"arn:aws:s3:::{p['Bucket']}" + (f"/{key}" if key else "")
        return Call("any", "s3", action, p, {"arn": arn, "tags": {}})
    if service == "secretsmanager" and p.get("SecretId") == AWS_KEY:
        return _secret("any", "GetSecretValue", AWS_KEY, tags={})
    return None


def _bootstrapped_with_locked_bucket() -> None:
    """The S3 sink's bucket (object lock on), a config naming it, and bootstrap applied."""
    import boto3
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=BUCKET, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    Path("workload-ids.yaml").write_text("credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + S3_SINK)
    assert run_cli("bootstrap", "--provider", "aws", "--apply").code == 0


def test_aws_every_sink_call_the_commands_make_is_allowed_and_every_grant_is_used(
        aws: Any, manifests: Any) -> None:
    _bootstrapped_with_locked_bucket()
    seen: list[calls.CallRecord] = []
    calls.CALL_HOOKS.append(seen.append)
    try:
        folder = manifests({"a.yaml": workload("svc-a")})
        assert run_cli("apply", "--auto-approve", str(folder)).code == 0
        (folder / "b.yaml").write_text(workload("svc-b"))
        assert run_cli("apply", "--auto-approve", str(folder)).code == 0
        assert run_cli("audit", "verify").code == 0
    finally:
        calls.CALL_HOOKS.remove(seen.append)
    requests = [c for c in map(_as_call, seen) if c is not None]
    used = {f"{c.service}:{c.operation}" for c in requests}
    for name, policy in _policies(load_here()).items():
        refused = sorted({f"{c.operation} {c.entity['arn'] if c.entity else ''}" for c in requests
                          if not allowed(policy, c)})
        if name == "discover":  # reads like the others; every append is refused
            assert refused and all(r.startswith("PutObject ") for r in refused), refused
            assert not [c for c in requests if c.operation != "PutObject" and not allowed(policy, c)]
        else:
            assert refused == [], (name, refused)
    plan = boot_aws.render(load_here(), ACCOUNT)
    assert plan.audit_policy is not None
    granted = {a for st in plan.audit_policy.document["Statement"] if st["Effect"] == "Allow"
               for a in _allows(st)}
    assert granted == used, (sorted(granted - used), sorted(used - granted))


def test_discover_reads_the_trail_and_never_writes_it_on_every_cloud(
        aws: Any, manifests: Any) -> None:
    """The read-only discover identity shares no write on the trail: on AWS its own policy
    denies s3:PutObject in the bucket (whatever the shared trail policy allows); on GCP and
    Azure it is bound to a read-only role and absent from the appending one. And discover
    never needs one: run against an S3 sink holding apply's records, every sink call it
    makes is a read its policy allows."""
    policy = _policies(_s3_config())["discover"]
    for key in (f"{PREFIX}/records/000000000002.json", f"{PREFIX}/head.json", "elsewhere/x.json"):
        assert not allowed(policy, _s3("discover", "PutObject", key)), key
    gcp_config = _config({"audit": {"sink": {"url": f"gs://{BUCKET}/{PREFIX}",
                                             "signingKey": "projects/p/secrets/audit-key"}}})
    gcs = audit_sink.of(gcp_config)
    assert gcs is not None
    gcp = audit_sink.gcp_render(gcp_config, "p", gcs)
    discover_sa = "serviceAccount:wid-tool-discover@p.iam.gserviceaccount.com"
    held = {p for r, b in (("role", "bucketBinding"), ("readRole", "readBucketBinding"))
            if discover_sa in gcp[b]["members"] for p in gcp[r]["includedPermissions"]}
    assert held == {"storage.buckets.get", "storage.objects.get", "storage.objects.list"}
    azure_config = _config({"audit": {"sink": {
        "url": "https://acmeaudit.blob.core.windows.net/audit/workload-ids/prod",
        "signingKey": "https://acme-audit-kv.vault.azure.net/secrets/audit-signing-key"}}})
    sink = audit_sink.of(azure_config)
    assert sink is not None
    az = audit_sink.azure_render(azure_config, "0b1f6471-1bf0-4dda-aec3-cb9272f09590", sink)
    roles = {az[d]["id"]: az[d]["properties"]["permissions"][0]
             for d in ("roleDefinition", "readRoleDefinition")}
    granted = [op for a in [*az["roleAssignments"], *az["readRoleAssignments"]]
               if a["principal"] == "wid-tool-discover"
               for op in [*roles[a["properties"]["roleDefinitionId"]]["actions"],
                          *roles[a["properties"]["roleDefinitionId"]]["dataActions"]]]
    assert granted and all(op.endswith("/read") for op in granted), granted

    _bootstrapped_with_locked_bucket()
    assert run_cli("apply", "--auto-approve", str(manifests({"a.yaml": workload("svc-a")}))).code == 0
    seen: list[calls.CallRecord] = []
    calls.CALL_HOOKS.append(seen.append)
    try:
        result = run_cli("discover", "--output", "json")
        assert result.code == 0, result.err
    finally:
        calls.CALL_HOOKS.remove(seen.append)
    requests = [c for c in map(_as_call, seen) if c is not None]
    assert {c.operation for c in requests} >= {"ListBucketVersions", "GetObjectVersion"}  # read the trail
    assert [c.operation for c in requests if not allowed(_policies(load_here())["discover"], c)] == []
    assert "PutObject" not in {c.operation for c in requests}


def load_here() -> Config:
    from workload_ids.config import load_config
    return load_config()


# --- AWS: --apply makes the key ---------------------------------------------------------------

@pytest.fixture
def s3_bucket(aws: Any) -> Any:
    import boto3
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=BUCKET, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
    Path("workload-ids.yaml").write_text(S3_SINK)
    return boto3.client("secretsmanager", region_name="us-east-1")


def _tool_roles(iam: Any) -> list[str]:
    return sorted(r["RoleName"] for r in iam.list_roles(PathPrefix="/workload-ids-tool/")["Roles"])


def test_aws_apply_makes_the_audit_key_once_locked_down_and_never_printed(aws: Any, s3_bucket: Any) -> None:
    sm = s3_bucket
    first = run_cli("bootstrap", "--provider", "aws", "--apply", "--output", "json")
    assert first.code == 0, first.err
    doc = json.loads(first.out)
    assert (f"created the audit signing key: Secrets Manager secret {AWS_KEY} (readable by the tool's "
            "identities only)") in doc["applied"]
    assert doc["notes"] == []  # Object Lock with a default retention: nothing to report
    value = sm.get_secret_value(SecretId=AWS_KEY)["SecretString"]
    assert len(value) == 64 and int(value, 16) >= 0
    assert value not in first.out + first.err
    described = sm.describe_secret(SecretId=AWS_KEY)
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags == {"workload-ids:bootstrap": "audit-signing-key"}
    policy = json.loads(sm.get_resource_policy(SecretId=AWS_KEY)["ResourcePolicy"])
    assert all(st["Effect"] == "Deny" for st in policy["Statement"])
    readers = policy["Statement"][0]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert {f"arn:aws:iam::{ACCOUNT}:role/workload-ids-tool/wid-tool-{i}" for i in IDENTITIES} <= set(readers)
    writers = policy["Statement"][1]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert not any("wid-tool-" in w for w in writers)

    plan = boot_aws.render(_s3_config(), ACCOUNT)
    assert plan.audit_policy is not None
    trail = plan.audit_policy.arn
    version = aws.get_policy(PolicyArn=trail)["Policy"]["DefaultVersionId"]
    stored = aws.get_policy_version(PolicyArn=trail, VersionId=version)["PolicyVersion"]["Document"]
    assert stored == plan.audit_policy.document
    for ident in plan.identities:
        attached = {p["PolicyArn"] for p in
                    aws.list_attached_role_policies(RoleName=ident.role_name)["AttachedPolicies"]}
        assert attached == {ident.policy_arn, trail}, ident.identity

    again = run_cli("bootstrap", "--provider", "aws", "--apply", "--output", "json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["applied"] == [
        f"AWS account {ACCOUNT}: everything in place; nothing changed"]
    assert sm.get_secret_value(SecretId=AWS_KEY)["SecretString"] == value
    assert len(sm.list_secret_version_ids(SecretId=AWS_KEY)["Versions"]) == 1
    assert value not in again.out + again.err


@pytest.mark.parametrize("planted", ["untagged", "tagged-with-open-policy", "tagged-not-hex"])
def test_attack_a_pre_created_audit_key_is_refused_and_nothing_changes(aws: Any, s3_bucket: Any,
                                                                       planted: str) -> None:
    """Whoever made the key knows it, and could sign forged records (a restore bundle
    with trust to their account): refused before bootstrap writes anything. Each case
    fails exactly one check (the tag, the resource policy, the value)."""
    sm = s3_bucket
    tags = [] if planted == "untagged" else [{"Key": "workload-ids:bootstrap", "Value": "audit-signing-key"}]
    material = "zz" * 32 if planted == "tagged-not-hex" else "ab" * 32
    sm.create_secret(Name=AWS_KEY, SecretString=material, Tags=tags)
    if planted == "tagged-with-open-policy":
        sm.put_resource_policy(SecretId=AWS_KEY, ResourcePolicy=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Sid": "attacker", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}))
    else:  # everything as bootstrap makes it, but the tag (or the value)
        sm.put_resource_policy(SecretId=AWS_KEY, ResourcePolicy=json.dumps(
            boot_aws.signing_key_policy([f"arn:aws:iam::{ACCOUNT}:root"], [f"arn:aws:iam::{ACCOUNT}:root"])))
    before = sm.describe_secret(SecretId=AWS_KEY)
    result = run_cli("bootstrap", "--provider", "aws", "--apply")
    assert result.code == 1, result.out + result.err
    assert f"Secrets Manager secret {AWS_KEY} in account {ACCOUNT} exists but" in result.err
    assert ("cannot show it made it and will not use it as the audit signing key; nothing was "
            "changed") in result.err
    assert f"aws secretsmanager delete-secret --secret-id {AWS_KEY}" in result.err
    assert "Traceback" not in result.err
    assert _tool_roles(aws) == []  # judged before the first write
    assert sm.get_secret_value(SecretId=AWS_KEY)["SecretString"] == material
    assert sm.describe_secret(SecretId=AWS_KEY).get("Tags") == before.get("Tags")


def test_aws_a_missing_key_named_by_arn_is_not_guessed(aws: Any, s3_bucket: Any) -> None:
    arn = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:audit-key"
    Path("workload-ids.yaml").write_text(S3_SINK.replace(AWS_KEY, arn))
    result = run_cli("bootstrap", "--provider", "aws", "--apply")
    assert result.code == 1
    assert "bootstrap cannot make a secret with a given ARN" in result.err
    assert "audit.sink.signingKey: audit-key" in result.err
    assert _tool_roles(aws) == []


def test_aws_apply_reports_a_bucket_that_does_not_keep_records(aws: Any) -> None:
    import boto3
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    Path("workload-ids.yaml").write_text(S3_SINK)
    result = run_cli("bootstrap", "--provider", "aws", "--apply", "--output", "json")
    assert result.code == 0, result.err
    notes = json.loads(result.out)["notes"]
    assert len(notes) == 1 and f"bucket {BUCKET} does not have Object Lock enabled" in notes[0]
    assert "until then every command that changes anything refuses" in notes[0]
    missing = run_cli("bootstrap", "--provider", "aws", "--apply", "--output", "json")
    assert missing.code == 0
    Path("workload-ids.yaml").write_text(S3_SINK.replace(BUCKET, "no-such-bucket"))
    gone = run_cli("bootstrap", "--provider", "aws", "--apply", "--output", "json")
    assert gone.code == 0, gone.err
    assert "cannot check its lock" in json.loads(gone.out)["notes"][0]


# --- GCP ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gcp_env() -> Iterator[tuple[Any, Any]]:
    from workload_ids.sandbox.gcp.local import start_local_gcp
    from workload_ids.sandbox.gcp.storage import StorageEmulator
    local = start_local_gcp()
    gcs = StorageEmulator()
    gcs.start()
    gcs.create_bucket(BUCKET, retention_seconds=86400)
    gcs.create_bucket("unkept")
    try:
        yield local, gcs
    finally:
        gcs.stop()
        local.stop()


def _gcp_config(env: tuple[Any, Any], project: str, bucket: str = BUCKET) -> str:
    local, gcs = env
    return (local.config_block() + f"  storageEndpoint: '{gcs.url}'\n"
            f"audit:\n  sink:\n    url: gs://{bucket}/{PREFIX}\n"
            f"    signingKey: projects/{project}/secrets/audit-key\n")


def _gcp_boot(env: tuple[Any, Any], project: str, *args: str, bucket: str = BUCKET) -> Any:
    Path("workload-ids.yaml").write_text(_gcp_config(env, project, bucket))
    return run_cli("bootstrap", "--provider", "gcp", "--target", project, *args)


def _sm(env: tuple[Any, Any]) -> Any:
    return env[0].emulators[2].client()


def test_gcp_listing_binds_a_no_delete_role_on_the_bucket_under_the_prefix(gcp_env: tuple[Any, Any]) -> None:
    result = _gcp_boot(gcp_env, "boot-sink-list", "--output", "json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)["gcp"]
    audit = plan["auditSink"]
    assert audit["role"]["includedPermissions"] == ["storage.buckets.get", "storage.objects.create",
                                                    "storage.objects.get", "storage.objects.list",
                                                    "storage.objects.update"]
    members = {f"serviceAccount:wid-tool-{i}@boot-sink-list.iam.gserviceaccount.com" for i in IDENTITIES}
    discover = "serviceAccount:wid-tool-discover@boot-sink-list.iam.gserviceaccount.com"
    assert set(audit["bucketBinding"]["members"]) == members - {discover}
    assert audit["readBucketBinding"]["members"] == [discover]
    assert audit["readRole"]["includedPermissions"] == ["storage.buckets.get", "storage.objects.get",
                                                        "storage.objects.list"]
    assert audit["readBucketBinding"]["condition"] == audit["bucketBinding"]["condition"]
    assert audit["bucketBinding"]["condition"]["expression"] == (
        f"resource.name == 'projects/_/buckets/{BUCKET}' || "
        f"resource.name.startsWith('projects/_/buckets/{BUCKET}/objects/{PREFIX}/')")
    assert {m for b in audit["signingKey"]["bindings"] for m in b["members"]} == members
    assert audit["signingKey"]["bindings"][0]["role"] == "roles/secretmanager.secretAccessor"
    # Not project-wide: no tool identity's project role holds a storage permission.
    for ident in plan["identities"]:
        assert not [p for p in ident["role"]["includedPermissions"] if p.startswith("storage.")]
    assert [c.split()[1:3] for c in audit["commands"]] == [["iam", "roles"]] + [["storage", "buckets"]] * 4 \
        + [["iam", "roles"]] + [["storage", "buckets"]]
    assert all(f"gs://{BUCKET}" in c for c in audit["commands"] if "add-iam-policy-binding" in c)
    assert "delete" not in json.dumps(audit).lower()


def test_gcp_apply_makes_the_audit_key_once_and_never_prints_it(gcp_env: tuple[Any, Any]) -> None:
    project = "boot-sink-key"
    name = f"projects/{project}/secrets/audit-key"
    first = _gcp_boot(gcp_env, project, "--apply", "--output", "json")
    assert first.code == 0, first.err
    doc = json.loads(first.out)
    step = next(o for o in doc["objects"] if o["name"] == name)
    assert (step["action"], step["detail"]) == (
        "created", "the audit signing key, readable by the tool's service accounts")
    assert any(o["action"] == "note" and o["kind"] == "bucket binding" for o in doc["objects"])
    assert doc["notes"] == []  # the bucket keeps records (a retention policy; the emulator needs no lock)
    sm = _sm(gcp_env)
    value = sm.access_secret_version(name=f"{name}/versions/latest").payload.data.decode()
    assert len(value) == 64 and value not in first.out + first.err
    assert dict(sm.get_secret(name=name).annotations) == {"workload-ids-bootstrap": "audit-signing-key"}
    members = {m for b in sm.get_iam_policy(request={"resource": name}).bindings for m in b.members}
    assert members == {f"serviceAccount:wid-tool-{i}@{project}.iam.gserviceaccount.com" for i in IDENTITIES}

    again = _gcp_boot(gcp_env, project, "--apply", "--output", "json")
    assert again.code == 0, again.err
    redo = json.loads(again.out)
    assert [o["action"] for o in redo["objects"] if o["name"] == name] == ["unchanged"]
    assert not [o for o in redo["objects"] if o["action"] in ("created", "updated")]
    assert sm.access_secret_version(name=f"{name}/versions/latest").payload.data.decode() == value
    assert value not in again.out + again.err


@pytest.mark.parametrize("planted", ["unannotated", "extra-reader"])
def test_gcp_attack_a_pre_created_audit_key_is_refused_and_nothing_changes(gcp_env: tuple[Any, Any],
                                                                           planted: str) -> None:
    from google.iam.v1 import policy_pb2
    project = f"boot-sink-{planted}"
    name = f"projects/{project}/secrets/audit-key"
    sm = _sm(gcp_env)
    annotations = {} if planted == "unannotated" else {"workload-ids-bootstrap": "audit-signing-key"}
    sm.create_secret(request={"parent": f"projects/{project}", "secret_id": "audit-key",
                              "secret": {"replication": {"automatic": {}}, "annotations": annotations}})
    sm.add_secret_version(request={"parent": name, "payload": {"data": b"ab" * 32}})
    # Each case fails one check: the annotation, or a reader beyond the tool's accounts.
    readers = ["user:mallory@example.com"] if planted == "extra-reader" else [
        f"serviceAccount:wid-tool-{i}@{project}.iam.gserviceaccount.com" for i in IDENTITIES]
    policy = policy_pb2.Policy(version=1)
    policy.bindings.add(role="roles/secretmanager.secretAccessor", members=readers)
    sm.set_iam_policy(request={"resource": name, "policy": policy})
    iam = gcp_env[0].emulators[0].backend
    accounts_before = len(iam.accounts)
    result = _gcp_boot(gcp_env, project, "--apply")
    assert result.code == 1, result.out + result.err
    assert f"Secret Manager secret {name} exists but" in result.err
    assert "will not use it as the audit signing key; nothing was changed" in result.err
    assert f"gcloud secrets delete audit-key --project {project}" in result.err
    assert len(iam.accounts) == accounts_before  # judged before the first write
    assert not [r for r in iam.roles if r.startswith(f"projects/{project}/")]
    assert sm.access_secret_version(name=f"{name}/versions/latest").payload.data == b"ab" * 32


def test_gcp_apply_reports_a_bucket_without_retention(gcp_env: tuple[Any, Any]) -> None:
    result = _gcp_boot(gcp_env, "boot-sink-unkept", "--apply", "--output", "json", bucket="unkept")
    assert result.code == 0, result.err
    notes = json.loads(result.out)["notes"]
    assert len(notes) == 1 and "bucket unkept has no retention policy" in notes[0]


# --- Azure -------------------------------------------------------------------------------------

SUB = "8e9f0a1b-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
GROUP = "rg-workload-ids"


@pytest.fixture(scope="module")
def azure_env() -> Iterator[tuple[Any, Any, str]]:
    """The local Azure, a second Key Vault for the audit key (the tool's own vault is
    key mode's), a container with an immutability policy and one without."""
    import tempfile

    from workload_ids.sandbox.azure.keyvault import KeyVaultEmulator
    from workload_ids.sandbox.azure.local import start_local_azure
    local = start_local_azure()
    audit_vault = KeyVaultEmulator()
    audit_vault.start()
    local.blob.set_immutability_policy("audit", 1)
    local.blob.create_container("unkept")
    folder = tempfile.mkdtemp(prefix="boot-sink-")
    bundle = Path(folder) / "ca.pem"
    bundle.write_text(Path(local.settings["caBundle"]).read_text()
                      + Path(audit_vault.ca_bundle_path).read_text())
    try:
        yield local, audit_vault, str(bundle)
    finally:
        audit_vault.stop()
        local.stop()
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


def _azure_config(env: tuple[Any, Any, str], container: str = "audit", *, same_vault: bool = False) -> str:
    local, audit_vault, bundle = env
    vault = local.settings["keyVaultUrl"] if same_vault else audit_vault.url
    block = local.config_block().replace(local.settings["caBundle"], bundle)
    return (block + f"audit:\n  sink:\n    url: {local.blob.container_url(container)}/{PREFIX}\n"
            f"    signingKey: {vault}/secrets/audit-signing-key\n")


def _azure_boot(env: tuple[Any, Any, str], sub: str, *args: str, container: str = "audit",
                same_vault: bool = False) -> Any:
    Path("workload-ids.yaml").write_text(_azure_config(env, container, same_vault=same_vault))
    return run_cli("bootstrap", "--provider", "azure", "--target", sub, "--apply", "--resource-group", GROUP,
                   "--location", "westeurope", *args)


def _audit_vault(env: tuple[Any, Any, str]) -> Any:
    from azure.keyvault.secrets import SecretClient

    from workload_ids.providers.azure.clients import StaticTokenCredential
    vault = env[1]
    return SecretClient(vault.url, StaticTokenCredential(), **vault.client_kwargs())


def test_azure_listing_grants_blob_writes_without_delete_and_the_key_at_its_own_scope(cli: Any) -> None:
    Path("workload-ids.yaml").write_text(
        "audit:\n  sink:\n    url: https://acmeaudit.blob.core.windows.net/audit/workload-ids/prod\n"
        "    signingKey: https://acme-audit-kv.vault.azure.net/secrets/audit-signing-key\n")
    result = cli("bootstrap", "--provider", "azure", "--output", "json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)["azure"]
    audit = plan["auditSink"]
    perms = audit["roleDefinition"]["properties"]["permissions"][0]
    assert perms["dataActions"] == [
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"]
    assert perms["actions"] == ["Microsoft.Storage/storageAccounts/blobServices/containers/read"]
    assert "delete" not in json.dumps(perms).lower() and "*" not in json.dumps(perms)
    assert [a["principal"] for a in audit["roleAssignments"]] == [f"wid-tool-{i}" for i in APPENDERS]
    assert [a["principal"] for a in audit["readRoleAssignments"]] == ["wid-tool-discover"]
    read = audit["readRoleDefinition"]["properties"]["permissions"][0]
    assert read["dataActions"] == ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"]
    assert read["actions"] == perms["actions"]
    assert audit["readRoleDefinition"]["id"] != audit["roleDefinition"]["id"]
    for assignment in [*audit["roleAssignments"], *audit["readRoleAssignments"]]:
        assert assignment["scope"].endswith(
            "/providers/Microsoft.Storage/storageAccounts/acmeaudit/blobServices/default/containers/audit")
        props = assignment["properties"]
        assert props["conditionVersion"] == "2.0"
        assert f"StringStartsWith '{PREFIX}/'" in props["condition"]
    key = audit["signingKey"]
    assert key["scope"].endswith(
        "/providers/Microsoft.KeyVault/vaults/acme-audit-kv/secrets/audit-signing-key")
    assert key["role"].startswith("Key Vault Secrets User")
    for ident in plan["identities"]:
        assert ("Key Vault Secrets User on the secret audit-signing-key (the audit signing key"
                in ident["outsideArm"]), ident["identity"]
        # The marker key: per secret where the identity holds no vault-wide role (cleanup,
        # restore, discover); apply and rotate's vault-wide Officer is named as reaching it.
        if ident["identity"] in ("cleanup", "restore", "discover"):
            assert "Key Vault Secrets User on the secret workload-ids-signing-key" in ident["outsideArm"]
        else:
            assert "Secrets Officer on" in ident["outsideArm"] and "marker signing key" in ident["outsideArm"]
    assert "note" not in audit


def test_azure_apply_makes_the_audit_key_once_in_its_vault_and_never_prints_it(
        azure_env: tuple[Any, Any, str]) -> None:
    first = _azure_boot(azure_env, SUB, "--output", "json")
    assert first.code == 0, first.err
    doc = json.loads(first.out)
    step = next(o for o in doc["objects"] if o["name"] == "audit-signing-key")
    assert step["action"] == "created" and step["detail"].startswith("the audit signing key in https://")
    assert doc["notes"] == []  # the container has an immutability policy
    vault = _audit_vault(azure_env)
    secret = vault.get_secret("audit-signing-key")
    assert len(secret.value) == 64 and secret.value not in first.out + first.err
    assert secret.properties.tags == {"workload-ids-bootstrap": "audit-signing-key"}
    assert secret.properties.content_type == "application/vnd.workload-ids.signing-key"

    again = _azure_boot(azure_env, SUB, "--output", "json")
    assert again.code == 0, again.err
    redo = json.loads(again.out)
    assert not [o for o in redo["objects"] if o["action"] in ("created", "updated")]
    assert [o["action"] for o in redo["objects"] if o["name"] == "audit-signing-key"] == ["unchanged"]
    assert vault.get_secret("audit-signing-key").value == secret.value
    assert secret.value not in again.out + again.err


def test_azure_attack_a_pre_created_audit_key_is_refused_and_nothing_changes(
        azure_env: tuple[Any, Any, str]) -> None:
    sub = "9f0a1b2c-3d4e-4f5a-8b9c-1d2e3f4a5b6c"
    vault = _audit_vault(azure_env)
    vault.set_secret("audit-signing-key", "ab" * 32)  # someone else's, under the configured name
    try:
        arm = azure_env[0].arm
        before = (sorted(arm._role_definitions), sorted(arm._identities), sorted(arm._role_assignments))
        result = _azure_boot(azure_env, sub)
        assert result.code == 1, result.out + result.err
        assert "secret audit-signing-key exists but does not carry the tag workload-ids-bootstrap=" \
               "audit-signing-key" in result.err
        assert "will not use it as the audit signing key; nothing was changed" in result.err
        assert "delete and purge it" in result.err
        after = (sorted(arm._role_definitions), sorted(arm._identities), sorted(arm._role_assignments))
        assert after == before
        assert vault.get_secret("audit-signing-key").value == "ab" * 32
    finally:
        vault.begin_delete_secret("audit-signing-key").wait()
        vault.purge_deleted_secret("audit-signing-key")


def test_azure_reports_an_unkept_container_and_a_key_in_the_tools_own_vault(
        azure_env: tuple[Any, Any, str]) -> None:
    sub = "0a1b2c3d-4e5f-4a6b-9c8d-2e3f4a5b6c7d"
    result = _azure_boot(azure_env, sub, "--output", "json", container="unkept", same_vault=True)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert len(doc["notes"]) == 1 and "container unkept has no immutability policy" in doc["notes"][0]
    assert "keep it in a vault of its own" in doc["azure"]["auditSink"]["note"]
