"""Build timm networks by registered name or, for widths timm does not register, by its generators."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import timm
import torch.nn as nn


def timm_builder(arch: str, **fixed: Any) -> Callable[..., nn.Module]:
    """A builder for a timm-registered architecture."""

    def build(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        return timm.create_model(arch, pretrained=False, num_classes=num_classes, **fixed, **kwargs)

    build.__qualname__ = f"timm:{arch}"
    return build


def generator_builder(module: str, function: str, variant: str, multiplier: float,
                      **fixed: Any) -> Callable[..., nn.Module]:
    """A builder for a width timm only reaches through a generator (e.g. PP-LCNet x0.25); ``fixed``: its kwargs."""

    def build(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        import importlib

        generator = getattr(importlib.import_module(f"timm.models.{module}"), function)
        timm_logger = logging.getLogger("timm.models._builder")
        previous = timm_logger.level
        timm_logger.setLevel(logging.ERROR)  # "no pretrained config" is expected for these widths
        try:
            return generator(variant, multiplier, pretrained=False, num_classes=num_classes, **fixed, **kwargs)
        finally:
            timm_logger.setLevel(previous)

    build.__qualname__ = f"timm.{module}.{function}:{variant}"
    return build
