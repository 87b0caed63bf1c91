"""``image_classification``: ``POST /image-classification`` (PaddleX operationId ``infer``)."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from ..responses import INFER_ERRORS, error_responses
from ..schemas import ClassificationResult, ResultResponse
from .base import WARMUP_BGR, PipelineAdapter, body_model, categories


class ClassificationAdapter(PipelineAdapter):
    pipeline_names = ("image_classification",)
    queued_paths = ("/image-classification",)

    def __init__(self, pipeline: Any, runtime: Any) -> None:
        super().__init__(pipeline, runtime)
        self.default_topk = int(pipeline.topk)  # the pipeline's own default (its YAML, else its model's)
        self.batcher = runtime.batcher(self._run)

    def register(self, app: FastAPI) -> None:
        runtime = self.runtime

        @app.post("/image-classification", operation_id="infer", tags=["image_classification"],
                  response_model=ResultResponse[ClassificationResult], responses=error_responses(*INFER_ERRORS))
        @body_model(runtime.requests.ImageClassificationRequest)
        async def infer(body: Any, request: Request):
            """Top-k classes of one image."""
            with self.batcher.incoming():
                data = await runtime.read_image(body.image, self.decode_input)
                topk = body.topk or (body.inferenceParams.topK if body.inferenceParams else None)
                result = await self.batcher.submit((data, topk, runtime.visualize(body.visualize)))
            return runtime.ok(request, result)

    def warmup(self) -> None:
        self.predict_all([WARMUP_BGR])

    def _run(self, items: list[tuple[Any, int | None, bool]]) -> list[Any]:
        """One forward for the batch at the largest topk asked for; each answer is cut to its own."""
        wanted = [topk or self.default_topk for _, topk, _ in items]
        results = self.predict_all([data for data, _, _ in items], topk=max(wanted))
        return self.answer_each(results, [visualize for _, _, visualize in items], self._answer, wanted)

    @staticmethod
    def _answer(result: Any, k: int) -> ClassificationResult:
        for field in ("class_ids", "scores", "label_names"):
            if field in result:
                result[field] = result[field][:k]  # the drawing shows what the answer holds
        return ClassificationResult(categories=categories(result))
