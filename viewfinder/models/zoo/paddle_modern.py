"""PaddleClas ``.pdparams`` -> our networks for the modern families.

StarNet, FasterNet, ConvNeXt, MobileNetV4, SwinTransformer and the CLIP ViTs (the
classifiers and PP-ShiTuV2's CLIP recognition models). Each converter is checked by
``tools/parity/sweep.py`` against PaddleClas's own network (seeded weights, Paddle's
outputs) at a relative error <= 1e-4. The generic steps (BatchNorm statistics, Paddle's
``[in, out]`` Linear weights) come from :mod:`.paddle_converters`.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from .paddle_converters import (
    BN_RENAMES,
    Converter,
    add_prefix,
    as_array,
    block_index_map,
    copy_entry,
    copy_linear,
    linear_to_torch,
    make_converter,
    take_prefix,
)

# --- StarNet: timm's ``starnet_*`` is PaddleClas's network, names included --------------------

starnet_from_paddle: Converter = make_converter(renames=BN_RENAMES, linear=(r"^head\.weight$",))


# --- FasterNet: PaddleClas interleaves stages and merges, timm merges at a stage's start ------

def _fasternet_stage(match: re.Match[str]) -> str:
    index = int(match.group(1))
    return f"stages.{index // 2}." if index % 2 == 0 else f"stages.{(index + 1) // 2}.downsample."


fasternet_from_paddle: Converter = make_converter(
    renames=(
        (r"^stages\.(\d+)\.", _fasternet_stage),
        (r"^avgpool_pre_head\.1\.", "conv_head."),
        (r"^head\.", "classifier."),
    ),
    linear=(r"^classifier\.weight$",),
)


# --- ConvNeXt: timm's ``convnext_*`` (Linear pointwise convs, LayerNorm eps 1e-6 as Paddle) ---

convnext_from_paddle: Converter = make_converter(
    renames=(
        (r"^downsample_layers\.0\.", "stem."),
        (r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample."),
        (r"^stages\.(\d+)\.(\d+)\.dwconv\.", r"stages.\1.blocks.\2.conv_dw."),
        (r"^stages\.(\d+)\.(\d+)\.pwconv(\d)\.", r"stages.\1.blocks.\2.mlp.fc\3."),
        (r"^stages\.(\d+)\.(\d+)\.(norm|gamma)", r"stages.\1.blocks.\2.\3"),
        (r"^norm\.", "head.norm."),
        (r"^head\.(weight|bias)$", r"head.fc.\1"),
    ),
    linear=(r"\.mlp\.fc\d\.weight$", r"^head\.fc\.weight$"),
)


# --- MobileNetV4: timm's ``mobilenetv4_*`` groups PaddleClas's flat block list into stages ----

#: blocks per timm stage (PaddleClas numbers the same blocks 0..N-1 in one list)
MOBILENET_V4_DEPTHS: dict[str, tuple[int, ...]] = {
    "conv_small": (2, 2, 6, 6, 1),
    "conv_medium": (1, 2, 8, 11, 1),
    "conv_large": (1, 2, 11, 13, 1),
    "hybrid_medium": (1, 2, 12, 16, 1),
    "hybrid_large": (1, 2, 15, 18, 1),
}
_MNV4_PARTS = (
    # ConvBnAct ("cn") and EdgeResidual ("er") blocks
    (r"^(blocks\.\d+\.\d+)\.bn\.", r"\1.bn1."),
    (r"^(blocks\.\d+\.\d+)\.conv_exp\.conv\.", r"\1.conv_exp."),
    (r"^(blocks\.\d+\.\d+)\.conv_exp\.bn\.", r"\1.bn1."),
    (r"^(blocks\.\d+\.\d+)\.conv_pwl\.conv\.", r"\1.conv_pwl."),
    (r"^(blocks\.\d+\.\d+)\.conv_pwl\.bn\.", r"\1.bn2."),
    # MobileAttention ("mqa") blocks
    (r"^(blocks\.\d+\.\d+)\.query_proj\.", r"\1.attn.query.proj."),
    (r"^(blocks\.\d+\.\d+)\.(key|value)_down_proj\.conv\.", r"\1.attn.\2.down_conv."),
    (r"^(blocks\.\d+\.\d+)\.(key|value)_down_proj\.bn\.", r"\1.attn.\2.norm."),
    (r"^(blocks\.\d+\.\d+)\.(key|value)_proj\.", r"\1.attn.\2.proj."),
    (r"^(blocks\.\d+\.\d+)\.proj\.", r"\1.attn.output.proj."),
    # stem and head
    (r"^conv_stem\.conv\.", "conv_stem."),
    (r"^conv_stem\.bn\.", "bn1."),
    (r"^conv_head\.conv\.", "conv_head."),
    (r"^conv_head\.bn\.", "norm_head."),
)


def mobilenet_v4_from_paddle(variant: str) -> Converter:
    """PaddleClas ``MobileNetV4_<variant>`` -> timm ``mobilenetv4_<variant>``.

    PaddleClas's MobileAttention scales the attention logits by ``query_dim ** -0.5``
    (all heads together: 1 / sqrt(heads * key_dim)), timm by ``key_dim ** -0.5``; the
    query projection is linear and bias-free, so the ratio ``1 / sqrt(heads)`` is folded
    into its weight.
    """
    positions = block_index_map((sum(MOBILENET_V4_DEPTHS[variant]),), MOBILENET_V4_DEPTHS[variant])

    def block(match: re.Match[str]) -> str:
        stage, index = positions.get((0, int(match.group(1))), (-1, int(match.group(1))))
        return f"blocks.{stage}.{index}."

    renamed = make_converter(renames=((r"^blocks\.(\d+)\.", block), *_MNV4_PARTS), linear=(r"^classifier\.weight$",))

    def convert(state: dict[str, Any]) -> dict[str, Any]:
        out = renamed(state)
        for key in [k for k in out if k.endswith(".attn.query.proj.weight")]:
            prefix = key[: -len("query.proj.weight")]
            key_proj = out.get(prefix + "key.proj.weight")
            if key_proj is not None:
                heads = as_array(out[key]).shape[0] // as_array(key_proj).shape[0]
                out[key] = as_array(out[key]) * np.float32(heads ** -0.5)
        return out

    return convert


# --- SwinTransformer: timm's ``swin_*`` with ``always_partition=True`` --------------------------
# PaddleClas's blocks shift every second window even where the feature map is no larger
# than a window (the last stage: 7x7 at 224 px with window 7, 12x12 at 384 px with window
# 12), splitting that one window into four masked regions; Microsoft's Swin and timm's
# default skip the shift there. timm's ``always_partition`` keeps it, as PaddleClas does.
# PaddleClas merges patches at the end of a stage (timm: at the start of the next one),
# in the same x0, x1, x2, x3 channel order as timm.

def _swin_downsample(match: re.Match[str]) -> str:
    return f"layers.{int(match.group(1)) + 1}.downsample."


swin_from_paddle: Converter = make_converter(
    renames=(
        (r"^layers\.(\d+)\.downsample\.", _swin_downsample),
        (r"^head\.(weight|bias)$", r"head.fc.\1"),
    ),
    drop=(r"\.attn\.relative_position_index$", r"\.attn\.relative_position_bias$"),
    linear=(r"\.attn\.(qkv|proj)\.weight$", r"\.mlp\.fc\d\.weight$", r"\.downsample\.reduction\.weight$",
            r"^head\.fc\.weight$"),
)


# --- CLIP ViT (PaddleClas foundation_vit) -> timm ``vit_*_clip_*`` names ------------------------

_CLIP_LINEARS = re.compile(r"^blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.weight$")


def clip_vit_body(state: dict[str, Any]) -> dict[str, Any]:
    """A PaddleClas CLIP ViT's entries (prefix removed) -> timm ViT names, without ``proj`` and ``head``.

    ``ln_pre`` is timm's ``norm_pre``; Linear weights are transposed. CLIP's ``proj``
    only runs when the head is the identity (the PP-ShiTuV2 embedding), which the
    callers handle.
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key == "proj" or key.startswith("head."):
            continue
        array = as_array(value)
        if _CLIP_LINEARS.match(key):
            array = linear_to_torch(array)
        out["norm_pre." + key[len("ln_pre."):] if key.startswith("ln_pre.") else key] = array
    return out


