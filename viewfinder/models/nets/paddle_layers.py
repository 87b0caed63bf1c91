"""Building blocks of the PaddleClas-faithful networks (``paddle_mobilenet_v2``, ``paddle_mobilenet_v3``).

* :class:`ConvBN`: PaddleClas's ``ConvBNLayer`` (bias-free conv, BatchNorm, optional activation);
* :class:`TimmInterface`: the parts of timm's classifier interface the package relies on
  (``forward_features`` / ``forward_head(pre_logits=)`` for pooled features,
  ``get_classifier`` for training export, ``group_matcher`` for ``freeze_groups``), so a
  faithful network serves every task a timm network serves.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


def make_divisible(value: float, divisor: int = 8) -> int:
    """PaddleClas's ``_make_divisible``: round to ``divisor``, never below 90 % of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBN(nn.Module):
    """Bias-free ``kernel`` x ``kernel`` conv (padding ``(kernel - 1) // 2``), BatchNorm, then ``act`` if given."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = ACTIVATIONS[act]() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class TimmInterface(nn.Module):
    """``forward = forward_head(forward_features(x))`` with timm's method names.

    Subclasses define ``forward_features``, ``pre_logits`` (pooled features -> the vector
    the classifier reads), ``classifier_name`` and ``group_rules`` (timm ``group_matcher``).
    """

    classifier_name = "classifier"
    #: timm group_matcher(coarse=True) rules: stem, then one group per stage (the head last)
    group_rules: dict[str, Any] = {}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(self.group_rules)
