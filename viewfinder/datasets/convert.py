"""Dataset conversion, in place, as PaddleX's ``CheckDataset.convert``.

* LabelMe -> ClsDataset: ``flags.txt`` (class names in id order) + ``annotations/*.json``
  (``flags: {name: bool}``, ``imagePath``) -> ``label.txt``, ``train.txt`` with **all**
  samples and an **empty** ``val.txt`` (split afterwards).
* LabelMe -> ShiTuRecDataset: ``label.txt`` + ``annotations/`` + ``images/`` ->
  ``train.txt`` / ``gallery.txt`` / ``query.txt`` at a fixed 50/30/20 split of the
  annotations sorted by file name, not shuffled (PaddleX's behaviour; split afterwards
  for a random one).
* COCO -> MLClsDataset: ``annotations/instance_{train,val}.json`` (``instances_*`` also
  accepted) -> ``train.txt`` / ``val.txt`` with multi-hot vectors and ``label.txt``.
  Deliberate difference: PaddleX writes the original COCO category ids into label.txt,
  which then do not match the vector positions; here label.txt ids *are* the positions
  (categories sorted by COCO id).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .problems import raise_problems
from .formats import CLS, ML, REC, normalize_type

CONVERSIONS = {(CLS, "LabelMe"), (REC, "LabelMe"), (ML, "COCO")}
REC_FRACTIONS = (0.5, 0.3)  # train, gallery; query takes the rest


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None


def _read_names(path: Path) -> list[str]:
    """Class names in id order: plain ``name`` lines or ``<id> <name>`` lines."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing (one class name per line, in id order)")
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if not lines:
        raise DatasetError(f"{path}: no class names")
    numbered = [line.partition(" ") for line in lines]
    if all(head.isdigit() and name for head, _, name in numbered):
        ids = [int(head) for head, _, _ in numbered]
        if sorted(ids) != list(range(len(ids))):
            raise DatasetError(f"{path}: class ids must be 0..{len(ids) - 1} without gaps or repeats")
        return [name.strip() for _, _, name in sorted(numbered, key=lambda t: int(t[0]))]
    if len(set(lines)) != len(lines):
        raise DatasetError(f"{path}: class names repeat")
    return lines


def _relative_image(root: Path, annotation: Path, image_path: str) -> str | None:
    """The image of a LabelMe annotation, relative to ``root`` (LabelMe stores it relative to the JSON)."""
    for candidate in (annotation.parent / image_path, root / "images" / Path(image_path).name):
        if candidate.is_file():
            try:
                return candidate.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                return None
    return None


def _labelme_samples(root: Path, names: list[str]) -> list[tuple[str, int]]:
    folder = root / "annotations"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise DatasetError(f"{folder}: no LabelMe *.json annotations found")
    index = {name: i for i, name in enumerate(names)}
    samples: list[tuple[str, int]] = []
    problems: list[str] = []
    for path in files:
        data = _load_json(path)
        flags = data.get("flags") if isinstance(data, dict) else None
        image_path = data.get("imagePath") if isinstance(data, dict) else None
        if not isinstance(flags, dict) or not isinstance(image_path, str):
            problems.append(f"{path.name}: needs 'flags' (a mapping) and 'imagePath'")
            continue
        unknown = [name for name in flags if name not in index]
        chosen = [name for name, value in flags.items() if value is True]
        if unknown:
            problems.append(f"{path.name}: flags {unknown} are not in the class list")
        elif len(chosen) != 1:
            problems.append(f"{path.name}: exactly one flag must be true, found {len(chosen)}")
        else:
            relative = _relative_image(root, path, image_path)
            if relative is None:
                problems.append(f"{path.name}: image {image_path!r} not found inside {root}")
            else:
                samples.append((relative, index[chosen[0]]))
    raise_problems(problems, f"LabelMe annotations in {folder}")
    return samples


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def labelme_to_cls(root: str | Path) -> dict[str, int]:
    root = Path(root)
    names = _read_names(root / "flags.txt")
    samples = _labelme_samples(root, names)
    _write_lines(root / "label.txt", [f"{i} {name}" for i, name in enumerate(names)])
    _write_lines(root / "train.txt", [f"{path} {label}" for path, label in samples])
    _write_lines(root / "val.txt", [])
    return {"train": len(samples), "val": 0}


