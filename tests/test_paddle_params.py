"""Paddle's tensor stream (inference.pdiparams) and program files, read without Paddle."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from viewfinder.errors import WeightsError
from viewfinder.io.paddle_params import parse_tensor_desc, read_tensor_stream, write_tensor_stream
from viewfinder.models.paddlex_dir import ranked_names


def test_stream_round_trip_keeps_dtypes_and_shapes(tmp_path):
    tensors = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, -2], dtype=np.int64),
               np.ones((1, 1, 3, 3), dtype=np.float16), np.array(2.5, dtype=np.float64)]
    write_tensor_stream(tmp_path / "p.pdiparams", tensors)
    back = read_tensor_stream(tmp_path / "p.pdiparams")
    assert [(t.dtype, t.shape) for t in back] == [(t.dtype, t.shape) for t in tensors]
    for ours, theirs in zip(back, tensors):
        np.testing.assert_array_equal(ours, theirs)
    assert back[0].flags.writeable  # torch takes the arrays without a copy warning


def test_tensor_desc_packed_and_unpacked_dims():
    unpacked = b"\x08\x05\x10\x02\x10\x03"
    packed = b"\x08\x05\x12\x02\x02\x03"
    assert parse_tensor_desc(unpacked) == parse_tensor_desc(packed) == (5, [2, 3])


def test_lod_levels_and_bfloat16_are_read(tmp_path):
    desc = b"\x08\x16\x10\x02"  # BF16, dims [2]
    lod = struct.pack("<Q", 16) + struct.pack("<2Q", 0, 2)
    values = np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16
    data = struct.pack("<IQ", 0, 1) + lod + struct.pack("<Ii", 0, len(desc)) + desc + values.astype("<u2").tobytes()
    (tmp_path / "b.pdiparams").write_bytes(data)
    (tensor,) = read_tensor_stream(tmp_path / "b.pdiparams")
    np.testing.assert_array_equal(tensor, [1.5, -2.0])


@pytest.mark.parametrize("damage", ["truncate", "version", "garbage", "pickle"])
def test_damaged_streams_are_refused_with_the_tensor_index(tmp_path, damage):
    path = tmp_path / "p.pdiparams"
    write_tensor_stream(path, [np.zeros(4, np.float32), np.zeros(3, np.float32)])
    data = path.read_bytes()
    if damage == "truncate":
        data = data[:-5]
    elif damage == "version":
        data = struct.pack("<I", 7) + data[4:]
    elif damage == "garbage":
        data = b"\x00" * 12 + b"\xff\xff\xff\x7f" + data[16:]
    else:
        data = b"\x80\x04\x95" + data
    path.write_bytes(data)
    with pytest.raises(WeightsError, match="not a Paddle parameter file"):
        read_tensor_stream(path)


def test_ranked_names_ignore_layer_numbers_from_other_exports():
    first = ["conv2d_0.w_0", "conv2d_1.w_0", "batch_norm2d_0.w_1", "linear_0.b_0", "eager_tmp_3", "conv1_weights"]
    later = ["conv2d_40.w_0", "conv2d_52.w_0", "batch_norm2d_7.w_1", "linear_9.b_0", "eager_tmp_11", "conv1_weights"]
    assert list(ranked_names(first).values()) == list(ranked_names(later).values()) == [
        "conv2d#0.w_0", "conv2d#1.w_0", "batch_norm2d#0.w_1", "linear#0.b_0", "eager_tmp#0", "conv1_weights"]


def test_every_export_map_fills_its_network_through_the_converter():
    """Each mapped model (fixture or not): the exported keys, converted, are exactly our network's keys."""
    import torch

    from viewfinder.models import get_spec
    from viewfinder.models.paddlex_dir import export_map, export_maps

    for name in export_maps()["models"]:
        spec, mapping = get_spec(name), export_map(name)
        with torch.device("meta"):
            module = spec.builder(num_classes=spec.num_classes, **spec.build_kwargs)
            if mapping.get("reparameterized"):
                module.reparameterize()
        converter = spec.converters["pdparams_reparameterized" if mapping.get("reparameterized") else "pdparams"]
        state = {key: np.zeros((2, 2), np.float32) for _, key in mapping["params"] if key is not None}
        expected = {k for k in module.state_dict() if not k.endswith("num_batches_tracked")}
        assert set(converter(state)) == expected, name
