"""Secret values never leave the process unmasked: every printed or written string passes here.

Besides each value itself (and without the whitespace around it), the masker
hides each line of a multi-line value and the forms a value takes when a program
prints it through a standard encoder: percent-encoded (`quote` and `quote_plus`,
with `/` safe or not), JSON-escaped (ASCII-only or not, once or twice),
shell-quoted, Python `repr` (of the text or of its UTF-8 bytes), HTML-escaped,
hex, and base64 (standard and URL-safe) at each of the three byte offsets it can
start at inside longer data.  Hex digits match in either case.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

MASK = "***"
MIN_LENGTH = 4  # shorter values would mask ordinary text everywhere

# The escapes whose hex digits a program may print in either case: %2F, \u00e9, \xc3.
_ESCAPE = re.compile(r"%[0-9A-F]{2}|\\u[0-9a-f]{4}|\\x[0-9a-f]{2}")


def _forms(value: str) -> set[str]:
    # Imported here: a run without secrets never needs them.
    import base64
    import html
    import json
    import shlex
    from urllib.parse import quote, quote_plus

    json_ascii, json_utf8 = json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]
    forms = {
        value, value.strip(), *value.splitlines(),
        json_ascii, json_utf8, json.dumps(json_ascii)[1:-1], json.dumps(json_utf8, ensure_ascii=False)[1:-1],
        quote(value, safe=""), quote(value), quote_plus(value), quote_plus(value, safe="/"),
        shlex.quote(value), repr(value)[1:-1], repr(value.encode())[2:-1], html.escape(value),
    }
    raw = value.encode("utf-8")
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        # Drop the characters that also depend on the bytes before and after.
        start = (offset * 4 + 2) // 3
        end = len(encoded) - (1 if (offset + len(raw)) % 3 else 0)
        forms.add(encoded[start:end])
        forms.add(encoded[start:end].replace("+", "-").replace("/", "_"))
    return {form for form in forms if len(form.strip()) >= MIN_LENGTH}


def _any_case(text: str) -> str:
    """`text` as a regular expression whose hex digits match in either case."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c in "abcdefABCDEF" else re.escape(c) for c in text)


def _patterns(value: str) -> dict[str, int]:
    """A regular expression for every form of `value`, the hex digits of its escapes in either case,
    with the length of the text it matches."""
    hex_form = value.encode("utf-8").hex()
    patterns = {_any_case(hex_form): len(hex_form)}
    for form in _forms(value):
        parts, position = [], 0
        for escape in _ESCAPE.finditer(form):
            parts += [re.escape(form[position:escape.start()]), _any_case(escape.group())]
            position = escape.end()
        parts.append(re.escape(form[position:]))
        patterns["".join(parts)] = len(form)
    return patterns


class Masker:
    def __init__(self, secrets: Iterable[str] = ()):
        self.patterns: dict[str, int] = {}
        self.too_short: list[str] = []
        self.longest = 0  # the length of the longest form
        self._regex: re.Pattern | None = None
        for value in secrets:
            self.add(value)

    def add(self, value: str) -> None:
        """Mask `value` (and its forms) from now on; a value too short to mask is noted instead."""
        if len(value.strip()) < MIN_LENGTH:
            if value.strip():
                self.too_short.append(value)
            return
        patterns = _patterns(value)
        if not patterns.keys() <= self.patterns.keys():
            self.patterns.update(patterns)
            self.longest = max(self.longest, *patterns.values())
            self._regex = None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def _compiled(self) -> re.Pattern:
        if self._regex is None:
            # Longest first: where two forms start at the same place, the longer is masked.
            self._regex = re.compile("|".join(sorted(self.patterns, key=self.patterns.get, reverse=True)))
        return self._regex

    def spans(self, text: str) -> list[list[int]]:
        """Where forms stand in `text`, overlapping ones merged into one stretch."""
        if not self.patterns or not text:
            return []
        search = self._compiled().search
        match = search(text)
        # Searching again from just after each match's start finds the forms that overlap it.
        spans: list[list[int]] = []
        while match is not None:
            start, end = match.span()
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
            match = search(text, start + 1)
        return spans

    def text(self, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        out, position = [], 0
        for start, end in spans:
            out.append(text[position:start])
            out.append(MASK)
            position = end
        out.append(text[position:])
        return "".join(out)

    def value(self, value: Any, numbers: bool = False) -> Any:
        """Mask every string inside a JSON-like value, and with `numbers` every number too.

        A secret made a number (`secrets.PIN | int`) prints as its digits: the numbers
        a workflow computes are masked (`numbers`, and under an `outputs` or `matrix`
        key of a run's summary); runner's own (a duration, a count) stay numbers.
        """
        if not self.patterns:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v, numbers or k in ("outputs", "matrix")) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v, numbers) for v in value]
        if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
            return MASK if self.text(str(value)) != str(value) else value
        return value
