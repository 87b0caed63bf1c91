"""Walk the whole registry: every model builds, has the recorded parameter count and output shape."""
from __future__ import annotations

import pytest
import torch

from viewfinder.models import get_spec, list_models
from viewfinder.models.labels import load_labels

PADDLEX_CLASSIFIERS = (
    ["CLIP_vit_base_patch16_224", "CLIP_vit_large_patch14_224", "ConvNeXt_base_224", "ConvNeXt_base_384",
     "ConvNeXt_large_224", "ConvNeXt_large_384", "ConvNeXt_small", "ConvNeXt_tiny"]
    + [f"FasterNet-{v}" for v in ("L", "M", "S", "T0", "T1", "T2")]
    + [f"MobileNetV1_x{v}" for v in ("0_25", "0_5", "0_75", "1_0")]
    + [f"MobileNetV2_x{v}" for v in ("0_25", "0_5", "1_0", "1_5", "2_0")]
    + [f"MobileNetV3_{s}_x{v}" for s in ("large", "small") for v in ("0_35", "0_5", "0_75", "1_0", "1_25")]
    + [f"MobileNetV4_{v}" for v in ("conv_small", "conv_medium", "conv_large", "hybrid_medium", "hybrid_large")]
    + [f"PP-HGNet_{v}" for v in ("tiny", "small", "base")] + [f"PP-HGNetV2-B{i}" for i in range(7)]
    + [f"PP-LCNet_x{v}" for v in ("0_25", "0_35", "0_5", "0_75", "1_0", "1_5", "2_0", "2_5")]
    + ["PP-LCNetV2_small", "PP-LCNetV2_base"]
    + [f"ResNet{d}{s}" for d in (18, 34, 50, 101, 152) for s in ("", "_vd")] + ["ResNet200_vd"]
    + [f"StarNet-S{v}" for v in (1, 3, 4)]
    + [f"SwinTransformer_{v}_patch4_window7_224" for v in ("tiny", "small", "base", "large")]
    + [f"SwinTransformer_{v}_patch4_window12_384" for v in ("base", "large")]
)


def test_every_paddlex_classifier_is_registered():
    registered = set(list_models("image_classification"))
    assert len(PADDLEX_CLASSIFIERS) == 78
    assert not set(PADDLEX_CLASSIFIERS) - registered


def test_imagenet_labels():
    labels = load_labels("imagenet1k")
    assert len(labels) == 1000 and labels[0] == "tench, Tinca tinca" and labels[285] == "Egyptian cat"


@pytest.mark.parametrize("name", PADDLEX_CLASSIFIERS)
def test_build_params_and_output(name):
    spec = get_spec(name)
    assert spec.task == "image_classification" and spec.labels == "imagenet1k"
    height, width = spec.preprocess.input_size
    if spec.large:
        with torch.device("meta"):
            module = spec.builder(num_classes=1000)
            output = module.eval()(torch.empty(1, 3, height, width))
    else:
        torch.manual_seed(0)
        module = spec.builder(num_classes=1000).eval()
        with torch.inference_mode():
            output = module(torch.randn(1, 3, height, width))
        assert torch.isfinite(output).all()
    assert tuple(output.shape) == (1, 1000)
    assert sum(p.numel() for p in module.parameters()) == spec.param_count
