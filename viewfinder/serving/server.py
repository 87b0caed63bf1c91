"""Start the service: pipeline + settings -> uvicorn."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import ServingConfig, api_key_from_env, from_pipeline_config

log = logging.getLogger("viewfinder.serving")


def build_config(pipeline_config: dict[str, Any] | None, **overrides: Any) -> ServingConfig:
    """YAML ``Serving:`` block, then flags (None = not given), then ``$VIEWFINDER_API_KEY``."""
    config = from_pipeline_config(pipeline_config).with_overrides(**overrides)
    if config.api_key is None and api_key_from_env():
        config = config.with_overrides(api_key=api_key_from_env())
    return config


def load_pipeline(source: str, config: ServingConfig, device: str | None = None, use_hpip: bool = False,
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


def serve(pipeline: str | Path, *, host: str | None = None, port: int | None = None, device: str | None = None,
          use_hpip: bool = False, data_dir: str | Path | None = None, api_key: str | None = None,
          memory_index: bool = False, workers: int | None = None, visualize: bool | None = None,
          log_level: str = "info", **create_kwargs: Any) -> None:
    """Load ``pipeline`` (a name or YAML path), warm it up and serve it until interrupted."""
    import uvicorn

    from ..pipelines import PIPELINE_NAMES
    from ..pipelines.config import load_config
    from .app import create_app

    logging.getLogger("viewfinder.serving").setLevel(log_level.upper())
    pipeline_config = load_config(str(pipeline), None, PIPELINE_NAMES)
    overrides: dict[str, Any] = dict(host=host, port=port, data_dir=data_dir, api_key=api_key,
                                     workers=workers, visualize=visualize)
    if memory_index:
        overrides["index_storage"] = "memory"
    config = build_config(pipeline_config, **overrides)
    runner = load_pipeline(str(pipeline), config, device=device, use_hpip=use_hpip, **create_kwargs)
    app = create_app(runner, config, warmup=True)
    raise_open_file_limit()
    if config.index_storage == "file_system" and pipeline_config["pipeline_name"] == "PP-ShiTuV2":
        log.info("indexes are stored in %s", Path(config.data_dir).resolve())
    if config.api_key is None and config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without an API key (set --api_key or $VIEWFINDER_API_KEY)", config.host)
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level=log_level,
                    limit_concurrency=config.max_concurrency, timeout_keep_alive=30)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc}") from None
