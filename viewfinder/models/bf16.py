"""``precision="bf16"``: a model's ONNX export run by OpenVINO in bfloat16, kept only where it
passed the same accuracy check as int8 (:mod:`.int8_check`) against fp32.

Why bf16 besides int8: on CPUs with native bf16 arithmetic (AVX512-BF16, AMX) OpenVINO runs the
networks about twice as fast as fp32, and bf16 keeps 8 exponent bits, so nothing needs
calibrating and the real models stay within the bar where int8 did not (docs/performance.md:
CenterNet boxes 100 % matched vs 11.5 % in int8; MobileNetV2 feature cosine min 0.999 vs 0.90).

``bf16`` asked for explicitly runs bf16 if the check passes, else fp32 with a warning; on a CPU
without bf16 arithmetic it runs fp32 with a warning (OpenVINO would emulate it or quietly compute
in fp32). ``auto`` tries bf16 first where the CPU has it and OpenVINO is installed, then int8.
The check's result is cached under ``$VIEWFINDER_HOME/onnx`` beside the export, keyed by the
export's contents, the check photos, OpenVINO's version and the kind of bf16 kernels.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..engines import cpu_features
from ..engines.onnx_cache import file_sha256
from ..engines.openvino_engine import OpenVinoEngine, openvino_available, openvino_version
from ..errors import ConfigError, EngineError
from ..io import DecodedImage
from .int8_check import CheckResult, check_for
from .predictor import BasePredictor

log = logging.getLogger(__name__)

#: "1": keep a reduced-precision model (int8 or bf16) that failed its check (speed runs only)
UNVALIDATED_ENV = "VIEWFINDER_INT8_UNVALIDATED"

Rebuild = Callable[[Any, str, "dict[str, Any] | None"], BasePredictor]


def onnx_runtime_engine(engine: Any) -> Any:
    """The ONNX Runtime engine that runs ``engine``'s file (a user's ONNX model wraps one)."""
    return getattr(engine, "inner", engine)


def bf16_refusal(predictor: BasePredictor) -> tuple[str, str] | None:
    """Why this predictor cannot run bf16 here, as (kind, message); kinds: "engine" (not ONNX
    Runtime on the CPU: there is no ONNX file to hand to OpenVINO), "task" (no accuracy check),
    "cpu" (no bf16 arithmetic), "package" (OpenVINO missing). None: it can."""
    name = predictor.model_name
    base = onnx_runtime_engine(predictor.engine)
    if getattr(base, "name", None) != "onnxruntime" or not hasattr(base, "path"):
        return "engine", (f"bf16 runs the model's ONNX export, and {name} runs on "
                          f"{getattr(predictor.engine, 'name', '?')}")
    device = getattr(base, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        return "engine", f"bf16 runs on the CPU only, and {name} runs on {device}"
    if check_for(predictor) is None:
        return "task", f"bf16 has no accuracy check for {name}'s task yet (detectors and feature models have one)"
    if cpu_features.bf16_arithmetic() is None:
        return "cpu", "this CPU has no bf16 arithmetic (AVX512-BF16 or AMX)"
    if not openvino_available():
        return "package", "bf16 runs on OpenVINO, which is not installed: pip install 'viewfinder[openvino]'"
    return None


def openvino_twin(engine: Any) -> Any:
    """``engine`` with OpenVINO in bf16 running its ONNX file, fed and read as before."""
    if hasattr(engine, "inner"):  # a user's ONNX file: keep its feed (layout, channel order, batching)
        twin = copy.copy(engine)
        twin.inner = OpenVinoEngine.like(engine.inner, "bf16")
        twin.name = "openvino"
        return twin
    return OpenVinoEngine.like(engine, "bf16")


def _record_path(predictor: BasePredictor, photo_digest: Callable[[], str], check_key: str) -> Path:
    source = Path(onnx_runtime_engine(predictor.engine).path)
    digest = hashlib.sha256(json.dumps([file_sha256(source), photo_digest(), check_key, openvino_version(),
                                        cpu_features.bf16_kernel_class()]).encode()).hexdigest()[:10]
    return source.with_name(f"{source.stem}-bf16-{digest}.json")


def apply_bf16(predictor: BasePredictor, precision: str, validation: Sequence[str] | None, gallery: Sequence[str],
               images_of: Callable[[Sequence[str]], list[DecodedImage]], photo_digest: Callable[[], str], check_key: str,
               rebuild: Rebuild) -> BasePredictor | None:
    """``predictor``'s bf16 twin if it passes the check; for ``auto``, None where bf16 does not
    apply or failed (the caller tries int8 next). ``validation`` None: too few check photos;
    ``photo_digest()`` names the check photos and how they become inputs (computed only when needed)."""
    name = predictor.model_name
    refusal = bf16_refusal(predictor)
    if precision == "auto":
        if refusal or validation is None:
            log.info("%s: precision auto does not use bf16: %s", name,
                     refusal[1] if refusal else "no photos to check it against fp32")
            return None
    elif refusal:
        kind, message = refusal
        if kind in ("task", "package"):
            raise ConfigError(f"{name}: precision 'bf16': {message}")
        log.warning("%s: precision 'bf16' not applied, running fp32: %s", name, message)
        return predictor
    elif validation is None:
        raise ConfigError(f"{name}: precision 'bf16' is checked against fp32 on photos, and there are too few: "
                          "pass calibration=FOLDER, set $VIEWFINDER_CALIBRATION, or run tools/seed_assets.py")
    try:
        engine = openvino_twin(predictor.engine)
    except EngineError as exc:
        if precision == "auto":
            log.info("%s: precision auto does not use bf16: %s", name, exc)
            return None
        log.warning("%s: bf16 is not available (%s); running fp32", name, exc)
        return predictor
    candidate = rebuild(engine, "bf16", None)
    record = _record_path(predictor, photo_digest, check_key)
    stored = _read_record(record)
    if stored is None:
        result = check_for(predictor)(predictor, candidate, images_of(validation), images_of(gallery))
        stored = {**result.to_dict(), "openvino": openvino_version(), "kernels": cpu_features.bf16_kernel_class()}
        record.write_text(json.dumps(stored, indent=1))
    check = CheckResult(bool(stored["ok"]), str(stored["summary"]), dict(stored.get("figures") or {}))
    if check.ok:
        log.info("%s: running bf16 on OpenVINO (%s)", name, check.summary)
        return rebuild(engine, "bf16", check.to_dict())
    if os.environ.get(UNVALIDATED_ENV) == "1":
        log.warning("%s: bf16 failed its accuracy check (%s) but runs bf16 anyway: $%s=1 (speed runs only)",
                    name, check.summary, UNVALIDATED_ENV)
        return rebuild(engine, "bf16", check.to_dict())
    if precision == "auto":
        log.info("%s: precision auto does not use bf16, which failed its accuracy check (%s)", name, check.summary)
        return None
    log.warning("%s: bf16 failed its accuracy check against fp32 (%s); running fp32", name, check.summary)
    return rebuild(predictor.engine, "fp32", check.to_dict())


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) and "ok" in stored and "summary" in stored else None
