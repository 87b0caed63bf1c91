"""``precision``: run a model in fp32, int8, bf16 or whichever pays here (``auto``). Issue 30.

* ``fp32`` (the default): the validated fp32 export.
* ``int8``: the ONNX export statically quantised (:mod:`viewfinder.engines.quantize`),
  calibrated on photos, then checked against fp32 on photos not used for calibration
  (:mod:`.int8_check`). A model that fails the check runs fp32, with a warning. int8 runs on
  ONNX Runtime on the CPU only: asking for it with ``engine="torch"`` or on a GPU is an error.
* ``bf16``: the ONNX export run by OpenVINO in bfloat16 (:mod:`.bf16`), on CPUs with bf16
  arithmetic (AVX512-BF16, AMX), checked against fp32 like int8; fp32 with a warning otherwise.
* ``auto``: bf16 where the CPU has bf16 arithmetic, OpenVINO is installed and the check passes;
  else int8 only on CPUs with 8-bit dot-product instructions (VNNI, AMX;
  :mod:`viewfinder.engines.cpu_features`), on ONNX Runtime, with calibration photos at hand,
  and only for a model whose int8 version passed the check; fp32 otherwise.

Calibration photos: ``calibration=`` (a folder or a list of image files), else
``$VIEWFINDER_CALIBRATION``, else ``$VIEWFINDER_HOME/calibration/`` (``tools/seed_assets.py``
fills it with the sample photos). In sorted order, every third photo is kept for the check and
the others calibrate (at most 32). Quantised files and check results are cached with the ONNX
exports, so both happen once per model, weights, photo set and kind of CPU.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engines import cpu_features
from ..engines.onnx_cache import file_sha256
from ..engines.quantize import Calibration, QuantSettings, load_or_quantize
from ..errors import ConfigError, EngineError, ExportError, ViewfinderError
from ..io import IMAGE_EXTENSIONS, DecodedImage, decode_image
from ..paths import viewfinder_home
from .bf16 import apply_bf16
from .int8_check import CHECK_RULES, check_for
from .predictor import BasePredictor
from .verdict import Rebuild, keep_if_checked

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8", "bf16", "auto")
PRECISION_ENV = "VIEWFINDER_PRECISION"
CALIBRATION_ENV = "VIEWFINDER_CALIBRATION"
MAX_CALIBRATION = 32
MIN_CALIBRATION = 4
MIN_VALIDATION = 2

#: the quantisation recipe every model gets (docs/performance.md, issue 30: measured on the real
#: MobileNetV2 and CenterNet): the pointwise and heavy convolutions in int8; the first, the depthwise,
#: the early (full and half input resolution), the pooled (squeeze-excite) and the last convolutions
#: in float; activation ranges
#: from the mean of each photo's min/max (MinMax's extremes, set by one photo's outliers, waste
#: most of the 8 bits on values that hardly occur: MobileNetV2's feature cosine 0.958 -> 0.988)
DEFAULT_QUANT = QuantSettings(keep_float=("first", "depthwise", "early", "last", "pooled"),
                              extra_options=(("CalibMovingAverage", True),))


def normalize_precision(precision: str | None) -> str:
    """``precision`` (None: ``$VIEWFINDER_PRECISION`` or "fp32") checked; "float32" and "fp32" alike."""
    value = precision if precision is not None else (os.environ.get(PRECISION_ENV) or "fp32")
    name = str(value).strip().lower()
    name = {"float32": "fp32", "float": "fp32", "int8_static": "int8", "bfloat16": "bf16"}.get(name, name)
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {value!r}; use one of {', '.join(PRECISIONS)}")
    return name


def default_calibration_folder() -> Path:
    env = os.environ.get(CALIBRATION_ENV)
    return Path(env).expanduser() if env else viewfinder_home() / "calibration"


@dataclass(frozen=True)
class PhotoSplit:
    """Calibration photos and the photos kept back for the check."""

    calibration: tuple[str, ...]
    validation: tuple[str, ...]


def split_photos(calibration: str | Path | Sequence[str | Path] | None) -> PhotoSplit | None:
    """The photo split for ``calibration`` (None: the default folder); None when there are too few photos."""
    if calibration is None or isinstance(calibration, (str, Path)):
        folder = default_calibration_folder() if calibration is None else Path(calibration).expanduser()
        if not folder.is_dir():
            if calibration is not None:
                raise ConfigError(f"calibration folder {folder} does not exist")
            return None
        files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    else:
        files = sorted(str(Path(p)) for p in calibration)
    validation = tuple(f for i, f in enumerate(files) if i % 3 == 2)
    calibrate = tuple(f for i, f in enumerate(files) if i % 3 != 2)[:MAX_CALIBRATION]
    if len(calibrate) < MIN_CALIBRATION or len(validation) < MIN_VALIDATION:
        return None
    return PhotoSplit(calibrate, validation)


def _decode(predictor: BasePredictor, files: Sequence[str]) -> Iterator[DecodedImage]:
    side = predictor.preprocess.config.min_decode_side
    for name in files:
        try:
            image = decode_image(name, min_short_side=side)
        except ViewfinderError as exc:
            log.warning("int8 calibration: skipping %s", exc)
            continue
        image.input_path = name
        yield image


def calibration_for(predictor: BasePredictor, files: Sequence[str]) -> Calibration:
    """The calibration feeds of ``predictor``'s engine: each photo preprocessed as at inference time."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(f"{Path(name).name}|{file_sha256(Path(name))}|".encode())
    # the tensors also depend on how photos become inputs (a spec's BGR/NHWC feed, the resize backend)
    digest.update(json.dumps(predictor.preprocess.config.to_dict(), sort_keys=True, default=str).encode())
    digest.update(repr(getattr(predictor.engine, "feed", None)).encode())
    engine, preprocess = predictor.engine, predictor.preprocess

    def feeds() -> Iterator[dict[str, np.ndarray]]:
        for image in _decode(predictor, files):
            yield engine.feeds(preprocess([image.held_pixels]))

    return Calibration(digest.hexdigest(), tuple(Path(f).name for f in files), feeds)


