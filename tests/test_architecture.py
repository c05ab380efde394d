"""The shape the architecture issue asked for, held by tests: no import cycle in the
runtime (import-linter, in CI, holds the layers), the same files in every cloud's folder,
one registry of clouds, and no workflow reaching into a backend by name."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parent.parent / "workload_ids"
SHARED = {"__init__.py", "clients.py", "render.py", "identity.py", "keys.py", "leavers.py",
          "secret_store.py", "lock.py", "discovery.py", "organization.py"}


def _cycles() -> list[list[str]]:
    """Strongly connected groups of runtime modules (the emulators are not the runtime)."""
    graph = grimp.build_graph("workload_ids", exclude_type_checking_imports=True)
    runtime = sorted(m for m in graph.modules if not m.startswith("workload_ids.sandbox"))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if not imported.startswith("workload_ids") or imported.startswith("workload_ids.sandbox"):
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))
    for module in runtime:
        if module not in index:
            visit(module)
    return found


def test_the_runtime_has_no_import_cycle() -> None:
    assert _cycles() == []


def test_every_cloud_folder_has_the_same_files() -> None:
    for cloud in ("aws", "gcp", "azure"):
        files = {p.name for p in (PACKAGE / "providers" / cloud).glob("*.py")}
        assert files >= SHARED, (cloud, SHARED - files)
        assert "provider.py" not in files and "retire.py" not in files


def test_one_registry_of_clouds() -> None:
    from workload_ids.providers import CLOUDS, get_cloud
    assert sorted(CLOUDS) == ["aws", "azure", "gcp"]
    for name in CLOUDS:
        assert get_cloud(name).name == name
    # No second list of cloud names where a workflow picks a backend.
    for path in PACKAGE.rglob("*.py"):
        if "sandbox" in path.parts or path.parent.name == "providers":
            continue
        text = path.read_text()
        assert not re.search(r"REGISTRY\s*=|create_provider|create_store|create_lock", text), path


def test_no_workflow_reaches_into_a_backend_by_name() -> None:
    workflows = [PACKAGE / name for name in ("apply.py", "plan.py", "inventory.py", "lint.py",
                                              "clouds.py", "targets.py")]
    workflows += [*(PACKAGE / "keys").glob("*.py"), *(PACKAGE / "cleanup").glob("*.py")]
    for path in workflows:
        text = path.read_text()
        assert "getattr(" not in text and "hasattr(" not in text, path
        assert "loaded.workload" not in text, path
    for path in (PACKAGE / "providers").rglob("*.py"):
        assert "loaded.workload" not in path.read_text(), path
