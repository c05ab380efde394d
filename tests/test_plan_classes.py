"""Issue 18 item 4: every plan change is classified widening, narrowing or neutral, and
`plan --output markdown` is a pull-request comment with widening first and
escalation-capable rows highlighted. Real boto3 against moto; the Markdown is rendered
by a real CommonMark parser (markdown-it-py) to check what a reviewer would see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from support.aws import ACCOUNT, workload
from support.cli import run_cli
from support.trust import TEST_TRUST

from workload_ids.model import Change
from workload_ids.plan import classify

QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:svc-a"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_worker"
TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders"


def entries(*actions: str, resource: str = TABLE) -> str:
    return ("    - template: queue.consume\n"
            f"      resources: [{QUEUE}]\n"
            + (f"    - actions: [{', '.join(actions)}]\n"
               f"      resources: [{resource}]\n"
               "      reason: reads the orders table\n" if actions else ""))


def plan(path: Path, *flags: str) -> Any:
    result = run_cli("plan", *flags, str(path))
    assert result.code == 0, result.err
    return result


def write(folder: Path, text: str) -> Path:
    path = folder / "svc-a.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_each_change_has_its_class(aws: Any, manifests: Any) -> None:
    folder = manifests({})
    path = write(folder, workload(access=entries("dynamodb:GetItem")))
    created = json.loads(plan(path, "--output", "json").out)
    assert [c["class"] for c in created["changes"]] == ["widening"]
    assert created["summary"]["widening"] == 1 and created["summary"]["narrowing"] == 0
    assert run_cli("apply", "--auto-approve", str(path)).code == 0

    # Adding an action widens, dropping one narrows, a new owner is neutral.
    write(folder, workload(access=entries("dynamodb:GetItem", "dynamodb:Query")))
    wider = json.loads(plan(path, "--output", "json").out)
    assert {c["action"]: c["class"] for c in wider["changes"]} == {"update-permissions": "widening",
                                                                   "update-tags": "neutral"}
    write(folder, workload(access=entries()))
    narrower = json.loads(plan(path, "--output", "json").out)
    assert {c["action"]: c["class"] for c in narrower["changes"]} == {"update-permissions": "narrowing",
                                                                      "update-tags": "neutral"}
    assert narrower["summary"]["narrowing"] == 1 and narrower["summary"]["widening"] == 0


def test_a_change_that_adds_and_removes_is_widening() -> None:
    """Swapping one grant for another gives something new: it is reviewed as widening."""
    swap = Change("prod/a", "aws", ACCOUNT, "update-permissions", "r", {"permissions": {
        "added": [{"action": "sqs:SendMessage", "resource": QUEUE}],
        "removed": [{"action": "sqs:ReceiveMessage", "resource": QUEUE}]}})
    assert classify(swap) == "widening"
    trust = Change("prod/a", "gcp", "p", "update-federation", "sa", {"trust": {
        "added": [], "removed": [{"principal": "github", "subject": "repo:a/b:ref:refs/heads/main"}]}})
    assert classify(trust) == "narrowing"
    boundary = Change("prod/a", "aws", ACCOUNT, "update-boundary", "r",
                      {"boundary": {"from": "arn:aws:iam::1:policy/b", "to": ""}})
    assert classify(boundary) == "widening"
    session = Change("prod/a", "aws", ACCOUNT, "update-settings", "r",
                     {"settings": {"maxSessionDuration": {"from": "3600", "to": "43200"}}})
    assert classify(session) == "widening"
    assert classify(Change("prod/a", "aws", ACCOUNT, "update-tags", "r", {"tags": {}})) == "neutral"


def test_markdown_puts_widening_first_and_marks_escalation(aws: Any, manifests: Any) -> None:
    folder = manifests({})
    path = write(folder, workload(access=entries("dynamodb:GetItem")))
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    # One manifest change that removes an entry (narrowing) and adds an approved
    # escalation-capable one (widening): the comment shows the widening first.
    # The apply above read the working directory's config; the approval joins it there (a
    # config elsewhere would make the manifest's source path another one).
    config = Path.cwd() / "workload-ids.yaml"
    config.write_text("credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST +
                      'guardrails: {approvedEscalations: [{workload: "prod/svc-a", provider: aws, '
                      f'target: "{ACCOUNT}", actions: ["iam:PassRole"], resources: ["{ROLE_ARN}"], '
                      'reason: "OPS-42 approved by the platform team"}]}\n', encoding="utf-8")
    write(folder, workload(access=entries("iam:PassRole", resource=ROLE_ARN)))
    result = plan(path, "--output", "markdown")
    text = result.out
    assert text.startswith("### workload-ids plan: 1 widening, 0 narrowing, 1 neutral")
    assert text.index("#### Widening") < text.index("#### Neutral")
    assert "escalation-capable: 1 permission(s)" in text
    assert f"**ESCALATION** `+ iam:PassRole  {ROLE_ARN}`" in text
    # The same rows, through a CommonMark parser: headings in order, the escalation bold.
    html = MarkdownIt().render(text)
    assert html.index("<h4>Widening") < html.index("<h4>Neutral")
    assert f"<strong>ESCALATION</strong> <code>+ iam:PassRole  {ROLE_ARN}</code>" in html
    assert f"<code>- dynamodb:GetItem  {TABLE}  (unused: no use on record)</code>" in html


def test_a_name_read_from_the_cloud_cannot_write_into_the_comment(aws: Any, manifests: Any) -> None:
    """Attack: someone who can edit the role's trust policy adds a subject that closes the
    row's code span and writes an image (fetched from their server when a reviewer opens
    the pull request) and an HTML comment. The plan removes that statement, and the
    comment shows the subject as text inside its span."""
    folder = manifests({})
    path = write(folder, workload())
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    role = "wid_prod_svc-a"
    trust = json.loads(json.dumps(aws.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]))
    sneaky = "repo:acme/x:ref:` ![t](https://evil.example/p) <!-- `"
    extra = json.loads(json.dumps(trust["Statement"][0]))
    extra["Sid"] = "Added"
    extra["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] = sneaky
    trust["Statement"].append(extra)
    aws.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(trust))
    result = plan(path, "--output", "markdown")
    html = MarkdownIt().render(result.out)
    assert "#### Narrowing" in result.out
    assert "<img" not in html and "<!--" not in html
    assert "![t](https://evil.example/p) &lt;!--" in html  # shown, as text
