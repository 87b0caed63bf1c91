"""Inference engines: run a network on a preprocessed NCHW float32 numpy batch."""
from .base import Engine
from .torch_engine import TorchEngine

__all__ = ["Engine", "TorchEngine"]
