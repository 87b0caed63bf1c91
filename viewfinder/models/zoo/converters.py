"""Key-layout converters: a foreign state_dict -> our module's state_dict keys."""
from __future__ import annotations

import re
from typing import Any

import torch

from ...errors import WeightsError

# torchvision MobileNetV2 features.1..17 -> PaddleMobileNetV2 stages.<stage>.<index>
_MNV2_STAGE_DEPTHS = (1, 2, 3, 4, 3, 3, 1)
_MNV2_BLOCK_OF_FEATURE: dict[int, tuple[int, int]] = {}
_feature = 1
for _stage, _depth in enumerate(_MNV2_STAGE_DEPTHS):
    for _index in range(_depth):
        _MNV2_BLOCK_OF_FEATURE[_feature] = (_stage, _index)
        _feature += 1

_MNV2_FIRST_BLOCK = {"conv.0.0": "dw.conv", "conv.0.1": "dw.bn", "conv.1": "project.conv", "conv.2": "project.bn"}
_MNV2_INVERTED = {
    "conv.0.0": "expand.conv", "conv.0.1": "expand.bn",
    "conv.1.0": "dw.conv", "conv.1.1": "dw.bn",
    "conv.2": "project.conv", "conv.3": "project.bn",
}
_FEATURE_KEY = re.compile(r"^features\.(\d+)\.(.+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
BN_EPS = 1e-5


def _identity_conv_bn(prefix: str, channels: int) -> dict[str, torch.Tensor]:
    """A 1x1 conv + BatchNorm (eval) that passes its input through unchanged."""
    return {
        f"{prefix}.conv.weight": torch.eye(channels).reshape(channels, channels, 1, 1),
        f"{prefix}.bn.weight": torch.ones(channels),
        f"{prefix}.bn.bias": torch.zeros(channels),
        f"{prefix}.bn.running_mean": torch.zeros(channels),
        f"{prefix}.bn.running_var": torch.full((channels,), 1.0 - BN_EPS),
    }


def torchvision_mobilenet_v2_to_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """torchvision ``mobilenet_v2`` keys -> :class:`~viewfinder.models.nets.paddle_mobilenet_v2.PaddleMobileNetV2` x1.0.

    Same layers in the same order, except PaddleClas's first block starts with a 1x1
    expansion conv + BN + ReLU6 that torchvision's lacks. Its input is the stem's ReLU6
    output (in [0, 6]), so an identity conv and BN make that layer pass it through exactly.
    """
    mapped: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("classifier.1."):
            mapped["classifier." + key.split(".", 2)[2]] = value
            continue
        match = _FEATURE_KEY.match(key)
        if not match:
            raise WeightsError(f"unexpected key {key!r} in a torchvision MobileNetV2 state_dict")
        feature, layer, param = int(match.group(1)), match.group(2), match.group(3)
        if feature in (0, 18):
            target = ("stem." if feature == 0 else "head_conv.") + {"0": "conv", "1": "bn"}[layer]
        else:
            stage, index = _MNV2_BLOCK_OF_FEATURE[feature]
            target = f"stages.{stage}.{index}." + (_MNV2_FIRST_BLOCK if feature == 1 else _MNV2_INVERTED)[layer]
        mapped[f"{target}.{param}"] = value
    if "stem.conv.weight" in mapped:
        mapped.update(_identity_conv_bn("stages.0.0.expand", int(mapped["stem.conv.weight"].shape[0])))
    return mapped
