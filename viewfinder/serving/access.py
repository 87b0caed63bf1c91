"""ASGI middleware, outermost: one access-log line per request, with its logId, and the request metrics.

It wraps every other layer, so requests refused early (401, 413, 503 queue full, 504) are
logged and counted like the rest; a request whose handler raised is recorded as the 500
the error handler answers, one whose client left before any answer as 499. The endpoint
label is the route template (``/shitu-index/{indexKey}``), never the raw path.

The lines go to the ``viewfinder.serving.access`` logger at INFO; ``viewfinder serve``
prints them in place of uvicorn's own access log (which has no logId).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from starlette.routing import Match, Router

from .metrics import ServiceMetrics
from .middleware import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("viewfinder.serving.access")

UNMATCHED = "unmatched"  # the endpoint label of paths no route serves
CLIENT_GONE = 499        # nginx's "client closed request": no answer was sent


def endpoint_of(scope: Scope, router: Router) -> str:
    """The route template that serves ``scope`` (set by routing, else matched here), or ``unmatched``."""
    route = scope.get("route")
    if route is None:  # refused before routing (401, 413, 503): match it ourselves
        for candidate in router.routes:
            match, _ = candidate.matches(scope)
            if match is not Match.NONE:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = CLIENT_GONE

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            if status == CLIENT_GONE:
                status = 500  # what the error handler outside us answers
            raise
        finally:
            self._record(scope, status, time.perf_counter() - start)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        self.metrics.observe_request(endpoint_of(scope, self.router), method, status, seconds)
        if access_log.isEnabledFor(logging.INFO):
            client: Any = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            query = scope.get("query_string", b"")
            target = scope.get("path", "") + ("?" + query.decode("latin-1") if query else "")
            access_log.info('%s - "%s %s HTTP/%s" %d %.1f ms logId=%s', where, method, target,
                            scope.get("http_version", "1.1"), status, seconds * 1000.0,
                            (scope.get("state") or {}).get("log_id", "-"))
