"""``image_multilabel_classification`` (3.0-beta1 name: ``multi_label_image_classification``).

One multi-label model over any input: a zoo model by PaddleX name (``model_name`` /
``model_dir`` / ``weights``) or, with ``model_name: ONNXMultiLabel`` and a ``spec``, the
user's own ONNX model (:mod:`viewfinder.models.onnx_multilabel`).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import ConfigError
from ..io import DecodedImage
from ..models import list_models
from ..models.multilabel import MultiLabelPredictor, parse_threshold
from ..models.onnx_multilabel import MODEL_NAME as ONNX_MODEL_NAME
from ..models.onnx_multilabel import create_onnx_multilabel
from ..models.predictor import BasePredictor
from ..results import BaseResult
from .base import BasePipeline
from .config import submodule

SUBMODULE = "ImageMultiLabelClassification"


class MultiLabelClassificationPipeline(BasePipeline):
    name = "image_multilabel_classification"
    predict_params = ("batch_size", "threshold")

    def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        entry = submodule(config, SUBMODULE)
        self.threshold = entry.get("threshold")
        self.model = self._create(entry)
        if self.threshold is not None:  # a bad YAML threshold fails at creation, not on the first image
            parse_threshold(self.threshold, self.model.class_count)

    def _create(self, entry: dict[str, Any]) -> BasePredictor:
        if entry.get("model_name") != ONNX_MODEL_NAME:
            if entry.get("spec") is not None:
                raise ConfigError(f"SubModules.{SUBMODULE}.spec is only read with model_name: {ONNX_MODEL_NAME}")
            model = self._create_submodel(entry)
            if not isinstance(model, MultiLabelPredictor):
                raise ConfigError(f"{model.model_name} is not a multi-label model (task {model.spec.task}); "
                                  f"use one of {', '.join(list_models(MultiLabelPredictor.task))} "
                                  f"or {ONNX_MODEL_NAME}")
            return model
        if entry.get("spec") is None:
            raise ConfigError(f"SubModules.{SUBMODULE}: model_name {ONNX_MODEL_NAME} needs a 'spec' "
                              "(a mapping or the path of a spec YAML file)")
        ignored = sorted(k for k in ("model_dir", "weights", "engine") if entry.get(k) is not None)
        if ignored:
            raise ConfigError(f"SubModules.{SUBMODULE}: {', '.join(ignored)} cannot be combined with "
                              f"model_name {ONNX_MODEL_NAME} (the spec names the ONNX file)")
        return create_onnx_multilabel(
            entry["spec"],
            batch_size=entry.get("batch_size") or 1,
            cpu_threads=entry.get("cpu_threads") or self.options.get("cpu_threads"),
            device=self.device,
        )

    def decode_input(self, source: Any) -> DecodedImage:
        """One input decoded as the model's ``predict()`` decodes it (see ``BasePipeline.decode_input``)."""
        return self.model.decode_input(source)

    def predict(self, input: Any, **params: Any) -> Iterator[BaseResult]:
        """Lazily yield one :class:`~viewfinder.results.MLClassResult` per image.

        ``threshold`` (a number, ``{"default": t, class_id: t}`` or a per-class list)
        overrides the YAML value, which overrides the model's default; ``batch_size`` likewise.
        """
        self.check_predict_params(params)
        threshold = params.get("threshold")
        chosen = threshold if threshold is not None else self.threshold
        return self.model.predict(input, batch_size=params.get("batch_size"), threshold=chosen)
