"""PP-ShiTuV2_det: PicoDet (PP-LCNet x2.5 backbone, CSP-PAN neck, PicoHead), as PaddleDetection builds it.

* Backbone: timm's PP-LCNet (``_gen_lcnet``, hard-swish) as a feature extractor; the
  strides 8/16/32 maps (PaddleDetection ``feature_maps: [3, 4, 5]``).
* Neck (``CSPPAN``, out 128, depthwise, 1 CSP block, 4 levels): 1x1 channel transforms,
  a top-down and a bottom-up path of CSP layers, and a stride-64 level made of two
  stride-2 depthwise-separable convs (one on the top input, one on the top output), summed.
* Head (``PicoHead`` with ``PicoFeat(share_cls_reg=True)``): per level 4 x (5x5 depthwise
  conv+BN+hswish, 1x1 conv+BN+hswish), then one 1x1 conv giving ``num_classes`` class
  logits followed by 4 x (reg_max + 1) box-distribution logits (side-major: l, t, r, b).

Module and parameter names mirror PaddleDetection's where torch allows it, so the
``.pdparams`` converter is mostly BatchNorm renames. ``forward`` returns the raw
per-level outputs and the decoded (pre-NMS) scores and boxes in input pixels.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBNLayer(nn.Module):
    """conv (no bias) + BN + hard-swish (CSPPAN's ``ConvBNLayer``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(self.bn(self.conv(x)))


class DPModule(nn.Module):
    """Depthwise kxk conv+BN+hswish, then pointwise conv+BN+hswish (CSPPAN's ``DP_Module``)."""

    def __init__(self, channels: int, kernel: int = 5, stride: int = 1) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel, stride, (kernel - 1) // 2, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pwconv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardswish(self.bn1(self.dwconv(x)))
        return F.hardswish(self.bn2(self.pwconv(x)))


class DarknetBottleneck(nn.Module):
    """1x1 ConvBNLayer then a depthwise-separable DPModule; no identity inside CSPPAN."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = ConvBNLayer(channels, channels, 1)
        self.conv2 = DPModule(channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class CSPLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, num_blocks: int = 1) -> None:
        super().__init__()
        mid = out_ch // 2
        self.main_conv = ConvBNLayer(in_ch, mid, 1)
        self.short_conv = ConvBNLayer(in_ch, mid, 1)
        self.final_conv = ConvBNLayer(2 * mid, out_ch, 1)
        self.blocks = nn.Sequential(*[DarknetBottleneck(mid, kernel) for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1))


class ChannelT(nn.Module):
    def __init__(self, in_channels: list[int], out_ch: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ConvBNLayer(c, out_ch, 1) for c in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(x) for conv, x in zip(self.convs, feats)]


class CSPPAN(nn.Module):
    """PaddleDetection's ``CSPPAN`` with ``use_depthwise=True`` and 4 output levels."""

    def __init__(self, in_channels: list[int], out_ch: int = 128, kernel: int = 5, num_csp_blocks: int = 1) -> None:
        super().__init__()
        levels = len(in_channels)
        self.conv_t = ChannelT(in_channels, out_ch)
        self.first_top_conv = DPModule(out_ch, kernel, stride=2)
        self.second_top_conv = DPModule(out_ch, kernel, stride=2)
        pairs = range(levels - 1)
        self.top_down_blocks = nn.ModuleList(CSPLayer(out_ch * 2, out_ch, kernel, num_csp_blocks) for _ in pairs)
        self.downsamples = nn.ModuleList(DPModule(out_ch, kernel, stride=2) for _ in pairs)
        self.bottom_up_blocks = nn.ModuleList(CSPLayer(out_ch * 2, out_ch, kernel, num_csp_blocks) for _ in pairs)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        inputs = self.conv_t(feats)
        levels = len(inputs)
        inner = [inputs[-1]]
        for idx in range(levels - 1, 0, -1):
            up = F.interpolate(inner[0], scale_factor=2.0, mode="nearest")
            inner.insert(0, self.top_down_blocks[levels - 1 - idx](torch.cat([up, inputs[idx - 1]], dim=1)))
        outs = [inner[0]]
        for idx in range(levels - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner[idx + 1]], dim=1)))
        outs.append(self.first_top_conv(inputs[-1]) + self.second_top_conv(outs[-1]))
        return outs


class ConvNorm(nn.Module):
    """conv (no bias) + BN, no activation (PaddleDetection's ``ConvNormLayer``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, 1, (kernel - 1) // 2, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class PicoFeatConv(nn.Module):
    """One PicoFeat step: depthwise 5x5 ConvNorm + hswish, pointwise ConvNorm + hswish."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.dw = ConvNorm(in_ch, out_ch, 5, groups=out_ch)
        self.pw = ConvNorm(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardswish(self.pw(F.hardswish(self.dw(x))))


class PicoFeat(nn.Module):
    """``PicoFeat`` with ``share_cls_reg=True``: one conv tower per level (Paddle: ``cls_conv_{dw,pw}{level}.{i}``)."""

    def __init__(self, feat_in: int = 128, feat_out: int = 128, num_levels: int = 4, num_convs: int = 4) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(*[PicoFeatConv(feat_in if i == 0 else feat_out, feat_out) for i in range(num_convs)])
            for _ in range(num_levels)
        )

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:
        return self.levels[level](x)


