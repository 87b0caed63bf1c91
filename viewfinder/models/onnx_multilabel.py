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
batching, bad-input handling and results behave exactly as for the zoo models.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError, WeightsNotFoundError
from .labels import load_labels
from .multilabel import MultiLabelPredictor
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, Preprocessor
from .registry import ModelSpec

MODEL_NAME = "ONNXMultiLabel"
_TOP_KEYS = {"onnx", "name", "labels", "input", "output"}
_INPUT_KEYS = {"name", "size", "resize_short", "crop", "layout", "color", "scale", "mean", "std", "interpolation",
               "resize_backend"}
_OUTPUT_KEYS = {"name", "class_axis", "reduce", "activation"}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
           "tensor(double)": np.float64}


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


def read_spec(spec: dict[str, Any] | str | Path) -> tuple[dict[str, Any], Path]:
    """A spec dict or YAML file -> (the dict, the folder relative paths are resolved against)."""
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"ONNX model spec {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from None
        base = path.resolve().parent
    else:
        data, base = spec, Path.cwd()
    if not isinstance(data, dict):
        raise ConfigError(f"an ONNX model spec must be a mapping, got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"ONNX spec: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    if not data.get("onnx"):
        raise ConfigError("ONNX spec needs 'onnx': the path of the .onnx file")
    return data, base


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


def _fixed(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxMultiLabelEngine:
    """Runs the ONNX model on a preprocessed NCHW batch and returns ``[N, classes]`` scores."""

    name = "onnxruntime"

    def __init__(self, path: Path, input_name: str | None, layout: str | None, bgr: bool, output: OutputSpec,
                 cpu_threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if cpu_threads:
            options.intra_op_num_threads = int(cpu_threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise ConfigError(f"{path}: onnxruntime cannot load this model ({type(exc).__name__}: {exc})") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if input_name is not None and input_name not in inputs:
            raise ConfigError(f"{path} has no input {input_name!r}; inputs: {', '.join(inputs)}")
        if output.name is not None and output.name not in outputs:
            raise ConfigError(f"{path} has no output {output.name!r}; outputs: {', '.join(outputs)}")
        node = inputs[input_name] if input_name else self.session.get_inputs()[0]
        if len(node.shape) != 4:
            raise ConfigError(f"{path}: input {node.name!r} has shape {node.shape}; an image input is 4-D")
        self.input_name = node.name
        self.input_shape = list(node.shape)
        self.input_dtype = _DTYPES.get(node.type)
        if self.input_dtype is None:
            raise ConfigError(f"{path}: input {node.name!r} has unsupported type {node.type}")
        if layout is None:  # read it from the shape when the channel axis is unambiguous
            layout = "NHWC" if node.shape[3] in (1, 3) and node.shape[1] not in (1, 3) else "NCHW"
        self.layout = layout
        self.bgr = bgr
        self.output = output
        self.output_name = output.name or outputs[0]
        self.batch_limit = _fixed(node.shape[0])  # a fixed batch dimension: run in chunks of it

    def fixed_size(self) -> tuple[int, int] | None:
        """(width, height) when the model's input size is fixed."""
        h_axis, w_axis = (1, 2) if self.layout == "NHWC" else (2, 3)
        height, width = _fixed(self.input_shape[h_axis]), _fixed(self.input_shape[w_axis])
        return (width, height) if height and width else None

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

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if self.bgr:
            batch = batch[:, ::-1]
        if self.layout == "NHWC":
            batch = batch.transpose(0, 2, 3, 1)
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        step = self.batch_limit or len(batch)
        chunks = [self.session.run([self.output_name], {self.input_name: batch[i:i + step]})[0]
                  for i in range(0, len(batch), step)]
        return self._reduce(np.concatenate(chunks, axis=0))


def _not_buildable(**_: Any) -> Any:
    raise ConfigError(f"{MODEL_NAME} models are ONNX files; build them with create_onnx_multilabel(spec)")


def create_onnx_multilabel(spec: dict[str, Any] | str | Path, batch_size: int = 1, cpu_threads: int | None = None,
                           **params: Any) -> MultiLabelPredictor:
    """A multi-label predictor over a user's ONNX model described by ``spec`` (see the module docstring)."""
    data, base = read_spec(spec)
    onnx_path = Path(str(data["onnx"])).expanduser()
    if not onnx_path.is_absolute():
        onnx_path = base / onnx_path
    if not onnx_path.is_file():
        raise WeightsNotFoundError(f"ONNX model file {onnx_path} does not exist")
    labels = _labels(data.get("labels"), base)
    feed = _section(data, "input", _INPUT_KEYS)
    read = _section(data, "output", _OUTPUT_KEYS)

    layout = _choice(feed, "layout", ("NCHW", "NHWC"), "NCHW") if feed.get("layout") else None
    bgr = _choice(feed, "color", ("RGB", "BGR"), "RGB") == "BGR"
    class_axis = read.get("class_axis", -1)
    if isinstance(class_axis, bool) or not isinstance(class_axis, int):
        raise ConfigError(f"ONNX spec output.class_axis must be an integer, got {class_axis!r}")
    output = OutputSpec(
        name=read.get("name"),
        class_axis=class_axis,
        reduce=_choice(read, "reduce", ("max", "mean", "none"), "max"),
        activation=_choice(read, "activation", ("sigmoid", "none"), "none"),
    )
    engine = OnnxMultiLabelEngine(onnx_path, feed.get("name"), layout, bgr, output, cpu_threads)

    mean = tuple(float(v) for v in feed.get("mean", IMAGENET_MEAN if not bgr else IMAGENET_MEAN[::-1]))
    std = tuple(float(v) for v in feed.get("std", IMAGENET_STD if not bgr else IMAGENET_STD[::-1]))
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError("ONNX spec input.mean and input.std need 3 values each")
    if bgr:  # listed in the model's (BGR) order; the preprocessor normalises RGB, the engine then flips
        mean, std = mean[::-1], std[::-1]
    resize = feed.get("size")
    if resize is None and feed.get("resize_short") is None:
        resize = engine.fixed_size()
        if resize is None:
            raise ConfigError("the ONNX model's input size is not fixed: give input.size [width, height] "
                              "or input.resize_short")
    try:
        config = PreprocessConfig(
            resize_short=None if resize is not None else int(feed["resize_short"]),
            crop=None if resize is not None else (int(feed["crop"]) if feed.get("crop") else None),
            resize=tuple(int(v) for v in resize) if resize is not None else None,
            mean=mean,
            std=std,
            scale=float(feed.get("scale", 1.0 / 255.0)),
            interpolation=str(feed.get("interpolation", "bilinear")),
            backend=str(feed.get("resize_backend", "pillow")),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"ONNX spec input: {exc}") from None
    expected = engine.fixed_size()
    if expected is not None and config.input_size[::-1] != expected:
        raise ConfigError(f"{onnx_path.name} takes {expected[0]}x{expected[1]} images; the spec resizes to "
                          f"{config.input_size[1]}x{config.input_size[0]}")

    model_spec = ModelSpec(
        name=str(data.get("name") or MODEL_NAME),
        task="image_multilabel_classification",
        builder=_not_buildable,
        preprocess=config,
        num_classes=len(labels),
        arch=f"onnx:{onnx_path.name}",
        defaults={"threshold": 0.5},
    )
    predictor = MultiLabelPredictor(model_spec, engine, Preprocessor(config), labels, batch_size=batch_size,
                                    **params)
    predictor.activation = output.activation
    predictor.num_classes = len(labels)
    return predictor
