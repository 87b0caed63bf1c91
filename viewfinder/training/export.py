"""Export a fine-tuned network: a model directory (safetensors + config.yaml) and ONNX.

The model directory is written by :func:`viewfinder.models.model_dir.write_model_dir`, so
``create_model(model_dir=...)`` and the pipelines' ``model_dir`` load it like any saved
model. ``config.yaml`` records the *trained* task: a recognition model fine-tuned from a
classifier says ``task: image_feature`` (its pooled features are the embedding; its
classifier holds the folded BNNeck + FC over the training identities).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..datasets.formats import CLS, ML
from ..errors import ExportError
from ..models.feature import feature_network
from ..models.loader import load_network
from ..models.model_dir import write_model_dir
from ..models.preprocess import PreprocessConfig, Preprocessor
from ..models.registry import ModelSpec

log = logging.getLogger(__name__)

ONNX_FILE = "inference.onnx"


@dataclass
class ModelDirSource:
    """The predictor metadata ``write_model_dir`` reads, for a network that is not in a predictor."""

    spec: ModelSpec
    preprocess: Preprocessor
    labels: list[str] | None
    num_classes: int
    params: dict[str, Any] = field(default_factory=dict)


def postprocess_defaults(dataset_type: str, num_classes: int) -> dict[str, Any]:
    if dataset_type == CLS:
        return {"topk": min(5, num_classes)}
    if dataset_type == ML:
        return {"threshold": 0.5}
    return {}


def save_model_dir(network: nn.Module, spec: ModelSpec, folder: str | Path, preprocess: PreprocessConfig,
                   labels: list[str] | None, num_classes: int, params: dict[str, Any]) -> Path:
    source = ModelDirSource(spec, Preprocessor(preprocess), labels, num_classes, params)
    return write_model_dir(source, folder, module=network)


def export_onnx_from_model_dir(model_dir: str | Path, destination: str | Path | None = None) -> dict[str, Any]:
    """Write ``<model_dir>/inference.onnx`` (validated against torch); returns the export record.

    The graph is what inference runs: logits for classifiers, the embedding (before L2
    normalisation) for ``task: image_feature`` dirs.
    """
    from ..engines.export import ExportSettings
    from ..engines.onnx_cache import export_validated

    base = load_network(model_dir=model_dir)
    module = feature_network(base.spec, base.module) if base.task == "image_feature" else base.module
    module = module.eval()
    target = Path(destination) if destination else Path(model_dir) / ONNX_FILE
    settings = ExportSettings(input_size=tuple(base.preprocess.input_size))
    _, record = export_validated(module, target, settings, torch.device("cpu"), None, base.spec.name)
    record["path"] = str(target)
    return record


def try_export_onnx(model_dir: str | Path) -> dict[str, Any]:
    """:func:`export_onnx_from_model_dir`, but a failure is reported instead of raised (training still succeeded)."""
    try:
        return export_onnx_from_model_dir(model_dir)
    except ExportError as exc:
        log.warning("ONNX export failed: %s", exc)
        return {"error": str(exc)}
