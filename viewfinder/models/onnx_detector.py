"""Plug any ONNX object detector in as a (mainbody) detector.

A detector is an ONNX file plus a small spec (a dict or YAML file) saying how to feed it
and how to read it::

    # centernet.yaml: CenterNet (TF.js human), detections already decoded
    layout: NHWC            # input tensor layout: NCHW | NHWC
    size: [512, 512]        # network input (width, height); default: the model's static size
    channel_order: RGB      # RGB | BGR
    # interpolation: bilinear, resize_backend: pillow (antialiased) | cv2 (OpenCV, none)
    # mean / std in 0-255 pixel units, in the model's channel order; omitted = raw 0-255 pixels
    decoding: boxes_scores_classes
    output: tower_0/detections   # rows [x1, y1, x2, y2, score, class] in input pixels
    labels: coco80

    # nanodet.yaml: NanoDet-m (GFL head), per-stride class scores + box distributions
    channel_order: BGR
    mean: [103.53, 116.28, 123.675]
    std: [57.375, 57.12, 58.395]
    decoding: gfl
    strides: [8, 16, 32]
    reg_max: 10             # bins 0..10 per side (l, t, r, b), side-major
    # outputs: {8: [scores_name, dist_name], ...}   optional; matched by shape when omitted

``create_onnx_detector(model, spec)`` returns a :class:`OnnxDetector`, a
:class:`~viewfinder.models.detection.DetectionPredictor`: same ``predict(input,
threshold=...)``, same NMS (``class_agnostic: true`` by default, the mainbody use), same
:class:`~viewfinder.models.detection.DetResult`. Reading the spec and feeding the input are
shared with the ONNX multi-label model (:mod:`.onnx_external`); this module decodes detections.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, WeightsNotFoundError
from .detection import DetectionPredictor
from .labels import load_labels
from .onnx_external import ExternalOnnxEngine, InputFeed, RawSpec, preprocess_config, read_spec
from .precision import apply_precision, check_int8_request, normalize_precision
from .preprocess import Preprocessor
from .registry import ModelSpec

DECODINGS = ("boxes_scores_classes", "gfl")
BSC_COLUMNS = ("x1", "y1", "x2", "y2", "score", "class")
SPEC_NAME = "ONNX detector spec"  # how errors name the spec


@dataclass(frozen=True)
class OnnxDetectorSpec:
    """How to feed an ONNX detector and decode its outputs (see the module docstring)."""

    decoding: str
    input_name: str | None = None
    layout: str = "NCHW"
    size: tuple[int, int] | None = None  # (width, height)
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # 0-255 units, model channel order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "bilinear"
    resize_backend: str = "pillow"  # or "cv2": OpenCV without antialiasing, as PaddleX/OpenCV-trained models saw
    # boxes_scores_classes
    output: str | None = None
    columns: tuple[str, ...] = BSC_COLUMNS
    normalized_coordinates: bool = False  # True: boxes in [0, 1] of the input size
    # gfl
    strides: tuple[int, ...] = (8, 16, 32)
    reg_max: int = 7
    outputs: dict[int, tuple[str, str]] | None = None  # stride -> (scores, distribution)
    score_activation: str = "none"  # "none" (already probabilities) | "sigmoid"
    cell_offset: float = 0.5
    # results and NMS
    labels: tuple[str, ...] | None = None
    class_agnostic: bool = True
    threshold: float = 0.5
    score_threshold: float = 0.025
    nms_threshold: float = 0.6
    nms_top_k: int = 1000
    keep_top_k: int = 100

    def __post_init__(self) -> None:
        if self.decoding not in DECODINGS:
            raise ConfigError(f"onnx detector: decoding must be one of {', '.join(DECODINGS)}, got {self.decoding!r}")
        self.input_feed()  # layout, channel order, mean/std and size are checked there
        if self.score_activation not in ("none", "sigmoid"):
            raise ConfigError(f"onnx detector: score_activation must be none or sigmoid, got {self.score_activation!r}")
        if self.decoding == "boxes_scores_classes" and sorted(self.columns) != sorted(BSC_COLUMNS):
            raise ConfigError(f"onnx detector: columns must name each of {', '.join(BSC_COLUMNS)} once")

    def input_feed(self) -> InputFeed:
        """How the model takes its images (pixel statistics in 0-255 units, so no scaling)."""
        return InputFeed(
            name=self.input_name, layout=self.layout, channel_order=self.channel_order, size=self.size,
            mean=self.mean, std=self.std, scale=1.0, interpolation=self.interpolation,
            resize_backend=self.resize_backend,
        )

    @classmethod
    def keys(cls) -> set[str]:
        """The spec keys (the field names)."""
        return {f.name for f in fields(cls)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OnnxDetectorSpec":
        if not isinstance(data, dict):
            raise ConfigError(f"{SPEC_NAME} must be a mapping, got {type(data).__name__}")
        return cls.load(data)

    @classmethod
    def load(cls, spec: "OnnxDetectorSpec | RawSpec | dict[str, Any] | str | Path") -> "OnnxDetectorSpec":
        """A spec from itself, a :class:`RawSpec`, a mapping or a YAML file (relative to the working directory)."""
        if isinstance(spec, OnnxDetectorSpec):
            return spec
        values = dict(read_spec(spec, SPEC_NAME, known=cls.keys()).values)
        if "decoding" not in values:
            raise ConfigError(f"onnx detector spec needs 'decoding' ({' or '.join(DECODINGS)})")
        for key in ("size", "mean", "std", "strides", "columns"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        labels = values.get("labels")
        if isinstance(labels, str):
            try:
                values["labels"] = tuple(load_labels(labels))
            except FileNotFoundError:
                raise ConfigError(f"onnx detector spec: no shipped label list named {labels!r}") from None
        elif labels is not None:
            values["labels"] = tuple(str(label) for label in labels)
        if values.get("outputs") is not None:
            try:
                values["outputs"] = {int(k): (str(v[0]), str(v[1])) for k, v in dict(values["outputs"]).items()}
            except (TypeError, ValueError, IndexError):
                raise ConfigError("onnx detector spec: outputs must map stride -> [scores_name, dist_name]") from None
        return cls(**values)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=axis, keepdims=True)
    return x


def gfl_decode(
    scores: list[np.ndarray], dists: list[np.ndarray], strides: tuple[int, ...], input_size: tuple[int, int],
    reg_max: int, cell_offset: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-stride scores [B, N_s, C] and distributions [B, N_s, 4*(reg_max+1)] -> boxes [B, N, 4], scores [B, N, C].

    Cells are row-major over a ceil(H/s) x ceil(W/s) grid, centres at (x + offset) * s;
    each side's distance is the expectation of its bins times the stride.
    """
    height, width = input_size
    project = np.arange(reg_max + 1, dtype=np.float32)
    all_boxes = []
    for dist, stride in zip(dists, strides):
        rows, cols = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid(np.arange(rows, dtype=np.float32), np.arange(cols, dtype=np.float32), indexing="ij")
        centres = (np.stack((xs.ravel(), ys.ravel()), axis=-1) + cell_offset) * stride  # [N, 2]
        batch, cells = dist.shape[:2]
        if cells != len(centres):
            raise ConfigError(f"stride {stride}: {cells} cells, but a {cols}x{rows} grid has {len(centres)}")
        bins = dist.reshape(batch, cells, 4, reg_max + 1).astype(np.float32)
        distance = _softmax(bins) @ project * stride  # [B, N, 4]
        all_boxes.append(np.concatenate((centres - distance[..., :2], centres + distance[..., 2:]), axis=-1))
    return np.concatenate(all_boxes, axis=1), np.concatenate(scores, axis=1).astype(np.float32)


