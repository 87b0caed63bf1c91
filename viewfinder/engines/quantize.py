"""Static int8 quantisation of an ONNX file, cached next to the fp32 exports.

ONNX Runtime's ``quantize_static`` in QDQ format: int8 weights per output channel, uint8
activations whose ranges are calibrated on real photos (the caller feeds them, already
preprocessed). Only convolutions are quantised by default: the detectors' box decoding
(softmax over distance bins, anchor arithmetic) and the outputs stay float, where 8 bits
would move box corners by whole pixels.

Cache: ``$VIEWFINDER_HOME/onnx/<source stem>-int8-<digest>.onnx`` plus a ``.json`` record;
the digest covers the source file's sha256 (model + weights + export settings), the
calibration set's digest, the quantisation settings and the ONNX Runtime version. The record
also keeps the validation result per kind of int8 kernel (:func:`.cpu_features.int8_kernel_class`),
written by the caller, so a model is quantised and validated once per machine type.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError
from ..paths import onnx_dir
from .onnx_cache import file_sha256, _mtime, _remove, _write_json_atomic

log = logging.getLogger(__name__)

#: bump when the recipe changes, so files made by an older recipe are not reused
QUANT_RECIPE_VERSION = 2  # 2: keep_float groups, extra_options
#: int8 files kept per source model stem (most recently used first)
KEEP_PER_SOURCE = 2
#: convolutions that stay float under the selective recipe (QuantSettings.keep_float):
#: "first" (reads the photo: its input range is the whole pixel range, and it has 3 input channels,
#: so it gains little from int8), "depthwise" (one 3x3 filter per channel: per-tensor activation
#: ranges across channels of very different scale cost them most), "last" (the convolutions whose
#: outputs reach a model output without another convolution: the detector heads, the embedding),
#: "early" (the convolutions reading at least a quarter of the largest feature map, i.e. the full
#: or half input resolution: measured on MobileNetV2, quantising any one of them costs more feature
#: cosine than any later one, and errors made there pass through the whole network), "linear" (no
#: activation follows: the projections of inverted-residual blocks, feeding a residual Add or the
#: next convolution; on CenterNet the largest jumps in error; costs most of MobileNetV2's int8
#: gain, so not in the default recipe), "pooled" (1x1 inputs, e.g. squeeze-excite: no time to save)
KEEP_FLOAT_GROUPS = ("first", "depthwise", "last", "early", "linear", "pooled")
#: ops that make a convolution's output non-linear (a convolution feeding one of them is not "linear");
#: Mul covers hard-swish written out as x * relu6(x + 3) / 6
ACTIVATION_OPS = frozenset({"Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "LeakyRelu", "PRelu", "Tanh",
                            "Mul", "Elu", "Selu", "Softplus", "Gelu", "Swish"})
#: MinMax keeps two numbers per tensor and photo; the histogram methods keep every activation of every
#: photo (about 0.5 GB a photo for the 640x640 detector), so they suit small inputs only
CALIBRATION_METHODS = ("MinMax", "Percentile", "Entropy")


@dataclass(frozen=True)
class QuantSettings:
    """What the int8 file depends on besides the source model and the calibration photos."""

    op_types: tuple[str, ...] = ("Conv",)
    calibrate_method: str = "MinMax"
    percentile: float = 99.999  # for "Percentile"
    per_channel: bool = True
    nodes_to_exclude: tuple[str, ...] = ()
    keep_float: tuple[str, ...] = ()  # groups of convolutions left in float, from KEEP_FLOAT_GROUPS
    extra_options: tuple[tuple[str, Any], ...] = ()  # quantize_static's extra_options, e.g. (("QuantizeBias", False),)

    def __post_init__(self) -> None:
        if self.calibrate_method not in CALIBRATION_METHODS:
            raise ValueError(f"calibrate_method must be one of {CALIBRATION_METHODS}, got {self.calibrate_method!r}")
        unknown = set(self.keep_float) - set(KEEP_FLOAT_GROUPS)
        if unknown:
            raise ValueError(f"keep_float takes {KEEP_FLOAT_GROUPS}, got {sorted(unknown)}")

    def key(self) -> dict[str, Any]:
        return {**asdict(self), "recipe": QUANT_RECIPE_VERSION}


@dataclass(frozen=True)
class Calibration:
    """The photos activation ranges are calibrated on: named by ``digest``, read only when quantising.

    ``feeds()`` yields one ONNX Runtime feed (input name -> array) per photo, preprocessed
    exactly as the model's inputs are at inference time.
    """

    digest: str
    files: tuple[str, ...]
    feeds: Callable[[], Iterable[dict[str, np.ndarray]]] = field(compare=False, repr=False)


@dataclass
class Int8Model:
    """A cached int8 file and its record (with the validation results kept per kernel class)."""

    path: Path
    record_path: Path
    record: dict[str, Any]

    def validation(self, kernel_class: str) -> dict[str, Any] | None:
        return (self.record.get("validations") or {}).get(kernel_class)

    def save_validation(self, kernel_class: str, result: dict[str, Any]) -> None:
        """Store a validation result in the record (re-read first: another process may have added one)."""
        try:
            current = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = self.record
        if current.get("onnx_sha256") != self.record.get("onnx_sha256"):
            current = self.record  # replaced meanwhile; ours describes the file we validated
        current.setdefault("validations", {})[kernel_class] = result
        self.record = current
        try:
            _write_json_atomic(self.record_path, current)
        except OSError as exc:  # a read-only cache: validated again next time
            log.warning("cannot store the int8 validation result in %s: %s", self.record_path, exc)


def int8_stem(source: Path, source_sha256: str, calibration: Calibration, settings: QuantSettings) -> str:
    """``<source stem>-int8-<digest>``: one name per source file, calibration set, settings and ORT version."""
    import onnxruntime

    stem = source.stem
    if not re.search(r"-[0-9a-f]{16}-[0-9a-f]{10}$", stem):  # not one of our exports: name the file's content
        stem = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}-{source_sha256[:16]}"
    extra = json.dumps({"source": source_sha256, "calibration": calibration.digest, "settings": settings.key(),
                        "onnxruntime": onnxruntime.__version__}, sort_keys=True)
    return f"{stem}-int8-{hashlib.sha256(extra.encode()).hexdigest()[:10]}"


def _load_cached(path: Path, record_path: Path) -> Int8Model | None:
    if not path.exists() and not record_path.exists():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        size = path.stat().st_size
        if size == record.get("onnx_size") and file_sha256(path) == record.get("onnx_sha256"):
            os.utime(path)  # most recently used: pruning keeps it
            return Int8Model(path, record_path, record)
        problem = f"size or checksum does not match its record ({size} bytes, expected {record.get('onnx_size')})"
    except (OSError, ValueError) as exc:
        problem = f"cannot read it or its record ({exc})"
    log.warning("cached int8 model %s is damaged (%s); deleting and rebuilding it", path, problem)
    _remove(path, record_path)
    return None


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime.quantization logs advice on the root logger ("consider pre-processing"); not for users."""

    def drop(record: logging.LogRecord) -> bool:
        return not record.name == "root" or record.levelno > logging.WARNING

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over our feeds."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._feeds, None)
        self.count += feed is not None
        return feed


