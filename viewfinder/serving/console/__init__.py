"""The web console: its page (``index.html``) at ``/``, its scripts and styles (``static/``) under ``/console/``.

The console is a client of the public API and nothing more: its JavaScript calls the same
endpoints with the same headers any client sends (docs/serving.md, "Web console"). It costs
the API nothing per request: no middleware is added, and its routes are registered after the
API's, so an API path matches before the router ever reaches them. The files need no API key
(a browser cannot send a header when it loads a page); the console asks for the key and sends
it with its API calls.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"  # only what the page loads: the page itself is sent by its route, with its headers
PREFIX = "/console"

#: what the page may load: its own files, the API on its own origin, and pictures from anywhere
#: (gallery items whose source is an http(s) URL; local files as data:/blob: URLs); no inline script
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self' data: blob: http: https:; object-src 'none'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def console_paths() -> frozenset[str]:
    """Every path the console serves (the page and its files): they need no API key."""
    return frozenset({"/"} | {f"{PREFIX}/{f.name}" for f in STATIC.iterdir() if f.is_file()})


def register(app: FastAPI) -> None:
    """Add the console's routes to ``app``; call it after every API route is registered."""
    page = (HERE / "index.html").read_bytes()  # a few KB, read once

    def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    # include_in_schema=False: the OpenAPI spec stays the API's, unchanged. The page names its files and
    # the API by relative URLs, so the console also works behind a proxy that serves the app under a prefix.
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount(PREFIX, StaticFiles(directory=STATIC), name="console")
