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

@dataclass(slots=True)
class Document:
    """One YAML document: its value, and its node tree for positions on demand.

    Positions are looked up only when a message needs one, by walking the node tree
    along the path. The tree is composed again from the text then, not kept from the
    load: a fleet's ten thousand manifests would hold half a million nodes alive for
    the garbage collector to walk again and again, for the few messages that need one.
    """

    path: str
    index: int
    value: Any
    text: str | None = field(default=None, repr=False)
    _node: yaml.Node | None = field(default=None, repr=False)

    @property
    def node(self) -> yaml.Node | None:
        """The document's node tree (composed from the text on first use)."""
        if self._node is None and self.text is not None:
            self._node = _compose(self.text, self.index)
        return self._node

    def _walk(self, loc: tuple[Any, ...]) -> tuple[list[yaml.Node], list[yaml.Node | None]]:
        """Nodes along ``loc`` (skipping parts that name no node), and their key nodes."""
        nodes: list[yaml.Node] = []
        keys: list[yaml.Node | None] = []
        node = self.node
        if node is None:
            return nodes, keys
        nodes.append(node)
        keys.append(None)
        for part in loc:
            child: yaml.Node | None = None
            key_node: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        child, key_node = v, k
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and \
                    0 <= part < len(node.value):
                child = node.value[part]
            if child is None:
                continue  # a part that names no node (a pydantic union tag, say)
            node = child
            nodes.append(node)
            keys.append(key_node)
        return nodes, keys

    def position(self, loc: tuple[Any, ...], *, key: bool = False) -> Position:
        """The position of the deepest existing node along ``loc`` (its key with ``key``)."""
        nodes, keys = self._walk(loc)
        if not nodes:
            return Position(self.path, 1, 1)
        target = keys[-1] if key and keys[-1] is not None else nodes[-1]
        return _pos(self.path, target)

    @property
    def positions(self) -> dict[tuple[str | int, ...], Position]:
        """Every node's position by path (for tools; messages use :meth:`position`)."""
        out: dict[tuple[str | int, ...], Position] = {}

        def visit(node: yaml.Node, at: tuple[str | int, ...]) -> None:
            out[at] = _pos(self.path, node)
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode):
                        visit(v, (*at, k.value))
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    visit(item, (*at, i))
        if self.node is not None:
            visit(self.node, ())
        return out


def _pos(path: str, node: yaml.Node) -> Position:
    mark = node.start_mark
    return Position(path, mark.line + 1, mark.column + 1)


# Deeper than any manifest, config or template needs; well inside Python's recursion limit.
MAX_DEPTH = 64

_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_SAFE = yaml.constructor.SafeConstructor()
_SCALAR = yaml.ScalarNode


