"""Expand a ``predict()`` input into a lazy stream of items to decode.

Accepted: a file path, a folder (walked recursively, sorted, image extensions only), an
http(s) URL, raw bytes, a PIL image, a numpy array (BGR, as PaddleX/OpenCV), an already
:class:`~viewfinder.io.image.DecodedImage` (not decoded again), and lists, tuples or dicts
of these (a dict's keys name its items when they are not paths).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError
from .fetch import fetch_url, is_url
from .image import DecodedImage, decode_image

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


@dataclass
class InputItem:
    """One image to decode. ``input_path`` is what results report (None for arrays)."""

    source: Any
    input_path: str | None

    def decode(self, min_short_side: int | None = None, keep_pil: bool = False) -> DecodedImage:
        source = self.source
        if isinstance(source, str) and is_url(source):
            source = fetch_url(source)
        decoded = decode_image(source, min_short_side=min_short_side, keep_pil=keep_pil)
        decoded.input_path = self.input_path
        return decoded


def _walk_images(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(root) / name)
    return sorted(found)


def iter_inputs(inputs: Any, _name: str | None = None) -> Iterator[InputItem]:
    """Yield :class:`InputItem` s lazily; raises :class:`InputError` for a missing path or empty folder."""
    if isinstance(inputs, (list, tuple)):
        for item in inputs:
            yield from iter_inputs(item)
        return
    if isinstance(inputs, dict):
        for key, item in inputs.items():
            yield from iter_inputs(item, _name=str(key))
        return
    if isinstance(inputs, (np.ndarray, Image.Image, bytes, bytearray, DecodedImage)):
        yield InputItem(inputs, _name)
        return
    if isinstance(inputs, (str, Path)):
        text = str(inputs)
        if is_url(text):
            yield InputItem(text, text)
            return
        path = Path(text).expanduser()
        if path.is_dir():
            images = _walk_images(path)
            if not images:
                raise InputError(f"{text}: folder contains no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
            for image_path in images:
                yield InputItem(str(image_path), str(image_path))
            return
        if not path.exists():
            raise InputError(f"{text}: no such file or folder")
        yield InputItem(str(path), str(path))
        return
    raise InputError(
        f"unsupported input of type {type(inputs).__name__}: give a path, folder, URL, bytes, "
        "PIL image, numpy array (BGR), or a list of these"
    )
