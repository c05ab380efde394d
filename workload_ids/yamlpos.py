"""YAML loading that remembers where every node came from.

PyYAML's composer gives nodes with start marks; we turn them into plain Python values and
a table from each value's path (a tuple of keys and indexes) to its position, so that a
validation error anywhere can be reported as ``FILE:LINE:COLUMN``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Diagnostic, Position

try:  # libyaml is several times faster; fall back to the pure-Python loader.
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

PathKey = tuple[str | int, ...]


@dataclass(slots=True)
class Document:
    """One YAML document: its value and where each part of it is."""

    path: str
    index: int
    value: Any
    positions: dict[PathKey, Position] = field(default_factory=dict)
    key_positions: dict[PathKey, Position] = field(default_factory=dict)

    def position(self, loc: tuple[Any, ...], *, key: bool = False) -> Position:
        """The position of the deepest existing node along ``loc``.

        Components that do not name a node (pydantic adds union tags, for instance) are
        skipped, so the message lands on the closest node the user wrote.
        """
        current: PathKey = ()
        for part in loc:
            candidate = (*current, part)
            if candidate in self.positions:
                current = candidate
        if key and current in self.key_positions:
            return self.key_positions[current]
        return self.positions.get(current, Position(self.path, 1, 1))


def _pos(path: str, node: yaml.Node) -> Position:
    mark = node.start_mark
    return Position(path, mark.line + 1, mark.column + 1)


def _convert(doc: Document, node: yaml.Node, at: PathKey, constructor: Any) -> Any:
    doc.positions[at] = _pos(doc.path, node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(
                    None, None, "YAML merge keys (<<) are not supported in manifests",
                    key_node.start_mark)
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain strings", key_node.start_mark)
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            doc.key_positions[(*at, key)] = _pos(doc.path, key_node)
            result[key] = _convert(doc, value_node, (*at, key), constructor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(doc, item, (*at, i), constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)


def load_documents(path: str, text: str) -> tuple[list[Document], list[Diagnostic]]:
    """Parse every document in ``text``; return documents and positioned YAML errors."""
    docs: list[Document] = []
    try:
        loader = _Loader(text)
        try:
            index = 0
            while loader.check_node():
                node = loader.get_node()
                doc = Document(path=path, index=index, value=None)
                if node is not None:
                    doc.value = _convert(doc, node, (), loader)
                docs.append(doc)
                index += 1
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(path, mark.line + 1, mark.column + 1) if mark else Position(path)
        problem = exc.problem or exc.context or "malformed YAML"
        opened, failed = exc.context_mark, exc.problem_mark
        if exc.context and opened and failed and (opened.line, opened.column) != (failed.line, failed.column):
            problem += f" ({exc.context} at line {opened.line + 1}, column {opened.column + 1})"
        return docs, [Diagnostic(pos, f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        return docs, [Diagnostic(Position(path), f"invalid YAML: {exc}")]
    return docs, []