def _int8_refusal(predictor: BasePredictor) -> tuple[str, str] | None:
    """Why this predictor cannot run int8, as (kind, message): "engine" (not ONNX Runtime on the
    CPU, e.g. after an export that fell back to torch) or "task" (no accuracy check); None: it can."""
    engine = predictor.engine
    name = predictor.model_name
    if getattr(engine, "name", None) != "onnxruntime" or not hasattr(engine, "with_file"):
        return "engine", f"int8 runs on ONNX Runtime only, and {name} runs on {getattr(engine, 'name', '?')}"
    device = getattr(engine, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        return "engine", f"int8 runs on the CPU only, and {name} runs on {device}"
    if check_for(predictor) is None:
        return "task", f"int8 has no accuracy check for {name}'s task yet (detectors and feature models have one)"
    return None


def check_int8_request(precision: str, engine: str, device: Any) -> None:
    """Refuse ``precision="int8"`` or ``"bf16"`` up front where it cannot run: the torch engine, a GPU
    (both start from the model's ONNX export)."""
    if precision not in ("int8", "bf16"):
        return
    if engine == "torch":
        raise ConfigError(f"precision '{precision}' starts from the model's ONNX export: use engine 'onnxruntime' or "
                          f"'auto' (engine 'torch' was asked for"
                          f"{', by $VIEWFINDER_ENGINE' if os.environ.get('VIEWFINDER_ENGINE') else ''})")
    if getattr(device, "type", "cpu") != "cpu":
        raise ConfigError(f"precision '{precision}' runs on the CPU only; device {device} runs fp32 "
                          "(or use fp16 on the GPU)")


def apply_precision(predictor: BasePredictor, precision: str | None, calibration: Any, rebuild: Rebuild,
                    quant: QuantSettings | None = None) -> BasePredictor:
    """``predictor`` (fp32) or its int8 twin, as ``precision`` asks; ``rebuild(engine, precision, check)``
    makes a predictor like ``predictor`` over another engine."""
    precision = normalize_precision(precision)
    if precision == "fp32":
        return predictor
    if precision in ("bf16", "auto"):
        photos = split_photos(calibration)
        chosen = apply_bf16(predictor, precision, photos and photos.validation, photos.calibration if photos else (),
                            lambda files: list(_decode(predictor, files)),
                            lambda: calibration_for(predictor, photos.validation + photos.calibration).digest,
                            _check_key(predictor), rebuild)
        if chosen is not None:
            return chosen
    quant = quant or DEFAULT_QUANT
    name = predictor.model_name
    refusal = _int8_refusal(predictor)
    if precision == "auto":
        kernel = cpu_features.int8_dot_product()
        if kernel is None:
            log.info("%s: precision auto runs fp32: this CPU has no VNNI/AMX int8 instructions", name)
            return predictor
        if refusal:
            log.info("%s: precision auto runs fp32: %s", name, refusal[1])
            return predictor
    elif refusal and refusal[0] == "task":
        raise ConfigError(f"{name}: precision 'int8': {refusal[1]}")
    elif refusal:  # the export fell back to torch (warned already): say int8 is not applied
        log.warning("%s: precision 'int8' not applied, running fp32: %s", name, refusal[1])
        return predictor
    elif cpu_features.int8_dot_product() is None:
        log.warning("%s: int8 on a CPU without VNNI/AMX int8 instructions is usually slower than fp32", name)
    if precision == "int8":  # auto read them above, for bf16
        photos = split_photos(calibration)
    if photos is None:
        where = calibration if calibration is not None else default_calibration_folder()
        message = (f"int8 needs calibration photos: at least {MIN_CALIBRATION + MIN_VALIDATION} images in {where} "
                   f"(pass calibration=FOLDER, set ${CALIBRATION_ENV}, or run tools/seed_assets.py)")
        if precision == "auto":
            log.info("%s: precision auto runs fp32: %s", name, message)
            return predictor
        raise ConfigError(f"{name}: {message}")
    try:
        model = load_or_quantize(Path(predictor.engine.path), calibration_for(predictor, photos.calibration), quant,
                                 label=name)
        int8_engine = predictor.engine.with_file(model.path)
    except (ExportError, EngineError) as exc:
        log.warning("%s: int8 is not available (%s); running fp32", name, exc)
        return predictor
    candidate = rebuild(int8_engine, "int8", None)
    kernel_class = cpu_features.int8_kernel_class()
    key = f"{kernel_class}:{_check_key(predictor)}"
    stored = model.validation(key)
    if stored is None:
        result = check_for(predictor)(predictor, candidate, list(_decode(predictor, photos.validation)),
                                      list(_decode(predictor, photos.calibration)))
        stored = {**result.to_dict(), "validation_photos": [Path(f).name for f in photos.validation]}
        model.save_validation(key, stored)
    return keep_if_checked(predictor, int8_engine, "int8", stored, rebuild)


def _check_key(predictor: BasePredictor) -> str:
    """What a stored check result depends on besides the files: the task's decision settings."""
    params = predictor.resolve_params({})
    relevant = {k: params[k] for k in sorted(params) if k in ("threshold", "score_threshold", "nms_threshold",
                                                                "keep_top_k", "class_agnostic")}
    return hashlib.sha256(json.dumps([type(predictor).__name__, relevant, CHECK_RULES],
                                     default=str).encode()).hexdigest()[:10]
