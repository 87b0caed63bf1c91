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
QUANT_RECIPE_VERSION = 1
#: int8 files kept per source model stem (most recently used first)
KEEP_PER_SOURCE = 2
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

    def __post_init__(self) -> None:
        if self.calibrate_method not in CALIBRATION_METHODS:
            raise ValueError(f"calibrate_method must be one of {CALIBRATION_METHODS}, got {self.calibrate_method!r}")

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


def quantize_file(source: Path, destination: Path, calibration: Calibration, settings: QuantSettings) -> int:
    """Quantise ``source`` into ``destination``; returns how many calibration feeds were used."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = _Reader(calibration.feeds())
    extra: dict[str, Any] = {}
    if settings.calibrate_method == "Percentile":
        extra["CalibPercentile"] = settings.percentile
    with _quiet_quantizer():
        quantize_static(
            str(source), str(destination), reader, quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=list(settings.op_types), nodes_to_exclude=list(settings.nodes_to_exclude),
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
