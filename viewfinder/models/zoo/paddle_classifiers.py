"""PaddleClas / PaddleX ``.pdparams`` -> our networks.

Converters (``spec.converters["pdparams"]``) for PP-LCNet, PP-HGNetV2 and their
ML-Decoder variants, ResNet50_ML and CLIP_vit_base_patch16_448_ML (the other CNN
families: :mod:`.paddle_cnn`).

What every converter handles (the generic parts with :mod:`.paddle_converters`):

* BatchNorm running statistics are stored as ``._mean`` / ``._variance``;
* Paddle ``Linear`` weights are ``[in, out]`` (transposed relative to torch);
* PaddleClas's ``Dropout(mode="downscale_in_infer")`` before the classifier multiplies
  activations by ``1 - p`` at inference (PP-LCNet: p = 0.2). The
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
    copy_entry,
    copy_linear,
    lcnet_renames,
    linear_to_torch,
    rename_keys,
    take_prefix,
    transpose_linear,
)
from .paddle_cnn import resnet_body

# PaddleClas's Dropout(p=0.2, mode="downscale_in_infer") before the classifier
LCNET_KEEP = 0.8


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

def resnet50_ml_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleX ``ResNet50_ML`` -> :class:`MLDecoderNet` (timm ``resnet50`` backbone, no neck)."""
    out = add_prefix(resnet_body(state, (3, 4, 6, 3)), "backbone")
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


# Converters for the registered single-label models, by PaddleX name (the CNN families'
# other converters: .paddle_cnn.CNN_CONVERTERS).
CLASSIFIER_CONVERTERS: dict[str, dict[str, Converter]] = {
    **{f"PP-LCNet_{w}": {"pdparams": lcnet_from_paddle}
       for w in ("x0_25", "x0_35", "x0_5", "x0_75", "x1_0", "x1_5", "x2_0", "x2_5")},
    **{f"PP-HGNetV2-B{b}": {"pdparams": hgnetv2_from_paddle} for b in range(7)},
}
