"""The shared predict loop: inputs -> decoded batches -> engine -> per-image results.

``predict()`` is a lazy generator (PaddleX semantics): nothing runs until iterated,
batches are formed across inputs, and an input that cannot be read becomes an
:class:`~viewfinder.results.ErrorResult` in its place instead of stopping the run.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..engines.base import Engine, EngineOutput
from ..errors import InputError, ViewfinderError
from ..io import DecodedImage, InputItem, decode_image, iter_inputs
from ..results import BaseResult, ErrorResult
from .preprocess import Preprocessor
from .registry import ModelSpec

log = logging.getLogger(__name__)


def _safe_items(inputs: Any) -> Iterator[InputItem | ErrorResult]:
    """Expand inputs; inside a list, a missing path becomes a per-item error rather than ending the run."""
    if isinstance(inputs, (list, tuple)):
        for item in inputs:
            try:
                yield from iter_inputs(item)
            except InputError as exc:
                yield ErrorResult({"input_path": str(item) if isinstance(item, str) else None, "error": str(exc)})
    else:
        yield from iter_inputs(inputs)


class BasePredictor:
    """A named model ready to predict: preprocessing + engine + task postprocessing."""

    def __init__(
        self,
        spec: ModelSpec,
        engine: Engine,
        preprocess: Preprocessor,
        labels: list[str] | None,
        batch_size: int = 1,
        decode_threads: int | None = None,
        **params: Any,
    ) -> None:
        if int(batch_size) < 1:
            raise ViewfinderError(f"batch_size must be >= 1, got {batch_size}")
        self.spec = spec
        self.model_name = spec.name
        self.engine = engine
        self.preprocess = preprocess
        self.labels = labels
        self.batch_size = int(batch_size)
        self.params = {**spec.defaults, **{k: v for k, v in params.items() if v is not None}}
        self._decode_threads = decode_threads or min(4, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None

    # --- the network alone -----------------------------------------------------------
    def raw(self, batch: np.ndarray) -> EngineOutput:
        """Run the network on an already-preprocessed NCHW float32 batch."""
        return self.engine(np.asarray(batch, dtype=np.float32))

    # --- predict ---------------------------------------------------------------------
    def __call__(self, input: Any, **kwargs: Any) -> Iterator[BaseResult]:
        return self.predict(input, **kwargs)

    def predict(self, input: Any, batch_size: int | None = None, **params: Any) -> Iterator[BaseResult]:
        """Lazily yield one result per input image."""
        size = int(batch_size or self.batch_size)
        if size < 1:
            raise ViewfinderError(f"batch_size must be >= 1, got {batch_size}")
        merged = {**self.params, **{k: v for k, v in params.items() if v is not None}}
        self._validate_params(merged)
        pending: list[InputItem | ErrorResult] = []
        for item in _safe_items(input):
            pending.append(item)
            if sum(isinstance(p, InputItem) for p in pending) >= size:
                yield from self._run_batch(pending, merged)
                pending = []
        if pending:
            yield from self._run_batch(pending, merged)

    def _validate_params(self, params: dict[str, Any]) -> None:
        """Task predictors check their inference parameters here."""

    def _decode(self, item: InputItem) -> DecodedImage | ErrorResult:
        try:
            return item.decode(min_short_side=self.preprocess.config.min_decode_side)
        except ViewfinderError as exc:
            log.warning("skipping %s", exc)
            return ErrorResult({"input_path": item.input_path, "error": str(exc)})

    def _decode_all(self, items: list[InputItem]) -> list[DecodedImage | ErrorResult]:
        if len(items) <= 1:
            return [self._decode(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._decode_threads, thread_name_prefix="viewfinder-decode")
        return list(self._pool.map(self._decode, items))

    def _run_batch(self, pending: list[InputItem | ErrorResult], params: dict[str, Any]) -> Iterator[BaseResult]:
        items = [p for p in pending if isinstance(p, InputItem)]
        decoded = iter(self._decode_all(items))
        slots: list[DecodedImage | ErrorResult] = [p if isinstance(p, ErrorResult) else next(decoded) for p in pending]
        images = [s for s in slots if isinstance(s, DecodedImage)]
        results = iter(self._infer(images, params) if images else [])
        for slot in slots:
            yield slot if isinstance(slot, ErrorResult) else next(results)

    def _infer(self, images: list[DecodedImage], params: dict[str, Any]) -> list[BaseResult]:
        batch = self.preprocess([image.rgb for image in images])
        outputs = self.engine(batch)
        return self._postprocess(outputs, images, params)

    def _postprocess(self, outputs: EngineOutput, images: list[DecodedImage], params: dict[str, Any]) -> list[BaseResult]:
        raise NotImplementedError

    @staticmethod
    def _image_loader(image: DecodedImage):
        """Full-resolution pixels for drawing: re-read the file only if it was decoded at reduced scale."""
        if image.reduced and image.input_path and not image.input_path.startswith(("http://", "https://")):
            path = image.input_path
            return lambda: decode_image(path).rgb
        rgb = image.rgb
        return lambda: rgb

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
