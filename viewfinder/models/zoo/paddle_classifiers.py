"""PaddleClas / PaddleX ``.pdparams`` -> our networks.

Converters (``spec.converters["pdparams"]``) for PP-LCNet, PP-HGNetV2 and their
ML-Decoder variants, ResNet50_ML and CLIP_vit_base_patch16_448_ML, plus a faithful
PaddleClas MobileNetV3 (timm's differs: see :class:`PaddleMobileNetV3`) with its own.

What every converter handles (the generic parts with :mod:`.paddle_converters`):

* BatchNorm running statistics are stored as ``._mean`` / ``._variance``;
* Paddle ``Linear`` weights are ``[in, out]`` (transposed relative to torch);
* PaddleClas's ``Dropout(mode="downscale_in_infer")`` before the classifier multiplies
  activations by ``1 - p`` at inference (PP-LCNet and MobileNetV3: p = 0.2). The
  next layer is linear, so the factor is folded into its weight (the bias is not scaled);
* PaddleClas convs without a bias where timm has one get a zero bias.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .paddle_converters import (
    BN_RENAMES,
    Converter,
    add_prefix,
    as_array,
    bn_rename,
    copy_entry,
    copy_linear,
    lcnet_renames,
    linear_to_torch,
    rename_keys,
    take_prefix,
    transpose_linear,
)

# PaddleClas's Dropout(p=0.2, mode="downscale_in_infer") before the classifier (PP-LCNet, MobileNetV3)
LCNET_KEEP = 0.8
MOBILENET_V3_KEEP = 0.8


# --- ML-Decoder ---------------------------------------------------------------------------

_DECODER_LINEARS = r"^decoder\.layers\.\d+\.(cross_attn\.(q|k|v|out)_proj|linear1|linear2)\.weight$"


def ml_decoder_from_paddle(state: dict[str, Any], keep: float = 1.0) -> dict[str, Any]:
    """PaddleClas ``MLDecoder`` entries (prefix removed) -> :class:`~viewfinder.models.nets.ml_decoder.MLDecoder`.

    Names are identical by construction; Linear weights are transposed. ``keep`` folds
    a ``downscale_in_infer`` dropout in front of the head into ``input_proj``.
    """
    out = transpose_linear({key: as_array(value) for key, value in state.items()}, (_DECODER_LINEARS,))
    if "input_proj.weight" in out and keep != 1.0:
        out["input_proj.weight"] = out["input_proj.weight"] * np.float32(keep)
    return out


# --- PP-LCNet (timm ``lcnet_*`` layout) ----------------------------------------------------

def _lcnet_body(state: dict[str, Any]) -> dict[str, Any]:
    return rename_keys(state, lcnet_renames() + BN_RENAMES, drop=(r"^last_conv\.", r"^fc\."))


def lcnet_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleClas ``PPLCNet_x*`` -> timm ``lcnet_*`` (PP-LCNet_x0_25 ... x2_5; not x0_35, see module notes)."""
    out = _lcnet_body(state)
    if "last_conv.weight" in state:  # bias-free in PaddleClas, biased in timm
        last = as_array(state["last_conv.weight"])
        out["conv_head.weight"] = last
        out["conv_head.bias"] = np.zeros(last.shape[0], dtype=np.float32)
    copy_linear(state, "fc", "classifier", out, scale=LCNET_KEEP)
    return out


