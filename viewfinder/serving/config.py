"""Service settings: defaults, the pipeline YAML's ``Serving:`` block, then command-line flags.

PaddleX reads ``Serving.visualize`` and ``Serving.extra.index_storage`` (``{type: memory}``
or ``{type: file_system, directory: ...}``) from the pipeline YAML; we read the same keys,
plus our own limits under ``Serving:`` (see docs/serving.md).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..engines.threads import physical_cores
from ..errors import ConfigError
from ..io.image import max_image_pixels

API_KEY_ENV = "VIEWFINDER_API_KEY"
DEFAULT_DATA_DIR = ".index"  # PaddleX's default index folder (relative to the working directory)


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs an ``image`` field may name, and how much the service will fetch."""

    allow_loopback: bool = False
    allow_private: bool = False       # RFC 1918, ULA, CGNAT and every other non-global range
    allow_link_local: bool = False    # 169.254/16, fe80::/10
    allow_metadata: bool = False      # cloud metadata endpoints, even when link-local is allowed
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5


@dataclass(frozen=True)
class ServingConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    visualize: bool = True
    #: "file_system" (one folder per index under ``data_dir``) or "memory" (lost on exit)
    index_storage: str = "file_system"
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    #: where PP-ShiTuV2 indexes live instead of ``data_dir``: a folder, or a Milvus store prefix
    #: (``milvus://HOST:PORT``, ``milvus:///ABS/PATH/galleries.db``): one collection per indexKey
    index_store: str | None = None
    api_key: str | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = field(default_factory=max_image_pixels)
    max_images_per_request: int = 1000
    url_policy: UrlPolicy = UrlPolicy()
    #: inference worker threads (per process); engines get ``cores // (workers * processes)`` threads each
    workers: int = field(default_factory=physical_cores)
    #: server processes on one port (each loads the pipeline; indexes shared through ``data_dir``)
    processes: int = 1
    #: micro-batching: how long a batch waits for more requests, and its largest size
    # 0: a free worker does not wait for requests whose images are still decoding (they decode before
    # they queue, so waiting idles the worker: 139-141 req/s at concurrency 8 with 4 ms, 146 with 0,
    # benchmarks/serve_load.py); a GPU deployment may still want a few ms to fill its batches.
    batch_window_ms: float = 0.0
    max_batch: int = 8
    jpeg_quality: int = 90
    #: requests in flight before uvicorn answers 503
    max_concurrency: int = 256
    #: the largest ``topk`` a request may ask for (422 above); /shitu-infer also never searches for
    #: more than the index holds
    max_topk: int = 100
    #: the longest gallery label (in characters) an index build or add accepts (422 above)
    max_label_length: int = 256
    #: inference requests that may wait for a worker (per process); beyond: 503 + Retry-After at once
    max_queue: int = 64
    #: seconds a request may take before it is answered 504 (0: no limit); not /health*, /metrics
    request_timeout_s: float = 300.0
    #: the web console at ``/`` (static files; a client of the public API, see docs/serving.md)
    console: bool = True

    def __post_init__(self) -> None:
        if self.index_storage not in ("file_system", "memory"):
            raise ConfigError(f"index_storage must be 'file_system' or 'memory', got {self.index_storage!r}")
        if self.index_store is not None:
            from ..retrieval.location import parse_location

            parse_location(self.index_store, store=True)  # a malformed store fails here, named
            if self.index_storage == "memory":
                raise ConfigError("--index_store and memory indexes exclude each other: choose one")
        for name in ("workers", "processes", "max_batch", "max_body_bytes", "max_image_pixels",
                     "max_images_per_request", "max_concurrency", "max_topk", "max_label_length", "max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Serving.{name} must be a positive integer, got {value!r}")
        if not 0 <= self.batch_window_ms <= 1000:
            raise ConfigError(f"Serving.batch_window_ms must be within 0..1000, got {self.batch_window_ms!r}")
        timeout = self.request_timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
                or timeout < 0:
            raise ConfigError(f"Serving.request_timeout_s must be a number of seconds >= 0 (0: no limit), "
                              f"got {timeout!r}")
        if not isinstance(self.console, bool):
            raise ConfigError(f"Serving.console must be true or false, got {self.console!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"Serving.jpeg_quality must be within 1..100, got {self.jpeg_quality!r}")

    @property
    def engine_threads(self) -> int:
        """Threads each engine may use so that all processes' concurrent forwards fill, not oversubscribe, the cores."""
        return max(1, physical_cores() // (self.workers * self.processes))

    def with_overrides(self, **values: Any) -> "ServingConfig":
        """A copy with the non-None ``values`` applied (command-line flags)."""
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown serving settings {sorted(unknown)}")
        changes = {k: v for k, v in values.items() if v is not None}
        if "data_dir" in changes:
            changes["data_dir"] = Path(changes["data_dir"])
        return replace(self, **changes)


_URL_KEYS = {f.name for f in fields(UrlPolicy)}
_OWN_KEYS = {f.name for f in fields(ServingConfig)} - {"url_policy", "index_storage", "data_dir", "api_key",
                                                        "host", "port"}


def from_pipeline_config(config: dict[str, Any] | None) -> ServingConfig:
    """Settings from a pipeline config's ``Serving:`` block (missing keys keep their defaults)."""
    block = (config or {}).get("Serving") or {}
    if not isinstance(block, dict):
        raise ConfigError("Serving must be a mapping")
    values: dict[str, Any] = {}
    extra = block.get("extra") or {}
    if not isinstance(extra, dict):
        raise ConfigError("Serving.extra must be a mapping")
    storage = extra.get("index_storage")
    if storage is not None:
        if not isinstance(storage, dict) or storage.get("type") not in ("memory", "file_system"):
            raise ConfigError("Serving.extra.index_storage must be {type: memory} or "
                              "{type: file_system, directory: DIR} (bos/oss are not supported)")
        values["index_storage"] = storage["type"]
        if storage["type"] == "file_system" and storage.get("directory"):
            values["data_dir"] = Path(str(storage["directory"]))
    url_values: dict[str, Any] = {}
    for key, value in block.items():
        if key == "extra":
            continue
        if key == "url_policy":
            if not isinstance(value, dict) or set(value) - _URL_KEYS:
                raise ConfigError(f"Serving.url_policy must be a mapping with keys from {sorted(_URL_KEYS)}")
            url_values.update(value)
        elif key in _OWN_KEYS:
            values[key] = value
        else:
            raise ConfigError(f"unknown key Serving.{key}; known: {sorted(_OWN_KEYS | {'extra', 'url_policy'})}")
    try:
        if url_values:
            values["url_policy"] = UrlPolicy(**url_values)
        return ServingConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"Serving: {exc}") from None


def api_key_from_env() -> str | None:
    return os.environ.get(API_KEY_ENV) or None
