"""JSON request bodies whatever their Content-Type (ASGI middleware).

PaddleX's published clients do not all label their JSON: its Node.js client gives axios a
JSON *string*, which axios sends as ``application/x-www-form-urlencoded``; curl ``-d`` does
the same, and other clients send ``text/plain`` or no Content-Type at all. FastAPI parses a
body as JSON only under a JSON media type (and answers the rest with a 422). Every body our
endpoints take is JSON, so this middleware relabels a request body of any other media type
as ``application/json`` before routing: a JSON body is then parsed as such, and a body that
is not JSON fails JSON parsing (422 envelope, "body is not valid JSON") as it would with the
right header (an empty body is still "Field required").
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[None]]], Awaitable[None]]

JSON_MEDIA_TYPE = b"application/json"
#: methods whose requests carry the endpoints' JSON bodies
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_json_media_type(content_type: bytes) -> bool:
    """``application/json`` or any ``application/...+json``, parameters (charset) ignored."""
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == JSON_MEDIA_TYPE or (media_type.startswith(b"application/") and media_type.endswith(b"+json"))


class JsonBodyMiddleware:
    """Relabels a POST/PUT/PATCH whose Content-Type is missing or not JSON as ``application/json``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in BODY_METHODS:
            headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
            declared = [value for name, value in headers if name.lower() == b"content-type"]
            if not (declared and is_json_media_type(declared[0])):
                kept = [(name, value) for name, value in headers if name.lower() != b"content-type"]
                scope = {**scope, "headers": [*kept, (b"content-type", JSON_MEDIA_TYPE)]}
        await self.app(scope, receive, send)
