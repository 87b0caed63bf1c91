#!/usr/bin/env python3
"""Build PaddleX 3.7.2 inference models with random weights, to time PaddleX on this machine.

Runs in the PaddleX side environment (``make paddlex-env``), never in ours. For each model
it builds the official architecture from PaddleClas / PaddleDetection source (the pip
packages), exports it the way PaddleX's own export does (``paddle.jit.save`` of the eval
model, re-parameterised where the model has that step, softmax appended for classifiers,
NMS inside the detector's graph) and writes the ``inference.yml`` that PaddleX's predictors
read. PP-ShiTuV2_det and PP-ShiTuV2_rec are first checked against Paddle's stored outputs
in ``shared/parity`` (same architecture as PaddleX's), then exported: the recogniser with
those weights, the detector freshly initialised (see ``build_detector``).

    .venv-paddlex/bin/python benchmarks/paddlex/build_models.py OUT_DIR [--parity ../shared/parity]

Speed does not depend on the weights, so random weights time what PaddleX users run.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import numpy as np
import paddle
import yaml
from paddle.static import InputSpec

import paddleclas

# paddleclas ships its package as paddleclas/ppcls but imports itself as ppcls
sys.path.insert(0, os.path.dirname(paddleclas.__file__))
from ppcls.utils import logger as ppcls_logger  # noqa: E402

ppcls_logger.init_logger()  # some PaddleClas constructors log a deprecation warning

IMAGENET_NORMALIZE = {"NormalizeImage": {"channel_num": 3, "mean": [0.485, 0.456, 0.406],
                                         "std": [0.229, 0.224, 0.225], "order": "", "scale": 1 / 255}}
CLASSIFIERS = {  # PaddleX model name -> PaddleClas constructor
    "PP-LCNet_x1_0": ("ppcls.arch.backbone.legendary_models.pp_lcnet", "PPLCNet_x1_0"),
    "PP-HGNetV2-B0": ("ppcls.arch.backbone.legendary_models.pp_hgnet_v2", "PPHGNetV2_B0"),
    "ResNet50": ("ppcls.arch.backbone.legendary_models.resnet", "ResNet50"),
    "PP-LCNetV2_base": ("ppcls.arch.backbone.legendary_models.pp_lcnet_v2", "PPLCNetV2_base"),
}


def _re_parameterize(model: paddle.nn.Layer) -> None:
    """What PaddleClas's export does for models with re-parameterisable blocks."""
    for layer in model.sublayers():
        if hasattr(layer, "re_parameterize"):
            layer.re_parameterize()