def clip_vit_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleClas ``CLIP_vit_large_patch14_224`` (class-token classifier) -> timm ``vit_large_patch14_clip_224``."""
    out = clip_vit_body(state)
    copy_linear(state, "head.fc_head", "head", out)
    return out


def clip_vit_first_token_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleClas ``CLIP_vit_base_patch16_224`` -> :class:`~viewfinder.models.nets.paddle_clip.ClipFirstTokenClassifier`."""
    out = add_prefix(clip_vit_body(state), "backbone.vit")
    copy_linear(state, "head.fc_head", "head", out)
    return out


def clip_feature_from_paddle(state: dict[str, Any]) -> dict[str, Any]:
    """PaddleX ``PP-ShiTuV2_rec_CLIP_vit_*`` (RecModel: CLIP backbone, ``FC`` neck) -> ``ClipFeatureNet``.

    CLIP's bias-free ``proj`` ([C, 512]) and the neck's ``fc`` ([512, 512] + bias) act
    one after the other on the token mean, so they become one ``Linear``:
    ``W = proj @ fc.weight`` (Paddle's [in, out] layout), bias ``fc.bias``. The
    training head (``ArcMargin``) is dropped.
    """
    backbone = take_prefix(state, "backbone")
    out = add_prefix(clip_vit_body(backbone), "backbone")
    if "proj" in backbone and "neck.fc.weight" in state:
        proj = as_array(backbone["proj"]).astype(np.float64)
        fc = as_array(state["neck.fc.weight"]).astype(np.float64)
        out["proj.weight"] = linear_to_torch((proj @ fc).astype(np.float32))
    copy_entry(state, "neck.fc.bias", out, "proj.bias")
    return out