def labelme_to_shitu(root: str | Path) -> dict[str, int]:
    root = Path(root)
    names = _read_names(root / "label.txt")
    samples = _labelme_samples(root, names)
    n_train = int(len(samples) * REC_FRACTIONS[0])
    n_gallery = int(len(samples) * REC_FRACTIONS[1])
    parts = {
        "train": samples[:n_train],
        "gallery": samples[n_train:n_train + n_gallery],
        "query": samples[n_train + n_gallery:],
    }
    for split, items in parts.items():
        _write_lines(root / f"{split}.txt", [f"{path} {label}" for path, label in items])
    return {split: len(items) for split, items in parts.items()}


def _coco_file(root: Path, split: str) -> Path:
    for name in (f"instance_{split}.json", f"instances_{split}.json"):
        path = root / "annotations" / name
        if path.is_file():
            return path
    raise DatasetError(f"{root / 'annotations'}: instance_{split}.json missing (COCO -> MLClsDataset needs "
                       "instance_train.json and instance_val.json)")


def coco_to_mlcls(root: str | Path) -> dict[str, int]:
    try:
        return _coco_to_mlcls(Path(root))
    except (KeyError, TypeError, ValueError) as exc:  # a field missing or of the wrong type
        raise DatasetError(f"{root}: malformed COCO annotations ({type(exc).__name__}: {exc})") from None


def _coco_to_mlcls(root: Path) -> dict[str, int]:
    documents = {split: _load_json(_coco_file(root, split)) for split in ("train", "val")}
    categories: dict[int, str] = {}
    for split, document in documents.items():
        if not isinstance(document, dict) or not isinstance(document.get("categories"), list):
            raise DatasetError(f"instance_{split}.json: no 'categories' list")
        for category in document["categories"]:
            categories.setdefault(int(category["id"]), str(category["name"]))
    if not categories:
        raise DatasetError("COCO annotations define no categories")
    position = {cat_id: i for i, cat_id in enumerate(sorted(categories))}
    counts: dict[str, int] = {}
    for split, document in documents.items():
        present: dict[int, set[int]] = {}
        for annotation in document.get("annotations", []):
            category = int(annotation["category_id"])
            if category not in position:
                raise DatasetError(f"instance_{split}.json: annotation uses unknown category id {category}")
            present.setdefault(int(annotation["image_id"]), set()).add(position[category])
        lines: list[str] = []
        missing: list[str] = []
        for image in document.get("images", []):
            relative = f"images/{image['file_name']}"
            if not (root / relative).is_file():
                missing.append(relative)
                continue
            vector = ["0"] * len(position)
            for index in present.get(int(image["id"]), ()):
                vector[index] = "1"
            lines.append(f"{relative}\t{','.join(vector)}")
        raise_problems(missing, f"instance_{split}.json: {len(missing)} image(s) missing under {root}")
        _write_lines(root / f"{split}.txt", lines)
        counts[split] = len(lines)
    _write_lines(root / "label.txt", [f"{position[c]} {categories[c]}" for c in sorted(categories)])
    return counts


def convert_dataset(dataset_dir: str | Path, dataset_type: str, src_dataset_type: str) -> dict[str, int]:
    """Convert ``dataset_dir`` in place from ``src_dataset_type`` (LabelMe, COCO); returns samples per split."""
    dataset_type = normalize_type(dataset_type)
    source = {"labelme": "LabelMe", "coco": "COCO"}.get(str(src_dataset_type).lower(), str(src_dataset_type))
    if (dataset_type, source) not in CONVERSIONS:
        known = ", ".join(f"{s} -> {t}" for t, s in sorted(CONVERSIONS))
        raise DatasetError(f"no conversion from {src_dataset_type} to {dataset_type}; available: {known}")
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    if dataset_type == CLS:
        return labelme_to_cls(root)
    if dataset_type == REC:
        return labelme_to_shitu(root)
    return coco_to_mlcls(root)
