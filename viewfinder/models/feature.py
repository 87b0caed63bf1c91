"""Image features (PaddleX module ``image_feature``): one L2-normalised vector per image.

Two kinds of models serve as feature extractors:

* dedicated feature models (task ``image_feature``, e.g. ``PP-ShiTuV2_rec``): their
  network output is the embedding;
* every classification model of the zoo, asked for with
  ``create_model(NAME, task="image_feature")`` (or :func:`create_feature_model`): the
  pooled pre-logits features (timm ``forward_head(forward_features(x), pre_logits=True)``,
  e.g. 1280-d for MobileNetV2_x1_0), with the model's own preprocessing.

Either way ``predict()`` yields :class:`FeatureResult` s and :meth:`FeaturePredictor.embed`
returns an ``[N, D]`` float32 array for already-decoded RGB images (crops, galleries).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError, ViewfinderError
from ..io import DecodedImage, decode_image, full_image_loader
from ..results import BaseResult, FeatureResult
from .predictor import BasePredictor

FEATURE_TASK = "image_feature"
#: tasks whose networks can be turned into feature extractors (pooled pre-logits)
CLASSIFIER_TASKS = ("image_classification", "image_multilabel_classification")


def _drawing_loader(image: DecodedImage) -> Callable[[], np.ndarray]:
    """What ``FeatureResult.img`` draws on: a local file is read again on demand, so a result
    keeps no pixels (gallery-sized runs of ``predict()`` would otherwise hold every image)."""
    path = image.input_path
    if path and not path.startswith(("http://", "https://")) and Path(path).is_file():
        return lambda: decode_image(path).rgb
    return full_image_loader(image)


def l2_normalize(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation (a zero vector stays zero)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, eps)


def _pixels(image: DecodedImage) -> np.ndarray | None:
    """A decoded image's RGB array, whether it holds an array or a Pillow image (decoded for a Pillow resize)."""
    if image.rgb is not None:
        return image.rgb
    return np.asarray(image.pil) if image.pil is not None else None


class PooledFeatures(nn.Module):
    """Runs a timm classifier up to its pooled pre-logits features.

    ``state_dict``/``load_state_dict`` are the wrapped classifier's own, so weight files
    and saved model dirs keep the classifier's key layout (and classifier head).
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        if not (hasattr(classifier, "forward_features") and hasattr(classifier, "forward_head")):
            raise ConfigError(f"{type(classifier).__name__} has no forward_features/forward_head; cannot pool features")
        self.net = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(  # type: ignore[override]
        self, state_dict: Any, strict: bool = True, assign: bool = False
    ) -> Any:
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


def feature_network(spec: Any, module: nn.Module) -> nn.Module:
    """The network that maps images to ``spec``'s embedding (before L2 normalisation).

    Classifiers give their pooled pre-logits features; feature models their output.
    Inference (``create_model(..., task="image_feature")``) and recognition training both use it.
    """
    if spec.task in CLASSIFIER_TASKS:
        return PooledFeatures(module)
    if spec.task != FEATURE_TASK:
        raise ConfigError(
            f"{spec.name} is a {spec.task} model; only feature and classification models give image features"
        )
    return module


class FeaturePredictor(BasePredictor):
    """``predict(input)`` -> :class:`FeatureResult` per image; ``embed(rgb_list)`` -> ``[N, D]`` array."""

    # The sha256 of the network's weights: an index records it, so vectors from other
    # weights of the same architecture (a fine-tuned model dir) are not mixed in.
    records_weights = True
    postprocess_params = {}  # a feature is the whole answer: predict() takes batch_size only

    @classmethod
    def adapt_module(cls, spec: Any, module: nn.Module) -> nn.Module:
        """Classifiers become pooled-feature networks; other non-feature models are refused."""
        return feature_network(spec, module)

    def __init__(self, spec: Any, engine: Any, preprocess: Any, labels: Any, **kwargs: Any) -> None:
        super().__init__(spec, engine, preprocess, None, **kwargs)
        # Classification defaults (topk, threshold) mean nothing here.
        self.params = {k: v for k, v in self.params.items() if k not in ("topk", "threshold")}
        self._feature_dim: int | None = None

    @property
    def feature_dim(self) -> int:
        """Length of the feature vectors (runs one tiny forward the first time for pooled classifiers)."""
        if self._feature_dim is None:
            height, width = self.preprocess.config.input_size
            probe = np.zeros((1, 3, height, width), dtype=np.float32)
            self._feature_dim = int(np.asarray(self.raw(probe)).shape[-1])
        return self._feature_dim

    def _to_features(self, outputs: Any, count: int) -> np.ndarray:
        if isinstance(outputs, dict):
            outputs = next(iter(outputs.values()))
        features = l2_normalize(np.asarray(outputs).reshape(count, -1))
        self._feature_dim = features.shape[1]
        return features

    def embed(self, images: Sequence[np.ndarray | DecodedImage], batch_size: int | None = None) -> np.ndarray:
        """L2-normalised features of RGB uint8 images (or decoded images), batched; ``[N, D]`` float32."""
        size = int(batch_size or self.batch_size)
        if size < 1:
            raise ViewfinderError(f"batch_size must be >= 1, got {batch_size}")
        rgb = [_pixels(image) if isinstance(image, DecodedImage) else image for image in images]
        for index, image in enumerate(rgb):
            is_rgb = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
            if not (is_rgb and image.dtype == np.uint8):
                raise ViewfinderError(f"embed: image {index} is not an RGB uint8 HxWx3 array")
            if image.shape[0] < 1 or image.shape[1] < 1:
                raise ViewfinderError(f"embed: image {index} is empty ({image.shape[1]}x{image.shape[0]})")
        if not rgb:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        chunks = [self._to_features(self.engine(self.preprocess(rgb[i:i + size])), len(rgb[i:i + size]))
                  for i in range(0, len(rgb), size)]
        return np.concatenate(chunks)

    def _postprocess(self, outputs: Any, images: list[DecodedImage], params: dict[str, Any]) -> list[BaseResult]:
        features = self._to_features(outputs, len(images))
        return [
            FeatureResult({"input_path": image.input_path, "page_index": None, "feature": feature},
                          image_loader=_drawing_loader(image))
            for image, feature in zip(images, features)
        ]
