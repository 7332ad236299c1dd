"""What a request brings: its JSON body and its numbers, checked; a malformed one is a 400 or a 422."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from runner.server.problems import ApiError

MAX_BODY = 1 << 20  # bytes of a request's JSON
_CLOSE = {"Connection": "close"}  # the rest of the body is not read: the connection cannot carry another request
MAX_NUMBER = 2**53  # the largest offset or event id taken (SQLite's integers end at 2**63)


async def json_body(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes", headers=_CLOSE)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"the body is larger than {MAX_BODY} bytes", headers=_CLOSE)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
        json.dumps(body, ensure_ascii=False).encode()  # a lone surrogate (\ud800) is not text: no answer could quote it
    except (ValueError, UnicodeError) as e:
        raise ApiError(400, f"the body is not JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, "the body is not JSON runner reads: it is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object")
    return body


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number")
    return value


def field(body: dict, name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise ApiError(422, f"`{name}` must be {_kinds[kind]}")
    return value


_kinds = {str: "a string", dict: "an object", bool: "true or false", list: "a list"}


def number(request: Request, name: str, default: float | None, most: float | None = None, whole: bool = True,
           least: float = 0):
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise ApiError(400, f"?{name}= takes a {'whole ' if whole else ''}number, not {text!r}") from None
    if value < least or not math.isfinite(value) or value > (most if most is not None else MAX_NUMBER):
        raise ApiError(400, f"?{name}= must be between {least} and {most if most is not None else MAX_NUMBER}")
    return value
