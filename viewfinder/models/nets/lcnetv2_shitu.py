"""PP-ShiTuV2_rec: PaddleClas's ``PPLCNetV2_base_ShiTu`` trunk + ``BNNeck``, built on timm's LCNetV2.

PaddleClas derives the ShiTu variant from PP-LCNetV2_base with three changes, all
reproduced here on timm's ``lcnetv2_base``:

* no ReLU after ``last_conv`` (timm: ``conv_head`` / ``act2``),
* ``last_conv`` has a bias (1x1 conv 1024 -> 512 after global average pooling),
* the two blocks of the last stage use stride 1 (so the first one also gets the 1x1
  re-parameterisable branch, and the feature map stays 14x14 at 224 input).

PP-LCNetV2 keeps its ``Dropout(p=0.2, mode="downscale_in_infer")`` after ``last_conv``:
Paddle's "downscale in infer" dropout multiplies by ``1 - p`` at inference, so the
embedding is scaled by 0.8 before the neck (without it the output is off by 0.57 of
its range on the parity fixture).

The BNNeck is a ``BatchNorm1d`` over the 512-d pooled embedding. The network returns
the embedding *before* L2 normalisation (PaddleX normalises in post-processing).
"""
from __future__ import annotations

import timm
import torch
import torch.nn as nn
from timm.models.lcnetv2 import _STAGE_CFG, LCNetV2, RepDepthwiseSeparable


def _stride_one(block: RepDepthwiseSeparable, stage_cfg: tuple) -> RepDepthwiseSeparable:
    """A fresh copy of a last-stage block with stride 1 (PaddleClas rebuilds the layer the same way)."""
    _, _, split_pw, use_rep, use_se, use_shortcut = stage_cfg
    return RepDepthwiseSeparable(
        in_chs=block.in_chs,
        out_chs=block.out_chs,
        stride=1,
        dw_kernel_size=block.dw_kernel_size,
        split_pw=split_pw,
        use_rep=use_rep,
        use_se=use_se,
        use_shortcut=use_shortcut,  # resolved again: only blocks with in == out get the residual
    )


def build_lcnetv2_shitu_trunk(embedding_size: int = 512) -> LCNetV2:
    """timm ``lcnetv2_base`` reshaped into PaddleClas's ``PPLCNetV2_base_ShiTu`` (no classifier)."""
    trunk: LCNetV2 = timm.create_model(
        "lcnetv2_base", pretrained=False, num_classes=0, head_hidden_size=embedding_size
    )
    trunk.conv_head = nn.Conv2d(trunk.num_features, embedding_size, kernel_size=1, bias=True)
    trunk.act2 = nn.Identity()
    last_stage = trunk.stages[-1]
    for index in range(len(last_stage)):
        last_stage[index] = _stride_one(last_stage[index], _STAGE_CFG[-1])
    return trunk


class ShiTuRecNet(nn.Module):
    """PP-ShiTuV2_rec: image -> un-normalised ``embedding_size``-d feature (the BNNeck output)."""

    #: Paddle Dropout(p=0.2, mode="downscale_in_infer") at inference: x * (1 - 0.2)
    INFER_DROPOUT_SCALE = 0.8

    def __init__(self, embedding_size: int = 512) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.backbone = build_lcnetv2_shitu_trunk(embedding_size)
        self.neck = nn.BatchNorm1d(embedding_size, eps=1e-5)
        #: folded by :meth:`reparameterize` (its state_dict keys differ: saved model dirs record it)
        self.reparameterized = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(x) * self.INFER_DROPOUT_SCALE)

    def reparameterize(self) -> None:
        """Fold the multi-branch depthwise convs into single convs (inference speed; changes state_dict keys)."""
        for module in self.modules():
            if isinstance(module, RepDepthwiseSeparable):
                module.reparameterize()
        self.reparameterized = True


def build_shitu_rec(num_classes: int = 512, **_: object) -> ShiTuRecNet:
    """Registry builder; ``num_classes`` is the embedding size for feature models."""
    return ShiTuRecNet(embedding_size=num_classes)
