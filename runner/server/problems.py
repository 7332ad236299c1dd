"""Errors as the API answers them: `application/problem+json` (RFC 9457), never a traceback.

A workflow's or its inputs' problems go in `problems`, located as the CLI
locates them and with the same messages.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from runner.errors import Problem
from runner.server.registry import problem_json

TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    500: "Internal Server Error",
}


class ApiError(Exception):
    """Raised by a handler: answered as a problem."""

    def __init__(self, status: int, detail: str, problems: list[Problem] | None = None, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.problems, self.headers = status, detail, problems, headers


def problem(status: int, detail: str, problems: list[Problem] | None = None, headers: dict | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    if problems is not None:
        body["problems"] = [problem_json(p) for p in problems]
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")
