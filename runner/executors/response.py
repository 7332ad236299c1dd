"""`response` in the scope of the outputs of http and llm jobs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import httpx

from runner.expr.templates import TemplateError


class Headers(Mapping):
    """Response headers, looked up in any case (`response.headers['Content-Type']`)."""

    def __init__(self, headers: httpx.Headers):
        self._items = {k.lower(): v for k, v in headers.items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower() if isinstance(key, str) else key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class _Unparsed:
    pass


class Response(Mapping):
    """`response` in the scope of a job's outputs.

    `json` is parsed when an output first uses it: a body that is not JSON is an
    error only then, and the error says what the body was.
    """

    def __init__(self, fields: dict[str, Any], text: str, describe: Callable[[str], str], what: str = "the body"):
        self._fields = fields
        self._text = text
        self._describe = describe  # masks and cuts a text for a message
        self._what = what
        self._json: Any = _Unparsed
        self._error = ""

    def _parse(self) -> bool:
        if self._json is _Unparsed and not self._error:
            try:
                self._json = json.loads(self._text)
            except ValueError as e:
                self._error = str(e)
        return not self._error

    def __getitem__(self, key: str) -> Any:
        if key != "json":
            return self._fields[key]
        if self._parse():
            return self._json
        start = self._describe(self._text)
        begins = f"; it begins: {start}" if start else "; it is empty"
        raise TemplateError(f"`response.json`: {self._what} is not JSON ({self._error}){begins}")

    def __contains__(self, key: object) -> bool:
        return key == "json" or key in self._fields

    def __iter__(self) -> Iterator[str]:
        yield from self._fields
        if self._parse():
            yield "json"

    def __len__(self) -> int:
        return len(self._fields) + (1 if self._parse() else 0)
