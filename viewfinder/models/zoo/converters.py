"""Key-layout converters: a foreign state_dict -> our module's state_dict keys."""
from __future__ import annotations

import re
from typing import Any

import torch


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
    Keys it does not know are kept, for the loader's key report.
    """
    mapped: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("classifier.1."):
            mapped["classifier." + key.split(".", 2)[2]] = value
            continue
        match = _FEATURE_KEY.match(key)
        if not match:  # not torchvision's: kept, for the loader's key report (another layout may fit)
            mapped[key] = value
            continue
        feature, layer, param = int(match.group(1)), match.group(2), match.group(3)
        if feature in (0, 18):
            part = {"0": "conv", "1": "bn"}.get(layer)
            target = part and ("stem." if feature == 0 else "head_conv.") + part
        elif feature in _MNV2_BLOCK_OF_FEATURE:
            stage, index = _MNV2_BLOCK_OF_FEATURE[feature]
            part = (_MNV2_FIRST_BLOCK if feature == 1 else _MNV2_INVERTED).get(layer)
            target = part and f"stages.{stage}.{index}.{part}"
        else:
            target = None
        mapped[f"{target}.{param}" if target else key] = value
    if "stem.conv.weight" in mapped:
        mapped.update(_identity_conv_bn("stages.0.0.expand", int(mapped["stem.conv.weight"].shape[0])))
    return mapped


# timm mobilenetv2_100 (the layout of model dirs saved before the zoo built PaddleClas's network)
_TIMM_MNV2_FIRST = {"conv_dw": "dw.conv", "bn1": "dw.bn", "conv_pw": "project.conv", "bn2": "project.bn"}
_TIMM_MNV2_INVERTED = {"conv_pw": "expand.conv", "bn1": "expand.bn", "conv_dw": "dw.conv", "bn2": "dw.bn",
                       "conv_pwl": "project.conv", "bn3": "project.bn"}
_TIMM_MNV2_TOP = {"conv_stem": "stem.conv", "bn1": "stem.bn", "conv_head": "head_conv.conv", "bn2": "head_conv.bn",
                  "classifier": "classifier"}
_TIMM_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(\d+)\.(\w+)\.(\w+)$")


def timm_mobilenet_v2_to_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """timm ``mobilenetv2_100`` keys -> PaddleMobileNetV2 x1.0 (as :func:`torchvision_mobilenet_v2_to_paddle`).

    Keeps model dirs saved while MobileNetV2_x1_0 was timm's network loadable. Keys it does
    not know are kept, for the loader's key report.
    """
    mapped: dict[str, Any] = {}
    for key, value in state.items():
        head, _, param = key.rpartition(".")
        match = _TIMM_BLOCK_KEY.match(key)
        if head in _TIMM_MNV2_TOP:
            mapped[f"{_TIMM_MNV2_TOP[head]}.{param}"] = value
        elif match and match.group(3) in (_TIMM_MNV2_FIRST if match.group(1) == "0" else _TIMM_MNV2_INVERTED):
            parts = _TIMM_MNV2_FIRST if match.group(1) == "0" else _TIMM_MNV2_INVERTED
            mapped[f"stages.{match.group(1)}.{match.group(2)}.{parts[match.group(3)]}.{param}"] = value
        else:
            mapped[key] = value
    if "stem.conv.weight" in mapped:
        mapped.update(_identity_conv_bn("stages.0.0.expand", int(mapped["stem.conv.weight"].shape[0])))
    return mapped


def timm_resnet_first_shortcut(vd: bool):
    """timm ``resnet18/34(d)`` keys -> PaddleClas's network: an identity first-block shortcut conv where it is absent.

    ``layer1.0`` adds its input unchanged in timm's network; a 1x1 identity conv + BN does the
    same in PaddleClas's, so model dirs saved while these names built timm's network still load.
    """
    prefix = "layer1.0.downsample." + ("1" if vd else "0")
    bn_prefix = "layer1.0.downsample." + ("2" if vd else "1")

    def convert(state: dict[str, Any]) -> dict[str, Any]:
        mapped = dict(state)
        if f"{prefix}.weight" not in mapped and "layer1.0.conv1.weight" in mapped:
            identity = _identity_conv_bn("shortcut", int(mapped["layer1.0.conv1.weight"].shape[1]))
            mapped.update({key.replace("shortcut.conv", prefix).replace("shortcut.bn", bn_prefix): value
                           for key, value in identity.items()})
        return mapped

    return convert
