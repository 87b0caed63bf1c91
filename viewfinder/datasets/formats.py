"""PaddleX's three dataset layouts, read and validated.

============== ======================================= ==================================== ===========
type           files in the root                       list line                            labels
============== ======================================= ==================================== ===========
ClsDataset     label.txt, train.txt, val.txt           ``images/x.jpg 3`` (one space)       label.txt
MLClsDataset   label.txt, train.txt, val.txt           ``images/x.jpg<TAB>0,1,0,...``        label.txt
ShiTuRecDataset train.txt, gallery.txt, query.txt      ``images/x.jpg 17`` (one space)      none
============== ======================================= ==================================== ===========

``label.txt`` lines are ``<int id> <name>`` (split on the first space, so names may hold
spaces); ids start at 0 and ``num_classes = max(id) + 1``. A ShiTuRec root is the parent
of the one ``images/`` folder found under the given directory (PaddleX globs ``**/images``).
Every problem is reported with its file and line; a dataset either loads completely or
raises :class:`~viewfinder.errors.DatasetError`.
"""
from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from .problems import raise_problems

CLS = "ClsDataset"
ML = "MLClsDataset"
REC = "ShiTuRecDataset"
DATASET_TYPES = (CLS, ML, REC)
SPLITS: dict[str, tuple[str, ...]] = {CLS: ("train", "val"), ML: ("train", "val"), REC: ("train", "gallery", "query")}
LABEL_FILE = "label.txt"
#: what each type's task is called in the model zoo
TASK_OF_TYPE = {CLS: "image_classification", ML: "image_multilabel_classification", REC: "image_feature"}


@dataclass(frozen=True)
class Sample:
    """One list-file line: the image and its label (a class id, or a multi-hot tuple for MLClsDataset)."""

    path: Path
    relpath: str
    label: int | tuple[int, ...]

    def class_ids(self) -> list[int]:
        """The classes present: ``[label]`` or the positions of the ones in a multi-hot vector."""
        if isinstance(self.label, tuple):
            return [i for i, v in enumerate(self.label) if v]
        return [self.label]


