"""lint suggests a template for raw actions only when the template grants no more than the raw
entry on the same resources (issue 16 item 8): never a wider grant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.aws import ACCOUNT, workload
from support.azure import BASE, azure_workload
from support.cli import CliResult, run_cli
from support.gcp import gcp_workload

QUEUE = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:jobs"
TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/movers"
CONSUME = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
           "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]  # queue.consume on AWS, exactly


def raw(actions: list[str], resource: str, field: str = "actions") -> str:
    return (f"    - {field}: [{', '.join(actions)}]\n"
            f"      resources: [{resource}]\n"
            "      reason: least privilege by hand\n")


def lint(manifests: Any, text: str) -> tuple[Path, CliResult]:
    path = manifests({"svc.yaml": text}) / "svc.yaml"
    result = run_cli("lint", str(path))
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    return path, result


def suggestions(result: CliResult) -> list[str]:
    found = [line.split(": suggestion: ", 1)[1] for line in result.out.splitlines()
             if ": suggestion: " in line]
    return [text for text in found if text.startswith("template ")]


# --- attacks: a wider template is never suggested ---------------------------------------------

def test_put_and_update_item_get_no_table_write_suggestion(manifests: Any) -> None:
    # The newcomer's case: table.write adds DeleteItem, BatchWriteItem, ConditionCheckItem.
    _, result = lint(manifests, workload(access=raw(["dynamodb:PutItem", "dynamodb:UpdateItem"], TABLE)))
    assert suggestions(result) == []


def test_part_of_queue_consume_gets_no_suggestion(manifests: Any) -> None:
    _, result = lint(manifests, workload(access=raw(["sqs:ReceiveMessage", "sqs:DeleteMessage"], QUEUE)))
    assert suggestions(result) == []


def test_a_template_on_other_resources_is_not_suggested(manifests: Any) -> None:
    # object-storage.read grants GetObject on the bucket's objects (arn/*), which the raw entry
    # (on the bucket itself) does not: a different, wider resource.
    actions = ["s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion"]
    _, result = lint(manifests, workload(access=raw(actions, "arn:aws:s3:::acme-movers")))
    assert suggestions(result) == []


def test_a_template_with_an_unscoped_statement_is_not_suggested(manifests: Any) -> None:
    # registry.pull also grants ecr:GetAuthorizationToken on "*", which no raw entry can name.
    actions = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
               "ecr:GetAuthorizationToken"]
    repo = f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/movers"
    _, result = lint(manifests, workload(access=raw(actions, repo)))
    assert suggestions(result) == []


def test_gcp_part_of_object_storage_read_gets_no_suggestion(manifests: Any) -> None:
    _, result = lint(manifests, gcp_workload(access=raw(["storage.objects.get"],
                                                        "projects/_/buckets/bucket-a")))
    assert suggestions(result) == []


def test_azure_part_of_a_template_gets_no_suggestion(manifests: Any) -> None:
    table = f"{BASE}/Microsoft.Storage/storageAccounts/acmeorders/tableServices/default/tables/jobs"
    data = ["Microsoft.Storage/storageAccounts/tableServices/tables/entities/add/action"]
    _, result = lint(manifests, azure_workload(access=raw(data, table, "dataActions").replace(
        "    - dataActions:", "    - actions: []\n      dataActions:")))
    assert suggestions(result) == []


# --- a template that grants exactly, or less, is suggested ------------------------------------

def test_exactly_the_template_is_suggested(manifests: Any) -> None:
    path, result = lint(manifests, workload(access=raw(CONSUME, QUEUE)))
    assert f"{path}:17:7: suggestion: template queue.consume grants these actions on a sqs-queue; " \
           "use it instead of raw actions" in result.out.splitlines()


def test_a_narrower_template_is_suggested_for_part_of_the_entry(manifests: Any) -> None:
    _, result = lint(manifests, workload(access=raw([*CONSUME, "sqs:SendMessage"], QUEUE)))
    # queue.publish (SendMessage, GetQueueUrl) is narrower too, but leaves more raw actions.
    assert suggestions(result) == [
        "template queue.consume grants sqs:ChangeMessageVisibility, sqs:DeleteMessage, "
        "sqs:GetQueueAttributes, sqs:GetQueueUrl, sqs:ReceiveMessage of these actions on a sqs-queue "
        "and nothing more; use it for those and keep only sqs:SendMessage as raw actions"]


def test_table_write_is_suggested_when_the_raw_entry_grants_all_of_it(manifests: Any) -> None:
    actions = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
               "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:GetItem"]
    _, result = lint(manifests, workload(access=raw(actions, TABLE)))
    assert suggestions(result) == [
        "template table.write grants dynamodb:BatchWriteItem, dynamodb:ConditionCheckItem, "
        "dynamodb:DeleteItem, dynamodb:PutItem, dynamodb:UpdateItem of these actions on a "
        "dynamodb-table and nothing more; use it for those and keep only dynamodb:GetItem as raw "
        "actions"]


def test_gcp_exact_template_is_suggested(manifests: Any) -> None:
    _, result = lint(manifests, gcp_workload(access=raw(
        ["pubsub.subscriptions.consume"], "projects/acme-prod/subscriptions/orders-worker")))
    assert suggestions(result) == [
        "template queue.consume grants these actions on a pubsub-subscription; use it instead of "
        "raw actions"]


def test_azure_exact_template_is_suggested(manifests: Any) -> None:
    queue = f"{BASE}/Microsoft.ServiceBus/namespaces/acme-orders/queues/invoices"
    _, result = lint(manifests, azure_workload(access=raw(
        ["Microsoft.ServiceBus/namespaces/messages/receive/action"], queue, "dataActions").replace(
        "    - dataActions:", "    - actions: []\n      dataActions:")))
    assert suggestions(result) == [
        "template queue.consume grants these actions on a servicebus-queue; use it instead of raw "
        "actions"]


def test_a_config_template_bound_on_the_whole_project_is_not_suggested(manifests: Any,
                                                                       tmp_path: Path) -> None:
    # The same permission as the raw entry, but bound on the project without a condition: it
    # would reach every bucket of the project, not the one listed.
    folder = tmp_path / "cwd" / "mine"
    folder.mkdir()
    (folder / "acme.bucket.get.yaml").write_text(
        "name: acme.bucket.get\ndescription: Get objects, bound on the project.\n"
        "gcp:\n  gcs-bucket:\n    permissions: [storage.objects.get]\n    binding: project\n")
    with open("workload-ids.yaml", "a", encoding="utf-8") as config:
        config.write("templates: [mine]\n")
    _, result = lint(manifests, gcp_workload(access=raw(["storage.objects.get"],
                                                        "projects/_/buckets/bucket-a")))
    assert suggestions(result) == []
    # The control: the same template bound under a condition is suggested.
    (folder / "acme.bucket.get.yaml").write_text(
        "name: acme.bucket.get\ndescription: Get objects, bound on the project.\n"
        "gcp:\n  gcs-bucket:\n    permissions: [storage.objects.get]\n    binding: condition\n")
    _, result = lint(manifests, gcp_workload(access=raw(["storage.objects.get"],
                                                        "projects/_/buckets/bucket-a")))
    assert suggestions(result) == [
        "template acme.bucket.get grants these actions on a gcs-bucket; use it instead of raw actions"]
