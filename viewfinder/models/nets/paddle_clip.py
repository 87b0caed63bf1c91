"""PaddleClas's CLIP ViTs (``ppcls/arch/backbone/model_zoo/foundation_vit.py``) on timm's ViT blocks.

timm's ``vit_*_clip_*`` holds the same weights (pre-norm ``norm_pre`` = PaddleClas's
``ln_pre``, exact GELU as PaddleClas builds it, LayerNorm eps 1e-5); what differs is
which tokens PaddleClas reads after the final LayerNorm:

* ``CLIP_vit_base_patch16_224`` is listed in ``remove_cls_token_in_forward``: the class
  token is dropped after the blocks, so the classifier (and the ML-Decoder of
  ``CLIP_vit_base_patch16_448_ML``) reads the *first patch token*, and the PP-ShiTuV2
  embedding (``return_embed`` + ``return_mean_embed``) averages the patch tokens only;
* ``CLIP_vit_large_patch14_224`` keeps it: its classifier reads the class token (timm's
  default ``token`` pooling, so that name stays a plain timm network) and its
  PP-ShiTuV2 embedding averages all tokens, class token included.

We reproduce this rather than "fix" it, so PaddleX's weights behave as trained.
"""
from __future__ import annotations

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F


class ClipFirstTokenBackbone(nn.Module):
    """PaddleClas's CLIP ViT-B/16 as its classifier and ML-Decoder read it: the final norm of the first patch token.

    PaddleClas builds the 224-px network and resizes its position embedding bicubically
    to the input's patch grid on every forward (``CLIP_vit_base_patch16_448_ML`` runs at
    448 px); inputs that are not whole patches are padded at the bottom/right. Output ``[N, C]``.
    """

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.grid = tuple(vit.patch_embed.grid_size)

    def _pos_embed(self, height: int, width: int) -> torch.Tensor:
        pos = self.vit.pos_embed
        if (height, width) == self.grid:
            return pos
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        patch_pos = patch_pos.reshape(1, self.grid[0], self.grid[1], -1).permute(0, 3, 1, 2)
        # Paddle's bicubic (a = -0.75, no antialias), as torch's plain bicubic.
        patch_pos = F.interpolate(patch_pos.float(), size=(height, width), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.flatten(2).transpose(1, 2).to(pos.dtype)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        patch = vit.patch_embed.patch_size
        pad_h, pad_w = (-x.shape[2]) % patch[0], (-x.shape[3]) % patch[1]
        if pad_h or pad_w:  # Paddle pads the bottom/right to whole patches
            x = F.pad(x, (0, pad_w, 0, pad_h))
        tokens = vit.patch_embed.proj(x)
        height, width = tokens.shape[2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        tokens = torch.cat([vit.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = vit.norm_pre(tokens + self._pos_embed(height, width))
        tokens = vit.blocks(tokens)
        return vit.norm(tokens[:, 1])


class ClipFirstTokenClassifier(nn.Module):
    """PaddleClas's ``CLIP_vit_base_patch16_224`` classifier: ``Linear`` on :class:`ClipFirstTokenBackbone`'s output."""

    def __init__(self, arch: str, num_classes: int = 1000, **kwargs: object) -> None:
        super().__init__()
        vit = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
        self.backbone = ClipFirstTokenBackbone(vit)
        self.num_features = vit.num_features
        self.head = nn.Linear(vit.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def clip_first_token_classifier_builder(arch: str):
    """A registry builder for :class:`ClipFirstTokenClassifier`."""

    def build(num_classes: int = 1000, **kwargs: object) -> ClipFirstTokenClassifier:
        return ClipFirstTokenClassifier(arch, num_classes=num_classes, **kwargs)

    build.__qualname__ = f"paddle_clip:{arch}+first_patch_token"
    return build


class ClipFeatureNet(nn.Module):
    """PP-ShiTuV2_rec_CLIP_vit_*: mean of the final-normed tokens -> ``Linear`` to ``embedding_size`` (un-normalised).

    PaddleClas projects every token with CLIP's bias-free ``proj`` ([C, 512]), averages
    them and applies the ``FC`` neck (512 -> 512); both are linear, so they are one
    ``proj`` here (the converter multiplies them). ``skip_class_token``: average the patch
    tokens only (ViT-B/16, see the module notes).
    """

    def __init__(self, arch: str, embedding_size: int = 512, skip_class_token: bool = False) -> None:
        super().__init__()
        self.backbone = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="")
        self.proj = nn.Linear(self.backbone.num_features, embedding_size)
        self.first_token = 1 if skip_class_token else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone.forward_features(x)  # final LayerNorm included
        return self.proj(tokens[:, self.first_token:].mean(1))


def clip_feature_builder(arch: str, skip_class_token: bool = False):
    def build(num_classes: int = 512, **_: object) -> ClipFeatureNet:
        return ClipFeatureNet(arch, embedding_size=num_classes, skip_class_token=skip_class_token)

    build.__qualname__ = f"clip_feature:{arch}"
    return build
