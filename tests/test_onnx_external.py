"""The one reader of users' ONNX specs and the one feed of their ONNX files (detectors and multi-label models)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewfinder.errors import ConfigError
from viewfinder.models.onnx_external import ExternalOnnxEngine, InputFeed, read_spec


def test_read_spec_from_a_dict_a_relative_yaml_path_and_refuses_unknown_keys(tmp_path):
    # A mapping: `onnx` is resolved against the base folder (a pipeline config's), the caller's dict left as it was.
    inline = {"onnx": "models/tagger.onnx", "labels": "coco80"}
    source = read_spec(inline, "ONNX spec", known={"labels"}, base=tmp_path, names_onnx=True)
    assert source.onnx == tmp_path / "models" / "tagger.onnx"
    assert source.values == {"labels": "coco80"} and source.folder == tmp_path
    assert inline == {"onnx": "models/tagger.onnx", "labels": "coco80"}

    # A YAML path relative to the base folder: `onnx` is resolved against the spec file's own folder.
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tagger.yaml").write_text("onnx: ../models/tagger.onnx\nlabels: [cat, dog]\n")
    source = read_spec("specs/tagger.yaml", "ONNX spec", known={"labels"}, base=tmp_path, names_onnx=True)
    assert source.onnx.resolve() == (tmp_path / "models" / "tagger.onnx").resolve()
    assert source.values == {"labels": ["cat", "dog"]} and source.folder == (tmp_path / "specs").resolve()
    # ...and what was read already is taken as it is
    assert read_spec(source, "ONNX spec", known={"labels"}, names_onnx=True) is source

    with pytest.raises(ConfigError, match=r"ONNX spec: unknown keys \['colour', 'mean_rgb'\]"):
        read_spec({"onnx": "m.onnx", "colour": "RGB", "mean_rgb": [0, 0, 0]}, "ONNX spec", known={"labels"},
                  names_onnx=True)
    with pytest.raises(ConfigError, match="needs 'onnx'"):
        read_spec({"labels": "coco80"}, "ONNX spec", known={"labels"}, names_onnx=True)
    with pytest.raises(ConfigError, match=r"spec file .*missing\.yaml does not exist"):
        read_spec("missing.yaml", "ONNX spec", base=tmp_path)


@pytest.fixture(scope="module")
def identity_nhwc_batch2(tmp_path_factory):
    """A float16 NHWC model with a static batch of 2 that returns its input: shows exactly what it was fed."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT16, [2, 4, 5, 3])
    y = helper.make_tensor_value_info("echo", TensorProto.FLOAT16, [2, 4, 5, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["pixels"], ["echo"])], "echo", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "echo.onnx"
    save(model, str(path))
    return path


def test_feed_reorders_channels_transposes_casts_and_runs_a_static_batch_in_chunks(identity_nhwc_batch2):
    engine = ExternalOnnxEngine(identity_nhwc_batch2, InputFeed(layout=None, channel_order="BGR"), device="cpu")
    assert engine.layout == "NHWC"  # read from the shape
    assert engine.static_size == (5, 4) and engine.fixed_batch == 2 and engine.device == torch.device("cpu")
    batch = np.random.default_rng(0).random((4, 3, 4, 5), dtype=np.float32)  # our NCHW RGB, twice the model's batch
    fed = engine(batch)["echo"]
    assert fed.dtype == np.float16
    np.testing.assert_array_equal(fed, batch[:, ::-1].transpose(0, 2, 3, 1).astype(np.float16))
    with pytest.raises(ConfigError, match="takes batches of exactly 2 images"):
        engine(batch[:3])
    with pytest.raises(ConfigError, match="has no output 'scores'; outputs: echo"):
        engine.run_only(["scores"])
    with pytest.raises(ConfigError, match="no 3-channel axis for layout NCHW"):
        ExternalOnnxEngine(identity_nhwc_batch2, InputFeed(layout="NCHW"), device="cpu")
