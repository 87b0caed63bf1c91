"""Pick and build the engine a model runs on.

``engine="auto"`` (the default, overridable with ``$VIEWFINDER_ENGINE``) runs ONNX
Runtime on CPU, 2-4x faster than torch eager on small CPUs, and torch on a GPU. It stays
on torch for randomly initialised networks (every run would export new weights) and
when onnxruntime is not installed. A model that fails to export, or whose export
does not match torch, runs on torch with a warning, for ``auto`` and ``onnxruntime`` alike.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError, EngineError, EngineUnavailableError, ExportError
from .base import Engine
from .export import ExportSettings
from .onnx_engine import cuda_provider_available, import_onnxruntime, onnxruntime_available
from .torch_engine import TorchEngine, set_cpu_threads

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnxruntime")
_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "pytorch": "torch"}
ENGINE_ENV = "VIEWFINDER_ENGINE"


def normalize_engine(engine: str | None) -> str:
    """``engine`` (None: ``$VIEWFINDER_ENGINE`` or "auto") checked and in canonical spelling."""
    if engine is None:
        engine = os.environ.get(ENGINE_ENV) or "auto"
    name = str(engine).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    return name


def choose_engine(engine: str | None, device: torch.device, random_weights: bool = False) -> str:
    """The concrete engine ("torch" or "onnxruntime") for a request on ``device``.

    Raises :class:`EngineUnavailableError` when "onnxruntime" is asked for and not installed.
    """
    name = normalize_engine(engine)
    if name == "onnxruntime":
        import_onnxruntime()  # a clear error when the package is missing
        if device.type == "cuda" and not cuda_provider_available():
            log.warning("engine 'onnxruntime' on %s needs onnxruntime-gpu, which is not installed; "
                        "running torch on the GPU instead", device)
            return "torch"
        return name
    if name == "torch":
        return name
    if device.type != "cpu" or random_weights:
        return "torch"
    if not onnxruntime_available():
        log.info("onnxruntime is not installed; engine 'auto' runs torch")
        return "torch"
    return "onnxruntime"


def build_engine(
    module: nn.Module,
    device: torch.device,
    model_name: str,
    input_size: tuple[int, int],
    engine: str | None = None,
    cpu_threads: int | None = None,
    random_weights: bool = False,
    fp16: bool = False,
    compile: bool = False,
    identity: dict[str, Any] | None = None,
    weights_digest: str | None = None,
) -> Engine:
    """The engine for ``module``: ONNX Runtime (exported and cached on first use) or torch.

    ``input_size`` is the network input (height, width) the export is traced at;
    ``weights_digest`` is ``weights_hash(module)`` if the caller computed it already.
    """
    chosen = choose_engine(engine, device, random_weights)
    if device.type == "cpu":
        # torch runs the export and validation even when ONNX Runtime serves predictions
        set_cpu_threads(cpu_threads)
    if chosen == "onnxruntime":
        from .onnx_cache import load_or_export

        try:
            onnx_engine = load_or_export(model_name, module, ExportSettings(input_size=tuple(input_size)), device,
                                         cpu_threads, identity, weights_digest)
            # Saving a model dir or fine-tuning needs the torch module whichever engine predicts.
            onnx_engine.module = module.eval()
            return onnx_engine
        except (ExportError, EngineError) as exc:
            if isinstance(exc, EngineUnavailableError) and normalize_engine(engine) == "onnxruntime":
                raise
            log.warning("%s cannot run on ONNX Runtime (%s); falling back to torch", model_name, exc)
    return TorchEngine(module, device, fp16=fp16, compile=compile)
