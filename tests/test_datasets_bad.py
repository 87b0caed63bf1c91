"""Malformed datasets: one DatasetError naming the file, line and problem; CLI: one line, no traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from test_datasets import make_cls, make_ml, make_rec, write
from viewfinder.cli import cli
from viewfinder.datasets import DatasetError, check_dataset, convert_dataset, load_dataset, split_dataset
from viewfinder.errors import ViewfinderError


@pytest.fixture()
def cls_root(tmp_path, photos) -> Path:
    return make_cls(tmp_path / "cls", photos)


@pytest.mark.parametrize("line, message", [
    ("images/chelsea.png 0 extra", r"train.txt is malformed: line 2: expected '<image path> <integer label>'"),
    ("images/chelsea.png\t0", "expected '<image path> <integer label>' separated by one space"),
    ("images/chelsea.png cat", "line 2: label 'cat' is not an integer"),
    ("images/chelsea.png 2", r"line 2: label 2 is out of range: label.txt defines ids 0..1"),
    ("images/chelsea.png -1", "label -1 is out of range"),
])
def test_malformed_cls_lines(cls_root, line, message):
    lines = (cls_root / "train.txt").read_text().splitlines()
    write(cls_root / "train.txt", [lines[0], line] + lines[1:])
    with pytest.raises(DatasetError, match=message):
        load_dataset(cls_root, "ClsDataset")


def test_all_problems_counted_in_one_message(cls_root):
    write(cls_root / "val.txt", [f"images/x{i}.png 0 0" for i in range(8)])
    with pytest.raises(DatasetError, match=r"val.txt is malformed: line 1: .*line 5: .*\(and 3 more\)"):
        load_dataset(cls_root, "ClsDataset")


def test_missing_images_are_listed(cls_root):
    (cls_root / "images" / "dog.png").unlink()
    (cls_root / "images" / "kite.png").unlink()
    with pytest.raises(DatasetError, match=r"train.txt: 2 image\(s\) not found .*line 2: images/dog.png; "
                                           r"line 6: images/kite.png"):
        load_dataset(cls_root, "ClsDataset")


@pytest.mark.parametrize("labels, message", [
    ("1 animal\n2 object\n", "class ids must start at 0, the smallest is 1"),
    ("0 animal\n0 object\n", "line 2: class id 0 appears twice"),
    ("zero animal\n", "line 1: 'zero animal' does not start with an integer class id"),
    ("0\n", "line 1: class id 0 has no name"),
    ("\n\n", "no classes"),
])
def test_bad_label_file(cls_root, labels, message):
    (cls_root / "label.txt").write_text(labels, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_dataset(cls_root, "ClsDataset")


def test_label_file_and_lists_required(cls_root):
    (cls_root / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"val.txt missing \(ClsDataset needs train.txt, val.txt\)"):
        load_dataset(cls_root, "ClsDataset")
    (cls_root / "label.txt").unlink()
    with pytest.raises(DatasetError, match="label.txt: label file missing"):
        load_dataset(cls_root, "ClsDataset")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(cls_root / "nope", "ClsDataset")


def test_empty_split(cls_root):
    write(cls_root / "train.txt", [])
    with pytest.raises(DatasetError, match="train.txt: no samples; the train split must not be empty"):
        load_dataset(cls_root, "ClsDataset")


@pytest.mark.parametrize("vector, message", [
    ("1,0", "label vector has 2 entries, label.txt has 3 classes"),
    ("1,2,0", "holds values other than 0 and 1"),
    ("1;0;0", "is not comma-separated integers"),
])
def test_malformed_multilabel_lines(tmp_path, photos, vector, message):
    root = make_ml(tmp_path / "ml", photos)
    write(root / "val.txt", [f"images/chelsea.png\t{vector}"])
    with pytest.raises(DatasetError, match=message):
        load_dataset(root, "MLClsDataset")
    write(root / "val.txt", ["images/chelsea.png 1,0,0"])  # a space instead of the tab
    with pytest.raises(DatasetError, match="expected '<image path><TAB>"):
        load_dataset(root, "MLClsDataset")


def test_shitu_images_folder_must_be_unique(tmp_path, photos):
    root = make_rec(tmp_path / "rec", photos)
    (root / "other" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="2 'images' folders found"):
        load_dataset(root, "ShiTuRecDataset")
    with pytest.raises(DatasetError, match="no 'images' folder found"):
        load_dataset(tmp_path / "rec" / "other" / "images", "ShiTuRecDataset")


def test_shitu_labels_must_be_integers(tmp_path, photos):
    root = make_rec(tmp_path / "rec", photos) / "shitu"
    write(root / "query.txt", ["images/chelsea_q.png Pulse"])
    with pytest.raises(DatasetError, match="query.txt is malformed: line 1: label 'Pulse' is not an integer"):
        load_dataset(root, "ShiTuRecDataset")


def test_unknown_type_suggests(cls_root):
    with pytest.raises(DatasetError, match="unknown dataset type 'ClsDatset'.*did you mean ClsDataset"):
        load_dataset(cls_root, "ClsDatset")
    assert load_dataset(cls_root, "clsdataset").dataset_type == "ClsDataset"


@pytest.mark.parametrize("percents, message", [
    ({"train": 70, "val": 20}, r"must sum to 100, got train 70 \+ val 20 = 90"),
    ({"train": 100, "val": 0}, "val_percent must be > 0"),
    ({"train": 80}, r"needs a percentage for each of train, val \(missing: val\)"),
    ({"train": 79.5, "val": 20.5}, "train_percent must be an integer"),
    ({"train": 50, "val": 30, "query": 20}, "unknown: query"),
])
def test_bad_percentages(cls_root, percents, message):
    before = (cls_root / "train.txt").read_text()
    with pytest.raises(DatasetError, match=message):
        split_dataset(cls_root, "ClsDataset", percents)
    assert (cls_root / "train.txt").read_text() == before and not (cls_root / "train.txt.bak").exists()


def test_split_refuses_to_leave_a_split_empty(cls_root):
    with pytest.raises(DatasetError, match=r"splitting 12 samples by .* leaves val empty"):
        split_dataset(cls_root, "ClsDataset", {"train": 99, "val": 1})
    assert not (cls_root / "train.txt.bak").exists()


def test_corrupt_images_are_reported_not_fatal(cls_root):
    (cls_root / "images" / "dog.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # broken PNG
    (cls_root / "images" / "kite.png").write_bytes(b"not an image at all")
    result = check_dataset(cls_root, "ClsDataset", cls_root / "out")
    attributes = result["attributes"]
    assert result["check_pass"] is True
    assert attributes["unreadable_images_count"] == 4  # both files are in train.txt and val.txt
    assert attributes["unreadable_images"] == ["train: images/dog.png", "train: images/kite.png",
                                               "val: images/dog.png", "val: images/kite.png"]
    assert len(attributes["train_sample_paths"]) == 6  # demo images only from readable files
    assert len(attributes["val_sample_paths"]) == 2


def test_bad_conversion_sources(tmp_path, photos):
    root = tmp_path / "src"
    root.mkdir()
    with pytest.raises(DatasetError, match="no conversion from VOC to ClsDataset"):
        convert_dataset(root, "ClsDataset", "VOC")
    with pytest.raises(DatasetError, match="flags.txt: missing"):
        convert_dataset(root, "ClsDataset", "LabelMe")
    (root / "flags.txt").write_text("cat\ndog\n")
    (root / "annotations").mkdir()
    (root / "annotations" / "a.json").write_text(json.dumps({"flags": {"cat": True, "dog": True}, "imagePath": "a.png"}))
    (root / "annotations" / "b.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"b.json: invalid JSON"):
        convert_dataset(root, "ClsDataset", "LabelMe")
    (root / "annotations" / "b.json").write_text(json.dumps({"flags": {"bird": True}, "imagePath": "b.png"}))
    with pytest.raises(DatasetError, match=r"a.json: exactly one flag must be true, found 2; b.json: flags \['bird'\]"):
        convert_dataset(root, "ClsDataset", "LabelMe")
    with pytest.raises(DatasetError, match="instance_train.json missing"):
        convert_dataset(root, "MLClsDataset", "COCO")
    (root / "annotations" / "instance_train.json").write_text(json.dumps({"categories": [{"name": "x"}]}))
    (root / "annotations" / "instance_val.json").write_text(json.dumps({"categories": []}))
    with pytest.raises(DatasetError, match="malformed COCO annotations"):
        convert_dataset(root, "MLClsDataset", "COCO")


@pytest.mark.parametrize("args, message", [
    (["dataset", "check", "{root}", "--type", "ClsDataset", "--output", "{out}"],
     "viewfinder: error: train.txt is malformed: line 1: label 'x' is not an integer"),
    (["dataset", "split", "{root}", "--type", "ClsDataset", "--train_percent", "60", "--val_percent", "30"],
     "viewfinder: error: split percentages must sum to 100"),
    (["dataset", "check", "{root}", "--type", "VOC", "--output", "{out}"],
     "viewfinder: error: unknown dataset type 'VOC'"),
])
def test_cli_errors_are_one_line(cls_root, tmp_path, args, message):
    write(cls_root / "train.txt", ["images/chelsea.png x"])
    argv = [a.format(root=cls_root, out=tmp_path / "out") for a in args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert result.output.startswith(message)
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert isinstance(DatasetError("x"), ViewfinderError)
