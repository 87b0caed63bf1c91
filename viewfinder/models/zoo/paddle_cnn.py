"""PaddleClas / PaddleX ``.pdparams`` -> our networks, for the CNN families.

PP-LCNetV2, PP-HGNet, MobileNetV1 and ResNet50/101/152 (and _vd) map onto timm's networks;
MobileNetV2, MobileNetV3, ResNet18/34 (and _vd) and ResNet200_vd onto PaddleClas-faithful
networks (:mod:`..nets.paddle_mobilenet_v2`, :mod:`..nets.paddle_mobilenet_v3`,
:mod:`..nets.paddle_resnet`). PP-LCNet's converter lives in :mod:`.paddle_classifiers`
(PP-ShiTuV2's detector shares its renames).

Besides renames, a converter transposes Paddle's ``[in, out]`` Linear weights, renames
BatchNorm ``_mean`` / ``_variance`` and folds PaddleClas's inference-time dropout scaling
(``Dropout(p, mode="downscale_in_infer")`` multiplies by ``1 - p`` before the classifier,
a linear layer, so ``1 - p`` goes into its weight). ``tools/parity/sweep.py`` checks every
name against Paddle's own outputs.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..nets.paddle_resnet import DEPTHS as RESNET_DEPTHS
from .paddle_converters import (
    BN_RENAMES,
    Converter,
    as_array,
    block_index_map,
    bn_rename,
    copy_linear,
    rename_keys,
)


def _with_classifier(body: dict[str, Any], state: dict[str, Any], src: str, dst: str,
                     keep: float = 1.0) -> dict[str, Any]:
    copy_linear(state, src, dst, body, scale=keep)
    return body


# --- PP-LCNetV2 (timm ``lcnetv2_*``) -------------------------------------------------------

#: PaddleClas LCNetV2 block parts -> timm names (shared with PP-ShiTuV2_rec's trunk)
LCNETV2_RENAMES = (
    (r"\.se\.conv1\.", ".se.fc1."),  # timm.layers.SqueezeExcite
    (r"\.se\.conv2\.", ".se.fc2."),
    (r"\.pw_conv_1\.", ".pw_conv.0."),
    (r"\.pw_conv_2\.", ".pw_conv.1."),
)
#: the fused conv of a re-parameterisable block: unused (and untrained) before re-parameterisation
LCNETV2_UNUSED = r"\.dw_conv\.(weight|bias)$"


def lcnetv2_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleClas ``PPLCNetV2_*`` -> timm ``lcnetv2_*`` (dropout 0.2 folded into the classifier)."""
    body = rename_keys(state, LCNETV2_RENAMES + ((r"^last_conv\.", "conv_head."),) + BN_RENAMES,
                       drop=(LCNETV2_UNUSED, r"^fc\."))
    return _with_classifier(body, state, "fc", "classifier", keep=0.8)


# --- PP-HGNet (timm ``hgnet_*``) -----------------------------------------------------------

_HGNET_RENAMES = (
    (r"^stem\.", "stem.stem."),
    (r"\.aggregation_conv\.", ".aggregation.0."),
    (r"\.att\.", ".aggregation.1."),
    (r"^last_conv\.", "head.last_conv.0."),
)


def hgnet_converter(keep: float) -> Converter:
    """PaddleClas ``PPHGNet_*`` -> timm ``hgnet_*``; ``keep``: 1 - the model's dropout_prob (base: 0.2)."""

    def convert(state: dict[str, Any]) -> dict[str, Any]:
        body = rename_keys(state, _HGNET_RENAMES + BN_RENAMES, drop=(r"^fc\.",))
        return _with_classifier(body, state, "fc", "head.fc", keep)

    return convert


# --- MobileNetV1 (timm ``mobilenetv1_*``, ReLU) ----------------------------------------------

#: PaddleClas's 13 flat blocks -> timm's 5 stages of (1, 2, 2, 6, 2)
_MOBILENET_V1_BLOCKS = block_index_map((13,), (1, 2, 2, 6, 2))
_MOBILENET_V1_PARTS = {"depthwise_conv.conv": "conv_dw", "depthwise_conv.bn": "bn1",
                       "pointwise_conv.conv": "conv_pw", "pointwise_conv.bn": "bn2"}


def _mobilenet_v1_block(match: re.Match[str]) -> str:
    stage, index = _MOBILENET_V1_BLOCKS[(0, int(match.group(1)))]
    return f"blocks.{stage}.{index}.{_MOBILENET_V1_PARTS[match.group(2)]}."


def mobilenet_v1_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleClas ``MobileNetV1*`` -> timm ``mobilenetv1_*`` built with ReLU (no dropout)."""
    renames = (
        (r"^conv\.conv\.", "conv_stem."),
        (r"^conv\.bn\.", "bn1."),
        (r"^blocks\.(\d+)\.((?:depthwise|pointwise)_conv\.(?:conv|bn))\.", _mobilenet_v1_block),
    )
    body = rename_keys(state, renames + BN_RENAMES, drop=(r"^fc\.",))
    return _with_classifier(body, state, "fc", "classifier")


# --- MobileNetV2 (:class:`PaddleMobileNetV2`) ---------------------------------------------

_MOBILENET_V2_RENAMES = (
    (r"^conv1\.", "stem."),
    (r"^conv9\.", "head_conv."),
    (r"^conv(\d)\._first_block\.", lambda m: f"stages.{int(m.group(1)) - 2}.0."),
    (r"^conv(\d)\.conv\d_(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 2}.{int(m.group(2)) - 1}."),
    (r"\._expand_conv\.", ".expand."),
    (r"\._bottleneck_conv\.", ".dw."),
    (r"\._linear_conv\.", ".project."),
    (r"\._conv\.", ".conv."),
    (r"\._batch_norm\.", ".bn."),
)


def mobilenet_v2_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleClas ``MobileNetV2*`` -> :class:`~viewfinder.models.nets.paddle_mobilenet_v2.PaddleMobileNetV2`."""
    body = rename_keys(state, _MOBILENET_V2_RENAMES + BN_RENAMES, drop=(r"^out\.",))
    return _with_classifier(body, state, "out", "classifier")


