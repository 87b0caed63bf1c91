"""Inference engines: run a network on a preprocessed NCHW float32 numpy batch.

``torch`` (CPU or CUDA) and ``onnxruntime`` (exported and cached on first use) share
one interface, :class:`Engine`; :func:`build_engine` picks one for a model.
"""
from ..errors import EngineError, EngineUnavailableError, ExportError
from .base import Engine, EngineOutput
from .export import ExportSettings, export_onnx, validate_export, weights_hash
from .onnx_engine import OnnxRuntimeEngine, onnxruntime_available
from .select import ENGINES, build_engine, choose_engine, normalize_engine
from .threads import physical_cores
from .torch_engine import TorchEngine

__all__ = [
    "ENGINES",
    "Engine",
    "EngineError",
    "EngineOutput",
    "EngineUnavailableError",
    "ExportError",
    "ExportSettings",
    "OnnxRuntimeEngine",
    "TorchEngine",
    "build_engine",
    "choose_engine",
    "export_onnx",
    "normalize_engine",
    "onnxruntime_available",
    "physical_cores",
    "validate_export",
    "weights_hash",
]
