"""Jinja2's sandbox as expressions see it: immutable, with no way to make a huge value.

Results are bounded in size: `**` in bits, `*` and lists in items, widths and
paddings of `format`, `%`, `center` and `indent` in characters; a mapping's entry
wins over a dict method of the same name (`jobs.items`).  `ENV` is the one
environment every expression is parsed and compiled in.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RESULT_ITEMS = 1_000_000
MAX_EXPONENT_BITS = 4096


# Widths and precisions in %-formats and in str.format specs: the ways to pad text.
_PERCENT_WIDTHS = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_SPECS = re.compile(r"\{[^{}]*:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


def _check_width(width: Any) -> None:
    if width == "*" or (isinstance(width, str) and "{" in width):
        raise SecurityError("a width taken from an argument is not allowed")
    if width and int(width) > MAX_RESULT_ITEMS:
        raise SecurityError(f"padding to {int(width):,} characters makes the text too large")


def _check_percent_format(text: str) -> None:
    for match in _PERCENT_WIDTHS.finditer(text):
        for width in match.groups():
            _check_width(width)


def _bounded(filter_: Any, position: int) -> Any:
    """A filter whose width argument (`position`, or `width=`) is bounded."""

    def bounded(value, *args, **kwargs):
        width = kwargs.get("width", args[position] if len(args) > position else None)
        if isinstance(width, int):
            _check_width(width)
        return filter_(value, *args, **kwargs)

    return bounded


_NUMBERS = (int, float)


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["**", "*", "%"])


    def getattr(self, obj: Any, attribute: str) -> Any:
        # `jobs.items` or `steps.update` mean the entry, never the dict method.  A plain dict,
        # as nearly every value is, is told apart without isinstance's walk of the Mapping ABC.
        if type(obj) is dict:
            if attribute in obj:
                return obj[attribute]
        elif isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            for spec in _FORMAT_SPECS.findall(obj):
                for width in re.findall(r"\{[^{}]*\}|\d+", spec):
                    _check_width(width)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator != "**" and type(left) in _NUMBERS and type(right) in _NUMBERS:  # no size to bound
            return self.binop_table[operator](left, right)
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right * math.log2(abs(left)) > MAX_EXPONENT_BITS:
                raise SecurityError(f"{left} ** {right} is too large")
        if operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_RESULT_ITEMS:
                    raise SecurityError(f"repeating a value {n} times makes it too large")
        return super().call_binop(context, operator, left, right)


def _make_environment() -> _Environment:
    env = _Environment(undefined=StrictUndefined, autoescape=False)
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    env.filters["center"] = _bounded(env.filters["center"], 0)
    env.filters["indent"] = _bounded(env.filters["indent"], 0)
    format_filter = env.filters["format"]

    def bounded_format(value, *args, **kwargs):
        _check_percent_format(str(value))
        return format_filter(value, *args, **kwargs)

    env.filters["format"] = bounded_format
    env.filters["raw"] = lambda value: value
    env.filters["fromjson"] = json.loads
    return env


ENV = _make_environment()
