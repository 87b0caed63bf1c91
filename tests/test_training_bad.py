"""Bad training/evaluation input and Ctrl-C: clear one-line errors, resumable checkpoints, no tracebacks."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from test_datasets import make_cls, make_rec, thumbnail, write
from viewfinder.cli import cli
from viewfinder.errors import ModelNotFoundError
from viewfinder.training import TrainConfig, TrainingError, TrainingInterrupted, evaluate, train

ROOT = Path(__file__).resolve().parent.parent
FAST = {"model": "MobileNetV2_x1_0", "device": "cpu", "input_size": 32, "batch_size": 4, "epochs": 1,
        "learning_rate": 0.005, "export_onnx": False, "evaluate_start": False}


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"epochs": 0}, "epochs must be a number > 0, got 0"),
    ({"epochs": -1.5}, "epochs must be a number > 0, got -1.5"),
    ({"epochs": "two"}, "epochs must be a number > 0, got 'two'"),
    ({"learning_rate": -0.1}, "learning_rate must be > 0"),
    ({"optimizer": "rmsprop"}, "optimizer must be 'momentum' or 'adamw'"),
    ({"model": None}, r"training needs a model name \(--model\)"),
    ({"input_size": 8}, "input_size must be at least 16 pixels"),
    ({"crop": "zoom"}, "crop must be random_resized, pad_crop or none"),
    ({"head": "softmax"}, "head must be one of fc, arcmargin, cosmargin, got 'softmax'"),
    ({"head_margin": -0.1}, "head_margin must be >= 0 and head_scale > 0"),
    ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\), got 1.0"),
    ({"ema_decay": -0.5}, r"ema_decay must be in \[0, 1\), got -0.5"),
    ({"batch_norm": "frozen"}, "batch_norm must be one of batch, folded, got .frozen."),
])
def test_bad_settings(tmp_path, changes, message):
    config = TrainConfig(dataset_dir=str(tmp_path), dataset_type="ClsDataset", output=str(tmp_path / "o"),
                         **{**FAST, **changes})
    with pytest.raises(TrainingError, match=message):
        config.resolved()


def test_recognition_batches_must_be_p_by_k(tmp_path):
    config = TrainConfig(dataset_dir=str(tmp_path), dataset_type="ShiTuRecDataset", **{**FAST, "batch_size": 6, "sample_per_id": 4})
    with pytest.raises(TrainingError, match="batch_size 6 must be a multiple of sample_per_id 4"):
        config.resolved()


def test_unknown_settings_in_a_config_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("Global:\n  dataset_dir: x\nTrain:\n  epoch: 3\n")
    with pytest.raises(TrainingError, match=r"unknown training settings \['epoch'\]"):
        TrainConfig.load(path)


def test_unknown_model_and_unreadable_training_set(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    with pytest.raises(ModelNotFoundError, match="unknown model name 'MobileNetV9'"):
        train(TrainConfig(dataset_dir=str(root), output=str(tmp_path / "o"), **{**FAST, "model": "MobileNetV9"}),
              progress=False)
    for image in (root / "images").iterdir():
        image.write_bytes(b"garbage")
    with pytest.raises(TrainingError, match="no readable images in train.txt"):
        train(TrainConfig(dataset_dir=str(root), output=str(tmp_path / "o"), **FAST), progress=False)


def test_resume_errors(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    out = tmp_path / "out"
    config = TrainConfig(dataset_dir=str(root), output=str(out), **FAST)
    with pytest.raises(TrainingError, match="cannot resume: no checkpoint at .*last_checkpoint.pt"):
        train(config, resume=True, progress=False)
    train(config, progress=False)
    with pytest.raises(TrainingError, match=r"has already finished 1 epoch\(s\); pass more --epochs"):
        train(config, resume=True, progress=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="not a readable checkpoint"):
        train(config, resume=tmp_path / "junk.pt", progress=False)
    rec = make_rec(tmp_path / "rec", photos)
    other = TrainConfig(dataset_dir=str(rec), dataset_type="ShiTuRecDataset", output=str(out),
                        **{**FAST, "batch_size": 8, "sample_per_id": 2, "epochs": 2})
    with pytest.raises(TrainingError, match="it trains MobileNetV2_x1_0 on a ClsDataset with 2 classes"):
        train(other, resume=True, progress=False)


def test_evaluate_errors(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    with pytest.raises(TrainingError, match="has 1000 outputs but the dataset has 2 classes"):
        evaluate(root, "ClsDataset", model="MobileNetV2_x1_0", output=tmp_path / "eval", progress=False)
    failed = json.loads((tmp_path / "eval" / "evaluate_result.json").read_text())
    assert failed["done_flag"] is False and failed["err_type"] == "TrainingError"
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", str(root), "--type", "ClsDataset"])
    assert result.exit_code == 2 and result.output == \
        "viewfinder: error: evaluate needs --model NAME or --model_dir DIR\n"


def test_train_cli_error_is_one_line(tmp_path, photos):
    root = make_cls(tmp_path / "cls", photos)
    write(root / "val.txt", [])
    result = CliRunner().invoke(cli, ["train", "--model", "MobileNetV2_x1_0", "--dataset", str(root), "--type",
                                      "ClsDataset", "--output", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 2
    assert result.output.startswith("viewfinder: error: ") and "val split must not be empty" in result.output
    assert "Traceback" not in result.output


def _many_images(root: Path, photos: Path) -> Path:
    """A ClsDataset whose epoch has 12 steps of 2 images, so Ctrl-C lands inside an epoch."""
    make_cls(root, photos)
    lines = []
    for index in range(24):
        name = ["chelsea.png", "coffee.png", "dog.jpg", "kite.jpg"][index % 4]
        thumbnail(photos, name, root / "images" / f"many_{index}.png", size=48, flip=index % 8 >= 4,
                  shift=index % 3)
        lines.append(f"images/many_{index}.png {index % 2}")
    write(root / "train.txt", lines)
    return root


def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path, photos, mobilenet_v2_weights):
    root = _many_images(tmp_path / "cls", photos)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "viewfinder.cli", "train", "--model", "MobileNetV2_x1_0", "--dataset", str(root),
               "--type", "ClsDataset", "--output", str(out), "--batch_size", "2", "--input_size", "32",
               "--lr", "0.005", "--device", "cpu", "--no_onnx", "--quiet"]
    process = subprocess.Popen(command + ["--epochs", "50"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    log = out / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and "training MobileNetV2_x1_0" in log.read_text()):
        time.sleep(0.2)
    time.sleep(1.0)  # a few steps into the first epoch
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert lines[-1].startswith("viewfinder: training interrupted ")
    assert "--resume" in lines[-1]
    state = torch.load(out / "last_checkpoint.pt", weights_only=True)
    # Ctrl-C lands inside an epoch's steps (saved mid-epoch) or in the work after an epoch's last
    # step (evaluation, checkpoint, curve), where the epoch's end is saved
    inside = re.search(r"interrupted at epoch (\d+), step (\d+)/12;", lines[-1])
    after = re.search(r"interrupted after epoch (\d+);", lines[-1])
    assert inside or after, lines[-1]
    if inside:
        assert (state["epoch"], state["step"]) == (int(inside.group(1)) - 1, int(inside.group(2)))
        assert 1 <= state["step"] <= 12
    else:
        assert (state["epoch"], state["step"]) == (int(after.group(1)), 0)

    # resuming (here in-process, with a schedule ending after this epoch) continues from the saved position
    config = TrainConfig(model="MobileNetV2_x1_0", dataset_dir=str(root), dataset_type="ClsDataset", output=str(out),
                         batch_size=2, input_size=32, learning_rate=0.005, device="cpu", export_onnx=False,
                         epochs=state["epoch"] + 1)
    train(config, resume=True, progress=False)
    assert f"resuming from {out / 'last_checkpoint.pt'} at epoch {state['epoch'] + 1}, step {state['step']}" \
        in log.read_text()
    result = json.loads((out / "train_result.json").read_text())
    assert result["done_flag"] is True and result["history"][-1]["epoch"] == state["epoch"] + 1


def test_ctrl_c_after_an_epochs_last_step_saves_that_epoch(tmp_path, photos, mobilenet_v2_weights, monkeypatch):
    """The Ctrl-C that lands in the work after an epoch (evaluation, checkpoint, curve) stops there."""
    from viewfinder.training.trainer import Trainer

    root = _many_images(tmp_path / "cls", photos)
    out = tmp_path / "out"
    draw = Trainer._draw_curve

    def draw_then_interrupt(self):
        draw(self)
        self._stop_requested = True  # what the SIGINT handler does

    monkeypatch.setattr(Trainer, "_draw_curve", draw_then_interrupt)
    config = TrainConfig(dataset_dir=str(root), dataset_type="ClsDataset", output=str(out), **{**FAST, "epochs": 3})
    with pytest.raises(TrainingInterrupted, match=r"interrupted after epoch 1; checkpoint saved to .*--resume"):
        train(config, progress=False)
    state = torch.load(out / "last_checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 0)
    monkeypatch.setattr(Trainer, "_draw_curve", draw)
    result = train(config, resume=True, progress=False)
    assert f"resuming from {out / 'last_checkpoint.pt'} at epoch 2, step 0" in (out / "train.log").read_text()
    assert [record["epoch"] for record in result["history"]] == [1, 2, 3]


@pytest.mark.parametrize("override, message", [
    ("pad=x", "viewfinder: error: pad must be int or null, got 'x'"),
    ("Train.epoch=3", "viewfinder: error: unknown training settings ['epoch']"),
    ("epochs", "viewfinder: error: -o expects KEY=VALUE, got 'epochs'"),
])
def test_train_cli_overrides_are_checked(tmp_path, override, message):
    result = CliRunner().invoke(cli, ["train", "--model", "MobileNetV2_x1_0", "--dataset", str(tmp_path), "--type",
                                      "ClsDataset", "-o", override])
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.count("\n") == 1
