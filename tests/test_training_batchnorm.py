"""``batch_norm: folded``: recalibrated statistics folded into the convolutions, same function, same state dict."""
from __future__ import annotations

import copy

import numpy as np
import timm
import torch
import torch.nn as nn

from test_datasets import make_cls
from test_training import config, losses_around_one_step, prepared_trainer
from viewfinder import create_model
from viewfinder.training import Trainer, train
from viewfinder.training.batchnorm import conv_bn_pairs, fold_batch_norm, recalibrate_batch_norm


def _network_with_busy_statistics() -> nn.Module:
    """A timm MobileNetV2 whose BatchNorms hold non-trivial statistics and affine terms."""
    torch.manual_seed(0)
    network = timm.create_model("mobilenetv2_050", pretrained=False, num_classes=7)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return network.eval()


def test_folding_keeps_the_function_and_the_state_dict_layout():
    network = _network_with_busy_statistics()
    batch = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = network(batch)
    layout = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in network.modules())

    assert fold_batch_norm(network, batch) == norms  # every BatchNorm of MobileNetV2 follows a conv
    with torch.no_grad():
        folded_eval = network(batch)
        folded_train = network.train()(batch)  # no batch statistics any more: train == eval
    torch.testing.assert_close(folded_eval, before, rtol=0, atol=2e-4)
    torch.testing.assert_close(folded_train, folded_eval, rtol=0, atol=0)
    assert {k: tuple(v.shape) for k, v in network.state_dict().items()} == layout

    # the weights load into a plain network (identity statistics): same outputs, nothing folded there
    plain = timm.create_model("mobilenetv2_050", pretrained=False, num_classes=7).eval()
    plain.load_state_dict(network.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain(batch), before, rtol=0, atol=2e-4)
    assert not any(type(m).__name__.startswith("Folded") for m in plain.modules())

    # the scale is folded away: only the bias (shared with the conv) trains
    norm = next(m for m in network.modules() if isinstance(m, nn.BatchNorm2d))
    assert not norm.weight.requires_grad and norm.bias.requires_grad
    loss = network(batch).square().mean()
    loss.backward()
    assert norm.bias.grad is not None and norm.bias.grad.abs().sum() > 0


def test_a_deep_copy_folds_onto_its_own_batch_norms():
    """EMA keeps a deep copy: its convolutions must read the copy's biases, not the live model's."""
    network = _network_with_busy_statistics()
    batch = torch.randn(1, 3, 64, 64)
    fold_batch_norm(network, batch)
    twin = copy.deepcopy(network)
    with torch.no_grad():
        reference = twin(batch)
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias.add_(1.0)
        torch.testing.assert_close(twin(batch), reference, rtol=0, atol=0)
        assert (network(batch) - reference).abs().max() > 1e-3


def test_only_a_conv_feeding_a_batch_norm_directly_is_folded():
    pair = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    apart = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.BatchNorm2d(4))
    with_bias = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4))
    example = torch.randn(1, 3, 8, 8)
    assert len(conv_bn_pairs(pair, example)) == 1
    assert conv_bn_pairs(apart, example) == [] and conv_bn_pairs(with_bias, example) == []


def test_recalibration_averages_the_statistics_of_the_batches():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, bias=False)
    network = nn.Sequential(conv, nn.BatchNorm2d(4, momentum=0.3))
    batches = [torch.randn(8, 3, 10, 10) * 3 + 1 for _ in range(3)]
    assert recalibrate_batch_norm(network.eval(), batches) == 24
    with torch.no_grad():
        outputs = [conv(b) for b in batches]
    means = torch.stack([o.mean(dim=(0, 2, 3)) for o in outputs]).mean(0)
    variances = torch.stack([o.var(dim=(0, 2, 3), unbiased=True) for o in outputs]).mean(0)
    norm = network[1]
    torch.testing.assert_close(norm.running_mean, means, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm.running_var, variances, rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.3 and not network.training  # settings restored


def test_folded_training_learns_exports_and_resumes(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    out = tmp_path / "out"
    trainer = prepared_trainer(config(root, "ClsDataset", tmp_path / "step", batch_norm="folded", batch_size=8,
                                      hflip=False, crop="none", pad=0, learning_rate=0.001))
    assert any(type(m).__name__.startswith("Folded") for m in trainer.model.network.modules())
    before, after = losses_around_one_step(trainer)
    assert after < before, (before, after)

    trainer = Trainer(config(root, "ClsDataset", out, batch_norm="folded"), progress=False)
    result = trainer.run()
    log = (out / "train.log").read_text()
    assert "recalibrated on" in log and "folded into their convolutions" in log
    # the model dir is a plain MobileNetV2: it reproduces the folded network's outputs
    batch = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        trained = trainer.model.network.eval()(torch.from_numpy(batch)).numpy()
    saved = create_model(model_dir=out / "best_model", device="cpu", engine="torch")
    np.testing.assert_allclose(saved.raw(batch), trained, rtol=0, atol=1e-4)
    # resume folds again without recalibrating and continues from the checkpoint's weights
    resumed = train(config(root, "ClsDataset", out, batch_norm="folded", epochs=2), resume=True, progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == result["history"][0]
    assert (out / "train.log").read_text().count("recalibrated on") == 1
