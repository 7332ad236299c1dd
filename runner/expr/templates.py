"""``${{ … }}`` expressions: parsing, checking and evaluating them in Jinja2's sandbox (`jinja.py`).

Only ``${{ }}`` is special; everything else in a field is literal text, so
``{{ }}``, ``{% %}`` and ``${VAR}`` pass through untouched.  A field that is one
expression and nothing else takes the expression's native value.

Compiling a Jinja2 expression costs about half a millisecond, too much for
workflows with thousands of generated jobs.  Expressions that differ only in the
job or step they name or in their numbers (``jobs.j1.outputs.n + 1``,
``jobs.j2.outputs.n + 2``) share one compiled form: those are lifted out into
variables before compiling, and the compiled code is cached by the
expression's shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError, nodes
from jinja2.environment import Template as JinjaTemplate
from jinja2.exceptions import SecurityError, TemplateError as JinjaTemplateError
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined

from runner.errors import Location
from runner.expr.jinja import ENV, MAX_RESULT_ITEMS

OPEN, CLOSE = "${{", "}}"

CONDITION_FUNCTIONS = ("success", "failure", "always", "cancelled")


class TemplateError(Exception):
    """An expression that does not parse, names something unknown, or fails to evaluate.

    The message says what; the caller adds where (file, line, job, field).  When
    parsing a field fails, `offset` is where the failing `${{` stands in its text
    and `partial` the field with every expression that could be read, so that
    the names those use can still be checked.  `key` is where in a rendered
    mapping the failing expression stands (`("total",)` for `outputs.total`).
    """

    def __init__(self, message: str, offset: int = 0, partial: "Template | None" = None, key: tuple = ()):
        super().__init__(message)
        self.offset = offset
        self.partial = partial
        self.key = key

    def of(self, field: str) -> str:
        """The message for a field: `outputs.total: …` names the output too."""
        return f"{'.'.join((field, *map(str, self.key)))}: {self}"


_GLOBALS = frozenset(ENV.globals)
_NO_BLOCKS: dict = {}  # an expression defines no blocks
# By shape: the compiled template, and the globals its context starts with.
_compiled: dict[str, tuple[JinjaTemplate, dict[str, Any]]] = {}


@dataclass(frozen=True, init=False)
class Expression:
    """One ``${{ … }}``: its source, what it refers to, and how to evaluate it."""

    source: str
    refs: frozenset  # (root, key-or-None): ('jobs', 'build'), ('inputs', None), …
    raw: bool  # ends in `| raw`: pasted into a script as text
    lifted: tuple  # ((variable, root, key), …) bound before evaluating
    shape: str  # the source with lifted references: the key of its compiled form
    offset: int = field(default=0, compare=False)  # where its `${{` stands in the field's text

    def __init__(self, source: str, refs: frozenset, raw: bool, lifted: tuple, shape: str, offset: int = 0):
        # Filled at once: a frozen dataclass's own __init__ sets each field through
        # object.__setattr__, which doubles what making one costs.
        self.__dict__.update(source=source, refs=refs, raw=raw, lifted=lifted, shape=shape, offset=offset)

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        compiled = _compiled.get(self.shape)
        if compiled is None:
            compiled = _compiled[self.shape] = _compile(self.shape)
        template, names = compiled
        variables = {**names, **scope}
        for variable, root, key in self.lifted:
            if root is None:  # a number
                variables[variable] = key
                continue
            try:
                variables[variable] = scope[root][key]
            except (KeyError, TypeError):
                raise TemplateError(f"`{root}.{key}` is undefined") from None
        try:
            # What jinja2's compile_expression does, less two copies of the scope: one
            # context, holding the globals and the scope, made once per evaluation. Made
            # directly: `Template.new_context` also copies the names of the template's
            # globals (a ChainMap, walked in Python), which only imports and macros read.
            context = Context(ENV, variables, None, _NO_BLOCKS)
            for _ in template.root_render_func(context):
                pass
            return _native(context.vars["result"])
        except UndefinedError as e:
            raise TemplateError(_undefined_message(e, self.source, scope)) from None
        except SecurityError as e:
            raise TemplateError(f"not allowed in the sandbox: {e}") from None
        except RecursionError:
            raise TemplateError("the expression recurses too deeply") from None
        except (MemoryError, OverflowError):
            raise TemplateError("the expression's result is too large") from None
        except (JinjaTemplateError, ArithmeticError, TypeError, ValueError, AttributeError, LookupError) as e:
            raise TemplateError(f"`{self.source}` cannot be evaluated: {_plain(e)}") from None


@dataclass(frozen=True, init=False)
class Template:
    """A field's text split into literal parts and expressions."""

    parts: tuple  # str | Expression
    location: Location | None = field(default=None, compare=False, repr=False)  # where the field is written

    def __init__(self, parts: tuple, location: Location | None = None):
        self.__dict__.update(parts=parts, location=location)  # as Expression's

    @property
    def expressions(self) -> tuple[Expression, ...]:
        return tuple([p for p in self.parts if isinstance(p, Expression)])

    @property
    def whole(self) -> bool:
        return len(self.parts) == 1 and isinstance(self.parts[0], Expression)

    def render(self, scope: Mapping[str, Any]) -> Any:
        """The native value of a whole-field expression, otherwise a string."""
        parts = self.parts
        if len(parts) == 1 and type(parts[0]) is Expression:
            return parts[0].evaluate(scope)
        return "".join(p if isinstance(p, str) else to_text(p.evaluate(scope)) for p in self.parts)