class OnnxDetector(DetectionPredictor):
    """A :class:`DetectionPredictor` over an ONNX detector described by an :class:`OnnxDetectorSpec`."""

    def __init__(self, *args: Any, onnx_spec: OnnxDetectorSpec, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.onnx_spec = onnx_spec

    def _gfl_outputs(self) -> dict[int, tuple[str, str]]:
        spec = self.onnx_spec
        if spec.outputs is not None:
            missing = [n for pair in spec.outputs.values() for n in pair if n not in self.engine.output_shapes]
            if missing:
                known = sorted(self.engine.output_shapes)
                raise ConfigError(f"onnx detector: no outputs named {missing}; outputs are {known}")
            return dict(spec.outputs)
        height, width = self.preprocess.config.input_size
        dist_width = 4 * (spec.reg_max + 1)
        matched: dict[int, tuple[str, str]] = {}
        for stride in spec.strides:
            cells = (-(-height // stride)) * (-(-width // stride))
            same = [n for n, s in self.engine.output_shapes.items() if len(s) == 3 and s[1] == cells]
            dist = [n for n in same if self.engine.output_shapes[n][2] == dist_width]
            score = [n for n in same if self.engine.output_shapes[n][2] != dist_width]
            if len(dist) != 1 or len(score) != 1:
                raise ConfigError(
                    f"onnx detector: cannot tell the stride-{stride} outputs apart by shape ({cells} cells); "
                    "name them in the spec: outputs: {stride: [scores, distribution]}"
                )
            matched[stride] = (score[0], dist[0])
        return matched

    def decode_outputs(self, outputs: Any) -> tuple[np.ndarray, np.ndarray]:
        spec = self.onnx_spec
        height, width = self.preprocess.config.input_size
        if spec.decoding == "gfl":
            names = self._gfl_outputs()
            strides = tuple(sorted(names))
            scores = [outputs[names[s][0]] for s in strides]
            if spec.score_activation == "sigmoid":
                scores = [1.0 / (1.0 + np.exp(-s)) for s in scores]
            dists = [outputs[names[s][1]] for s in strides]
            return gfl_decode(scores, dists, strides, (height, width), spec.reg_max, spec.cell_offset)
        name = spec.output or next(
            (n for n, s in self.engine.output_shapes.items() if len(s) == 3 and s[2] == len(BSC_COLUMNS)), None
        )
        if name is None or name not in outputs:
            raise ConfigError(f"onnx detector: no detections output {name!r}; outputs are {sorted(outputs)}")
        rows = np.asarray(outputs[name], dtype=np.float32)
        column = {c: i for i, c in enumerate(spec.columns)}
        boxes = rows[..., [column["x1"], column["y1"], column["x2"], column["y2"]]]
        if spec.normalized_coordinates:
            boxes = boxes * np.array([width, height, width, height], dtype=np.float32)
        classes = rows[..., column["class"]].astype(np.int64)
        num_classes = max(len(spec.labels or ()), int(classes.max(initial=0)) + 1)
        scores = np.zeros(rows.shape[:2] + (num_classes,), dtype=np.float32)
        valid = classes >= 0  # padding rows carry class -1 in some exporters
        b, n = np.nonzero(valid)
        scores[b, n, classes[valid]] = rows[..., column["score"]][valid]
        return boxes, scores


def create_onnx_detector(
    model: str | Path,
    spec: OnnxDetectorSpec | RawSpec | dict[str, Any] | str | Path,
    device: str | torch.device | None = None,
    cpu_threads: int | None = None,
    batch_size: int = 1,
    precision: str | None = None,
    calibration: str | Path | list[str | Path] | None = None,
    **params: Any,
) -> OnnxDetector:
    """An ONNX detector as a ``mainbody_detection`` predictor (``predict(input, threshold=0.5)``).

    It runs on ``device`` where ONNX Runtime can (CUDA needs onnxruntime-gpu), else on the CPU.
    ``precision`` / ``calibration``: as for ``create_model`` (the file itself is quantised for int8).
    """
    path = Path(model)
    if not path.is_file():
        raise WeightsNotFoundError(f"ONNX model {path} does not exist")
    detector_spec = OnnxDetectorSpec.load(spec)
    feed = detector_spec.input_feed()
    engine = ExternalOnnxEngine(path, feed, device, cpu_threads)
    preprocess = preprocess_config(feed, engine, "size: [width, height]")
    model_spec = ModelSpec(
        name=path.stem,
        task="mainbody_detection",
        builder=_no_builder,
        preprocess=preprocess,
        num_classes=len(detector_spec.labels or ()) or 1,
        arch=f"onnx:{path.name}",
        defaults={
            "threshold": detector_spec.threshold,
            "score_threshold": detector_spec.score_threshold,
            "nms_threshold": detector_spec.nms_threshold,
            "nms_top_k": detector_spec.nms_top_k,
            "keep_top_k": detector_spec.keep_top_k,
            "class_agnostic": detector_spec.class_agnostic,
        },
    )
    labels = list(detector_spec.labels) if detector_spec.labels else None
    precision = normalize_precision(precision)
    check_int8_request(precision, "onnxruntime", engine.device)

    def build(engine_: Any, precision_: str = "fp32", int8_check: dict[str, Any] | None = None) -> OnnxDetector:
        return OnnxDetector(model_spec, engine_, Preprocessor(preprocess), labels, batch_size=batch_size,
                            device=engine_.device, onnx_spec=detector_spec, precision=precision_,
                            int8_check=int8_check, **params)

    detector = build(engine)
    if detector_spec.decoding == "gfl":
        detector._gfl_outputs()  # fail now, not at the first image, when outputs cannot be matched
    return apply_precision(detector, precision, calibration, build)


def _no_builder(**_: Any) -> None:
    raise ConfigError("an ONNX detector has no torch network to build")