def _save(model: paddle.nn.Layer, out: Path, input_spec: list, config: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    static = paddle.jit.to_static(model, input_spec=input_spec, full_graph=True)
    paddle.jit.save(static, str(out / "inference"))
    (out / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"{out}: {sorted(p.name for p in out.iterdir())}", flush=True)


def build_classifier(name: str, out: Path) -> None:
    import importlib

    module, constructor = CLASSIFIERS[name]
    paddle.seed(0)
    backbone = getattr(importlib.import_module(module), constructor)()
    backbone.eval()
    _re_parameterize(backbone)
    model = paddle.nn.Sequential(backbone, paddle.nn.Softmax(axis=-1))
    config = {
        "Global": {"model_name": name},
        "PreProcess": {"transform_ops": [{"ResizeImage": {"resize_short": 256}}, {"CropImage": {"size": 224}},
                                         IMAGENET_NORMALIZE, {"ToCHWImage": None}]},
        "PostProcess": {"Topk": {"topk": 5, "label_list": [f"class_{i}" for i in range(1000)]}},
    }
    _save(model, out / name, [InputSpec([None, 3, 224, 224], "float32", name="x")], config)


class _Features(paddle.nn.Layer):
    """RecModel's exported output: ``features`` (the BNNeck output), as infer_output_key says."""

    def __init__(self, rec_model: paddle.nn.Layer) -> None:
        super().__init__()
        self.rec_model = rec_model

    def forward(self, x):
        return self.rec_model(x)["features"]


def build_recognition(parity: Path, out: Path) -> None:
    from ppcls.arch import RecModel

    model = RecModel(
        Backbone={"name": "PPLCNetV2_base_ShiTu", "pretrained": False, "use_ssld": True, "class_expand": 512},
        BackboneStopLayer={"name": "flatten"},
        Neck={"name": "BNNeck", "num_features": 512},
        Head={"name": "FC", "embedding_size": 512, "class_num": 16},
    )
    model.set_state_dict(paddle.load(str(parity / "PP-ShiTuV2_rec" / "model.pdparams")))
    model.eval()
    _check(_Features(model), parity / "PP-ShiTuV2_rec", "output.npy")
    _re_parameterize(model)
    config = {
        "Global": {"model_name": "PP-ShiTuV2_rec"},
        "PreProcess": {"transform_ops": [
            {"ResizeImage": {"size": [224, 224], "return_numpy": False, "interpolation": "bilinear", "backend": "cv2"}},
            IMAGENET_NORMALIZE, {"ToCHWImage": None}]},
        "PostProcess": {"NormalizeFeatures": None},
    }
    _save(_Features(model), out / "PP-ShiTuV2_rec", [InputSpec([None, 3, 224, 224], "float32", name="x")], config)


def build_detector(parity: Path, out: Path, work: Path) -> None:
    import ppdet.engine.trainer as ppdet_trainer
    import ppdet.modeling.ops as ppdet_ops
    from ppdet.core.workspace import load_config
    from ppdet.engine import Trainer

    # PaddleDetection 2.6 (the last on PyPI) predates Paddle 3's PIR programs: its export
    # traces with full_graph=False and builds NMS with the old static-graph op helper.
    # The same NMS kernel through Paddle 3's op API, and a full-graph trace, export it.
    def multiclass_nms(bboxes, scores, score_threshold, nms_top_k, keep_top_k, nms_threshold=0.3,
                       normalized=True, nms_eta=1.0, background_label=-1, return_index=False,
                       return_rois_num=True, rois_num=None, name=None):
        output, index, count = paddle._C_ops.multiclass_nms3(
            bboxes, scores, rois_num, score_threshold, nms_top_k, keep_top_k, nms_threshold,
            normalized, nms_eta, background_label)
        return output, count, (index if return_index else None)

    ppdet_ops.multiclass_nms = multiclass_nms
    ppdet_trainer.paddle.jit.to_static = functools.partial(paddle.jit.to_static, full_graph=True)

    cfg = load_config(str(parity / "PP-ShiTuV2_det" / "ppdet_config.yml"))
    cfg.use_gpu = False
    paddle.seed(0)
    trainer = Trainer(cfg, mode="test")
    # Exported freshly initialised (Paddle's own initialisers, PicoHead's 1 % class prior):
    # like PaddleX's measured workload, nothing passes det_threshold and every query falls
    # back to one whole-image crop. The parity weights score many degenerate boxes.
    fresh = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    trainer.model.set_state_dict(paddle.load(str(parity / "PP-ShiTuV2_det" / "model.pdparams")))
    trainer.model.eval()
    image = paddle.to_tensor(np.load(parity / "PP-ShiTuV2_det" / "input.npy"))
    head_outputs = trainer.model.head(trainer.model.neck(trainer.model.backbone({"image": image})))
    _report("PP-ShiTuV2_det", head_outputs[0].numpy(), np.load(parity / "PP-ShiTuV2_det" / "out_scores.npy"))
    trainer.model.set_state_dict(fresh)
    trainer.export(str(work))
    exported = work / "ppdet_config"
    target = out / "PP-ShiTuV2_det"
    target.mkdir(parents=True, exist_ok=True)
    (exported / "model.json").replace(target / "inference.json")
    (exported / "model.pdiparams").replace(target / "inference.pdiparams")
    config = yaml.safe_load((exported / "infer_cfg.yml").read_text())
    config.update({"Global": {"model_name": "PP-ShiTuV2_det"}, "label_list": ["foreground"]})
    (target / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"{target}: {sorted(p.name for p in target.iterdir())}", flush=True)


def _check(model: paddle.nn.Layer, fixture: Path, output_file: str) -> None:
    with paddle.no_grad():
        got = model(paddle.to_tensor(np.load(fixture / "input.npy"))).numpy()
    _report(fixture.name, got, np.load(fixture / output_file))


def _report(name: str, got: np.ndarray, expected: np.ndarray) -> None:
    relative = float(np.abs(got - expected).max() / np.abs(expected).max())
    print(f"{name}: max abs diff vs the parity fixture {relative:.2g} of the output range", flush=True)
    if relative > 1e-3:
        raise SystemExit(f"{name}: the rebuilt PaddleX model does not match shared/parity ({relative:.2g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--parity", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "parity")
    parser.add_argument("--models", nargs="+", default=[*CLASSIFIERS, "PP-ShiTuV2_rec", "PP-ShiTuV2_det"])
    args = parser.parse_args()
    paddle.set_device("cpu")
    for name in args.models:
        if name in CLASSIFIERS:
            build_classifier(name, args.out)
        elif name == "PP-ShiTuV2_rec":
            build_recognition(args.parity, args.out)
        elif name == "PP-ShiTuV2_det":
            build_detector(args.parity, args.out, args.out / ".ppdet_export")
        else:
            raise SystemExit(f"unknown model {name!r}")


if __name__ == "__main__":
    main()
