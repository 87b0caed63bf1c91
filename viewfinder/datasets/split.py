"""Re-split a dataset by percentages, as PaddleX's ``CheckDataset.split``.

All list files are concatenated and shuffled (unseeded unless ``seed`` is given, as in
PaddleX); split ``i`` gets ``round(N * p_i / 100)`` lines and the last split the rest.
The original list files are kept as ``<name>.txt.bak`` (an existing ``.bak`` is not
overwritten, so the very first originals survive repeated splits). Percentages are
integers > 0 summing to 100; a split that would come out empty is refused before any
file is touched.
"""
from __future__ import annotations

import random
from pathlib import Path

from ..errors import DatasetError
from .formats import ML, REC, SPLITS, find_rec_root, load_dataset, normalize_type


def check_percentages(dataset_type: str, percents: dict[str, int]) -> dict[str, int]:
    """Validate ``percents`` for ``dataset_type``: every split named, integers > 0, sum 100."""
    splits = SPLITS[dataset_type]
    unknown = sorted(set(percents) - set(splits))
    if unknown:
        raise DatasetError(f"{dataset_type} splits are {', '.join(splits)}; unknown: {', '.join(unknown)}")
    missing = [s for s in splits if percents.get(s) is None]
    if missing:
        raise DatasetError(f"{dataset_type} split needs a percentage for each of {', '.join(splits)} "
                           f"(missing: {', '.join(missing)})")
    clean: dict[str, int] = {}
    for split in splits:
        value = percents[split]
        if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
            raise DatasetError(f"{split}_percent must be an integer, got {value!r}")
        if int(value) <= 0:
            raise DatasetError(f"{split}_percent must be > 0, got {value}")
        clean[split] = int(value)
    total = sum(clean.values())
    if total != 100:
        shown = " + ".join(f"{s} {p}" for s, p in clean.items())
        raise DatasetError(f"split percentages must sum to 100, got {shown} = {total}")
    return clean


def split_dataset(dataset_dir: str | Path, dataset_type: str, percents: dict[str, int],
                  seed: int | None = None) -> dict[str, int]:
    """Re-split the dataset in place; returns the number of samples per split."""
    dataset_type = normalize_type(dataset_type)
    percents = check_percentages(dataset_type, percents)
    splits = SPLITS[dataset_type]
    # Validate the whole dataset first (empty splits allowed: that is often why one splits).
    dataset = load_dataset(dataset_dir, dataset_type, allow_empty=splits)
    root = find_rec_root(Path(dataset_dir)) if dataset_type == REC else Path(dataset_dir)
    separator = "\t" if dataset_type == ML else " "
    lines = []
    for samples in dataset.splits.values():
        for sample in samples:
            label = ",".join(str(v) for v in sample.label) if isinstance(sample.label, tuple) else str(sample.label)
            lines.append(f"{sample.relpath}{separator}{label}")
    total = len(lines)
    counts: dict[str, int] = {}
    remaining = total
    for split in splits[:-1]:
        counts[split] = min(remaining, round(total * percents[split] / 100))
        remaining -= counts[split]
    counts[splits[-1]] = remaining
    empty = [s for s, n in counts.items() if n == 0]
    if empty:
        shown = ", ".join(f"{s} {n}" for s, n in counts.items())
        raise DatasetError(f"splitting {total} samples by {percents} leaves {', '.join(empty)} empty ({shown}); "
                           "add samples or change the percentages")
    random.Random(seed).shuffle(lines)
    start = 0
    for split in splits:
        path = root / f"{split}.txt"
        backup = path.with_name(path.name + ".bak")
        if path.exists() and not backup.exists():
            path.rename(backup)
        chunk = lines[start:start + counts[split]]
        start += counts[split]
        path.write_text("".join(f"{line}\n" for line in chunk), encoding="utf-8")
    return counts
