"""ResNet / ResNet_vd as PaddleClas builds them, on timm's ``ResNet`` class.

PaddleClas's ResNet is timm's (``vd``: timm's ``d`` variant: deep 32-32-64 stem, average-pool
downsampling) except where timm's registered models differ:

* ResNet18/34 (and _vd): PaddleClas gives the first block a 1x1 conv + BN shortcut
  (``use_first_short_conv``) even though its channels do not change; timm's has none;
* ResNet200_vd: PaddleClas stacks (3, 12, 48, 3) blocks, timm's ``resnet200d`` (3, 24, 36, 3).

ResNet50/101/152 (and _vd) are timm's ``resnet*`` / ``resnet*d`` as registered and are
built by the zoo directly; this module builds the other names.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn
from timm.models.resnet import BasicBlock, Bottleneck, ResNet, downsample_avg, downsample_conv

#: depth -> (block, blocks per stage), PaddleClas NET_CONFIG
DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 12, 48, 3)),
}


def paddle_resnet(depth: int, vd: bool, num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """PaddleClas ``ResNet{depth}`` (``vd``: ``ResNet{depth}_vd``) as a timm ``ResNet``."""
    block, layers = DEPTHS[depth]
    style = dict(stem_width=32, stem_type="deep", avg_down=True) if vd else {}
    model = ResNet(block, layers, num_classes=num_classes, **style, **kwargs)
    first = model.layer1[0]
    if first.downsample is None:  # PaddleClas's first-block shortcut conv (same channels, stride 1)
        channels = first.conv1.in_channels
        make = downsample_avg if vd else downsample_conv
        first.downsample = make(channels, channels * block.expansion, kernel_size=1, stride=1,
                                norm_layer=nn.BatchNorm2d)
    return model


def paddle_resnet_builder(depth: int, vd: bool) -> Callable[..., nn.Module]:
    """A registry builder for :func:`paddle_resnet`."""

    def build(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        return paddle_resnet(depth, vd, num_classes=num_classes, **kwargs)

    build.__qualname__ = f"paddle:ResNet{depth}{'_vd' if vd else ''}"
    return build
