"""PP-ShiTuV2 weight import: our converted models reproduce Paddle's outputs on the parity fixtures.

Tolerance (../shared/parity/README.md): max|ours - ref| <= 1e-3 * max|ref| per stored output.
"""
from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch

from viewfinder.errors import WeightsError
from viewfinder.models import get_spec
from viewfinder.models.detection import NMSConfig, multiclass_nms
from viewfinder.models.factory import create_model
from viewfinder.models.weights import load_weights_file, read_pdparams

TOLERANCE = 1e-3
DET_OUTPUTS = (
    [f"out_cls_logits_p{i}" for i in range(4)] + [f"out_bbox_dist_p{i}" for i in range(4)] + ["out_scores", "out_boxes"]
)


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    assert ours.shape == ref.shape
    return float(np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def rec_dir(shared_dir):
    return shared_dir / "parity" / "PP-ShiTuV2_rec"


@pytest.fixture(scope="module")
def det_dir(shared_dir):
    return shared_dir / "parity" / "PP-ShiTuV2_det"


@pytest.fixture(scope="module")
def det_module(det_dir):
    spec = get_spec("PP-ShiTuV2_det")
    module = spec.builder(num_classes=1).eval()
    load_weights_file(module, det_dir / "model.pdparams", spec)
    return module


@pytest.fixture(scope="module")
def det_outputs(det_module, det_dir):
    with torch.inference_mode():
        out = det_module(torch.from_numpy(np.load(det_dir / "input.npy")))
    return {f"out_{key}": value.numpy() for key, value in out.items()}


@pytest.fixture(scope="module")
def rec_module(rec_dir):
    spec = get_spec("PP-ShiTuV2_rec")
    module = spec.builder(num_classes=512).eval()
    load_weights_file(module, rec_dir / "model.pdparams", spec)
    return module


def test_rec_matches_paddle(rec_module, rec_dir):
    with torch.inference_mode():
        ours = rec_module(torch.from_numpy(np.load(rec_dir / "input.npy"))).numpy()
    assert relative_error(ours, np.load(rec_dir / "output.npy")) <= TOLERANCE


def test_rec_reparameterized_still_matches(rec_module, rec_dir):
    """Folding the multi-branch depthwise convs (what the ONNX export does) keeps the output."""
    module = copy.deepcopy(rec_module)
    module.reparameterize()
    assert not any("dw_conv_list" in key for key in module.state_dict())
    with torch.inference_mode():
        ours = module(torch.from_numpy(np.load(rec_dir / "input.npy"))).numpy()
    assert relative_error(ours, np.load(rec_dir / "output.npy")) <= TOLERANCE


@pytest.mark.parametrize("name", DET_OUTPUTS)
def test_det_output_matches_paddle(det_outputs, det_dir, name):
    assert relative_error(det_outputs[name], np.load(det_dir / f"{name}.npy")) <= TOLERANCE


def test_det_decode_on_paddle_raw_outputs(det_module, det_dir):
    """Our decoding fed Paddle's own per-level outputs gives Paddle's decoded scores and boxes."""
    cls = [torch.from_numpy(np.load(det_dir / f"out_cls_logits_p{i}.npy")) for i in range(4)]
    dist = [torch.from_numpy(np.load(det_dir / f"out_bbox_dist_p{i}.npy")) for i in range(4)]
    scores, boxes = det_module.head.decode(cls, dist)
    assert relative_error(scores.numpy(), np.load(det_dir / "out_scores.npy")) <= 1e-5
    assert relative_error(boxes.numpy(), np.load(det_dir / "out_boxes.npy")) <= 1e-5


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Plain reference NMS (one class), best first."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        best, order = order[0], order[1:]
        kept.append(int(best))
        corner_min = np.maximum(boxes[best, :2], boxes[order, :2])
        wh = np.clip(np.minimum(boxes[best, 2:], boxes[order, 2:]) - corner_min, 0, None)
        inter = wh[:, 0] * wh[:, 1]
        order = order[inter / (areas[best] + areas[order] - inter) <= iou_threshold]
    return kept


def test_det_nms_on_paddle_decoded_outputs(det_dir):
    """MultiClassNMS(score 0.025, top-k 1000, IoU 0.6, keep 100) on Paddle's pre-NMS boxes."""
    scores = np.load(det_dir / "out_scores.npy")[0, 0]  # [8500]
    boxes = np.load(det_dir / "out_boxes.npy")[0]  # [8500, 4]
    config = NMSConfig(score_threshold=0.025, nms_threshold=0.6, nms_top_k=1000, keep_top_k=100)
    kept_boxes, kept_scores, kept_classes = multiclass_nms(boxes, scores[:, None], config)

    candidates = np.nonzero(scores > 0.025)[0]
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")][:1000]
    expected = candidates[_greedy_nms(boxes[candidates], scores[candidates], 0.6)][:100]
    assert len(kept_scores) == len(expected) == 100  # random weights: many overlapping candidates
    np.testing.assert_allclose(kept_scores, scores[expected], rtol=0, atol=0)
    np.testing.assert_allclose(kept_boxes, boxes[expected], rtol=0, atol=0)
    assert np.all(kept_classes == 0) and np.all(np.diff(kept_scores) <= 0)


def test_create_model_with_pdparams_files(rec_dir, det_dir):
    rec = create_model("PP-ShiTuV2_rec", weights=rec_dir / "model.pdparams", engine="torch")
    raw = rec.raw(np.load(rec_dir / "input.npy"))
    assert relative_error(raw, np.load(rec_dir / "output.npy")) <= TOLERANCE
    det = create_model("PP-ShiTuV2_det", weights=det_dir / "model.pdparams", engine="torch")
    raw = det.raw(np.load(det_dir / "input.npy"))
    for name in DET_OUTPUTS:
        assert relative_error(raw[name[4:]], np.load(det_dir / f"{name}.npy")) <= TOLERANCE


def test_default_source_uses_cached_official_file(tmp_home, rec_dir):
    """With the official file name in the weights cache, no network is needed (offline in tests)."""
    (tmp_home / "weights").mkdir()
    shutil.copyfile(rec_dir / "model.pdparams", tmp_home / "weights" / "PP-ShiTuV2_rec_pretrained.pdparams")
    rec = create_model("PP-ShiTuV2_rec", engine="torch")
    assert relative_error(rec.raw(np.load(rec_dir / "input.npy")), np.load(rec_dir / "output.npy")) <= TOLERANCE


def test_rec_training_head_of_any_size_is_ignored(rec_dir, tmp_path):
    import pickle

    state = read_pdparams(rec_dir / "model.pdparams")
    state["head.fc.weight"] = np.zeros((512, 3), dtype=np.float32)  # official: [512, 192612]
    path = tmp_path / "other_head.pdparams"
    path.write_bytes(pickle.dumps(state))
    spec = get_spec("PP-ShiTuV2_rec")
    module = spec.builder(num_classes=512).eval()
    load_weights_file(module, path, spec)
    with torch.inference_mode():
        ours = module(torch.from_numpy(np.load(rec_dir / "input.npy"))).numpy()
    assert relative_error(ours, np.load(rec_dir / "output.npy")) <= TOLERANCE


def test_incomplete_checkpoint_is_refused(det_dir, tmp_path):
    import pickle

    state = read_pdparams(det_dir / "model.pdparams")
    del state["neck.conv_t.convs.0.bn._mean"]
    path = tmp_path / "broken.pdparams"
    path.write_bytes(pickle.dumps(state))
    spec = get_spec("PP-ShiTuV2_det")
    with pytest.raises(WeightsError, match="neck.conv_t.convs.0.bn.running_mean"):
        load_weights_file(spec.builder(num_classes=1), path, spec)


def test_rec_checkpoint_does_not_fit_the_detector(rec_dir):
    spec = get_spec("PP-ShiTuV2_det")
    with pytest.raises(WeightsError, match="key layout does not match PP-ShiTuV2_det"):
        load_weights_file(spec.builder(num_classes=1), rec_dir / "model.pdparams", spec)


def test_generic_pdparams_helpers():
    from viewfinder.models.zoo.paddle_converters import block_index_map, make_converter

    weight = np.arange(6, dtype=np.float32).reshape(3, 2)  # Paddle Linear: [in 3, out 2]
    convert = make_converter(renames=((r"^proj\.", "fc."),), drop=(r"^head\.",), linear=(r"^fc\.weight$",))
    out = convert({"proj.weight": weight, "proj.bias": np.ones(2, np.float32), "bn._mean": np.zeros(2),
                   "bn._variance": np.ones(2), "head.fc.weight": np.zeros((2, 9))})
    assert sorted(out) == ["bn.running_mean", "bn.running_var", "fc.bias", "fc.weight"]
    np.testing.assert_array_equal(out["fc.weight"], weight.T)
    assert out["fc.weight"].flags.c_contiguous
    with pytest.raises(WeightsError, match="two .pdparams entries map onto"):
        make_converter(renames=((r"^(a|b)\.", "c."),))({"a.w": np.zeros(1), "b.w": np.zeros(1)})
    mapping = block_index_map((1, 2, 2, 6, 2), (1, 2, 2, 2, 4, 2))
    assert mapping[(3, 0)] == (3, 0) and mapping[(3, 2)] == (4, 0) and mapping[(4, 1)] == (5, 1)
