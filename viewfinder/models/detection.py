"""Mainbody / object detection: decoded network outputs -> NMS -> boxes in original-image pixels.

The network (or an adapter, see :mod:`.onnx_detector`) delivers, per image, candidate
``boxes`` [N, 4] (x1, y1, x2, y2 in network-input pixels) and ``scores`` [N, C]. Here:
PaddleDetection's ``MultiClassNMS`` semantics (per-class score pre-filter, per-class
top-k, per-class NMS, overall keep-top-k; torchvision's ``batched_nms``), scaling back to
the original image, clipping to it, and PaddleX's final ``score > threshold`` filter.
Everything is vectorised; no Python loop runs per box.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms, nms

from ..errors import ConfigError, ViewfinderError
from ..io import DecodedImage, full_image_loader
from ..predict_params import reject_unknown_params
from ..results import BaseResult, DetResult, ErrorResult
from .predictor import BasePredictor

DEFAULT_LABEL = "foreground"


@dataclass(frozen=True)
class NMSConfig:
    """PaddleDetection ``MultiClassNMS`` parameters (PP-ShiTuV2_det: 0.025 / 0.6 / 1000 / 100)."""

    score_threshold: float = 0.025
    nms_threshold: float = 0.6
    nms_top_k: int = 1000
    keep_top_k: int = 100
    class_agnostic: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "NMSConfig":
        return cls(
            score_threshold=float(params.get("score_threshold", cls.score_threshold)),
            nms_threshold=float(params.get("nms_threshold", cls.nms_threshold)),
            nms_top_k=int(params.get("nms_top_k", cls.nms_top_k)),
            keep_top_k=int(params.get("keep_top_k", cls.keep_top_k)),
            class_agnostic=bool(params.get("class_agnostic", cls.class_agnostic)),
        )


def _as_tensor(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach().float().cpu()
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def multiclass_nms(
    boxes: np.ndarray | torch.Tensor, scores: np.ndarray | torch.Tensor, config: NMSConfig = NMSConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NMS over one image's candidates.

    ``boxes`` [N, 4], ``scores`` [N, C]. Returns ``(boxes [K, 4], scores [K], class_ids [K])``
    sorted by descending score, K <= ``keep_top_k``. With ``class_agnostic`` every
    candidate keeps its best class and one NMS runs over all of them.
    """
    boxes_t = _as_tensor(boxes)
    scores_t = _as_tensor(scores)
    if scores_t.ndim == 1:
        scores_t = scores_t[:, None]
    if config.class_agnostic:
        best, classes = scores_t.max(dim=1)
        scores_t, cand_classes = best[:, None], classes
    else:
        cand_classes = None
    # Candidates above the score threshold, as (box index, class) pairs.
    box_idx, cls_idx = torch.nonzero(scores_t > config.score_threshold, as_tuple=True)
    cand_scores = scores_t[box_idx, cls_idx]
    if config.nms_top_k > 0 and cand_scores.numel() > config.nms_top_k:
        # Per-class top-k: rank within each class by sorting on (class, -score).
        order = torch.argsort(cand_scores, descending=True, stable=True)
        order = order[torch.argsort(cls_idx[order], stable=True)]
        cls_sorted = cls_idx[order]
        first = torch.searchsorted(cls_sorted, cls_sorted, right=False)
        rank = torch.arange(len(order)) - first
        order = order[rank < config.nms_top_k]
        box_idx, cls_idx, cand_scores = box_idx[order], cls_idx[order], cand_scores[order]
    cand_boxes = boxes_t[box_idx]
    if config.class_agnostic:
        keep = nms(cand_boxes, cand_scores, config.nms_threshold)
        out_classes = cand_classes[box_idx][keep]
    else:
        keep = batched_nms(cand_boxes, cand_scores, cls_idx, config.nms_threshold)
        out_classes = cls_idx[keep]
    keep_classes = out_classes[: config.keep_top_k] if config.keep_top_k > 0 else out_classes
    keep = keep[: config.keep_top_k] if config.keep_top_k > 0 else keep
    return cand_boxes[keep].numpy(), cand_scores[keep].numpy(), keep_classes.numpy().astype(np.int64)


def to_original_pixels(boxes: np.ndarray, input_size: tuple[int, int], original_size: tuple[int, int]) -> np.ndarray:
    """Boxes in (height, width) ``input_size`` pixels -> (width, height) ``original_size`` pixels, clipped."""
    in_h, in_w = input_size
    width, height = original_size
    scale = np.array([width / in_w, height / in_h, width / in_w, height / in_h], dtype=np.float32)
    out = boxes.astype(np.float32) * scale
    np.clip(out[:, 0::2], 0, width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, height, out=out[:, 1::2])
    return out


def _short_float(value: Any) -> float:
    # float32's shortest decimal (343.8184, not 343.81842041015625), as PaddleX prints it
    return float(str(np.float32(value)))


