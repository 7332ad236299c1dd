"""Secret values never leave the process unmasked: every printed or written string passes here."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"


class Masker:
    def __init__(self, secrets: list[str] = ()):
        # Each line of a multi-line secret is masked on its own, since output is
        # masked line by line.  Very short values would mask ordinary text.
        values = {line for s in secrets for line in [s, *s.splitlines()] if len(line.strip()) >= 3}
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))) if values else None
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """Mask every string inside a JSON-like value."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value