# --- MobileNetV3 (:class:`PaddleMobileNetV3`, PaddleClas's own names) ----------------------

def mobilenet_v3_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleClas ``MobileNetV3_*`` -> :class:`~viewfinder.models.nets.paddle_mobilenet_v3.PaddleMobileNetV3`.

    Same names; BN statistics renamed, fc transposed, the dropout (p = 0.2) folded.
    """
    body = rename_keys(state, BN_RENAMES, drop=(r"^fc\.",))
    return _with_classifier(body, state, "fc", "fc", keep=0.8)


# --- ResNet / ResNet_vd (timm ``ResNet``) ---------------------------------------------------

#: PaddleClas block conv index -> timm's (conv, bn)
_RESNET_PARTS = {"conv0": ("conv1", "bn1"), "conv1": ("conv2", "bn2"), "conv2": ("conv3", "bn3")}
#: vd stem: three ConvBN layers -> timm's deep stem Sequential and bn1
_RESNET_VD_STEM = {("0", "conv"): "conv1.0", ("0", "bn"): "conv1.1", ("1", "conv"): "conv1.3",
                   ("1", "bn"): "conv1.4", ("2", "conv"): "conv1.6", ("2", "bn"): "bn1"}
_RESNET_KEY = re.compile(r"^blocks\.(\d+)\.(conv0|conv1|conv2|short)\.(conv|bn)\.(.+)$")


def resnet_body(state: dict[str, Any], depths: tuple[int, ...], vd: bool = False) -> dict[str, Any]:
    """PaddleClas ResNet stem and ``blocks.K`` -> timm ``conv1``/``bn1`` and ``layerS.J`` (no classifier).

    Keys of neither kind are dropped (``fc``); unknown ``blocks.`` keys are kept, for the
    loader to report.
    """
    starts = np.cumsum((0,) + tuple(depths))
    shortcut = ("downsample.1", "downsample.2") if vd else ("downsample.0", "downsample.1")
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("stem."):
            index, layer, rest = key[len("stem."):].split(".", 2)
            new = (_RESNET_VD_STEM[(index, layer)] if vd else {"conv": "conv1", "bn": "bn1"}[layer]) + "." + rest
        elif match := _RESNET_KEY.match(key):
            block = int(match.group(1))
            stage = int(np.searchsorted(starts, block, side="right")) - 1
            conv, bn = shortcut if match.group(2) == "short" else _RESNET_PARTS[match.group(2)]
            layer = conv if match.group(3) == "conv" else bn
            new = f"layer{stage + 1}.{block - starts[stage]}.{layer}.{match.group(4)}"
        elif key.startswith("blocks."):
            new = key
        else:
            continue
        out[bn_rename(new)] = as_array(value)
    return out


def resnet_converter(depths: tuple[int, ...], vd: bool) -> Converter:
    """PaddleClas ``ResNet*`` (``vd``: ``ResNet*_vd``) -> timm ``ResNet`` (no dropout)."""

    def convert(state: dict[str, Any]) -> dict[str, Any]:
        return _with_classifier(resnet_body(state, depths, vd), state, "fc", "fc")

    return convert


# --- converters by PaddleX name -------------------------------------------------------------

def _pdparams(convert: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Converter]:
    return {"pdparams": convert}


CNN_CONVERTERS: dict[str, dict[str, Converter]] = {
    "PP-LCNetV2_small": _pdparams(lcnetv2_from_paddle),
    "PP-LCNetV2_base": _pdparams(lcnetv2_from_paddle),
    "PP-HGNet_tiny": _pdparams(hgnet_converter(keep=1.0)),
    "PP-HGNet_small": _pdparams(hgnet_converter(keep=1.0)),
    "PP-HGNet_base": _pdparams(hgnet_converter(keep=0.8)),
    **{f"MobileNetV1_{w}": _pdparams(mobilenet_v1_from_paddle) for w in ("x0_25", "x0_5", "x0_75", "x1_0")},
    **{f"MobileNetV2_{w}": _pdparams(mobilenet_v2_from_paddle) for w in ("x0_25", "x0_5", "x1_0", "x1_5", "x2_0")},
    **{f"MobileNetV3_{size}_{w}": _pdparams(mobilenet_v3_from_paddle)
       for size in ("large", "small") for w in ("x0_35", "x0_5", "x0_75", "x1_0", "x1_25")},
    **{f"ResNet{d}{suffix}": _pdparams(resnet_converter(depths, vd=bool(suffix)))
       for d, (_, depths) in RESNET_DEPTHS.items() for suffix in ("", "_vd") if d != 200 or suffix},
}