class PicoHead(nn.Module):
    """Per-level class logits + box distributions, and the GFL decoding of both."""

    def __init__(
        self,
        num_classes: int = 1,
        strides: tuple[int, ...] = (8, 16, 32, 64),
        feat_in: int = 128,
        num_convs: int = 4,
        reg_max: int = 7,
        cell_offset: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.reg_max = reg_max
        self.cell_offset = cell_offset
        self.conv_feat = PicoFeat(feat_in, feat_in, len(strides), num_convs)
        self.head_cls = nn.ModuleList(
            nn.Conv2d(feat_in, num_classes + 4 * (reg_max + 1), 1) for _ in strides
        )
        self.register_buffer("project", torch.arange(reg_max + 1, dtype=torch.float32), persistent=False)
        self._anchor_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        # PaddleDetection's initialisation: N(0, 0.01) weights and a bias at the logit of a 1 %
        # prior, so an untrained head scores every cell ~0.01 (random-weight models detect
        # nothing and fall back to the whole image, as PaddleX's do) instead of ~0.5.
        prior_logit = -math.log((1 - 0.01) / 0.01)
        for conv in self.head_cls:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.constant_(conv.bias, prior_logit)

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        cls_logits, bbox_dists = [], []
        for level, feat in enumerate(feats):
            out = self.head_cls[level](self.conv_feat(feat, level))
            cls_logits.append(out[:, : self.num_classes])
            bbox_dists.append(out[:, self.num_classes:])
        return cls_logits, bbox_dists

    def anchors(self, shapes: list[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres (grid units, row-major per level, levels concatenated) and their strides."""
        key = (tuple(shapes), str(device))
        cached = self._anchor_cache.get(key)
        if cached is None:
            points, strides = [], []
            for (h, w), stride in zip(shapes, self.strides):
                ys = torch.arange(h, dtype=torch.float32, device=device) + self.cell_offset
                xs = torch.arange(w, dtype=torch.float32, device=device) + self.cell_offset
                grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
                points.append(torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2))
                strides.append(torch.full((h * w, 1), float(stride), device=device))
            cached = (torch.cat(points), torch.cat(strides))
            self._anchor_cache[key] = cached
        return cached

    def decode(
        self, cls_logits: list[torch.Tensor], bbox_dists: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """scores [B, C, N] (sigmoid) and boxes [B, N, 4] (x1, y1, x2, y2 in input pixels), before NMS."""
        scores = torch.sigmoid(torch.cat([c.flatten(2) for c in cls_logits], dim=2))
        dist = torch.cat([d.flatten(2) for d in bbox_dists], dim=2)  # [B, 4*(R+1), N]
        dist = dist.transpose(1, 2).unflatten(-1, (4, self.reg_max + 1))  # side-major bins
        # The bins' expectation as multiply + sum, not `@ project`: ONNX Runtime ran that MatMul
        # ([B, N, 4, R+1] x [R+1]) about 5x slower (CPU time per 640x640 image: 6.5 vs 1.2 ms).
        distance = (torch.softmax(dist, dim=-1) * self.project).sum(-1)  # [B, N, 4]
        points, strides = self.anchors([tuple(c.shape[-2:]) for c in cls_logits], dist.device)
        boxes = torch.cat((points - distance[..., :2], points + distance[..., 2:]), dim=-1) * strides
        return scores, boxes


def _lcnet_backbone(scale: float) -> nn.Module:
    """timm PP-LCNet as a stride 8/16/32 feature extractor (timm stage indices 2, 4, 5 -> feature indices 2, 3, 4)."""
    from timm.models.mobilenetv3 import _gen_lcnet

    timm_logger = logging.getLogger("timm.models._builder")
    previous = timm_logger.level
    timm_logger.setLevel(logging.ERROR)  # x2.5 has no timm pretrained config; that warning is expected
    try:
        return _gen_lcnet(
            f"lcnet_{int(scale * 100):03d}", scale, pretrained=False, features_only=True, out_indices=(2, 3, 4)
        )
    finally:
        timm_logger.setLevel(previous)


class PicoDet(nn.Module):
    """PicoDet for PP-ShiTuV2_det. ``forward`` -> dict of raw per-level outputs + decoded ``scores``/``boxes``."""

    def __init__(self, num_classes: int = 1, scale: float = 2.5, neck_channels: int = 128, reg_max: int = 7) -> None:
        super().__init__()
        self.backbone = _lcnet_backbone(scale)
        self.neck = CSPPAN(self.backbone.feature_info.channels(), neck_channels)
        self.head = PicoHead(num_classes, (8, 16, 32, 64), neck_channels, reg_max=reg_max)

    def forward_raw(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return self.head(self.neck(self.backbone(x)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cls_logits, bbox_dists = self.forward_raw(x)
        scores, boxes = self.head.decode(cls_logits, bbox_dists)
        out: dict[str, torch.Tensor] = {"scores": scores, "boxes": boxes}
        for level, (cls, dist) in enumerate(zip(cls_logits, bbox_dists)):
            out[f"cls_logits_p{level}"] = cls
            out[f"bbox_dist_p{level}"] = dist
        return out


def build_picodet(num_classes: int = 1, **kwargs: object) -> PicoDet:
    return PicoDet(num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
