"""The shared .pdparams helpers (viewfinder.models.zoo.paddle_converters) that every Paddle converter uses."""
from __future__ import annotations

import numpy as np
import torch

from viewfinder.models.zoo.paddle_converters import (
    BN_RENAMES,
    bn_rename,
    copy_linear,
    lcnet_renames,
    linear_to_torch,
    rename_keys,
)


def test_bn_rename_and_bn_renames_agree():
    keys = ["a.bn._mean", "a.bn._variance", "a.bn.weight", "a._mean_x"]
    assert [bn_rename(k) for k in keys] == list(rename_keys(dict.fromkeys(keys), BN_RENAMES))
    assert bn_rename("a.bn._mean") == "a.bn.running_mean"


def test_linear_to_torch_transposes_and_folds_a_scale():
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)  # Paddle [in 3, out 2]
    out = linear_to_torch(torch.from_numpy(weight), scale=0.5)
    np.testing.assert_array_equal(out, weight.T * np.float32(0.5))
    assert out.flags.c_contiguous and out.dtype == np.float32
    state: dict = {}
    copy_linear({"fc.weight": weight, "fc.bias": np.ones(2, np.float32)}, "fc", "head", state, scale=0.8)
    assert sorted(state) == ["head.bias", "head.weight"]
    np.testing.assert_array_equal(state["head.bias"], np.ones(2))  # the bias is not scaled


def test_lcnet_renames_map_paddleclas_blocks_onto_timm_stages():
    keys = ["conv1.conv.weight", "conv1.bn.bias", "blocks2.0.dw_conv.conv.weight", "blocks5.1.pw_conv.bn.weight",
            "blocks5.2.se.conv1.weight", "blocks6.1.se.conv2.bias"]
    expected = ["conv_stem.weight", "bn1.bias", "blocks.0.0.conv_dw.weight", "blocks.3.1.bn2.weight",
                "blocks.4.0.se.conv_reduce.weight", "blocks.5.1.se.conv_expand.bias"]
    assert list(rename_keys(dict.fromkeys(keys), lcnet_renames())) == expected
    prefixed = rename_keys(dict.fromkeys(f"backbone.{k}" for k in keys), lcnet_renames("backbone."))
    assert list(prefixed) == [f"backbone.{k}" for k in expected]
