"""The FastAPI application: PaddleX's envelope and error mapping around one pipeline's endpoints.

Error mapping: a schema error is a 422 whose ``errorMsg`` says which field is wrong; a
:class:`~viewfinder.errors.ViewfinderError` is answered with its ``http_status`` (bad
image or URL 400, unknown indexKey 404, too large 413); anything else is a 500 whose body
carries only the logId, the traceback going to the server log. A full inference queue is a
503 with ``Retry-After``; a request past ``Serving.request_timeout_s`` a 504 (``limits.py``).

The web console (``console/``: static files at ``/``) is routed after every API route and adds no
middleware. Middleware, outermost first: access log + metrics (``access.py``), logId + API key + body
limit (``middleware.py``), queue-full refusal + time limit (``limits.py``), then FastAPI.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import ConfigError, ServiceBusyError, ViewfinderError
from . import console, ops
from .access import AccessMiddleware
from .adapters import PipelineAdapter, adapter_class
from .batching import WorkerPool
from .config import ServingConfig
from .json_body import JsonBodyMiddleware
from .limits import LoadLimitMiddleware
from .metrics import ServiceMetrics, multiprocess_dir
from .middleware import OPEN_PATHS, ServiceMiddleware
from .responses import document_api_key, error_responses
from .runtime import ServiceRuntime, log_id
from .schemas import Envelope
from .storage import IndexStore
from .workqueue import WorkQueue

log = logging.getLogger("viewfinder.serving")


def pipeline_name_of(pipeline: Any) -> str:
    """The canonical name of a pipeline object (aliases resolved)."""
    from ..pipelines import PIPELINE_NAMES

    name = getattr(pipeline, "name", None) or (getattr(pipeline, "config", None) or {}).get("pipeline_name")
    if not name:
        raise ConfigError(f"cannot tell which pipeline {type(pipeline).__name__} is; pass pipeline_name")
    return PIPELINE_NAMES.get(name, name)


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"logId": log_id(request), "errorCode": status, "errorMsg": message},
                        status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":  # loc is ("body", character offset)
            position = error.get("loc", ("body", 0))[-1]
            reason = (error.get("ctx") or {}).get("error", "JSON decode error")
            return f"invalid request: the body is not valid JSON ({reason} at character {position})"
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body",)]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid value')}")
    return "invalid request: " + "; ".join(parts)


def allowed_methods(request: Request) -> list[str]:
    """Every method a route serves at the request's path. (Starlette's 405 names only the methods of
    the first route whose path matches: ``GET`` alone for ``/shitu-index/{indexKey}``, which has a
    ``DELETE`` route too.)"""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(request, 422, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return _error(request, exc.status_code, str(exc.detail), headers)

    @app.exception_handler(ServiceBusyError)
    async def busy(request: Request, exc: ServiceBusyError) -> JSONResponse:
        return _error(request, 503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(ViewfinderError)
    async def viewfinder_error(request: Request, exc: ViewfinderError) -> JSONResponse:
        status = int(getattr(exc, "http_status", 400))
        if status >= 500:
            log.error("logId %s: %s", log_id(request), exc)
            return _error(request, status, f"{exc} (logId {log_id(request)})")
        log.info("logId %s: %d %s", log_id(request), status, exc)
        return _error(request, status, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("logId %s: internal error on %s %s", log_id(request), request.method, request.url.path)
        return _error(request, 500, f"Internal server error (logId {log_id(request)})")


def create_app(pipeline: Any, config: ServingConfig | None = None, pipeline_name: str | None = None,
               store: IndexStore | None = None, warmup: bool = False) -> FastAPI:
    """An app serving ``pipeline`` (an object from ``create_pipeline``) with PaddleX's endpoints.

    ``warmup``: run the models once when the app starts (on a thread: ``/health/ready`` is 503
    until it is done); without it the app is ready at once.
    """
    config = config or ServingConfig()
    name = pipeline_name or pipeline_name_of(pipeline)
    metrics = ServiceMetrics(multiprocess_dir())
    queue = WorkQueue(config.max_queue, on_depth=metrics.queue_depth.set, on_reject=metrics.queue_rejections.inc)
    pool = WorkerPool(config.workers, queue)
    runtime = ServiceRuntime(config, pool, store, observe_batch=metrics.batch_size.observe)
    adapter: PipelineAdapter = adapter_class(name)(pipeline, runtime)
    metrics.queue_limit.set(config.max_queue)
    metrics.workers.set(config.workers)
    index_store = runtime.store_in_use
    if index_store is not None:
        metrics.watch_indexes(index_store.sizes)
    readiness = ops.Readiness(index_store)
    readiness.warm = not warmup

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        warming = asyncio.get_running_loop().create_task(readiness.warm_up(adapter.warmup)) if warmup else None
        yield
        if warming is not None:
            warming.cancel()
        pool.shutdown()
        runtime.close()
        metrics.close()

    app = FastAPI(title=f"viewfinder serving: {name}", version="1.0",
                  description="PaddleX-compatible serving API (see docs/serving.md).", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.adapter = adapter
    app.state.metrics = metrics
    app.state.readiness = readiness
    _install_error_handlers(app)

    @app.get("/health", operation_id="checkHealth", response_model=Envelope, tags=["health"],
             responses=error_responses(413, 500))
    async def health(request: Request):
        """Liveness: always Healthy once the models are loaded (no API key needed)."""
        return JSONResponse({"logId": log_id(request), "errorCode": 0, "errorMsg": "Healthy"})

    ops.register(app, readiness, metrics)
    adapter.register(app)
    # The console's routes come last, so that every API path matches before the router reaches them; the
    # middleware only learns their paths (set lookups it makes anyway): nothing new runs per API request.
    console_paths: frozenset[str] = frozenset()
    if config.console:
        console.register(app)
        console_paths = console.console_paths()
    app.add_middleware(LoadLimitMiddleware, queue=queue, queued_paths=adapter.queued_paths,
                       timeout_s=config.request_timeout_s, exempt_paths=ops.OPS_PATHS | console_paths)
    if config.api_key:
        document_api_key(app)
    app.add_middleware(JsonBodyMiddleware)  # inside ServiceMiddleware: after the key and size checks
    app.add_middleware(ServiceMiddleware, max_body_bytes=config.max_body_bytes, api_key=config.api_key,
                       open_paths=OPEN_PATHS | console_paths)
    app.add_middleware(AccessMiddleware, metrics=metrics, router=app.router)
    return app
