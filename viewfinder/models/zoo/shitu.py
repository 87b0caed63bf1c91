"""PP-ShiTuV2 models: the image-feature (recognition) models and the mainbody detector.

Importing this module registers the models and the predictors of the ``image_feature``
and ``mainbody_detection`` tasks. Official PaddleX weights are the default source
(downloaded once into the weights cache); ``.pdparams`` files are converted on load.
"""
from __future__ import annotations

from ..nets.lcnetv2_shitu import build_shitu_rec
from ..nets.paddle_clip import clip_feature_builder
from ..nets.picodet import build_picodet
from ..preprocess import CLIP_MEAN, CLIP_STD, PreprocessConfig
from ..registry import ModelSpec, WeightSource, register
from .paddle_converters import lcnet_renames, make_converter
from .paddle_modern import clip_feature_from_paddle

PADDLEX_PRETRAINED = "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/"
FEATURE_DIM = 512

# PaddleX: ResizeImage size [224, 224] (no keep-ratio, cv2 bilinear), ImageNet mean/std.
REC_224 = PreprocessConfig(resize_short=None, crop=None, resize=(224, 224), interpolation="bilinear", backend="cv2")
CLIP_REC_224 = PreprocessConfig(
    resize_short=None, crop=None, resize=(224, 224), mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic"
)
# PaddleDetection: Resize target 640x640, keep_ratio False, interp 2 (cubic); ImageNet mean/std.
DET_640 = PreprocessConfig(resize_short=None, crop=None, resize=(640, 640), interpolation="bicubic", backend="cv2")

DET_DEFAULTS = {
    "threshold": 0.5,
    "score_threshold": 0.025,
    "nms_threshold": 0.6,
    "nms_top_k": 1000,
    "keep_top_k": 100,
    "label_list": ["foreground"],
}


def _paddlex_weights(name: str) -> tuple[WeightSource, ...]:
    filename = f"{name}_pretrained.pdparams"
    return (WeightSource(kind="url", format="pdparams", url=PADDLEX_PRETRAINED + filename, filename=filename),)


# --- .pdparams converters ---------------------------------------------------------------

_SHITU_REC_RENAMES = (
    (r"\.se\.conv1\.", ".se.fc1."),  # timm.layers.SqueezeExcite
    (r"\.se\.conv2\.", ".se.fc2."),
    (r"\.pw_conv_1\.", ".pw_conv.0."),
    (r"\.pw_conv_2\.", ".pw_conv.1."),
    (r"^backbone\.last_conv\.", "backbone.conv_head."),
    (r"^neck\.feat_bn\.", "neck."),
)

#: PaddleClas PPLCNetV2_base_ShiTu + BNNeck -> ShiTuRecNet (timm LCNetV2 names)
shitu_rec_from_pdparams = make_converter(
    renames=_SHITU_REC_RENAMES,
    drop=(
        r"^head\.",  # the training classifier (192,612 classes officially)
        r"\.dw_conv\.(weight|bias)$",  # the un-trained fused conv of re-parameterisable blocks
    ),
)

#: the same after PaddleClas's export re-parameterised it (each block's branches fused into
#: ``dw_conv``, which is what a PaddleX inference folder holds) -> ShiTuRecNet.reparameterize()d
shitu_rec_from_reparameterized = make_converter(renames=_SHITU_REC_RENAMES, drop=(r"^head\.",))

#: PaddleDetection PicoDet (LCNet, CSPPAN, PicoHead) -> nets.picodet.PicoDet
picodet_from_pdparams = make_converter(
    renames=(
        *lcnet_renames("backbone."),  # the same LCNet as PaddleClas's, under backbone.
        (r"^head\.conv_feat\.cls_conv_(dw|pw)(\d+)\.(\d+)\.", r"head.conv_feat.levels.\2.\3.\1."),
        (r"^head\.head_cls(\d+)\.", r"head.head_cls.\1."),
    ),
    drop=(
        r"^head\.p\d+_feat\.scale_reg$",  # GFL scale registers; PicoHead's forward does not use them
        r"^head\.distribution_project\.project$",  # the constant [0, 1, ..., reg_max]
    ),
)


# --- registrations ----------------------------------------------------------------------

register(
    ModelSpec(
        name="PP-ShiTuV2_rec",
        task="image_feature",
        builder=build_shitu_rec,
        preprocess=REC_224,
        num_classes=FEATURE_DIM,
        weight_sources=_paddlex_weights("PP-ShiTuV2_rec"),
        param_count=4622848,
        arch="PPLCNetV2_base_ShiTu + BNNeck (timm lcnetv2_base)",
        defaults={},
        converters={"pdparams": shitu_rec_from_pdparams,
                    "pdparams_reparameterized": shitu_rec_from_reparameterized},
    )
)

for _size, _arch, _count in (
    ("base", "vit_base_patch16_clip_224", 86193152),
    ("large", "vit_large_patch14_clip_224", 303704576),
):
    register(
        ModelSpec(
            name=f"PP-ShiTuV2_rec_CLIP_vit_{_size}",
            task="image_feature",
            # PaddleClas averages ViT-B/16's patch tokens only (nets/paddle_clip.py)
            builder=clip_feature_builder(_arch, skip_class_token=_size == "base"),
            preprocess=CLIP_REC_224,
            num_classes=FEATURE_DIM,
            weight_sources=_paddlex_weights(f"PP-ShiTuV2_rec_CLIP_vit_{_size}"),
            param_count=_count,
            arch=f"{_arch} (token mean) + Linear({FEATURE_DIM})",
            large=True,
            converters={"pdparams": clip_feature_from_paddle},
        )
    )

register(
    ModelSpec(
        name="PP-ShiTuV2_det",
        task="mainbody_detection",
        builder=build_picodet,
        preprocess=DET_640,
        num_classes=1,
        weight_sources=_paddlex_weights("PP-ShiTuV2_det"),
        param_count=7043956,
        arch="PicoDet (PP-LCNet x2.5, CSP-PAN, PicoHead)",
        defaults=dict(DET_DEFAULTS),
        converters={"pdparams": picodet_from_pdparams},
    )
)
