"""Key-layout converters: a foreign state_dict -> our module's state_dict keys."""
from __future__ import annotations

import re
from typing import Any

from ...errors import WeightsError

# torchvision MobileNetV2 features.2..17 -> timm blocks.<stage>.<index>
_MNV2_STAGE_DEPTHS = (2, 3, 4, 3, 3, 1)
_MNV2_BLOCK_OF_FEATURE: dict[int, tuple[int, int]] = {}
_feature = 2
for _stage, _depth in enumerate(_MNV2_STAGE_DEPTHS, start=1):
    for _index in range(_depth):
        _MNV2_BLOCK_OF_FEATURE[_feature] = (_stage, _index)
        _feature += 1

_MNV2_FIRST_BLOCK = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_MNV2_INVERTED = {
    "conv.0.0": "conv_pw", "conv.0.1": "bn1",
    "conv.1.0": "conv_dw", "conv.1.1": "bn2",
    "conv.2": "conv_pwl", "conv.3": "bn3",
}
_FEATURE_KEY = re.compile(r"^features\.(\d+)\.(.+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def torchvision_mobilenet_v2_to_timm(state: dict[str, Any]) -> dict[str, Any]:
    """Map torchvision ``mobilenet_v2`` keys onto timm ``mobilenetv2_100`` keys (same layers, same order)."""
    mapped: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("classifier.1."):
            mapped["classifier." + key.split(".", 2)[2]] = value
            continue
        match = _FEATURE_KEY.match(key)
        if not match:
            raise WeightsError(f"unexpected key {key!r} in a torchvision MobileNetV2 state_dict")
        feature, layer, param = int(match.group(1)), match.group(2), match.group(3)
        if feature == 0:
            target = {"0": "conv_stem", "1": "bn1"}[layer]
        elif feature == 18:
            target = {"0": "conv_head", "1": "bn2"}[layer]
        elif feature == 1:
            target = "blocks.0.0." + _MNV2_FIRST_BLOCK[layer]
        else:
            stage, index = _MNV2_BLOCK_OF_FEATURE[feature]
            target = f"blocks.{stage}.{index}." + _MNV2_INVERTED[layer]
        mapped[f"{target}.{param}"] = value
    return mapped
