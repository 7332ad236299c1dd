"""The web page: `/` and its files under `/static/`, shipped in the package (no build step, no CDN).

The page is static; everything it shows comes from the API under /api/v1, with
the token the page asks for.  Its files hold no data, so they are served
without a token.  dagre (static/dagre.min.js, MIT, see static/VENDORED.md)
lays out the job graph in the browser.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).with_name("static")

# The page loads nothing from elsewhere; the timeline's bars are placed with style attributes.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def routes() -> list:
    """`/` (the page) and `/static/…` (its scripts, styles and the vendored dagre)."""
    from starlette.responses import FileResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def index(request):
        return FileResponse(STATIC / "index.html", headers=HEADERS)

    return [Route("/", index, methods=["GET", "HEAD"]), Mount("/static", StaticFiles(directory=STATIC), name="static")]
