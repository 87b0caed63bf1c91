#!/usr/bin/env python3
"""PaddleX inference folders, built with Paddle, for viewfinder's Paddle-free loader (issue 26).

Runs in the PaddleX side environment (``make paddlex-env``), never in ours. Each model is
built from PaddleClas / PaddleDetection source and exported the way PaddleX's export does
(``paddle.jit.save`` of the eval model, re-parameterised where the model has that step,
softmax / sigmoid appended for classifiers, NMS inside the detector), with the
``inference.yml`` PaddleX's predictors read. Two jobs:

``maps``: ``viewfinder/models/zoo/paddle_export_maps.json``. An exported program names its
parameters after the layers that made them (``conv2d_12.w_0``, ``batch_norm2d_3.w_1``),
not after the dygraph state-dict keys our ``.pdparams`` converters take. For every
supported model this records, from a real export, program name -> state-dict key (and
which key's axis carries the class count). Layer numbers depend on what the exporting
process built before, so viewfinder matches names by rank within their layer type.

``fixtures``: ``tests/fixtures/paddlex_infer/<name>/``: the folder's ``inference.yml``
and program, ``inference.pdiparams`` where small enough to commit (its sha256 in
``paddlex.json`` always: the tests rebuild the others from ``../shared/parity`` and check
the digest), and PaddleX's own predictions (``create_model(name, model_dir=folder)``)
on a seeded photo plus the raw program output for a seeded input, in ``paddlex.json``.
Weights: the parity checkpoints in ``../shared/parity`` (random, non-trivial).

    .venv-paddlex/bin/python tools/paddlex_infer_fixtures.py maps
    .venv-paddlex/bin/python tools/paddlex_infer_fixtures.py fixtures [--models NAME ...] [--out DIR]
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fcntl

import numpy as np
import paddle
import yaml
from paddle.static import InputSpec

import paddleclas

sys.path.insert(0, os.path.dirname(paddleclas.__file__))  # paddleclas imports itself as ppcls
sys.path.insert(0, str(Path(__file__).resolve().parent / "parity"))
from make_fixtures import arch_config  # noqa: E402  (how each PaddleX name is built)
from ppcls.utils import logger as ppcls_logger  # noqa: E402

ppcls_logger.init_logger()

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIEWFINDER_SHARED", ROOT.parent / "shared"))
MAPS_FILE = ROOT / "viewfinder" / "models" / "zoo" / "paddle_export_maps.json"
FIXTURES = ROOT / "tests" / "fixtures" / "paddlex_infer"
PHOTO = ROOT / ".assets" / "photos" / "chelsea.png"
RAW_SEED = 0  # the raw program output is for np.random.RandomState(RAW_SEED).standard_normal(input shape)
CONSTANT_PREFIX = "eager_tmp_"
COMMIT_PDIPARAMS_MAX = 8 << 20  # bigger parameter files are rebuilt by the tests from ../shared/parity

LCNET = {f"PP-LCNet_{w}": f"PPLCNet_{w}" for w in ("x0_25", "x0_5", "x0_75", "x1_0", "x1_5", "x2_0", "x2_5")}
HGNETV2 = {f"PP-HGNetV2-B{b}": f"PPHGNetV2_B{b}" for b in range(7)}
# PaddleX's *_ML configs: backbone (class_num 80) + add_ml_decoder_head(query_num 80, in_channels)
ML = {
    "PP-LCNet_x1_0_ML": ("pp_lcnet", "PPLCNet_x1_0", 1280),
    "PP-HGNetV2-B0_ML": ("pp_hgnet_v2", "PPHGNetV2_B0", 2048),
    "PP-HGNetV2-B4_ML": ("pp_hgnet_v2", "PPHGNetV2_B4", 2048),
    "PP-HGNetV2-B6_ML": ("pp_hgnet_v2", "PPHGNetV2_B6", 2048),
    "ResNet50_ML": ("resnet", "ResNet50", 2048),
}
#: every other classification / feature name of tools/parity/names.txt, built from its PaddleClas
#: config (tools/parity/make_fixtures.py). Left out: PP-LCNetV2_small / _base, which PaddleX
#: exports re-parameterised (branches fused) and whose network (timm lcnetv2) has no fused form here.
NAMES_FILE = ROOT / "tools" / "parity" / "names.txt"
REFUSED = {name: "PaddleX exports it re-parameterised (each block's branches fused into one conv) and "
                  "viewfinder's network (timm lcnetv2) has no fused form"
           for name in ("PP-LCNetV2_small", "PP-LCNetV2_base")}
FIXTURE_MODELS = ("PP-LCNet_x0_25", "PP-HGNetV2-B0", "PP-LCNet_x1_0_ML", "PP-ShiTuV2_rec", "PP-ShiTuV2_det",
                  "MobileNetV3_small_x0_35")
#: fixtures added later keep the repository small: their parameter files are always rebuilt by the tests
REBUILT = {"MobileNetV3_small_x0_35"}

NORMALIZE = {"NormalizeImage": {"channel_num": 3, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "order": "", "scale": 1 / 255}}


class Built:
    """One model as PaddleX exports it: the dygraph model (state-dict keys), the export wrapper, its config."""

    def __init__(self, model, export, input_spec, config, class_count=None):
        self.model, self.export, self.input_spec, self.config = model, export, input_spec, config
        self.class_count = class_count


def _re_parameterize(model: paddle.nn.Layer) -> None:
    """PaddleClas's export step for models with re-parameterisable blocks (PP-LCNetV2)."""
    for layer in model.sublayers():
        if hasattr(layer, "re_parameterize") and not getattr(layer, "is_repped", False):
            layer.re_parameterize()


