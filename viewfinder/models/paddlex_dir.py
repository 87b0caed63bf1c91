"""PaddleX inference folders as ``model_dir``: settings from ``inference.yml``, weights from the program.

A PaddleX model folder (``*_infer/``, or a training run's ``best_model/inference/``) holds
``inference.yml`` (model name, preprocessing, postprocessing, labels), the program
(``inference.json`` or ``inference.pdmodel``) and ``inference.pdiparams`` (the weights,
named only by the program). viewfinder never runs the program: it builds the network that
``Global.model_name`` names and loads the weights into it.

The program names parameters after the layers that made them (``conv2d_12.w_0``), not after
the dygraph state-dict keys our ``.pdparams`` converters read. ``zoo/paddle_export_maps.json``
(written by ``tools/paddlex_infer_fixtures.py`` from real exports) maps them for every
supported model. A layer's number counts the layers of its type the exporting process had
made before, so names are compared by their rank within their type (``conv2d#12.w_0``):
the same network exported in any process gives the same ranks. Every mismatch (count,
name, shape) is refused, naming the first tensor that differs.

A training run's ``best_model/`` (``best_model.pdparams`` beside ``inference/``) loads the
dygraph checkpoint instead, through the same converter as any ``.pdparams`` file.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError, WeightsError
from ..io.paddle_params import read_tensor_stream
from . import model_dir as our_dir
from .paddle_program import PaddleProgram, read_program
from .preprocess import PreprocessConfig
from .registry import ModelSpec

CONFIG_FILE = "inference.yml"
PARAMS_FILE = "inference.pdiparams"
CHECKPOINT_FILE = "best_model.pdparams"
MAPS_FILE = Path(__file__).parent / "zoo" / "paddle_export_maps.json"

_RANKED_NAME = re.compile(r"^(?P<type>.*?)_(?P<number>\d+)(?P<rest>\..*)?$")


@dataclass
class PaddleXDir:
    """A PaddleX model folder, read (not yet loaded into a network)."""

    folder: Path
    model_name: str
    config: dict[str, Any]
    #: the dygraph checkpoint of a training run (``best_model/best_model.pdparams``), preferred when present
    checkpoint: Path | None = None
    preprocess: PreprocessConfig | None = None
    labels: list[str] | None = None
    #: inference defaults from ``inference.yml`` / the program (``topk``, ``threshold``, NMS settings)
    postprocess: dict[str, Any] = field(default_factory=dict)
    _program: PaddleProgram | None = None

    @property
    def program(self) -> PaddleProgram:
        if self._program is None:
            self._program = read_program(self.folder)
        return self._program


def find_config(path: str | Path) -> Path | None:
    """The folder holding ``inference.yml``: ``path`` itself, or a training run's ``path/inference``."""
    folder = Path(path)
    for candidate in (folder, folder / "inference"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def is_paddlex_dir(path: str | Path) -> bool:
    """A PaddleX model folder (``inference.yml``), and not one of ours: training writes our model dir
    into ``best_model/inference/`` with an ``inference.yml`` beside it for PaddleX's layout."""
    folder = Path(path)
    if (folder / our_dir.CONFIG_FILE).is_file() and (folder / our_dir.WEIGHTS_FILE).is_file():
        return False
    return folder.is_dir() and find_config(path) is not None


def _checkpoint(inference_folder: Path) -> Path | None:
    """``best_model.pdparams`` beside a training run's ``inference/`` folder, if any."""
    if inference_folder.name != "inference":
        return None
    candidate = inference_folder.parent / CHECKPOINT_FILE
    return candidate if candidate.is_file() else None


def read_paddlex_dir(path: str | Path, model_name: str | None = None) -> PaddleXDir:
    """Read a PaddleX model folder's ``inference.yml``.

    ``model_name`` names the model when ``inference.yml`` does not (exports older than
    PaddleX 3 wrote no ``Global`` section); the file's own name wins otherwise, as in PaddleX.
    """
    import yaml

    folder = find_config(path)
    if folder is None:
        raise ConfigError(f"{path}: no {CONFIG_FILE} (not a PaddleX model folder)")
    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{folder / CONFIG_FILE}: invalid YAML ({exc})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{folder / CONFIG_FILE}: expected a mapping")
    name = (config.get("Global") or {}).get("model_name") if isinstance(config.get("Global"), dict) else None
    name = name or model_name
    if not name:
        raise ConfigError(f"{folder / CONFIG_FILE}: no Global.model_name; pass the model's name: "
                          f"create_model(NAME, model_dir={str(path)!r})")
    checkpoint = _checkpoint(folder)
    if checkpoint is None and not (folder / PARAMS_FILE).is_file():
        raise WeightsError(f"{folder}: no {PARAMS_FILE} (the folder's weights)")
    found = PaddleXDir(folder=folder, model_name=str(name), config=config, checkpoint=checkpoint)
    _read_settings(found)
    return found


# --- inference.yml -> preprocessing, labels, postprocessing ---------------------------------

# PaddleX's names (cv2: NEAREST LINEAR BICUBIC AREA LANCZOS4; pil: ... BILINEAR BOX) and
# PaddleDetection's interp numbers (cv2 flags) -> ours
_INTERPOLATION = {"nearest": "nearest", "linear": "bilinear", "bilinear": "bilinear", "bicubic": "bicubic",
                  "cubic": "bicubic", "lanczos": "lanczos", "lanczos4": "lanczos",
                  0: "nearest", 1: "bilinear", 2: "bicubic", 4: "lanczos"}
_BACKENDS = {"cv2": "cv2", "pil": "pillow"}


def _interpolation(value: Any, where: str) -> str:
    key = value.lower() if isinstance(value, str) else value
    if key not in _INTERPOLATION:
        raise ConfigError(f"{where}: interpolation {value!r} is not supported (nearest, linear, bicubic, lanczos)")
    return _INTERPOLATION[key]


def _scale(value: Any, where: str) -> float:
    """NormalizeImage.scale: a number, or PaddleClas's string form ``1.0/255.0``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*(?:/\s*([0-9.]+)\s*)?", str(value))
    if not match:
        raise ConfigError(f"{where}: NormalizeImage scale {value!r} is not a number")
    return float(match.group(1)) / (float(match.group(2)) if match.group(2) else 1.0)


def _size_pair(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise ConfigError(f"{where}: size {value!r} is not an int or [width, height]")


def classification_preprocess(ops: Any, where: str, feature: bool = False) -> PreprocessConfig:
    """PaddleClas ``PreProcess.transform_ops`` -> our preprocessing, as PaddleX's predictors apply them.

    PaddleX's feature predictor ignores ``interpolation`` and ``backend`` (always OpenCV,
    bilinear); its classifiers honour them.
    """
    if not isinstance(ops, list):
        raise ConfigError(f"{where}: PreProcess.transform_ops must be a list")
    values: dict[str, Any] = {"resize_short": None, "crop": None, "resize": None}
    for entry in ops:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{where}: transform op {entry!r} is not a one-key mapping")
        (op, args), = entry.items()
        args = args or {}
        if op == "ResizeImage":
            if args.get("resize_short"):
                values["resize_short"] = int(args["resize_short"])
            elif args.get("size"):
                values["resize"] = _size_pair(args["size"], where)
            else:
                raise ConfigError(f"{where}: ResizeImage needs resize_short or size")
            if not feature:
                values["interpolation"] = _interpolation(args.get("interpolation", "LINEAR"), where)
                backend = str(args.get("backend", "cv2")).lower()
                if backend not in _BACKENDS:
                    raise ConfigError(f"{where}: ResizeImage backend {backend!r} (cv2 or pil)")
                values["backend"] = _BACKENDS[backend]
            else:
                values.update(interpolation="bilinear", backend="cv2")
        elif op == "CropImage":
            values["crop"] = _size_pair(args.get("size", 224), where)[0]
        elif op == "NormalizeImage":
            if str(args.get("order", "") or "") not in ("", "hwc"):
                raise ConfigError(f"{where}: NormalizeImage order {args['order']!r} (PaddleX takes '' or hwc)")
            values["scale"] = _scale(args.get("scale", 1 / 255), where)
            values["mean"] = tuple(float(v) for v in args.get("mean", (0.485, 0.456, 0.406)))
            values["std"] = tuple(float(v) for v in args.get("std", (0.229, 0.224, 0.225)))
        elif op == "ToCHWImage":
            pass
        else:
            raise ConfigError(f"{where}: preprocessing op {op!r} is not supported")
    if values["resize_short"] is None and values["resize"] is None:
        raise ConfigError(f"{where}: no ResizeImage op")
    return PreprocessConfig(**values)


def detection_preprocess(ops: Any, where: str) -> PreprocessConfig:
    """PaddleDetection ``Preprocess`` (``Resize`` / ``NormalizeImage`` / ``Permute``) -> our preprocessing."""
    if not isinstance(ops, list):
        raise ConfigError(f"{where}: Preprocess must be a list")
    values: dict[str, Any] = {"resize_short": None, "crop": None, "backend": "cv2"}
    for entry in ops:
        op = entry.get("type") if isinstance(entry, dict) else None
        if op == "Resize":
            if entry.get("keep_ratio"):
                raise ConfigError(f"{where}: Resize keep_ratio: true is not supported (PP-ShiTuV2_det resizes to a square)")
            height, width = _size_pair(entry.get("target_size"), where)  # PaddleDetection: [h, w]
            values["resize"] = (width, height)
            values["interpolation"] = _interpolation(entry.get("interp", 2), where)
        elif op == "NormalizeImage":
            values["scale"] = 1 / 255 if entry.get("is_scale", True) else 1.0
            if str(entry.get("norm_type") or "mean_std") == "mean_std":
                values["mean"] = tuple(float(v) for v in entry.get("mean", (0.485, 0.456, 0.406)))
                values["std"] = tuple(float(v) for v in entry.get("std", (0.229, 0.224, 0.225)))
            else:
                values["mean"], values["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        elif op == "Permute":
            pass
        else:
            raise ConfigError(f"{where}: detection preprocessing op {op!r} is not supported")
    if "resize" not in values:
        raise ConfigError(f"{where}: no Resize op")
    return PreprocessConfig(**values)


def _label_list(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ConfigError(f"{where}: label_list must be a list")
    return [str(v) for v in value]


def _read_settings(found: PaddleXDir) -> None:
    config, where = found.config, str(found.folder / CONFIG_FILE)
    if "Preprocess" in config:  # PaddleDetection's infer_cfg.yml layout
        found.preprocess = detection_preprocess(config["Preprocess"], where)
        found.labels = _label_list(config.get("label_list"), where)
        if "draw_threshold" in config:
            found.postprocess["threshold"] = float(config["draw_threshold"])
        return
    pre = config.get("PreProcess")
    post = config.get("PostProcess") or {}
    if not isinstance(pre, dict) or not isinstance(post, dict):
        raise ConfigError(f"{where}: expected PreProcess and PostProcess mappings")
    found.preprocess = classification_preprocess(pre.get("transform_ops"), where,
                                                 feature="NormalizeFeatures" in post)
    if isinstance(post.get("Topk"), dict):
        topk = post["Topk"]
        found.labels = _label_list(topk.get("label_list"), where)
        if topk.get("topk") is not None:
            found.postprocess["topk"] = int(topk["topk"])
    elif isinstance(post.get("MultiLabelThreshOutput"), dict):
        thresh = post["MultiLabelThreshOutput"]
        found.labels = _label_list(thresh.get("label_list"), where)
        if thresh.get("threshold") is not None:
            found.postprocess["threshold"] = thresh["threshold"]


def detector_nms(found: PaddleXDir) -> dict[str, Any]:
    """The NMS settings compiled into a detector's program (what Paddle runs; ``inference.yml``'s ``NMS`` block
    is only a note: PaddleDetection's export writes other values there)."""
    attrs = found.program.attrs("multiclass_nms3") or found.program.attrs("multiclass_nms")
    keys = ("score_threshold", "nms_threshold", "nms_top_k", "keep_top_k")
    return {key: (round(float(attrs[key]), 6) if "threshold" in key else int(attrs[key])) for key in keys if key in attrs}


