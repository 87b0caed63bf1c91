"""Threshold semantics (PaddleX MultiLabelThreshOutput, ints accepted) and their validation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from viewfinder.errors import ConfigError, ViewfinderError
from viewfinder.models.multilabel import MultiLabelPredictor, parse_threshold, threshold_from_text
from viewfinder.models.preprocess import PreprocessConfig, Preprocessor
from viewfinder.models.registry import ModelSpec
from viewfinder.results import MLClassResult

# sigmoid(logit) for these logits: 0.9, 0.5 (exactly), 0.2, 0.7, 0.5 (exactly)
SCORES = [0.9, 0.5, 0.2, 0.7, 0.5]
LOGITS = np.array([[math.log(s / (1 - s)) for s in SCORES]], dtype=np.float32)
LABELS = ["cat", "dog", "car", "bike", "tree"]


class FixedEngine:
    """Returns the same logits for every image: the predictor's postprocessing alone is under test."""

    name = "fixed"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.repeat(LOGITS, len(batch), axis=0)


@pytest.fixture(scope="module")
def predictor() -> MultiLabelPredictor:
    config = PreprocessConfig(resize_short=None, crop=None, resize=(8, 8))
    spec = ModelSpec(name="Fixed_ML", task="image_multilabel_classification", builder=lambda **_: None,
                     preprocess=config, num_classes=5, defaults={"threshold": 0.5})
    return MultiLabelPredictor(spec, FixedEngine(), Preprocessor(config), LABELS)


IMAGE = np.zeros((8, 8, 3), dtype=np.uint8)


def tags(predictor, **params) -> MLClassResult:
    (result,) = list(predictor.predict(IMAGE, **params))
    assert isinstance(result, MLClassResult)
    return result


def test_default_threshold_is_strict(predictor):
    result = tags(predictor)  # 0.5 from the spec defaults; the two scores of exactly 0.5 are out
    assert result["class_ids"].tolist() == [0, 3]
    assert result["label_names"] == ["cat", "bike"]
    assert result["scores"].tolist() == pytest.approx([0.9, 0.7], abs=1e-5)
    assert result["class_ids"].dtype == np.int32 and result["scores"].dtype == np.float32


def test_float_threshold_sorted_by_score(predictor):
    result = tags(predictor, threshold=0.1)
    assert result["class_ids"].tolist() == [0, 3, 1, 4, 2]  # equal scores keep class order
    assert list(result["scores"]) == sorted(result["scores"], reverse=True)


def test_scores_rounded_to_five_decimals(predictor):
    result = tags(predictor, threshold=0.6)
    assert result.json["res"]["scores"] == [0.9, 0.7]


def test_int_thresholds_accepted_as_floats(predictor):
    assert tags(predictor, threshold=0)["class_ids"].tolist() == [0, 3, 1, 4, 2]
    empty = tags(predictor, threshold=1)
    assert empty["class_ids"].tolist() == [] and empty["scores"].tolist() == [] and empty["label_names"] == []


def test_empty_result_serialises_and_draws(predictor, tmp_path):
    empty = tags(predictor, threshold=0.95)
    assert empty.json["res"]["class_ids"] == [] and empty.json["res"]["label_names"] == []
    assert empty.save_to_json(tmp_path).read_text().count("[]") == 3
    assert empty.save_to_img(tmp_path / "empty.png").is_file()


def test_dict_threshold_per_class_override(predictor):
    # default 0.8 keeps only "cat"; class 3 lowered to 0.6 adds "bike"; class 0 raised to 0.95 drops "cat"
    assert tags(predictor, threshold={"default": 0.8})["label_names"] == ["cat"]
    assert tags(predictor, threshold={"default": 0.8, 3: 0.6})["label_names"] == ["cat", "bike"]
    assert tags(predictor, threshold={"default": 0.8, "3": 0.6, "0": 0.95})["label_names"] == ["bike"]
    assert tags(predictor, threshold={"default": 0.8, 1: 0.5})["label_names"] == ["cat"]  # strict at 0.5


def test_list_threshold_one_per_class(predictor):
    result = tags(predictor, threshold=[0.95, 0.4, 0.1, 0.75, 0.49])
    assert result["label_names"] == ["dog", "tree", "car"]


def test_threshold_set_at_creation_is_the_default(predictor):
    custom = MultiLabelPredictor(predictor.spec, predictor.engine, predictor.preprocess, LABELS, threshold=0.8)
    assert tags(custom)["label_names"] == ["cat"]
    assert tags(custom, threshold=0.1)["class_ids"].tolist() == [0, 3, 1, 4, 2]


@pytest.mark.parametrize("bad, message", [
    (-0.1, "between 0 and 1"),
    (1.5, "between 0 and 1"),
    (float("nan"), "between 0 and 1"),
    (True, "must be a number"),
    ("0.5", "must be a number"),
    ([0.5, 0.5], "one value per class: 5 values, got 2"),
    ([0.5, 0.5, 0.5, 0.5, "x"], "threshold [4] must be a number"),
    ([0.5, 0.5, 0.5, 0.5, 2], "threshold [4] must be between 0 and 1"),
    ({3: 0.7}, "needs a 'default' entry"),
    ({"default": 0.5, "cat": 0.7}, "class ids"),
    ({"default": 0.5, 5: 0.7}, "not a class id of this model (0..4)"),
    ({"default": 0.5, -1: 0.7}, "not a class id"),
    ({"default": 0.5, 2: -0.7}, "for class 2 must be between 0 and 1"),
    ({"default": 1.2}, "'default' must be between 0 and 1"),
])
def test_bad_thresholds_are_clear_errors(predictor, bad, message):
    with pytest.raises(ConfigError) as caught:
        list(predictor.predict(IMAGE, threshold=bad))
    assert message in str(caught.value)
    assert isinstance(caught.value, ViewfinderError)


def test_parse_threshold_forms():
    np.testing.assert_array_equal(parse_threshold(0.25, 3), np.float32([0.25, 0.25, 0.25]))
    np.testing.assert_array_equal(parse_threshold({"default": 0.5, "2": 0.9}, 3), np.float32([0.5, 0.5, 0.9]))
    np.testing.assert_array_equal(parse_threshold((0.1, 0.2, 0.3), 3), np.float32([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(parse_threshold(np.float64(0.3), 2), np.float32([0.3, 0.3]))


def test_threshold_from_command_line_text():
    assert threshold_from_text("0.5") == 0.5
    assert threshold_from_text('{"default": 0.5, "3": 0.7}') == {"default": 0.5, "3": 0.7}
    assert threshold_from_text("[0.1, 0.2]") == [0.1, 0.2]
    with pytest.raises(ConfigError, match="number or JSON"):
        threshold_from_text("high")
    with pytest.raises(ConfigError, match="JSON object or a JSON list"):
        threshold_from_text('"0.5"')
