"""ONNX Runtime engine: CPU execution provider, or CUDA when onnxruntime-gpu is installed.

Sessions run with ``cpu_threads`` intra-op threads and one inter-op thread, and idle
intra-op threads do not spin (``allow_spinning=0``). Issue 30 suspected that setting for the
detector's low core use and tried spinning during runs (``session.force_spinning_stop``), but
measured on a quiet 2-core EPYC (benchmarks/shitu.py --ab, one-crop, 2 threads): 132 ms/img
with spinning off against 162 with spinning during runs, both cores busy either way (the
detector now runs in a thread of its own, overlapped with recognition); ONNX Runtime's
default (spinning between runs too) burns the cores that decoding and the other model need.
``$VIEWFINDER_ORT_SPINNING`` (``run`` | ``off`` | ``always``) overrides this, for A/B timings.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, EngineError, EngineUnavailableError
from .base import EngineOutput
from .threads import resolve_cpu_threads

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'viewfinder[onnx]' (or onnxruntime-gpu for CUDA)"


def import_onnxruntime() -> ModuleType:
    """The onnxruntime module, or :class:`EngineUnavailableError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailableError(
            f"engine 'onnxruntime' needs the onnxruntime package, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return onnxruntime


def onnxruntime_available() -> bool:
    try:
        import_onnxruntime()
    except EngineUnavailableError:
        return False
    return True


def cuda_provider_available() -> bool:
    try:
        ort = import_onnxruntime()
    except EngineUnavailableError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


SPINNING_ENV = "VIEWFINDER_ORT_SPINNING"
SPINNING_MODES = ("run", "off", "always")


def spinning_mode() -> str:
    """How idle intra-op threads wait: ``run`` (spin during a run, sleep between runs; the default),
    ``off`` (always sleep) or ``always`` (ONNX Runtime's default)."""
    mode = (os.environ.get(SPINNING_ENV) or "off").strip().lower()
    if mode not in SPINNING_MODES:
        raise ConfigError(f"${SPINNING_ENV} must be one of {', '.join(SPINNING_MODES)}, got {mode!r}")
    return mode


def session_options(cpu_threads: int | None) -> Any:
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = resolve_cpu_threads(cpu_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    mode = spinning_mode()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0" if mode == "off" else "1")
    if mode == "run":  # workers stay hot across one run's ~100 parallel sections, then sleep
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")  # sequential: no inter-op pool
    # Flush denormals: they cost 10-100x per operation and carry no signal at inference time.
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    options.log_severity_level = 3  # errors only: ORT's graph-optimiser notes are not for users
    return options


def device_for_onnx_file(device: torch.device, model: str) -> torch.device:
    """Where a model that exists only as an ONNX file (a user's detector or multi-label model) runs.

    CUDA needs onnxruntime-gpu; without it there is no torch twin to fall back to, so it runs on
    ONNX Runtime's CPU provider. :func:`providers_for` then turns the device into providers.
    """
    if device.type == "cuda" and not cuda_provider_available():
        log.warning("%s runs on the CPU: it is an ONNX model and the installed onnxruntime has no CUDA "
                    "execution provider (install onnxruntime-gpu to run it on %s)", model, device)
        return torch.device("cpu")
    return device


def providers_for(device: torch.device) -> list[Any]:
    """Execution providers for ``device``; CUDA needs the onnxruntime-gpu build."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        if not cuda_provider_available():
            raise EngineUnavailableError(
                f"engine 'onnxruntime' on {device} needs onnxruntime-gpu (CUDAExecutionProvider is not "
                "available in the installed onnxruntime)"
            )
        # TF32 matmuls/convs would differ from torch's fp32 by ~1e-3 and fail export validation.
        return [("CUDAExecutionProvider", {"device_id": device.index or 0, "use_tf32": 0}), "CPUExecutionProvider"]
    raise EngineUnavailableError(f"engine 'onnxruntime' does not support device {device}")


class OnnxRuntimeEngine:
    """Runs an ONNX file: NCHW float32 numpy in, numpy (one output) or a dict of named arrays out.

    ``output_kind`` mirrors what the torch module returned ("tensor" or "dict"), so both
    engines hand predictors the same structure.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: torch.device | None = None, cpu_threads: int | None = None,
                 output_kind: str = "tensor") -> None:
        ort = import_onnxruntime()
        self.path = Path(path)
        self.device = device or torch.device("cpu")
        self.cpu_threads = resolve_cpu_threads(cpu_threads)
        self.output_kind = output_kind
        #: the torch module this file was exported from, when known (set by build_engine)
        self.module: torch.nn.Module | None = None
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=session_options(self.cpu_threads), providers=providers_for(self.device)
            )
        except EngineError:
            raise
        except Exception as exc:  # ORT raises its own types for unreadable or invalid models
            raise EngineError(f"onnxruntime cannot load {self.path}: {exc}") from None
        self.input_name = self.session.get_inputs()[0].name
        #: what the input is fed as: float32 for our exports; a user's ONNX file may take another type
        self.input_dtype: type[np.generic] = np.float32
        self.output_names = [output.name for output in self.session.get_outputs()]

    def feeds(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """What ``run()`` is fed for a preprocessed batch (int8 calibration feeds the same)."""
        return {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)}

    def with_file(self, path: str | Path, cpu_threads: int | None = None) -> "OnnxRuntimeEngine":
        """The same engine (device, threads unless given, inputs, outputs) over another ONNX file of
        the same network, e.g. its int8 version."""
        other = OnnxRuntimeEngine(path, self.device, cpu_threads or self.cpu_threads, self.output_kind)
        other.module = self.module
        other.input_name, other.input_dtype = self.input_name, self.input_dtype
        other.output_names = list(self.output_names)
        return other

    def for_lanes(self, lanes: int) -> "OnnxRuntimeEngine | None":
        """An engine ``lanes`` threads may call at once, each call running on its caller's thread
        alone (a session's ``run`` is thread-safe; one intra-op thread keeps it on the caller), for
        PP-ShiTuV2's lanes (pipelines/lanes.py). None on a GPU, where lanes do not apply."""
        return self.with_file(self.path, cpu_threads=1) if self.device.type == "cpu" else None

    def __call__(self, batch: np.ndarray) -> EngineOutput:
        outputs = self.session.run(self.output_names, self.feeds(batch))
        if self.output_kind == "tensor" and len(outputs) == 1:
            return outputs[0]
        return dict(zip(self.output_names, outputs))
