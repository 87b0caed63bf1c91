"""Single-label classification: softmax + top-k."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ViewfinderError
from ..io import DecodedImage, full_image_loader
from ..results import BaseResult, TopkResult
from .predictor import BasePredictor


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def topk(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries per row, best first (one batched op)."""
    k = min(k, probabilities.shape[1])
    part = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(probabilities, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


class ClassificationPredictor(BasePredictor):
    """``predict(input, topk=5)`` -> :class:`TopkResult` per image."""

    postprocess_params = {"topk": 5}

    def _validate_params(self, params: dict[str, Any]) -> None:
        k = params["topk"]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ViewfinderError(f"topk must be a positive integer, got {k!r}")

    def _postprocess(self, outputs: Any, images: list[DecodedImage], params: dict[str, Any]) -> list[BaseResult]:
        logits = outputs if isinstance(outputs, np.ndarray) else next(iter(outputs.values()))
        ids, scores = topk(softmax(logits.astype(np.float32, copy=True)), int(params["topk"]))
        scores = np.round(scores, 5).astype(np.float32)
        results: list[BaseResult] = []
        for image, row_ids, row_scores in zip(images, ids, scores):
            names = [self.labels[i] if self.labels and i < len(self.labels) else str(i) for i in row_ids]
            results.append(
                TopkResult(
                    {
                        "input_path": image.input_path,
                        "page_index": None,
                        "input_img": image.rgb,
                        "class_ids": row_ids.astype(np.int32),
                        "scores": row_scores,
                        "label_names": names,
                    },
                    image_loader=full_image_loader(image),
                )
            )
        return results