def _labels(count: int) -> list[str]:
    return [f"class_{i}" for i in range(count)]


def _backbone(module: str, constructor: str, **kwargs):
    return getattr(importlib.import_module(f"ppcls.arch.backbone.legendary_models.{module}"), constructor)(**kwargs)


def build_classifier(name: str, classes: int = 1000) -> Built:
    module = "pp_lcnet" if name in LCNET else "pp_hgnet_v2"
    model = _backbone(module, {**LCNET, **HGNETV2}[name], class_num=classes)
    config = {
        "Global": {"model_name": name},
        "PreProcess": {"transform_ops": [{"ResizeImage": {"resize_short": 256}}, {"CropImage": {"size": 224}},
                                         NORMALIZE, {"ToCHWImage": None}]},
        "PostProcess": {"Topk": {"topk": 5, "label_list": _labels(classes)}},
    }
    return Built(model, paddle.nn.Sequential(model, paddle.nn.Softmax(axis=-1)),
                 [InputSpec([None, 3, 224, 224], "float32", name="x")], config, classes)


def build_multilabel(name: str, classes: int = 80) -> Built:
    from ppcls.arch.gears import add_ml_decoder_head

    module, constructor, in_channels = ML[name]
    model = _backbone(module, constructor, class_num=classes)
    add_ml_decoder_head(model, {"query_num": 80, "class_num": classes, "in_channels": in_channels})
    config = {
        "Global": {"model_name": name},
        "PreProcess": {"transform_ops": [{"ResizeImage": {"size": [448, 448]}}, NORMALIZE, {"ToCHWImage": None}]},
        "PostProcess": {"MultiLabelThreshOutput": {"threshold": 0.5, "label_list": _labels(classes)}},
    }
    return Built(model, paddle.nn.Sequential(model, paddle.nn.Sigmoid()),
                 [InputSpec([None, 3, 448, 448], "float32", name="x")], config, classes)


class _Features(paddle.nn.Layer):
    """RecModel exported with ``infer_output_key: features`` (the BNNeck output)."""

    def __init__(self, rec_model: paddle.nn.Layer) -> None:
        super().__init__()
        self.rec_model = rec_model

    def forward(self, x):
        return self.rec_model(x)["features"]