@dataclass
class Dataset:
    """A loaded dataset: its root, samples per split and (Cls/ML) the class names by id."""

    dataset_type: str
    root: Path
    splits: dict[str, list[Sample]]
    label_names: list[str] | None = None
    label_file: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Cls/ML: ``max(id) + 1`` of label.txt; ShiTuRec: distinct labels in train.txt."""
        if self.label_names is not None:
            return len(self.label_names)
        return len({s.label for s in self.splits.get("train", [])})

    def class_counts(self, split: str) -> Counter[int]:
        counts: Counter[int] = Counter()
        for sample in self.splits[split]:
            counts.update(sample.class_ids())
        return counts

    def label_text(self, class_id: int) -> str:
        if self.label_names is not None and 0 <= class_id < len(self.label_names):
            return self.label_names[class_id]
        return str(class_id)


def normalize_type(dataset_type: str) -> str:
    """The canonical type name; a near miss gets a suggestion."""
    for known in DATASET_TYPES:
        if str(dataset_type).lower() == known.lower():
            return known
    close = difflib.get_close_matches(str(dataset_type), DATASET_TYPES, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise DatasetError(f"unknown dataset type {dataset_type!r}: use one of {', '.join(DATASET_TYPES)}{hint}")


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_label_file(path: Path) -> list[str]:
    """``<id> <name>`` lines -> names indexed by id (ids start at 0; a gap is named by its number)."""
    if not path.is_file():
        raise DatasetError(f"{path}: label file missing (one '<id> <name>' line per class, ids from 0)")
    names: dict[int, str] = {}
    problems: list[str] = []
    for number, line in _read_lines(path):
        head, _, name = line.partition(" ")
        try:
            class_id = int(head)
        except ValueError:
            problems.append(f"line {number}: {line!r} does not start with an integer class id")
            continue
        if not name.strip():
            problems.append(f"line {number}: class id {class_id} has no name")
        elif class_id < 0:
            problems.append(f"line {number}: negative class id {class_id}")
        elif class_id in names:
            problems.append(f"line {number}: class id {class_id} appears twice")
        else:
            names[class_id] = name.strip()
    raise_problems(problems, str(path))
    if not names:
        raise DatasetError(f"{path}: no classes (expected '<id> <name>' lines)")
    if min(names) != 0:
        raise DatasetError(f"{path}: class ids must start at 0, the smallest is {min(names)}")
    return [names.get(i, str(i)) for i in range(max(names) + 1)]


def parse_line(line: str, dataset_type: str, num_classes: int | None) -> tuple[str, int | tuple[int, ...]]:
    """One list line -> (relative path, label); raises ValueError with the reason."""
    if dataset_type == ML:
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError("expected '<image path><TAB><comma-separated 0/1 vector>'")
        path, vector = parts[0].strip(), parts[1].strip()
        try:
            values = tuple(int(v) for v in vector.split(","))
        except ValueError:
            raise ValueError(f"label vector {vector!r} is not comma-separated integers") from None
        if any(v not in (0, 1) for v in values):
            raise ValueError(f"label vector {vector!r} holds values other than 0 and 1")
        if num_classes is not None and len(values) != num_classes:
            raise ValueError(f"label vector has {len(values)} entries, label.txt has {num_classes} classes")
        return path, values
    parts = line.split(" ")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError("expected '<image path> <integer label>' separated by one space")
    try:
        label = int(parts[1])
    except ValueError:
        raise ValueError(f"label {parts[1]!r} is not an integer") from None
    if num_classes is not None and not 0 <= label < num_classes:
        raise ValueError(f"label {label} is out of range: label.txt defines ids 0..{num_classes - 1}")
    return parts[0], label


def read_list_file(path: Path, root: Path, dataset_type: str, num_classes: int | None,
                   check_files: bool = True) -> list[Sample]:
    """Parse and validate one list file; image paths are relative to ``root``."""
    if not path.is_file():
        raise DatasetError(f"{path}: list file missing")
    samples: list[Sample] = []
    problems: list[str] = []
    missing: list[str] = []
    for number, line in _read_lines(path):
        try:
            relpath, label = parse_line(line, dataset_type, num_classes)
        except ValueError as exc:
            problems.append(f"line {number}: {exc} (got {line[:80]!r})")
            continue
        image = (root / relpath)
        if check_files and not image.is_file():
            missing.append(f"line {number}: {relpath}")
            continue
        samples.append(Sample(image, relpath, label))
    raise_problems(problems, f"{path.name} is malformed")
    if missing:
        raise_problems(missing, f"{path.name}: {len(missing)} image(s) not found under {root}")
    return samples


def find_rec_root(dataset_dir: Path) -> Path:
    """The ShiTuRec root: the parent of the single ``images/`` folder under ``dataset_dir``."""
    if (dataset_dir / "images").is_dir():
        matches = [dataset_dir / "images"]
    else:
        matches = sorted(p for p in dataset_dir.glob("**/images") if p.is_dir())
    if not matches:
        raise DatasetError(f"{dataset_dir}: no 'images' folder found (ShiTuRecDataset keeps its images in images/)")
    if len(matches) > 1:
        listed = ", ".join(str(m.relative_to(dataset_dir)) for m in matches[:4])
        raise DatasetError(f"{dataset_dir}: {len(matches)} 'images' folders found ({listed}); exactly one is allowed")
    return matches[0].parent


def load_dataset(dataset_dir: str | Path, dataset_type: str, check_files: bool = True,
                 allow_empty: tuple[str, ...] = ()) -> Dataset:
    """Read and validate a dataset; every split must be non-empty unless listed in ``allow_empty``."""
    dataset_type = normalize_type(dataset_type)
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist or is not a folder")
    label_names: list[str] | None = None
    label_file: Path | None = None
    if dataset_type == REC:
        root = find_rec_root(folder)
    else:
        root = folder
        label_file = root / LABEL_FILE
        label_names = read_label_file(label_file)
    num_classes = len(label_names) if label_names is not None else None
    splits: dict[str, list[Sample]] = {}
    for split in SPLITS[dataset_type]:
        list_path = root / f"{split}.txt"
        if not list_path.is_file():
            needed = ", ".join(f"{s}.txt" for s in SPLITS[dataset_type])
            raise DatasetError(f"{root}: {split}.txt missing ({dataset_type} needs {needed})")
        splits[split] = read_list_file(list_path, root, dataset_type, num_classes, check_files)
        if not splits[split] and split not in allow_empty:
            hint = " (split the dataset: viewfinder dataset split)" if split != "train" else ""
            raise DatasetError(f"{list_path}: no samples; the {split} split must not be empty{hint}")
    return Dataset(dataset_type, root, splits, label_names, label_file)
