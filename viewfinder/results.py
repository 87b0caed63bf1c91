"""Result objects with PaddleX's field names and methods.

Each result is a ``dict`` (PaddleX's ``BaseResult``): ``print()``, ``.str``, ``.json``,
``save_to_json()``, and for visual tasks ``.img`` and ``save_to_img()``. ``input_img`` is
kept for drawing and dropped from every serialised form.

Every result type lives here, one class per task (Ultralytics keeps one ``Results``; ours
differ only in their fields and drawing): :class:`TopkResult` (classification),
:class:`MLClassResult` (multi-label), :class:`FeatureResult` (image features),
:class:`DetResult` (detection), :class:`ShiTuResult` (PP-ShiTuV2), :class:`ErrorResult`
(an input that could not be processed).
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import ConfigError, InputError

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_HIDDEN_KEYS = {"input_img"}


def to_jsonable(value: Any) -> Any:
    """numpy -> Python; float32 values keep their short decimal form (0.62736, not 0.62735998...)."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, (int, str)) else k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype == np.float32:
            # str() of a float32 is its shortest round-tripping decimal.
            return [to_jsonable(v) for v in value] if value.ndim > 1 else [float(str(v)) for v in value]
        return value.tolist()
    if isinstance(value, np.float32):
        return float(str(value))
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return value.as_posix()
    return value


def _unique_stem() -> str:
    return f"{int(time.time())}_{random.randint(0, 9999):04d}"


