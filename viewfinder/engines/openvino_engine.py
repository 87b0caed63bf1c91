"""OpenVINO engine: runs a model's ONNX export in bfloat16 on CPUs that compute in it natively.

Why a second runtime: on a 2-core AVX-512 EPYC, ONNX Runtime's CPU kernels run the networks in
fp32 only (its int8 path loses too much accuracy on the real models, docs/performance.md), while
OpenVINO's CPU plugin runs convolutions and matrix products in bf16 (AVX512-BF16 or AMX), about
twice as fast, with errors far inside issue 30's accuracy bar on the real models. PaddleX's
high-performance inference offers OpenVINO too, so this is an engine its users already run.

It only ever serves ``precision="bf16"`` (:mod:`viewfinder.models.bf16`); in fp32 OpenVINO was
measured no faster than ONNX Runtime here, so fp32 stays on ONNX Runtime. Optional:
``pip install 'viewfinder[openvino]'``; nothing imports ``openvino`` unless bf16 is asked for.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import EngineError, EngineUnavailableError
from .base import EngineOutput

INSTALL_HINT = "pip install 'viewfinder[openvino]'"
#: OpenVINO's names for the inference precisions this engine offers
INFERENCE_PRECISIONS = {"bf16": "bf16", "fp32": "f32"}


def import_openvino() -> ModuleType:
    """The openvino module, or :class:`EngineUnavailableError` saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise EngineUnavailableError(
            f"precision 'bf16' runs on OpenVINO, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return openvino


def openvino_available() -> bool:
    try:
        import_openvino()
    except EngineUnavailableError:
        return False
    return True


def openvino_version() -> str:
    return str(import_openvino().__version__)


class OpenVinoEngine:
    """Runs an ONNX file on OpenVINO's CPU plugin with the feeds and outputs of an ONNX Runtime
    engine over the same file (:meth:`like`), so predictors cannot tell the two apart.

    One compiled model per engine; each calling thread gets its own infer request (a request is
    not safe to share between threads, and the service calls one engine from several workers).
    """

    name = "openvino"

    def __init__(self, path: str | Path, cpu_threads: int, precision: str = "bf16", *, input_name: str,
                 output_names: list[str], output_kind: str = "tensor", input_dtype: type[np.generic] = np.float32,
                 device: Any = None) -> None:
        if precision not in INFERENCE_PRECISIONS:
            raise EngineError(f"OpenVINO engine: unknown precision {precision!r}; use one of "
                              f"{', '.join(INFERENCE_PRECISIONS)}")
        ov = import_openvino()
        self.path = Path(path)
        self.cpu_threads = int(cpu_threads)
        self.precision = precision
        self.device = device
        self.input_name, self.input_dtype = input_name, input_dtype
        self.output_names = list(output_names)
        self.output_kind = output_kind
        #: the torch module the file was exported from, when known (kept for saving and fine-tuning)
        self.module: Any = None
        config = {
            "INFERENCE_NUM_THREADS": self.cpu_threads,
            "PERFORMANCE_HINT": "LATENCY",  # one stream: the threads asked for work on one image at a time
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISIONS[precision],
            # ONNX Runtime's sessions and our decode threads share these cores: pinned OpenVINO
            # threads would fight them for the same CPUs instead of letting the OS balance.
            "ENABLE_CPU_PINNING": False,
        }
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable/unsupported models
            raise EngineError(f"OpenVINO cannot compile {self.path}: {exc}") from None
        by_name: dict[str, Any] = {}
        for port in self.compiled.outputs:
            for port_name in port.get_names():
                by_name[port_name] = port
        missing = [n for n in self.output_names if n not in by_name]
        if missing:
            raise EngineError(f"OpenVINO's compiled {self.path.name} has no output(s) {missing}")
        self._ports = by_name
        self._local = threading.local()

    @classmethod
    def like(cls, engine: Any, precision: str = "bf16") -> "OpenVinoEngine":
        """An OpenVINO engine over ``engine``'s ONNX file, fed and read as ``engine`` is
        (an :class:`~viewfinder.engines.onnx_engine.OnnxRuntimeEngine`)."""
        twin = cls(engine.path, engine.cpu_threads, precision, input_name=engine.input_name,
                   output_names=list(engine.output_names), output_kind=engine.output_kind,
                   input_dtype=engine.input_dtype, device=getattr(engine, "device", None))
        twin.module = getattr(engine, "module", None)
        return twin

    def for_lanes(self, lanes: int) -> "OpenVinoLanes":
        """``lanes`` one-thread copies of this engine that ``lanes`` threads may call at once, for
        PP-ShiTuV2's lanes (pipelines/lanes.py). Separate compiled models, not one model with a
        stream per lane: measured faster here (benchmarks/shitu_schedules.py, bf16)."""
        return OpenVinoLanes([self._one_thread() for _ in range(lanes)])

    def _one_thread(self) -> "OpenVinoEngine":
        twin = OpenVinoEngine(self.path, 1, self.precision, input_name=self.input_name,
                              output_names=list(self.output_names), output_kind=self.output_kind,
                              input_dtype=self.input_dtype, device=self.device)
        twin.module = self.module
        return twin

    def feeds(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)}

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def __call__(self, batch: np.ndarray) -> EngineOutput:
        results = self._request().infer(self.feeds(batch))
        # copies: the request reuses its output buffers on the next call
        outputs = [np.array(results[self._ports[name]]) for name in self.output_names]
        if self.output_kind == "tensor" and len(outputs) == 1:
            return outputs[0]
        return dict(zip(self.output_names, outputs))


class OpenVinoLanes:
    """Several one-thread OpenVINO engines over one file, used as one: each call runs on whichever
    is free, so as many threads as there are engines run side by side, one core each."""

    name = "openvino"

    def __init__(self, engines: list[OpenVinoEngine]) -> None:
        self.engines = list(engines)
        self._free: queue.SimpleQueue[OpenVinoEngine] = queue.SimpleQueue()
        for engine in self.engines:
            self._free.put(engine)

    def __getattr__(self, name: str) -> Any:  # path, input_name, output_names, cpu_threads (1), ...
        if name == "engines":  # not set yet (copy, pickle): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.engines[0], name)

    def __call__(self, batch: np.ndarray) -> EngineOutput:
        engine = self._free.get()
        try:
            return engine(batch)
        finally:
            self._free.put(engine)
