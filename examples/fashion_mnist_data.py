"""Fashion-MNIST for the training examples: fetch once, write PaddleX-format datasets.

The data comes from the Debian package ``dataset-fashion-mnist`` (70,000 28x28 grey
product photos, 10 classes, MIT licence), fetched with ``apt-get download`` + ``dpkg -x``
into ``.assets/fashion-mnist/`` (git-ignored) the first time and reused afterwards.
"""
from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ASSET_DIR = ROOT / ".assets" / "fashion-mnist"
PACKAGE = "dataset-fashion-mnist"
PACKAGE_PATH = Path("usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def fetch() -> Path:
    """The folder holding the four idx files, downloading the Debian package if needed."""
    if all((ASSET_DIR / name).is_file() for name in FILES):
        return ASSET_DIR
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise SystemExit(f"Fashion-MNIST needs apt-get and dpkg (Debian package {PACKAGE}); "
                         f"or put {', '.join(FILES)} into {ASSET_DIR}")
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        subprocess.run(["apt-get", "download", PACKAGE], cwd=work, check=True, capture_output=True)
        deb = next(work.glob(f"{PACKAGE}_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(work / "x")], check=True)
        ASSET_DIR.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copyfile(work / "x" / PACKAGE_PATH / name, ASSET_DIR / name)
    return ASSET_DIR


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 28, 28] uint8, labels [N]) of ``train`` (60,000) or ``t10k`` (10,000)."""
    folder = fetch()
    return _idx(folder / f"{split}-images-idx3-ubyte.gz"), _idx(folder / f"{split}-labels-idx1-ubyte.gz")


def balanced_indices(labels: np.ndarray, count: int, start: int = 0) -> np.ndarray:
    """``count`` indices with equal numbers per class, taken in order after skipping ``start`` per class."""
    per_class = count // 10
    picked = [np.flatnonzero(labels == c)[start:start + per_class] for c in range(10)]
    return np.sort(np.concatenate(picked))


def write_images(root: Path, prefix: str, images: np.ndarray, indices: np.ndarray) -> list[str]:
    """Save ``images[indices]`` as PNGs under ``root/images``; returns their relative paths."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for index in indices:
        relative = f"images/{prefix}_{index:05d}.png"
        target = root / relative
        if not target.is_file():
            Image.fromarray(images[index]).save(target)
        paths.append(relative)
    return paths


def write_list(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def mosaic(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, count: int,
           max_items: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``count`` 56x56 2x2 mosaics: 1..max_items random items placed in random cells, the rest black.

    Returns (mosaics [count, 56, 56], multi-hot labels [count, 10]).
    """
    out = np.zeros((count, 56, 56), dtype=np.uint8)
    targets = np.zeros((count, 10), dtype=np.int64)
    for i in range(count):
        items = rng.integers(1, max_items + 1)
        cells = rng.choice(4, size=items, replace=False)
        for cell in cells:
            pick = rng.integers(len(images))
            row, col = divmod(int(cell), 2)
            out[i, row * 28:(row + 1) * 28, col * 28:(col + 1) * 28] = images[pick]
            targets[i, labels[pick]] = 1
    return out, targets