def build_recognition(name: str = "PP-ShiTuV2_rec", embedding: int = 512) -> Built:
    from ppcls.arch import RecModel

    model = RecModel(
        Backbone={"name": "PPLCNetV2_base_ShiTu", "pretrained": False, "use_ssld": True, "class_expand": embedding},
        BackboneStopLayer={"name": "flatten"},
        Neck={"name": "BNNeck", "num_features": embedding},
        Head={"name": "FC", "embedding_size": embedding, "class_num": 16, "bias_attr": False},
    )
    config = {
        "Global": {"model_name": name},
        "PreProcess": {"transform_ops": [
            {"ResizeImage": {"size": [224, 224], "return_numpy": False, "interpolation": "bilinear", "backend": "cv2"}},
            NORMALIZE, {"ToCHWImage": None}]},
        "PostProcess": {"NormalizeFeatures": None},
    }
    return Built(model, _Features(model), [InputSpec([None, 3, 224, 224], "float32", name="x")], config, embedding)


def _ppdet_patches() -> None:
    """PaddleDetection 2.6 predates PIR: its NMS through Paddle 3's op API, full-graph tracing (as build_models.py)."""
    import ppdet.engine.trainer as ppdet_trainer
    import ppdet.modeling.ops as ppdet_ops

    def multiclass_nms(bboxes, scores, score_threshold, nms_top_k, keep_top_k, nms_threshold=0.3,
                       normalized=True, nms_eta=1.0, background_label=-1, return_index=False,
                       return_rois_num=True, rois_num=None, name=None):
        output, index, count = paddle._C_ops.multiclass_nms3(
            bboxes, scores, rois_num, score_threshold, nms_top_k, keep_top_k, nms_threshold,
            normalized, nms_eta, background_label)
        return output, count, (index if return_index else None)

    ppdet_ops.multiclass_nms = multiclass_nms
    if not isinstance(ppdet_trainer.paddle.jit.to_static, functools.partial):
        ppdet_trainer.paddle.jit.to_static = functools.partial(paddle.jit.to_static, full_graph=True)


def build_detector(name: str = "PP-ShiTuV2_det", classes: int = 1) -> Built:
    from ppdet.core.workspace import load_config
    from ppdet.engine import Trainer

    _ppdet_patches()
    cfg = load_config(str(SHARED / "parity" / "PP-ShiTuV2_det" / "ppdet_config.yml"))
    cfg.use_gpu = False
    cfg.num_classes = classes  # shared with the head (ppdet's __shared__)
    trainer = Trainer(cfg, mode="test")
    return Built(trainer.model, trainer, None, {"Global": {"model_name": name}}, classes)


