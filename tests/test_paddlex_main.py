"""PaddleX's ``python main.py -c MODULE.yaml -o ...`` as ``viewfinder -c ...`` (and ``python -m viewfinder.main``).

The must-show: the PaddleX docs' custom-development commands for the image-feature module, run
verbatim but for the program name (the same text is in docs/training.md), on a tiny
ShiTuRecDataset of 16-px thumbnails of the seeded photos, so the whole flow takes seconds.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from test_datasets import ANIMALS, OBJECTS, make_cls, thumbnail, write
from viewfinder.cli import cli
from viewfinder.commands.paddlex_config import (KNOWN_KEYS, MODULES, check_keys, default_config, load_config,
                                                parse_override)
from viewfinder.commands.paddlex_module import ModuleRun, parse_device, resolve_weight_path, train_config
from viewfinder.errors import ConfigError
from viewfinder.training.inference_dir import inference_yml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "training.md"

#: PaddleX's docs for the image_feature module, with ``python main.py`` -> ``viewfinder``
IMAGE_FEATURE_COMMANDS = """\
viewfinder -c paddlex/configs/modules/image_feature/PP-ShiTuV2_rec.yaml \\
    -o Global.mode=check_dataset \\
    -o Global.dataset_dir=./dataset/Inshop_examples
viewfinder -c paddlex/configs/modules/image_feature/PP-ShiTuV2_rec.yaml \\
    -o Global.mode=train \\
    -o Global.dataset_dir=./dataset/Inshop_examples \\
    -o Train.epochs_iters=2
viewfinder -c paddlex/configs/modules/image_feature/PP-ShiTuV2_rec.yaml \\
    -o Global.mode=evaluate \\
    -o Global.dataset_dir=./dataset/Inshop_examples
viewfinder -c paddlex/configs/modules/image_feature/PP-ShiTuV2_rec.yaml \\
    -o Global.mode=predict \\
    -o Predict.model_dir="./output/best_model/inference" \\
    -o Predict.input="general_image_recognition_001.jpg"
"""

#: the keys of PaddleX's own paddlex/configs/modules/image_feature/PP-ShiTuV2_rec.yaml, values as there
PADDLEX_REC_YAML = """\
Global:
  model: PP-ShiTuV2_rec
  mode: check_dataset # check_dataset/train/evaluate/predict
  dataset_dir: "/paddle/dataset/paddlex/shitu_rec/Inshop_examples"
  device: gpu:0,1,2,3
  output: "output"
CheckDataset:
  convert:
    enable: False
    src_dataset_type: null
  split:
    enable: False
    train_percent: null
    gallery_percent: null
    query_percent: null
Train:
  num_classes: 159
  epochs_iters: 20
  batch_size: 128
  learning_rate: 0.01
  pretrain_weight_path: https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/PP-ShiTuV2_rec_pretrained.pdparams
  warmup_steps: 5
  resume_path: null
  log_interval: 1
  eval_interval: 1
  save_interval: 1
Evaluate:
  weight_path: "output/best_model/best_model.pdparams"
  log_interval: 1
Export:
  weight_path: https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/PP-ShiTuV2_rec_pretrained.pdparams
Predict:
  batch_size: 1
  model_dir: "output/best_model/inference"
  input: "https://paddle-model-ecology.bj.bcebos.com/paddlex/imgs/demo_image/general_image_recognition_001.jpg"
  kernel_option:
    run_mode: paddle