def to_text(value: Any) -> str:
    """How a value reads inside a string: true and false as JSON spells them,
    nothing for null, lists and mappings as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def has_expression(text: str) -> bool:
    return OPEN in text


def parse_template(text: str, location: Location | None = None) -> Template:
    """Split ``text`` at its ``${{ … }}`` markers and compile-check each expression."""
    parts: list = []
    pos = 0
    error = None
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            break
        if start > pos:
            parts.append(text[pos:start])
        try:
            end = _find_close(text, start + len(OPEN))
        except TemplateError as e:
            error = error or TemplateError(str(e), start)
            pos = len(text)
            break
        try:
            parts.append(parse_expression(text[start + len(OPEN) : end], start))
        except TemplateError as e:
            error = error or TemplateError(str(e), start)
            if e.partial is not None:  # it parses but uses an unknown filter: its names still count
                parts.extend(e.partial.parts)
        pos = end + len(CLOSE)
    if pos < len(text) or not parts:
        parts.append(text[pos:])
    if error is not None:
        error.partial = Template(tuple(parts))
        raise error
    return Template(tuple(parts), location)


def parse_condition(value: Any) -> Template:
    """An `if:` field: an expression with or without ``${{ }}``, or a boolean."""
    if isinstance(value, bool):
        return Template((parse_expression("true" if value else "false"),))
    text = str(value).strip()
    if text.startswith(OPEN) and text.endswith(CLOSE) and _find_close(text, len(OPEN)) == len(text) - len(CLOSE):
        text = text[len(OPEN) : -len(CLOSE)]
    return Template((parse_expression(text),))


_CLOSE_OR_STRING = re.compile(r"\}\}|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.DOTALL)


def _find_close(text: str, pos: int) -> int:
    """The index of the ``}}`` closing an expression, skipping quoted strings."""
    end = text.find(CLOSE, pos)
    if end >= 0 and text.find("'", pos, end) < 0 and text.find('"', pos, end) < 0:
        return end  # no string before the first `}}`, as in most expressions: it closes this one
    for match in _CLOSE_OR_STRING.finditer(text, pos):
        if match.group() == CLOSE:
            return match.start()
    raise TemplateError(f"`{OPEN}` is never closed with `{CLOSE}`")


_STRING = re.compile(r"'(?:[^'\\]|\\.)*'" + r'|"(?:[^"\\]|\\.)*"')
_LIFTABLE = re.compile(
    r"(?<![\w.])(?:(jobs|steps)\.([A-Za-z_][A-Za-z0-9_]*)\b|(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.]))"
)
# A string literal is matched whole, so that nothing inside one is lifted.
_STRING_OR_LIFTABLE = re.compile(f"{_STRING.pattern}|{_LIFTABLE.pattern}")
_parsed: dict[str, tuple[frozenset, bool]] = {}
# Every root an expression parsed in this process reads (`jobs` and `steps` aside, which are
# lifted): a root not here is read by no expression of any workflow, without walking them.
_roots_read: set[str] = set()


def parse_expression(source: str, offset: int = 0) -> Expression:
    source = source.strip()
    if not source:
        raise TemplateError(f"empty expression `{OPEN} {CLOSE}`")
    refs, raw, lifted, shape, unknown = _read(source)
    expression = Expression(source, refs, raw, lifted, shape, offset)
    if unknown:
        raise TemplateError(unknown, partial=Template((expression,)))
    return expression


@lru_cache(maxsize=4096)
def _read(source: str) -> tuple[frozenset, bool, tuple, str, str]:
    """An expression's references, whether it is raw, its lifted variables and shape, what is
    wrong with its filters: the same for the same text, which many jobs of a workflow repeat."""
    shape, lifted = _lift(_bracket_dashed(source))
    if shape not in _parsed:
        try:
            expr = _parse(shape)
        except TemplateSyntaxError as e:
            raise TemplateError(f"expression `{source}` does not parse: {e.message}") from None
        refs: set = set()
        unknown = _check(expr, refs)
        own = frozenset(r for r in refs if not r[0].startswith(_LIFT_PREFIX))
        _parsed[shape] = (own, isinstance(expr, nodes.Filter) and expr.name == "raw", unknown)
        _roots_read.update(root for root, _ in own)
    refs, raw, unknown = _parsed[shape]
    return refs | {(root, key) for _, root, key in lifted if root}, raw, lifted, shape, unknown


_LIFT_PREFIX = "_lifted_"
# A job id may hold `-`, as on GitHub, where `-` is never an operator; in Jinja it
# is minus, and a job's entry is a mapping, which nothing is subtracted from.
_DASHED_JOB = re.compile(r"(?<![\w.])jobs\.([A-Za-z_]\w*(?:-+\w+)+)")


def _bracket_dashed(source: str) -> str:
    """`jobs.build-image` → `jobs['build-image']`, outside string literals."""
    if "-" not in source:
        return source
    pieces, pos = [], 0
    for string in _STRING.finditer(source):
        pieces.append(_DASHED_JOB.sub(r"jobs['\1']", source[pos : string.start()]))
        pieces.append(string.group())
        pos = string.end()
    pieces.append(_DASHED_JOB.sub(r"jobs['\1']", source[pos:]))
    return "".join(pieces)


def _lift(source: str) -> tuple[str, tuple]:
    """Replace `jobs.<id>`, `steps.<id>` and numbers outside string literals with variables."""
    lifted: list = []
    variables: dict[tuple, str] = {}  # (root, key, type of key): its variable, so that a repeated one is lifted once
    pieces, pos = [], 0
    for match in _STRING_OR_LIFTABLE.finditer(source):
        root, name, number = match.groups()
        if root is None and number is None:  # a string literal
            continue
        if number is not None:
            root, name = None, int(number) if number.isdigit() else float(number)
        variable = variables.get((root, name, type(name)))
        if variable is None:
            variable = variables[root, name, type(name)] = f"{_LIFT_PREFIX}{len(lifted)}"
            lifted.append((variable, root, name))
        pieces.append(source[pos : match.start()])
        pieces.append(variable)
        pos = match.end()
    if not lifted:
        return source, ()
    pieces.append(source[pos:])
    return "".join(pieces), tuple(lifted)


def _parse(source: str) -> nodes.Expr:
    parser = Parser(ENV, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError(f"unexpected `{parser.stream.current.value}`", 1)
    expr.set_environment(ENV)
    return expr


def _check(node: nodes.Node, refs: set) -> str:
    """Collect the names an expression refers to; what is wrong with its filters and tests, or ''."""
    everything = [node, *node.find_all(nodes.Node)]
    keyed = set()
    unknown = ""
    for child in everything:
        if isinstance(child, nodes.Filter) and child.name not in ENV.filters:
            unknown = unknown or f"no filter named `{child.name}`"
        if isinstance(child, nodes.Test) and child.name not in ENV.tests:
            unknown = unknown or f"no test named `{child.name}`"
        key = _static_key(child)
        if key:
            refs.add(key)
            keyed.add(id(child.node))
    for child in everything:
        if isinstance(child, nodes.Name) and child.ctx == "load" and id(child) not in keyed:
            refs.add((child.name, None))
    return unknown


def _static_key(node: nodes.Node) -> tuple | None:
    """``('jobs', 'build')`` for ``jobs.build`` or ``jobs['build']``."""
    if isinstance(node, (nodes.Getattr, nodes.Getitem)) and isinstance(node.node, nodes.Name):
        if isinstance(node, nodes.Getattr):
            return (node.node.name, node.attr)
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return (node.node.name, node.arg.value)
    return None


def _compile(shape: str) -> tuple[JinjaTemplate, dict[str, Any]]:
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), _parse(shape), lineno=1)], lineno=1)
    template = ENV.from_string(body)
    return template, dict(template.globals)


def _native(value: Any) -> Any:
    """Plain data from an expression's result: lists for generators, errors for undefined."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {k: _native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, range, Iterator)):
        items = []
        for item in value:
            items.append(_native(item))
            if len(items) > MAX_RESULT_ITEMS:
                raise SecurityError(f"a list of more than {MAX_RESULT_ITEMS:,} items")
        return items
    raise TemplateError(f"the expression gives a {type(value).__name__}, not data")


