"""Start the service: pipeline + settings -> uvicorn (one process, or several on one port)."""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import ServingConfig, UrlPolicy, api_key_from_env, from_pipeline_config

#: how ``serve`` hands its settings to the processes uvicorn starts (spawned: they read them at import)
PROCESS_SPEC_ENV = "VIEWFINDER_SERVE_SPEC"
#: seconds a busy process may take to answer uvicorn's liveness ping before it is replaced
PROCESS_PING_TIMEOUT_S = 60

log = logging.getLogger("viewfinder.serving")


def build_config(pipeline_config: dict[str, Any] | None, **overrides: Any) -> ServingConfig:
    """YAML ``Serving:`` block, then flags (None = not given), then ``$VIEWFINDER_API_KEY``."""
    config = from_pipeline_config(pipeline_config).with_overrides(**overrides)
    if config.api_key is None and api_key_from_env():
        config = config.with_overrides(api_key=api_key_from_env())
    return config


def load_pipeline(source: str, config: ServingConfig, device: str | None = None, use_hpip: bool | None = None,
                  **create_kwargs: Any) -> Any:
    """``create_pipeline`` with each engine capped at ``config.engine_threads`` CPU threads."""
    from ..engines.torch_engine import set_cpu_threads
    from ..pipelines import create_pipeline

    threads = config.engine_threads
    set_cpu_threads(threads)  # torch's pool is process-wide: N workers x threads <= cores
    create_kwargs.setdefault("cpu_threads", threads)
    return create_pipeline(source, device=device, use_hpip=use_hpip, **create_kwargs)


