"""The model registry: one PaddleX model name -> everything needed to build and run it.

Like timm's registry, each entry is data (a :class:`ModelSpec`), not a class: the
builder makes the torch module, the preprocessing config feeds it, the labels name its
outputs, and the weight sources say where pretrained weights come from.

This module is a leaf: it imports no model family, factory or predictor. The families in
:mod:`viewfinder.models.zoo` call :func:`register`, and importing :mod:`viewfinder.models`
imports them all, so the registry is full whenever anything of the package is in use.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelNotFoundError
from .preprocess import PreprocessConfig

TASKS = (
    "image_classification",
    "image_multilabel_classification",
    "image_feature",
    "mainbody_detection",
)


#: weight-file layout -> the name a user picks that source by (``create_model(name, weights="timm")``)
SOURCE_NAMES: dict[str, str] = {"pdparams": "paddlex", "timm": "timm", "torchvision": "torchvision"}


@dataclass(frozen=True)
class WeightSource:
    """One place pretrained weights can come from.

    kind ``url``: downloaded into the weights cache as ``filename`` and checked against
    ``sha256`` (full digest or a prefix of at least 8 hex digits; ``None``: not known, e.g.
    PaddleX's files, which we could not download to hash, so the file is not checked).
    kind ``timm_hub``: timm's pretrained tag ``ref`` (needs network on first use; never
    used in tests). ``format`` names the key layout so the right converter runs
    (``native``, ``torchvision``, ``timm``, ``pdparams``); :attr:`name` is the name users
    select the source by.
    """

    kind: str
    format: str
    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    ref: str | None = None

    @property
    def name(self) -> str:
        """``paddlex`` (PaddleX's .pdparams), ``timm`` or ``torchvision``: ``weights=`` selects sources by it."""
        return SOURCE_NAMES.get(self.format, self.format)

    def describe(self) -> str:
        if self.kind == "url":
            return f"{self.filename} ({self.url})"
        return f"timm hub weights {self.ref!r}"


@dataclass(frozen=True)
class ModelSpec:
    """Everything the factory needs to build one named model."""

    name: str
    task: str
    builder: Callable[..., Any]
    preprocess: PreprocessConfig
    num_classes: int
    labels: str | None = None
    weight_sources: tuple[WeightSource, ...] = ()
    #: parameters of the built network (recorded from a build; the zoo test re-checks it)
    param_count: int | None = None
    #: the timm architecture behind the name, for documentation and ONNX cache keys
    arch: str = ""
    #: build kwargs recorded in saved model dirs so they rebuild the same network
    build_kwargs: dict[str, Any] = field(default_factory=dict)
    #: "small" models are built fully in the zoo test, others only on the meta device
    large: bool = False
    #: this model's own inference defaults where they differ from its task's (the predictor's
    #: ``postprocess_params``), e.g. PP-ShiTuV2_det's NMS settings
    defaults: dict[str, Any] = field(default_factory=dict)
    #: converters from a named weight-file layout to this module's state_dict keys
    converters: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)
    #: the preprocessing of weights in another layout, where their recipe differs from
    #: ``preprocess`` (PaddleX's), e.g. torchvision's MobileNetV2 file (Pillow resize)
    preprocess_by_format: dict[str, PreprocessConfig] = field(default_factory=dict)

    def preprocess_for(self, layout: str | None) -> PreprocessConfig:
        """The preprocessing for weights loaded from ``layout`` (a converter's format name)."""
        return self.preprocess_by_format.get(layout or "", self.preprocess)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.task not in TASKS:
        raise ValueError(f"{spec.name}: unknown task {spec.task!r}")
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `viewfinder models` for the list"
        raise ModelNotFoundError(f"unknown model name {name!r}{hint}") from None


def list_models(task: str | None = None) -> list[str]:
    return sorted(name for name, spec in _REGISTRY.items() if task is None or spec.task == task)
