"""PaddleX .pdparams of every architecture family load into our networks and give Paddle's outputs.

The fixtures under tests/fixtures/parity are made by tools/parity/make_fixtures.py in the
PaddleX environment: PaddleClas's own network with seeded random weights, Paddle's outputs
on a seeded input. Only the seed, the calibrated BatchNorm statistics and the outputs are
stored; the weights are redrawn here (tools/parity/seeded.py), written as a user's
.pdparams file and loaded through ``create_model(name, weights=...)``.
tools/parity/sweep.py runs the same check on every model name (docs/models.md has the table);
here one model per family keeps the suite fast.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "parity"
sys.path.insert(0, str(ROOT / "tools" / "parity"))
from sweep import TOLERANCE, check  # noqa: E402

#: the smallest PaddleX name of each architecture family in the zoo
FAMILY_REPRESENTATIVES = [
    "PP-LCNet_x0_25",
    "PP-LCNet_x0_35",  # its own width rounding, not timm's lcnet_035
    "PP-LCNetV2_small",
    "PP-HGNet_tiny",
    "PP-HGNetV2-B0",
    "MobileNetV1_x0_25",
    "MobileNetV2_x0_25",
    "MobileNetV2_x1_0",  # also loads torchvision's file (tests/test_classification_real.py)
    "MobileNetV3_small_x0_35",
    "MobileNetV3_large_x0_35",
    "MobileNetV4_conv_small",
    "MobileNetV4_hybrid_medium",
    "ResNet18",  # PaddleClas's first-block shortcut conv on timm's ResNet
    "ResNet18_vd",
    "ResNet50",  # timm's resnet50 as registered
    "ResNet50_vd",
    "ConvNeXt_tiny",
    "SwinTransformer_tiny_patch4_window7_224",
    "CLIP_vit_base_patch16_224",
    "FasterNet-T0",
    "StarNet-S1",
    "PP-LCNet_x1_0_ML",
    "PP-HGNetV2-B0_ML",
    "PP-ShiTuV2_rec",
    "PP-ShiTuV2_rec_CLIP_vit_base",
]


def test_every_zoo_name_has_a_fixture():
    names = (ROOT / "tools" / "parity" / "names.txt").read_text().split()
    missing = [n for n in names if not (FIXTURES / n / "meta.json").is_file()]
    assert not missing, f"no parity fixture for {missing} (run tools/parity/make_fixtures.py)"


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_paddle_weights_reproduce_paddle_outputs(name):
    row = check(FIXTURES / name)
    assert row["error"] <= TOLERANCE, f"{name}: relative error {row['error']:.2e}"


def test_a_wrong_converter_is_caught(monkeypatch):
    """The check has teeth: swapping two BatchNorm statistics makes it fail."""
    import seeded

    real = seeded.load_fixture

    def swapped(folder):
        meta, state, x, outputs = real(folder)
        means = [k for k in state if k.endswith("._mean")]
        state[means[3]] = state[means[3]][::-1].copy()
        return meta, state, x, outputs

    monkeypatch.setattr(sys.modules["sweep"], "load_fixture", swapped)
    assert check(FIXTURES / "PP-LCNet_x0_25")["error"] > 1e-2
