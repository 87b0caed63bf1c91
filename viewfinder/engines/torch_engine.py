"""PyTorch eager engine (CPU or CUDA)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .base import EngineOutput


def set_cpu_threads(threads: int | None) -> None:
    """torch's intra-op pool is process-wide: set it once, before the first forward."""
    if threads:
        torch.set_num_threads(int(threads))


class TorchEngine:
    name = "torch"

    def __init__(self, module: nn.Module, device: torch.device, fp16: bool = False) -> None:
        self.device = device
        self.module = module.eval().to(device)
        # fp16 autocast only pays off (and is only safe) on CUDA.
        self.fp16 = bool(fp16 and device.type == "cuda")

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> EngineOutput:
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, non_blocking=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16):
            output = self.module(tensor)
        if isinstance(output, dict):
            return {key: value.float().cpu().numpy() for key, value in output.items()}
        if isinstance(output, (tuple, list)):
            return {f"output_{i}": value.float().cpu().numpy() for i, value in enumerate(output)}
        return output.float().cpu().numpy()
