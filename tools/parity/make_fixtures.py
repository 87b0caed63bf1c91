#!/usr/bin/env python3
"""Generate parity fixtures: PaddleClas networks with seeded random weights and Paddle's outputs.

Runs in the PaddleX side environment (``make paddlex-env``), never in ours:

    .venv-paddlex/bin/python tools/parity/make_fixtures.py --out tests/fixtures/parity NAME [NAME ...]
    .venv-paddlex/bin/python tools/parity/make_fixtures.py --out DIR --all

For each PaddleX model name it builds the official architecture from PaddleClas source
(``ppcls.arch.build_model``), fills every float parameter from :mod:`seeded` (so the
fixture need not store them), calibrates each BatchNorm's running statistics on a batch of
random inputs (then perturbs them, so that a converter that drops or swaps them shows),
runs one seeded input in eval mode and writes ``NAME/meta.json`` (entries, seed, input
shape, architecture config, versions), ``NAME/stored.npz`` (BN statistics and integer
buffers) and ``NAME/outputs.npz`` (Paddle's outputs before softmax / sigmoid /
normalisation). ``sweep.py`` checks our converters against them. ``--float64 NAME ...``
adds a float64 run of existing fixtures (``outputs_float64.npz``) for ill-conditioned
networks, see :func:`add_float64_outputs`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import paddle

import paddleclas

sys.path.insert(0, os.path.dirname(paddleclas.__file__))  # paddleclas imports itself as ppcls
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ppcls.arch import build_model  # noqa: E402
from ppcls.utils import logger as ppcls_logger  # noqa: E402
from seeded import (  # noqa: E402
    BN_STATISTICS,
    SEEDED,
    STORED,
    load_fixture,
    seeded_input,
    seeded_state,
    state_digest,
)

ppcls_logger.init_logger()
SEED = 0


def _ppcls_name(name: str) -> str:
    """PaddleX model name -> PaddleClas constructor name."""
    for paddlex_prefix, ppcls_prefix in (("PP-LCNetV2_", "PPLCNetV2_"), ("PP-LCNet_", "PPLCNet_"),
                                         ("PP-HGNetV2-", "PPHGNetV2_"), ("PP-HGNet_", "PPHGNet_"),
                                         ("FasterNet-", "FasterNet_"), ("StarNet-", "StarNet_")):
        if name.startswith(paddlex_prefix):
            return ppcls_prefix + name[len(paddlex_prefix):]
    return {"MobileNetV1_x1_0": "MobileNetV1", "MobileNetV2_x1_0": "MobileNetV2"}.get(name, name)


#: models that are not a plain backbone with a 1000-class head: PaddleX's ``Arch`` (and
#: ``MLDecoder``) sections, with the input size the model runs at
SPECIAL: dict[str, tuple[dict, list[int]]] = {
    "PP-LCNet_x1_0_ML": ({"Arch": {"name": "PPLCNet_x1_0", "class_num": 80, "use_ml_decoder": True},
                          "MLDecoder": {"query_num": 80, "class_num": 80, "in_channels": 1280}}, [1, 3, 448, 448]),
    **{f"PP-HGNetV2-{b}_ML": ({"Arch": {"name": f"PPHGNetV2_{b}", "class_num": 80, "pretrained": False,
                                        "use_ml_decoder": True},
                               "MLDecoder": {"query_num": 80, "in_channels": 2048}}, [1, 3, 448, 448])
       for b in ("B0", "B4", "B6")},
    "ResNet50_ML": ({"Arch": {"name": "ResNet50", "class_num": 80, "pretrained": False, "use_ml_decoder": True},
                     "MLDecoder": {"query_num": 80, "in_channels": 2048}}, [1, 3, 448, 448]),
    "CLIP_vit_base_patch16_448_ML": ({"Arch": {"name": "CLIP_vit_base_patch16_224", "class_num": 80,
                                              "return_embed": False, "use_fused_attn": False, "pretrained": False,
                                              "use_ml_decoder": True},
                                     "MLDecoder": {"query_num": 80, "in_channels": 768, "remove_layers": [],
                                                   "replace_layer": "head"}}, [1, 3, 448, 448]),
    # PaddleClas's GeneralRecognitionV2_CLIP_vit_* (PaddleX PP-ShiTuV2_rec_CLIP_vit_*), with a 16-class
    # ArcMargin training head instead of 192,613 classes (the converter drops it)
    **{f"PP-ShiTuV2_rec_CLIP_vit_{size}": (
        {"Arch": {"name": "RecModel", "infer_output_key": "features", "infer_add_softmax": False,
                  "Backbone": {"name": backbone, "pretrained": False, "return_embed": True,
                               "return_mean_embed": True},
                  "BackboneStopLayer": {"name": "flatten"},
                  "Neck": {"name": "FC", "embedding_size": 512, "class_num": 512},
                  "Head": {"name": "ArcMargin", "embedding_size": 512, "class_num": 16, "margin": 0.2,
                           "scale": 30}}}, [1, 3, 224, 224])
       for size, backbone in (("base", "CLIP_vit_base_patch16_224"), ("large", "CLIP_vit_large_patch14_224"))},
    "PP-ShiTuV2_rec": ({"Arch": {"name": "RecModel", "infer_output_key": "features", "infer_add_softmax": False,
                                 "Backbone": {"name": "PPLCNetV2_base_ShiTu", "pretrained": False, "use_ssld": True,
                                              "class_expand": 512},
                                 "BackboneStopLayer": {"name": "flatten"},
                                 "Neck": {"name": "BNNeck", "num_features": 512},
                                 "Head": {"name": "FC", "embedding_size": 512, "class_num": 16}}}, [1, 3, 224, 224]),
}


#: networks deep enough that their random-weight outputs amplify float32 rounding to (half)
#: the tolerance or more: our own float32 and float64 runs differ by 5e-5 to 6e-4 of the
#: output there, as much as Paddle's float32 run differs from ours. Their reference runs in
#: float64 (on the same float32 weights and BN statistics) and sweep.py runs ours in float64.
FLOAT64 = {"PP-HGNet_base", "ResNet101", "ResNet101_vd", "ResNet152", "ResNet152_vd", "ResNet200_vd"}


def arch_config(name: str) -> tuple[dict, list[int]]:
    """``(ppcls config, input shape)`` for a PaddleX model name."""
    if name in SPECIAL:
        return SPECIAL[name]
    size = 384 if name.endswith("_384") else 224
    return {"Arch": {"name": _ppcls_name(name), "class_num": 1000, "pretrained": False}}, [1, 3, size, size]


def _bn_layers(model: paddle.nn.Layer) -> list[paddle.nn.Layer]:
    kinds = (paddle.nn.layer.norm._BatchNormBase, paddle.nn.BatchNorm)
    return [layer for layer in model.sublayers() if isinstance(layer, kinds)]


def _calibrate_batchnorm(model: paddle.nn.Layer, input_shape: list[int], rng: np.random.Generator) -> int:
    """Set each BN's statistics to those of its real input (one eval pass), then perturb them."""

    def hook(layer, inputs):
        x = inputs[0].numpy().astype(np.float64)
        axes = tuple(a for a in range(x.ndim) if a != 1)
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        var = np.maximum(var, np.maximum(0.01 * np.median(var), (mean / 4) ** 2))
        mean = mean + 0.2 * np.sqrt(var) * rng.standard_normal(mean.shape)
        var = var * rng.uniform(0.5, 2.0, var.shape)
        # float32 values (the stored ones) even when the network runs in float64
        dtype = layer._mean.numpy().dtype
        layer._mean.set_value(mean.astype(np.float32).astype(dtype))
        layer._variance.set_value(var.astype(np.float32).astype(dtype))

    layers = _bn_layers(model)
    handles = [layer.register_forward_pre_hook(hook) for layer in layers]
    batch = rng.standard_normal([8, *input_shape[1:]]).astype(np.float32)
    with paddle.no_grad():
        model(paddle.to_tensor(batch.astype(layers[0]._mean.numpy().dtype) if layers else batch))
    for handle in handles:
        handle.remove()
    return len(layers)


