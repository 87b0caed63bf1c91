"""Dataset formats, check, convert and split on tiny datasets made from the real sample photos.

The builders at the top are shared with the training tests (``from test_datasets import ...``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from viewfinder.cli import cli
from viewfinder.datasets import (DatasetError, check_dataset, convert_dataset, load_dataset, split_dataset)

ANIMALS = ["chelsea.png", "dog.jpg", "horses.jpg", "eagle.jpg"]
OBJECTS = ["coffee.png", "kite.jpg", "rocket.jpg", "astronaut.png"]
LABELS = "0 animal\n1 object thing\n"


def thumbnail(photos: Path, name: str, target: Path, size: int = 48, flip: bool = False, shift: int = 0) -> None:
    """A small RGB PNG copy of a sample photo (optionally flipped / cropped) so tests decode fast."""
    image = Image.open(photos / name).convert("RGB")
    width, height = image.size
    if shift:
        margin = min(width, height) * shift // 10
        image = image.crop((margin, margin, width, height))
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image.thumbnail((size, size))
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def make_cls(root: Path, photos: Path) -> Path:
    """ClsDataset: 8 photos in 2 classes; val holds 2 of each class."""
    for name in ANIMALS + OBJECTS:
        thumbnail(photos, name, root / "images" / f"{Path(name).stem}.png")
    (root / "label.txt").write_text(LABELS, encoding="utf-8")
    lines = [f"images/{Path(n).stem}.png 0" for n in ANIMALS] + [f"images/{Path(n).stem}.png 1" for n in OBJECTS]
    write(root / "train.txt", lines)
    write(root / "val.txt", lines[:2] + lines[4:6])
    return root


def make_ml(root: Path, photos: Path) -> Path:
    """MLClsDataset: 3 classes (animal, object, sky), multi-hot vectors."""
    sky = {"eagle.jpg", "kite.jpg", "rocket.jpg"}
    lines = []
    for name in ANIMALS + OBJECTS:
        thumbnail(photos, name, root / "images" / f"{Path(name).stem}.png")
        vector = [int(name in ANIMALS), int(name in OBJECTS), int(name in sky)]
        lines.append(f"images/{Path(name).stem}.png\t{','.join(map(str, vector))}")
    (root / "label.txt").write_text("0 animal\n1 object\n2 sky\n", encoding="utf-8")
    write(root / "train.txt", lines)
    write(root / "val.txt", lines[::2])
    return root


def make_rec(root: Path, photos: Path) -> Path:
    """ShiTuRecDataset one level down (found by globbing **/images): each photo is an identity.

    Labels are the non-contiguous ids 10, 20, ... (ShiTuRec labels are any integers).
    train: 3 views per identity (plain, flipped, cropped); gallery: a cropped+flipped view;
    query: a harder crop.
    """
    data = root / "shitu"
    train, gallery, query = [], [], []
    for index, name in enumerate(ANIMALS + OBJECTS):
        label = 10 * (index + 1)
        stem = Path(name).stem
        views = {"a": {}, "b": {"flip": True}, "c": {"shift": 1}, "g": {"flip": True, "shift": 1}, "q": {"shift": 2}}
        for tag, options in views.items():
            thumbnail(photos, name, data / "images" / f"{stem}_{tag}.png", **options)
        train += [f"images/{stem}_{tag}.png {label}" for tag in "abc"]
        gallery.append(f"images/{stem}_g.png {label}")
        query.append(f"images/{stem}_q.png {label}")
    write(data / "train.txt", train)
    write(data / "gallery.txt", gallery)
    write(data / "query.txt", query)
    return root


# --------------------------------------------------------------------------- check


def test_check_cls_writes_paddlex_result(tmp_path, photos):
    root = make_cls(tmp_path / "cls", photos)
    out = tmp_path / "out"
    result = check_dataset(root, "ClsDataset", out)
    on_disk = json.loads((out / "check_dataset_result.json").read_text())
    assert on_disk == result
    assert set(result) == {"done_flag", "check_pass", "attributes", "analysis", "dataset_path", "show_type",
                           "dataset_type"}
    assert result["done_flag"] is True and result["check_pass"] is True
    assert result["dataset_type"] == "ClsDataset" and result["show_type"] == "image"
    assert result["dataset_path"] == str(root)
    attributes = result["attributes"]
    assert attributes["label_file"] == str(root / "label.txt")
    assert attributes["num_classes"] == 2
    assert (attributes["train_samples"], attributes["val_samples"]) == (8, 4)
    assert len(attributes["train_sample_paths"]) == 8 and len(attributes["val_sample_paths"]) == 4
    assert attributes["unreadable_images_count"] == 0
    for relative in attributes["train_sample_paths"] + attributes["val_sample_paths"]:
        assert relative.startswith("check_dataset/demo_img/")
        assert (out / relative).is_file()
    histogram = Image.open(out / result["analysis"]["histogram"])
    assert result["analysis"]["histogram"] == "check_dataset/histogram.png"
    assert histogram.format == "PNG" and histogram.width >= 400


def test_check_demo_images_have_labels_drawn_and_fixed_order(tmp_path, photos):
    root = make_cls(tmp_path / "cls", photos)
    first = check_dataset(root, "ClsDataset", tmp_path / "a")
    second = check_dataset(root, "ClsDataset", tmp_path / "b", sample_num=3)
    # random.seed(123) order: the same for every run; sample_num caps each split
    assert second["attributes"]["train_sample_paths"] == first["attributes"]["train_sample_paths"][:3]
    demo = tmp_path / "a" / first["attributes"]["train_sample_paths"][0]
    source = root / "images" / demo.name
    drawn = np.asarray(Image.open(demo).convert("RGB"))
    plain = np.asarray(Image.open(source).convert("RGB").resize(drawn.shape[1::-1], Image.Resampling.NEAREST))
    # the label band is drawn top-left; the rest of the picture is the (upscaled) image
    assert np.abs(drawn[:12].astype(int) - plain[:12]).mean() > 10
    assert drawn.shape[0] >= 224


def test_check_multilabel(tmp_path, photos):
    root = make_ml(tmp_path / "ml", photos)
    result = check_dataset(root, "MLClsDataset", tmp_path / "out")
    assert result["dataset_type"] == "MLClsDataset"
    assert result["attributes"]["num_classes"] == 3
    assert (result["attributes"]["train_samples"], result["attributes"]["val_samples"]) == (8, 4)
    dataset = load_dataset(root, "MLClsDataset")
    assert dataset.splits["train"][0].label == (1, 0, 0)
    assert dataset.class_counts("train") == {0: 4, 1: 4, 2: 3}


def test_check_shitu_finds_images_folder_below(tmp_path, photos):
    root = make_rec(tmp_path / "rec", photos)
    result = check_dataset(root, "ShiTuRecDataset", tmp_path / "out")
    attributes = result["attributes"]
    assert set(attributes) >= {"train_samples", "train_sample_paths", "gallery_samples", "gallery_sample_paths",
                               "query_samples", "query_sample_paths"}
    assert "num_classes" not in attributes and "label_file" not in attributes
    assert (attributes["train_samples"], attributes["gallery_samples"], attributes["query_samples"]) == (24, 8, 8)
    assert load_dataset(root, "ShiTuRecDataset").root == root / "shitu"
    assert (tmp_path / "out" / "check_dataset" / "histogram.png").is_file()


def test_check_cli(tmp_path, photos):
    root = make_cls(tmp_path / "cls", photos)
    result = CliRunner().invoke(cli, ["dataset", "check", str(root), "--type", "ClsDataset",
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "ClsDataset check passed: train 8, val 4, 2 classes" in result.output
    assert (tmp_path / "out" / "check_dataset_result.json").is_file()


# --------------------------------------------------------------------------- convert


def _labelme(root: Path, photos: Path, names: list[str], flags: list[str], chosen: list[str]) -> None:
    for name, flag in zip(names, chosen):
        stem = Path(name).stem
        thumbnail(photos, name, root / "images" / f"{stem}.png")
        annotation = {"version": "5.2.1", "flags": {f: f == flag for f in flags}, "shapes": [],
                      "imagePath": f"../images/{stem}.png", "imageData": None}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{stem}.json").write_text(json.dumps(annotation), encoding="utf-8")


def test_convert_labelme_to_cls_then_split(tmp_path, photos):
    root = tmp_path / "labelme"
    names = ANIMALS + OBJECTS
    _labelme(root, photos, names, ["animal", "object"], ["animal"] * 4 + ["object"] * 4)
    (root / "flags.txt").write_text("animal\nobject\n", encoding="utf-8")
    assert convert_dataset(root, "ClsDataset", "LabelMe") == {"train": 8, "val": 0}
    assert (root / "label.txt").read_text() == "0 animal\n1 object\n"
    assert (root / "val.txt").read_text() == ""
    assert "images/chelsea.png 0" in (root / "train.txt").read_text().splitlines()
    with pytest.raises(DatasetError, match="val split must not be empty"):
        check_dataset(root, "ClsDataset", tmp_path / "out")
    failed = json.loads((tmp_path / "out" / "check_dataset_result.json").read_text())
    assert failed["done_flag"] is False and failed["err_type"] == "DatasetError"
    assert split_dataset(root, "ClsDataset", {"train": 75, "val": 25}, seed=1) == {"train": 6, "val": 2}
    assert check_dataset(root, "ClsDataset", tmp_path / "out")["check_pass"] is True


def test_convert_labelme_to_shitu_is_a_fixed_50_30_20_split(tmp_path, photos):
    root = tmp_path / "labelme"
    names = ANIMALS + OBJECTS + ["motorcycle_left.png", "giraffe.jpg"]
    flags = ["a", "b", "c"]
    _labelme(root, photos, names, flags, ["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"])
    (root / "label.txt").write_text("a\nb\nc\n", encoding="utf-8")
    assert convert_dataset(root, "ShiTuRecDataset", "labelme") == {"train": 5, "gallery": 3, "query": 2}
    ordered = sorted(Path(n).stem for n in names)  # annotations sorted by file name, not shuffled
    train = [line.split()[0] for line in (root / "train.txt").read_text().splitlines()]
    assert train == [f"images/{stem}.png" for stem in ordered[:5]]
    assert load_dataset(root, "ShiTuRecDataset").splits["query"][0].relpath == f"images/{ordered[8]}.png"


def test_convert_coco_to_multilabel(tmp_path, photos):
    root = tmp_path / "coco"
    for name in ANIMALS:
        thumbnail(photos, name, root / "images" / Path(name).name)
    categories = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 17, "name": "cat"}]
    train = {"images": [{"id": 1, "file_name": "chelsea.png"}, {"id": 2, "file_name": "dog.jpg"},
                        {"id": 3, "file_name": "horses.jpg"}],
             "annotations": [{"image_id": 1, "category_id": 17}, {"image_id": 2, "category_id": 18},
                             {"image_id": 2, "category_id": 1}, {"image_id": 2, "category_id": 18}],
             "categories": categories}
    val = {"images": [{"id": 7, "file_name": "eagle.jpg"}], "annotations": [], "categories": categories}
    (root / "annotations").mkdir()
    (root / "annotations" / "instance_train.json").write_text(json.dumps(train))
    (root / "annotations" / "instance_val.json").write_text(json.dumps(val))
    assert convert_dataset(root, "MLClsDataset", "COCO") == {"train": 3, "val": 1}
    # label ids are the vector positions (categories sorted by COCO id: person 1, cat 17, dog 18)
    assert (root / "label.txt").read_text() == "0 person\n1 cat\n2 dog\n"
    assert (root / "train.txt").read_text().splitlines() == [
        "images/chelsea.png\t0,1,0", "images/dog.jpg\t1,0,1", "images/horses.jpg\t0,0,0"]
    assert load_dataset(root, "MLClsDataset").num_classes == 3


# --------------------------------------------------------------------------- split


def test_split_keeps_originals_as_bak_once(tmp_path, photos):
    root = make_cls(tmp_path / "cls", photos)
    original_train = (root / "train.txt").read_text()
    original_val = (root / "val.txt").read_text()
    everything = sorted(original_train.splitlines() + original_val.splitlines())
    counts = split_dataset(root, "ClsDataset", {"train": 70, "val": 30}, seed=3)
    assert counts == {"train": 8, "val": 4}  # round(12 * 0.7) = 8, the rest to val
    assert (root / "train.txt.bak").read_text() == original_train
    assert (root / "val.txt.bak").read_text() == original_val
    after = (root / "train.txt").read_text().splitlines() + (root / "val.txt").read_text().splitlines()
    assert sorted(after) == everything
    split_dataset(root, "ClsDataset", {"train": 50, "val": 50})
    assert (root / "train.txt.bak").read_text() == original_train  # an existing .bak is never overwritten


def test_split_shitu_and_seed_reproducibility(tmp_path, photos):
    first = make_rec(tmp_path / "one", photos)
    second = make_rec(tmp_path / "two", photos)
    for root in (first, second):
        assert split_dataset(root, "ShiTuRecDataset", {"train": 50, "gallery": 30, "query": 20}, seed=7) == \
            {"train": 20, "gallery": 12, "query": 8}
    assert (first / "shitu" / "query.txt").read_text() == (second / "shitu" / "query.txt").read_text()


def test_split_cli(tmp_path, photos):
    root = make_ml(tmp_path / "ml", photos)
    result = CliRunner().invoke(cli, ["dataset", "split", str(root), "--type", "MLClsDataset",
                                      "--train_percent", "75", "--val_percent", "25", "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert "train 9, val 3" in result.output
    assert all("\t" in line for line in (root / "val.txt").read_text().splitlines())
