"""`runner serve`: the HTTP API of runner/server, imported only by this command."""

from __future__ import annotations


def serve(args) -> int:
    import gc

    gc.enable()  # off while runner started (`main`); the server runs for long
    from runner.cli.running import pairs
    from runner.server import serve

    args.image_map = pairs(args.image_map, "--image-map")
    return serve(args)

