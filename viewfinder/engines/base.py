"""The engine interface every backend implements."""
from __future__ import annotations

from typing import Protocol, Union

import numpy as np

EngineOutput = Union[np.ndarray, dict[str, np.ndarray]]


class Engine(Protocol):
    """Runs the network alone: NCHW float32 numpy in, numpy (or a dict of named arrays) out."""

    name: str

    def __call__(self, batch: np.ndarray) -> EngineOutput: ...
