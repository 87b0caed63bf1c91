"""PP-ShiTuV2 models: registry entries, feature and detection predictors, classifiers as feature extractors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from viewfinder.errors import ConfigError, ViewfinderError, WeightsNotFoundError
from viewfinder.io import DecodedImage
from viewfinder.models import create_feature_model, get_spec, list_models
from viewfinder.models.detection import NMSConfig, multiclass_nms, to_original_pixels
from viewfinder.models.factory import create_model
from viewfinder.models.feature import FeaturePredictor
from viewfinder.results import DetResult, FeatureResult

PADDLEX_URL = "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/"


@pytest.fixture(scope="module")
def rec():
    return create_model("PP-ShiTuV2_rec", pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def det():
    torch.manual_seed(0)
    model = create_model("PP-ShiTuV2_det", pretrained=False, device="cpu", engine="torch")
    # An untrained head scores every cell ~0.01 (PaddleDetection's prior-bias init); with the
    # bias at 0 the random network scores ~0.5, so the result-formatting paths see boxes.
    with torch.no_grad():
        for conv in model.engine.module.head.head_cls:
            conv.bias.zero_()
    return model


def test_untrained_detector_finds_nothing_like_paddlex(photos):
    torch.manual_seed(0)
    model = create_model("PP-ShiTuV2_det", pretrained=False, device="cpu", engine="torch")
    (result,) = model.predict(str(photos / "dog.jpg"), threshold=0.5)
    assert result["boxes"] == []


def test_registry_entries():
    assert {"PP-ShiTuV2_rec", "PP-ShiTuV2_rec_CLIP_vit_base", "PP-ShiTuV2_rec_CLIP_vit_large"} <= set(
        list_models("image_feature"))
    assert list_models("mainbody_detection") == ["PP-ShiTuV2_det"]
    for name in ("PP-ShiTuV2_rec", "PP-ShiTuV2_det"):
        (source,) = get_spec(name).weight_sources
        assert (source.kind, source.format, source.sha256) == ("url", "pdparams", None)
        assert source.filename == f"{name}_pretrained.pdparams" and source.url == PADDLEX_URL + source.filename
        assert "pdparams" in get_spec(name).converters
    rec_pre = get_spec("PP-ShiTuV2_rec").preprocess
    assert (rec_pre.resize, rec_pre.resize_short, rec_pre.crop) == ((224, 224), None, None)
    assert rec_pre.input_size == (224, 224) and rec_pre.mean[0] == pytest.approx(0.485)
    det_pre = get_spec("PP-ShiTuV2_det").preprocess
    assert (det_pre.resize, det_pre.interpolation, det_pre.input_size) == ((640, 640), "bicubic", (640, 640))
    assert get_spec("PP-ShiTuV2_det").defaults["nms_threshold"] == 0.6


@pytest.mark.parametrize("name", ["PP-ShiTuV2_rec", "PP-ShiTuV2_det", "PP-ShiTuV2_rec_CLIP_vit_base",
                                  "PP-ShiTuV2_rec_CLIP_vit_large"])
def test_param_counts_and_shapes(name):
    spec = get_spec(name)
    height, width = spec.preprocess.input_size
    with torch.device("meta"):
        module = spec.builder(num_classes=spec.num_classes).eval()
        out = module(torch.empty(2, 3, height, width))
    assert sum(p.numel() for p in module.parameters()) == spec.param_count
    if spec.task == "image_feature":
        assert tuple(out.shape) == (2, 512)
    else:
        assert tuple(out["scores"].shape) == (2, 1, 8500) and tuple(out["boxes"].shape) == (2, 8500, 4)


def test_offline_without_cached_weights_names_the_file(tmp_home):
    with pytest.raises(WeightsNotFoundError, match="PP-ShiTuV2_rec_pretrained.pdparams"):
        create_model("PP-ShiTuV2_rec")
    with pytest.raises(WeightsNotFoundError, match="no pretrained weights are known"):
        create_model("PP-ShiTuV2_rec_CLIP_vit_base")


# --- image features -----------------------------------------------------------------------


def test_rec_feature_results(rec, photos, tmp_path):
    results = list(rec.predict([str(photos / "dog.jpg"), str(photos / "chelsea.png")], batch_size=2))
    assert [type(r) for r in results] == [FeatureResult, FeatureResult]
    first = results[0]
    assert set(first) == {"input_path", "page_index", "feature"} and first["page_index"] is None
    assert first["feature"].shape == (512,) and first["feature"].dtype == np.float32
    assert abs(float(np.linalg.norm(first["feature"])) - 1.0) < 1e-5
    payload = first.json["res"]
    assert len(payload["feature"]) == 512 and all(isinstance(v, float) for v in payload["feature"])
    json.dumps(payload)
    written = first.save_all(tmp_path)
    assert [p.name for p in written] == ["dog_res.json"]  # save_all: the JSON only (PaddleX)
    assert first.img["res"].size == Image.open(photos / "dog.jpg").size  # drawn on demand (issue 26)


def test_embed_matches_predict_and_is_batch_invariant(rec, photos):
    rgb = np.asarray(Image.open(photos / "dog.jpg").convert("RGB"))
    crops = [rgb[200:540, 120:320], rgb[100:400, 100:600], rgb]  # views, not copies
    one_by_one = rec.embed(crops, batch_size=1)
    batched = rec.embed(crops, batch_size=3)
    assert one_by_one.shape == (3, 512) and one_by_one.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)
    via_predict = next(iter(rec.predict(str(photos / "dog.jpg"))))["feature"]
    np.testing.assert_allclose(via_predict, batched[2], atol=1e-5)
    assert rec.embed([]).shape == (0, 512)


def test_embed_rejects_non_images(rec):
    with pytest.raises(ViewfinderError, match="image 1 is not an RGB uint8"):
        rec.embed([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])
    with pytest.raises(ViewfinderError, match="empty"):
        rec.embed([np.zeros((0, 8, 3), np.uint8)])


def test_classifier_as_feature_extractor_finds_the_same_object(mobilenet_v2_weights, photos):
    """Real MobileNetV2 weights: 1280-d pooled features; the motorcycle's other view is its nearest neighbour."""
    model = create_feature_model("MobileNetV2_x1_0", weights=mobilenet_v2_weights, engine="torch")
    assert isinstance(model, FeaturePredictor) and model.feature_dim == 1280
    names = ["motorcycle_left.png", "motorcycle_right.png", "chelsea.png", "coffee.png", "dog.jpg", "horses.jpg"]
    results = list(model.predict([str(photos / n) for n in names], batch_size=3))
    features = np.stack([r["feature"] for r in results])
    assert features.shape == (6, 1280)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    similarity = features @ features.T
    np.fill_diagonal(similarity, -1)
    assert similarity[0].argmax() == 1 and similarity[1].argmax() == 0
    assert similarity[0, 1] > 0.9 and similarity[0, 2:].max() < 0.8


