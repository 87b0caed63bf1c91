"""Result objects: PaddleX field names, rounding, file naming, drawing with a CJK font."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from viewfinder import create_model
from viewfinder.errors import ConfigError
from viewfinder.results import TopkResult
from viewfinder.visualize import draw_label_lines, font


@pytest.fixture(scope="module")
def result(photos):
    model = create_model("PP-LCNet_x0_25", pretrained=False, device="cpu")
    return list(model.predict(str(photos / "coffee.png"), topk=5))[0]


def test_fields_and_json(result, capsys):
    inner = result.json["res"]
    assert list(inner) == ["input_path", "page_index", "class_ids", "scores", "label_names"]
    assert inner["page_index"] is None
    assert all(isinstance(i, int) for i in inner["class_ids"])
    assert all(round(s, 5) == s for s in inner["scores"])
    assert inner["scores"] == sorted(inner["scores"], reverse=True)
    assert "input_img" not in inner and "input_img" in result
    result.print(json_format=True)
    assert json.loads(capsys.readouterr().out)["res"]["class_ids"] == inner["class_ids"]
    result.print(json_format=False)
    printed = capsys.readouterr().out
    assert printed.startswith("{'res': {'input_path'") and "array(" in printed and "input_img" not in printed


def test_print_takes_paddlex_format_json_and_prints_json_by_default(result, capsys):
    result.print()  # PaddleX: format_json=True, indent=4, ensure_ascii=False
    out = capsys.readouterr().out
    assert json.loads(out) == result.json and out.startswith('{\n    "res": {\n        "input_path"')
    result.print(format_json=True, indent=2, ensure_ascii=True)
    assert capsys.readouterr().out.startswith('{\n  "res": {\n    "input_path"')
    result.print(format_json=False)
    assert capsys.readouterr().out.startswith("{'res': {'input_path'")
    result.print(False, json_format=False)  # the two spellings agree: fine
    assert capsys.readouterr().out.startswith("{'res'")
    with pytest.raises(ConfigError, match="disagree"):
        result.print(format_json=True, json_format=False)


def test_json_knobs_reach_the_output(tmp_path):
    result = TopkResult({"input_path": "狗.jpg", "page_index": None, "class_ids": np.array([1], np.int32),
                         "scores": np.array([0.5], np.float32), "label_names": ["柴犬"]})
    unicode_path = result.save_to_json(tmp_path, indent=4, ensure_ascii=False)
    assert unicode_path.name == "狗_res.json" and '"柴犬"' in unicode_path.read_text(encoding="utf-8")
    ascii_path = result.save_to_json(tmp_path / "a.json", indent=2, ensure_ascii=True)
    text = ascii_path.read_text()
    assert "\\u67f4\\u72ac" in text and text.startswith('{\n  "input_path"')


def test_save_names(result, tmp_path):
    json_path = result.save_to_json(tmp_path)
    img_path = result.save_to_img(tmp_path)
    assert json_path.name == "coffee_res.json" and img_path.name == "coffee_res.png"
    assert "res" not in json.loads(json_path.read_text())  # the inner dict only
    drawn = Image.open(img_path)
    assert drawn.size == Image.open(result["input_path"]).size
    explicit = result.save_to_json(tmp_path / "named.json")
    assert explicit.name == "named.json"


def test_array_input_gets_a_generated_stem(tmp_path):
    model = create_model("PP-LCNet_x0_25", pretrained=False, device="cpu")
    result = list(model.predict(np.full((40, 60, 3), 200, np.uint8)))[0]
    assert result["input_path"] is None
    path = result.save_to_json(tmp_path)
    assert re.fullmatch(r"\d+_\d{4}_res\.json", path.name)
    assert result.save_to_img(tmp_path).suffix == ".png"


def _ink(text: str) -> np.ndarray:
    canvas = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(canvas).text((4, 4), text, font=font(48), fill=255)
    return np.asarray(canvas) > 0


def test_cjk_labels_render_as_glyphs():
    hong, niu = _ink("红"), _ink("牛")
    missing = _ink("\U000e0100")  # a code point the font has no glyph for -> its fallback box
    assert hong.sum() > 50 and niu.sum() > 50
    assert (hong != niu).sum() > 50, "two different CJK characters drew the same shape (tofu boxes)"
    assert (hong != missing).sum() > 50


def test_chinese_label_on_result_image(tmp_path):
    image = np.full((120, 200, 3), 255, np.uint8)
    result = TopkResult({"input_path": None, "page_index": None, "input_img": image,
                         "class_ids": np.array([0], np.int32), "scores": np.array([0.9], np.float32),
                         "label_names": ["红牛-强化型"]})
    drawn = np.asarray(result.img["res"])
    assert drawn.shape == image.shape and (drawn != 255).any()
    assert draw_label_lines(image, []).size == (200, 120)


def test_input_img_of_bytes_input_is_the_decoded_image(photos):
    # Bytes have no path to read again: the pixels come from the Pillow image the decode
    # pool kept (the CPU path resizes from it without making an array).
    model = create_model("PP-LCNet_x0_25", pretrained=False, device="cpu")
    data = (photos / "dog.jpg").read_bytes()
    res = next(model.predict(data))
    expected = np.asarray(Image.open(photos / "dog.jpg").convert("RGB"))
    assert np.array_equal(res["input_img"], expected)
    from_path = next(model.predict(str(photos / "dog.jpg")))
    assert np.array_equal(from_path["input_img"], expected)
    assert res.img["res"].size == (expected.shape[1], expected.shape[0])


def test_feature_result_save_to_img_draws_norm_and_dimension(photos, tmp_path):
    """PP-ShiTuV2_rec results (PaddleX IdentityResult) draw the input with the feature's size and norm."""
    model = create_model("PP-ShiTuV2_rec", pretrained=False, device="cpu")
    result = next(model.predict(str(photos / "coffee.png")))
    path = result.save_to_img(tmp_path)
    assert path.name == "coffee_res.png"
    drawn, original = Image.open(path).convert("RGB"), Image.open(photos / "coffee.png").convert("RGB")
    assert drawn.size == original.size
    assert (np.asarray(drawn) != np.asarray(original)).any()  # the text is on it
    assert result.img["res"].size == original.size
    explicit = result.save_to_img(tmp_path / "named.jpg")
    assert explicit.name == "named.jpg" and Image.open(explicit).size == original.size
    array_result = next(model.predict(np.asarray(original)))  # no file: the kept pixels are drawn on
    assert array_result.save_to_img(tmp_path).suffix == ".png"
