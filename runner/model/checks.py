"""The checks of http and llm fields and of timeouts, one function a rule.

The compiler applies them to literal values, so that `runner validate` refuses
a mistake where it is written; executors apply the same functions to a value
once its template is rendered.  Each returns the value as it is used and raises
FieldError with a message that does not name the field: the caller adds where.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Callable

from runner.expr.templates import to_text
from runner.model.durations import parse_duration

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ROLES = ("system", "user", "assistant")


class FieldError(ValueError):
    """A value its field cannot take; the message says why."""


def timeout(value: Any) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise FieldError(f"`{to_text(value)}` is not a duration; write 90, 30s, 5m or 1h30m") from None
    if seconds <= 0:
        raise FieldError("must be more than 0")
    return seconds


def method(value: Any) -> str:
    text = (to_text(value) or "GET").upper()
    if text not in METHODS:
        raise FieldError(f"`{text}` is not one of {', '.join(METHODS)}")
    return text


def url(value: Any) -> str:
    text = to_text(value).strip()
    if not re.match(r"(?i)https?://[^/?#]", text):
        raise FieldError(f"`{text}` must be absolute and start with http:// or https://")
    return text


def text_map(value: Any) -> dict[str, Any]:
    """Names mapped to text (a list of texts repeats a query parameter)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FieldError("expected a mapping of names to values")
    return {str(k): ([to_text(i) for i in v] if isinstance(v, (list, tuple)) else to_text(v)) for k, v in value.items()}


_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)", re.IGNORECASE)


def memory(value: Any) -> int:
    """Bytes in ``67108864``, ``64m``, ``64MiB`` or ``1g``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    match = _MEMORY.fullmatch(to_text(value).strip())
    size = match and int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " "))
    if not size:
        raise FieldError(f"`{to_text(value)}` is not an amount of memory; write 512m or 2g")
    return size


def cpus(value: Any) -> float:
    try:
        number = float(to_text(value)) if not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not 0 < number < math.inf:
        raise FieldError(f"`{to_text(value)}` is not a number of CPUs above 0, e.g. 0.5 or 2")
    return number


def pids(value: Any) -> int:
    text = to_text(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise FieldError(f"`{text}` is not a whole number of at least 1")
    return int(text)


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FieldError(f"expected a whole number of at least 1, got {to_text(value)!r}")
    return value


def boolean(value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise FieldError(f"expected true or false, got {to_text(value)!r}")
    return value


def verify(value: Any) -> bool | str:
    """true, false, or the path of a CA bundle (whose file is looked for when the request is made)."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, bool) or (isinstance(value, str) and value.strip()):
        return value
    raise FieldError("expected true, false or the path of a CA bundle")


def expect(value: Any) -> tuple[int, ...]:
    codes = value if isinstance(value, (list, tuple)) else [value]
    if not codes or not all(isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes):
        raise FieldError(f"expected a status code (100-599) or a list of them, got {to_text(value)!r}")
    return tuple(codes)


def text(value: Any) -> str:
    return to_text(value)


def optional_text(value: Any) -> str | None:
    """Text, or None for nothing (an expression that gives null leaves the message out)."""
    return None if value is None else to_text(value)


def model(value: Any) -> str:
    name = to_text(value).strip()
    if not name:
        raise FieldError("empty")
    return name


def base_url(value: Any) -> str:
    """The base of an OpenAI-compatible API, whose completions URL must be a URL; '' for the default."""
    base = to_text(value).strip().rstrip("/")
    if base:
        url(base + "/chat/completions")
    return base


def temperature(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise FieldError(f"expected a number from 0 to 2, got {to_text(value)!r}")
    return value


def cost(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FieldError("expected a number of at least 0")
    return value


def messages(value: Any) -> tuple[tuple[str, str], ...]:
    """A conversation: (role, content) pairs."""
    if not isinstance(value, (list, tuple)):
        raise FieldError("expected a list of {role, content}")
    turns = []
    for i, message in enumerate(value):
        if not isinstance(message, Mapping) or message.get("role") not in ROLES or "content" not in message:
            raise FieldError(f"message {i + 1} is not {{role, content}} with role system, user or assistant")
        turns.append((message["role"], to_text(message["content"])))
    return tuple(turns)


# The check of every key of `http:` and `llm:`.
FIELDS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "http": {
        "method": method,
        "url": url,
        "headers": text_map,
        "params": text_map,
        "json": lambda value: value,
        "body": text,
        "form": text_map,
        "timeout": timeout,
        "expect": expect,
        "follow_redirects": boolean,
        "max_bytes": positive_int,
        "verify": verify,
    },
    "llm": {
        "model": model,
        "prompt": optional_text,
        "system": optional_text,
        "messages": messages,
        "base_url": base_url,
        "api_key": text,
        "temperature": temperature,
        "max_tokens": positive_int,
        "json": boolean,
        "timeout": timeout,
        "cost_per_1k_tokens": cost,
    },
}