def lcnet_ml_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleX ``PP-LCNet_x1_0_ML`` -> :class:`MLDecoderNet` (timm LCNet backbone, last conv as neck)."""
    out = add_prefix(_lcnet_body(state), "backbone")
    copy_entry(state, "last_conv.weight", out, "neck.0.weight")
    out.update(add_prefix(ml_decoder_from_paddle(take_prefix(state, "fc"), keep=LCNET_KEEP), "head"))
    return out


# --- PP-HGNetV2 (timm ``hgnetv2_b*`` layout) -----------------------------------------------

_HGNET_RENAMES = (
    (r"^(stages\.\d+\.blocks\.\d+)\.aggregation_squeeze_conv\.", r"\1.aggregation.0."),
    (r"^(stages\.\d+\.blocks\.\d+)\.aggregation_excitation_conv\.", r"\1.aggregation.1."),
)


class PaddleHGNetV2Stem(nn.Module):
    """timm's PP-HGNetV2 stem with PaddleClas's max-pool padding.

    PaddleClas pools with ``padding="SAME"``: the padded border never wins the max.
    timm zero-pads before pooling, which differs wherever the stem's output is negative
    (its LearnableAffineBlock bias can make it so): 1e-2 of the logits' scale on the
    parity fixture. Same submodules, so the same state-dict keys.
    """

    def __init__(self, stem: nn.Module) -> None:
        super().__init__()
        for name in ("stem1", "stem2a", "stem2b", "stem3", "stem4"):
            setattr(self, name, getattr(stem, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem1(x)
        branch = self.stem2b(F.pad(self.stem2a(F.pad(x, (0, 1, 0, 1))), (0, 1, 0, 1)))
        pooled = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), kernel_size=2, stride=1)
        return self.stem4(self.stem3(torch.cat([pooled, branch], dim=1)))


def paddle_hgnetv2(arch: str, **kwargs: Any) -> nn.Module:
    """timm ``hgnetv2_b*`` with the PaddleClas stem (:class:`PaddleHGNetV2Stem`)."""
    import timm

    model = timm.create_model(arch, pretrained=False, **kwargs)
    model.stem = PaddleHGNetV2Stem(model.stem)
    return model


def paddle_hgnetv2_builder(arch: str) -> Callable[..., nn.Module]:
    """A registry builder for :func:`paddle_hgnetv2`."""

    def build(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        return paddle_hgnetv2(arch, num_classes=num_classes, **kwargs)

    build.__qualname__ = f"timm:{arch}+paddle_stem"
    return build


def _hgnet_body(state: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in state.items() if k.startswith(("stem.", "stages."))}
    return rename_keys(body, _HGNET_RENAMES + BN_RENAMES)


def _hgnet_last_conv(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    copy_entry(state, "last_conv.weight", out, f"{prefix}.0.weight")
    # B0-B3 use a LearnableAffineBlock after the last conv's ReLU
    copy_entry(state, "lab.scale", out, f"{prefix}.2.scale")
    copy_entry(state, "lab.bias", out, f"{prefix}.2.bias")
    return out


def hgnetv2_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleClas ``PPHGNetV2_B*`` -> timm ``hgnetv2_b*`` (dropout_prob is 0: nothing to fold)."""
    out = _hgnet_body(state)
    out.update(_hgnet_last_conv(state, "head.last_conv"))
    copy_linear(state, "fc", "head.fc", out)
    return out


def hgnetv2_ml_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleX ``PP-HGNetV2-B*_ML`` -> :class:`MLDecoderNet` (timm HGNetV2 backbone, last conv block as neck)."""
    out = add_prefix(_hgnet_body(state), "backbone")
    out.update(_hgnet_last_conv(state, "neck"))
    out.update(add_prefix(ml_decoder_from_paddle(take_prefix(state, "fc")), "head"))
    return out


# --- ResNet (timm ``resnet*`` layout) -----------------------------------------------------

def _resnet_body(state: dict[str, Any], depths: tuple[int, ...]) -> dict[str, Any]:
    """PaddleClas ResNet (``vb``: one 7x7 stem conv) ``blocks.K`` -> timm ``layerS.J``."""
    starts = np.cumsum((0,) + depths)
    parts = {"conv0": ("conv1", "bn1"), "conv1": ("conv2", "bn2"), "conv2": ("conv3", "bn3"),
             "short": ("downsample.0", "downsample.1")}
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("stem.0."):
            layer, _, rest = key[len("stem.0."):].partition(".")
            new = {"conv": "conv1", "bn": "bn1"}[layer] + "." + rest
        elif key.startswith("blocks."):
            match = re.match(r"^blocks\.(\d+)\.(conv0|conv1|conv2|short)\.(conv|bn)\.(.+)$", key)
            if not match:
                out[key] = value  # reported as unexpected by the loader
                continue
            block = int(match.group(1))
            stage = int(np.searchsorted(starts, block, side="right")) - 1
            conv, bn = parts[match.group(2)]
            layer = conv if match.group(3) == "conv" else bn
            new = f"layer{stage + 1}.{block - starts[stage]}.{layer}.{match.group(4)}"
        else:
            continue
        out[bn_rename(new)] = value
    return out


def resnet50_ml_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleX ``ResNet50_ML`` -> :class:`MLDecoderNet` (timm ``resnet50`` backbone, no neck)."""
    out = add_prefix(_resnet_body(state, (3, 4, 6, 3)), "backbone")
    out.update(add_prefix(ml_decoder_from_paddle(take_prefix(state, "fc")), "head"))
    return out


# --- CLIP ViT (timm ``vit_*_clip_*`` layout) ----------------------------------------------

_VIT_LINEARS = re.compile(r"^blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight$")


def clip_vit_ml_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleX ``CLIP_vit_base_patch16_448_ML`` -> :class:`MLDecoderNet` over :class:`ClipFirstTokenBackbone`.

    The unused CLIP projection ``proj`` is dropped; ``ln_pre`` is timm's ``norm_pre``.
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key == "proj" or key.startswith("head."):
            continue
        array = as_array(value)
        if _VIT_LINEARS.match(key):
            array = linear_to_torch(array)
        new = "norm_pre." + key[len("ln_pre."):] if key.startswith("ln_pre.") else key
        out[f"backbone.vit.{new}"] = array
    out.update(add_prefix(ml_decoder_from_paddle(take_prefix(state, "head")), "head"))
    return out


