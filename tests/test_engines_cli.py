"""`viewfinder export`, `--use_hpip`, and the decode-ahead predict loop the fast engines rely on."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from viewfinder import create_model
from viewfinder.cli import cli
from viewfinder.errors import InputError


def test_export_command_writes_a_validated_onnx_file(tmp_home, tmp_path):
    import onnx
    import onnxruntime

    target = tmp_path / "out" / "lcnet.onnx"
    result = CliRunner().invoke(cli, ["export", "--model", "PP-LCNet_x0_25", "--random_init", "--format", "onnx",
                                      "--output", str(target), "--cpu_threads", "1"])
    assert result.exit_code == 0, result.output
    assert "max abs diff vs torch" in result.output
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"x": np.zeros((2, 3, 224, 224), np.float32)})
    assert output.shape == (2, 1000)  # dynamic batch axis
    metadata = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    assert metadata["model_name"] == "PP-LCNet_x0_25"
    assert json.loads(metadata["preprocess"])["crop"] == 224
    assert len(json.loads(metadata["labels"])) == 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["export"], "export needs --model NAME or --model_dir DIR"),
        (["export", "--model", "PP-LCNet_x9"], "unknown model name 'PP-LCNet_x9'"),
        (["export", "--model", "PP-LCNet_x0_25", "--random_init", "--output", "{tmp}"], "is a folder"),
    ],
)
def test_export_command_errors_are_one_line(args, message, tmp_path):
    result = CliRunner().invoke(cli, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_use_hpip(tmp_home, photos):
    result = CliRunner().invoke(cli, ["--pipeline", "image_classification", "--input", str(photos / "dog.jpg"),
                                      "--device", "cpu", "--use_hpip", "--random_init", "--cpu_threads", "1"])
    assert result.exit_code == 0, result.output
    assert "class_ids" in result.output
    assert list((tmp_home / "onnx").glob("PP-LCNet_x0_5-*.onnx"))  # ran on an ONNX Runtime export


@pytest.fixture(scope="module")
def tiny_torch_model():
    return create_model("PP-LCNet_x0_25", pretrained=False, device="cpu", engine="torch", decode_threads=2)


def test_decode_ahead_keeps_order_and_errors_in_place(tiny_torch_model, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    inputs = [str(photos / "dog.jpg"), str(broken), str(photos / "kite.jpg"), str(tmp_path / "nope.png"),
              str(photos / "horses.jpg")]
    generator = tiny_torch_model.predict(inputs, batch_size=2)
    results = list(generator)
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert [r["input_path"] for r in results] == inputs


def test_decode_ahead_raises_after_earlier_results(tiny_torch_model, photos, tmp_path):
    results = []
    with pytest.raises(InputError, match="no such file"):
        for result in tiny_torch_model.predict({"a": str(photos / "dog.jpg"), "b": str(tmp_path / "gone.jpg")},
                                               batch_size=1):
            results.append(result)
    assert len(results) == 1 and results[0].ok


def test_predict_is_lazy(photos, monkeypatch):
    model = create_model("PP-LCNet_x0_25", pretrained=False, device="cpu", engine="torch")
    calls = []
    decode = model._decode_cpu
    monkeypatch.setattr(model, "_decode_cpu", lambda item: calls.append(item) or decode(item))
    generator = model.predict(str(photos / "dog.jpg"))
    assert calls == []
    assert next(generator).ok and len(calls) == 1
