"""create_model, create_pipeline and the CLI (with a YAML) agree on the same photo."""
from __future__ import annotations

import json
import subprocess
import sys

import yaml

from viewfinder import create_model, create_pipeline


def test_three_entry_points_agree(seeded_home, photos, tmp_path):
    photo = str(photos / "chelsea.png")
    model_labels = list(create_model("MobileNetV2_x1_0", device="cpu").predict(photo, topk=3))[0]["label_names"]

    pipeline = create_pipeline(
        "image_classification",
        config={"SubModules": {"ImageClassification": {"model_name": "MobileNetV2_x1_0"}}},
        device="cpu",
    )
    pipeline_labels = list(pipeline.predict(photo, topk=3))[0]["label_names"]

    config = tmp_path / "my.yaml"
    config.write_text(yaml.safe_dump({
        "pipeline_name": "image_classification",
        "SubModules": {"ImageClassification": {"model_name": "MobileNetV2_x1_0", "batch_size": 2, "topk": 3}},
    }))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "viewfinder.cli", "--pipeline", str(config), "--input", photo,
         "--device", "cpu", "--save_path", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((out / "chelsea_res.json").read_text())
    assert (out / "chelsea_res.png").is_file()
    assert model_labels == pipeline_labels == saved["label_names"]
    assert model_labels[0] in {"Egyptian cat", "tabby, tabby cat", "tiger cat"}
    assert "Traceback" not in proc.stderr


def test_get_pipeline_config_roundtrip(tmp_path):
    from click.testing import CliRunner

    from viewfinder.cli import cli

    result = CliRunner().invoke(cli, ["--get_pipeline_config", "image_classification", "--save_path", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((tmp_path / "image_classification.yaml").read_text())
    assert written["pipeline_name"] == "image_classification"
    assert written["SubModules"]["ImageClassification"]["model_name"] == "PP-LCNet_x0_5"


def test_config_override_and_predict_kwargs(photos):
    pipeline = create_pipeline(
        "image_classification",
        config={"SubModules": {"ImageClassification": {"model_name": "PP-LCNet_x0_25", "topk": 2}}},
        pretrained=False, device="cpu",
    )
    result = list(pipeline.predict(str(photos / "coffee.png")))[0]
    assert len(result["class_ids"]) == 2  # YAML topk
    result = list(pipeline.predict(str(photos / "coffee.png"), topk=4))[0]
    assert len(result["class_ids"]) == 4  # predict() keyword wins


def test_commands_without_models_do_not_load_torch():
    """`viewfinder --help`, `index info|remove` and the index layer start without torch (~1.5 s)."""
    code = ("import sys, viewfinder, viewfinder.cli, viewfinder.retrieval; "
            "from viewfinder.commands import index; "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "assert callable(viewfinder.create_model) and callable(viewfinder.list_models)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
