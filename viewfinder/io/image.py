"""Decode one input into an RGB uint8 array, safely.

Guards: a pixel limit checked from the header before any pixel is decoded
(decompression bombs), clear errors for empty, truncated and non-image files, and
EXIF orientation applied. JPEGs can be decoded at a reduced scale with Pillow's
``draft()`` when the model needs far fewer pixels than the file holds.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageTooLargeError, InputError

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # 100 MP: far above any camera, far below a bomb


def max_image_pixels() -> int:
    """The pixel limit, overridable with ``$VIEWFINDER_MAX_IMAGE_PIXELS``."""
    value = os.environ.get("VIEWFINDER_MAX_IMAGE_PIXELS")
    return int(value) if value else DEFAULT_MAX_IMAGE_PIXELS


@dataclass
class DecodedImage:
    """An RGB uint8 image plus where it came from.

    ``original_size`` is (width, height) of the source; it differs from the pixels' size
    when a JPEG was decoded at reduced scale. The pixels are in ``rgb`` (an array), or in
    ``pil`` (an RGB Pillow image, when the caller resizes with Pillow anyway: the array copy
    out of Pillow and back costs more than the resize itself), or in neither (GPU decode:
    read the file again to draw).
    """

    rgb: np.ndarray | None
    original_size: tuple[int, int]
    input_path: str | None = None
    pil: Image.Image | None = None
    encoded: bytes | None = None  # the input bytes, kept when decoded at reduced scale (to draw at full size)

    @property
    def decoded_size(self) -> tuple[int, int] | None:
        """(width, height) of the pixels held, or None when none are."""
        if self.rgb is not None:
            return self.rgb.shape[1], self.rgb.shape[0]
        return self.pil.size if self.pil is not None else None

    @property
    def held_pixels(self) -> Image.Image | np.ndarray | None:
        """The pixels held, as decoded: the Pillow image or the array (what a resize takes)."""
        return self.pil if self.pil is not None else self.rgb

    @property
    def reduced(self) -> bool:
        """True when the full-size pixels are not held (reduced-scale decode, or not kept)."""
        return self.decoded_size != self.original_size


def _describe(source: Any) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _open_pil(source: str | Path | bytes) -> Image.Image:
    name = _describe(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{name}: file not found")
        if path.is_dir():
            raise InputError(f"{name}: is a directory, not an image file")
        if path.stat().st_size == 0:
            raise InputError(f"{name}: file is empty (0 bytes)")
        fp: Any = str(path)
    else:
        if len(source) == 0:
            raise InputError("image data is empty (0 bytes)")
        fp = io.BytesIO(source)
    try:
        img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is above the pixel limit, refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not a recognised image format (corrupt or not an image)") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read image ({exc})") from None
    width, height = img.size
    limit = max_image_pixels()
    if width * height > limit:
        img.close()
        raise ImageTooLargeError(
            f"{name}: image is {width}x{height} = {width * height} pixels, above the pixel limit of "
            f"{limit} (set VIEWFINDER_MAX_IMAGE_PIXELS to raise it)"
        )
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: image has no pixels ({width}x{height})")
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white so transparent areas do not turn black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode.startswith("I;16") or img.mode == "I":
        array = np.asarray(img, dtype=np.float64)
        peak = array.max() or 1.0
        return Image.fromarray((array * (255.0 / peak)).clip(0, 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def _decode_pil(img: Image.Image, name: str, min_short_side: int | None, keep_pil: bool) -> DecodedImage:
    width, height = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not make the image unreadable
        orientation = 1
    if min_short_side and img.format == "JPEG" and min(width, height) >= 2 * min_short_side:
        # draft() keeps the result at least as large as asked, so the short side stays
        # >= min_short_side while the decoder skips most of the DCT work.
        scale = min_short_side / min(width, height)
        img.draft("RGB", (max(1, int(width * scale + 0.999)), max(1, int(height * scale + 0.999))))
    try:
        img.load()
        if orientation not in (None, 1):  # exif_transpose copies the image even when there is nothing to do
            img = ImageOps.exif_transpose(img) or img
        # Leaving ``with Image.open(...)`` closes only the file; loaded pixels stay usable.
        rgb_image = _to_rgb(img)
        rgb = None if keep_pil else np.ascontiguousarray(np.asarray(rgb_image))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: image is too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: corrupt or truncated image ({exc})") from None
    original_size = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return DecodedImage(rgb, original_size, None, rgb_image if keep_pil else None)


def _from_array(array: np.ndarray) -> DecodedImage:
    """Arrays follow PaddleX/OpenCV convention: HxWx3 BGR (or HxW gray, HxWx4 BGRA), uint8."""
    if array.dtype != np.uint8:
        raise InputError(f"array input must be uint8 (got {array.dtype}); arrays are HxWx3 BGR as in OpenCV")
    if array.ndim == 2:
        rgb = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        rgb = array[:, :, 2::-1]
    elif array.ndim == 3 and array.shape[2] == 1:
        rgb = np.repeat(array, 3, axis=2)
    else:
        raise InputError(f"array input must be HxW or HxWx3 (BGR) or HxWx4 (BGRA), got shape {array.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"array input has no pixels (shape {array.shape})")
    if rgb.shape[0] * rgb.shape[1] > max_image_pixels():
        raise ImageTooLargeError(f"array input of shape {array.shape} is above the pixel limit")
    rgb = np.ascontiguousarray(rgb)
    return DecodedImage(rgb, (rgb.shape[1], rgb.shape[0]), None)


def decode_image(source: Any, min_short_side: int | None = None, keep_pil: bool = False) -> DecodedImage:
    """Decode ``source`` (path, bytes, PIL image, BGR ndarray or a :class:`DecodedImage`) into RGB uint8.

    ``min_short_side``: when set, JPEGs much larger than needed are decoded at a reduced
    scale whose short side is still at least this many pixels. ``keep_pil``: files and
    bytes come back as a Pillow image in ``.pil`` (``.rgb`` None) instead of an array.
    A :class:`DecodedImage` (decoded earlier, e.g. by the service before a request queues)
    is not decoded again: a copy comes back, with an array made from its Pillow image when
    ``keep_pil`` is false and it holds no array.
    """
    if isinstance(source, DecodedImage):
        if not keep_pil and source.rgb is None and source.pil is not None:
            return replace(source, rgb=np.ascontiguousarray(np.asarray(source.pil)), pil=None)
        return replace(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        limit = max_image_pixels()
        if source.size[0] * source.size[1] > limit:
            raise ImageTooLargeError(f"PIL image of size {source.size} is above the pixel limit")
        rgb = np.ascontiguousarray(np.asarray(_to_rgb(source)))
        return DecodedImage(rgb, source.size, None)
    if isinstance(source, (str, Path, bytes, bytearray)):
        data = bytes(source) if isinstance(source, bytearray) else source
        name = _describe(data)
        with _open_pil(data) as img:
            decoded = _decode_pil(img, name, min_short_side, keep_pil)
        if isinstance(source, (str, Path)):
            decoded.input_path = str(source)
        elif decoded.reduced:
            decoded.encoded = data
        return decoded
    raise InputError(f"unsupported input type {type(source).__name__}")


def full_image_loader(image: DecodedImage) -> Callable[[], np.ndarray]:
    """A loader of ``image``'s full-resolution RGB pixels, for drawing a result: the file (or
    bytes) is decoded again only if it was decoded at reduced scale or its pixels were not kept."""
    if image.reduced and image.input_path and not image.input_path.startswith(("http://", "https://")):
        path = image.input_path
        return lambda: decode_image(path).rgb
    if image.reduced and image.encoded is not None:
        encoded = image.encoded
        return lambda: decode_image(encoded).rgb
    if image.rgb is None and image.pil is not None:
        pil = image.pil
        return lambda: np.asarray(pil)
    rgb = image.rgb
    return lambda: rgb
