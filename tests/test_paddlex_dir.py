"""PaddleX inference folders as model_dir: same results as PaddleX's own predict on the same folder.

Fixtures: tests/fixtures/paddlex_infer (tests/paddlex_fixtures.py). Scores are compared as
whole vectors (every class), since random weights leave the top classes near a tie.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from paddlex_fixtures import FIXTURES, PHOTO, paddlex_folder, record
from viewfinder import create_model
from viewfinder.errors import ConfigError, ModelNotFoundError, WeightsError
from viewfinder.io.paddle_params import read_tensor_stream
from viewfinder.models.paddle_program import read_program

CLASSIFIERS = ["PP-LCNet_x0_25", "PP-HGNetV2-B0", "PP-LCNet_x1_0_ML", "MobileNetV3_small_x0_35"]
SCORE_TOLERANCE = 1e-4  # PaddleX and we both round scores to 5 decimals
# the network alone, relative to the output's scale: float32's own rounding error is ~2e-6
# for the classifiers and 8e-5 for the deep recogniser (float32 vs float64, ../shared/parity)
RAW_TOLERANCE = {"PP-ShiTuV2_rec": 2e-4}


@pytest.fixture(scope="module")
def folders(tmp_path_factory, shared_dir):
    work = tmp_path_factory.mktemp("paddlex_infer")
    return lambda name: paddlex_folder(name, work, shared_dir)


def _model(folder, **kwargs):
    return create_model(model_dir=folder, device="cpu", engine="torch", **kwargs)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_scores_equal_paddlex(folders, photos, name):
    expected = record(name)["paddlex"]
    model = _model(folders(name))
    count = len(expected["scores"])
    assert model.num_classes == count
    params = {"threshold": 0.0} if name.endswith("_ML") else {"topk": count}
    result = next(iter(model.predict(str(photos / PHOTO), **params)))
    scores = np.zeros(count)
    scores[np.asarray(result["class_ids"])] = result["scores"]
    assert np.abs(scores - expected["scores"]).max() <= SCORE_TOLERANCE
    assert result["label_names"][0] == f"class_{result['class_ids'][0]}"  # labels from inference.yml


@pytest.mark.parametrize("name", [*CLASSIFIERS, "PP-ShiTuV2_rec"])
def test_network_output_equals_the_paddle_program(folders, name):
    """The program's own output (Paddle Inference) for a seeded input: the network alone, at full precision."""
    raw = record(name)["raw"]
    x = np.random.RandomState(raw["seed"]).standard_normal(raw["shape"]).astype(np.float32)
    out = np.asarray(_model(folders(name)).raw(x), dtype=np.float64)
    if name.endswith("_ML"):
        out = 1 / (1 + np.exp(-out))
    elif name != "PP-ShiTuV2_rec":
        out = _softmax(out)
    reference = np.asarray(raw["output"]).reshape(out.shape)
    assert np.abs(out - reference).max() <= RAW_TOLERANCE.get(name, 1e-5) * np.abs(reference).max()


def test_recognition_feature_equals_paddlex(folders, photos):
    expected = np.asarray(record("PP-ShiTuV2_rec")["paddlex"]["feature"])
    model = _model(folders("PP-ShiTuV2_rec"))
    feature = next(iter(model.predict(str(photos / PHOTO))))["feature"]
    assert feature.shape == expected.shape == (512,)
    assert np.abs(feature - expected).max() <= SCORE_TOLERANCE


def test_detector_boxes_equal_paddlex(folders, photos):
    expected = record("PP-ShiTuV2_det")["paddlex"]["boxes"]
    model = _model(folders("PP-ShiTuV2_det"))
    assert (model.params["score_threshold"], model.params["nms_threshold"]) == (0.025, 0.6)  # from the program
    boxes = next(iter(model.predict(str(photos / PHOTO), threshold=0.0)))["boxes"]
    assert len(boxes) == len(expected) > 10
    ours = np.array([[b["score"], *b["coordinate"]] for b in boxes])
    theirs = np.array([[b["score"], *b["coordinate"]] for b in expected])
    assert np.abs(ours[:, 0] - theirs[:, 0]).max() <= SCORE_TOLERANCE
    assert np.abs(ours[:, 1:] - theirs[:, 1:]).max() <= 1.0
    assert {b["label"] for b in boxes} == {"foreground"}


def test_legacy_pdmodel_program_names_shapes_and_order():
    """A ProgramDesc written by Paddle's old IR: names and shapes from the protobuf, values in sorted-name order."""
    folder = FIXTURES / "legacy_program"
    paddle_values = json.loads((folder / "paddle.json").read_text())["parameters"]
    program = read_program(folder)
    assert program.path.name == "inference.pdmodel" and "conv2d" in program.op_types
    assert [p.name for p in program.params] == sorted(paddle_values)
    for param, tensor in zip(program.params, read_tensor_stream(folder / "inference.pdiparams")):
        assert tensor.shape == param.shape and param.dtype == "float32"
        np.testing.assert_array_equal(tensor, np.asarray(paddle_values[param.name], dtype=np.float32))


