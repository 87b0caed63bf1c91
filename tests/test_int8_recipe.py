"""The int8 recipe (issue 30): which convolutions stay float, that the quantised file keeps them float,
and that the cached int8 file's name changes with the recipe (a file made by another recipe is never reused)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from viewfinder.engines.quantize import (KEEP_FLOAT_GROUPS, Calibration, QuantSettings, float_convolutions,
                                         int8_stem, quantize_file)
from viewfinder.models import precision as precision_module


class Layered(nn.Module):
    """One convolution of each kind, at known resolutions (input 32x32)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)                 # first; reads 32x32: early
        self.dw = nn.Conv2d(8, 8, 3, 2, 1, groups=8)          # depthwise; reads 32x32: early
        self.pw = nn.Conv2d(8, 16, 1)                         # reads 16x16 (a quarter of 32x32): early
        self.down = nn.Conv2d(16, 16, 3, 2, 1)                # reads 16x16: early
        self.expand = nn.Conv2d(16, 32, 1)                    # reads 8x8: quantised
        self.grouped = nn.Conv2d(32, 32, 3, 1, 1, groups=4)   # grouped, not depthwise: quantised
        self.proj = nn.Conv2d(32, 32, 1)                      # added to its input, no activation: linear
        self.biased = nn.Conv2d(32, 32, 1)                    # + a constant, then ReLU: quantised
        self.se = nn.Conv2d(32, 32, 1)                        # reads the pooled 1x1 map: pooled
        self.head = nn.Conv2d(32, 8, 1)                       # feeds the output: last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        x = torch.relu(self.grouped(torch.relu(self.expand(torch.relu(self.down(x))))))
        x = x + self.proj(x)
        x = torch.relu(self.biased(x) + 1.0)
        x = x * torch.sigmoid(self.se(x.mean(dim=(2, 3), keepdim=True)))
        return self.head(x).mean(dim=(2, 3))


def _export(path: Path, dynamic: dict[int, str]) -> Path:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(Layered().eval(), (torch.zeros(1, 3, 32, 32),), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": dynamic}, opset_version=17, dynamo=False)
    return path


@pytest.fixture()
def layered(tmp_path) -> Path:
    return _export(tmp_path / "layered.onnx", {0: "batch"})


def test_early_convolutions_of_a_dynamic_size_model(tmp_path):
    """A user's ONNX file with dynamic height and width: the calibration feed's shape decides."""
    model = onnx.load(str(_export(tmp_path / "dynamic.onnx", {0: "batch", 2: "height", 3: "width"})))
    assert float_convolutions(model, ["early"]) == []  # no sizes known
    early = {_module(n) for n in float_convolutions(model, ["early"], {"x": (1, 3, 32, 32)})}
    assert early == {"stem", "dw", "pw", "down"}


def _module(name: str) -> str:
    """'/dw/Conv' -> 'dw'."""
    return name.strip("/").split("/")[0]


def test_float_convolution_groups(layered):
    model = onnx.load(str(layered))
    picked = {group: {_module(n) for n in float_convolutions(model, [group])} for group in KEEP_FLOAT_GROUPS}
    assert picked == {"first": {"stem"}, "depthwise": {"dw"}, "last": {"head"},
                      "early": {"stem", "dw", "pw", "down"}, "linear": {"proj", "head"}, "pooled": {"se"}}
    assert {_module(n) for n in float_convolutions(model, KEEP_FLOAT_GROUPS)} == \
        {"stem", "dw", "pw", "down", "head", "proj", "se"}
    assert float_convolutions(model, []) == []
    with pytest.raises(ValueError, match="keep_float"):
        QuantSettings(keep_float=("pointwise",))


def _feeds(count: int = 6):
    generator = np.random.default_rng(0)
    return [{"x": generator.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(count)]


def test_kept_float_convolutions_have_float_weights(layered, tmp_path):
    destination = tmp_path / "layered-int8.onnx"
    settings = QuantSettings(keep_float=("first", "depthwise", "last"), extra_options=(("CalibMovingAverage", True),))
    used = quantize_file(layered, destination, Calibration("test", ("a",), _feeds), settings)
    assert used == 6
    graph = onnx.load(str(destination)).graph
    producers = {out: node for node in graph.node for out in node.output}
    def weight_is_int8(node) -> bool:
        return node.input[1] in producers and producers[node.input[1]].op_type == "DequantizeLinear"

    quantised = {_module(node.name): weight_is_int8(node) for node in graph.node if node.op_type == "Conv"}
    assert quantised == {"stem": False, "dw": False, "pw": True, "down": True, "expand": True, "grouped": True,
                         "proj": True, "biased": True, "se": True, "head": False}


def test_nothing_left_to_quantise_is_an_error(layered, tmp_path):
    """A network whose convolutions all stay float gains nothing from int8: refused (the caller runs fp32)."""
    from viewfinder.errors import ExportError

    model = onnx.load(str(layered))
    rest = tuple(n.name for n in model.graph.node if _module(n.name) in ("expand", "grouped", "biased"))
    settings = QuantSettings(keep_float=KEEP_FLOAT_GROUPS, nodes_to_exclude=rest)
    with pytest.raises(ExportError, match="every convolution"):
        quantize_file(layered, tmp_path / "none.onnx", Calibration("test", ("a",), _feeds), settings)


def test_int8_file_name_follows_the_recipe(layered):
    from viewfinder.engines.onnx_cache import file_sha256

    sha = file_sha256(layered)
    calibration = Calibration("photos", ("a.jpg",), _feeds)
    names = {int8_stem(layered, sha, calibration, settings) for settings in (
        QuantSettings(), QuantSettings(keep_float=("depthwise",)), QuantSettings(keep_float=("depthwise", "early")),
        QuantSettings(extra_options=(("CalibMovingAverage", True),)), QuantSettings(calibrate_method="Percentile"),
        precision_module.DEFAULT_QUANT)}
    assert len(names) == 6  # every recipe its own file
    assert int8_stem(layered, sha, calibration, QuantSettings(keep_float=("depthwise",))) == \
        int8_stem(layered, sha, calibration, QuantSettings(keep_float=("depthwise",)))
    assert int8_stem(layered, sha, Calibration("other photos", ("a.jpg",), _feeds), QuantSettings()) not in names


def test_default_recipe_is_the_selective_one():
    """What the measurements in docs/performance.md were made with."""
    default = precision_module.DEFAULT_QUANT
    assert set(default.keep_float) == {"first", "depthwise", "last", "early", "pooled"}
    assert dict(default.extra_options).get("CalibMovingAverage") is True
    assert default.per_channel and default.calibrate_method == "MinMax"