def build_generic(name: str, classes: int | None = None) -> Built:
    """Any other names.txt model, from its PaddleClas config (as the parity fixtures build it)."""
    from ppcls.arch import build_model

    config, shape = arch_config(name)
    config = json.loads(json.dumps(config))
    arch = config["Arch"]
    size = shape[-1]
    if arch["name"] == "RecModel":  # PP-ShiTuV2_rec_CLIP_*: the neck's output is the feature
        count = classes or arch["Neck"]["class_num"]
        arch["Neck"]["class_num"] = count
        # the ArcMargin training head is not in the exported program (nor traceable: Paddle's AST
        # conversion fails on it); leaving it out changes no program tensor
        arch.pop("Head", None)
        model = build_model(config)
        yml = {
            "Global": {"model_name": name},
            "PreProcess": {"transform_ops": [
                {"ResizeImage": {"size": [size, size], "return_numpy": False, "interpolation": "bilinear",
                                 "backend": "cv2"}}, NORMALIZE, {"ToCHWImage": None}]},
            "PostProcess": {"NormalizeFeatures": None},
        }
        return Built(model, _Features(model), [InputSpec([None, 3, size, size], "float32", name="x")], yml, count)
    multilabel = "MLDecoder" in config
    count = classes or arch["class_num"]
    arch["class_num"] = count
    if multilabel:
        config["MLDecoder"]["class_num"] = count
    model = build_model(config)
    if multilabel:
        ops = [{"ResizeImage": {"size": [size, size]}}, NORMALIZE, {"ToCHWImage": None}]
        post = {"MultiLabelThreshOutput": {"threshold": 0.5, "label_list": _labels(count)}}
        head = paddle.nn.Sigmoid()
    else:
        resize = 384 if size == 384 else 256
        ops = [{"ResizeImage": {"resize_short": resize}}, {"CropImage": {"size": size}}, NORMALIZE,
               {"ToCHWImage": None}]
        post = {"Topk": {"topk": 5, "label_list": _labels(count)}}
        head = paddle.nn.Softmax(axis=-1)
    yml = {"Global": {"model_name": name}, "PreProcess": {"transform_ops": ops}, "PostProcess": post}
    return Built(model, paddle.nn.Sequential(model, head), [InputSpec([None, 3, size, size], "float32", name="x")],
                 yml, count)


def generic_names() -> list[str]:
    special = {"PP-ShiTuV2_rec", *ML}
    return [name for name in NAMES_FILE.read_text().split()
            if name not in {*LCNET, *HGNETV2, *special, *REFUSED}]


def build(name: str, classes: int | None = None) -> Built:
    with paddle.utils.unique_name.guard():
        if name in LCNET or name in HGNETV2:
            return build_classifier(name, classes or 1000)
        if name in ML:
            return build_multilabel(name, classes or 80)
        if name == "PP-ShiTuV2_rec":
            return build_recognition(name, classes or 512)
        if name == "PP-ShiTuV2_det":
            return build_detector(name, classes or 1)
        if name in generic_names():
            return build_generic(name, classes)
    raise SystemExit(f"unknown model {name!r}")