class BaseResult(dict):
    """A prediction for one input (PaddleX ``BaseResult``)."""

    def __init__(self, data: dict[str, Any], image_loader: Callable[[], np.ndarray] | None = None) -> None:
        super().__init__(data)
        self._image_loader = image_loader

    @property
    def ok(self) -> bool:
        """False for an :class:`ErrorResult` (an input that could not be processed)."""
        return True

    # ``input_img`` is None when the pixels were not kept (GPU decode path): read on first use.
    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if key == "input_img" and value is None and self._image_loader is not None:
            value = self._image_loader()
            super().__setitem__(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    # --- serialisation ---------------------------------------------------------------
    def _public(self) -> dict[str, Any]:
        return {k: v for k, v in self.items() if k not in _HIDDEN_KEYS}

    @property
    def json(self) -> dict[str, Any]:
        return {"res": to_jsonable(self._public())}

    @property
    def str(self) -> dict[str, Any]:
        return {"res": self._public()}

    def __str__(self) -> str:  # the dict repr without the (large) image
        return str(self.str)

    def print(self, format_json: bool | None = None, indent: int = 4, ensure_ascii: bool = False, *,
              json_format: bool | None = None) -> None:
        """Print ``{"res": ...}``: JSON by default (PaddleX's ``format_json=True``), else the dict repr.

        ``json_format`` (PaddleX 3.x's name for the switch) is an alias of ``format_json``.
        """
        if format_json is not None and json_format is not None and bool(format_json) != bool(json_format):
            raise ConfigError(f"print(): format_json={format_json} and json_format={json_format} disagree "
                              "(they are the same switch)")
        as_json = next((v for v in (format_json, json_format) if v is not None), True)
        if as_json:
            print(json.dumps(self.json, indent=indent, ensure_ascii=ensure_ascii))
        else:
            print(self.str)

    def _stem(self) -> str:
        path = self.get("input_path")
        if path and not str(path).startswith(("http://", "https://")):
            return Path(str(path)).stem
        if path:
            return Path(str(path).split("?")[0]).stem or _unique_stem()
        return _unique_stem()

    def _output_path(self, save_path: str | Path, suffixes: set[str], default_suffix: str) -> Path:
        target = Path(save_path)
        if target.suffix.lower() in suffixes:
            target.parent.mkdir(parents=True, exist_ok=True)
            return target
        target.mkdir(parents=True, exist_ok=True)
        return target / f"{self._stem()}_res{default_suffix}"

    def save_to_json(self, save_path: str | Path, indent: int = 4, ensure_ascii: bool = False) -> Path:
        """Write the inner dict to ``<save_path>/<stem>_res.json`` (or to ``save_path`` if it ends in .json)."""
        path = self._output_path(save_path, {".json"}, ".json")
        path.write_text(json.dumps(to_jsonable(self._public()), indent=indent, ensure_ascii=ensure_ascii),
                        encoding="utf-8")
        return path

    # --- visualisation ---------------------------------------------------------------
    def _input_image(self) -> np.ndarray:
        if self._image_loader is not None:
            return self._image_loader()
        return self["input_img"]

    def _visualize(self) -> Image.Image:
        raise NotImplementedError(f"{type(self).__name__} has no visualisation")

    @property
    def img(self) -> dict[str, Image.Image]:
        return {"res": self._visualize()}

    def save_to_img(self, save_path: str | Path) -> Path:
        """Write the drawing to ``<save_path>/<stem>_res<ext>`` (the input's extension, else .png)."""
        suffix = Path(str(self.get("input_path") or "")).suffix.lower()
        default_suffix = suffix if suffix in _IMAGE_SUFFIXES else ".png"
        path = self._output_path(save_path, _IMAGE_SUFFIXES, default_suffix)
        image = self._visualize()
        if path.suffix.lower() in (".jpg", ".jpeg"):
            image.convert("RGB").save(path, quality=95)
        else:
            image.save(path)
        return path

    def save_all(self, save_path: str | Path) -> list[Path]:
        written = [self.save_to_json(save_path)]
        if type(self)._visualize is not BaseResult._visualize:
            written.append(self.save_to_img(save_path))
        return written


class ErrorResult(BaseResult):
    """An input that could not be processed: ``{"input_path", "error"}``; the run goes on."""

    @property
    def ok(self) -> bool:
        return False

    def save_all(self, save_path: str | Path) -> list[Path]:
        return []


class TopkResult(BaseResult):
    """Single-label classification: ``class_ids``, ``scores``, ``label_names`` (best first)."""

    def _visualize(self) -> Image.Image:
        from .visualize import draw_label_lines

        lines = [f"{name} {score:.2f}" for name, score in zip(self["label_names"], self["scores"])]
        return draw_label_lines(self._input_image(), lines)


class MLClassResult(TopkResult):
    """Multi-label classification: classes above the threshold; may be empty."""


class FeatureResult(BaseResult):
    """PaddleX ``IdentityResult``: ``{"input_path", "page_index", "feature"}``.

    Unlike PaddleX it does not keep ``input_img``: ``.img`` / ``save_to_img()`` re-read the input
    (the input image with the feature's dimension and L2 norm written on it). ``save_all()``
    writes the JSON only, as PaddleX's (which has no image for features).
    """

    def _visualize(self) -> Image.Image:
        from .visualize import draw_label_lines

        if self._image_loader is None:
            raise InputError("this feature result has no input image to draw on")
        feature = np.asarray(self["feature"], dtype=np.float32).ravel()
        lines = [f"feature: {feature.size}-d", f"L2 norm: {float(np.linalg.norm(feature)):.4f}"]
        return draw_label_lines(self._input_image(), lines)

    def save_all(self, save_path: str | Path) -> list[Path]:
        return [self.save_to_json(save_path)]


class DetResult(BaseResult):
    """PaddleX ``DetResult``: ``{"input_path", "page_index", "boxes": [{cls_id, label, score, coordinate}]}``."""

    def _visualize(self) -> Image.Image:
        from .visualize import draw_boxes

        boxes = [(box["coordinate"], f"{box['label']} {box['score']:.2f}") for box in self["boxes"]]
        return draw_boxes(self._input_image(), boxes)


class ShiTuResult(BaseResult):
    """``{"input_path", "boxes": [{"labels", "rec_scores", "det_score", "coordinate", "rejected"}]}``
    (``rejected``: the best match failed rec_threshold; labels and rec_scores are then empty)."""

    def _visualize(self) -> Image.Image:
        from .visualize import draw_boxes

        drawn = []
        for box in self["boxes"]:
            text = f"{box['labels'][0]} {box['rec_scores'][0]:.2f}" if box["labels"] else "unknown"
            drawn.append((box["coordinate"], text))
        return draw_boxes(self._input_image(), drawn)