def _undefined_message(e: UndefinedError, source: str, scope: Mapping[str, Any]) -> str:
    """`jobs.a.outputs` has no `y` (it has: x), in place of Jinja's "'dict object' has no attribute 'y'"."""
    text = str(e)
    match = re.match(r"'(.+)' is undefined", text)
    if match:
        return f"`{match.group(1)}` is undefined"
    match = re.match(r"'(.+)' has no attribute '(.+)'", text)
    if not match:
        return text
    name = match.group(2)
    # The dotted path in the expression that ends in the missing name names what lacks it.
    path = re.search(r"([A-Za-z_][\w.]*)\." + re.escape(name) + r"\b", source)
    if path is None:
        return f"`{name}` is undefined in `{source}`"
    parent = path.group(1)
    parts = parent.split(".")
    value: Any = scope
    for i, part in enumerate(parts):
        if not isinstance(value, Mapping) or part not in value:
            return f"`{'.'.join(parts[:i + 1])}` is undefined"
        value = value[part]
    if not isinstance(value, Mapping):
        return f"`{parent}` is {_TYPE_NAMES.get(type(value).__name__, type(value).__name__)}, which has no `{name}`"
    has = f"it has: {', '.join(map(str, value))}" if value else "it has none"
    return f"`{parent}` has no `{name}` ({has})"