def _conv_weight_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Shapes of the constant tensors (initialisers and Constant nodes) by name."""
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    shapes[node.output[0]] = tuple(attribute.t.dims)
    return shapes


def _conv_input_areas(model: Any, input_shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, int]:
    """Height x width of each Conv node's input, by node name, where shape inference knows it.
    ``input_shapes`` (a real feed's shapes) fixes dynamic input dimensions first."""
    import onnx

    if input_shapes:
        model = copy.deepcopy(model)
        for value in model.graph.input:
            shape = input_shapes.get(value.name)
            dims = value.type.tensor_type.shape.dim
            if shape is not None and len(shape) == len(dims):
                for dim, size in zip(dims, shape):
                    dim.Clear()
                    dim.dim_value = int(size)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - an unusual graph: no "early" group rather than no int8
        log.info("int8: no shapes for the 'early' convolutions (%s)", exc)
        return {}
    shapes = {v.name: v.type.tensor_type.shape for v in
              list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    areas: dict[str, int] = {}
    for node in inferred.graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "Conv" else None
        if shape is None or len(shape.dim) != 4:
            continue
        height, width = shape.dim[2], shape.dim[3]
        if height.HasField("dim_value") and width.HasField("dim_value"):
            areas[node.name] = height.dim_value * width.dim_value
    return areas


def float_convolutions(model: Any, groups: Iterable[str],
                       input_shapes: dict[str, tuple[int, ...]] | None = None) -> list[str]:
    """Names of the Conv nodes of ``model`` (an ``onnx.ModelProto``) in the ``groups`` of
    :data:`KEEP_FLOAT_GROUPS`, in graph order. Unnamed convolutions cannot be excluded and are skipped."""
    groups = set(groups)
    graph = model.graph
    nodes = list(graph.node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    chosen: set[int] = set()
    if "depthwise" in groups:
        shapes = _conv_weight_shapes(graph)
        for node in convs:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            weight = shapes.get(node.input[1]) if len(node.input) > 1 else None
            if group > 1 and (weight is None or (len(weight) > 1 and weight[1] == 1)):
                chosen.add(id(node))
    if groups & {"early", "pooled"}:
        areas = _conv_input_areas(model, input_shapes)
        if "early" in groups and convs and all(n.name in areas for n in convs):  # every size known, or none
            largest = max(areas.values())
            chosen |= {id(n) for n in convs if areas.get(n.name, 0) * 4 >= largest}
        if "pooled" in groups:
            chosen |= {id(n) for n in convs if areas.get(n.name) == 1}
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    if "linear" in groups:
        constants = {t.name for t in graph.initializer} | {n.output[0] for n in nodes if n.op_type == "Constant"}

        def is_linear(conv: Any) -> bool:
            users = consumers.get(conv.output[0], [])
            if not users or any(u.op_type in ACTIVATION_OPS for u in users):
                return False
            # an Add with a constant is an activation's "x + 3" or a bias, not a residual sum
            return all(u.op_type != "Add" or not (set(u.input) & constants) for u in users)

        chosen |= {id(n) for n in convs if is_linear(n)}

    def convs_reached(start: list[str], step: Callable[[Any], list[str]],
                      follow: Callable[[str], list[Any]]) -> set[int]:
        """Conv nodes reached from the tensors ``start`` without passing through another Conv."""
        found: set[int] = set()
        seen: set[str] = set()
        todo = list(start)
        while todo:
            tensor = todo.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            for node in follow(tensor):
                if node.op_type == "Conv":
                    found.add(id(node))
                else:
                    todo.extend(step(node))
        return found

    if "first" in groups:
        chosen |= convs_reached([i.name for i in graph.input], lambda n: list(n.output),
                                lambda t: consumers.get(t, []))
    if "last" in groups:
        chosen |= convs_reached([o.name for o in graph.output], lambda n: list(n.input),
                                lambda t: [producer[t]] if t in producer else [])
    return [n.name for n in convs if id(n) in chosen and n.name]


def quantize_file(source: Path, destination: Path, calibration: Calibration, settings: QuantSettings) -> int:
    """Quantise ``source`` into ``destination``; returns how many calibration feeds were used."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = _Reader(calibration.feeds())
    extra: dict[str, Any] = dict(settings.extra_options)
    if settings.calibrate_method == "Percentile":
        extra["CalibPercentile"] = settings.percentile
    exclude = list(settings.nodes_to_exclude)
    if settings.keep_float:
        import onnx

        model = onnx.load(str(source), load_external_data=False)
        # a real feed's shapes: a user's ONNX file may leave height and width dynamic
        first = next(iter(calibration.feeds()), None) if {"early", "pooled"} & set(settings.keep_float) else None
        shapes = {name: tuple(np.shape(array)) for name, array in (first or {}).items()}
        exclude += float_convolutions(model, settings.keep_float, shapes)
        if "Conv" in settings.op_types and {n.name for n in model.graph.node if n.op_type == "Conv"} <= set(exclude) \
                and not set(settings.op_types) - {"Conv"}:
            raise ExportError(f"int8 would leave every convolution of {source.name} in float: nothing to gain")
    with _quiet_quantizer():
        quantize_static(
            str(source), str(destination), reader, quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=list(settings.op_types), nodes_to_exclude=exclude,
            calibrate_method=getattr(CalibrationMethod, settings.calibrate_method), extra_options=extra,
            calibration_providers=["CPUExecutionProvider"],
        )
    if reader.count == 0:
        raise ExportError("int8 calibration got no images")
    return reader.count


def load_or_quantize(source: Path, calibration: Calibration, settings: QuantSettings = QuantSettings(),
                     label: str | None = None) -> Int8Model:
    """The int8 version of ``source``: from the cache, or quantised (and cached) now.

    Raises :class:`ExportError` when quantisation fails or the cache cannot be written.
    """
    label = label or source.stem
    source_sha256 = file_sha256(source)
    folder = onnx_dir()
    stem = int8_stem(source, source_sha256, calibration, settings)
    path, record_path = folder / f"{stem}.onnx", folder / f"{stem}.json"
    cached = _load_cached(path, record_path)
    if cached is not None:
        return cached
    log.warning("%s: quantising to int8 once, calibrated on %d photos (cached as %s)", label,
                len(calibration.files), path)
    started = time.perf_counter()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
        os.close(handle)
    except OSError as exc:
        raise ExportError(f"cannot write the int8 cache in {folder}: {exc}") from None
    temp = Path(temp_name)
    try:
        try:
            used = quantize_file(source, temp, calibration, settings)
        except ExportError:
            raise
        except Exception as exc:  # the quantiser raises whatever its graph passes meet
            raise ExportError(f"{label}: int8 quantisation failed: {exc}") from None
        record = {
            "model": label,
            "source": source.name,
            "source_sha256": source_sha256,
            "calibration": {"digest": calibration.digest, "files": list(calibration.files), "used": used},
            "settings": settings.key(),
            "onnx_size": temp.stat().st_size,
            "onnx_sha256": file_sha256(temp),
            "seconds": round(time.perf_counter() - started, 1),
            "validations": {},
        }
        os.chmod(temp, 0o644)
        os.replace(temp, path)
        _write_json_atomic(record_path, record)
    except OSError as exc:
        raise ExportError(f"cannot write the int8 cache in {folder}: {exc}") from None
    finally:
        _remove(temp)
    _prune(folder, stem.rsplit("-int8-", 1)[0])
    log.info("%s: int8 model ready in %.1f s", label, time.perf_counter() - started)
    return Int8Model(path, record_path, record)


def _prune(folder: Path, source_stem: str, keep: int = KEEP_PER_SOURCE) -> None:
    """Keep the few most recently used int8 files of one source (older calibration sets go)."""
    pattern = re.compile(rf"^{re.escape(source_stem)}-int8-[0-9a-f]{{10}}\.onnx$")
    files = sorted((p for p in folder.iterdir() if pattern.match(p.name)), key=_mtime, reverse=True)
    for old in files[keep:]:
        _remove(old, old.with_suffix(".json"))
