"""Bring your own ONNX multi-label model: an ``.onnx`` file, its labels, how to feed it, how to read it.

A spec (a dict, or a YAML file holding one; a relative ``onnx`` path in a file is
resolved against the file's folder)::

    onnx: centernet.onnx             # required
    name: CenterNet-COCO             # optional, shown as the model name
    labels: coco80                   # a shipped list (coco80, imagenet1k), a text file (one per line) or a list
    input:                           # every key optional
      name: null                     # default: the model's first input
      size: [512, 512]               # [width, height], resized without keeping the aspect ratio;
                                     # default: the model's fixed input size
      # resize_short: 256            # ...or keep the aspect ratio: short side, then
      # crop: 224                    #    an optional centre crop
      layout: NHWC                   # NCHW or NHWC; default: read from the model's input shape
      color: RGB                     # RGB or BGR
      scale: 1.0                     # pixel * scale, then (x - mean) / std; default 1/255
      mean: [0, 0, 0]                # in the model's channel order; default ImageNet's (for RGB)
      std: [1, 1, 1]
      interpolation: bilinear
      resize_backend: pillow         # or cv2 (OpenCV, no antialiasing)
    output:
      name: tower_0/keypoints:0      # default: the model's first output
      class_axis: -1                 # the axis holding the classes (default -1)
      reduce: max                    # max or mean over every other non-batch axis (a heat-map
                                     # or per-anchor scores); none for an [N, classes] output
      activation: none               # sigmoid (the output is logits) or none (already scores)

The result is a :class:`~viewfinder.models.multilabel.MultiLabelPredictor`, so thresholds,
batching, bad-input handling and results behave exactly as for the zoo models. Reading the
spec and feeding the input are shared with the ONNX detector (:mod:`.onnx_external`); this
module reads the scores. It runs on CUDA where onnxruntime-gpu is installed, else on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, WeightsNotFoundError
from .labels import load_labels
from .multilabel import MultiLabelPredictor
from .onnx_external import ExternalOnnxEngine, InputFeed, RawSpec, preprocess_config, read_spec
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessor
from .registry import ModelSpec

MODEL_NAME = "ONNXMultiLabel"
SPEC_NAME = "ONNX spec"  # how errors name the spec
SPEC_KEYS = {"name", "labels", "input", "output"}  # besides the required "onnx"
_INPUT_KEYS = {"name", "size", "resize_short", "crop", "layout", "color", "scale", "mean", "std", "interpolation",
               "resize_backend"}
_OUTPUT_KEYS = {"name", "class_axis", "reduce", "activation"}


@dataclass(frozen=True)
class OutputSpec:
    name: str | None = None
    class_axis: int = -1
    reduce: str = "max"
    activation: str = "none"


def _choice(section: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = section.get(key, default)
    text = str(value).strip()
    matched = {a.lower(): a for a in allowed}.get(text.lower())
    if matched is None:
        raise ConfigError(f"ONNX spec {key!r} must be one of {', '.join(allowed)}, got {value!r}")
    return matched


def _section(spec: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    section = spec.get(key) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"ONNX spec '{key}' must be a mapping, got {type(section).__name__}")
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(f"ONNX spec '{key}': unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return section


def _labels(value: Any, base: Path) -> list[str]:
    if value is None:
        raise ConfigError("ONNX spec needs 'labels': a shipped list name (coco80), a text file or a list")
    if isinstance(value, (list, tuple)):
        labels = [str(v) for v in value]
    elif isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base / value
        if path.is_file():
            labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            try:
                labels = list(load_labels(value))
            except (FileNotFoundError, OSError):
                raise ConfigError(f"ONNX spec labels {value!r} is neither a label file nor a shipped list "
                                  "(coco80, imagenet1k)") from None
    else:
        raise ConfigError(f"ONNX spec labels must be a name, a file or a list, got {type(value).__name__}")
    if not labels:
        raise ConfigError("ONNX spec labels are empty")
    return labels


def _input_feed(section: dict[str, Any]) -> InputFeed:
    """The ``input:`` section; mean/std default to ImageNet's, listed in the model's channel order."""
    layout = _choice(section, "layout", ("NCHW", "NHWC"), "NCHW") if section.get("layout") else None
    color = _choice(section, "color", ("RGB", "BGR"), "RGB")
    order = slice(None, None, -1) if color == "BGR" else slice(None)
    size = section.get("size")
    try:
        return InputFeed(
            name=section.get("name"),
            layout=layout,
            channel_order=color,
            size=tuple(int(v) for v in size) if size is not None else None,  # type: ignore[arg-type]
            resize_short=int(section["resize_short"]) if section.get("resize_short") is not None else None,
            crop=int(section["crop"]) if section.get("crop") else None,
            mean=tuple(float(v) for v in section.get("mean", IMAGENET_MEAN[order])),  # type: ignore[arg-type]
            std=tuple(float(v) for v in section.get("std", IMAGENET_STD[order])),  # type: ignore[arg-type]
            scale=float(section.get("scale", 1.0 / 255.0)),
            interpolation=str(section.get("interpolation", "bilinear")),
            resize_backend=str(section.get("resize_backend", "pillow")),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"ONNX spec input: {exc}") from None


class OnnxMultiLabelEngine(ExternalOnnxEngine):
    """Runs the ONNX model on a preprocessed NCHW batch and returns ``[N, classes]`` scores."""

    def __init__(self, path: Path, feed: InputFeed, output: OutputSpec, device: str | torch.device | None = None,
                 cpu_threads: int | None = None) -> None:
        super().__init__(path, feed, device, cpu_threads)
        self.output = output
        self.output_name = output.name or next(iter(self.output_shapes))
        self.run_only([self.output_name])

    def _reduce(self, raw: np.ndarray) -> np.ndarray:
        spec = self.output
        if raw.ndim < 2:
            raise ConfigError(f"output {self.output_name!r} has shape {raw.shape}; expected [batch, ..., classes]")
        axis = spec.class_axis % raw.ndim
        if axis == 0:
            raise ConfigError("output class_axis must not be the batch axis (0)")
        scores = np.moveaxis(raw, axis, -1).reshape(raw.shape[0], -1, raw.shape[axis])
        if scores.shape[1] > 1 and spec.reduce == "none":
            raise ConfigError(f"output {self.output_name!r} has shape {raw.shape}: set output.reduce to max or mean "
                              "to turn it into one score per class")
        return (scores.max(axis=1) if spec.reduce != "mean" else scores.mean(axis=1)).astype(np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:  # type: ignore[override]
        return self._reduce(super().__call__(batch)[self.output_name])


def _not_buildable(**_: Any) -> Any:
    raise ConfigError(f"{MODEL_NAME} models are ONNX files; build them with create_onnx_multilabel(spec)")


def create_onnx_multilabel(spec: RawSpec | dict[str, Any] | str | Path, batch_size: int = 1,
                           cpu_threads: int | None = None, device: str | torch.device | None = None,
                           **params: Any) -> MultiLabelPredictor:
    """A multi-label predictor over a user's ONNX model described by ``spec`` (see the module docstring).

    It runs on ``device`` where ONNX Runtime can (CUDA needs onnxruntime-gpu), else on the CPU.
    """
    source = read_spec(spec, SPEC_NAME, known=SPEC_KEYS, names_onnx=True)
    data, onnx_path = source.values, source.onnx
    assert onnx_path is not None  # names_onnx=True
    if not onnx_path.is_file():
        raise WeightsNotFoundError(f"ONNX model file {onnx_path} does not exist")
    labels = _labels(data.get("labels"), source.folder)
    feed = _input_feed(_section(data, "input", _INPUT_KEYS))
    read = _section(data, "output", _OUTPUT_KEYS)
    class_axis = read.get("class_axis", -1)
    if isinstance(class_axis, bool) or not isinstance(class_axis, int):
        raise ConfigError(f"ONNX spec output.class_axis must be an integer, got {class_axis!r}")
    output = OutputSpec(
        name=read.get("name"),
        class_axis=class_axis,
        reduce=_choice(read, "reduce", ("max", "mean", "none"), "max"),
        activation=_choice(read, "activation", ("sigmoid", "none"), "none"),
    )
    engine = OnnxMultiLabelEngine(onnx_path, feed, output, device, cpu_threads)
    config = preprocess_config(feed, engine, "input.size [width, height] or input.resize_short")

    model_spec = ModelSpec(
        name=str(data.get("name") or MODEL_NAME),
        task="image_multilabel_classification",
        builder=_not_buildable,
        preprocess=config,
        num_classes=len(labels),
        arch=f"onnx:{onnx_path.name}",
    )
    return MultiLabelPredictor(model_spec, engine, Preprocessor(config), labels, batch_size=batch_size,
                               num_classes=len(labels), device=engine.device, activation=output.activation,
                               **params)
