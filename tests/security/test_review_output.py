"""A crafted manifest value cannot break the review's Markdown (pull-request comment) or
HTML: a reason holding backticks, HTML and a heading marker ends up inside the diff's code
fence (the fence is longer than any backtick run) and as escaped text in the page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from support.aws import ACCOUNT, workload
from support.cli import run_cli
from support.trust import TEST_TRUST

from workload_ids import clock
from workload_ids.sandbox.moto_access_advisor import advisor, record_access

TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders"
CRAFTED = "x ```` </pre><script>alert(1)</script> ### forged | <!-- hide"
ACCESS = ("    - template: queue.consume\n"
          f"      resources: [arn:aws:sqs:eu-west-1:{ACCOUNT}:svc-a]\n"
          "    - actions: [dynamodb:GetItem]\n"
          f"      resources: [{TABLE}]\n"
          f"      reason: '{CRAFTED}'\n")


@pytest.fixture
def crafted(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    (Path.cwd() / "workload-ids.yaml").write_text(
        "credentials:\n  verify: {interval: 0s}\n" + TEST_TRUST + "audit: {path: audit.jsonl}\n",
        encoding="utf-8")
    path = Path.cwd() / "svc-a.yaml"
    path.write_text(workload(access=ACCESS), encoding="utf-8")
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", clock.format_time(clock.now() - timedelta(days=200)))
    assert run_cli("apply", "--auto-approve", str(path)).code == 0
    monkeypatch.delenv("WORKLOAD_IDS_CLOCK")
    advisor(ACCOUNT).job_seconds = 0
    record_access(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:role/workload-ids/wid_prod_svc-a", "sqs",
                  action="ReceiveMessage", at=clock.now() - timedelta(days=1), region="eu-west-1")
    return path


def test_a_crafted_reason_cannot_close_the_diff_fence(crafted: Path) -> None:
    result = run_cli("review", "--output", "markdown", str(crafted))
    assert result.code == 0, result.err
    tokens = MarkdownIt("commonmark").parse(result.out)
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and fences[0].info == "diff"
    # The whole diff, crafted line included, is inside the one fence.
    assert f"-      reason: '{CRAFTED}'" in fences[0].content
    assert fences[0].content.splitlines()[-1] == f"-      reason: '{CRAFTED}'"
    assert tokens[-1] is fences[0]  # nothing after the fence was taken out of it
    assert fences[0].markup == "`````"  # longer than the reason's four backticks
    assert not [t for t in tokens if t.type == "html_block"]
    inline_html = [c for t in tokens if t.type == "inline"
                   for c in t.children or [] if c.type == "html_inline"]
    assert inline_html == []
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert not [h for h in headings if "forged" in h]


def test_a_crafted_reason_is_text_in_the_html_page(crafted: Path) -> None:
    result = run_cli("review", "--output", "html", str(crafted))
    assert result.code == 0, result.err
    page = result.out
    assert page.count("<script>") == 1 and "<script>alert(1)" not in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<!-- hide" not in page
