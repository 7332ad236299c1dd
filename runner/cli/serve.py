"""`runner serve`: the HTTP API of runner/server, imported only by this command."""

from __future__ import annotations


def serve(args) -> int:
    from runner.server import serve

    return serve(args)