# --- exported weights -> the dygraph state dict our converters read ------------------------------

@lru_cache(maxsize=1)
def export_maps() -> dict[str, Any]:
    return json.loads(MAPS_FILE.read_text(encoding="utf-8"))


def export_map(model_name: str) -> dict[str, Any] | None:
    maps = export_maps()
    key = maps["models"].get(model_name)
    return maps["maps"][key] if key else None


def ranked_names(names: list[str]) -> dict[str, str]:
    """Program parameter name -> ``type#rank.rest``: the layer number replaced by its rank among its type's."""
    parsed: dict[str, tuple[str, int, str] | None] = {}
    numbers: dict[str, set[int]] = {}
    for name in names:
        match = _RANKED_NAME.match(name)
        if match is None:  # an explicit ParamAttr name: compared as is
            parsed[name] = None
            continue
        kind, number = match["type"], int(match["number"])
        numbers.setdefault(kind, set()).add(number)
        parsed[name] = (kind, number, match["rest"] or "")
    ranks = {kind: {n: i for i, n in enumerate(sorted(found))} for kind, found in numbers.items()}
    return {name: name if p is None else f"{p[0]}#{ranks[p[0]][p[1]]}{p[2]}" for name, p in parsed.items()}


@dataclass
class ExportedWeights:
    """The folder's weights under dygraph state-dict keys, and where each came from."""

    state: dict[str, np.ndarray]
    #: dygraph key -> program parameter name (for error messages)
    source: dict[str, str]
    num_classes: int | None
    reparameterized: bool


