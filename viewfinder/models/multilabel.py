"""Multi-label classification: sigmoid scores, per-class thresholds, every class above them.

``threshold`` takes PaddleX's three forms (``MultiLabelThreshOutput``):

* a number: one threshold for every class (ints are accepted; PaddleX rejects them);
* a dict with ``"default"`` plus per-class overrides keyed by class id (int or digit string);
* a list with one threshold per class.

A class is kept when ``score > threshold`` (strict). Results list the kept classes by
descending score; the lists may be empty.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..io import DecodedImage, full_image_loader
from ..results import BaseResult, MLClassResult
from .predictor import BasePredictor

ThresholdSpec = float | int | Mapping[Any, Any] | Sequence[Any]


def _threshold_value(value: Any, where: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"threshold {where} must be a number between 0 and 1, got {value!r}")
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise ConfigError(f"threshold {where} must be between 0 and 1, got {value!r}")
    return number


def _class_id(key: Any, num_classes: int) -> int:
    if isinstance(key, (bool, np.bool_)):
        raise ConfigError(f"threshold dict keys must be class ids or 'default', got {key!r}")
    if isinstance(key, (int, np.integer)):
        index = int(key)
    elif isinstance(key, str) and key.strip().isdigit():
        index = int(key.strip())
    else:
        raise ConfigError(f"threshold dict keys must be class ids (int or digit string) or 'default', got {key!r}")
    if not 0 <= index < num_classes:
        raise ConfigError(f"threshold dict key {key!r} is not a class id of this model (0..{num_classes - 1})")
    return index


def parse_threshold(threshold: Any, num_classes: int) -> np.ndarray:
    """Any accepted ``threshold`` form -> a float32 array with one threshold per class."""
    if isinstance(threshold, Mapping):
        if "default" not in threshold:
            raise ConfigError("a threshold dict needs a 'default' entry, e.g. {'default': 0.5, 3: 0.7}")
        values = np.full(num_classes, _threshold_value(threshold["default"], "'default'"), dtype=np.float64)
        for key, value in threshold.items():
            if key != "default":
                values[_class_id(key, num_classes)] = _threshold_value(value, f"for class {key!r}")
        return values.astype(np.float32)
    if isinstance(threshold, (list, tuple, np.ndarray)):
        if len(threshold) != num_classes:
            raise ConfigError(f"a threshold list needs one value per class: {num_classes} values, got {len(threshold)}")
        return np.array([_threshold_value(v, f"[{i}]") for i, v in enumerate(threshold)], dtype=np.float32)
    return np.full(num_classes, _threshold_value(threshold, "value"), dtype=np.float32)


def threshold_from_text(text: str) -> ThresholdSpec:
    """A command-line ``--threshold``: a number, or JSON for the dict / list forms."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(
            f"--threshold must be a number or JSON such as '{{\"default\": 0.5, \"3\": 0.7}}', got {text!r}"
        ) from None
    if not isinstance(value, (dict, list)):
        raise ConfigError(f"--threshold must be a number, a JSON object or a JSON list, got {text!r}")
    return value


def sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of -|x| never overflows; the two branches are the same function.
    exp = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + exp), exp / (1.0 + exp)).astype(np.float32)


def select(scores: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class ids with ``score > threshold``, best first (ties: lower id first), and their scores."""
    ids = np.flatnonzero(scores > thresholds)
    order = np.argsort(-scores[ids], kind="stable")
    return ids[order].astype(np.int32), scores[ids[order]]


class MultiLabelPredictor(BasePredictor):
    """``predict(input, threshold=0.5)`` -> :class:`MLClassResult` per image.

    ``activation`` is ``"sigmoid"`` for networks that output logits (the zoo), ``"none"``
    for ones that already output probabilities (e.g. a bring-your-own ONNX heat-map).
    """

    task = "image_multilabel_classification"
    postprocess_params = {"threshold": 0.5}

    def __init__(self, *args: Any, activation: str = "sigmoid", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.activation = activation

    @property
    def class_count(self) -> int:
        """Outputs per image (a model_dir may hold another count than the spec)."""
        return self.num_classes

    def _validate_params(self, params: dict[str, Any]) -> None:
        parse_threshold(params["threshold"], self.class_count)

    def _postprocess(self, outputs: Any, images: list[DecodedImage], params: dict[str, Any]) -> list[BaseResult]:
        raw = outputs if isinstance(outputs, np.ndarray) else next(iter(outputs.values()))
        raw = np.asarray(raw, dtype=np.float32).reshape(len(images), -1)
        if raw.shape[1] != self.class_count:
            raise ConfigError(f"{self.model_name} produced {raw.shape[1]} scores per image, "
                              f"expected {self.class_count} (one per class)")
        scores = sigmoid(raw) if self.activation == "sigmoid" else raw
        thresholds = parse_threshold(params["threshold"], self.class_count)
        results: list[BaseResult] = []
        for image, row in zip(images, scores):
            ids, kept = select(row, thresholds)
            names = [self.labels[i] if self.labels and i < len(self.labels) else str(i) for i in ids]
            results.append(
                MLClassResult(
                    {
                        "input_path": image.input_path,
                        "page_index": None,
                        "input_img": image.rgb,
                        "class_ids": ids,
                        "scores": np.round(kept, 5).astype(np.float32),
                        "label_names": names,
                    },
                    image_loader=full_image_loader(image),
                )
            )
        return results
