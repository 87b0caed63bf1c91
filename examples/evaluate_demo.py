#!/usr/bin/env python3
"""Measure known-vs-unknown separation on the demo's photos with ``viewfinder index evaluate``.

Gallery: one photo of each of the demo's 10 OpenCV same-object pairs (``examples/demo.py`` PAIRS),
optionally plus the 19 other OpenCV photos as distractors (``--distractors``, as ``make demo``
builds it). Known queries: the other photo of each pair. Unknown queries: darknet's dog, eagle,
giraffe, horses, kite and person (objects that are not in the gallery; ``--more_unknowns``: every
seeded photo, 17). For each variant of the index options (plain, center, whiten, qe, center+qe) the
index is built with the Python API and measured by the CLI command itself:

    python examples/evaluate_demo.py                          # every variant, then a table
    python examples/evaluate_demo.py --variant center         # one variant
    python examples/evaluate_demo.py --crop best              # gallery crops (once build_index has `crop`)

``--dataset fashion-mnist`` measures the same on a larger class-level task (7 known clothing classes,
3 unknown), fetched from Debian's ``dataset-fashion-mnist`` the first time.

Each variant writes OUTPUT/<variant>/evaluate_result.json, evaluate_curves.png, evaluate_failures.png.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from demo import CENTERNET, OPENCV, PAIRS, PHOTOS, SHITU_CONFIG  # noqa: E402

UNKNOWN = ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg")
VARIANTS = {
    "plain": {},
    "center": {"center": True},
    "whiten": {"whiten": True},
    "qe": {"query_expansion": {"k": 2, "alpha": 3.0}},
    "center+qe": {"center": True, "query_expansion": {"k": 2, "alpha": 3.0}},
}


def prepare(out: Path, distractors: bool, more_unknowns: bool) -> tuple[Path, Path, Path]:
    """gallery.txt, queries.txt (relative to the OpenCV folder) and a folder of unknown photos."""
    out.mkdir(parents=True, exist_ok=True)
    firsts, partners = {a for a, _ in PAIRS}, {b for _, b in PAIRS}
    missing = [n for pair in PAIRS for n in pair if not (OPENCV / n).is_file()]
    missing += [n for n in UNKNOWN if not (PHOTOS / n).is_file()]
    if missing:
        raise SystemExit(f"missing seeded photos {missing}: run tools/seed_assets.py (make seed)")
    lines = [f"{a}\t{Path(a).stem}" for a, _ in PAIRS]
    if distractors:
        lines += [f"{p.name}\t{p.stem}" for p in sorted(OPENCV.iterdir()) if p.name not in firsts | partners]
    gallery = out / "gallery.txt"
    gallery.write_text("\n".join(lines) + "\n", encoding="utf-8")
    queries = out / "queries.txt"
    queries.write_text("\n".join(f"{b}\t{Path(a).stem}" for a, b in PAIRS) + "\n", encoding="utf-8")
    unknown = out / "unknown"
    unknown.mkdir(exist_ok=True)
    for old in unknown.iterdir():
        old.unlink()
    names = sorted(p.name for p in PHOTOS.iterdir()) if more_unknowns else UNKNOWN
    for name in names:
        os.symlink(PHOTOS / name, unknown / name)
    return gallery, queries, unknown


def config() -> dict:
    if CENTERNET.is_file():
        return {"SubModules": {"Detection": {"spec": {"onnx": str(CENTERNET)}}}}
    print("mainbody detector: none (../shared/assets/centernet.onnx not found): whole images only")
    return {"SubModules": {"Detection": None}}


@dataclass
class Setup:
    """Where one measurement's gallery, queries and unknowns are, and the pipeline that embeds them."""

    pipeline: Path
    override: dict
    gallery_root: Path
    gallery: Path
    queries_root: Path
    queries: Path
    unknown: Path


def prepare_fashion(out: Path, per_class_gallery: int = 50, per_class_query: int = 30) -> Setup:
    """Fashion-MNIST as an open-set task: 7 classes known (gallery = training images), queries = test
    images of those 7 classes (known) and of Sneaker, Bag, Ankle boot (unknown: not in the gallery)."""
    import fashion_mnist_data as fm
    from PIL import Image

    x_train, y_train = fm.load("train")
    x_test, y_test = fm.load("t10k")
    root = out / "fashion"
    lines_g, lines_q = [], []
    (root / "images").mkdir(parents=True, exist_ok=True)
    unknown = out / "unknown"
    unknown.mkdir(parents=True, exist_ok=True)
    for cls, name in enumerate(fm.CLASSES):
        label = name.replace("/", "_").replace(" ", "_")
        if cls < 7:
            for i in np.flatnonzero(y_train == cls)[:per_class_gallery]:
                path = f"images/g_{i:05d}.png"
                Image.fromarray(x_train[i]).save(root / path)
                lines_g.append(f"{path}\t{label}")
            target, lines = root, lines_q
        else:
            target, lines = unknown, None
        for i in np.flatnonzero(y_test == cls)[:per_class_query]:
            path = f"images/q_{i:05d}.png" if lines is not None else f"q_{i:05d}.png"
            Image.fromarray(x_test[i]).save(target / path)
            if lines is not None:
                lines.append(f"{path}\t{label}")
    (root / "gallery.txt").write_text("\n".join(lines_g) + "\n", encoding="utf-8")
    (root / "queries.txt").write_text("\n".join(lines_q) + "\n", encoding="utf-8")
    pipeline = out / "fashion_pipeline.yaml"
    pipeline.write_text("pipeline_name: PP-ShiTuV2\nrec_topk: 5\nSubModules:\n  Detection: null\n  Recognition:\n"
                        "    module_name: image_feature\n    model_name: MobileNetV2_x1_0\n    weights: torchvision\n"
                        "    batch_size: 32\n", encoding="utf-8")
    return Setup(pipeline, {}, root, root / "gallery.txt", root, root / "queries.txt", unknown)


