"""A zero-copy numpy view of a decoded Pillow RGB image, through the Arrow C data interface.

Pillow keeps RGB pixels as 4 bytes (RGB + a pad byte); ``np.asarray(img)`` repacks them
into a new 3-byte array, which costs more than OpenCV's whole resize (1.3 vs 0.4 ms for
640x480). Pillow (>= 11.2) exports its pixel memory as an Arrow array (a fixed-size list of 4
uint8 per pixel); :func:`borrow_rgbx` reads that stable C struct and wraps the memory as an
H x W x 4 view without copying. The view is only valid while the returned owner is alive and
the image is not modified, so callers use it for one operation that writes a new array.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from PIL import Image


class _ArrowArray(ctypes.Structure):
    pass


# struct ArrowArray from the Arrow C data interface specification (an ABI-stable layout).
_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class _ArrowSchema(ctypes.Structure):
    pass


_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def borrow_rgbx(img: Image.Image) -> tuple[np.ndarray, Any] | None:
    """(H x W x 4 uint8 view of ``img``'s pixels, owner to keep alive while using it), or
    None when the image cannot be shared this way (not RGB, an older Pillow, or pixels not
    in one memory block); callers then fall back to ``np.asarray``."""
    if img.mode != "RGB" or not hasattr(img, "__arrow_c_array__"):
        return None
    try:
        schema, array = img.__arrow_c_array__()
        layout = _ArrowSchema.from_address(_capsule_pointer(schema, b"arrow_schema"))
        if layout.format != b"+w:4" or layout.n_children != 1 or layout.children[0].contents.format != b"C":
            return None
        top = _ArrowArray.from_address(_capsule_pointer(array, b"arrow_array"))
        if top.offset != 0 or top.length != img.width * img.height or top.n_children != 1:
            return None
        pixels = top.children[0].contents
        if pixels.offset != 0 or pixels.length != 4 * top.length or pixels.n_buffers != 2 or not pixels.buffers[1]:
            return None
        memory = (ctypes.c_uint8 * pixels.length).from_address(pixels.buffers[1])
    except (ValueError, TypeError, OSError):  # e.g. an image stored in several blocks
        return None
    return np.frombuffer(memory, np.uint8).reshape(img.height, img.width, 4), (schema, array, img)
