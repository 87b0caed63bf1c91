"""``check_dataset``: validate a dataset and write PaddleX's check outputs.

``<output>/check_dataset_result.json`` (PaddleX's fields), ``<output>/check_dataset/demo_img/``
(up to 10 samples per split with their labels drawn, chosen by a ``random.seed(123)``
shuffle) and ``<output>/check_dataset/histogram.png`` (class distribution per split, or for
ShiTuRec the number of images and classes per split). A failed check writes
``{"done_flag": false, "err_type", "err_msg"}`` and raises.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import InputError, ViewfinderError
from ..io import decode_image
from ..visualize import draw_label_lines
from .charts import bar_chart, save_png
from .formats import REC, SPLITS, Dataset, Sample, load_dataset, normalize_type

log = logging.getLogger(__name__)

RESULT_FILE = "check_dataset_result.json"
CHECK_DIR = "check_dataset"
DEMO_SEED = 123
#: unreadable images listed by name in the result (the count is always complete)
MAX_LISTED_UNREADABLE = 20


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
    return path


def unreadable_images(samples: list[Sample]) -> list[str]:
    """Relative paths of images Pillow cannot parse (a cheap header + structure check, no full decode)."""
    bad: list[str] = []
    for sample in samples:
        try:
            with Image.open(sample.path) as image:
                image.verify()
        except Exception:  # Pillow raises many types for broken files; all mean "unreadable"
            bad.append(sample.relpath)
    return bad


def _label_lines(dataset: Dataset, sample: Sample) -> list[str]:
    if dataset.dataset_type == REC:
        return [f"label {sample.label}"]
    return [f"{i} {dataset.label_text(i)}" for i in sample.class_ids()] or ["(no label)"]


def _demo_name(sample: Sample, used: set[str]) -> str:
    name = sample.path.name
    stem, suffix = sample.path.stem, sample.path.suffix or ".png"
    counter = 1
    while name in used:
        name = f"{stem}_{counter}{suffix}"
        counter += 1
    used.add(name)
    return name


def write_demo_images(dataset: Dataset, output: Path, per_split: int = 10) -> dict[str, list[str]]:
    """Draw labels on up to ``per_split`` samples of each split; return their paths relative to ``output``."""
    demo_dir = output / CHECK_DIR / "demo_img"
    demo_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    written: dict[str, list[str]] = {}
    for split, samples in dataset.splits.items():
        order = list(samples)
        random.Random(DEMO_SEED).shuffle(order)
        paths: list[str] = []
        for sample in order:
            if len(paths) >= per_split:
                break
            try:
                rgb = decode_image(sample.path).rgb  # EXIF orientation applied
            except InputError:
                continue
            canvas = draw_label_lines(_upscale_small(rgb), _label_lines(dataset, sample))
            name = _demo_name(sample, used)
            fmt = "PNG" if Path(name).suffix.lower() not in (".jpg", ".jpeg") else "JPEG"
            canvas.save(demo_dir / name, format=fmt)
            paths.append(f"{CHECK_DIR}/demo_img/{name}")
        written[split] = paths
    return written


def _upscale_small(rgb: Any) -> Image.Image:
    """Tiny images (28x28 Fashion-MNIST) get enlarged so the drawn label stays readable."""
    image = Image.fromarray(rgb)
    short = min(image.size)
    if short < 224:
        scale = 224 / short
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.NEAREST)
    return image


def write_histogram(dataset: Dataset, output: Path) -> str:
    """The class-distribution chart (ShiTuRec: images and classes per split); returns its relative path."""
    if dataset.dataset_type == REC:
        splits = list(dataset.splits)
        chart = bar_chart(
            splits,
            {
                "images": [len(dataset.splits[s]) for s in splits],
                "classes": [len({x.label for x in dataset.splits[s]}) for s in splits],
            },
            title="ShiTuRecDataset: images and classes per split",
        )
    else:
        ids = list(range(dataset.num_classes))
        series = {split: [dataset.class_counts(split)[i] for i in ids] for split in dataset.splits}
        categories = [dataset.label_text(i) if dataset.num_classes <= 40 else str(i) for i in ids]
        chart = bar_chart(categories, series, title=f"{dataset.dataset_type}: samples per class", y_label="samples")
    relative = f"{CHECK_DIR}/histogram.png"
    save_png(chart, output / relative)
    return relative


def _attributes(dataset: Dataset, dataset_dir: str, demo: dict[str, list[str]]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if dataset.dataset_type != REC:
        attributes["label_file"] = str(Path(dataset_dir) / "label.txt")
        attributes["num_classes"] = dataset.num_classes
    for split in SPLITS[dataset.dataset_type]:
        attributes[f"{split}_samples"] = len(dataset.splits[split])
        attributes[f"{split}_sample_paths"] = demo.get(split, [])
    return attributes


def check_dataset(dataset_dir: str | Path, dataset_type: str, output: str | Path, sample_num: int = 10,
                  verify_images: bool = True) -> dict[str, Any]:
    """Validate ``dataset_dir`` as ``dataset_type`` and write the check outputs under ``output``.

    Returns the result dict (also written to ``<output>/check_dataset_result.json``).
    Unreadable images do not fail the check; they are counted and listed under
    ``attributes.unreadable_images`` (training skips them and says so).
    """
    output = Path(output)
    result_path = output / RESULT_FILE
    try:
        dataset_type = normalize_type(dataset_type)
        dataset = load_dataset(dataset_dir, dataset_type)
        demo = write_demo_images(dataset, output, sample_num)
        histogram = write_histogram(dataset, output)
    except ViewfinderError as exc:
        write_json(result_path, {"done_flag": False, "err_type": type(exc).__name__, "err_msg": str(exc)})
        raise
    attributes = _attributes(dataset, str(dataset_dir), demo)
    if verify_images:
        bad = [f"{split}: {path}" for split, samples in dataset.splits.items() for path in unreadable_images(samples)]
        attributes["unreadable_images_count"] = len(bad)
        attributes["unreadable_images"] = bad[:MAX_LISTED_UNREADABLE]
        if bad:
            log.warning("%d unreadable image(s) in %s (training skips them), e.g. %s", len(bad), dataset_dir, bad[0])
    result = {
        "done_flag": True,
        "check_pass": True,
        "attributes": attributes,
        "analysis": {"histogram": histogram},
        "dataset_path": str(dataset_dir),
        "show_type": "image",
        "dataset_type": dataset_type,
    }
    write_json(result_path, result)
    return result
