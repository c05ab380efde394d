"""The JSON Schema of a workload manifest, for editors' YAML language servers."""

from __future__ import annotations

from typing import Any

from .manifest import Workload


def manifest_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one ``kind: Workload`` document."""
    schema = Workload.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://workload-ids.dev/schema/workload-v1.json",
        "title": "workload-ids Workload manifest (workload-ids/v1)",
        **schema,
    }