def exported_state_dict(found: PaddleXDir) -> ExportedWeights:
    """``inference.pdiparams`` as the dygraph state dict of ``found.model_name``, checked against its export map."""
    mapping = export_map(found.model_name)
    if mapping is None:
        reason = export_maps().get("refused", {}).get(found.model_name)
        why = f": {reason}" if reason else f" (supported: {', '.join(sorted(export_maps()['models']))})"
        raise WeightsError(
            f"{found.folder}: loading PaddleX inference weights of {found.model_name} is not supported{why}; pass its training checkpoint instead: "
            f"create_model({found.model_name!r}, weights='.../best_model.pdparams')"
        )
    program = found.program
    tensors = read_tensor_stream(found.folder / PARAMS_FILE)
    where = f"{found.folder}"
    if len(tensors) != len(program.params):
        raise WeightsError(f"{where}: {PARAMS_FILE} holds {len(tensors)} tensors but the program declares "
                           f"{len(program.params)}")
    for param, tensor in zip(program.params, tensors):
        if tuple(tensor.shape) != param.shape:
            raise WeightsError(f"{where}: tensor {param.name} has shape {list(tensor.shape)} in {PARAMS_FILE} but "
                               f"{list(param.shape)} in the program")
    expected = ranked_names([name for name, _ in mapping["params"]])
    keys = {expected[name]: key for name, key in mapping["params"]}
    ours = ranked_names([p.name for p in program.params])
    unknown = [p.name for p in program.params if ours[p.name] not in keys]
    if unknown or len(program.params) != len(keys):
        present = set(ours.values())
        absent = [name for name, _ in mapping["params"] if expected[name] not in present]
        detail = (f"first unexpected tensor {unknown[0]}" if unknown
                  else f"first missing tensor {absent[0]} ({keys[expected[absent[0]]]})")
        raise WeightsError(
            f"{where}: the program's {len(program.params)} parameters do not match {found.model_name}'s export "
            f"({len(keys)} parameters; {detail}): a different architecture or configuration than PaddleX's "
            f"{found.model_name}"
        )
    state: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    for param, tensor in zip(program.params, tensors):
        key = keys[ours[param.name]]
        if key is not None:  # None: a constant the export traced (anchors), not a weight
            state[key] = tensor
            source[key] = param.name
    num_classes = None
    if mapping.get("classes"):
        class_key, axis = mapping["classes"]
        num_classes = int(state[class_key].shape[axis])
    return ExportedWeights(state, source, num_classes, bool(mapping.get("reparameterized")))


