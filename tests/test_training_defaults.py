"""Fine-tuning that never ends below its start, with settings chosen for the dataset (issue 25)."""
from __future__ import annotations

import json

import numpy as np
import yaml
from click.testing import CliRunner
from PIL import Image

from test_datasets import make_cls, make_rec
from viewfinder import create_model
from viewfinder.cli import cli
from viewfinder.models import create_feature_model, get_spec
from viewfinder.training import TrainConfig, Trainer
from viewfinder.training.defaults import DatasetFacts, choose

QUICK = {"model": "MobileNetV2_x1_0", "device": "cpu", "input_size": 32, "epochs": 1, "export_onnx": False}
MOBILENET_GROUPS = 9  # stem, 7 stages, head (timm's coarse groups)


def decisions(kind: str, facts: DatasetFacts, **set_by_user):
    config = TrainConfig(dataset_dir="d", dataset_type=kind, model="MobileNetV2_x1_0", **set_by_user).resolved()
    return choose(config, facts, get_spec("MobileNetV2_x1_0").preprocess, MOBILENET_GROUPS)


def values(chosen) -> dict:
    return {name: decision.value for name, decision in chosen.items()}


# ------------------------------------------------------------------ the rules
def test_small_sources_train_at_a_few_times_their_size():
    chosen = decisions("ShiTuRecDataset", DatasetFacts(images=3000, classes=10, per_class=300, source_side=28))
    assert chosen["input_size"].value == 128 and "28 px" in chosen["input_size"].reason
    assert values(decisions("ClsDataset", DatasetFacts(3000, 10, 300, 500)))["input_size"] == 224  # the model's


def test_fewer_images_per_class_freeze_more_and_learn_slower():
    few = values(decisions("ShiTuRecDataset", DatasetFacts(1000, 10, 100, 28)))
    some = values(decisions("ShiTuRecDataset", DatasetFacts(3000, 10, 300, 28)))
    many = values(decisions("ShiTuRecDataset", DatasetFacts(50000, 10, 5000, 28)))
    assert few["freeze_groups"] == some["freeze_groups"] == MOBILENET_GROUPS // 2 and many["freeze_groups"] == 0
    assert few["learning_rate"] == some["learning_rate"] < many["learning_rate"]
    assert many["rotate_prob"] == 0.5 and few["rotate_prob"] == 0.0  # PP-ShiTuV2_rec's rotation on large data only


def test_recognition_batches_are_p_by_k_within_the_identities():
    assert values(decisions("ShiTuRecDataset", DatasetFacts(3000, 10, 300, 28)))["batch_size"] == 32  # 8 x 4
    three = values(decisions("ShiTuRecDataset", DatasetFacts(600, 3, 200, 28)))
    assert (three["batch_size"], three["sample_per_id"]) == (12, 4)  # all 3 identities x 4
    tiny = values(decisions("ClsDataset", DatasetFacts(120, 4, 30, 28)))
    assert tiny["batch_size"] == 8  # >= 10 steps an epoch


def test_what_the_user_sets_is_never_chosen():
    chosen = decisions("ClsDataset", DatasetFacts(1000, 10, 100, 28), learning_rate=0.0123, input_size=64,
                       freeze_groups=0)
    assert not {"learning_rate", "input_size", "freeze_groups"} & set(chosen)
    assert chosen["pad"].value == max(2, round(10 * 64 / 224))  # derived from the user's input size


# ------------------------------------------------------------------ a run
def test_a_run_prints_and_records_each_decision(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    out = tmp_path / "out"
    result = Trainer(TrainConfig(dataset_dir=str(root), dataset_type="ClsDataset", output=str(out), **QUICK),
                     progress=False).run()
    chosen = result["defaults"]
    assert "input_size" not in chosen  # set by the run
    assert chosen["learning_rate"]["reason"] and chosen["batch_size"]["value"] == 8
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["Train"]["learning_rate"] == chosen["learning_rate"]["value"]
    assert saved["Train"]["batch_size"] == 8 and saved["Train"]["input_size"] == 32
    log = (out / "train.log").read_text()
    assert f"default learning_rate = {chosen['learning_rate']['value']}: " in log
    # epoch 0 is in the history and in the plot; the plot is a PNG next to train_result.json
    assert [h["epoch"] for h in result["history"]] == [0, 1] and result["history"][0]["loss"] is None
    assert result["start"]["score"] == result["history"][0]["metrics"]["val.top1"]
    assert Image.open(out / "train_curve.png").format == "PNG"


def test_an_explicit_paddlex_learning_rate_wins(tmp_path, photos, mobilenet_v2_weights):
    root = make_cls(tmp_path / "cls", photos)
    out = tmp_path / "out"
    run = CliRunner().invoke(cli, ["train", "--model", "MobileNetV2_x1_0", "--dataset", str(root), "--type",
                                   "ClsDataset", "--output", str(out), "--epochs", "1", "--input_size", "32",
                                   "--device", "cpu", "--no_onnx", "--quiet", "-o", "Train.learning_rate=0.0123"])
    assert run.exit_code == 0, run.output
    assert yaml.safe_load((out / "config.yaml").read_text())["Train"]["learning_rate"] == 0.0123
    result = json.loads((out / "train_result.json").read_text())
    assert "learning_rate" not in result["defaults"] and "batch_size" in result["defaults"]


def test_training_that_does_not_beat_the_start_keeps_the_starting_model(tmp_path, photos, mobilenet_v2_weights,
                                                                        monkeypatch):
    root = make_rec(tmp_path / "rec", photos)
    out = tmp_path / "out"
    scores = iter([0.75, 0.5, 0.625])  # epoch 0 (the pretrained features), then two worse epochs

    def scripted(self):
        score = next(scores)
        return {"recall1": score, "recall5": 1.0, "mAP": score}

    monkeypatch.setattr(Trainer, "_evaluate", scripted)
    config = TrainConfig(dataset_dir=str(root), dataset_type="ShiTuRecDataset", output=str(out),
                         **{**QUICK, "epochs": 2, "batch_size": 8, "sample_per_id": 2})
    result = Trainer(config, progress=False).run()
    assert result["models"]["best"]["epoch"] == 0 and result["models"]["best"]["score"] == 0.75
    assert result["start"] == {"score": 0.75, "improved": False}
    assert "training did not beat the starting model: recall1 0.75000 before training, at best 0.62500 after" \
        in (out / "train.log").read_text()
    # best_model holds the starting network: the pretrained features, not the trained ones
    batch = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    saved = create_model(model_dir=out / "best_model", device="cpu", engine="torch")
    pretrained = create_feature_model("MobileNetV2_x1_0", weights=mobilenet_v2_weights, device="cpu", engine="torch")
    np.testing.assert_allclose(saved.raw(batch), pretrained.raw(batch), rtol=0, atol=1e-5)


def test_training_that_beats_the_start_says_so(tmp_path, photos, mobilenet_v2_weights, monkeypatch):
    root = make_cls(tmp_path / "cls", photos)
    scores = iter([0.5, 0.75])
    monkeypatch.setattr(Trainer, "_evaluate", lambda self: {"val.top1": next(scores), "val.top5": 1.0})
    result = Trainer(TrainConfig(dataset_dir=str(root), dataset_type="ClsDataset", output=str(tmp_path / "out"),
                                 **QUICK), progress=False).run()
    assert result["start"] == {"score": 0.5, "improved": True} and result["models"]["best"]["epoch"] == 1
