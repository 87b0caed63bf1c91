"""The operator endpoints: ``GET /health/live``, ``GET /health/ready`` and ``GET /metrics``.

- ``/health/live``: the process is up and its event loop answers. It touches nothing else,
  so it answers at once however busy the inference workers are.
- ``/health/ready``: the models are loaded (they are before the app exists), their warm-up
  has finished, and the index store is reachable (a file can be made in its folder, checked
  on a thread, at most ``STORE_CHECK_TIMEOUT_S``). 503 with the envelope until then, and
  whenever the store stops being reachable; a failed warm-up keeps it 503 (reason in the log).
- ``/metrics``: Prometheus text format (``metrics.py``).

``/health`` (PaddleX's) is unchanged: it answers once the models are loaded.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import ViewfinderError
from .metrics import CONTENT_TYPE, ServiceMetrics
from .middleware import OPEN_PATHS
from .responses import ERROR_DESCRIPTIONS, error_responses
from .runtime import log_id
from .schemas import Envelope
from .storage import IndexStore

log = logging.getLogger("viewfinder.serving")

#: the paths the queue and the time limit leave alone (the probes also need no API key: OPEN_PATHS)
OPS_PATHS = OPEN_PATHS | {"/metrics"}
STORE_CHECK_TIMEOUT_S = 2.0


class Readiness:
    """Warm-up state and the index store check behind ``/health/ready``."""

    def __init__(self, store: IndexStore | None) -> None:
        self.store = store
        self.warm = False
        self.failure: str | None = None

    async def warm_up(self, warmup: Callable[[], None]) -> None:
        """Run ``warmup`` on a thread; ready once it returned."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, warmup)
        except Exception as exc:  # noqa: BLE001 - reported by /health/ready, traceback in the log
            log.exception("warm-up failed; /health/ready answers 503")
            self.failure = f"warm-up failed ({type(exc).__name__}; see the server log)"
            return
        self.warm = True
        log.info("warm-up done: ready")

    async def problem(self) -> str | None:
        """Why the service is not ready, or None."""
        if self.failure:
            return self.failure
        if not self.warm:
            return "warm-up in progress"
        if self.store is not None:
            check = asyncio.get_running_loop().run_in_executor(None, self.store.check_reachable)
            try:
                await asyncio.wait_for(check, STORE_CHECK_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.error("index store check took longer than %g s", STORE_CHECK_TIMEOUT_S)
                return f"the index store did not answer within {STORE_CHECK_TIMEOUT_S:g} s"
            except ViewfinderError as exc:
                return str(exc)
        return None


def _envelope(request: Request, status: int, message: str) -> JSONResponse:
    return JSONResponse({"logId": log_id(request), "errorCode": 0 if status == 200 else status,
                         "errorMsg": message}, status_code=status)


def register(app: FastAPI, readiness: Readiness, metrics: ServiceMetrics) -> None:
    @app.get("/health/live", operation_id="checkLiveness", summary="Liveness", response_model=Envelope,
             tags=["health"], responses=error_responses(413, 500))
    async def live(request: Request):
        """Liveness: the process answers (no API key needed; not slowed by inference load)."""
        return _envelope(request, 200, "Alive")

    @app.get("/health/ready", operation_id="checkReadiness", summary="Readiness", response_model=Envelope,
             tags=["health"],
             responses=error_responses(413, 500, 503, e503="Not ready: warm-up in progress or failed, "
                                                           "or the index store unreachable"))
    async def ready(request: Request):
        """Readiness: models loaded and warmed up, index store reachable (no API key needed)."""
        reason = await readiness.problem()
        return _envelope(request, 503, f"not ready: {reason}") if reason else _envelope(request, 200, "Ready")

    @app.get("/metrics", operation_id="getMetrics", summary="Prometheus metrics", tags=["health"],
             response_class=PlainTextResponse, responses={
                 200: {"description": "Prometheus text format", "content": {"text/plain": {
                     "schema": {"type": "string"}}}},
                 # by hand: a model here would be filed under the route's text/plain (the 401, when the
                 # service has a key, is added with every keyed route's: responses.document_api_key)
                 **{status: {"description": ERROR_DESCRIPTIONS[status], "content": {
                     "application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}
                    for status in (413, 500)}})
    async def metrics_text():
        """Prometheus metrics: requests, errors, latencies, batch sizes, queue depth, index sizes."""
        return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE)
