"""The two resize backends: cv2 reproduces PaddleX's ResizeImage/CropImage, pillow antialiases."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from viewfinder.errors import ConfigError
from viewfinder.models.preprocess import Preprocessor, PreprocessConfig
from viewfinder.models.registry import get_spec


def _paddlex_resize_short_crop(rgb: np.ndarray, resize_short: int, crop: int) -> np.ndarray:
    """PaddleX's classification steps, written out: ResizeImage(resize_short) then CropImage."""
    height, width = rgb.shape[:2]
    percent = float(resize_short) / min(width, height)
    new_w, new_h = int(round(width * percent)), int(round(height * percent))
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = (new_w - crop) // 2, (new_h - crop) // 2
    return resized[top:top + crop, left:left + crop]


@pytest.mark.parametrize("size", [(640, 480), (333, 500), (257, 256)])
def test_cv2_backend_is_paddlex_resize(size):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    ours = Preprocessor(PreprocessConfig(resize_short=256, crop=224, backend="cv2")).resize_one(rgb)
    np.testing.assert_array_equal(ours, _paddlex_resize_short_crop(rgb, 256, 224))
    # From a Pillow image (the classifiers' decode route) the pixels are the same.
    again = Preprocessor(PreprocessConfig(resize_short=256, crop=224, backend="cv2")).resize_one(Image.fromarray(rgb))
    np.testing.assert_array_equal(again, ours)


def test_cv2_backend_takes_views_and_crops():
    bgr = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    pre = Preprocessor(PreprocessConfig(resize_short=None, crop=None, resize=(224, 224), backend="cv2"))
    flipped = bgr[:, :, ::-1]  # negative strides
    np.testing.assert_array_equal(pre.resize_one(flipped), pre.resize_one(np.ascontiguousarray(flipped)))
    box = bgr[100:300, 50:420]  # a detection crop: a strided view
    np.testing.assert_array_equal(pre.resize_one(box), pre.resize_one(box.copy()))


def test_cv2_fixed_size_resize_matches_opencv():
    rgb = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cfg = PreprocessConfig(resize_short=None, crop=None, resize=(640, 640), interpolation="bicubic", backend="cv2")
    np.testing.assert_array_equal(Preprocessor(cfg).resize_one(rgb),
                                  cv2.resize(rgb, (640, 640), interpolation=cv2.INTER_CUBIC))


def test_backends_differ_only_by_antialiasing():
    """On a smooth photo-like image both backends agree closely; the pillow one is not cv2's."""
    y, x = np.mgrid[0:480, 0:640]
    smooth = np.stack([x * 255 // 639, y * 255 // 479, (x + y) * 255 // 1118], axis=-1).astype(np.uint8)
    pil = Preprocessor(PreprocessConfig(backend="pillow")).resize_one(smooth).astype(int)
    cv = Preprocessor(PreprocessConfig(backend="cv2")).resize_one(smooth).astype(int)
    assert pil.shape == cv.shape == (224, 224, 3)
    assert np.abs(pil - cv).max() <= 2


def test_cv2_backend_does_not_alias_when_shrinking_below_half():
    """A one-pixel checkerboard shrunk 4.1x is flat grey with INTER_AREA, moire with INTER_LINEAR."""
    board = ((np.indices((1024, 1024)).sum(axis=0) % 2) * 255).astype(np.uint8)
    rgb = np.repeat(board[:, :, None], 3, axis=2)
    cfg = PreprocessConfig(resize_short=None, crop=None, resize=(250, 250), backend="cv2")
    out = Preprocessor(cfg).resize_one(rgb).astype(int)
    assert abs(out.mean() - 127.5) < 1 and out.std() < 1
    aliased = cv2.resize(rgb, (250, 250), interpolation=cv2.INTER_LINEAR).astype(int)
    assert aliased.std() > 30  # what PaddleX's resize gives on the same input


def test_backend_is_validated_and_defaults_to_pillow_for_old_model_dirs():
    with pytest.raises(ConfigError, match="backend 'opencv'"):
        PreprocessConfig(backend="opencv")
    old = PreprocessConfig().to_dict()
    del old["backend"]  # a model dir exported before the key existed
    assert PreprocessConfig.from_dict(old).backend == "pillow"
    assert PreprocessConfig.from_dict(PreprocessConfig(backend="cv2").to_dict()).backend == "cv2"


def test_zoo_backends_follow_each_models_recipe():
    # PaddleX's own configs: cv2 for these models...
    for name in ("PP-LCNet_x1_0", "PP-HGNetV2-B0", "ResNet50", "PP-ShiTuV2_rec", "PP-ShiTuV2_det",
                 "PP-LCNet_x1_0_ML", "MobileNetV2_x1_0"):
        assert get_spec(name).preprocess.backend == "cv2", name
    # ...Pillow for the bicubic families and for torchvision's MobileNetV2 weights.
    for name in ("ConvNeXt_tiny", "SwinTransformer_tiny_patch4_window7_224", "CLIP_vit_base_patch16_224"):
        assert get_spec(name).preprocess.backend == "pillow", name
    mobilenet = get_spec("MobileNetV2_x1_0")
    assert mobilenet.preprocess_for("torchvision").backend == "pillow"
    assert mobilenet.preprocess_for("pdparams") is mobilenet.preprocess_for(None) is mobilenet.preprocess


def test_borrowed_pillow_memory_matches_asarray_and_is_not_kept():
    from viewfinder.io.pil_view import borrow_rgbx

    rgb = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    view, owner = borrow_rgbx(img)
    assert view.shape == (120, 160, 4) and owner is not None
    np.testing.assert_array_equal(view[:, :, :3], rgb)
    assert borrow_rgbx(img.convert("L")) is None and borrow_rgbx(img.convert("RGBA")) is None
    # Already the right size: the result is a copy, not a view of the image's memory.
    same = Preprocessor(PreprocessConfig(resize_short=None, crop=None, resize=(160, 120), backend="cv2"))
    out = same.resize_one(img)
    np.testing.assert_array_equal(out, rgb)
    assert not np.shares_memory(out, view)


def test_image_in_several_memory_blocks_falls_back_to_a_copy():
    from viewfinder.io.pil_view import borrow_rgbx

    big = Image.new("RGB", (4000, 3000), (10, 20, 30))  # 48 MB: more than one of Pillow's blocks
    assert borrow_rgbx(big) is None
    out = Preprocessor(PreprocessConfig(backend="cv2")).resize_one(big)
    assert out.shape == (224, 224, 3) and (out == (10, 20, 30)).all()