def test_model_name_and_settings_come_from_the_folder(folders):
    folder = folders("PP-LCNet_x0_25")
    model = create_model("PP-LCNet_x1_0", model_dir=folder, device="cpu", engine="torch")
    assert model.model_name == "PP-LCNet_x0_25"  # as PaddleX: the folder's inference.yml decides
    assert model.params["topk"] == 5 and model.labels[:2] == ["class_0", "class_1"]
    config = model.preprocess.config
    assert (config.resize_short, config.crop, config.backend) == (256, 224, "cv2")
    assert _model(folders("PP-LCNet_x1_0_ML")).params["threshold"] == 0.5


def _copy(folder, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


def _set_model_name(folder, name):
    text = (folder / "inference.yml").read_text()
    old = text.split("model_name:", 1)[1].split("\n", 1)[0]
    (folder / "inference.yml").write_text(text.replace(f"model_name:{old}", f"model_name: {name}", 1))


def test_training_run_folder_loads_best_model_pdparams(folders, shared_dir, tmp_path, photos):
    """PaddleX's output/best_model/: the dygraph checkpoint beside inference/ wins over the exported weights."""
    best = tmp_path / "output" / "best_model"
    inference = _copy(folders("PP-LCNet_x0_25"), best, "inference")
    (inference / "inference.pdiparams").write_bytes(b"\x00" * 10)  # would be refused if it were read
    shutil.copyfile(shared_dir / "parity" / "PP-LCNet_x0_25" / "model.pdparams", best / "best_model.pdparams")
    for model_dir in (best, inference):
        result = next(iter(_model(model_dir).predict(str(photos / PHOTO), topk=1000)))
        scores = np.zeros(1000)
        scores[np.asarray(result["class_ids"])] = result["scores"]
        assert np.abs(scores - record("PP-LCNet_x0_25")["paddlex"]["scores"]).max() <= SCORE_TOLERANCE


def test_shape_mismatch_names_the_first_tensor(folders, tmp_path):
    folder = _copy(folders("PP-LCNet_x0_25"), tmp_path)
    _set_model_name(folder, "PP-LCNet_x1_0")  # same layers, other widths
    with pytest.raises(WeightsError, match=r"tensor (conv2d|batch_norm2d)_\d+\.\w+ \(.+\) has shape \[\d+.*expects"):
        _model(folder)


def test_other_architecture_is_refused_with_the_first_unmatched_tensor(folders, tmp_path):
    folder = _copy(folders("PP-LCNet_x0_25"), tmp_path)
    _set_model_name(folder, "PP-HGNetV2-B0")
    with pytest.raises(WeightsError, match=r"146 parameters do not match PP-HGNetV2-B0's export \(275 .*first"):
        _model(folder)


def test_unsupported_and_unknown_models_are_refused(folders, tmp_path):
    folder = _copy(folders("PP-LCNet_x0_25"), tmp_path)
    _set_model_name(folder, "PP-LCNetV2_small")  # PaddleX exports it re-parameterised
    with pytest.raises(WeightsError, match="not supported: PaddleX exports it re-parameterised.*best_model.pdparams"):
        _model(folder)
    _set_model_name(folder, "NoSuchNet")
    with pytest.raises(ModelNotFoundError):
        _model(folder)
    text = (folder / "inference.yml").read_text()
    (folder / "inference.yml").write_text(text.replace("Global:\n  model_name: NoSuchNet\n", ""))
    with pytest.raises(ConfigError, match="no Global.model_name; pass the model's name"):
        _model(folder)
    assert create_model("PP-LCNet_x0_25", model_dir=folder, device="cpu", engine="torch").num_classes == 1000


def test_damaged_or_missing_parameter_files_are_refused(folders, tmp_path):
    folder = _copy(folders("PP-LCNet_x0_25"), tmp_path)
    data = (folder / "inference.pdiparams").read_bytes()
    (folder / "inference.pdiparams").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a Paddle parameter file"):
        _model(folder)
    (folder / "inference.pdiparams").unlink()
    with pytest.raises(WeightsError, match="no inference.pdiparams"):
        _model(folder)
    (folder / "inference.yml").unlink()
    shutil.copyfile(FIXTURES / "legacy_program" / "inference.pdiparams", folder / "inference.pdiparams")
    with pytest.raises(ConfigError, match="no inference.yml"):
        _model(folder)


def test_unsupported_preprocessing_is_refused(folders, tmp_path):
    folder = _copy(folders("PP-LCNet_x0_25"), tmp_path)
    text = (folder / "inference.yml").read_text().replace("- ToCHWImage: null", "- RandomFlip: null")
    (folder / "inference.yml").write_text(text)
    with pytest.raises(ConfigError, match="preprocessing op 'RandomFlip' is not supported"):
        _model(folder)


def test_reparameterized_recognizer_round_trips_through_our_model_dir(folders, tmp_path, photos):
    from viewfinder.models.model_dir import write_model_dir

    model = _model(folders("PP-ShiTuV2_rec"))
    saved = write_model_dir(model, tmp_path / "ours")
    again = create_model(model_dir=saved, device="cpu", engine="torch")
    first = next(iter(model.predict(str(photos / PHOTO))))["feature"]
    second = next(iter(again.predict(str(photos / PHOTO))))["feature"]
    np.testing.assert_allclose(first, second, atol=1e-6)


# ------------------------------------------------------------------ the same folders through pipelines, CLI, service
def _pipeline_yaml(tmp_path, folder):
    path = tmp_path / "classify.yaml"
    path.write_text(
        "pipeline_name: image_classification\n"
        "SubModules:\n"
        "  ImageClassification:\n"
        "    module_name: image_classification\n"
        "    model_name: PP-LCNet_x0_25\n"
        f"    model_dir: {folder}\n"
        "    batch_size: 1\n"
        "    topk: 3\n"
    )
    return path


def _check_categories(ids, scores, name="PP-LCNet_x0_25"):
    expected = np.asarray(record(name)["paddlex"]["scores"])
    assert len(ids) == 3 and np.abs(np.asarray(scores) - expected[np.asarray(ids)]).max() <= SCORE_TOLERANCE
    assert max(scores) >= np.sort(expected)[-1] - SCORE_TOLERANCE  # the best class is PaddleX's best


def test_pipeline_yaml_model_dir_and_cli(folders, photos, tmp_path):
    from click.testing import CliRunner

    from viewfinder import create_pipeline
    from viewfinder.cli import cli

    path = _pipeline_yaml(tmp_path, folders("PP-LCNet_x0_25"))
    result = next(iter(create_pipeline(str(path), device="cpu").predict(str(photos / PHOTO))))
    _check_categories(result["class_ids"], result["scores"])
    assert all(name.startswith("class_") for name in result["label_names"])  # the folder's label_list
    out = tmp_path / "out"
    run = CliRunner().invoke(cli, ["--pipeline", str(path), "--input", str(photos / PHOTO), "--device", "cpu",
                                   "--save_path", str(out)])
    assert run.exit_code == 0, run.output
    saved = json.loads(next(out.glob("*.json")).read_text())
    saved = saved.get("res", saved)
    _check_categories(saved["class_ids"], saved["scores"])


def test_service_serves_a_paddlex_folder(folders, photos, tmp_path):
    import base64

    from fastapi.testclient import TestClient

    from viewfinder import create_pipeline
    from viewfinder.serving import ServingConfig, create_app

    pipeline = create_pipeline(str(_pipeline_yaml(tmp_path, folders("PP-LCNet_x0_25"))), device="cpu")
    image = base64.b64encode((photos / PHOTO).read_bytes()).decode()
    with TestClient(create_app(pipeline, ServingConfig(index_storage="memory"))) as client:
        body = client.post("/image-classification", json={"image": image, "visualize": False}).json()
    assert body["errorCode"] == 0, body
    categories = body["result"]["categories"]
    _check_categories([c["id"] for c in categories], [c["score"] for c in categories])


def test_shitu_pipeline_on_paddlex_folders(folders, photos):
    from viewfinder import create_pipeline

    pipeline = create_pipeline("PP-ShiTuV2", device="cpu", config={"SubModules": {
        "Detection": {"model_dir": str(folders("PP-ShiTuV2_det"))},
        "Recognition": {"model_dir": str(folders("PP-ShiTuV2_rec")), "batch_size": 4}}})
    assert (pipeline.detector.model_name, pipeline.recognizer.model_name) == ("PP-ShiTuV2_det", "PP-ShiTuV2_rec")
    images = [str(photos / name) for name in (PHOTO, "dog.jpg", "coffee.png")]
    index = pipeline.build_index(images, ["cat", "dog", "coffee"], show_progress=False)
    result = next(iter(pipeline.predict(str(photos / PHOTO), index=index, det_threshold=0.5, rec_threshold=0.0)))
    assert len(result["boxes"]) > 1  # the random-weight detector finds boxes; each is recognised
    assert all(box["labels"] and set(box["labels"]) <= {"cat", "dog", "coffee"} for box in result["boxes"])
