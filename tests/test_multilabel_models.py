"""The multi-label zoo: PaddleX .pdparams parity, ML-Decoder semantics, every model builds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewfinder import create_model
from viewfinder.models import get_spec, list_models
from viewfinder.models.labels import load_labels
from viewfinder.models.multilabel import sigmoid
from viewfinder.models.nets.ml_decoder import MLDecoder
from viewfinder.models.zoo.multilabel import PRETRAINED_URL

ML_MODELS = ["CLIP_vit_base_patch16_448_ML", "PP-HGNetV2-B0_ML", "PP-HGNetV2-B4_ML", "PP-HGNetV2-B6_ML",
             "PP-LCNet_x1_0_ML", "ResNet50_ML"]
TOLERANCE = 1e-3  # ../shared/parity/README.md: max|ours - ref| <= 1e-3 * max|ref|


@pytest.fixture(scope="module")
def lcnet_ml_fixture(shared_dir):
    folder = shared_dir / "parity" / "PP-LCNet_x1_0_ML"
    return folder / "model.pdparams", np.load(folder / "input.npy"), np.load(folder / "output.npy")


def test_pp_lcnet_ml_matches_paddle(lcnet_ml_fixture):
    weights, x, ref = lcnet_ml_fixture
    predictor = create_model("PP-LCNet_x1_0_ML", weights=weights, device="cpu", engine="torch")
    logits = predictor.raw(x)
    assert logits.shape == ref.shape == (1, 80)
    error = np.abs(logits - ref).max() / np.abs(ref).max()
    assert error <= TOLERANCE, error
    # and end to end through the predictor: sigmoid of those logits, thresholded
    scores = sigmoid(ref[0])
    result = predictor._postprocess(logits, [_fake_image()], {"threshold": 0.5})[0]
    expected = np.flatnonzero(scores > 0.5)
    assert sorted(result["class_ids"].tolist()) == expected.tolist()
    np.testing.assert_allclose(np.sort(result["scores"]), np.sort(scores[expected]), atol=1e-4)


def _fake_image():
    from viewfinder.io import DecodedImage

    return DecodedImage(rgb=np.zeros((8, 8, 3), np.uint8), original_size=(8, 8), input_path="fake.jpg")


def test_every_paddlex_ml_model_is_registered():
    assert list_models("image_multilabel_classification") == sorted(ML_MODELS)
    labels = load_labels("coco80")
    assert len(labels) == 80 and labels[0] == "person" and labels[16] == "dog" and labels[79] == "toothbrush"


@pytest.mark.parametrize("name", ML_MODELS)
def test_build_params_output_and_sources(name):
    spec = get_spec(name)
    assert spec.task == "image_multilabel_classification" and spec.labels == "coco80" and spec.num_classes == 80
    assert spec.preprocess.resize == (448, 448) and spec.preprocess.crop is None
    assert spec.defaults == {} and "pdparams" in spec.converters  # the task's threshold (0.5) applies
    (source,) = spec.weight_sources
    assert source.format == "pdparams" and source.url == PRETRAINED_URL.format(name)
    assert source.filename == f"{name}_pretrained.pdparams"
    if spec.large:
        with torch.device("meta"):
            module = spec.builder(num_classes=80)
            output = module.eval()(torch.empty(1, 3, 448, 448))
    else:
        torch.manual_seed(0)
        module = spec.builder(num_classes=80).eval()
        with torch.inference_mode():
            output = module(torch.randn(1, 3, 448, 448))
        assert torch.isfinite(output).all()
    assert tuple(output.shape) == (1, 80)
    assert sum(p.numel() for p in module.parameters()) == spec.param_count


def test_ml_decoder_matches_a_direct_transcription():
    """Our ML-Decoder = PaddleClas's forward written out with plain torch ops (norm1(q+q), grouped fc)."""
    torch.manual_seed(0)
    head = MLDecoder(class_num=10, in_channels=16, query_num=5, embed_dim=32, num_heads=4, mlp_hidden_dim=64).eval()
    x = torch.randn(2, 16, 3, 4)
    layer = head.decoder.layers[0]
    with torch.inference_mode():
        memory = torch.relu(head.input_proj(x)).flatten(2).transpose(1, 2)
        q = head.query_pos_embed.weight.expand(2, -1, -1)
        q = layer.norm1(2 * q)
        attn = torch.nn.MultiheadAttention(32, 4, batch_first=True)
        attn.in_proj_weight.copy_(torch.cat([layer.cross_attn.q_proj.weight, layer.cross_attn.k_proj.weight,
                                             layer.cross_attn.v_proj.weight]))
        attn.in_proj_bias.copy_(torch.cat([layer.cross_attn.q_proj.bias, layer.cross_attn.k_proj.bias,
                                           layer.cross_attn.v_proj.bias]))
        attn.out_proj.load_state_dict(layer.cross_attn.out_proj.state_dict())
        q = layer.norm2(q + attn.eval()(q, memory, memory, need_weights=False)[0])
        q = layer.norm3(q + layer.linear2(torch.relu(layer.linear1(q))))
        grouped = head.group_conv(q.flatten(1)[..., None, None]).flatten(1)[:, :10]
        ours = head(x)
    torch.testing.assert_close(ours, grouped, rtol=1e-5, atol=1e-5)
    assert ours.shape == (2, 10)
    # vector input ([N, C]) is a one-token memory, as PaddleClas's CLIP_ML feeds it
    assert head(torch.randn(3, 16)).shape == (3, 10)
