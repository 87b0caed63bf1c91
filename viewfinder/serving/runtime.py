"""What every endpoint adapter shares: settings, request models, the worker pool, index storage, image I/O,
envelopes."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..engines.threads import physical_cores
from ..errors import RequestTooLargeError
from .batching import MicroBatcher, WorkerPool
from .config import ServingConfig
from .images import check_image, decode_base64, encode_jpeg, is_url
from .schemas import request_models
from .security import fetch_url
from .storage import IndexStore

T = TypeVar("T")
#: Base64 image fields up to this length are decoded on the event loop (a fraction of a millisecond)
INLINE_BASE64_CHARS = 256 * 1024


def log_id(request: Request) -> str:
    return request.scope["state"]["log_id"]


def open_store(config: ServingConfig) -> IndexStore:
    """The index store the settings name: memory, a folder, or a Milvus database (``--index_store``)."""
    if config.index_store is None:
        return IndexStore(None if config.index_storage == "memory" else config.data_dir)
    from ..retrieval.location import FolderLocation, parse_location

    location = parse_location(config.index_store, store=True)
    if isinstance(location, FolderLocation):
        return IndexStore(location.path)
    from .milvus_store import MilvusIndexStore  # pymilvus only when a Milvus store is named

    return MilvusIndexStore(location)  # type: ignore[return-value]  # the same API


class ServiceRuntime:
    def __init__(self, config: ServingConfig, pool: WorkerPool, store: IndexStore | None = None,
                 observe_batch: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.pool = pool
        self._store = store
        #: the request models under this service's limits (``Serving.max_topk``, ``max_label_length``)
        self.requests = request_models(config.max_topk, config.max_label_length)
        self._observe_batch = observe_batch
        # Request images decode on half as many threads as there are cores (not on the event loop, not
        # behind the inference queue): decoding takes ~1/3 of a request's CPU, so more threads would only
        # take turns with inference on the same cores (2-core EPYC, classification at concurrency 8:
        # one decode thread +2.8 % req/s over two).
        self._decode_pool: ThreadPoolExecutor | None = None  # made on first use, shut down by close()

    @property
    def store(self) -> IndexStore:
        if self._store is None:
            self._store = open_store(self.config)
        return self._store

    @property
    def store_in_use(self) -> IndexStore | None:
        """The index store, if an adapter opened it (PP-ShiTuV2); None for the classifiers."""
        return self._store

    def batcher(self, run: Any, max_batch: int | None = None) -> MicroBatcher:
        """A micro-batcher on the shared pool; ``max_batch=1`` for pipelines that gain nothing from batches."""
        return MicroBatcher(run, self.pool, max_batch=min(max_batch or self.config.max_batch, self.config.max_batch),
                            window_s=self.config.batch_window_ms / 1000.0, on_batch=self._observe_batch)

    # ------------------------------------------------------------------ images
    def _checked(self, data: bytes, decode: Callable[[bytes], T]) -> T:
        check_image(data, self.config.max_image_pixels)  # from the header, before any pixel is decoded
        return decode(data)

    async def read_image(self, value: str, decode: Callable[[bytes], T]) -> T:
        """An ``image`` field fetched or Base64-decoded, checked, then ``decode``d (the full decode, which
        finds truncated and corrupt files), all on an I/O thread: off the event loop and before the
        request queues for an inference worker, so a bad image is refused at once under any load."""
        loop = asyncio.get_running_loop()
        if is_url(value):
            data = await run_in_threadpool(fetch_url, value, self.config.url_policy)  # I/O: the wide pool
        elif len(value) <= INLINE_BASE64_CHARS:
            data = decode_base64(value)  # 0.07 ms for an 82 KiB JPEG: cheaper than a thread hop
        else:
            data = await loop.run_in_executor(self._decoders(), decode_base64, value)
        return await loop.run_in_executor(self._decoders(), self._checked, data, decode)

    def _decoders(self) -> ThreadPoolExecutor:
        if self._decode_pool is None:
            self._decode_pool = ThreadPoolExecutor(max(1, physical_cores() // 2),
                                                   thread_name_prefix="viewfinder-request-decode")
        return self._decode_pool

    def close(self) -> None:
        """Stop the request-decoding threads (the app's shutdown; a later request starts new ones)."""
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
            self._decode_pool = None

    async def read_images(self, values: Sequence[str], decode: Callable[[bytes], T]) -> list[T]:
        if len(values) > self.config.max_images_per_request:
            raise RequestTooLargeError(f"{len(values)} images in one request; the limit is "
                                       f"{self.config.max_images_per_request} (Serving.max_images_per_request)")
        return list(await asyncio.gather(*(self.read_image(value, decode) for value in values)))

    def visualize(self, requested: bool | None) -> bool:
        return self.config.visualize if requested is None else bool(requested)

    def encode_image(self, image: Image.Image) -> str:
        return encode_jpeg(image, self.config.jpeg_quality)

    # ------------------------------------------------------------------ responses
    @staticmethod
    def ok(request: Request, result: BaseModel | dict[str, Any]) -> JSONResponse:
        """PaddleX's success envelope; None fields of the result are left out."""
        body = result.model_dump(exclude_none=True) if isinstance(result, BaseModel) else result
        return JSONResponse({"logId": log_id(request), "errorCode": 0, "errorMsg": "Success", "result": body})