_TYPE_NAMES = {"int": "a number", "float": "a number", "str": "a text", "NoneType": "null", "bool": "a boolean",
               "list": "a list", "dict": "a mapping", "tuple": "a list"}


def _plain(e: Exception) -> str:
    """A Python exception's message in the words of a workflow's values."""
    text = str(e)
    if isinstance(e, ZeroDivisionError):
        return "division by zero"
    match = re.match(r"unsupported operand type\(s\) for (.+): '(\w+)' and '(\w+)'", text)
    if match:
        op, a, b = match.groups()
        return f"`{op}` does not apply to {_TYPE_NAMES.get(a, a)} and {_TYPE_NAMES.get(b, b)}"
    match = re.match(r"'(.+)' not supported between instances of '(\w+)' and '(\w+)'", text)
    if match:
        op, a, b = match.groups()
        return f"cannot compare {_TYPE_NAMES.get(a, a)} with {_TYPE_NAMES.get(b, b)} (`{op}`)"
    match = re.match(r'can only concatenate (\w+) \(not "(\w+)"\) to (\w+)', text)
    if match:
        return f"`+` does not apply to {_TYPE_NAMES.get(match.group(1), match.group(1))} and {_TYPE_NAMES.get(match.group(2), match.group(2))}"
    return text


def paths_in(template: Template, root: str) -> set[tuple]:
    """The attribute paths below `root` that the template's expressions use:
    ``jobs.build.outputs.version`` gives ``('build', 'outputs', 'version')``, and a bare
    ``jobs`` gives ``()``.  Only the longest static path of each use counts."""
    found: set[tuple] = set()

    def visit(node: nodes.Node) -> None:
        chain: list[str] = []
        inner = node
        while isinstance(inner, (nodes.Getattr, nodes.Getitem)):
            if isinstance(inner, nodes.Getattr):
                chain.append(inner.attr)
            elif isinstance(inner.arg, nodes.Const) and isinstance(inner.arg.value, (str, int)):
                chain.append(str(inner.arg.value))
            else:
                chain.clear()  # a computed key: the path is known only up to here
                visit(inner.arg)
            inner = inner.node
        if isinstance(inner, nodes.Name) and inner.name == root:
            found.add(tuple(reversed(chain)))
            return
        for child in (inner if chain else node).iter_child_nodes():
            visit(child)

    for expr in template.expressions:
        visit(_parse(_bracket_dashed(expr.source)))
    return found


def ever_read(root: str) -> bool:
    """Whether any expression parsed so far reads `root` (if not, none in any workflow does)."""
    return root in _roots_read


def names_in(value: Any) -> set:
    """Every (root, key) referred to by the templates inside a compiled value."""
    found: set = set()
    for template in templates_in(value):
        for expr in template.expressions:
            found |= expr.refs
    return found


def templates_in(value: Any) -> Iterator[Template]:
    """Every template inside a compiled value, in order."""
    # A stack rather than nested generators: this walks every job of a large workflow.
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, Template):
            yield value
        elif isinstance(value, (dict, MappingProxyType)):
            stack.extend(reversed(value.values()))
        elif isinstance(value, (list, tuple)):
            stack.extend(reversed(value))


def render_value(value: Any, scope: Mapping[str, Any]) -> Any:
    if isinstance(value, Template):
        return value.render(scope)
    if isinstance(value, (dict, MappingProxyType)):
        rendered = {}
        for k, v in value.items():
            try:
                # A template, as most values are, rendered without a call more.
                rendered[k] = v.render(scope) if type(v) is Template else render_value(v, scope)
            except TemplateError as e:
                raise TemplateError(str(e), key=(k, *e.key)) from None
        return rendered
    if isinstance(value, tuple):
        return [render_value(v, scope) for v in value]
    return value


def is_global(name: str) -> bool:
    return name in _GLOBALS or name in CONDITION_FUNCTIONS
