"""Bearer tokens: one per line in `--token-file`, or in RUNNER_TOKENS (separated by commas or spaces).

Every request but the health check and the page's files needs one, as
`Authorization: Bearer TOKEN`; the event stream also takes `?token=`, since a
browser's EventSource cannot send headers.  Without tokens the server answers
everyone, and so binds only to a loopback address.  A token is never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re

from runner.errors import UsageError

OPEN_PATHS = ("/api/v1/health",)
EVENTS_PATH = re.compile(r"^/api/v1/runs/[^/]+/events$")


def read_tokens(token_file: str | None, environ=os.environ) -> list[str]:
    tokens: list[str] = []
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                tokens += [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
        except OSError as e:
            raise UsageError(f"--token-file {token_file}: {e.strerror}") from None
        if not tokens:
            raise UsageError(f"--token-file {token_file} holds no token (one a line)")
    tokens += [t for t in re.split(r"[\s,]+", environ.get("RUNNER_TOKENS", "")) if t]
    return tokens


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: list[str]) -> None:
    if not tokens and not loopback(host):
        raise UsageError(
            f"--host {host} lets other machines reach the server, and without tokens anyone could run workflows: "
            "give --token-file FILE (or RUNNER_TOKENS), or bind 127.0.0.1"
        )


class Auth:
    """ASGI middleware: 401 without a valid token."""

    def __init__(self, app, tokens: list[str]):
        self.app = app
        self.tokens = [t.encode() for t in tokens]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.tokens or self._open(scope["path"]) or self._valid(self._given(scope)):
            return await self.app(scope, receive, send)
        from runner.server.problems import problem

        response = problem(401, "a valid token is needed: send `Authorization: Bearer TOKEN`",
                           headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    @staticmethod
    def _open(path: str) -> bool:
        return path in OPEN_PATHS or path == "/" or path.startswith("/static/")

    @staticmethod
    def _given(scope) -> bytes:
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return value[7:].strip()
        if EVENTS_PATH.match(scope["path"]):
            from urllib.parse import parse_qs

            given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            if given:
                return given[-1].encode("latin-1")
        return b""

    def _valid(self, given: bytes) -> bool:
        found = False
        for token in self.tokens:  # every token compared, in constant time
            found |= hmac.compare_digest(given, token)
        return found and bool(given)
