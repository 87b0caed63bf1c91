"""MobileNetV2 as PaddleClas builds it (``model_zoo/mobilenet_v2.py``).

Why not timm's ``mobilenetv2_*``: PaddleClas (1) gives the first block a 1x1 expansion
conv (with BN and ReLU6) even at expansion 1, (2) scales every width with ``int(c * scale)``
(timm rounds to multiples of 8) and (3) keeps the 1280-wide head conv below scale 1. (1) and
(2) change parameter shapes, so PaddleX weights cannot be mapped onto timm's network.

torchvision's MobileNetV2 (and timm's ``mobilenetv2_100``) is PaddleClas's x1.0 without the
first expansion conv: its input is a ReLU6 output, so an identity conv + BN + ReLU6 passes
it through unchanged and such weights load exactly (``zoo.converters``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from .paddle_layers import ConvBN, TimmInterface

#: expansion t, channels c, blocks n, stride s (PaddleClas ``bottleneck_params_list``)
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 project; a residual on every block but a stage's first."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, residual: bool) -> None:
        super().__init__()
        mid = int(round(cin * expansion))
        self.residual = residual
        self.expand = ConvBN(cin, mid, 1, act="relu6")
        self.dw = ConvBN(mid, mid, 3, stride, groups=mid, act="relu6")
        self.project = ConvBN(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class PaddleMobileNetV2(TimmInterface):
    """PaddleClas ``MobileNetV2_x*``: ``stem``, ``stages`` (7), ``head_conv``, ``classifier`` (no dropout)."""

    group_rules = {"stem": r"^stem\.", "blocks": [(r"^stages\.(\d+)", None), (r"^head_conv\.", (99999,))]}

    def __init__(self, scale: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        cin = int(32 * scale)
        self.stem = ConvBN(3, cin, 3, 2, act="relu6")
        stages = []
        for expansion, channels, count, stride in STAGES:
            cout = int(channels * scale)
            stages.append(nn.Sequential(*(
                InvertedResidual(cin if i == 0 else cout, cout, stride if i == 0 else 1, expansion, residual=i > 0)
                for i in range(count))))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.num_features = int(1280 * scale) if scale > 1.0 else 1280
        self.head_conv = ConvBN(cin, self.num_features, 1, act="relu6")
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_conv(self.stages(self.stem(x)))

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


def paddle_mobilenet_v2_builder(scale: float) -> Callable[..., nn.Module]:
    """A registry builder for :class:`PaddleMobileNetV2`."""

    def build(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        return PaddleMobileNetV2(scale, num_classes=num_classes, **kwargs)

    build.__qualname__ = f"paddle:MobileNetV2_x{scale}"
    return build
