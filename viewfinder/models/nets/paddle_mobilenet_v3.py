"""MobileNetV3 as PaddleClas builds it (``legendary_models/mobilenet_v3.py``), parameter names included.

Why not timm's ``mobilenetv3_*``: PaddleClas (1) gives the first block a 1x1 expansion
conv even at expansion 1, (2) sizes SE layers ``channels // 4`` without rounding and gates
them with ``clamp(0.2x + 0.5, 0, 1)`` (timm: rounded to 8, ``relu6(x + 3) / 6``), (3) rounds
every expansion width from the unscaled config and (4) ends in a 1280-wide bias-free
``last_conv`` for both sizes (timm: 1024 for small, with a bias). (1), (3) and (4) change
parameter shapes, so the weights cannot be mapped onto timm's network.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from .paddle_layers import ConvBN, TimmInterface, make_divisible

# k, expansion channels, out channels, SE, activation, stride (PaddleClas NET_CONFIG)
CONFIG: dict[str, list[tuple[int, int, int, bool, str, int]]] = {
    "large": [
        (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hardswish", 2), (3, 200, 80, False, "hardswish", 1),
        (3, 184, 80, False, "hardswish", 1), (3, 184, 80, False, "hardswish", 1),
        (3, 480, 112, True, "hardswish", 1), (3, 672, 112, True, "hardswish", 1),
        (5, 672, 160, True, "hardswish", 2), (5, 960, 160, True, "hardswish", 1),
        (5, 960, 160, True, "hardswish", 1),
    ],
    "small": [
        (3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hardswish", 2), (5, 240, 40, True, "hardswish", 1),
        (5, 240, 40, True, "hardswish", 1), (5, 120, 48, True, "hardswish", 1),
        (5, 144, 48, True, "hardswish", 1), (5, 288, 96, True, "hardswish", 2),
        (5, 576, 96, True, "hardswish", 1), (5, 576, 96, True, "hardswish", 1),
    ],
}
SQUEEZE = {"large": 960, "small": 576}


class SE(nn.Module):
    """PaddleClas SE: ``channel // 4`` (no rounding), ReLU, hard-sigmoid with slope 0.2 (timm: 1/6)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels // 4, 1)
        self.conv2 = nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv2(torch.relu(self.conv1(x.mean((2, 3), keepdim=True))))
        return x * torch.clamp(gate * 0.2 + 0.5, 0.0, 1.0)


class Residual(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, kernel: int, stride: int, se: bool, act: str) -> None:
        super().__init__()
        self.shortcut = stride == 1 and cin == cout
        self.expand_conv = ConvBN(cin, mid, 1, act=act)
        self.bottleneck_conv = ConvBN(mid, mid, kernel, stride, groups=mid, act=act)
        self.mid_se = SE(mid) if se else None
        self.linear_conv = ConvBN(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bottleneck_conv(self.expand_conv(x))
        if self.mid_se is not None:
            y = self.mid_se(y)
        y = self.linear_conv(y)
        return x + y if self.shortcut else y


class PaddleMobileNetV3(TimmInterface):
    """PaddleClas ``MobileNetV3_{large,small}_x*``: ``conv``, ``blocks``, ``last_second_conv``, ``last_conv``, ``fc``."""

    classifier_name = "fc"
    group_rules = {"stem": r"^conv\.", "blocks": [(r"^blocks\.(\d+)", None), (r"^last_second_conv\.", (99999,))]}

    def __init__(self, size: str = "large", scale: float = 1.0, num_classes: int = 1000,
                 class_expand: int = 1280) -> None:
        super().__init__()
        stem = make_divisible(16 * scale)
        self.conv = ConvBN(3, stem, 3, 2, act="hardswish")
        blocks = []
        cin = stem
        for kernel, expansion, cout, se, act, stride in CONFIG[size]:
            out = make_divisible(scale * cout)
            blocks.append(Residual(cin, make_divisible(scale * expansion), out, kernel, stride, se, act))
            cin = out
        self.blocks = nn.Sequential(*blocks)
        squeeze = make_divisible(scale * SQUEEZE[size])
        self.last_second_conv = ConvBN(cin, squeeze, 1, act="hardswish")
        self.last_conv = nn.Conv2d(squeeze, class_expand, 1, bias=False)
        self.hardswish = nn.Hardswish()
        self.fc = nn.Linear(class_expand, num_classes)
        self.num_features = class_expand

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_second_conv(self.blocks(self.conv(x)))

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.hardswish(self.last_conv(x.mean((2, 3), keepdim=True))).flatten(1)


def paddle_mobilenet_v3_builder(size: str, scale: float) -> Callable[..., nn.Module]:
    """A registry builder for :class:`PaddleMobileNetV3`."""

    def build(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        return PaddleMobileNetV3(size, scale, num_classes=num_classes, **kwargs)

    build.__qualname__ = f"paddle:MobileNetV3_{size}_x{scale}"
    return build
