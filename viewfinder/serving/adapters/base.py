"""The adapter interface and the helpers adapters share."""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI

from ...errors import InputError
from ...results import to_jsonable
from ..images import decodable_bytes
from ..runtime import ServiceRuntime

log = logging.getLogger(__name__)

# A plain grey picture for warm-up runs (the first forward allocates; PaddleClas #2872).
WARMUP_BGR = np.full((256, 320, 3), 127, dtype=np.uint8)

F = TypeVar("F", bound=Callable[..., Any])


def body_model(model: type) -> Callable[[F], F]:
    """Type an endpoint's ``body`` parameter as ``model``: the request models are made per app, from
    its limits (``ServiceRuntime.requests``), so the route cannot name them in its signature."""
    def apply(endpoint: F) -> F:
        endpoint.__annotations__ = {**endpoint.__annotations__, "body": model}
        return endpoint
    return apply


class PipelineAdapter:
    """Registers one pipeline's endpoints on an app; subclasses implement :meth:`register`."""

    #: canonical names of the pipelines this adapter serves
    pipeline_names: tuple[str, ...] = ()
    #: POST paths whose requests queue for inference (refused at once while the work queue is full)
    queued_paths: tuple[str, ...] = ()

    def __init__(self, pipeline: Any, runtime: ServiceRuntime) -> None:
        self.pipeline = pipeline
        self.runtime = runtime
        self._takes_batch_size = "batch_size" in predict_parameters(pipeline)
        #: bytes of a request image -> what ``predict`` is given: the pipeline's own decode, done before
        #: the request queues (``predict`` does not decode it again); for a pipeline without
        #: ``decode_input``, a full decode that refuses a bad image, then the bytes
        decode = getattr(pipeline, "decode_input", None)
        self.decode_input: Callable[[bytes], Any] = decode if callable(decode) else decodable_bytes

    def register(self, app: FastAPI) -> None:
        raise NotImplementedError

    def warmup(self) -> None:
        """Run the models once so the first request does not pay for allocation."""

    # ------------------------------------------------------------------ helpers
    def predict_all(self, inputs: list[Any], **params: Any) -> list[Any]:
        """``pipeline.predict`` over ``inputs`` as one batch; None params are left to the pipeline.

        Adapters pass parameters the pipeline declares, by name: a request's other JSON fields
        never reach ``predict()`` (the request schemas ignore them).
        """
        kwargs = {k: v for k, v in params.items() if v is not None}
        if self._takes_batch_size:
            kwargs["batch_size"] = max(1, len(inputs))
        results = list(self.pipeline.predict(inputs, **kwargs))
        if len(results) != len(inputs):
            raise RuntimeError(f"pipeline returned {len(results)} results for {len(inputs)} inputs")
        return results

    def answer_each(self, results: Sequence[Any], visualize: Sequence[bool], convert: Callable[..., Any],
                    *per_result: Sequence[Any]) -> list[Any]:
        """One outcome per result of a batch: its answer, or the exception that fails that request alone.

        ``convert(result, *args)`` builds an answer from a good result (``args``: that result's
        entries of ``per_result``); the picture is added where ``visualize`` asks for it, after
        ``convert``, so that the drawing shows what the answer holds (see :meth:`drawing`).
        """
        outcomes: list[Any] = []
        for result, draw, *args in zip(results, visualize, *per_result):
            try:
                error = failed(result)
                if error is not None:
                    raise error
                answer = convert(result, *args)
                if draw:
                    answer.image = self.drawing(result)
                outcomes.append(answer)
            except Exception as exc:  # this request fails, the rest of the batch does not
                outcomes.append(exc)
        return outcomes

    def drawing(self, result: Any) -> str | None:
        """``result``'s picture as Base64 JPEG, or None when it cannot be drawn: a drawing that fails
        never fails the request, whose answer goes out without the image (the reason is logged)."""
        try:
            return self.runtime.encode_image(result.img["res"])
        except Exception as exc:  # noqa: BLE001 - a picture is never worth failing the request
            log.warning("result image left out of the answer: drawing it failed (%s: %s)", type(exc).__name__, exc,
                        exc_info=True)
            return None


def predict_parameters(pipeline: Any) -> tuple[str, ...]:
    """The keywords ``pipeline.predict`` takes: its declared ``predict_params``, else (a pipeline
    object from elsewhere) the keyword parameters in its signature."""
    declared = getattr(pipeline, "predict_params", None)
    if declared is not None:
        return tuple(declared)
    try:
        parameters = inspect.signature(pipeline.predict).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return ()
    return tuple(parameters)


def failed(result: Any) -> Exception | None:
    """An :class:`InputError` for a per-input error result (undecodable image), else None."""
    if getattr(result, "ok", True) and "error" not in result:
        return None
    return InputError(str(result.get("error") or "the image could not be processed"))


def categories(result: Any, limit: int | None = None) -> list[dict[str, Any]]:
    """PaddleX's ``categories`` from a classification result (best first)."""
    ids = to_jsonable(result["class_ids"])
    scores = to_jsonable(result["scores"])
    names = result.get("label_names") or [str(i) for i in ids]
    rows = [{"id": int(i), "name": str(n), "score": float(s)} for i, n, s in zip(ids, names, scores)]
    return rows[:limit] if limit is not None else rows
