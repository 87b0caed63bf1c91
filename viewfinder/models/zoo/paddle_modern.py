"""PaddleClas ``.pdparams`` -> our networks for the modern families.

StarNet, FasterNet, ConvNeXt, MobileNetV4, SwinTransformer and the CLIP ViTs (the
classifiers and PP-ShiTuV2's CLIP recognition models). Each converter is checked by
``tools/parity/sweep.py`` against PaddleClas's own network (seeded weights, Paddle's
outputs) at a relative error <= 1e-4. The generic steps (BatchNorm statistics, Paddle's
``[in, out]`` Linear weights) come from :mod:`.paddle_converters`.
"""
from __future__ import annotations

import re


from .paddle_converters import BN_RENAMES, Converter, make_converter

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