"""


def commands(text: str) -> list[list[str]]:
    """Shell lines (with ``\\`` continuations) -> argument lists without the program name."""
    joined = text.replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in joined.splitlines() if line.strip()]


def invoke(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def make_inshop(root: Path, photos: Path) -> Path:
    """The docs' ShiTuRecDataset layout (images/, train.txt, gallery.txt, query.txt): 8 identities,
    16-px JPEGs (training then picks 64-px inputs), 3 train views, 1 gallery and 1 query view each."""
    train, gallery, query = [], [], []
    views = {"a": {}, "b": {"flip": True}, "c": {"shift": 1}, "g": {"flip": True, "shift": 1}, "q": {"shift": 2}}
    for label, name in enumerate(ANIMALS + OBJECTS):
        stem = Path(name).stem
        for tag, options in views.items():
            thumbnail(photos, name, root / "images" / f"{stem}_{tag}.jpg", size=16, **options)
        train += [f"images/{stem}_{tag}.jpg {label}" for tag in "abc"]
        gallery.append(f"images/{stem}_g.jpg {label}")
        query.append(f"images/{stem}_q.jpg {label}")
    write(root / "train.txt", train)
    write(root / "gallery.txt", gallery)
    write(root / "query.txt", query)
    return root


# --------------------------------------------------------------------------- the must-show flow


def test_image_feature_docs_commands_run_verbatim(tmp_path, tmp_home, photos, shared_dir, monkeypatch):
    # PaddleX's official pretrained file, seeded where a download would put it (the parity fixture has
    # the published .pdparams layout); the commands then resolve Train.pretrain_weight_path as PaddleX does
    (tmp_home / "weights").mkdir()
    shutil.copyfile(shared_dir / "parity" / "PP-ShiTuV2_rec" / "model.pdparams",
                    tmp_home / "weights" / "PP-ShiTuV2_rec_pretrained.pdparams")
    monkeypatch.chdir(tmp_path)
    make_inshop(tmp_path / "dataset" / "Inshop_examples", photos)
    shutil.copyfile(photos / "dog.jpg", tmp_path / "general_image_recognition_001.jpg")
    check, train, evaluate, predict = commands(IMAGE_FEATURE_COMMANDS)
    out = tmp_path / "output"
    started = time.perf_counter()

    result = invoke(check)
    assert result.exit_code == 0, result.output
    assert "Check dataset passed !" in result.stdout
    checked = json.loads((out / "check_dataset_result.json").read_text())
    assert checked["done_flag"] is True and checked["check_pass"] is True
    assert checked["dataset_type"] == "ShiTuRecDataset" and checked["dataset_path"] == "./dataset/Inshop_examples"
    assert (checked["attributes"]["train_samples"], checked["attributes"]["gallery_samples"],
            checked["attributes"]["query_samples"]) == (24, 8, 8)

    result = invoke(train)
    assert result.exit_code == 0, result.output
    trained = json.loads((out / "train_result.json").read_text())
    assert trained["done_flag"] is True and trained["model_name"] == "PP-ShiTuV2_rec"
    assert trained["epochs_done"] == 2 and trained["defaults"]["input_size"]["value"] == 64
    assert trained["models"]["best"]["inference_dir"] == "best_model/inference"
    inference = out / "best_model" / "inference"
    assert {"inference.yml", "config.yaml", "model.safetensors"} <= {p.name for p in inference.iterdir()}
    described = yaml.safe_load((inference / "inference.yml").read_text())
    assert described["Global"] == {"model_name": "PP-ShiTuV2_rec"}
    assert described["PostProcess"] == {"NormalizeFeatures": None}
    assert [next(iter(op)) for op in described["PreProcess"]["transform_ops"]][-2:] == ["NormalizeImage",
                                                                                        "ToCHWImage"]

    result = invoke(evaluate)  # Evaluate.weight_path: the default output/best_model/best_model.pdparams
    assert result.exit_code == 0, result.output
    evaluated = json.loads((out / "evaluate_result.json").read_text())
    assert evaluated["done_flag"] is True and set(evaluated["metrics"]) == {"recall1", "recall5", "mAP"}
    assert "[Eval][Epoch 0][Avg] recall1: " in result.stdout
    # best_model is the epoch the trainer scored best; evaluating it again gives that epoch's recall@1
    assert evaluated["metrics"]["recall1"] == pytest.approx(trained["models"]["best"]["metrics"]["recall1"], abs=1e-6)

    result = invoke(predict)
    assert result.exit_code == 0, result.output
    assert "'feature':" in result.stdout
    saved = json.loads((out / "general_image_recognition_001_res.json").read_text())
    assert len(saved["feature"]) == 512
    elapsed = time.perf_counter() - started
    print(f"image_feature check_dataset -> train (2 epochs) -> evaluate -> predict: {elapsed:.1f} s")


def test_docs_carry_the_image_feature_commands():
    assert IMAGE_FEATURE_COMMANDS in DOCS.read_text(encoding="utf-8")


def test_classification_module_check_train_predict(tmp_path, seeded_home, photos, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_cls(tmp_path / "flowers", photos)
    shutil.copyfile(photos / "chelsea.png", tmp_path / "cat.png")
    base = ["-c", "paddlex/configs/modules/image_classification/MobileNetV2_x1_0.yaml",
            "-o", "Global.dataset_dir=./flowers"]
    result = invoke([*base, "-o", "Global.mode=check_dataset", "-o", "CheckDataset.split.enable=True",
                     "-o", "CheckDataset.split.train_percent=75", "-o", "CheckDataset.split.val_percent=25"])
    assert result.exit_code == 0, result.output
    assert "Split dataset successfully !" in result.stdout and "Check dataset passed !" in result.stdout
    assert (tmp_path / "flowers" / "train.txt.bak").is_file()
    assert json.loads((tmp_path / "output" / "check_dataset_result.json").read_text())["attributes"]["num_classes"] == 2

    result = invoke([*base, "-o", "Global.mode=train", "-o", "Train.epochs_iters=1", "-o", "Train.num_classes=102",
                     "-o", "Train.input_size=32", "-o", "Train.export_onnx=false", "-o", "Global.device=cpu"])
    assert result.exit_code == 0, result.output
    assert "Train.num_classes 102 is not used: the head is sized from the dataset (2 classes" in result.stderr
    described = yaml.safe_load((tmp_path / "output/best_model/inference/inference.yml").read_text())
    assert described["PostProcess"] == {"Topk": {"topk": 2, "label_list": ["animal", "object thing"]}}
    assert described["PreProcess"]["transform_ops"][0] == {
        "ResizeImage": {"resize_short": 32, "interpolation": "bilinear", "backend": "pil"}}

    result = invoke([*base, "-o", "Global.mode=predict", "-o", "Predict.input=cat.png"])
    assert result.exit_code == 0, result.output
    assert "'label_names': ['animal', 'object thing']" in result.stdout or \
        "'label_names': ['object thing', 'animal']" in result.stdout
    assert (tmp_path / "output" / "cat_res.json").is_file()


def test_export_mode_writes_an_inference_dir(tmp_path, seeded_home, photos, monkeypatch):
    """Export.weight_path = the official URL -> our pretrained weights, as a model dir + inference.yml."""
    monkeypatch.chdir(tmp_path)
    result = invoke(["-c", "MobileNetV2_x1_0.yaml", "-o", "Global.mode=export", "-o", "Global.output=exported"])
    assert result.exit_code == 0, result.output
    target = tmp_path / "exported" / "inference"
    assert {"inference.yml", "config.yaml", "model.safetensors"} <= {p.name for p in target.iterdir()}
    assert yaml.safe_load((target / "inference.yml").read_text())["PostProcess"]["Topk"]["topk"] == 5
    result = invoke(["-c", "MobileNetV2_x1_0.yaml", "-o", "Global.mode=predict", "-o", f"Predict.model_dir={target}",
                     "-o", f"Predict.input={photos / 'chelsea.png'}", "-o", "Global.output=preds"])
    assert result.exit_code == 0, result.output
    assert "'label_names': [" in result.stdout and (tmp_path / "preds" / "chelsea_res.json").is_file()


# --------------------------------------------------------------------------- config schema and errors


def test_paddlex_yaml_keys_are_all_known(tmp_path):
    config = yaml.safe_load(PADDLEX_REC_YAML)
    check_keys(config, "PP-ShiTuV2_rec.yaml")  # no error
    for model in ("PP-LCNet_x1_0", "PP-LCNet_x1_0_ML", "PP-ShiTuV2_rec", "PP-ShiTuV2_det"):
        check_keys(default_config(model), model)


def test_unknown_keys_exit_2_naming_them(tmp_path):
    path = tmp_path / "PP-ShiTuV2_rec.yaml"
    path.write_text(PADDLEX_REC_YAML.replace("  save_interval: 1\n", "  save_interval: 1\n  epochs: 3\n"))
    result = CliRunner().invoke(cli, ["-c", str(path), "-o", "Global.modee=train"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "Train.epochs (did you mean Train.epochs_iters?)" in result.stderr
    result = CliRunner().invoke(cli, ["-c", str(path), "-o", "Global.modee=train", "-o", "Predict.kernel_option.x=1"])
    assert result.exit_code == 2 and "Global.modee (did you mean Global.mode?)" in result.stderr
    assert "Predict.kernel_option.x" in result.stderr


def test_overrides_are_yaml_scalars_into_nested_sections():
    assert parse_override("Train.epochs_iters=2") == ("Train.epochs_iters", 2)
    assert parse_override("CheckDataset.split.enable=True") == ("CheckDataset.split.enable", True)
    assert parse_override("Global.device=gpu:0,1,2,3") == ("Global.device", "gpu:0,1,2,3")
    assert parse_override("Train.learning_rate=1e-3") == ("Train.learning_rate", 0.001)  # PyYAML alone: a string
    assert parse_override("Train.learning_rate=0.001") == ("Train.learning_rate", 0.001)
    assert parse_override("Predict.input=*.jpg") == ("Predict.input", "*.jpg")  # not YAML: kept as given
    assert parse_override("Train.resume_path=") == ("Train.resume_path", None)
    for bad in ("Global.mode", "=train", "Global..mode=x"):
        with pytest.raises(ConfigError, match="-o expects KEY=VALUE"):
            parse_override(bad)
    config, notes = load_config("nowhere/PP-ShiTuV2_rec.yaml", ["Train.input_size=64", "Global.mode=train"])
    assert config["Train"]["input_size"] == 64 and config["Global"]["mode"] == "train"
    assert "built-in config for PP-ShiTuV2_rec" in notes[0]
    with pytest.raises(ConfigError, match="not a section"):
        load_config("nowhere/PP-ShiTuV2_rec.yaml", ["Global.mode.x=1"])


def test_missing_config_that_names_no_model_is_an_error():
    with pytest.raises(ConfigError, match="not a model viewfinder knows"):
        load_config("paddlex/configs/modules/image_feature/NoSuchModel.yaml", [])
    with pytest.raises(ConfigError, match="belongs to module image_feature"):
        load_config("paddlex/configs/modules/image_classification/PP-ShiTuV2_rec.yaml", [])


def test_train_keys_map_onto_train_config(tmp_path):
    config, _ = load_config("PP-ShiTuV2_rec.yaml", [
        "Global.dataset_dir=data", "Train.epochs_iters=3", "Train.batch_size=16", "Train.learning_rate=0.01",
        "Train.warmup_steps=1", "Train.eval_interval=2", "Train.freeze_groups=2", "Global.output=out"])
    run = ModuleRun(config, "PP-ShiTuV2_rec", MODULES["image_feature"], "train", Path("out"), "cpu")
    mapped = train_config(run)
    assert (mapped.epochs, mapped.batch_size, mapped.learning_rate, mapped.warmup_epochs, mapped.eval_interval,
            mapped.freeze_groups) == (3, 16, 0.01, 1, 2, 2)
    assert mapped.dataset_type == "ShiTuRecDataset" and mapped.pretrained and mapped.weights is None
    config["Train"]["pretrain_weight_path"] = None
    assert train_config(run).pretrained is False  # PaddleX: null = from scratch
    config["Train"]["epochs_iters"] = 0
    with pytest.raises(ConfigError, match=r"^Train.epochs_iters must be a number > 0"):
        train_config(run)
    assert "Train.input_size" in KNOWN_KEYS and "Train.epochs" not in KNOWN_KEYS


def test_weight_paths(tmp_path):
    url = "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/PP-ShiTuV2_rec_pretrained.pdparams"
    assert resolve_weight_path(url, "PP-ShiTuV2_rec", "k").pretrained is True
    assert resolve_weight_path(None, "PP-ShiTuV2_rec", "k").pretrained is False
    with pytest.raises(ConfigError, match="downloads only a model's own pretrained weights"):
        resolve_weight_path("https://example.com/other.pdparams", "PP-ShiTuV2_rec", "k")
    best = tmp_path / "output" / "best_model"
    best.mkdir(parents=True)
    (best / "config.yaml").write_text("model_name: PP-ShiTuV2_rec\n")
    (best / "model.safetensors").write_bytes(b"")
    for given in (best / "best_model.pdparams", best, best / "model.safetensors"):
        assert resolve_weight_path(str(given), "PP-ShiTuV2_rec", "k").model_dir == str(best)
    other = tmp_path / "w.pdparams"
    other.write_bytes(b"")
    assert resolve_weight_path(str(other), "PP-ShiTuV2_rec", "k").weights == str(other)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_weight_path(str(tmp_path / "nope" / "best_model.pdparams"), "PP-ShiTuV2_rec", "Evaluate.weight_path")


def test_multi_gpu_device_is_one_device_with_a_note(capsys):
    assert parse_device("gpu:0,1,2,3") == "gpu:0"
    assert "runs on one device" in capsys.readouterr().err
    assert parse_device("cpu") == "cpu" and parse_device(None) is None and parse_device("gpu:1") == "gpu:1"


def test_detection_module_refuses_training_and_failures_write_result_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["-c", "paddlex/configs/modules/mainbody_detection/PP-ShiTuV2_det.yaml",
                                      "-o", "Global.mode=train"])
    assert result.exit_code == 2 and "only Global.mode=predict runs for this module" in result.stderr
    for mode, file in (("evaluate", "evaluate_result.json"), ("train", "train_result.json"),
                       ("check_dataset", "check_dataset_result.json")):
        result = CliRunner().invoke(cli, ["-c", "PP-ShiTuV2_rec.yaml", "-o", f"Global.mode={mode}",
                                          "-o", "Global.dataset_dir=missing", "-o", "Evaluate.weight_path=" + str(
                                              tmp_path / "m.pdparams"), "-o", "Global.output=out"])
        assert result.exit_code == 2, (mode, result.output)
        written = json.loads((tmp_path / "out" / file).read_text())
        assert written["done_flag"] is False and written["err_type"] and written["err_msg"], mode
    result = CliRunner().invoke(cli, ["-c", "PP-ShiTuV2_rec.yaml", "-o", "Global.mode=predict",
                                      "-o", "Predict.input=x.jpg"])
    assert result.exit_code == 2 and "Predict.model_dir output/best_model/inference does not exist" in result.stderr
    result = CliRunner().invoke(cli, ["-c", "PP-ShiTuV2_rec.yaml", "--pipeline", "image_classification"])
    assert result.exit_code == 2 and "does not combine with --pipeline" in result.stderr
    result = CliRunner().invoke(cli, ["-c", "PP-ShiTuV2_rec.yaml", "-o", "Global.mode=deploy"])
    assert result.exit_code == 2 and "Global.mode must be one of check_dataset, train" in result.stderr


def test_get_module_config_via_python_m_viewfinder_main(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "viewfinder.main", "--get_module_config", "PP-ShiTuV2_rec",
                                "--save_path", str(tmp_path / "configs")], capture_output=True, text=True,
                               cwd=ROOT, timeout=120)
    assert completed.returncode == 0, completed.stderr
    written = tmp_path / "configs" / "PP-ShiTuV2_rec.yaml"
    config = yaml.safe_load(written.read_text())
    assert config["Global"]["model"] == "PP-ShiTuV2_rec"
    assert config["Evaluate"]["weight_path"] == "output/best_model/best_model.pdparams"
    assert config["Predict"]["model_dir"] == "output/best_model/inference"
    assert set(config["CheckDataset"]["split"]) == {"enable", "train_percent", "gallery_percent", "query_percent"}
    loaded, notes = load_config(str(written), [])  # what it writes, it reads back without complaint
    assert loaded == config and notes == []
    result = CliRunner().invoke(cli, ["--get_module_config", "NoSuchModel", "--save_path", str(tmp_path)])
    assert result.exit_code == 2 and "unknown model name" in result.stderr


def test_inference_yml_for_each_task():
    base = {"model_name": "M", "labels": ["a", "b"],
            "preprocess": {"resize_short": None, "crop": None, "resize": [448, 448], "mean": [0.5] * 3,
                           "std": [0.5] * 3, "interpolation": "bilinear", "scale": 1 / 255, "backend": "cv2"}}
    ml = inference_yml({**base, "task": "image_multilabel_classification", "postprocess": {"threshold": 0.7}})
    assert ml["PostProcess"] == {"MultiLabelThreshOutput": {"threshold": 0.7, "label_list": ["a", "b"]}}
    assert ml["PreProcess"]["transform_ops"][0] == {"ResizeImage": {"size": [448, 448], "interpolation": "bilinear",
                                                                    "backend": "cv2"}}
    assert ml["PreProcess"]["transform_ops"][1]["NormalizeImage"]["channel_num"] == 3
    cls = inference_yml({**base, "task": "image_classification", "postprocess": {"topk": 1}})
    assert cls["PostProcess"] == {"Topk": {"topk": 1, "label_list": ["a", "b"]}}
    assert inference_yml({**base, "task": "image_feature"})["PostProcess"] == {"NormalizeFeatures": None}


def test_resume_path_maps_paddlex_epoch_weights_to_our_checkpoint(tmp_path):
    from viewfinder.commands.paddlex_module import _resume_checkpoint

    epoch = tmp_path / "output" / "epoch_2"
    epoch.mkdir(parents=True)
    (epoch / "checkpoint.pt").write_bytes(b"")
    assert _resume_checkpoint(str(epoch / "epoch_2.pdparams")) == str(epoch / "checkpoint.pt")  # PaddleX's spelling
    assert _resume_checkpoint(str(epoch)) == str(epoch / "checkpoint.pt")
    assert _resume_checkpoint(None) is None
    with pytest.raises(ConfigError, match="no viewfinder checkpoint there"):
        _resume_checkpoint(str(tmp_path / "elsewhere" / "x.pdparams"))
