#!/usr/bin/env python3
"""Fine-tuning on a user's small dataset with the defaults (issue 25's protocol).

Builds Fashion-MNIST datasets the size PaddleX tells users to collect (Debian
``dataset-fashion-mnist``; examples/fashion_mnist_data.py), then runs the CLI exactly as
a user would, with default settings and ``--epochs 4`` only:

* ``rec300`` / ``rec100``: ShiTuRecDataset, 300 (or 100) train images per class from the
  training split, 50 gallery per class (other training images), 50 query per class (t10k).
  Baseline: ``viewfinder evaluate --model M`` (the pretrained model, default settings).
* ``cls``: ClsDataset, 100 train / 50 val per class. Baseline: a linear probe (logistic
  regression) on the pretrained pooled features at the same input size as training.
* ``ml``: MLClsDataset, 2x2 mosaics of 1-4 items (as examples/fashion_mnist_multilabel.py),
  1,000 train / 300 val. Baseline: the pretrained network with only a new head trained
  (the same defaults with every backbone group frozen).

Prints the baseline, the epoch-0 evaluation and every epoch's metric, the best and the
wall time of each training run, and writes ``summary.json``.

    .venv/bin/python benchmarks/small_data.py [--only rec300,rec100,cls,ml] [--output output/small_data]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import fashion_mnist_data as fm  # noqa: E402
import fashion_mnist_multilabel  # noqa: E402

MODEL = "MobileNetV2_x1_0"
CLI = [sys.executable, "-m", "viewfinder.cli"]
#: --reuse: report a finished run found in the output folder instead of training again
REUSE = False


def build_rec(root: Path, per_class: int) -> Path:
    if (root / "query.txt").is_file():
        return root
    x_train, y_train = fm.load("train")
    x_test, y_test = fm.load("t10k")
    splits = {
        "train": (x_train, y_train, fm.balanced_indices(y_train, per_class * 10), "tr"),
        "gallery": (x_train, y_train, fm.balanced_indices(y_train, 500, start=per_class), "tr"),
        "query": (x_test, y_test, fm.balanced_indices(y_test, 500), "te"),
    }
    for split, (images, labels, indices, prefix) in splits.items():
        paths = fm.write_images(root, prefix, images, indices)
        fm.write_list(root / f"{split}.txt", [f"{path} {labels[i]}" for path, i in zip(paths, indices)])
    return root


def build_cls(root: Path, per_class: int, val_per_class: int) -> Path:
    if (root / "val.txt").is_file():
        return root
    x_train, y_train = fm.load("train")
    x_test, y_test = fm.load("t10k")
    fm.write_list(root / "label.txt", [f"{i} {name}" for i, name in enumerate(fm.CLASSES)])
    for split, images, labels, count, prefix in (("train", x_train, y_train, per_class * 10, "tr"),
                                                 ("val", x_test, y_test, val_per_class * 10, "te")):
        indices = fm.balanced_indices(labels, count)
        paths = fm.write_images(root, prefix, images, indices)
        fm.write_list(root / f"{split}.txt", [f"{p} {labels[i]}" for p, i in zip(paths, indices)])
    return root


def build_ml(root: Path, train_images: int, val_images: int) -> Path:
    if not (root / "val.txt").is_file():
        fashion_mnist_multilabel.build_dataset(root, train_images, val_images)  # 2x2 mosaics of 1-4 items
    return root


def run(command: list[str]) -> float:
    started = time.time()
    print("$", " ".join(command[2:] if command[:2] == CLI[:2] else command), flush=True)
    subprocess.run(command, check=True)
    return time.time() - started


def evaluate(dataset: Path, kind: str, output: Path, *extra: str) -> dict[str, float]:
    run([*CLI, "evaluate", *extra, "--dataset", str(dataset), "--type", kind, "--output", str(output), "--quiet"])
    return json.loads((output / "evaluate_result.json").read_text())["metrics"]


def train(dataset: Path, kind: str, output: Path, *extra: str) -> dict:
    previous = output / "train_result.json"
    if REUSE and previous.is_file() and json.loads(previous.read_text()).get("done_flag"):
        result = json.loads(previous.read_text())
        result["measured_wall_s"] = result["wall_time_s"]
        return result
    seconds = run([*CLI, "train", "--model", MODEL, "--dataset", str(dataset), "--type", kind, "--epochs", "4",
                   "--output", str(output), "--quiet", *extra])
    result = json.loads((output / "train_result.json").read_text())
    result["measured_wall_s"] = round(seconds, 1)
    return result


def linear_probe(dataset: Path, input_size: int) -> float:
    """Top-1 of a multinomial logistic regression (L-BFGS) on the pretrained pooled features, train -> val."""
    import torch
    from PIL import Image

    from viewfinder.models import create_feature_model

    model = create_feature_model(MODEL, batch_size=64, engine="torch", device="cpu")

    def features(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        lines = [line.split() for line in (dataset / f"{split}.txt").read_text().splitlines()]
        size = (input_size, input_size)
        images = [np.asarray(Image.open(dataset / p).convert("RGB").resize(size, Image.BICUBIC)) for p, _ in lines]
        return torch.from_numpy(model.embed(images)), torch.tensor([int(y) for _, y in lines])

    x_train, y_train = features("train")
    x_val, y_val = features("val")
    probe = torch.nn.Linear(x_train.shape[1], int(y_train.max()) + 1)
    optimiser = torch.optim.LBFGS(probe.parameters(), max_iter=500)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x_train), y_train) + 1e-4 * probe.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return float((probe(x_val).argmax(1) == y_val).float().mean())


def report(name: str, baseline: float, result: dict) -> dict:
    metric = result["primary_metric"]
    history = result["history"]
    epochs = {h["epoch"]: h["metrics"].get(metric) for h in history if h.get("metrics")}
    best = result["models"]["best"]
    print(f"\n{name}: baseline {metric} {baseline:.4f}; " + ", ".join(f"epoch {e}: {v:.4f}" for e, v in epochs.items())
          + f"; best {best['score']:.4f} (epoch {best['epoch']}); training {result['measured_wall_s']:.0f} s;"
          f" gain {best['score'] - baseline:+.4f}\n", flush=True)
    return {"baseline": baseline, "per_epoch": epochs, "best": best["score"], "best_epoch": best["epoch"],
            "gain": best["score"] - baseline, "train_wall_s": result["measured_wall_s"],
            "decisions": result.get("defaults", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(ROOT / "output" / "small_data"))
    parser.add_argument("--only", default="rec300,rec100,cls,ml")
    parser.add_argument("--reuse", action="store_true", help="report finished runs in --output instead of training")
    args = parser.parse_args()
    global REUSE
    REUSE = args.reuse
    out = Path(args.output)
    data = ROOT / ".assets" / "small_data"
    chosen = args.only.split(",")
    summary: dict[str, dict] = {}
    for name in chosen:
        if name.startswith("rec"):
            dataset = build_rec(data / name, int(name[3:]))
            baseline = evaluate(dataset, "ShiTuRecDataset", out / name / "baseline", "--model", MODEL)["recall1"]
            summary[name] = report(name, baseline, train(dataset, "ShiTuRecDataset", out / name / "train"))
        elif name == "cls":
            dataset = build_cls(data / "cls100", 100, 50)
            result = train(dataset, "ClsDataset", out / name / "train")
            side = result.get("defaults", {}).get("input_size", {}).get("value", 224)
            summary[name] = report(name, linear_probe(dataset, int(side)), result)
        elif name == "ml":
            dataset = build_ml(data / "ml1000", 1000, 300)
            head_only = train(dataset, "MLClsDataset", out / name / "head_only", "-o", "freeze_groups=-1")
            baseline = head_only["models"]["best"]["score"]
            summary[name] = report(name, baseline, train(dataset, "MLClsDataset", out / name / "train"))
    (out / "summary.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: {m: v for m, v in s.items() if m != "decisions"} for k, s in summary.items()}, indent=2))


if __name__ == "__main__":
    main()
