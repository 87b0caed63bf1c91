"""What a user's own ONNX model needs whatever its task: its spec read, its input fed.

:mod:`.onnx_detector` and :mod:`.onnx_multilabel` each parse their own spec keys and read
their own outputs; both read the spec with :func:`read_spec` and run the file through an
:class:`ExternalOnnxEngine`, which feeds it from our NCHW RGB float batches. Where the file
runs (CUDA with onnxruntime-gpu, else the CPU with one warning) is decided once, in
:mod:`viewfinder.engines.onnx_engine`.
"""
from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..device import resolve_device
from ..engines.onnx_engine import OnnxRuntimeEngine, device_for_onnx_file
from ..errors import ConfigError
from .preprocess import PreprocessConfig

LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
#: ONNX Runtime input types we can feed, as numpy types
INPUT_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
    "tensor(double)": np.float64,
}


@dataclass(frozen=True)
class RawSpec:
    """A spec as read, before a model parses its keys."""

    values: dict[str, Any]  # the spec's keys, ``onnx`` taken out
    onnx: Path | None  # the model file named by ``onnx``, resolved against ``folder``
    folder: Path  # where relative paths in the spec (the model, a label file) are resolved


def read_spec(
    spec: RawSpec | Mapping[str, Any] | str | Path,
    what: str,
    known: Collection[str] | None = None,
    base: Path | None = None,
    names_onnx: bool = False,
) -> RawSpec:
    """Read a spec: a mapping, a YAML file holding one (a relative path is relative to ``base``), or a :class:`RawSpec`.

    ``what`` starts every error message. ``known``: the keys allowed besides ``onnx``; others
    are refused, by name (None: the caller checks). ``names_onnx``: the spec must name its
    model file under ``onnx``; a relative one is resolved against the spec file's folder, or
    ``base`` for a mapping. ``base`` defaults to the working directory.
    """
    if isinstance(spec, RawSpec):
        source = spec
    else:
        folder = Path.cwd() if base is None else Path(base)
        if isinstance(spec, (str, Path)):
            path = Path(spec).expanduser()
            path = path if path.is_absolute() else folder / path
            if not path.is_file():
                raise ConfigError(f"{what} file {path} does not exist")
            try:
                spec = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: invalid YAML ({exc})") from None
            folder = path.resolve().parent
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{what} must be a mapping, got {type(spec).__name__}")
        values = dict(spec)
        onnx = None
        if names_onnx:
            if not values.get("onnx"):
                raise ConfigError(f"{what} needs 'onnx': the path of the .onnx file")
            onnx = Path(str(values.pop("onnx"))).expanduser()
            onnx = onnx if onnx.is_absolute() else folder / onnx
        source = RawSpec(values, onnx, folder)
    if names_onnx and source.onnx is None:
        raise ConfigError(f"{what} needs 'onnx': the path of the .onnx file")
    if known is not None:
        unknown = sorted(set(source.values) - set(known))
        if unknown:
            allowed = sorted(set(known) | ({"onnx"} if names_onnx else set()))
            raise ConfigError(f"{what}: unknown keys {unknown}; known: {allowed}")
    return source


@dataclass(frozen=True)
class InputFeed:
    """How a user's ONNX model takes its images: the preprocessing, then the tensor it is fed as."""

    name: str | None = None  # the input to feed; default: the model's first
    layout: str | None = "NCHW"  # NCHW | NHWC; None: read from the input's shape
    channel_order: str = "RGB"  # RGB | BGR
    size: tuple[int, int] | None = None  # (width, height), aspect ratio not kept; default: the model's fixed size
    resize_short: int | None = None  # or keep the aspect ratio: short side, then an optional centre crop
    crop: int | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in the model's channel order, after ``scale``
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0  # pixel (0-255) * scale, then (x - mean) / std
    interpolation: str = "bilinear"
    resize_backend: str = "pillow"  # or "cv2": OpenCV without antialiasing, as PaddleX/OpenCV-trained models saw

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"ONNX spec layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ConfigError(f"ONNX spec channel order must be one of {', '.join(CHANNEL_ORDERS)}, "
                              f"got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(float(s) == 0 for s in self.std):
            raise ConfigError("ONNX spec mean and std need 3 values each, std non-zero")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ConfigError(f"ONNX spec size must be [width, height], got {list(self.size)!r}")


def _fixed(dim: Any) -> int | None:
    """A static dimension of an ONNX shape; None for a symbolic or unknown one."""
    return dim if isinstance(dim, int) and dim > 0 else None


