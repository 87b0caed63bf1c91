"""What a batch job reads: a folder, a ``.txt`` list of paths, or a glob, as a sorted list of image paths.

Listing happens on the driver, before Ray starts, so a missing or empty input is a clear
error (exit 2) instead of a cluster job with nothing to do. For ``--to_index`` the listing
also carries each image's label: from a gallery file (``path label`` lines, as
``viewfinder index build`` reads them) or from the image's sub-folder name.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputError
from ..io import IMAGE_EXTENSIONS, iter_inputs
from ..pipelines.gallery import read_gallery_file

GLOB_CHARACTERS = frozenset("*?[")


@dataclass
class Listing:
    """The inputs of one job, in a stable order (``labels`` only for a gallery)."""

    paths: list[str]
    labels: list[str] | None = None


def _folder_images(folder: str) -> list[str]:
    # the same walk as predict() (recursive, sorted, image extensions): one path spelling everywhere
    return [item.input_path for item in iter_inputs(folder)]


def _list_file(path: Path) -> list[str]:
    """One image path (or URL, or folder) per line; relative paths are relative to the list file."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
    found: list[str] = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if "://" in entry:
            found.append(entry)
            continue
        target = Path(entry).expanduser()
        target = target if target.is_absolute() else path.parent / target
        # a missing file stays in the list: it becomes an error row, like a corrupt one
        found.extend(_folder_images(str(target)) if target.is_dir() else [str(target)])
    return found


def _dedupe(paths: list[str]) -> list[str]:
    # the output has one row per input and resume matches on input_path
    return list(dict.fromkeys(paths))


def list_inputs(source: str) -> Listing:
    """``source`` as image paths: a folder (recursive), a ``.txt`` list, or a glob (``photos/**/*.jpg``)."""
    text = str(source).strip()
    if not text:
        raise InputError("--input is empty")
    path = Path(text).expanduser()
    if path.is_dir():
        paths = _folder_images(str(path))
    elif path.is_file() and path.suffix.lower() == ".txt":
        paths = _list_file(path)
        if not paths:
            raise InputError(f"{text}: the list names no images")
    elif path.is_file():
        paths = [str(path)]
    elif GLOB_CHARACTERS & set(text):
        paths = sorted(hit for hit in glob.glob(str(path), recursive=True)
                       if Path(hit).is_file() and Path(hit).suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise InputError(f"{text}: the pattern matches no images")
    else:
        raise InputError(f"{text}: no such file or folder")
    return Listing(_dedupe(paths))


def list_gallery(root: str, labels_file: str | None) -> Listing:
    """A gallery to index: ``labels_file`` lines (paths relative to ``root``), else sub-folder names as labels."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise InputError(f"{root}: --to_index needs --input to be the gallery folder")
    if labels_file is not None:
        entries = read_gallery_file(folder, labels_file)  # `viewfinder index build`'s reader: same paths
        return Listing(entries.paths, entries.labels)
    paths = _folder_images(str(folder))
    labels = [Path(p).relative_to(folder).parts[0] for p in paths]
    loose = [p for p, label in zip(paths, labels) if Path(folder, label).is_file()]
    if loose:
        raise ConfigError(f"{len(loose)} image(s) directly in {root} (e.g. {loose[0]}) have no sub-folder to take "
                          "a label from: move them into a folder named after their label, or give --labels FILE")
    return Listing(paths, labels)
