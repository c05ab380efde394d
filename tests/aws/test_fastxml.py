"""The compiled IAM reader returns exactly what botocore's own parser returns, on real
answers from moto: roles with every kind of attachment, users with groups and keys,
empty pages, and a truncated page."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore import parsers

from workload_ids.providers.aws.fastxml import FAST_SHAPES, FastQueryParser, FastResponseParserFactory

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
    shape = client.meta.service_model.operation_model(operation).output_shape
    response = {"body": body, "headers": {}, "status_code": 200}
    return parsers.QueryParser().parse(response, shape), FastQueryParser().parse(response, shape)


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


def test_other_answers_use_botocore(iam: Any) -> None:
    [body] = _bodies(iam, "GetRole", RoleName="wid_prod_r0")
    slow, fast = _both(iam, "GetRole", body)
    assert fast == slow
    assert "GetRoleResponse" not in FAST_SHAPES


def test_clients_of_a_session_use_it(iam: Any) -> None:
    session = boto3.session.Session(region_name="us-east-1")
    session._session.register_component("response_parser_factory", FastResponseParserFactory())
    client = session.client("iam")
    plain = boto3.client("iam", region_name="us-east-1")
    assert client.get_account_authorization_details(Filter=["Role", "User"])["RoleDetailList"] == \
        plain.get_account_authorization_details(Filter=["Role", "User"])["RoleDetailList"]
    endpoint_factory = client._endpoint._response_parser_factory
    assert isinstance(endpoint_factory, FastResponseParserFactory)


@pytest.mark.parametrize("text", [
    "2026-12-03T15:45:00Z", "2026-12-03T15:45:00.5Z", "2026-12-03T15:45:00.123456Z",
    "2026-12-03T15:45:00+00:00", "2026-12-03T15:45:00.1234567Z", "2026-12-03T15:45:00+02:00",
    "2026-12-03T15:45:00", "Thu, 03 Dec 2026 15:45:00 GMT", "1796312700", "2026-02-30T00:00:00Z",
])
def test_timestamps_read_directly_are_the_instant_botocore_reads(text: str) -> None:
    from botocore.utils import parse_timestamp

    from workload_ids.providers.aws.fastxml import iso_timestamp
    try:
        expected = parse_timestamp(text)
    except (ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            iso_timestamp(text, parse_timestamp)
        return
    got = iso_timestamp(text, parse_timestamp)
    assert got == expected
    assert got.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(("operation", "params"), [
    ("GetAccountAuthorizationDetails", {}),
    ("ListRoles", {"PathPrefix": "/workload-ids/"}),
    ("GetRole", {"RoleName": "wid_prod_r0"}),
    ("GetRolePolicy", {"RoleName": "wid_prod_r0", "PolicyName": "workload-ids"}),
    ("GetUserPolicy", {"UserName": "wid_prod_u", "PolicyName": "workload-ids"}),
    ("GetPolicyVersion", {"PolicyArn": "arn:aws:iam::123456789012:policy/managed", "VersionId": "v1"}),
    ("ListUsers", {}),
])
def test_compiled_policy_decoder_equals_botocores(iam: Any, operation: str, params: dict[str, Any]) -> None:
    """The after-call decoder that replaces botocore's decodes the same documents the same
    way, on answers parsed by botocore's own parser."""
    from botocore.handlers import json_decode_policies

    from workload_ids.providers.aws.fastxml import decode_policies
    [body] = _bodies(iam, operation, **params)
    model = iam.meta.service_model.operation_model(operation)
    response = {"body": body, "headers": {}, "status_code": 200}
    theirs, ours = (parsers.QueryParser().parse(response, model.output_shape) for _ in range(2))
    json_decode_policies(theirs, model)
    decode_policies(ours, model)
    assert ours == theirs
    if operation != "ListUsers":
        assert json.dumps(ours, default=str).count('"Statement"') >= 1  # something was decoded


def test_an_installed_session_decodes_each_document_once_and_shares_no_dict(iam: Any) -> None:
    from workload_ids.providers.aws import fastxml
    session = boto3.session.Session(region_name="us-east-1")
    fastxml.install(session._session)
    client = session.client("iam")
    plain = boto3.client("iam", region_name="us-east-1")
    ours = client.get_account_authorization_details()
    theirs = plain.get_account_authorization_details()
    for key in ("RoleDetailList", "UserDetailList", "GroupDetailList", "Policies"):
        assert ours[key] == theirs[key]
    trusts = [r["AssumeRolePolicyDocument"] for r in ours["RoleDetailList"]]
    assert trusts[0] == json.loads(TRUST)
    assert len({id(t) for t in trusts}) == len(trusts)  # one text, a dict per role
    assert client.get_role(RoleName="wid_prod_r0")["Role"]["AssumeRolePolicyDocument"] == json.loads(TRUST)
