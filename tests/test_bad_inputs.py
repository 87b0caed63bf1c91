"""Bad input never crashes: one clear error (CLI: one line, exit code != 0) or a per-item error."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from viewfinder import create_model, create_pipeline
from viewfinder.cli import cli
from viewfinder.errors import (ConfigError, DeviceError, ImageTooLargeError, InputError,
                               ModelNotFoundError, ViewfinderError)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny file whose header claims 20000x20000 pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, photos) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    good = (photos / "dog.jpg").read_bytes()
    files = {
        "corrupt.jpg": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8,
        "truncated.jpg": good[: len(good) // 3],
        "text.jpg": b"this is not an image, just text\n",
        "empty.jpg": b"",
        "bomb.png": bomb_png(),
    }
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    one = folder / "one_pixel.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(one)
    paths["one_pixel.png"] = one
    return paths


@pytest.fixture(scope="module")
def model():
    return create_model("PP-LCNet_x0_25", pretrained=False, device="cpu")


@pytest.mark.parametrize("name, expected", [
    ("corrupt.jpg", "corrupt"),
    ("truncated.jpg", "truncated"),
    ("text.jpg", "not a recognised image"),
    ("empty.jpg", "empty"),
    ("bomb.png", "pixel limit"),
])
def test_bad_file_is_a_per_item_error(model, bad_files, name, expected):
    results = list(model.predict(str(bad_files[name])))
    assert len(results) == 1 and not results[0].ok
    assert expected in results[0]["error"] and str(bad_files[name]) in results[0]["error"]


def test_bomb_refused_before_decoding():
    with pytest.raises(ImageTooLargeError, match="pixel limit"):
        from viewfinder.io import decode_image

        decode_image(bomb_png())


def test_one_pixel_image_is_classified(model, bad_files):
    result = list(model.predict(str(bad_files["one_pixel.png"])))[0]
    assert result.ok and len(result["class_ids"]) == 5


def test_folder_with_bad_files_keeps_going(model, bad_files, photos, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, path in bad_files.items():
        (folder / name).write_bytes(path.read_bytes())
    (folder / "sub").mkdir()
    (folder / "sub" / "good.jpg").write_bytes((photos / "dog.jpg").read_bytes())
    results = list(model.predict(str(folder), batch_size=4))
    assert len(results) == 7
    ok = [Path(r["input_path"]).name for r in results if r.ok]
    assert sorted(ok) == ["good.jpg", "one_pixel.png"]
    assert [r["input_path"] for r in results] == sorted(r["input_path"] for r in results)


def test_missing_path_and_empty_folder(model, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(model.predict(str(tmp_path / "missing.jpg")))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        list(model.predict(str(tmp_path / "empty")))
    # inside a list a missing path is a per-item error and the rest still runs
    results = list(model.predict([str(tmp_path / "missing.jpg"), np.zeros((8, 8, 3), np.uint8)]))
    assert [r.ok for r in results] == [False, True]


def test_bad_arrays_are_per_item_errors(model):
    results = list(model.predict([np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 5), np.uint8),
                                  np.zeros((8, 8, 3), np.uint8)]))
    assert "uint8" in results[0]["error"] and "shape" in results[1]["error"]
    assert results[2].ok
    with pytest.raises(InputError, match="unsupported input"):
        list(model.predict(12345))


def test_unknown_model_device_and_yaml(tmp_path):
    with pytest.raises(ModelNotFoundError, match="PP-LCNet_x1_0"):
        create_model("PP-LCNet_x1_O")
    with pytest.raises(DeviceError, match="tpu"):
        create_model("PP-LCNet_x0_25", pretrained=False, device="tpu:0")
    with pytest.raises(DeviceError, match="CUDA|GPU"):
        create_model("PP-LCNet_x0_25", pretrained=False, device="gpu:7")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline_name: image_classification\nSubModules: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        create_pipeline(str(bad))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("pipeline_name: image_classification\nSubModules: {}\n")
    with pytest.raises(ConfigError, match="SubModules.ImageClassification"):
        create_pipeline(str(wrong))
    with pytest.raises(ViewfinderError, match="topk"):
        list(create_model("PP-LCNet_x0_25", pretrained=False).predict(np.zeros((4, 4, 3), np.uint8), topk=0))


def _cli(args):
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", ["missing", "empty_dir", "unknown_model", "unknown_device", "bad_yaml",
                                  "unknown_pipeline"])
def test_cli_errors_are_one_line(case, tmp_path):
    base = ["--pipeline", "image_classification", "--random_init"]
    if case == "missing":
        args = base + ["--input", str(tmp_path / "nope.jpg")]
    elif case == "empty_dir":
        (tmp_path / "d").mkdir()
        args = base + ["--input", str(tmp_path / "d")]
    elif case == "unknown_model":
        config = tmp_path / "c.yaml"
        config.write_text("pipeline_name: image_classification\nSubModules:\n  ImageClassification:\n"
                          "    model_name: NoSuchNet\n")
        args = ["--pipeline", str(config), "--input", "x.jpg"]
    elif case == "unknown_device":
        args = base + ["--input", "x.jpg", "--device", "quantum"]
    elif case == "bad_yaml":
        config = tmp_path / "c.yaml"
        config.write_text("pipeline_name: [\n")
        args = ["--pipeline", str(config), "--input", "x.jpg"]
    else:
        args = ["--pipeline", "no_such_pipeline", "--input", "x.jpg"]
    code, stdout, stderr = _cli(args)
    assert code != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("viewfinder: error:"), stderr
    assert "Traceback" not in stderr + stdout


def test_cli_per_item_errors_keep_going(bad_files, photos, tmp_path):
    code, stdout, stderr = _cli(["--pipeline", "image_classification", "--random_init",
                                 "--input", str(bad_files["corrupt.jpg"]), "--input", str(photos / "coffee.png"),
                                 "--save_path", str(tmp_path)])
    assert code == 1  # some inputs failed
    assert "corrupt.jpg" in stderr and "Traceback" not in stderr
    assert (tmp_path / "coffee_res.json").is_file()