def _construct(root: yaml.Node) -> Any:
    """Plain values from a node tree, refusing what PyYAML accepts but a manifest must not
    hold (duplicate keys, merge keys, keys that are not plain scalars, recursive aliases).

    PyYAML's own constructor is generic (generators for recursive structures, a resolver
    call per scalar) and was half the time of loading a fleet's manifests; manifests are
    plain maps, lists and strings, so those are built directly and anything else (ints,
    booleans, timestamps, binary) goes to PyYAML's safe constructor.
    """
    built: dict[int, Any] = {}  # aliases share one value, as PyYAML does (no alias bombs)
    active: set[int] = set()

    def error(message: str, node: yaml.Node) -> yaml.constructor.ConstructorError:
        return yaml.constructor.ConstructorError(None, None, message, node.start_mark)

    def build(node: yaml.Node, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            # Without a limit, a deeply nested value (libyaml allows 1,000 levels) ends
            # in a RecursionError here instead of a message.
            raise error(f"nested more than {MAX_DEPTH} levels deep; manifests need far fewer", node)
        if node.__class__ is _SCALAR:  # most nodes: immutable, so an alias may build it again
            return node.value if node.tag == _STR else _scalar(node)
        key = id(node)
        if key in built:
            return built[key]
        value: Any
        if isinstance(node, yaml.ScalarNode):  # a subclass: PyYAML's rules, as any scalar
            value = node.value if node.tag == _STR else _scalar(node)
        elif isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            if key in active:
                raise error("recursive YAML aliases are not supported in manifests", node)
            active.add(key)
            value = {}
            for k, v in node.value:
                if k.tag == "tag:yaml.org,2002:merge":
                    raise error("YAML merge keys (<<) are not supported in manifests", k)
                if not isinstance(k, yaml.ScalarNode):
                    raise error("mapping keys must be plain strings", k)
                name = k.value if k.tag == _STR else _scalar(k)
                if name in value:
                    raise error(f"duplicate key {k.value!r}", k)
                value[name] = build(v, depth + 1)
            active.discard(key)
        elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            if key in active:
                raise error("recursive YAML aliases are not supported in manifests", node)
            active.add(key)
            value = [build(item, depth + 1) for item in node.value]
            active.discard(key)
        else:  # an explicitly tagged collection (!!set, !!omap, ...): PyYAML's rules
            try:
                value = yaml.constructor.SafeConstructor().construct_document(node)
            except (ValueError, TypeError, LookupError, AttributeError, RecursionError) as exc:
                raise error(f"cannot read this {node.tag.rsplit(':', 1)[-1]} value: {exc}", node) from None
        built[key] = value
        return value

    return build(root)


def _scalar(node: yaml.ScalarNode) -> Any:
    constructor = _SAFE.yaml_constructors.get(node.tag)
    if constructor is None:
        raise yaml.constructor.ConstructorError(
            None, None, f"could not determine a constructor for the tag {node.tag!r}", node.start_mark)
    try:
        return constructor(_SAFE, node)
    except (ValueError, TypeError, LookupError, AttributeError) as exc:
        # PyYAML's constructors trust the resolver: a plain 2024-13-01 (a timestamp by
        # its shape), 5,000 digits (over Python's int limit) or an explicit !!int x end
        # in a bare ValueError, KeyError or AttributeError.
        kind = node.tag.rsplit(":", 1)[-1]
        shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        why = f" ({exc})" if isinstance(exc, ValueError) and len(str(exc)) < 80 else ""
        raise yaml.constructor.ConstructorError(
            None, None, f"{shown!r} is not a valid {kind}{why}; quote it to write a string",
            node.start_mark) from None


def load_documents(path: str, text: str) -> tuple[list[Document], list[Diagnostic]]:
    """Parse every document in ``text``; return documents and positioned YAML errors."""
    docs: list[Document] = []
    try:
        loader = _Loader(text)
        try:
            index = 0
            while loader.check_node():
                node = loader.get_node()
                docs.append(Document(path=path, index=index,
                                     value=None if node is None else _construct(node), text=text))
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
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ESC, ...)
        return docs, [Diagnostic(_reader_position(path, text, exc),
                                 f"invalid YAML: the character U+{exc.character:04X} is not allowed "
                                 f"({exc.reason}); remove it, or write it as an escape "
                                 f"(\\x{exc.character:02X}) in a double-quoted string")]
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        return docs, [Diagnostic(Position(path), f"invalid YAML: {exc}")]
    return docs, []


def _compose(text: str, index: int) -> yaml.Node | None:
    """The node tree of document ``index`` of ``text`` (text that loaded before)."""
    loader = _Loader(text)
    try:
        at = 0
        while loader.check_node():
            node = loader.get_node()
            if at == index:
                return node  # type: ignore[no-any-return]
            at += 1
    finally:
        loader.dispose()
    return None  # pragma: no cover - the text loaded with this document before


def _reader_position(path: str, text: str, exc: yaml.reader.ReaderError) -> Position:
    """Where the reader stopped: libyaml counts bytes of UTF-8, PyYAML characters."""
    offset = exc.position if isinstance(exc.position, int) else 0
    before = text.encode("utf-8")[:offset].decode("utf-8", "ignore") if _Loader is not yaml.SafeLoader \
        else text[:offset]
    line_start = before.rfind("\n") + 1
    return Position(path, before.count("\n") + 1, len(before) - line_start + 1)
