"""Generic ONNX detectors as mainbody detectors: real COCO detectors (CenterNet, NanoDet) on real photos.

Hand-checked object regions (x1, y1, x2, y2 in image pixels, read off the photos on a
100 px grid): dog.jpg (768x576): the dog sits in the lower-left quarter at about
(130, 220, 310, 540), the bicycle spans (130, 135, 565, 420). person.jpg (640x424): the
person stands at (190, 100, 275, 375), the dog at (65, 262, 200, 345), the horse at
(405, 138, 600, 345).
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from viewfinder.errors import ConfigError, WeightsNotFoundError
from viewfinder.results import DetResult
from viewfinder.models.onnx_detector import OnnxDetectorSpec, create_onnx_detector, gfl_decode

CENTERNET = {
    "layout": "NHWC", "channel_order": "RGB", "decoding": "boxes_scores_classes",
    "output": "tower_0/detections", "labels": "coco80",
}
NANODET = {
    "channel_order": "BGR", "mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395],
    "decoding": "gfl", "strides": [8, 16, 32], "reg_max": 10, "labels": "coco80",
}
REGIONS = {
    "dog.jpg": {"dog": (130, 220, 310, 540), "bicycle": (130, 135, 565, 420)},
    "person.jpg": {"person": (190, 100, 275, 375), "dog": (65, 262, 200, 345)},
}


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def centernet(shared_dir):
    return create_onnx_detector(shared_dir / "assets" / "centernet.onnx", CENTERNET)


@pytest.fixture(scope="module")
def nanodet(shared_dir):
    return create_onnx_detector(shared_dir / "assets" / "nanodet.onnx", NANODET)


@pytest.mark.parametrize("detector_name", ["centernet", "nanodet"])
@pytest.mark.parametrize("image", sorted(REGIONS))
def test_boxes_land_on_the_objects(request, photos, detector_name, image):
    detector = request.getfixturevalue(detector_name)
    (result,) = detector.predict(str(photos / image), threshold=0.3)
    assert isinstance(result, DetResult)
    boxes = result["boxes"]
    for name, region in REGIONS[image].items():
        best = max(boxes, key=lambda box: iou(box["coordinate"], region))
        assert iou(best["coordinate"], region) > 0.7, (name, best)
        assert best["label"] == name and best["score"] > 0.3
    width, height = result.img["res"].size
    coords = np.array([b["coordinate"] for b in boxes])
    assert coords.min() >= 0 and coords[:, 0::2].max() <= width and coords[:, 1::2].max() <= height


def test_nanodet_finds_the_horse(nanodet, photos):
    (result,) = nanodet.predict(str(photos / "person.jpg"), threshold=0.4)
    horse = [b for b in result["boxes"] if iou(b["coordinate"], (405, 138, 600, 345)) > 0.7]
    assert horse and horse[0]["label"] == "horse"
    # class-agnostic NMS (the mainbody default) keeps one box there, not "horse" and "cow" both
    assert len(horse) == 1


def test_class_aware_nms_keeps_overlapping_classes(shared_dir, photos):
    detector = create_onnx_detector(shared_dir / "assets" / "nanodet.onnx", {**NANODET, "class_agnostic": False})
    (result,) = detector.predict(str(photos / "person.jpg"), threshold=0.4)
    labels = {b["label"] for b in result["boxes"] if iou(b["coordinate"], (405, 138, 600, 345)) > 0.7}
    assert labels == {"horse", "cow"}


def test_spec_from_yaml_file_and_batches(shared_dir, photos, tmp_path):
    spec_file = tmp_path / "centernet.yaml"
    spec_file.write_text(yaml.safe_dump(CENTERNET), encoding="utf-8")
    detector = create_onnx_detector(shared_dir / "assets" / "centernet.onnx", spec_file, batch_size=2)
    results = list(detector.predict([str(photos / "dog.jpg"), str(photos / "person.jpg")]))
    assert [r["input_path"].rsplit("/", 1)[-1] for r in results] == ["dog.jpg", "person.jpg"]
    assert all(b["score"] > 0.5 for r in results for b in r["boxes"])  # default threshold 0.5
    assert [b["label"] for b in results[1]["boxes"]] == ["person"]


def test_spec_errors(shared_dir):
    model = shared_dir / "assets" / "centernet.onnx"
    with pytest.raises(ConfigError, match="unknown keys"):
        create_onnx_detector(model, {**CENTERNET, "mean_rgb": [0, 0, 0]})
    with pytest.raises(ConfigError, match="needs 'decoding'"):
        create_onnx_detector(model, {"layout": "NHWC"})
    with pytest.raises(ConfigError, match="decoding must be one of"):
        create_onnx_detector(model, {**CENTERNET, "decoding": "yolo"})
    with pytest.raises(ConfigError, match="no input named"):
        create_onnx_detector(model, {**CENTERNET, "input_name": "images"})
    with pytest.raises(ConfigError, match="3-channel"):
        create_onnx_detector(model, {**CENTERNET, "layout": "NCHW"})
    with pytest.raises(ConfigError, match="takes 512x512"):
        create_onnx_detector(model, {**CENTERNET, "size": [640, 640]})
    with pytest.raises(ConfigError, match="no shipped label list"):
        create_onnx_detector(model, {**CENTERNET, "labels": "nope"})
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_onnx_detector(shared_dir / "assets" / "missing.onnx", CENTERNET)
    with pytest.raises(ConfigError, match="cannot tell the stride-8 outputs apart"):
        create_onnx_detector(shared_dir / "assets" / "nanodet.onnx", {**NANODET, "reg_max": 7})
    with pytest.raises(ConfigError, match="does not exist"):
        OnnxDetectorSpec.load("/no/such/spec.yaml")
    with pytest.raises(ConfigError, match="backend 'opencv'"):
        create_onnx_detector(model, {**CENTERNET, "resize_backend": "opencv"})


def test_resize_backend_reaches_the_preprocessing(shared_dir, photos, centernet):
    detector = create_onnx_detector(shared_dir / "assets" / "centernet.onnx", {**CENTERNET, "resize_backend": "cv2"})
    assert detector.preprocess.config.backend == "cv2" and centernet.preprocess.config.backend == "pillow"
    (ours,) = detector.predict(str(photos / "dog.jpg"), threshold=0.3)
    (pillow,) = centernet.predict(str(photos / "dog.jpg"), threshold=0.3)
    # The same objects, found from slightly different pixels.
    assert sorted(b["label"] for b in ours["boxes"]) == sorted(b["label"] for b in pillow["boxes"])


def test_gfl_decode_geometry():
    """A one-hot distribution on bin k means a distance of k strides from the cell centre."""
    reg_max, stride = 4, 8
    dist = np.full((1, 4, 4 * (reg_max + 1)), -50.0, dtype=np.float32)  # a 2x2 grid at 16x16 input
    for side, k in enumerate((1, 2, 3, 0)):  # l, t, r, b
        dist[0, 3, side * (reg_max + 1) + k] = 50.0  # cell 3 = (x 1, y 1), centre (12, 12)
    scores = np.zeros((1, 4, 2), dtype=np.float32)
    boxes, out_scores = gfl_decode([scores], [dist], (stride,), (16, 16), reg_max)
    np.testing.assert_allclose(boxes[0, 3], [12 - 8, 12 - 16, 12 + 24, 12 + 0], atol=1e-4)
    assert boxes.shape == (1, 4, 4) and out_scores.shape == (1, 4, 2)
