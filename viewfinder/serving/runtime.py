"""What every endpoint adapter shares: settings, request models, the worker pool, index storage, image I/O,
envelopes."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..errors import RequestTooLargeError
from .batching import MicroBatcher, WorkerPool
from .config import ServingConfig
from .images import check_image, decode_base64, encode_jpeg, is_url
from .schemas import request_models
from .security import fetch_url
from .storage import IndexStore

T = TypeVar("T")


def log_id(request: Request) -> str:
    return request.scope["state"]["log_id"]


class ServiceRuntime:
    def __init__(self, config: ServingConfig, pool: WorkerPool, store: IndexStore | None = None,
                 observe_batch: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.pool = pool
        self._store = store
        #: the request models under this service's limits (``Serving.max_topk``, ``max_label_length``)
        self.requests = request_models(config.max_topk, config.max_label_length)
        self._observe_batch = observe_batch

    @property
    def store(self) -> IndexStore:
        if self._store is None:
            root = None if self.config.index_storage == "memory" else self.config.data_dir
            self._store = IndexStore(root)
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
    def _image_from_field(self, value: str, decode: Callable[[bytes], T]) -> T:
        data = fetch_url(value, self.config.url_policy) if is_url(value) else decode_base64(value)
        check_image(data, self.config.max_image_pixels)  # from the header, before any pixel is decoded
        return decode(data)

    async def read_image(self, value: str, decode: Callable[[bytes], T]) -> T:
        """An ``image`` field fetched or Base64-decoded, checked, then ``decode``d (the full decode, which
        finds truncated and corrupt files), all on an I/O thread: off the event loop and before the
        request queues for an inference worker, so a bad image is refused at once under any load."""
        return await run_in_threadpool(self._image_from_field, value, decode)

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
