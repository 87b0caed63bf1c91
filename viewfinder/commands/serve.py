"""``viewfinder serve``: run a pipeline as PaddleX's HTTP service (also ``viewfinder --serve``).

    viewfinder serve --pipeline image_classification --port 8080
    viewfinder serve --pipeline PP-ShiTuV2 --data_dir /var/lib/viewfinder/indexes --api_key "$KEY"
"""
from __future__ import annotations

from typing import Any

import click

from .guard import guarded
from .options import hpi_config_from_json


def run_server(pipeline: str | None, host: str | None, port: int | None, device: str | None,
               use_hpip: bool, data_dir: str | None, api_key: str | None, **options: Any) -> None:
    """Shared by ``viewfinder serve`` and the root ``--serve`` flag.

    An absent ``--use_hpip`` leaves the pipeline YAML's ``use_hpip`` / ``enable_hpi`` in force.
    """
    from ..errors import ViewfinderError
    from ..serving import serve

    if not pipeline:
        raise ViewfinderError("--pipeline is required to serve (a pipeline name or a YAML file)")
    create_kwargs: dict[str, Any] = {}
    if options.pop("random_init", False):
        create_kwargs["pretrained"] = False
    hpi_config = options.pop("hpi_config", None)
    if isinstance(hpi_config, str):
        hpi_config = hpi_config_from_json(hpi_config)
    if hpi_config is not None:
        create_kwargs["hpi_config"] = hpi_config
    serve(pipeline, host=host, port=port, device=device, use_hpip=use_hpip or None, data_dir=data_dir,
          api_key=api_key, **{k: v for k, v in options.items() if v is not None}, **create_kwargs)


def register(cli: click.Group) -> None:
    @click.command("serve")
    @click.option("--pipeline", required=True, help="Pipeline name (image_classification, PP-ShiTuV2, ...) or YAML file.")
    @click.option("--host", default=None, help="Address to listen on (default 0.0.0.0).")
    @click.option("--port", type=int, default=None, help="Port (default 8080).")
    @click.option("--device", default=None, help="cpu, gpu, gpu:N (default: GPU 0 if available).")
    @click.option("--use_hpip", "--enable_hpi", "use_hpip", is_flag=True,
                  help="High-performance inference (ONNX Runtime on CPU); --enable_hpi: PaddleX 3.0's config name.")
    @click.option("--hpi_config", default=None, help="With --use_hpip: PaddleX's hpi_config as JSON.")
    @click.option("--data_dir", default=None, help="Folder for PP-ShiTuV2 indexes, one sub-folder per indexKey "
                                                   "(default ./.index).")
    @click.option("--index_store", default=None,
                  help="Keep PP-ShiTuV2 indexes here instead of --data_dir: a folder, or a Milvus store "
                       "(milvus://HOST:PORT, milvus:///ABS/PATH/galleries.db), one collection per indexKey, "
                       "shared by several server processes (docs/scale.md).")
    @click.option("--memory_index", is_flag=True, help="Keep indexes in memory only (lost on exit).")
    @click.option("--api_key", default=None, envvar="VIEWFINDER_API_KEY",
                  help="Require this key (Authorization: Bearer KEY or X-API-Key) on every route but /health.")
    @click.option("--workers", type=int, default=None,
                  help="Inference worker threads per process (default: physical cores // processes).")
    @click.option("--processes", type=int, default=None,
                  help="Server processes on the port, each with its own models (default 1; see docs/serving.md).")
    @click.option("--visualize/--no-visualize", default=None, help="Return result images (default: Serving.visualize).")
    @click.option("--max_queue", type=int, default=None,
                  help="Inference requests that may wait for a worker, per process; beyond, 503 + Retry-After at "
                       "once (default: Serving.max_queue, 64).")
    @click.option("--request_timeout_s", type=float, default=None,
                  help="Seconds before an unanswered request gets 504; 0: no limit (default: "
                       "Serving.request_timeout_s, 300).")
    @click.option("--random_init", is_flag=True, help="Random weights (for load tests without weight files).")
    @click.option("--log_level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
    @guarded
    def serve_command(pipeline: str, host: str | None, port: int | None, device: str | None, use_hpip: bool,
                      hpi_config: str | None, data_dir: str | None, index_store: str | None, memory_index: bool,
                      api_key: str | None, workers: int | None, processes: int | None, visualize: bool | None,
                      max_queue: int | None, request_timeout_s: float | None, random_init: bool, log_level: str) -> None:
        """Serve a pipeline over HTTP with PaddleX's endpoints (FastAPI; OpenAPI at /docs)."""
        run_server(pipeline, host, port, device, use_hpip, data_dir, api_key, index_store=index_store,
                   memory_index=memory_index, hpi_config=hpi_config, workers=workers, processes=processes,
                   visualize=visualize, max_queue=max_queue, request_timeout_s=request_timeout_s,
                   random_init=random_init, log_level=log_level)

    cli.add_command(serve_command)