def export(built: Built, out: Path) -> None:
    """Export as PaddleX does: eval, re-parameterise, trace, ``jit.save``; write ``inference.yml``."""
    out.mkdir(parents=True, exist_ok=True)
    built.model.eval()
    _re_parameterize(built.model)
    if built.input_spec is None:  # the detector: PaddleDetection's own export (NMS in the graph)
        with tempfile.TemporaryDirectory() as work:
            built.export.export(work)
            exported = Path(work) / "ppdet_config"
            for suffix in (".json", ".pdmodel", ".pdiparams"):
                if (exported / f"model{suffix}").is_file():
                    shutil.copyfile(exported / f"model{suffix}", out / f"inference{suffix}")
            config = yaml.safe_load((exported / "infer_cfg.yml").read_text())
        config.update(built.config)
        config["label_list"] = ["foreground"] if built.class_count == 1 else _labels(built.class_count)
    else:
        static = paddle.jit.to_static(built.export, input_spec=built.input_spec, full_graph=True)
        paddle.jit.save(static, str(out / "inference"))
        config = built.config
    (out / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def program_names(folder: Path) -> list[str]:
    """Parameter names of an exported program (PIR JSON), as in inference.pdiparams."""
    program = json.loads((folder / "inference.json").read_text())
    ops = program["program"]["regions"][0]["blocks"][0]["ops"]
    return sorted(op["A"][3] for op in ops if op["#"] == "p")


def name_to_key(model: paddle.nn.Layer) -> dict[str, str]:
    return {tensor.name: key for key, tensor in model.state_dict().items()}


def _shapes(model: paddle.nn.Layer) -> dict[str, list[int]]:
    return {key: list(tensor.shape) for key, tensor in model.state_dict().items()}


def class_axis(name: str, keys: list[str], default: int) -> list | None:
    """The first (key, axis) whose size is the class count in three builds (the count is a constructor argument)."""
    counts = (default, 7, 33)
    shapes = [_shapes(build(name, count).model) for count in counts]
    for key in keys:
        dims = [shape.get(key) for shape in shapes]
        if any(d is None or len(d) != len(dims[0]) for d in dims):
            continue
        for axis in range(len(dims[0])):
            if [d[axis] for d in dims] == list(counts):
                return [key, axis]
    return None


def export_map(name: str) -> dict:
    built = build(name)
    with tempfile.TemporaryDirectory() as work:
        export(built, Path(work))
        names = program_names(Path(work))
    keys = name_to_key(built.model)
    # Tensors made by plain tensor ops (``eager_tmp_N``) are constants, not weights: the
    # detector's anchor grid, traced at export, and its 0..reg_max projection. Their numbers
    # depend on everything the process computed before, so they are recorded as constants.
    for program_name in names:
        if program_name.startswith(CONSTANT_PREFIX):
            keys[program_name] = None
    missing = [n for n in names if n not in keys]
    if missing:
        raise SystemExit(f"{name}: program parameters without a state-dict key: {missing[:5]}")
    params = [[n, keys[n]] for n in names]
    entry = {"params": params,
             "classes": class_axis(name, [k for _, k in params if k is not None], built.class_count)}
    if any(getattr(layer, "use_rep", False) for layer in built.model.sublayers()
           if hasattr(layer, "re_parameterize")):
        entry["reparameterized"] = True  # the program holds fused branches (PP-LCNetV2 blocks)
    return entry


def write_maps(models: list[str], merge: bool = False) -> None:
    """Export each model and write its map; ``merge``: add to the maps file instead of replacing it.

    Each model is written as soon as it is exported (under a lock: several processes may share the file).
    """
    failed = []
    for position, name in enumerate(models):
        try:
            entry = export_map(name)
        except Exception as exc:  # report every model, then fail
            failed.append(name)
            print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
            continue
        print(f"{name}: {len(entry['params'])} parameters, classes {entry['classes']}", flush=True)
        _merge_map(name, entry, replace=position == 0 and not merge)
    if failed:
        sys.exit(f"failed: {' '.join(failed)}")


def _merge_map(name: str, entry: dict, replace: bool) -> None:
    with open(Path(tempfile.gettempdir()) / "paddle_export_maps.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        maps: dict[str, dict] = {}
        index: dict[str, str] = {}
        if not replace and MAPS_FILE.is_file():
            old = json.loads(MAPS_FILE.read_text())
            maps, index = old["maps"], old["models"]
            index.pop(name, None)
            maps = {key: value for key, value in maps.items() if key in set(index.values())}
        same = next((key for key, value in maps.items() if value == entry), None)
        if same is None:
            same = name
            maps[name] = entry
        index[name] = same
        _write_document(maps, index)


def _write_document(maps: dict, index: dict) -> None:
    document = {
        "generated_by": "tools/paddlex_infer_fixtures.py maps",
        "versions": {"paddlepaddle": paddle.__version__, "paddleclas": _version("paddleclas"),
                     "paddledet": _version("paddledet")},
        "models": dict(sorted(index.items())),
        "refused": REFUSED,
        "maps": maps,
    }
    MAPS_FILE.write_text(_dump_maps(document))
    print(f"wrote {MAPS_FILE} ({MAPS_FILE.stat().st_size} bytes)")


def _dump_maps(document: dict) -> str:
    """JSON with one parameter pair per line (readable diffs when a map changes)."""
    lines = ["{", f'"generated_by": {json.dumps(document["generated_by"])},',
             f'"versions": {json.dumps(document["versions"])},', f'"models": {json.dumps(document["models"], indent=1)},',
             f'"refused": {json.dumps(document["refused"], indent=1)},',
             '"maps": {']
    for position, (key, entry) in enumerate(document["maps"].items()):
        extra = {k: v for k, v in entry.items() if k != "params"}
        lines.append(f"{json.dumps(key)}: {{" + "".join(f"{json.dumps(k)}: {json.dumps(v)}, " for k, v in extra.items())
                     + '"params": [')
        lines.append(",\n".join(json.dumps(pair, separators=(",", ":")) for pair in entry["params"]))
        lines.append("]}" + ("," if position < len(document["maps"]) - 1 else ""))
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


# --- fixtures ---------------------------------------------------------------------------------

# The detector's random parity weights saturate every score to 1.0 on a natural photo, which
# would leave the order of NMS's output to ties: its output convs are scaled down (in numpy,
# so that the tests rebuild the same bytes) to spread the scores over 0.74-0.95.
WEIGHT_SCALES = {"PP-ShiTuV2_det": {"contains": "head_cls", "factor": 1e-3}}


def load_parity_weights(built: Built, name: str) -> None:
    state = paddle.load(str(SHARED / "parity" / name / "model.pdparams"))
    scale = WEIGHT_SCALES.get(name)
    if scale:
        state = {key: (np.asarray(value) * np.float32(scale["factor"])).astype(np.float32)
                 if scale["contains"] in key else value for key, value in state.items()}
    missing, unexpected = built.model.set_state_dict(state)
    if missing or unexpected:
        raise SystemExit(f"{name}: parity weights do not fit ({missing[:3]}, {unexpected[:3]})")


def raw_output(folder: Path, shape: list[int]) -> np.ndarray:
    """The program's output for the seeded input, through Paddle Inference (what PaddleX runs)."""
    from paddle import inference

    config = inference.Config(str(folder / "inference.json"), str(folder / "inference.pdiparams"))
    config.disable_gpu()
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    x = np.random.RandomState(RAW_SEED).standard_normal(shape).astype(np.float32)
    predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(x)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def paddlex_predictions(name: str, folder: Path) -> dict:
    """PaddleX's own predictions on the photo, every class / box kept (no top-k or threshold cut)."""
    from paddlex import create_model

    model = create_model(model_name=name, model_dir=str(folder), device="cpu")
    config = yaml.safe_load((folder / "inference.yml").read_text())
    if name == "PP-ShiTuV2_det":
        result = next(iter(model.predict(str(PHOTO), threshold=0.0)))
        return {"boxes": [{"cls_id": int(b["cls_id"]), "label": b["label"], "score": float(b["score"]),
                           "coordinate": [float(c) for c in b["coordinate"]]} for b in result["boxes"]]}
    if name == "PP-ShiTuV2_rec":
        result = next(iter(model.predict(str(PHOTO))))
        return {"feature": [float(v) for v in np.asarray(result["feature"]).ravel()]}
    if "MultiLabelThreshOutput" in config["PostProcess"]:
        result = next(iter(model.predict(str(PHOTO), threshold=0.0)))
        count = len(config["PostProcess"]["MultiLabelThreshOutput"]["label_list"])
    else:
        count = len(config["PostProcess"]["Topk"]["label_list"])
        result = next(iter(model.predict(str(PHOTO), topk=count)))
    ids = np.asarray(result["class_ids"], dtype=int).ravel()
    scores = np.zeros(count)
    scores[ids] = np.asarray(result["scores"], dtype=float).ravel()
    return {"scores": [float(s) for s in scores], "class_ids": [int(i) for i in ids[:5]]}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_fixture(name: str, out: Path) -> None:
    built = build(name)
    load_parity_weights(built, name)
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    export(built, folder)
    record = {
        "model_name": name,
        "weights": f"shared/parity/{name}/model.pdparams",
        "weights_scale": WEIGHT_SCALES.get(name),
        "pdiparams_sha256": sha256(folder / "inference.pdiparams"),
        "pdiparams_bytes": (folder / "inference.pdiparams").stat().st_size,
        "photo": PHOTO.name,
        "paddlex": paddlex_predictions(name, folder),
        "versions": {"paddlepaddle": paddle.__version__, "paddlex": _version("paddlex")},
    }
    fused = {key: value.numpy() for key, value in built.model.state_dict().items()
             if key.endswith((".dw_conv.weight", ".dw_conv.bias"))
             and f"{key.rsplit('.dw_conv.', 1)[0]}.dw_conv_list.0.conv.weight" in built.model.state_dict()}
    if fused:
        # PP-LCNetV2's export fuses its branches with Paddle's sqrt, which is not correctly rounded
        # (numpy's is): the tests cannot recompute these bytes, so the fused tensors are kept
        np.savez_compressed(folder / "reparameterized.npz", **fused)
        record["reparameterized"] = "reparameterized.npz"
    if built.input_spec is not None:
        shape = [1, *built.input_spec[0].shape[1:]]
        record["raw"] = {"seed": RAW_SEED, "shape": shape, "output": raw_output(folder, shape).ravel().tolist()}
    if out == FIXTURES and (record["pdiparams_bytes"] > COMMIT_PDIPARAMS_MAX or name in REBUILT):
        (folder / "inference.pdiparams").unlink()  # rebuilt by the tests from the parity weights
    (folder / "paddlex.json").write_text(json.dumps(record) + "\n")
    print(f"{folder}: {sorted(p.name for p in folder.iterdir())}", flush=True)


def write_legacy_program(out: Path) -> None:
    """A program in the old IR (``inference.pdmodel``, Paddle < 3), in a child process (the flag is read at import).

    Paddle 3.2.2 cannot trace PaddleClas models into the old IR any more, so this is a small
    static-graph network (conv, BatchNorm, Linear) saved by ``save_inference_model``, with
    every parameter's value as Paddle holds it, to check the ProgramDesc reader and the order.
    """
    env = {**os.environ, "FLAGS_enable_pir_api": "0"}
    subprocess.run([sys.executable, __file__, "_legacy", str(out)], check=True, env=env)


def _legacy(out: Path) -> None:
    paddle.enable_static()
    paddle.seed(0)
    main_program, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main_program, startup), paddle.utils.unique_name.guard():
        x = paddle.static.data("x", [None, 3, 8, 8], "float32")
        y = paddle.nn.functional.relu(paddle.nn.BatchNorm2D(4)(paddle.nn.Conv2D(3, 4, 3, padding=1)(x)))
        y = paddle.nn.Linear(4, 5)(paddle.mean(y, axis=[2, 3]))
    executor = paddle.static.Executor(paddle.CPUPlace())
    executor.run(startup)
    folder = out / "legacy_program"
    paddle.static.save_inference_model(str(folder / "inference"), [x], [y], executor, program=main_program)
    scope = paddle.static.global_scope()
    values = {var.name: np.array(scope.find_var(var.name).get_tensor()).tolist()
              for var in main_program.list_vars() if var.persistable and scope.find_var(var.name) is not None
              and var.name not in ("feed", "fetch")}
    (folder / "paddle.json").write_text(json.dumps({"parameters": values, "paddlepaddle": paddle.__version__}) + "\n")
    print(f"{folder}: {sorted(p.name for p in folder.iterdir())}", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_legacy":
        paddle.set_device("cpu")
        _legacy(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=("maps", "fixtures"))
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    parser.add_argument("--merge", action="store_true", help="maps: add these models to the maps file")
    args = parser.parse_args()
    paddle.set_device("cpu")
    if args.job == "maps":
        write_maps(args.models or [*LCNET, *HGNETV2, *ML, "PP-ShiTuV2_rec", "PP-ShiTuV2_det", *generic_names()],
                   merge=args.merge)
        return
    for name in args.models or FIXTURE_MODELS:
        write_fixture(name, args.out)
    if not args.models:
        write_legacy_program(args.out)


if __name__ == "__main__":
    main()
