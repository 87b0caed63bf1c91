"""``image_multilabel_classification``: ``POST /multilabel-image-classification`` (operationId ``infer``)."""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from fastapi import FastAPI, Request

from ..responses import INFER_ERRORS, error_responses
from ..schemas import ClassificationResult, ResultResponse
from .base import WARMUP_BGR, PipelineAdapter, body_model, categories


def threshold_key(threshold: Any) -> Hashable:
    """Requests with equal thresholds share a forward pass."""
    if isinstance(threshold, dict):
        return ("dict",) + tuple(sorted((str(k), float(v)) for k, v in threshold.items()))
    if isinstance(threshold, list):
        return ("list",) + tuple(float(v) for v in threshold)
    return threshold


class MultiLabelAdapter(PipelineAdapter):
    pipeline_names = ("image_multilabel_classification",)
    queued_paths = ("/multilabel-image-classification",)

    def __init__(self, pipeline: Any, runtime: Any) -> None:
        super().__init__(pipeline, runtime)
        self.batcher = runtime.batcher(self._run)

    def register(self, app: FastAPI) -> None:
        runtime = self.runtime

        @app.post("/multilabel-image-classification", operation_id="infer",
                  tags=["image_multilabel_classification"], response_model=ResultResponse[ClassificationResult],
                  responses=error_responses(*INFER_ERRORS))
        @body_model(runtime.requests.MultiLabelRequest)
        async def infer(body: Any, request: Request):
            """The classes of one image scoring above the threshold (possibly none)."""
            with self.batcher.incoming():
                data = await runtime.read_image(body.image, self.decode_input)
                threshold = body.threshold
                result = await self.batcher.submit((data, threshold, runtime.visualize(body.visualize)),
                                                   key=threshold_key(threshold))
            return runtime.ok(request, result)

    def warmup(self) -> None:
        self.predict_all([WARMUP_BGR])

    def _run(self, items: list[tuple[Any, Any, bool]]) -> list[Any]:
        threshold = items[0][1]  # the batcher groups items by threshold
        results = self.predict_all([data for data, _, _ in items], threshold=threshold)
        return self.answer_each(results, [visualize for _, _, visualize in items],
                                lambda result: ClassificationResult(categories=categories(result)))
