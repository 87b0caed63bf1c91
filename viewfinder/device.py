"""Parse PaddleX-style device strings (``cpu``, ``gpu``, ``gpu:N``, ``cuda:N``) into torch devices."""
from __future__ import annotations

import re

import torch

from .errors import DeviceError

_DEVICE_RE = re.compile(r"^(cpu|gpu|cuda)(?::(\d+))?$")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Return the torch device for ``device``.

    ``None`` means GPU 0 when CUDA is available, else CPU (PaddleX's default).
    An unknown spelling or an unavailable GPU raises :class:`DeviceError`.
    """
    if isinstance(device, torch.device):
        return device
    if device is None or str(device).strip() == "":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    text = str(device).strip().lower()
    match = _DEVICE_RE.match(text)
    if not match:
        raise DeviceError(
            f"unknown device {device!r}: use 'cpu', 'gpu', 'gpu:N' or 'cuda:N'"
        )
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        if index not in (None, "0"):
            raise DeviceError(f"unknown device {device!r}: the CPU has no index other than 0")
        return torch.device("cpu")
    gpu_index = int(index or 0)
    if not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but no CUDA GPU is available on this machine")
    count = torch.cuda.device_count()
    if gpu_index >= count:
        raise DeviceError(f"device {device!r} requested but only {count} CUDA GPU(s) exist")
    return torch.device(f"cuda:{gpu_index}")