class ExternalOnnxEngine:
    """A user's ONNX file on ONNX Runtime, fed from our NCHW RGB float batches.

    It turns a batch into the model's input tensor (channel order, layout, dtype) and runs
    a model with a static batch size in chunks of that size. Outputs are a dict by name.
    """

    name = "onnxruntime"

    def __init__(self, path: Path, feed: InputFeed, device: str | torch.device | None = None,
                 cpu_threads: int | None = None) -> None:
        self.path = Path(path)
        self.feed = feed
        self.device = device_for_onnx_file(resolve_device(device), self.path.name)
        self.inner = OnnxRuntimeEngine(self.path, self.device, cpu_threads, output_kind="dict")
        model = self.path.name
        inputs = {i.name: i for i in self.inner.session.get_inputs()}
        name = feed.name or next(iter(inputs))
        if name not in inputs:
            raise ConfigError(f"{model} has no input named {name!r}; inputs: {', '.join(inputs)}")
        node = inputs[name]
        shape = list(node.shape)
        if len(shape) != 4:
            raise ConfigError(f"{model}: input {name!r} has shape {shape}; expected a 4-d image tensor")
        # Unnamed layout: NHWC only when the last axis alone looks like channels.
        self.layout = feed.layout or ("NHWC" if shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW")
        channel_axis, h_axis, w_axis = (1, 2, 3) if self.layout == "NCHW" else (3, 1, 2)
        if _fixed(shape[channel_axis]) not in (None, 3):
            raise ConfigError(f"{model}: input {name!r} {shape} has no 3-channel axis for layout {self.layout}")
        dtype = INPUT_TYPES.get(node.type)
        if dtype is None:
            raise ConfigError(f"{model}: input {name!r} has unsupported type {node.type}")
        self.inner.input_name, self.inner.input_dtype = name, dtype
        self.fixed_batch = _fixed(shape[0])
        height, width = _fixed(shape[h_axis]), _fixed(shape[w_axis])
        #: (width, height) when the model's input size is fixed
        self.static_size = (width, height) if height and width else None
        #: every output's shape, in the model's order
        self.output_shapes = {o.name: list(o.shape) for o in self.inner.session.get_outputs()}

    def run_only(self, names: Sequence[str]) -> None:
        """Compute just these outputs (ONNX Runtime then skips the nodes only other outputs need)."""
        for name in names:
            if name not in self.output_shapes:
                raise ConfigError(f"{self.path.name} has no output {name!r}; outputs: {', '.join(self.output_shapes)}")
        self.inner.output_names = list(names)

    @property
    def cpu_threads(self) -> int:
        return self.inner.cpu_threads

    def to_model_input(self, batch: np.ndarray) -> np.ndarray:
        """Our NCHW RGB float batch as the model's input tensor (channel order, layout, dtype)."""
        batch = np.asarray(batch, dtype=np.float32)
        if self.feed.channel_order == "BGR":
            batch = batch[:, ::-1]
        if self.layout == "NHWC":
            batch = batch.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(batch, dtype=self.inner.input_dtype)

    def feeds(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """What the session is fed for a preprocessed batch (int8 calibration feeds the same)."""
        return self.inner.feeds(self.to_model_input(batch))

    def with_file(self, path: str | Path) -> "ExternalOnnxEngine":
        """The same feed and outputs over another ONNX file of the same network (its int8 version)."""
        other = ExternalOnnxEngine(Path(path), self.feed, self.device, self.inner.cpu_threads)
        other.inner.output_names = list(self.inner.output_names)
        return other

    def for_lanes(self, lanes: int) -> "ExternalOnnxEngine | None":
        """This feed over the inner engine's twin for lanes (``OnnxRuntimeEngine.for_lanes``, or
        OpenVINO's under bf16); None where the inner engine has none."""
        inner = self.inner.for_lanes(lanes) if hasattr(self.inner, "for_lanes") else None
        if inner is None:
            return None
        twin = copy.copy(self)
        twin.inner = inner
        return twin

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self.to_model_input(batch)
        step = self.fixed_batch or len(batch)
        if step == len(batch):
            return self.inner(batch)  # type: ignore[return-value]  # output_kind "dict"
        if len(batch) % step:
            raise ConfigError(f"{self.path.name} takes batches of exactly {step} images; use batch_size {step}")
        parts = [self.inner(batch[i:i + step]) for i in range(0, len(batch), step)]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}  # type: ignore[index]


def preprocess_config(feed: InputFeed, engine: ExternalOnnxEngine, size_keys: str) -> PreprocessConfig:
    """Our preprocessing for ``feed``, checked against a model of fixed input size.

    The statistics are given in the model's channel order; our preprocessor normalises
    RGB (the engine reorders channels afterwards), so they are reordered here.
    ``size_keys`` names the spec keys that give a size, for the error when none is known.
    """
    model = engine.path.name
    size = feed.size
    if size is None and feed.resize_short is None:
        size = engine.static_size
        if size is None:
            raise ConfigError(f"{model} has a dynamic input size; give {size_keys} in the spec")
    order = slice(None, None, -1) if feed.channel_order == "BGR" else slice(None)
    config = PreprocessConfig(
        resize_short=None if size is not None else feed.resize_short,
        crop=None if size is not None else feed.crop,
        resize=(int(size[0]), int(size[1])) if size is not None else None,
        mean=tuple(float(m) for m in feed.mean[order]),  # type: ignore[arg-type]
        std=tuple(float(s) for s in feed.std[order]),  # type: ignore[arg-type]
        scale=float(feed.scale),
        interpolation=feed.interpolation,
        backend=feed.resize_backend,
    )
    expected = engine.static_size
    height, width = config.input_size
    if expected is not None and (width, height) != tuple(expected):
        raise ConfigError(f"{model} takes {expected[0]}x{expected[1]} images; the spec resizes to {width}x{height}")
    return config
