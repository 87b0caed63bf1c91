"""PaddleClas ``.pdparams`` -> our networks for the modern families.

StarNet, FasterNet, ConvNeXt, MobileNetV4, SwinTransformer and the CLIP ViTs (the
classifiers and PP-ShiTuV2's CLIP recognition models). Each converter is checked by
``tools/parity/sweep.py`` against PaddleClas's own network (seeded weights, Paddle's
outputs) at a relative error <= 1e-4. The generic steps (BatchNorm statistics, Paddle's
``[in, out]`` Linear weights) come from :mod:`.paddle_converters`.
"""
from __future__ import annotations

from typing import Any

from .paddle_converters import BN_RENAMES, Converter, make_converter

# --- StarNet: timm's ``starnet_*`` is PaddleClas's network, names included --------------------

starnet_from_paddle: Converter = make_converter(renames=BN_RENAMES, linear=(r"^head\.weight$",))