def test_task_override_is_checked():
    with pytest.raises(ConfigError, match="not a detector"):
        create_model("MobileNetV2_x0_5", pretrained=False, task="mainbody_detection")
    with pytest.raises(ConfigError, match="only feature and classification models"):
        create_model("PP-ShiTuV2_det", pretrained=False, task="image_feature")
    with pytest.raises(ConfigError, match="has no predictor"):
        create_model("MobileNetV2_x0_5", pretrained=False, task="no_such_task")


def test_clip_feature_model_plumbing(photos):
    torch.manual_seed(0)
    model = create_model("PP-ShiTuV2_rec_CLIP_vit_base", pretrained=False)
    result = next(iter(model.predict(str(photos / "coffee.png"))))
    assert result["feature"].shape == (512,) and abs(float(np.linalg.norm(result["feature"])) - 1) < 1e-5
    assert model.preprocess.config.mean[0] == pytest.approx(0.48145466)


# --- mainbody detection ---------------------------------------------------------------------


def test_det_results(det, photos, tmp_path):
    (result,) = det.predict(str(photos / "dog.jpg"), threshold=0.0)
    assert isinstance(result, DetResult) and set(result) == {"input_path", "page_index", "input_img", "boxes"}
    boxes = result["boxes"]
    assert 0 < len(boxes) <= 100  # keep_top_k
    assert set(boxes[0]) == {"cls_id", "label", "score", "coordinate"}
    assert {b["label"] for b in boxes} == {"foreground"} and {b["cls_id"] for b in boxes} == {0}
    scores = [b["score"] for b in boxes]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.025  # NMS score threshold
    coords = np.array([b["coordinate"] for b in boxes])
    assert coords.min() >= 0 and coords[:, 0::2].max() <= 768 and coords[:, 1::2].max() <= 576
    assert np.all(coords[:, 2] >= coords[:, 0]) and np.all(coords[:, 3] >= coords[:, 1])
    json.dumps(result.json)
    assert result.img["res"].size == (768, 576)
    assert sorted(p.name for p in result.save_all(tmp_path)) == ["dog_res.jpg", "dog_res.json"]
    (strict,) = det.predict(str(photos / "dog.jpg"), threshold=scores[3])
    assert [b["score"] for b in strict["boxes"]] == [s for s in scores if s > scores[3]]  # strictly above


