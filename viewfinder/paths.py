"""Where viewfinder keeps its files on disk.

``$VIEWFINDER_HOME`` (default ``~/.cache/viewfinder``) holds ``weights/`` (downloaded or
seeded weight files, under their original file names), ``onnx/`` (exported models) and
``inputs/`` (downloaded prediction inputs).
"""
from __future__ import annotations

import os
from pathlib import Path


def viewfinder_home() -> Path:
    """The root cache folder; read from the environment on every call so tests can move it."""
    env = os.environ.get("VIEWFINDER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "viewfinder"


def weights_dir() -> Path:
    return viewfinder_home() / "weights"


def onnx_dir() -> Path:
    return viewfinder_home() / "onnx"
