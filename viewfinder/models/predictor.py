"""The shared predict loop: inputs -> decoded batches -> engine -> per-image results.

``predict()`` is a lazy generator (PaddleX semantics): nothing runs until iterated,
batches are formed across inputs, and an input that cannot be read becomes an
:class:`~viewfinder.results.ErrorResult` in its place instead of stopping the run.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..engines.base import Engine, EngineOutput
from ..errors import InputError, ViewfinderError
from ..io import DecodedImage, InputItem, decode_image, iter_inputs, max_image_pixels
from ..predict_params import reject_unknown_params
from ..results import BaseResult, ErrorResult
from .gpu_decode import PendingJpeg, gpu_decoder_for
from .preprocess import Preprocessor
from .registry import ModelSpec

log = logging.getLogger(__name__)

# Batches read and decoded ahead on the GPU path, each in its own thread.
GPU_BATCHES_AHEAD = 2


def expand_inputs(inputs: Any) -> Iterator[InputItem | ErrorResult]:
    """Expand inputs; inside a list, a missing path becomes a per-item error rather than ending the run."""
    if isinstance(inputs, (list, tuple)):
        for item in inputs:
            try:
                yield from iter_inputs(item)
            except InputError as exc:
                yield ErrorResult({"input_path": str(item) if isinstance(item, str) else None, "error": str(exc)})
    else:
        yield from iter_inputs(inputs)


def _batches(items: Iterator[InputItem | ErrorResult], size: int) -> Iterator[list[InputItem | ErrorResult]]:
    """Group items so each group holds ``size`` images to decode (errors ride along in place)."""
    pending: list[InputItem | ErrorResult] = []
    count = 0
    for item in items:
        pending.append(item)
        count += isinstance(item, InputItem)
        if count >= size:
            yield pending
            pending, count = [], 0
    if pending:
        yield pending


#: a decoded batch + inference parameters -> one output per image
InferFn = Callable[[list[DecodedImage], dict[str, Any]], list[Any]]


@dataclass(frozen=True)
class _Decoding:
    """An input being decoded in the pool (kept with its item, so it can be taken back)."""

    future: Future
    item: InputItem


@dataclass
class PreparedImage(DecodedImage):
    """A decoded image plus its network input, made in the decode pool: the resized HWC uint8
    pixels (CPU), or a normalised CHW tensor already on the GPU (CUDA JPEG path)."""

    model_input: Any = None


def _is_prepared(source: Any) -> bool:
    return isinstance(source, PreparedImage) and source.model_input is not None


class BasePredictor:
    """A named model ready to predict: preprocessing + engine + task postprocessing.

    Every setting comes through the constructor (``create_model`` passes what the loader
    found); nothing is set on a predictor from outside after it is built.
    """

    #: whether ``create_model`` hashes the weights for this task (an index records the
    #: digest of the feature model, so vectors from other weights are not mixed in)
    records_weights: ClassVar[bool] = False

    @classmethod
    def adapt_module(cls, spec: ModelSpec, module: Any) -> Any:
        """The network this task runs, made from ``spec``'s module (called before the engine is built).

        Tasks that can only run their own kind of model refuse the others here.
        """
        return module

    #: The inference parameters ``predict()`` takes besides ``batch_size``, each with the task's
    #: default: the value used when neither the caller nor the model (its ``ModelSpec.defaults``,
    #: model dir or constructor) sets one. Any other keyword is refused.
    postprocess_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(
        self,
        spec: ModelSpec,
        engine: Engine,
        preprocess: Preprocessor,
        labels: list[str] | None,
        batch_size: int = 1,
        decode_threads: int | None = None,
        num_classes: int | None = None,
        device: Any = None,
        weights_sha256: str | None = None,
        precision: str = "fp32",
        int8_check: dict[str, Any] | None = None,
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
        #: outputs of the network (a model dir may hold another count than the spec)
        self.num_classes = int(num_classes) if num_classes is not None else spec.num_classes
        #: the torch device the model runs on (None: the engine's default)
        self.device = device
        #: sha256 of the weights, for tasks that record it (``records_weights``)
        self.weights_sha256 = weights_sha256
        #: what the network runs in: "fp32" or "int8" (see models/precision.py)
        self.precision = precision
        #: the int8 accuracy check's verdict, summary and figures, when one ran (int8 or auto)
        self.int8_check = int8_check
        self.params = {**spec.defaults, **{k: v for k, v in params.items() if v is not None}}
        self._decode_threads = decode_threads or min(4, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        # Resize in the decode pool (in parallel, overlapping inference) unless a subclass
        # runs its own _infer, which would not use the result.
        self._prepare_in_pool = type(self)._infer is BasePredictor._infer and hasattr(preprocess, "resize_one")
        self._gpu_jpeg = gpu_decoder_for(engine, getattr(preprocess, "config", None)) if self._prepare_in_pool else None
        self._gpu_pool: ThreadPoolExecutor | None = None

    # --- the network alone -----------------------------------------------------------
    def raw(self, batch: np.ndarray) -> EngineOutput:
        """Run the network on an already-preprocessed NCHW float32 batch."""
        return self.engine(np.asarray(batch, dtype=np.float32))

    # --- predict ---------------------------------------------------------------------
    def __call__(self, input: Any, **kwargs: Any) -> Iterator[BaseResult]:
        return self.predict(input, **kwargs)

    def predict(self, input: Any, batch_size: int | None = None, **params: Any) -> Iterator[BaseResult]:
        """Lazily yield one result per input image; ``params`` are the declared ``postprocess_params``.

        An undeclared keyword raises :class:`~viewfinder.errors.ConfigError` at once; everything
        else (bad values included) waits until the results are iterated.
        """
        reject_unknown_params(f"{self.model_name}.predict()", params, ("batch_size", *self.postprocess_params))
        return self._predict_lazily(input, batch_size, self.resolve_params(params))

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The inference parameters a call runs with: ``given`` (None: not given), else the model's, else the task's."""
        return {**self.postprocess_params, **self.params, **{k: v for k, v in given.items() if v is not None}}

    def _predict_lazily(self, input: Any, batch_size: int | None, merged: dict[str, Any],
                        infer: InferFn | None = None) -> Iterator[Any]:
        """The lazy loop; ``infer(images, params)`` turns each decoded batch into its outputs (default
        :meth:`_infer`: results; a pipeline may ask for something else, e.g. boxes plus the image)."""
        size = int(batch_size or self.batch_size)
        if size < 1:
            raise ViewfinderError(f"batch_size must be >= 1, got {batch_size}")
        self._validate_params(merged)
        # Decode ahead: while one batch runs through the network, the next ones decode in the
        # pool, so decoding hides behind inference instead of adding to it.
        ahead = GPU_BATCHES_AHEAD if self._gpu_jpeg is not None else max(1, -(-self._decode_threads // size))
        batches = _batches(expand_inputs(input), size)
        in_flight: deque[list[Any] | Future] = deque()
        error: ViewfinderError | None = None
        while True:
            while error is None and len(in_flight) <= ahead:
                try:
                    in_flight.append(self._submit(next(batches)))
                except StopIteration:
                    break
                except ViewfinderError as exc:  # raised where the old loop raised it: after earlier results
                    error = exc
            if not in_flight:
                break
            yield from self._finish(in_flight.popleft(), merged, infer or self._infer)
        if error is not None:
            raise error

    def _validate_params(self, params: dict[str, Any]) -> None:
        """Task predictors check their inference parameters here."""

    def decode_input(self, source: Any) -> DecodedImage:
        """Decode one input (bytes, a file path, a PIL image or an array) as ``predict()`` decodes it: at the
        reduced JPEG scale this model allows, the Pillow image kept when the model resizes from it.

        ``predict()`` takes the result as an input and does not decode it again, so a caller (the
        service) can decode, and refuse an undecodable image, before queueing it for the network.
        Raises :class:`~viewfinder.errors.InputError` (or ``ImageTooLargeError``) for a bad image.
        """
        image = decode_image(source, min_short_side=self.preprocess.config.min_decode_side,
                             keep_pil=self._prepare_in_pool)
        # Resized here too (CPU path), so predict() takes it as it is, without a trip through its decode pool.
        return self._prepared(image) if self._prepare_in_pool and self._gpu_jpeg is None else image

    def _prepared(self, image: DecodedImage) -> PreparedImage:
        """``image`` with its network input (kept when it already has one, e.g. from ``decode_input``)."""
        if isinstance(image, PreparedImage) and image.model_input is not None:
            return image
        return PreparedImage(**vars(image), model_input=self.preprocess.resize_one(image.held_pixels))

    def _decode_cpu(self, item: InputItem) -> DecodedImage | ErrorResult:
        """Runs in the decode pool: decode (and resize) one input, or say why it cannot."""
        try:
            # Resized straight from the Pillow image: no array copy out of Pillow and back
            # (2.2 of 10.3 ms per 640x480 JPEG, benchmarks/decode.py); the array for drawing is made on first use.
            image = item.decode(min_short_side=self.preprocess.config.min_decode_side, keep_pil=self._prepare_in_pool)
            return self._prepared(image) if self._prepare_in_pool else image
        except ViewfinderError as exc:
            log.warning("skipping %s", exc)
            return ErrorResult({"input_path": item.input_path, "error": str(exc)})

    def _ensure_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._decode_threads, thread_name_prefix="viewfinder-decode")
        return self._pool

    def _submit(self, pending: list[InputItem | ErrorResult]) -> list[Any] | Future:
        """Start decoding a batch in the pool; errors from input expansion stay in place."""
        if self._gpu_jpeg is not None:
            # One task per batch reads the files and decodes them on the GPU, so later batches
            # decode (nvJPEG's Huffman stage runs on the CPU) while this thread runs the network.
            if self._gpu_pool is None:
                self._gpu_pool = ThreadPoolExecutor(GPU_BATCHES_AHEAD, thread_name_prefix="viewfinder-gpu-decode")
            self._ensure_pool()  # made here, not by two GPU workers at once
            return self._gpu_pool.submit(self._prepare_gpu_batch, pending)
        pool = self._ensure_pool()
        return [p if not isinstance(p, InputItem)
                else self._decode_cpu(p) if _is_prepared(p.source)  # nothing left to do: no thread hop
                else _Decoding(pool.submit(self._decode_cpu, p), p) for p in pending]

    def _collect(self, submitted: list[Any]) -> list[Any]:
        """A batch's decoded slots. Rather than wait for the pool, this thread decodes the
        batch's images the pool has not started yet, from the back while the pool works from
        the front: the first batch of a run (nothing to overlap with) and any batch the pool
        is behind on are ready sooner."""
        slots = list(submitted)
        for index in range(len(slots) - 1, -1, -1):
            slot = slots[index]
            if isinstance(slot, _Decoding):
                if not slot.future.cancel():  # started or done: the pool has reached the rest too
                    break
                slots[index] = self._decode_cpu(slot.item)
        return [s.future.result() if isinstance(s, _Decoding) else s for s in slots]

    def _prepare_gpu_batch(self, pending: list[InputItem | ErrorResult]) -> list[Any]:
        """Runs in the GPU decode pool: local JPEGs through nvJPEG, anything else in the CPU decode pool."""
        limit = max_image_pixels()
        slots: list[Any] = []
        for entry in pending:
            if isinstance(entry, InputItem):
                read = self._gpu_jpeg.read(entry, limit)
                slots.append(read if read is not None else self._pool.submit(self._decode_cpu, entry))
            else:
                slots.append(entry)
        gpu_pending = [s for s in slots if isinstance(s, PendingJpeg)]
        decoded = iter(self._gpu_jpeg.decode(gpu_pending) if gpu_pending else [])
        for index, slot in enumerate(slots):
            if isinstance(slot, Future):
                slots[index] = slot.result()
            elif isinstance(slot, PendingJpeg):
                done = next(decoded)
                if done is None:  # nvJPEG refused it: the CPU decodes it (or reports why it cannot)
                    slots[index] = self._decode_cpu(slot.item)
                else:
                    size, model_input = done
                    slots[index] = PreparedImage(None, size, slot.item.input_path, model_input=model_input)
        return slots

    def _finish(self, submitted: list[Any] | Future, params: dict[str, Any], infer: InferFn) -> Iterator[Any]:
        if isinstance(submitted, Future):
            slots = submitted.result()
        else:
            slots = self._collect(submitted)
        images = [s for s in slots if isinstance(s, DecodedImage)]
        results = iter(infer(images, params) if images else [])
        for slot in slots:
            yield slot if isinstance(slot, ErrorResult) else next(results)

    def _infer(self, images: list[DecodedImage], params: dict[str, Any]) -> list[BaseResult]:
        outputs = self.engine(self._collate(images))
        return self._postprocess(outputs, images, params)

    def _collate(self, images: list[DecodedImage]) -> Any:
        """The network batch: from the inputs prepared in the decode pool when every image has one."""
        inputs = [getattr(image, "model_input", None) for image in images]
        if any(x is None for x in inputs):
            return self.preprocess([image.held_pixels for image in images])
        if all(isinstance(x, np.ndarray) for x in inputs):
            return self.preprocess.normalize(inputs)
        import torch  # GPU path: normalised tensors on the device, CPU-prepared ones moved there

        device = next(x.device for x in inputs if isinstance(x, torch.Tensor))
        return torch.stack([
            x if isinstance(x, torch.Tensor) else torch.from_numpy(self.preprocess.normalize([x])[0]).to(device)
            for x in inputs
        ])

    def _postprocess(self, outputs: EngineOutput, images: list[DecodedImage], params: dict[str, Any]) -> list[BaseResult]:
        raise NotImplementedError

    def close(self) -> None:
        for pool in (self._pool, self._gpu_pool):
            if pool is not None:
                pool.shutdown(wait=False)
        self._pool = self._gpu_pool = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
