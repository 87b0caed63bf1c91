"""PaddleX's ``best_model/inference/`` folder: our model directory plus PaddleX's ``inference.yml``.

PaddleX's inference predictor is built from ``inference.yml`` (``Global.model_name``,
``PreProcess.transform_ops``, ``PostProcess``) next to a Paddle graph. We cannot write a Paddle
graph, so the folder holds what *our* loader reads (``config.yaml`` + ``model.safetensors``, and
``inference.onnx`` when the model dir has one) with an ``inference.yml`` that describes the same
preprocessing and postprocessing in PaddleX's words, so that ``Predict.model_dir=output/best_model/inference``
(the docs' path) loads, and tools that read ``inference.yml`` see the truth.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from ..models.model_dir import CONFIG_FILE, WEIGHTS_FILE, read_model_dir

INFERENCE_DIR = "inference"
INFERENCE_YML = "inference.yml"
ONNX_FILE = "inference.onnx"


def _transform_ops(preprocess: dict[str, Any]) -> list[dict[str, Any]]:
    """PaddleClas's transform list (without DecodeImage), as its exporter dumps it."""
    backend = "pil" if preprocess.get("backend") == "pillow" else "cv2"
    resize: dict[str, Any] = {"interpolation": preprocess.get("interpolation", "bilinear"), "backend": backend}
    ops: list[dict[str, Any]] = []
    if preprocess.get("resize"):
        ops.append({"ResizeImage": {"size": list(preprocess["resize"]), **resize}})
    else:
        ops.append({"ResizeImage": {"resize_short": int(preprocess["resize_short"]), **resize}})
        if preprocess.get("crop"):
            ops.append({"CropImage": {"size": int(preprocess["crop"])}})
    ops.append({"NormalizeImage": {"scale": float(preprocess.get("scale", 1 / 255)), "mean": list(preprocess["mean"]),
                                   "std": list(preprocess["std"]), "order": "hwc", "channel_num": 3}})
    ops.append({"ToCHWImage": None})
    return ops


def _post_process(config: dict[str, Any]) -> dict[str, Any]:
    labels = list(config.get("labels") or [])
    post = config.get("postprocess") or {}
    task = config.get("task")
    if task == "image_classification":
        return {"Topk": {"topk": int(post.get("topk", 5)), "label_list": labels}}
    if task == "image_multilabel_classification":
        return {"MultiLabelThreshOutput": {"threshold": post.get("threshold", 0.5), "label_list": labels}}
    return {"NormalizeFeatures": None}


def inference_yml(config: dict[str, Any]) -> dict[str, Any]:
    """PaddleX's ``inference.yml`` content for a model dir's ``config.yaml`` (as :func:`read_model_dir` returns it)."""
    return {
        "Global": {"model_name": config["model_name"]},
        "PreProcess": {"transform_ops": _transform_ops(config["preprocess"])},
        "PostProcess": _post_process(config),
    }


def write_inference_dir(model_dir: str | Path, target: str | Path | None = None) -> Path:
    """Copy ``model_dir`` (config.yaml, model.safetensors, inference.onnx if present) into ``target``
    (default ``<model_dir>/inference``) and write ``inference.yml`` there; returns ``target``.

    Copies, not hard links: the trainer rewrites ``best_model/model.safetensors`` in place when a
    later epoch wins, which must not change an inference folder written earlier.
    """
    source = Path(model_dir)
    config = read_model_dir(source)
    folder = Path(target) if target is not None else source / INFERENCE_DIR
    if folder.resolve() != source.resolve():
        if folder.exists():
            shutil.rmtree(folder)  # a stale copy (an earlier run) must not mix with this one
        folder.mkdir(parents=True)
        for name in (CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE):
            if (source / name).is_file():
                shutil.copyfile(source / name, folder / name)
    (folder / INFERENCE_YML).write_text(yaml.safe_dump(inference_yml(config), sort_keys=False, allow_unicode=True),
                                        encoding="utf-8")
    return folder
