"""Secret values never leave the process unmasked: every printed or written string passes here.

Besides each value itself, the masker hides each line of a multi-line value and
the forms a value takes when a tool re-encodes it: JSON-escaped, URL-encoded,
and base64 at each of the three byte offsets it can start at inside longer data.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4  # shorter values would mask ordinary text everywhere


def _forms(value: str) -> set[str]:
    forms = {value, *value.splitlines(), json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)}
    raw = value.encode("utf-8")
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        # Drop the characters that also depend on the bytes before and after.
        start = (offset * 4 + 2) // 3
        end = len(encoded) - (1 if (offset + len(raw)) % 3 else 0)
        forms.add(encoded[start:end])
    return {form for form in forms if len(form.strip()) >= MIN_LENGTH}


class Masker:
    def __init__(self, secrets: Iterable[str] = ()):
        self.values: set[str] = set()
        self.too_short: list[str] = []
        for value in secrets:
            self.add(value)

    def add(self, value: str) -> None:
        """Mask `value` (and its forms) from now on; a value too short to mask is noted instead."""
        if len(value.strip()) < MIN_LENGTH:
            if value.strip():
                self.too_short.append(value)
            return
        self.values |= _forms(value)

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        if not self.values or not text:
            return text
        # Overlapping values are merged into one masked stretch.
        spans: list[list[int]] = []
        for value in self.values:
            start = text.find(value)
            while start >= 0:
                spans.append([start, start + len(value)])
                start = text.find(value, start + 1)
        if not spans:
            return text
        spans.sort()
        merged = [spans[0]]
        for start, end in spans[1:]:
            if start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        out, position = [], 0
        for start, end in merged:
            out.append(text[position:start])
            out.append(MASK)
            position = end
        out.append(text[position:])
        return "".join(out)

    def value(self, value: Any) -> Any:
        """Mask every string inside a JSON-like value."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value