def test_det_threshold_is_validated(det, photos):
    with pytest.raises(ViewfinderError, match="threshold"):
        list(det.predict(str(photos / "dog.jpg"), threshold="high"))
    with pytest.raises(ViewfinderError, match="between 0 and 1"):
        list(det.predict(str(photos / "dog.jpg"), threshold=1.5))


def test_det_boxes_follow_the_original_size(det, photos):
    """An image decoded at reduced scale reports boxes in the original image's pixels."""
    rgb = np.asarray(Image.open(photos / "dog.jpg").convert("RGB"))
    small = np.asarray(Image.fromarray(rgb).resize((384, 288), Image.Resampling.BICUBIC))
    full = det.predict_images([small], threshold=0.0)[0]["boxes"]
    scaled = det.predict_images([DecodedImage(small, (768, 576))], threshold=0.0)[0]["boxes"]
    np.testing.assert_allclose(np.array([b["coordinate"] for b in scaled]),
                               np.array([b["coordinate"] for b in full]) * 2, rtol=1e-5)


def test_multiclass_nms_semantics():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9.5]], dtype=np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0], [0.0, 0.6]], dtype=np.float32)
    kept, kept_scores, classes = multiclass_nms(boxes, scores, NMSConfig(score_threshold=0.05, nms_threshold=0.6))
    # box 1 overlaps box 0 (IoU 0.81) in class 0; box 3 overlaps too, but is class 1
    np.testing.assert_array_equal(kept_scores, np.array([0.9, 0.7, 0.6], dtype=np.float32))
    np.testing.assert_array_equal(classes, [0, 0, 1])
    np.testing.assert_array_equal(kept[1], boxes[2])
    _, agnostic_scores, agnostic_classes = multiclass_nms(
        boxes, scores, NMSConfig(score_threshold=0.05, nms_threshold=0.6, class_agnostic=True))
    np.testing.assert_array_equal(agnostic_scores, np.array([0.9, 0.7], dtype=np.float32))
    np.testing.assert_array_equal(agnostic_classes, [0, 0])
    _, top_scores, _ = multiclass_nms(boxes, scores, NMSConfig(score_threshold=0.05, nms_threshold=0.6, keep_top_k=1))
    np.testing.assert_array_equal(top_scores, [np.float32(0.9)])
    # per-class pre-NMS top-k: only the best candidate per class enters NMS
    _, pre_scores, _ = multiclass_nms(boxes, scores, NMSConfig(score_threshold=0.05, nms_threshold=0.6, nms_top_k=1))
    np.testing.assert_array_equal(pre_scores, np.array([0.9, 0.6], dtype=np.float32))
    _, none, _ = multiclass_nms(boxes, scores, NMSConfig(score_threshold=0.95))
    assert none.shape == (0,)


def test_to_original_pixels_scales_and_clips():
    boxes = np.array([[-5, 10, 320, 700], [320, 320, 640, 640]], dtype=np.float32)
    out = to_original_pixels(boxes, input_size=(640, 640), original_size=(1280, 320))
    np.testing.assert_allclose(out, [[0, 5, 640, 320], [640, 160, 1280, 320]])
