"""The one network loader: a zoo name or model dir -> a network with its weights and settings.

Inference (:func:`~viewfinder.models.factory.create_model`) and fine-tuning
(:mod:`viewfinder.training`) both start here, so a model loads the same way for both:
build from the spec, load weights (an explicit file, then the model dir, then the spec's
default sources; keys converted by the spec's converters), and take preprocessing, labels
and inference defaults from the model dir when it has them, else from the spec. A model
dir is ours (``config.yaml`` + ``model.safetensors``) or a PaddleX model folder
(``inference.yml`` + program + ``inference.pdiparams``, see :mod:`.paddlex_dir`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from ..errors import ConfigError, ViewfinderError, WeightsError
from .labels import load_labels
from .model_dir import read_model_dir
from .paddlex_dir import detector_nms, exported_state_dict, is_paddlex_dir, load_exported_weights, read_paddlex_dir
from .preprocess import PreprocessConfig
from .registry import ModelSpec, get_spec
from .weights import load_requested_weights, load_weights_file, resolve_default_weights

log = logging.getLogger(__name__)


@dataclass
class LoadedNetwork:
    """A zoo network with its weights loaded, and what running it needs."""

    spec: ModelSpec
    module: nn.Module
    num_classes: int
    preprocess: PreprocessConfig
    labels: list[str] | None
    #: the task the weights serve: a model dir's recorded task (a classifier fine-tuned for
    #: recognition keeps its zoo name but not its task), else the spec's
    task: str
    #: inference defaults saved in a model dir (e.g. ``topk``); empty for zoo weights
    postprocess: dict[str, Any] = field(default_factory=dict)
    #: no weights were loaded (``pretrained=False`` without a file or model dir)
    random_weights: bool = False


def build_network(spec: ModelSpec, num_classes: int | None = None) -> nn.Module:
    """``spec``'s network, randomly initialised, with ``num_classes`` outputs (default: the spec's)."""
    count = spec.num_classes if num_classes is None else int(num_classes)
    try:
        return spec.builder(num_classes=count, **spec.build_kwargs)
    except ViewfinderError:
        raise
    except Exception as exc:  # a builder failing on a valid class count is our bug; still say which model
        raise ViewfinderError(f"building {spec.name} with {count} classes failed: {exc}") from exc


def load_network(
    model_name: str | None = None,
    model_dir: str | Path | None = None,
    weights: str | Path | None = None,
    pretrained: bool = True,
) -> LoadedNetwork:
    """Build ``model_name`` (a PaddleX model name) or the network saved in ``model_dir``, weights loaded.

    Weights: ``weights`` (a local .safetensors/.pth/.pdparams file, or a source name:
    ``"paddlex"``, ``"timm"``, ``"torchvision"``) wins, then ``model_dir``, then the model's
    default sources (cache, then download); ``pretrained=False`` leaves the network
    randomly initialised. Preprocessing follows the weights' layout where the model knows
    another recipe for it (``ModelSpec.preprocess_by_format``).
    """
    if model_name is None and model_dir is None:
        raise ConfigError("give a model_name or a model_dir")
    if model_dir is not None and is_paddlex_dir(model_dir):
        return load_paddlex_dir(model_name, model_dir, weights)
    saved = read_model_dir(model_dir) if model_dir is not None else None
    if saved is not None and model_name is not None and model_name != saved["model_name"]:
        log.info("model_dir %s holds %s; using it for %s", model_dir, saved["model_name"], model_name)
    spec = get_spec(saved["model_name"] if saved else str(model_name))
    num_classes = int(saved.get("num_classes", spec.num_classes)) if saved else spec.num_classes
    module = build_network(spec, num_classes)
    layout: str | None = None
    if saved and saved.get("reparameterized"):
        reparameterize(module, spec)  # saved from a PaddleX folder's fused weights
    if weights is not None:
        layout = load_requested_weights(spec, module, weights)
    elif saved is not None:
        layout = load_weights_file(module, Path(saved["weights_path"]), spec)
    elif pretrained:
        layout = resolve_default_weights(spec, module)
    saved = saved or {}
    if saved.get("labels"):
        labels: list[str] | None = list(saved["labels"])
    else:
        labels = list(load_labels(spec.labels)) if spec.labels else None
    return LoadedNetwork(
        spec=spec,
        module=module,
        num_classes=num_classes,
        preprocess=(PreprocessConfig.from_dict(saved["preprocess"]) if saved.get("preprocess")
                    else spec.preprocess_for(layout)),
        labels=labels,
        task=str(saved.get("task") or spec.task),
        postprocess=dict(saved.get("postprocess") or {}),
        random_weights=weights is None and model_dir is None and not pretrained,
    )


def reparameterize(module: nn.Module, spec: ModelSpec) -> None:
    """Fold ``module``'s re-parameterisable blocks, as PaddleX's export does (PP-LCNetV2: multi-branch depthwise)."""
    fold = getattr(module, "reparameterize", None)
    if fold is None or "pdparams_reparameterized" not in spec.converters:
        raise WeightsError(
            f"{spec.name}: PaddleX exports it re-parameterised (branches fused into one conv) and viewfinder has no "
            "re-parameterised form of this network; load its training checkpoint (best_model.pdparams) instead"
        )
    fold()


def load_paddlex_dir(
    model_name: str | None, model_dir: str | Path, weights: str | Path | None = None
) -> LoadedNetwork:
    """A PaddleX model folder: the network ``inference.yml`` names, with the folder's weights and settings.

    Weights: ``weights`` if given, else a training run's ``best_model.pdparams`` beside the
    folder, else the exported ``inference.pdiparams`` (see :mod:`.paddlex_dir`).
    """
    found = read_paddlex_dir(model_dir, model_name)
    if model_name is not None and model_name != found.model_name:
        log.info("model_dir %s holds %s; using it for %s", model_dir, found.model_name, model_name)
    spec = get_spec(found.model_name)
    exported = exported_state_dict(found) if weights is None and found.checkpoint is None else None
    if found.labels and spec.task != "image_feature":
        num_classes = len(found.labels)
    elif exported is not None and exported.num_classes:
        num_classes = exported.num_classes
    else:
        num_classes = spec.num_classes
    module = build_network(spec, num_classes)
    if exported is None:
        load_weights_file(module, Path(weights if weights is not None else str(found.checkpoint)), spec)
    else:
        if exported.reparameterized:
            reparameterize(module, spec)
        load_exported_weights(module, spec, found, exported)
    postprocess = dict(found.postprocess)
    if spec.task == "mainbody_detection":
        postprocess.update(detector_nms(found))
    labels = found.labels or (list(load_labels(spec.labels)) if spec.labels else None)
    return LoadedNetwork(
        spec=spec,
        module=module,
        num_classes=num_classes,
        preprocess=found.preprocess or spec.preprocess,
        labels=labels,
        task=spec.task,
        postprocess=postprocess,
    )