def run_variant(name: str, options: dict, args: argparse.Namespace, setup: Setup) -> dict:
    from viewfinder import create_pipeline

    out = Path(args.output) / name
    pipeline = create_pipeline(str(setup.pipeline), config=setup.override, device=args.device)
    params = dict(options)
    params["center"] = options.get("center", False)  # override the config's index_options explicitly
    params["whiten"] = options.get("whiten", False)
    params["query_expansion"] = options.get("query_expansion")
    if args.crop != "none":  # only once build_index/append_index have the `crop` option
        if "crop" not in inspect.signature(pipeline.build_index).parameters:
            raise SystemExit("--crop: this viewfinder's build_index has no crop option yet")
        params["crop"] = args.crop
    index = pipeline.build_index(str(setup.gallery_root), str(setup.gallery), index_type="Flat", show_progress=False,
                                 **params)
    index_dir = out / "index"
    index.save(index_dir)
    command = [sys.executable, "-m", "viewfinder.cli", "index", "evaluate", "--pipeline", str(setup.pipeline),
               "--index", str(index_dir), "--queries", str(setup.queries_root), "--labels", str(setup.queries),
               "--unknown", str(setup.unknown), "--output", str(out), "--quiet", "--device", args.device]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    print(f"$ {' '.join(command)}", flush=True)
    done = subprocess.run(command, env=env, text=True, capture_output=True)
    print(done.stdout, end="")
    if done.returncode:
        print(done.stderr, file=sys.stderr)
        raise SystemExit(f"index evaluate failed ({done.returncode})")
    return json.loads((out / "evaluate_result.json").read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/evaluate_demo")
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append",
                        help="which index options to measure (repeatable; default: all)")
    parser.add_argument("--crop", default="none", help="gallery crops: none (default), best or all")
    parser.add_argument("--distractors", action="store_true",
                        help="add the 19 other OpenCV photos to the gallery (as examples/demo.py does)")
    parser.add_argument("--more_unknowns", action="store_true",
                        help="every seeded photo as an unknown (17: scikit-image's, scikit-learn's...), "
                             "not only darknet's 6")
    parser.add_argument("--dataset", choices=("opencv", "fashion-mnist"), default="opencv",
                        help="opencv: the demo's photos (default); fashion-mnist: 7 known classes (350 gallery "
                             "images), 210 known + 90 unknown queries (Debian dataset-fashion-mnist, fetched once)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    out = Path(args.output)
    if args.dataset == "fashion-mnist":
        setup = prepare_fashion(out)
        setting = "Fashion-MNIST, whole images"
    else:
        gallery, queries, unknown = prepare(out, args.distractors, args.more_unknowns)
        setup = Setup(SHITU_CONFIG, config(), OPENCV, gallery, OPENCV, queries, unknown)
        setting = ", ".join([f"crop {args.crop}"] + ["distractors"] * args.distractors
                            + ["more unknowns"] * args.more_unknowns)
    from viewfinder import ViewfinderError

    rows = []
    for name in args.variant or list(VARIANTS):
        try:
            report = run_variant(name, VARIANTS[name], args, setup)
        except ViewfinderError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        rows.append((name, report))
    print(f"\n| index options ({setting}) | recall@1 | best F1 | proposed rec_threshold | unknown precision | "
          "unknown recall | known accepted | held-out F1 | margin | d' |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def fmt(value: object) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for name, r in rows:
        print(f"| {name} | {fmt(r['recall1'])} | {fmt(r['best_f1'])} | {fmt(r['suggested_rec_threshold'])} | "
              f"{fmt(r['unknown_precision'])} | {fmt(r['unknown_recall'])} | {fmt(r['known_accepted'])} | "
              f"{fmt((r.get('held_out') or {}).get('f1'))} | {fmt(r['separation']['margin'])} | "
              f"{fmt(r['separation']['d_prime'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