def load_exported_weights(module: nn.Module, spec: ModelSpec, found: PaddleXDir, exported: ExportedWeights) -> None:
    """Convert the exported dygraph state dict with the spec's converter; refuse any key or shape mismatch."""
    name = "pdparams_reparameterized" if exported.reparameterized else "pdparams"
    convert = spec.converters.get(name)
    if convert is None:
        raise WeightsError(f"{found.folder}: no PaddleX weight converter exists for {spec.name}")
    mapped = convert(exported.state)
    expected = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}

    def origin(key: str) -> str:
        # the program tensor that became ``key``: converters are per-entry, so convert one at a time
        for dygraph_key, value in exported.state.items():
            try:
                if key in convert({dygraph_key: value}):
                    return f"tensor {exported.source[dygraph_key]} ({dygraph_key})"
            except Exception:  # a converter may need its neighbours; keep looking
                continue
        return f"the weights for {key}"

    missing = [k for k in expected if k not in mapped]
    unexpected = [k for k in mapped if k not in expected]
    if missing or unexpected:
        first = f"{origin(unexpected[0])} has no place in {spec.name}" if unexpected else f"nothing fills {missing[0]}"
        raise WeightsError(f"{found.folder}: the weights do not fit {spec.name} ({len(missing)} missing, "
                           f"{len(unexpected)} unexpected; {first})")
    for key, target in expected.items():
        shape = tuple(np.shape(mapped[key]))
        if shape != tuple(target.shape):
            raise WeightsError(f"{found.folder}: {origin(key)} has shape {list(shape)}; {spec.name} expects "
                               f"{list(target.shape)} for {key}")
    module.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in mapped.items()}, strict=False)
