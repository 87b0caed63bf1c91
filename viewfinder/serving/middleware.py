"""ASGI middleware: a log id per request, the request-body limit and the API-key check.

Plain ASGI (no BaseHTTPMiddleware), so a refused request costs no routing or parsing:
the body is read up to the limit here and replayed to the app, so an oversized body
(declared or chunked) never reaches JSON parsing.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Awaitable, Callable

from .security import api_key_matches

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: the probes answer without the API key (orchestrators send none); ``/metrics`` needs it
OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready"})


async def send_envelope(send: Send, status: int, log_id: str, message: str,
                        headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"logId": log_id, "errorCode": status, "errorMsg": message}, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, api_key: str | None,
                 open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key
        #: paths answered without the key: the probes, and the web console's files when it is served
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        log_id = str(uuid.uuid4())
        scope["state"] = {**scope.get("state", {}), "log_id": log_id}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}

        if self.api_key and scope["path"] not in self.open_paths and not api_key_matches(self.api_key, headers):
            await send_envelope(send, 401, log_id, "missing or wrong API key: send 'Authorization: Bearer <key>' "
                                "or 'X-API-Key: <key>'", [(b"www-authenticate", b"Bearer")])
            return

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_envelope(send, 413, log_id, f"request body of {declared} bytes is above the "
                                f"{self.max_body_bytes}-byte limit")
            return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS") and not declared:
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_envelope(send, 413, log_id, f"request body is above the {self.max_body_bytes}-byte limit")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect as usual

        await self.app(scope, replay, send)