def raise_open_file_limit() -> None:
    """Soft limit -> hard limit: each served index keeps its vector.index open (replica checks)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20  # Linux refuses "infinity" here
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # capped lower by the system: keep what we have
            log.debug("could not raise the open-file limit from %s", soft)


def uvicorn_log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging, plus our access log (``viewfinder.serving.access``: one line per request, with its
    logId) in the format of uvicorn's own, which the server then leaves off."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["viewfinder_access"] = {"()": "uvicorn.logging.DefaultFormatter",
                                                 "fmt": "%(levelprefix)s %(message)s", "use_colors": None}
    config["handlers"]["viewfinder_access"] = {"formatter": "viewfinder_access", "class": "logging.StreamHandler",
                                               "stream": "ext://sys.stdout"}
    config["loggers"]["viewfinder.serving.access"] = {"handlers": ["viewfinder_access"], "level": log_level.upper(),
                                                      "propagate": False}
    return config


def serve(pipeline: str | Path, *, host: str | None = None, port: int | None = None, device: str | None = None,
          use_hpip: bool | None = None, data_dir: str | Path | None = None, index_store: str | None = None,
          api_key: str | None = None,
          memory_index: bool = False, workers: int | None = None, visualize: bool | None = None,
          processes: int | None = None, max_queue: int | None = None, request_timeout_s: float | None = None,
          log_level: str = "info", **create_kwargs: Any) -> None:
    """Load ``pipeline`` (a name or YAML path) and serve it until interrupted; the warm-up runs
    once the port is open (``/health/ready`` answers 200 when it is done).

    ``processes > 1``: uvicorn starts that many server processes on the port, each with its own
    copy of the pipeline and ``workers`` threads (default: cores // processes); PP-ShiTuV2
    indexes are shared through ``data_dir`` as between replicas (docs/serving.md), and ``/metrics``
    merges every process's metrics (prometheus-client's multiprocess mode).
    """
    import uvicorn

    from ..engines.threads import physical_cores
    from ..pipelines import PIPELINE_NAMES
    from ..pipelines.config import load_config
    from .app import create_app
    from .metrics import shared_metrics_dir

    logging.getLogger("viewfinder.serving").setLevel(log_level.upper())
    pipeline_config = load_config(str(pipeline), None, PIPELINE_NAMES)
    overrides: dict[str, Any] = dict(host=host, port=port, data_dir=data_dir, index_store=index_store, api_key=api_key,
                                     workers=workers, visualize=visualize, processes=processes, max_queue=max_queue,
                                     request_timeout_s=request_timeout_s)
    if memory_index:
        overrides["index_storage"] = "memory"
    config = build_config(pipeline_config, **overrides)
    shitu = pipeline_config["pipeline_name"] == "PP-ShiTuV2"
    if config.processes > 1:
        if workers is None and "workers" not in (pipeline_config.get("Serving") or {}):
            config = config.with_overrides(workers=max(1, physical_cores() // config.processes))
        if shitu and config.index_storage == "memory":
            raise ConfigError("memory indexes live inside one process: with processes > 1 keep them in a "
                              "folder the processes share (--data_dir), not --memory_index")
        if shitu and config.index_store is not None and config.index_store.strip().startswith("milvus:///"):
            raise ConfigError("a Milvus Lite file is open in one process at a time: with processes > 1 run "
                              "`milvus-lite server --data-dir FILE.db --port PORT` and use "
                              "--index_store milvus://127.0.0.1:PORT")
        spec = _process_spec(str(pipeline), config, device, use_hpip, log_level, create_kwargs)
        _check_in_subprocess(spec)
        os.environ[PROCESS_SPEC_ENV] = spec
        app: Any = f"{__name__}:process_app"
        extra: dict[str, Any] = dict(factory=True, workers=config.processes,
                                     timeout_worker_healthcheck=PROCESS_PING_TIMEOUT_S)
    else:
        runner = load_pipeline(str(pipeline), config, device=device, use_hpip=use_hpip, **create_kwargs)
        app, extra = create_app(runner, config, warmup=True), {}
    if shitu and config.index_store is not None:
        log.info("indexes are stored in %s", config.index_store)
    elif shitu and config.index_storage == "file_system":
        log.info("indexes are stored in %s", Path(config.data_dir).resolve())
    if config.api_key is None and config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without an API key (set --api_key or $VIEWFINDER_API_KEY)", config.host)
    raise_open_file_limit()
    try:
        log_config = uvicorn_log_config(log_level)
        with shared_metrics_dir() if config.processes > 1 else nullcontext():  # before the processes start
            uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, log_config=log_config,
                        access_log=False, limit_concurrency=config.max_concurrency, timeout_keep_alive=30, **extra)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc}") from None


def _process_spec(pipeline: str, config: ServingConfig, device: str | None, use_hpip: bool | None, log_level: str,
                  create_kwargs: dict[str, Any]) -> str:
    settings = dataclasses.asdict(config)
    settings["data_dir"] = str(config.data_dir)
    try:
        return json.dumps({"pipeline": str(Path(pipeline).resolve()) if Path(pipeline).is_file() else pipeline,
                           "device": device, "use_hpip": use_hpip, "log_level": log_level,
                           "create_kwargs": create_kwargs, "config": settings})
    except TypeError as exc:
        raise ConfigError(f"with processes > 1 the pipeline options must be plain values: {exc}") from None


def _load_from_spec(spec_json: str) -> tuple[Any, ServingConfig]:
    spec = json.loads(spec_json)
    settings = spec["config"]
    config = ServingConfig(**{**settings, "data_dir": Path(settings["data_dir"]),
                              "url_policy": UrlPolicy(**settings["url_policy"])})
    logging.getLogger("viewfinder.serving").setLevel(spec["log_level"].upper())
    runner = load_pipeline(spec["pipeline"], config, device=spec["device"], use_hpip=spec["use_hpip"],
                           **spec["create_kwargs"])
    return runner, config


def _try_load(spec_json: str) -> Exception | None:
    from ..errors import ViewfinderError

    try:
        _load_from_spec(spec_json)
    except ViewfinderError as exc:
        return exc
    return None


def _check_in_subprocess(spec_json: str) -> None:
    """Load the pipeline once in a short-lived process before uvicorn starts the servers.

    Bad configs and missing weights then fail with one message instead of in every server
    process, an ONNX export is built once into the cache the servers read, and the parent,
    which only supervises, never holds a copy of the models.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        error = pool.submit(_try_load, spec_json).result()
    if error is not None:
        raise error


def process_app() -> Any:
    """uvicorn's app factory in each of several server processes (settings from ``serve``)."""
    from .app import create_app

    runner, config = _load_from_spec(os.environ[PROCESS_SPEC_ENV])
    return create_app(runner, config, warmup=True)  # the open-file limit is inherited from serve()
