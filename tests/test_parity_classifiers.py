"""PaddleClas .pdparams -> our classifiers reproduce Paddle's logits (../shared/parity fixtures).

Tolerance from the fixtures' README: classifiers can be held to max|ours - ref| <= 1e-4 * max|ref|.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewfinder import create_model
from viewfinder.errors import WeightsError
from viewfinder.models import get_spec
from viewfinder.models.weights import load_weights_file, read_pdparams
from viewfinder.models.nets.paddle_mobilenet_v3 import PaddleMobileNetV3
from viewfinder.models.zoo.paddle_classifiers import LCNET_KEEP, lcnet_from_paddle
from viewfinder.models.zoo.paddle_cnn import mobilenet_v3_from_paddle

TOLERANCE = 1e-4


def _relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _fixture(shared_dir, name):
    folder = shared_dir / "parity" / name
    return folder / "model.pdparams", np.load(folder / "input.npy"), np.load(folder / "output.npy")


@pytest.mark.parametrize("name", ["PP-LCNet_x0_25", "PP-HGNetV2-B0", "MobileNetV3_small_x0_35"])
def test_registered_classifier_loads_paddle_weights(shared_dir, name):
    weights, x, ref = _fixture(shared_dir, name)
    predictor = create_model(name, weights=weights, device="cpu", engine="torch")
    logits = predictor.raw(x)  # the network alone, on Paddle's own input
    assert logits.shape == ref.shape == (1, 1000)
    assert _relative_error(logits, ref) <= TOLERANCE


def test_mobilenet_v3_faithful_module_matches_paddle(shared_dir):
    weights, x, ref = _fixture(shared_dir, "MobileNetV3_small_x0_35")
    module = PaddleMobileNetV3("small", 0.35).eval()
    state = mobilenet_v3_from_paddle(read_pdparams(weights))
    missing, unexpected = module.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    with torch.inference_mode():
        logits = module(torch.from_numpy(x)).numpy()
    assert _relative_error(logits, ref) <= TOLERANCE


def test_mobilenet_v3_is_registered_as_paddleclas_builds_it():
    """timm's MobileNetV3 shapes differ from PaddleClas's: the zoo builds the faithful network, timm's weights are refused."""
    spec = get_spec("MobileNetV3_small_x0_35")
    assert isinstance(spec.builder(num_classes=1000), PaddleMobileNetV3)
    assert [source.name for source in spec.weight_sources] == ["paddlex"]
    with pytest.raises(WeightsError, match="no timm weights fit MobileNetV3_small_x0_35"):
        create_model("MobileNetV3_small_x0_35", weights="timm", device="cpu", engine="torch")


def test_dropout_fold_is_what_makes_lcnet_match(shared_dir):
    """PaddleClas scales the pre-classifier activations by 1 - p at inference; without the fold it is off."""
    weights, x, ref = _fixture(shared_dir, "PP-LCNet_x0_25")
    spec = get_spec("PP-LCNet_x0_25")
    module = spec.builder(num_classes=1000).eval()
    state = lcnet_from_paddle(read_pdparams(weights))
    state["classifier.weight"] = state["classifier.weight"] / LCNET_KEEP  # undo the fold
    module.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=False)
    with torch.inference_mode():
        logits = module(torch.from_numpy(x)).numpy()
    assert _relative_error(logits, ref) > 1e-2


def test_hgnetv2_stem_padding_matters(shared_dir):
    """timm's zero-padded stem pool differs from PaddleClas's on this fixture (negative LAB outputs)."""
    import timm

    weights, x, ref = _fixture(shared_dir, "PP-HGNetV2-B0")
    spec = get_spec("PP-HGNetV2-B0")
    plain = timm.create_model("hgnetv2_b0", pretrained=False, num_classes=1000).eval()
    load_weights_file(plain, weights, spec)
    with torch.inference_mode():
        logits = plain(torch.from_numpy(x)).numpy()
    assert _relative_error(logits, ref) > 1e-3


def test_wrong_architecture_checkpoint_is_a_clear_error(shared_dir):
    weights, _, _ = _fixture(shared_dir, "PP-LCNet_x0_25")
    spec = get_spec("PP-HGNetV2-B0")
    with pytest.raises(WeightsError, match="key layout does not match PP-HGNetV2-B0"):
        load_weights_file(spec.builder(num_classes=1000), weights, spec)
    ml_spec = get_spec("PP-LCNet_x1_0_ML")
    with pytest.raises(WeightsError, match="key layout does not match PP-LCNet_x1_0_ML"):
        load_weights_file(ml_spec.builder(num_classes=80), weights, ml_spec)