def _outputs(result) -> dict[str, np.ndarray]:
    if isinstance(result, dict):
        return {key: value.numpy() for key, value in result.items() if isinstance(value, paddle.Tensor)}
    if isinstance(result, (list, tuple)):
        return {f"output{i}": value.numpy() for i, value in enumerate(result)}
    return {"output": result.numpy()}


def make_fixture(name: str, out: Path) -> dict:
    started = time.perf_counter()
    config, input_shape = arch_config(name)
    paddle.seed(SEED)
    model = build_model(config)
    model.eval()
    parameters = {key for key, _ in model.named_parameters()}
    state = model.state_dict()
    entries = []
    for key, value in state.items():
        dtype = str(value.numpy().dtype)
        seeded = key in parameters and dtype.startswith("float") and not key.endswith(BN_STATISTICS)
        entries.append([key, list(value.shape), dtype, SEEDED if seeded else STORED])
    drawn = seeded_state(entries, SEED)
    with warnings.catch_warnings():  # the BN statistics and buffers are deliberately left out here
        warnings.simplefilter("ignore")
        model.set_state_dict({key: paddle.to_tensor(value) for key, value in drawn.items()})
    dtype = "float64" if name in FLOAT64 else "float32"
    if dtype == "float64":
        model.to(dtype="float64")
    batchnorms = _calibrate_batchnorm(model, input_shape, np.random.default_rng([SEED, 7]))
    x = seeded_input(input_shape, SEED)
    with paddle.no_grad():
        outputs = _outputs(model(paddle.to_tensor(x.astype(dtype))))
    final = model.state_dict()
    stored = {row[0]: final[row[0]].numpy().astype(row[2]) for row in entries if row[3] == STORED}
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "stored.npz", **stored)
    np.savez_compressed(folder / "outputs.npz", **outputs)
    meta = {
        "name": name,
        "config": config,
        "input_shape": input_shape,
        "dtype": dtype,
        "seed": SEED,
        "seeded_digest": state_digest(drawn),
        "batchnorms_calibrated": batchnorms,
        "parameters": int(sum(int(np.prod(v.shape)) for v in state.values())),
        "outputs": {key: {"shape": list(v.shape), "max_abs": float(np.abs(v).max())} for key, v in outputs.items()},
        "versions": {"paddle": paddle.__version__, "paddleclas": getattr(paddleclas, "__version__", "2.6.0"),
                     "numpy": np.__version__},
        "entries": entries,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    meta["seconds"] = round(time.perf_counter() - started, 1)
    return meta


def add_float64_outputs(folder: Path) -> float:
    """Run a fixture's network once more in float64 and store ``outputs_float64.npz``.

    Some seeded networks are ill-conditioned (PP-HGNetV2-B6's deep residual stages: Paddle's
    own float32 output is ~6e-4 from its float64 one), so no float32 implementation that
    does not repeat Paddle's exact operation order can meet the tolerance. ``sweep.py``
    then compares our float64 run with this reference. Returns Paddle's float32-vs-float64
    relative error.
    """
    meta, state, x, outputs = load_fixture(folder)
    paddle.set_default_dtype("float64")
    try:
        model = build_model(meta["config"])
        model.eval()
        model.set_state_dict({key: paddle.to_tensor(value.astype(np.float64) if value.dtype.kind == "f" else value)
                              for key, value in state.items()})
        with paddle.no_grad():
            outputs64 = _outputs(model(paddle.to_tensor(x.astype(np.float64))))
    finally:
        paddle.set_default_dtype("float32")
    np.savez_compressed(folder / "outputs_float64.npz", **outputs64)
    key = next(k for k in ("features", "output") if k in outputs)
    return float(np.abs(outputs64[key] - outputs[key]).max() / np.abs(outputs64[key]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--all", action="store_true", help="every name in names.txt next to this script")
    parser.add_argument("--float64", action="store_true",
                        help="add a float64 reference (outputs_float64.npz) to the existing fixtures NAME ...")
    args = parser.parse_args()
    names = list(args.names)
    if args.all:
        names += (Path(__file__).parent / "names.txt").read_text().split()
    paddle.set_device("cpu")
    if args.float64:
        for name in names:
            error = add_float64_outputs(args.out / name)
            print(f"{name}: float64 reference stored (Paddle float32 vs float64: {error:.2e})", flush=True)
        return
    failed = []
    for name in names:
        try:
            meta = make_fixture(name, args.out)
        except Exception as exc:  # report every name, then fail
            failed.append(name)
            print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
            continue
        shapes = {k: v["shape"] for k, v in meta["outputs"].items()}
        print(f"{name}: {meta['parameters']:,} values, {meta['batchnorms_calibrated']} BN, outputs {shapes}, "
              f"{meta['seconds']} s", flush=True)
    if failed:
        sys.exit(f"failed: {' '.join(failed)}")


if __name__ == "__main__":
    main()
