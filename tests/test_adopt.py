"""``workload-ids adopt`` on AWS (moto), issue 17 item 3: a manifest per existing role
that mirrors it (templates where one matches exactly, raw entries for the rest, its
federation), the proof that it grants nothing the role does not hold, what it leaves
out, ``--apply``'s marker, and end to end: after adoption ``plan`` shows no change and
removing the manifest and running ``cleanup`` deletes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.aws import aws_mac_state
from support.cli import run_cli
from support.leavers import CONFIG, OWNERS, START, by_identity

from workload_ids.audit import records
from workload_ids.model import TAG_ADOPTED, TAG_DELETION_POLICY, TAG_MANAGED_BY

ACCOUNT = "123456789012"
QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:legacy-jobs"
TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/legacy"
GITHUB = "token.actions.githubusercontent.com"


def github_trust(sub: str = "repo:acme/legacy:ref:refs/heads/main") -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{GITHUB}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{GITHUB}:aud": "sts.amazonaws.com", f"{GITHUB}:sub": sub}}}]}


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


CONSUME = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
           "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]


def make_role(iam: Any, name: str = "Legacy.Deployer", path: str = "/legacy/",
              trust: dict[str, Any] | None = None, inline: dict[str, str] | None = None,
              managed: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> str:
    """A hand-made role; returns its ARN."""
    arn = iam.create_role(RoleName=name, Path=path,
                          AssumeRolePolicyDocument=json.dumps(trust or github_trust()),
                          Description="made by hand in 2019",
                          Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])["Role"]["Arn"]
    inline = inline if inline is not None else {"jobs": policy(
        allow([a.lower() if a == "sqs:GetQueueUrl" else a for a in CONSUME], [QUEUE]),
        allow(["dynamodb:GetItem", "dynamodb:Query"], [TABLE]))}
    for policy_name, doc in inline.items():
        iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=doc)
    for policy_name, doc in (managed or {}).items():
        created = iam.create_policy(PolicyName=policy_name, PolicyDocument=doc)["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=name, PolicyArn=created)
    return str(arn)


def state(iam: Any, name: str) -> dict[str, Any]:
    role = iam.get_role(RoleName=name)["Role"]
    return {"trust": role["AssumeRolePolicyDocument"], "path": role["Path"],
            "tags": {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]},
            "inline": {p: iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
                       for p in iam.list_role_policies(RoleName=name)["PolicyNames"]},
            "attached": iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"],
            "boundary": role.get("PermissionsBoundary")}


@pytest.fixture
def world(aws: Any) -> Any:
    Path("owners.yaml").write_text(OWNERS)
    Path("workload-ids.yaml").write_text(CONFIG)
    return aws


def test_adopt_writes_a_manifest_that_mirrors_the_role(world: Any, tmp_path: Path) -> None:
    s3 = {"reads": policy(allow(["s3:GetBucketLocation", "s3:ListBucket"], ["arn:aws:s3:::legacy-bucket"]),
                          allow(["s3:GetObject", "s3:GetObjectVersion"], ["arn:aws:s3:::legacy-bucket/*"]),
                          allow(["s3:PutObject"], ["arn:aws:s3:::legacy-bucket/*"]))}
    arn = make_role(world, managed=s3)
    before = state(world, "Legacy.Deployer")
    result = run_cli("adopt", arn, "--out", str(tmp_path / "adopted"), "--owner", "team-a",
                     "--environment", "prod")
    assert result.code == 0, result.err
    path = tmp_path / "adopted" / "prod-legacy-deployer.yaml"
    text = path.read_text()
    assert "  mode: observe\n  deletionPolicy: retain\n" in text
    assert f'  adopted: "{arn}"' in text
    assert '    - template: "queue.consume"' in text  # the same actions, any case
    assert '"dynamodb:GetItem"' in text and '      reason: "adopted from inline policy jobs"' in text
    assert '    - template: "object-storage.read"' in text
    assert "s3:PutObject on wildcard resource arn:aws:s3:::legacy-bucket/* (no template names it" in text
    assert '        repository: "acme/legacy"' in text and '        ref: "refs/heads/main"' in text
    assert '  description: "made by hand in 2019"' in text
    assert "proof: grants nothing the identity does not hold today" in result.out
    assert "templates matched exactly: object-storage.read, queue.consume" in result.out
    assert "trust: unchanged" in result.out
    assert "nothing marked" in result.out
    assert state(world, "Legacy.Deployer") == before  # without --apply nothing is written to the cloud
    assert run_cli("validate", str(path)).code == 0
    doc = json.loads(run_cli("adopt", arn, "--out", str(tmp_path / "again"), "--owner", "team-a",
                             "--environment", "prod", "--output", "json").out)
    assert doc["adoptions"][0]["widening"] == [] and doc["adoptions"][0]["trustChange"] == []


def test_adopt_apply_then_plan_shows_no_change_and_cleanup_deletes_nothing(
        world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = make_role(world, tags={"owner": "team-a", "environment": "prod", "cost-center": "42"})
    folder = tmp_path / "adopted"
    result = run_cli("adopt", arn, "--out", str(folder), "--apply")
    assert result.code == 0, result.err + result.out
    assert "marked as adopted" in result.out
    role = world.get_role(RoleName="Legacy.Deployer")["Role"]
    tags = state(world, "Legacy.Deployer")["tags"]
    assert tags[TAG_MANAGED_BY] == "workload-ids" and tags[TAG_ADOPTED] == "true"
    assert tags[TAG_DELETION_POLICY] == "retain" and tags["cost-center"] == "42"
    assert aws_mac_state(role) == "valid"
    adopted = [r for r in records(Path("audit.jsonl")) if r["action"] == "adopt"]
    assert adopted and adopted[0]["detail"]["owner"] == "team-a"

    plan = run_cli("plan", "--detailed-exitcode", str(folder))
    assert plan.code == 0, plan.out + plan.err
    assert "No changes" in plan.out
    marked = state(world, "Legacy.Deployer")
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    assert state(world, "Legacy.Deployer") == marked
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", START)
    active = by_identity(json.loads(run_cli("cleanup", str(folder), "--output", "json").out))
    assert active["Legacy.Deployer"]["status"] == "active"

    (folder / "prod-legacy-deployer.yaml").unlink()
    assert run_cli("cleanup", str(folder), "--apply").code == 0
    after = state(world, "Legacy.Deployer")
    assert after["tags"] == {"owner": "team-a", "environment": "prod", "cost-center": "42"}
    assert {k: v for k, v in after.items() if k != "tags"} == \
        {k: v for k, v in marked.items() if k != "tags"}
    assert [r["identity"] for r in records(Path("audit.jsonl")) if r["action"] == "release-identity"] \
        == ["Legacy.Deployer"]


def test_what_cannot_be_expressed_is_listed_and_never_granted(world: Any, tmp_path: Path) -> None:
    arn = make_role(world, inline={"wide": policy(
        allow(["s3:*"], ["arn:aws:s3:::legacy-bucket"]),
        allow(["sqs:SendMessage"], [QUEUE], Condition={"Bool": {"aws:SecureTransport": "true"}}),
        {"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"},
        allow(["dynamodb:GetItem"], [TABLE, f"arn:aws:dynamodb:us-west-2:{ACCOUNT}:table/other"]))})
    result = run_cli("adopt", arn, "--out", str(tmp_path / "a"), "--owner", "team-a")
    assert result.code == 0, result.err
    text = (tmp_path / "a" / "adopted-legacy-deployer.yaml").read_text()
    for fragment in ("wildcard action s3:* on arn:aws:s3:::legacy-bucket",
                     "sqs:SendMessage on " + QUEUE + " only under the condition",
                     "NotAction cannot be expressed",
                     "resource arn:aws:dynamodb:us-west-2:123456789012:table/other of access entry"):
        assert fragment in result.out and fragment in text, fragment
    assert "s3:*" not in text.split("apiVersion:")[1] and "NotAction" not in text.split("apiVersion:")[1]
    assert "proof: grants nothing the identity does not hold today" in result.out
    # Narrowing only: --apply marks it, and plan shows what the manifest does not keep.
    assert run_cli("adopt", arn, "--out", str(tmp_path / "b"), "--owner", "team-a", "--apply").code == 0
    plan = run_cli("plan", "--detailed-exitcode", str(tmp_path / "b"))
    assert plan.code == 2
    assert "- s3:*  arn:aws:s3:::legacy-bucket" in plan.out
    assert "observe only: apply will not make this change" in plan.out


def test_apply_refuses_a_trust_change_or_a_lifted_deny(world: Any, tmp_path: Path) -> None:
    loose = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]}
    arn = make_role(world, trust=loose)
    before = state(world, "Legacy.Deployer")
    result = run_cli("adopt", arn, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 3, result.out + result.err
    assert "trust: would change:" in result.out and "- trust Service:ecs-tasks.amazonaws.com" in result.out
    assert "REFUSED: --apply refused: a plan of the new manifest shows a trust change" in result.out
    assert state(world, "Legacy.Deployer") == before
    assert (tmp_path / "a" / "adopted-legacy-deployer.yaml").exists()  # written for review

    denied = make_role(world, name="with-deny", inline={"p": policy(
        allow(["dynamodb:GetItem"], [TABLE]),
        {"Effect": "Deny", "Action": "dynamodb:GetItem", "Resource": TABLE})})
    result = run_cli("adopt", denied, "--out", str(tmp_path / "b"), "--owner", "team-a", "--apply")
    assert result.code == 3
    assert "+ (lifts a Deny)" in result.out
    assert TAG_MANAGED_BY not in state(world, "with-deny")["tags"]


@pytest.mark.parametrize("identity, message", [
    (f"arn:aws:iam::{ACCOUNT}:role/nope", "no such identity (adopt matched nothing for it)"),
    ("legacy", "is not an identity adopt can read"),
    (f"arn:aws:iam::{ACCOUNT}:role/other-path/Legacy.Deployer", "no such identity"),
])
def test_an_identity_that_matches_nothing_is_an_error(world: Any, tmp_path: Path, identity: str,
                                                      message: str) -> None:
    arn = make_role(world)
    result = run_cli("adopt", arn, identity, "--out", str(tmp_path / "a"), "--owner", "team-a")
    assert result.code == 1
    assert message in result.err and "nothing was adopted" in result.err
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())


def test_an_identity_workload_ids_manages_is_not_adopted(world: Any, manifests: Any, tmp_path: Path) -> None:
    from support.aws import workload
    assert run_cli("apply", "--auto-approve", str(manifests({"a.yaml": workload()}))).code == 0
    before = state(world, "wid_prod_svc-a")
    result = run_cli("adopt", f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_svc-a",
                     "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 1
    assert "already carries a workload-ids marker (workload prod/svc-a" in result.out
    assert state(world, "wid_prod_svc-a") == before


def test_an_owner_is_required(world: Any, tmp_path: Path) -> None:
    arn = make_role(world)
    result = run_cli("adopt", arn, "--out", str(tmp_path / "a"))
    assert result.code == 1
    assert "no owner" in result.err and "pass --owner ID" in result.err


def test_flipped_to_manage_apply_converges_the_adopted_role(world: Any, tmp_path: Path) -> None:
    arn = make_role(world)
    folder = tmp_path / "a"
    assert run_cli("adopt", arn, "--out", str(folder), "--owner", "team-a", "--apply").code == 0
    path = folder / "adopted-legacy-deployer.yaml"
    path.write_text(path.read_text().replace("  mode: observe\n", "  mode: manage\n"))
    plan = run_cli("plan", str(folder))
    assert "- remove-foreign-policy" in plan.out and "inline:jobs" in plan.out
    assert run_cli("apply", "--auto-approve", str(folder)).code == 0
    after = state(world, "Legacy.Deployer")
    assert list(after["inline"]) == ["workload-ids"] and after["boundary"] is not None
    assert after["path"] == "/legacy/"  # the role keeps its path and name
    assert aws_mac_state(world.get_role(RoleName="Legacy.Deployer")["Role"]) == "valid"
    assert run_cli("plan", "--detailed-exitcode", str(folder)).code == 0


def test_out_must_be_a_folder(world: Any, tmp_path: Path) -> None:
    arn = make_role(world)
    (tmp_path / "file").write_text("x")
    result = run_cli("adopt", arn, "--out", str(tmp_path / "file"), "--owner", "team-a")
    assert result.code == 1
    assert "cannot make the folder" in result.err and "Traceback" not in result.err


def test_a_fleet_of_adopted_roles_plans_no_change(world: Any, tmp_path: Path) -> None:
    """Past the fleet threshold plan reads the account in batches; adopted roles (whose
    session, description and attached policies the batch lacks) are read again alone."""
    reads = {"reads": policy(allow(["s3:GetBucketLocation", "s3:ListBucket"], ["arn:aws:s3:::shared"]),
                             allow(["s3:GetObject", "s3:GetObjectVersion"], ["arn:aws:s3:::shared/*"]))}
    arns = [make_role(world, name=f"legacy-{i:02d}", managed=reads if i == 0 else None,
                      inline={"p": policy(allow(["dynamodb:GetItem"], [f"{TABLE}-{i}"]))})
            for i in range(12)]
    result = run_cli("adopt", *arns, "--out", str(tmp_path / "a"), "--owner", "team-a", "--apply")
    assert result.code == 0, result.out + result.err
    assert len(list((tmp_path / "a").iterdir())) == 12
    plan = run_cli("plan", "--detailed-exitcode", str(tmp_path / "a"))
    assert plan.code == 0, plan.out
    assert "No changes. 12 workload(s) match the cloud." in plan.out


def test_an_error_on_a_later_identity_leaves_none_marked(world: Any, tmp_path: Path) -> None:
    """Identities are marked only once every one of them has its manifest and proof: an
    adoption that fails part-way ("nothing was adopted") has marked nothing before it."""
    first = make_role(world, name="legacy-a")
    second = make_role(world, name="legacy-b")
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "adopted-legacy-b.yaml").write_text("# someone's\n")
    result = run_cli("adopt", first, second, "--out", str(folder), "--owner", "team-a", "--apply")
    assert result.code == 1, result.out + result.err
    assert "adopted-legacy-b.yaml exists already" in result.err and "nothing was adopted" in result.err
    for name in ("legacy-a", "legacy-b"):
        assert TAG_MANAGED_BY not in state(world, name)["tags"], name
    assert not Path("audit.jsonl").exists() or \
        not [r for r in records(Path("audit.jsonl")) if r["action"] == "adopt"]

