"""PyTorch eager engine (CPU or CUDA).

On CUDA the network runs channels_last (what cuDNN's convolution kernels prefer) and,
when asked, under fp16 autocast. ``torch.compile`` is opt-in: it costs tens of seconds
per model before the first result, which a one-off CLI run never wins back.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn as nn

from ..errors import EngineError
from .base import EngineOutput

log = logging.getLogger(__name__)


def set_cpu_threads(threads: int | None) -> None:
    """torch's intra-op pool is process-wide: set it once, before the first forward."""
    if threads:
        torch.set_num_threads(int(threads))


class TorchEngine:
    """NCHW float32 numpy (or a torch tensor already on the device) in; numpy or a dict of arrays out."""

    name = "torch"

    def __init__(self, module: nn.Module, device: torch.device, fp16: bool = False,
                 compile: bool = False, channels_last: bool | None = None) -> None:
        self.device = device
        # fp16 autocast only pays off (and is only safe) on CUDA.
        self.fp16 = bool(fp16 and device.type == "cuda")
        self.channels_last = device.type == "cuda" if channels_last is None else bool(channels_last)
        module = module.eval().to(device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self._forward = module
        if compile:
            try:
                self._forward = torch.compile(module)
            except Exception as exc:  # no compiler toolchain, unsupported platform ...
                raise EngineError(f"torch.compile is not usable here: {exc}") from None

    def to_device(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            tensor = batch.to(self.device, torch.float32, non_blocking=True)
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            if self.device.type == "cuda":
                tensor = tensor.pin_memory()  # lets the copy below overlap with host work
            tensor = tensor.to(self.device, non_blocking=True)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray | torch.Tensor) -> EngineOutput:
        tensor = self.to_device(batch)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16):
            output = self._forward(tensor)
        if isinstance(output, dict):
            return {key: value.float().cpu().numpy() for key, value in output.items()}
        if isinstance(output, (tuple, list)):
            return {f"output_{i}": value.float().cpu().numpy() for i, value in enumerate(output)}
        return output.float().cpu().numpy()
