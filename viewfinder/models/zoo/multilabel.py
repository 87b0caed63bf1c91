"""The COCO-80 multi-label zoo under PaddleX's names: backbone + ML-Decoder head.

Built as PaddleClas's ``add_ml_decoder_head`` builds them: the backbone's global pool and
flatten are removed, its last 1x1 conv (if any) runs on the full feature map, and the
classifier is replaced by an ML-Decoder (80 queries, 768-d, one decoder layer). Input:
448x448 resize without crop, ImageNet normalisation; output: 80 logits (sigmoid in the
predictor). ``param_count`` is recorded from our builds; ``tests/test_multilabel_zoo.py``
rebuilds them and checks.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import timm
import torch.nn as nn

from ..nets.ml_decoder import MLDecoder, MLDecoderNet
from ..nets.paddle_clip import ClipFirstTokenBackbone
from ..preprocess import PreprocessConfig
from ..registry import ModelSpec, WeightSource, register
from .paddle_classifiers import (
    clip_vit_ml_from_paddle,
    hgnetv2_ml_from_paddle,
    lcnet_ml_from_paddle,
    paddle_hgnetv2,
    resnet50_ml_from_paddle,
)

TASK = "image_multilabel_classification"
ML_448 = PreprocessConfig(resize_short=None, crop=None, resize=(448, 448), interpolation="bilinear", backend="cv2")
QUERY_NUM = 80  # PaddleX's MLDecoder.query_num (capped at the class count)
PRETRAINED_URL = "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/{}_pretrained.pdparams"

# Parameters of each built network (80 classes), recorded from our builds.
PARAM_COUNTS: dict[str, int] = {
    "PP-LCNet_x1_0_ML": 8293808,
    "PP-HGNetV2-B0_ML": 11159662,
    "PP-HGNetV2-B4_ML": 24959792,
    "PP-HGNetV2-B6_ML": 80419888,
    "ResNet50_ML": 30720144,
    "CLIP_vit_base_patch16_448_ML": 92028496,
}


def _head(num_classes: int, in_channels: int) -> MLDecoder:
    return MLDecoder(class_num=num_classes, in_channels=in_channels, query_num=QUERY_NUM)


def build_lcnet_ml(num_classes: int = 80, **kwargs: Any) -> nn.Module:
    """PP-LCNet x1.0 (timm ``lcnet_100``); its bias-free 512->1280 conv + hardswish become the neck."""
    backbone = timm.create_model("lcnet_100", pretrained=False, num_classes=0, **kwargs)
    for name in ("global_pool", "conv_head", "norm_head", "act2", "flatten", "classifier"):
        setattr(backbone, name, nn.Identity())  # forward_features stops before them
    neck = nn.Sequential(nn.Conv2d(512, 1280, 1, bias=False), nn.Hardswish())
    return MLDecoderNet(backbone, _head(num_classes, 1280), neck)


def hgnetv2_ml_builder(arch: str) -> Callable[..., nn.Module]:
    """PP-HGNetV2 (PaddleClas stem); its 2048-wide last conv (+ ReLU, LAB) become the neck."""

    def build(num_classes: int = 80, **kwargs: Any) -> nn.Module:
        backbone = paddle_hgnetv2(arch, num_classes=0, **kwargs)
        neck = backbone.head.last_conv
        backbone.head = nn.Identity()
        return MLDecoderNet(backbone, _head(num_classes, 2048), neck)

    build.__qualname__ = f"ml_decoder:{arch}"
    return build


def build_resnet50_ml(num_classes: int = 80, **kwargs: Any) -> nn.Module:
    backbone = timm.create_model("resnet50", pretrained=False, num_classes=0, **kwargs)
    return MLDecoderNet(backbone, _head(num_classes, 2048))


def build_clip_vit_ml(num_classes: int = 80, **kwargs: Any) -> nn.Module:
    """CLIP ViT-B/16 at 448 (224-px position embedding resized per forward), see :class:`ClipFirstTokenBackbone`."""
    vit = timm.create_model("vit_base_patch16_clip_224", pretrained=False, num_classes=0, **kwargs)
    return MLDecoderNet(ClipFirstTokenBackbone(vit), _head(num_classes, 768))


def _add(name: str, builder: Callable[..., nn.Module], arch: str, converter, large: bool) -> None:
    register(
        ModelSpec(
            name=name,
            task=TASK,
            builder=builder,
            preprocess=ML_448,
            num_classes=80,
            labels="coco80",
            weight_sources=(
                WeightSource(kind="url", format="pdparams", url=PRETRAINED_URL.format(name),
                             filename=f"{name}_pretrained.pdparams"),
            ),
            param_count=PARAM_COUNTS[name],
            arch=arch,
            large=large,
            converters={"pdparams": converter},
        )
    )


_add("PP-LCNet_x1_0_ML", build_lcnet_ml, "lcnet_100 + ML-Decoder", lcnet_ml_from_paddle, large=False)
_add("PP-HGNetV2-B0_ML", hgnetv2_ml_builder("hgnetv2_b0"), "hgnetv2_b0 + ML-Decoder", hgnetv2_ml_from_paddle,
     large=False)
_add("PP-HGNetV2-B4_ML", hgnetv2_ml_builder("hgnetv2_b4"), "hgnetv2_b4 + ML-Decoder", hgnetv2_ml_from_paddle,
     large=True)
_add("PP-HGNetV2-B6_ML", hgnetv2_ml_builder("hgnetv2_b6"), "hgnetv2_b6 + ML-Decoder", hgnetv2_ml_from_paddle,
     large=True)
_add("ResNet50_ML", build_resnet50_ml, "resnet50 + ML-Decoder", resnet50_ml_from_paddle, large=True)
_add("CLIP_vit_base_patch16_448_ML", build_clip_vit_ml, "vit_base_patch16_clip_224 @448 + ML-Decoder",
     clip_vit_ml_from_paddle, large=True)
