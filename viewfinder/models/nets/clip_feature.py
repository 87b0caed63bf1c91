"""PP-ShiTuV2_rec_CLIP_vit_*: a timm CLIP ViT image tower + a linear projection to the feature size."""
from __future__ import annotations

import timm
import torch
import torch.nn as nn


class ClipFeatureNet(nn.Module):
    """image -> pooled ViT embedding -> ``Linear`` to ``embedding_size`` (un-normalised)."""

    def __init__(self, arch: str, embedding_size: int = 512) -> None:
        super().__init__()
        self.backbone = timm.create_model(arch, pretrained=False, num_classes=0)
        self.proj = nn.Linear(self.backbone.num_features, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x))


def clip_feature_builder(arch: str):
    def build(num_classes: int = 512, **_: object) -> ClipFeatureNet:
        return ClipFeatureNet(arch, embedding_size=num_classes)

    build.__qualname__ = f"clip_feature:{arch}"
    return build
