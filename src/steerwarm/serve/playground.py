"""The warmth playground: a static page (HTML, JavaScript and CSS in `serve/playground/`, shipped as package data)
served by `steerwarm serve` at `GET /`, beside the API under `/v1`, which it calls from the browser.

Invariants:
- Only the files named in `ASSETS` (and the page) are served, each with its content type; no path a client sends is
  ever read. The files are read once, when the app is built, so a missing file fails at start-up, not per request.
- The page and its assets need no API key: they hold no data. The page asks for the key and sends it to `/v1` as
  `Authorization: Bearer`, where the API checks it as for any client.
- Nothing is loaded from elsewhere (no CDN, no build step): the Content-Security-Policy allows only this origin.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import Response

from steerwarm.serve.errors import APIError

PAGE = "index.html"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
}


def read_asset(name: str) -> bytes:
    """One shipped playground file, from the installed package (a wheel's or the checkout's)."""
    return (files("steerwarm.serve") / "playground" / name).read_bytes()


def add_playground(app: FastAPI) -> None:
    """Serve the page at `GET /` and its assets at `GET /playground/NAME`."""
    page = read_asset(PAGE)
    assets = {name: (read_asset(name), media) for name, media in ASSETS.items()}

    @app.get("/", include_in_schema=False)
    async def playground_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    @app.get("/playground/{name}", include_in_schema=False)
    async def playground_asset(name: str) -> Response:
        if name not in assets:
            raise APIError(404, f"no playground file {name!r}; the playground is at GET /", code="not_found")
        body, media = assets[name]
        return Response(body, media_type=media, headers=HEADERS)