def box_dicts(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, labels: Sequence[str] | None
) -> list[dict[str, Any]]:
    """PaddleX box dicts ``{cls_id, label, score, coordinate}``."""
    names = list(labels) if labels else []
    return [
        {
            "cls_id": int(cid),
            "label": names[cid] if cid < len(names) else str(int(cid)),
            "score": _short_float(score),
            "coordinate": [_short_float(c) for c in box],
        }
        for box, score, cid in zip(boxes.tolist(), scores.tolist(), class_ids.tolist())
    ]


@dataclass
class Detections:
    """One image's boxes (PaddleX box dicts) and the decoded image they were found on."""

    image: DecodedImage
    boxes: list[dict[str, Any]]


def check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ViewfinderError(f"threshold must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ViewfinderError(f"threshold must be between 0 and 1, got {value}")
    return float(value)


class DetectionPredictor(BasePredictor):
    """``predict(input, threshold=0.5)`` -> :class:`DetResult` per image (boxes with score > threshold).

    ``predict()`` also takes the :class:`NMSConfig` fields (``nms_threshold``, ``keep_top_k`` ...).
    Subclasses (adapters for other networks) override :meth:`decode_outputs`.
    """

    @classmethod
    def adapt_module(cls, spec: Any, module: Any) -> Any:
        """Called by ``create_model``: only detection models can serve this task."""
        if spec.task != "mainbody_detection":
            raise ConfigError(f"{spec.name} is a {spec.task} model, not a detector")
        return module

    # the final score filter, then the NMS settings (a model's spec sets its own values)
    postprocess_params = {"threshold": 0.5, **asdict(NMSConfig())}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.labels:
            self.labels = list(self.params.get("label_list") or [DEFAULT_LABEL])

    def _validate_params(self, params: dict[str, Any]) -> None:
        check_threshold(params["threshold"])
        config = NMSConfig.from_params(params)
        if not 0.0 <= config.nms_threshold <= 1.0:
            raise ViewfinderError(f"nms_threshold must be between 0 and 1, got {config.nms_threshold}")

    def decode_outputs(self, outputs: Any) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
        """Network outputs -> (boxes [B, N, 4] in input pixels, scores [B, N, C])."""
        scores = np.asarray(outputs["scores"])  # PicoDet: [B, C, N]
        return np.asarray(outputs["boxes"]), scores.transpose(0, 2, 1)

    def _boxes(self, outputs: Any, images: list[DecodedImage], params: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """Each image's box dicts: NMS, the score threshold, original-image pixels."""
        boxes, scores = self.decode_outputs(outputs)
        threshold = check_threshold(params["threshold"])
        config = NMSConfig.from_params(params)
        input_size = self.preprocess.config.input_size
        found: list[list[dict[str, Any]]] = []
        for index, image in enumerate(images):
            kept_boxes, kept_scores, kept_classes = multiclass_nms(boxes[index], scores[index], config)
            keep = kept_scores > threshold
            pixels = to_original_pixels(kept_boxes[keep], input_size, image.original_size)
            found.append(box_dicts(pixels, kept_scores[keep], kept_classes[keep], self.labels))
        return found

    def _postprocess(self, outputs: Any, images: list[DecodedImage], params: dict[str, Any]) -> list[BaseResult]:
        return [
            DetResult(
                {"input_path": image.input_path, "page_index": None, "input_img": image.rgb, "boxes": boxes},
                image_loader=full_image_loader(image),
            )
            for image, boxes in zip(images, self._boxes(outputs, images, params))
        ]

    def _detect_batch(self, images: list[DecodedImage], params: dict[str, Any]) -> list[Detections]:
        outputs = self.engine(self._collate(images))
        return [Detections(image, boxes) for image, boxes in zip(images, self._boxes(outputs, images, params))]

    def detect(self, input: Any, **params: Any) -> Iterator[Detections | ErrorResult]:
        """Like :meth:`predict` (same inputs, parameters, decoding ahead, per-item errors), but each
        image's boxes come with the decoded image, for a pipeline that crops them (PP-ShiTuV2)."""
        reject_unknown_params(f"{self.model_name}.detect()", params, self.postprocess_params)
        return self._predict_lazily(input, None, self.resolve_params(params), infer=self._detect_batch)

    def predict_images(self, images: Sequence[np.ndarray | DecodedImage], **params: Any) -> list[BaseResult]:
        """Detect on already-decoded RGB uint8 images (or :class:`DecodedImage` s); one result each."""
        reject_unknown_params(f"{self.model_name}.predict_images()", params, self.postprocess_params)
        merged = self.resolve_params(params)
        self._validate_params(merged)
        decoded = [
            image if isinstance(image, DecodedImage) else DecodedImage(image, (image.shape[1], image.shape[0]))
            for image in images
        ]
        results: list[BaseResult] = []
        for start in range(0, len(decoded), self.batch_size):
            results.extend(self._infer(decoded[start:start + self.batch_size], merged))
        return results
