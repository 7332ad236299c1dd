"""Load a workflow file into plain Python data, keeping where every value came from.

ruamel.yaml composes the node tree (its C parser, when present); the tree is then
turned into dicts, lists and scalars here rather than by a YAML constructor, so
that no tag ever constructs an object, duplicate keys name both lines, and
aliases and merge keys are bounded before anything walks the result.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, DocumentStartEvent, ScalarEvent
from ruamel.yaml.events import MappingEndEvent, MappingStartEvent, SequenceEndEvent, SequenceStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

from runner.errors import Location, Problem, WorkflowInvalid
from runner.expr.templates import OPEN

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_SCALAR_CHARS = 1024 * 1024
MAX_DEPTH = 64
# Aliases may repeat a subtree; the expanded document may not exceed this many
# nodes, whatever the file's size (a 10,000-job file has about 100,000).
MAX_NODES = 500_000

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}
# Timestamps stay text: a workflow has no use for datetime objects.
_TEXT_TAGS = {_TAG + "str", _TAG + "timestamp"}


@dataclass(frozen=True)
class Document:
    """A loaded workflow: its data and the position of every value and key."""

    file: str
    data: Any
    text: str
    # The parser's start marks (0-based line and column), turned into a Location only when asked.
    positions: dict[tuple, Any] = field(repr=False)
    key_positions: dict[tuple, Any] = field(repr=False)

    def locate(self, path: tuple, key: bool = False, offset: int = 0) -> Location:
        """Where the value at ``path`` is (or its key, with ``key=True``).

        A path that does not exist (a missing required key) falls back to the
        nearest enclosing value that does.  `offset`: where a `${{` stands in the
        value's text; one on a later line than the value starts (in a `|` or `>`
        block, or a plain or quoted scalar over several lines) is located itself.
        """
        path = tuple(path)
        if key and path in self.key_positions:
            return _mark_location(self.file, self.key_positions[path])
        mark = self.positions.get(path)
        while mark is None and path:
            path = path[:-1]
            mark = self.positions.get(path)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        if offset > 0:
            line, col = self._expression_at(path, line, col, offset)
        return Location(self.file, line, col)

    def _expression_at(self, path: tuple, line: int, col: int, offset: int) -> tuple[int, int]:
        """The line and column of the `${{` at `offset` in the text at `path`.

        Quoting, folding and indentation change the text between the file and
        the value, never a `${{`: the n-th in the value is the n-th in the file
        from where the value starts.
        """
        value = self.data
        for part in path:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return line, col
        if not isinstance(value, str) or not value.startswith(OPEN, offset):
            return line, col
        starts = self._line_starts
        index = starts[line - 1] + col - 1
        if self.text[index : index + 1] in ("|", ">"):  # a block's text starts on the next line, after any comment
            index = self.text.find("\n", index)
        for _ in range(value.count(OPEN, 0, offset) + 1):
            found = self.text.find(OPEN, index)
            if found < 0:
                return line, col
            index = found + len(OPEN)
        at = index - len(OPEN)
        if line == len(starts) or at < starts[line]:  # on the value's first line: the value's place
            return line, col
        number = bisect.bisect_right(starts, at)
        return number, at - starts[number - 1] + 1

    @cached_property
    def _line_starts(self) -> list[int]:
        starts = [0]
        starts.extend(m.end() for m in re.finditer("\n", self.text))
        return starts


WORKFLOW_TOP = "a workflow is a mapping that starts with `version: 1`"


def load_file(path: str | Path, top: str = WORKFLOW_TOP) -> Document:
    """Read and parse a workflow file (or another mapping: `top` says what it must hold);
    raise WorkflowInvalid with its location if it cannot."""
    display = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise WorkflowInvalid.at(Location(display, 1, 1), f"cannot read the file: {e.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise WorkflowInvalid.at(
            Location(display, 1, 1), f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
        )
    return load_bytes(raw, display, top)


def load_bytes(raw: bytes, file: str, top: str = WORKFLOW_TOP) -> Document:
    text = _decode(raw, file)
    yaml = _yaml()
    try:
        # A YAML error found here is the one composing would find: only anchors and aliases
        # give the composer errors of its own, and the event pass stops at the first of them.
        plain = _load_plain(yaml, text)
        if plain is not None:
            return Document(file, *plain)
        if text.count("[") + text.count("{") + text.count("-") + text.count("?") > _FLOW_SCAN_THRESHOLD:
            _check_flow_depth(yaml, text, file)
        nodes = list(yaml.compose_all(text))
    except MarkedYAMLError as e:
        raise WorkflowInvalid.at(_mark_location(file, e.problem_mark), _yaml_message(e)) from None
    except YAMLError as e:
        # A reader error (a control character) has a position instead of a mark.
        position = getattr(e, "position", None)
        where = _offset_location(file, text.encode("utf-8"), len(text[:position].encode("utf-8"))) if isinstance(
            position, int) else Location(file, 1, 1)
        problem = str(e).strip().splitlines()[0]
        raise WorkflowInvalid.at(where, f"invalid YAML: {problem}") from None
    if not nodes or nodes[0] is None:
        raise WorkflowInvalid.at(Location(file, 1, 1), "the file is empty; a workflow starts with `version: 1`")
    if len(nodes) > 1:
        raise WorkflowInvalid.at(
            _mark_location(file, nodes[1].start_mark),
            f"the file holds {len(nodes)} YAML documents; a workflow is exactly one",
        )
    builder = _Builder(file, yaml.constructor)
    if "*" in text or "<<" in text:  # only aliases and merge keys can expand a document
        builder.check_size(nodes[0])
    data = builder.build(nodes[0], ())
    if not isinstance(data, dict):
        raise WorkflowInvalid.at(
            _mark_location(file, nodes[0].start_mark),
            f"the top level is a {_kind(nodes[0])}; {top}",
        )
    if builder.problems:
        raise WorkflowInvalid(builder.problems)
    return Document(file, data, text, builder.positions, builder.key_positions)


def _load_plain(yaml: YAML, text: str) -> tuple | None:
    """The data and positions of a file that needs no more than the parser's events; None when
    it needs the node tree (anchors, aliases, tags, merge keys, a key that is not a plain value
    or is repeated, several documents, deep nesting, a top level that is not a mapping).

    Most files are like this. Building their data from the events parses them once, makes no
    node tree, and stops at the first level too deep, before the C composer's recursion could
    overflow the stack. Whatever this leaves, load_bytes loads as before, so that every error is
    found and reported the same way. A YAML error is raised as the parser gives it.
    """
    positions: dict = {}
    key_positions: dict = {}
    resolver = _Yaml12Resolver()
    typed_first = resolver.versioned_resolver  # the first characters of plain scalars that may not be text
    typed: dict = {}
    constructor = yaml.constructor
    stack: list = []  # the enclosing collections: (collection, its path, whether it is a mapping)
    parent: Any = None
    path: tuple = ()
    mapping = False
    key: Any = _NO_KEY  # in a mapping, the key whose value comes next
    documents = 0
    parser = yaml.get_constructor_parser(text)[1]
    for event in iter(parser.get_event, None):  # None after the end; cheaper than YAML.parse's generator
        kind = type(event)
        if kind is ScalarEvent:
            if event.anchor is not None or event.ctag is not None or parent is None:
                return None
            value = event.value
            if len(value) > MAX_SCALAR_CHARS:
                return None
            if event.implicit[0] and value[:1] in typed_first:
                if value not in typed:
                    typed[value] = _typed(resolver, constructor, value)
                if typed[value] is _NOT_TEXT:
                    return None
                if key is not _NO_KEY or not mapping:  # keys stay text: `1: …`, `on: …`
                    value = typed[value]
            mark = event.start_mark
            if not mapping:
                positions[path + (len(parent),)] = mark
                parent.append(value)
            elif key is _NO_KEY:
                if value in parent:
                    return None
                key = value
                key_positions[path + (key,)] = mark
            else:
                positions[path + (key,)] = mark
                parent[key] = value
                key = _NO_KEY
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.anchor is not None or event.ctag is not None:
                return None
            if not mapping:
                here = path + (len(parent),) if parent is not None else ()
            elif key is _NO_KEY:
                return None  # a list or mapping as a key
            else:
                here = path + (key,)
            if len(here) >= MAX_DEPTH or (parent is None and (documents != 1 or kind is SequenceStartEvent)):
                return None
            mark = event.start_mark
            positions[here] = mark
            value = {} if kind is MappingStartEvent else []
            if mapping:
                parent[key] = value
            elif parent is not None:
                parent.append(value)
            else:
                root = value
            stack.append((parent, path, mapping))
            parent, path, mapping, key = value, here, kind is MappingStartEvent, _NO_KEY
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            parent, path, mapping = stack.pop()
        elif kind is DocumentStartEvent:
            documents += 1
        elif kind is AliasEvent:
            return None
    if documents != 1 or not positions:
        return None
    return root, text, positions, key_positions


def _typed(resolver: VersionedResolver, constructor: SafeConstructor, value: str) -> Any:
    """A plain scalar's value: text, a number, a boolean or None; _NOT_TEXT for any other tag,
    or for a value its constructor refuses (left to the general path, which reports it)."""
    tag = str(resolver.resolve(ScalarNode, value, (True, False)))
    if tag in _TEXT_TAGS:
        return value
    if tag not in _SCALAR_TAGS:
        return _NOT_TEXT
    try:
        return constructor.yaml_constructors[tag](constructor, ScalarNode(tag, value, None, None))
    except Exception:
        return _NOT_TEXT


_NO_KEY = object()
_NOT_TEXT = object()


class _Yaml12Resolver(VersionedResolver):
    """YAML 1.2's implicit types, resolved without ruamel's per-scalar version lookup.

    ruamel finds the YAML version through failing attribute lookups for every
    scalar, a third of the load time; a workflow file is always YAML 1.2.
    """

    processing_version = (1, 2)

    def resolve(self, kind, value, implicit):
        if kind is not ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)
        known = self.__dict__.setdefault("_known", {})
        tag = known.get(value)
        if tag is None:
            table = self.__dict__.get("_table") or self.__dict__.setdefault("_table", self.versioned_resolver)
            tag = self.DEFAULT_SCALAR_TAG
            for name, regexp in (*table.get(value[:1], ()), *table.get(None, ())):
                if regexp.match(value):
                    tag = Tag(suffix=name)
                    break
            if len(value) <= 64:  # keys and short values repeat; long text rarely does
                known[value] = tag
        return tag


# The C composer recurses once per nesting level and overflows the C stack past
# some tens of thousands of levels; only that many brackets, or `-` and `?` (which
# nest on one line: `- - - x`), can nest that deep.
_FLOW_SCAN_THRESHOLD = 5_000


def _check_flow_depth(yaml: YAML, text: str, file: str) -> None:
    """Refuse nesting past MAX_DEPTH from the event stream, which does not recurse."""
    depth = 0
    for event in yaml.parse(text):
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise WorkflowInvalid.at(_mark_location(file, event.start_mark), f"nesting deeper than {MAX_DEPTH} levels")
        elif isinstance(event, CollectionEndEvent):
            depth -= 1


def _yaml() -> YAML:
    try:
        yaml = YAML(typ="safe", pure=False)
    except Exception:  # no C parser on this interpreter
        yaml = YAML(typ="safe", pure=True)
    yaml.Resolver = _Yaml12Resolver
    return yaml


def _decode(raw: bytes, file: str) -> str:
    nul = raw.find(b"\0")
    if nul >= 0:
        raise WorkflowInvalid.at(_offset_location(file, raw, nul), "the file contains a NUL byte; is it a binary file?")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise WorkflowInvalid.at(
            _offset_location(file, raw, e.start), f"the file is not valid UTF-8 (byte 0x{raw[e.start]:02x})"
        ) from None


def _offset_location(file: str, raw: bytes, offset: int) -> Location:
    line = raw.count(b"\n", 0, offset) + 1
    col = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return Location(file, line, col)


def _mark_location(file: str, mark) -> Location:
    if mark is None:
        return Location(file)
    return Location(file, mark.line + 1, mark.column + 1)


def _yaml_message(e: MarkedYAMLError) -> str:
    problem = (e.problem or "invalid YAML").strip()
    if "\t" in problem or "cannot start any token" in problem:
        problem += " (YAML indentation must use spaces, not tabs)"
    elif problem == "found unexpected ':'":
        problem += " (inside `{ … }` or `[ … ]`, quote a value that holds a colon: 'alpine:3.20')"
    if e.context and e.context_mark is not None:
        return f"{problem} ({e.context.strip()} at line {e.context_mark.line + 1})"
    return problem


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "scalar"


class _Builder:
    """Turns a composed node tree into plain data, recording positions by key path."""

    def __init__(self, file: str, constructor: SafeConstructor):
        self.file = file
        self.problems: list[Problem] = []
        self.positions: dict[tuple, Any] = {}
        self.key_positions: dict[tuple, Any] = {}
        self._constructor = constructor
        self._active: set[int] = set()

    def _fail(self, node: Node, message: str, path: tuple) -> None:
        raise WorkflowInvalid([*self.problems, Problem(_mark_location(self.file, node.start_mark), message, path)])

    def check_size(self, root: Node) -> None:
        """Refuse a tree whose aliases and merge keys expand past MAX_NODES, before building it.

        Sizes are memoised per node, so this costs one pass over the distinct nodes
        however often aliases repeat them.
        """
        sizes: dict[int, int] = {}

        def size(node: Node, depth: int) -> int:
            if id(node) in sizes:
                return sizes[id(node)]
            if depth > MAX_DEPTH:
                self._fail(node, f"nesting deeper than {MAX_DEPTH} levels", ())
            if id(node) in self._active:
                self._fail(node, "an alias refers to the node that contains it (recursive alias)", ())
            total = 1
            if not isinstance(node, ScalarNode):
                self._active.add(id(node))
                children = node.value if isinstance(node, SequenceNode) else [n for pair in node.value for n in pair]
                for child in children:
                    total += size(child, depth + 1)
                    if total > MAX_NODES:
                        self._fail(node, f"aliases or merge keys expand the document past {MAX_NODES:,} values", ())
                self._active.discard(id(node))
            sizes[id(node)] = total
            return total

        size(root, 0)

    def build(self, node: Node, path: tuple) -> Any:
        if len(path) > MAX_DEPTH:
            self._fail(node, f"nesting deeper than {MAX_DEPTH} levels", path)
        self.positions[path] = node.start_mark
        tag = node.tag
        if isinstance(node, ScalarNode):
            return self._scalar(node, tag, path)
        if id(node) in self._active:
            self._fail(node, "an alias refers to the node that contains it (recursive alias)", path)
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if tag != _TAG + "seq":
                    self._fail(node, f"unsupported tag {_short_tag(tag)}", path)
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            if tag != _TAG + "map":
                self._fail(node, f"unsupported tag {_short_tag(tag)}", path)
            return self._mapping(node, path)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: ScalarNode, tag: str, path: tuple) -> Any:
        if len(node.value) > MAX_SCALAR_CHARS:
            self._fail(node, f"a value longer than {MAX_SCALAR_CHARS // 1024} Ki characters", path)
        if tag in _TEXT_TAGS:
            return node.value
        if tag not in _SCALAR_TAGS:
            self._fail(node, f"unsupported tag {_short_tag(tag)}", path)
        try:
            return self._constructor.yaml_constructors[tag](self._constructor, node)
        except (ValueError, KeyError, IndexError):  # an explicit tag on a value it cannot read: `!!int x`
            self._fail(node, f"`{node.value}` is not a valid {_short_tag(tag)}", path)

    def _mapping(self, node: MappingNode, path: tuple) -> dict:
        result: dict = {}
        seen: dict = {}
        for key_node, key_tag, value_node, explicit in self._pairs(node, path):
            if not isinstance(key_node, ScalarNode):
                self._fail(
                    key_node,
                    "a key must be a plain value, not a list or mapping "
                    "(YAML reads an unquoted `{{ … }}` as a mapping: write `${{ … }}` inside quotes)",
                    path,
                )
            key = self._scalar(key_node, key_tag, path)
            if not isinstance(key, str):
                # Keys are names in this format: `1: …` or `on: …` stay text.
                key = key_node.value
            if key in seen:
                if explicit:
                    self.problems.append(
                        Problem(
                            _mark_location(self.file, key_node.start_mark),
                            f"duplicate key `{key}` (first defined at line {seen[key].line + 1})",
                            path + (key,),
                        )
                    )
                continue
            seen[key] = key_node.start_mark
            self.key_positions[path + (key,)] = key_node.start_mark
            result[key] = self.build(value_node, path + (key,))
        return result

    def _pairs(self, node: MappingNode, path: tuple) -> list:
        """The mapping's own entries, then those its merge keys `<<` bring, first wins."""
        own, merged = [], []
        for key_node, value_node in node.value:
            key_tag = key_node.tag
            if key_tag != _TAG + "merge":
                own.append((key_node, key_tag, value_node, True))
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self._fail(source, "a merge key `<<` takes a mapping or a list of mappings", path)
                if id(source) in self._active:
                    self._fail(source, "a merge key refers to the mapping that contains it", path)
                self._active.add(id(source))
                try:
                    merged.extend((k, t, v, False) for k, t, v, _ in self._pairs(source, path))
                finally:
                    self._active.discard(id(source))
        return own + merged


def _short_tag(tag: str) -> str:
    if tag.startswith(_TAG):
        return "!!" + tag[len(_TAG):]
    return tag
