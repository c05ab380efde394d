"""The compiled IAM reader returns exactly what botocore's own parser returns, on real
answers from moto: roles with every kind of attachment, users with groups and keys,
empty pages, and a truncated page."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore import handlers, parsers

from workload_ids.providers.aws.fastxml import FAST_SHAPES, FastQueryParser, install

DOC = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]})
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def _bodies(client: Any, operation: str, **params: Any) -> list[bytes]:
    """The raw XML of each answer to ``operation``."""
    captured: list[bytes] = []
    event = f"after-call.iam.{client.meta.service_model.operation_model(operation).name}"

    def keep(http_response: Any, **_: Any) -> None:
        captured.append(http_response.content)
    client.meta.events.register(event, keep)
    getattr(client, _snake(operation))(**params)
    client.meta.events.unregister(event, keep)
    return captured


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _both(client: Any, operation: str, body: bytes) -> tuple[Any, Any]:
    """botocore's answer (its parser, then its after-call handler decoding policy
    documents) and ours."""
    shape = client.meta.service_model.operation_model(operation).output_shape
    response = {"body": body, "headers": {}, "status_code": 200}
    slow = parsers.QueryParser().parse(response, shape)
    handlers._decode_policy_types(slow, shape)
    return slow, FastQueryParser().parse(response, shape)


@pytest.fixture
def iam(aws: Any) -> Any:
    aws.create_policy(PolicyName="managed", PolicyDocument=DOC)
    arn = "arn:aws:iam::123456789012:policy/managed"
    for i in range(3):
        name = f"wid_prod_r{i}"
        aws.create_role(RoleName=name, Path="/workload-ids/", AssumeRolePolicyDocument=TRUST,
                        Description=f"role {i} <&>", MaxSessionDuration=3600 * (i + 1),
                        Tags=[{"Key": "workload-ids:managed-by", "Value": "workload-ids"},
                              {"Key": "empty", "Value": ""}],
                        **({"PermissionsBoundary": arn} if i == 1 else {}))
        aws.put_role_policy(RoleName=name, PolicyName="workload-ids", PolicyDocument=DOC)
    aws.attach_role_policy(RoleName="wid_prod_r0", PolicyArn=arn)
    aws.create_instance_profile(InstanceProfileName="ip", Tags=[{"Key": "a", "Value": "b"}])
    aws.add_role_to_instance_profile(InstanceProfileName="ip", RoleName="wid_prod_r2")
    aws.create_group(GroupName="g")
    aws.create_user(UserName="wid_prod_u", Path="/workload-ids/", Tags=[{"Key": "k", "Value": "v"}])
    aws.add_user_to_group(GroupName="g", UserName="wid_prod_u")
    aws.put_user_policy(UserName="wid_prod_u", PolicyName="workload-ids", PolicyDocument=DOC)
    aws.attach_user_policy(UserName="wid_prod_u", PolicyArn=arn)
    aws.create_access_key(UserName="wid_prod_u")
    return aws


@pytest.mark.parametrize(("operation", "params"), [
    ("GetAccountAuthorizationDetails", {"Filter": ["Role", "User"]}),
    ("GetAccountAuthorizationDetails", {"Filter": ["Role", "User"], "MaxItems": 2}),
    ("GetAccountAuthorizationDetails", {}),
    ("ListRoles", {"PathPrefix": "/workload-ids/"}),
    ("ListRoles", {"PathPrefix": "/workload-ids/", "MaxItems": 1}),
    ("ListRoles", {"PathPrefix": "/nothing-here/"}),
])
def test_compiled_reader_equals_botocore(iam: Any, operation: str, params: dict[str, Any]) -> None:
    [body] = _bodies(iam, operation, **params)
    slow, fast = _both(iam, operation, body)
    assert fast == slow
    if operation == "GetAccountAuthorizationDetails" and "MaxItems" not in params:
        roles = {r["RoleName"]: r for r in fast["RoleDetailList"]}
        assert roles["wid_prod_r2"]["InstanceProfileList"][0]["InstanceProfileName"] == "ip"
        assert roles["wid_prod_r1"]["PermissionsBoundary"]["PermissionsBoundaryArn"].endswith("/managed")
        assert fast["UserDetailList"][0]["GroupList"] == ["g"]
        assert roles["wid_prod_r0"]["AssumeRolePolicyDocument"] == json.loads(TRUST)
        assert roles["wid_prod_r0"]["RolePolicyList"][0]["PolicyDocument"] == json.loads(DOC)
        created = roles["wid_prod_r0"]["CreateDate"]
        assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0


def test_other_answers_use_botocore(iam: Any) -> None:
    [body] = _bodies(iam, "GetRole", RoleName="wid_prod_r0")
    slow, fast = _both(iam, "GetRole", body)
    assert fast == slow
    assert "GetRoleResponse" not in FAST_SHAPES


def test_clients_of_a_session_use_it(iam: Any) -> None:
    """install() swaps the parser and drops botocore's policy-decoding handler (the parser
    decodes): every IAM answer, read the fast way or not, equals plain boto3's."""
    session = boto3.session.Session(region_name="us-east-1")
    install(session._session)
    client = session.client("iam")
    plain = boto3.client("iam", region_name="us-east-1")
    for operation, params in [("get_account_authorization_details", {"Filter": ["Role", "User"]}),
                              ("list_roles", {}), ("get_role", {"RoleName": "wid_prod_r0"}),
                              ("get_role_policy", {"RoleName": "wid_prod_r0", "PolicyName": "workload-ids"}),
                              ("list_users", {})]:
        ours, theirs = getattr(client, operation)(**params), getattr(plain, operation)(**params)
        ours.pop("ResponseMetadata")
        theirs.pop("ResponseMetadata")
        assert ours == theirs, operation
    assert client.get_role(RoleName="wid_prod_r0")["Role"]["AssumeRolePolicyDocument"] == json.loads(TRUST)
    assert client.get_role_policy(RoleName="wid_prod_r0", PolicyName="workload-ids")["PolicyDocument"] \
        == json.loads(DOC)
    assert type(client._endpoint._response_parser_factory).__name__ == "FastResponseParserFactory"


def test_timestamps_read_as_botocore_reads_them() -> None:
    """The ISO 8601 fast path gives botocore's datetime; other forms go to botocore."""
    from botocore.utils import parse_timestamp
    converter = FastQueryParser()._compile(
        boto3.client("iam", region_name="us-east-1").meta.service_model.shape_for("dateType"), {})
    from xml.etree.ElementTree import Element  # nosec B405 - building a node, not parsing
    for text in ["2026-12-03T10:00:00Z", "2026-12-03T10:00:00.1Z", "2026-12-03T10:00:00.123456Z",
                 "2026-12-03T10:00:00.1234567Z", "2026-12-03T10:00:00+02:00", "1764756000"]:
        node = Element("CreateDate")
        node.text = text
        assert converter(node) == parse_timestamp(text), text