# --- MobileNetV3 as PaddleClas builds it ---------------------------------------------------

# k, expansion channels, out channels, SE, activation, stride (PaddleClas NET_CONFIG)
MOBILENET_V3_CONFIG: dict[str, list[tuple[int, int, int, bool, str, int]]] = {
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
_SQUEEZE = {"large": 960, "small": 576}


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _act(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hardswish" else nn.ReLU()


class _ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = _act(act) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _SE(nn.Module):
    """PaddleClas SE: ``channel // 4`` (no rounding), ReLU, hard-sigmoid with slope 0.2 (timm: 1/6)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels // 4, 1)
        self.conv2 = nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv2(torch.relu(self.conv1(x.mean((2, 3), keepdim=True))))
        return x * torch.clamp(gate * 0.2 + 0.5, 0.0, 1.0)


class _Residual(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, kernel: int, stride: int, se: bool, act: str) -> None:
        super().__init__()
        self.shortcut = stride == 1 and cin == cout
        self.expand_conv = _ConvBN(cin, mid, 1, act=act)
        self.bottleneck_conv = _ConvBN(mid, mid, kernel, stride, groups=mid, act=act)
        self.mid_se = _SE(mid) if se else None
        self.linear_conv = _ConvBN(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bottleneck_conv(self.expand_conv(x))
        if self.mid_se is not None:
            y = self.mid_se(y)
        y = self.linear_conv(y)
        return x + y if self.shortcut else y


class PaddleMobileNetV3(nn.Module):
    """PaddleClas's MobileNetV3 (``legendary_models/mobilenet_v3.py``), parameter names included.

    Why not timm's ``mobilenetv3_*``: PaddleClas (1) gives the first block a 1x1
    expansion conv even at expansion 1, (2) sizes SE layers ``channels // 4`` without
    rounding and gates them with ``clamp(0.2x + 0.5, 0, 1)`` (timm: rounded to 8,
    ``relu6(x + 3) / 6``), (3) rounds every expansion width from the unscaled config and
    (4) ends in a 1280-wide bias-free ``last_conv`` for both sizes (timm: 1024 for small,
    with a bias). (1), (3) and (4) change parameter shapes, so the weights cannot be
    mapped onto timm's network.
    """

    def __init__(self, size: str = "large", scale: float = 1.0, num_classes: int = 1000,
                 class_expand: int = 1280) -> None:
        super().__init__()
        config = MOBILENET_V3_CONFIG[size]
        stem = _make_divisible(16 * scale)
        self.conv = _ConvBN(3, stem, 3, 2, act="hardswish")
        blocks = []
        cin = stem
        for kernel, expansion, cout, se, act, stride in config:
            out = _make_divisible(scale * cout)
            blocks.append(_Residual(cin, _make_divisible(scale * expansion), out, kernel, stride, se, act))
            cin = out
        self.blocks = nn.Sequential(*blocks)
        squeeze = _make_divisible(scale * _SQUEEZE[size])
        self.last_second_conv = _ConvBN(cin, squeeze, 1, act="hardswish")
        self.last_conv = nn.Conv2d(squeeze, class_expand, 1, bias=False)
        self.hardswish = nn.Hardswish()
        self.fc = nn.Linear(class_expand, num_classes)
        self.num_features = class_expand

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_second_conv(self.blocks(self.conv(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3), keepdim=True)
        return self.fc(self.hardswish(self.last_conv(x)).flatten(1))


def paddle_mobilenet_v3_builder(size: str, scale: float) -> Callable[..., nn.Module]:
    """A registry builder for :class:`PaddleMobileNetV3`."""

    def build(num_classes: int = 1000, **kwargs: Any) -> nn.Module:
        return PaddleMobileNetV3(size, scale, num_classes=num_classes, **kwargs)

    build.__qualname__ = f"paddle:MobileNetV3_{size}_x{scale}"
    return build


def mobilenet_v3_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleClas ``MobileNetV3_*`` -> :class:`PaddleMobileNetV3` (same names; BN stats, fc transpose, dropout fold)."""
    out = rename_keys(state, BN_RENAMES, drop=(r"^fc\.",))
    copy_linear(state, "fc", "fc", out, scale=MOBILENET_V3_KEEP)
    return out


# Converters for the registered single-label models, by PaddleX name. PP-LCNet_x0_35 is
# left out: PaddleClas sizes its SE layer 176 // 4 = 44 channels, timm rounds it to 48.
CLASSIFIER_CONVERTERS: dict[str, dict[str, Converter]] = {
    **{f"PP-LCNet_{w}": {"pdparams": lcnet_from_paddle}
       for w in ("x0_25", "x0_5", "x0_75", "x1_0", "x1_5", "x2_0", "x2_5")},
    **{f"PP-HGNetV2-B{b}": {"pdparams": hgnetv2_from_paddle} for b in range(7)},
}
