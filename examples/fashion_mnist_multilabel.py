"""Multi-label fine-tuning on 2x2 mosaics of Fashion-MNIST items (asymmetric loss).

    .venv/bin/python examples/fashion_mnist_multilabel.py [--output output/fashion_mnist_multilabel]

Each 56x56 image holds 1-4 random items in random cells of a 2x2 grid; its labels are the
classes present. Training mosaics use items of the 60k training split, validation mosaics
items of the t10k test split. The MLClsDataset is checked, MobileNetV2_x1_0 is fine-tuned
with the asymmetric loss (gamma_pos 0, gamma_neg 4, clip 0.05), the exported model dir is
evaluated (MultiLabelMAP) and used through ``create_model(model_dir=...)``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fashion_mnist_data as fm  # noqa: E402

from viewfinder import create_model  # noqa: E402
from viewfinder.datasets import check_dataset  # noqa: E402
from viewfinder.training import TrainConfig, evaluate, train  # noqa: E402


def build_dataset(root: Path, train_images: int, val_images: int) -> None:
    rng = np.random.default_rng(0)
    fm.write_list(root / "label.txt", [f"{i} {name}" for i, name in enumerate(fm.CLASSES)])
    for split, source, count in (("train", "train", train_images), ("val", "t10k", val_images)):
        images, labels = fm.load(source)
        mosaics, targets = fm.mosaic(images, labels, rng, count)
        paths = fm.write_images(root, f"{split}_mosaic", mosaics, np.arange(count))
        fm.write_list(root / f"{split}.txt", [f"{p}\t{','.join(map(str, t))}" for p, t in zip(paths, targets)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/fashion_mnist_multilabel")
    parser.add_argument("--train_images", type=int, default=8000)
    parser.add_argument("--val_images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--input_size", type=int, default=112)
    parser.add_argument("--freeze_groups", type=int, default=4, help="stem + first 3 stages frozen (CPU speed)")
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args()

    out = Path(args.output)
    data = out / "dataset"
    times: dict[str, float] = {}
    started = time.time()
    build_dataset(data, args.train_images, args.val_images)
    check = check_dataset(data, "MLClsDataset", out / "check")
    times["dataset_s"] = time.time() - started
    print(f"dataset: {check['attributes']['train_samples']} train / {check['attributes']['val_samples']} val "
          f"mosaics ({times['dataset_s']:.0f}s)")

    started = time.time()
    # Mosaic cells are the objects: no random crops that would cut items away, flips only.
    config = TrainConfig(model="MobileNetV2_x1_0", dataset_dir=str(data), dataset_type="MLClsDataset",
                         output=str(out / "train"), device="cpu", epochs=args.epochs, batch_size=64,
                         learning_rate=args.lr, warmup_epochs=0.2, input_size=args.input_size,
                         freeze_groups=args.freeze_groups, crop="none",
                         eval_interval=0)  # evaluated once below, from the exported model dir
    result = train(config)
    times["train_s"] = time.time() - started
    started = time.time()
    model_dir = out / "train" / "best_model"
    metrics = evaluate(data, "MLClsDataset", model_dir=model_dir, output=out / "evaluate", device="cpu")
    times["evaluate_s"] = time.time() - started

    model = create_model(model_dir=model_dir, task="image_multilabel_classification", device="cpu")
    samples = (data / "val.txt").read_text().splitlines()[:5]
    for line, found in zip(samples, model.predict([str(data / line.split("\t")[0]) for line in samples])):
        truth = [fm.CLASSES[i] for i, v in enumerate(line.split("\t")[1].split(",")) if v == "1"]
        print(f"  {line.split(chr(9))[0]}: truth {truth}, predicted {found['label_names']}")

    summary = {"train_images": args.train_images, "val_images": args.val_images, "epochs": args.epochs,
               "input_size": args.input_size, "freeze_groups": args.freeze_groups, "learning_rate": args.lr,
               "metrics": metrics, "train_wall_s": result["wall_time_s"],
               "times_s": {k: round(v, 1) for k, v in times.items()}, "total_s": round(sum(times.values()), 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nMultiLabelMAP {metrics['MultiLabelMAP']:.4f} on {args.val_images} test mosaics; "
          f"training {times['train_s']:.0f}s, total {summary['total_s']:.0f}s; summary in {out / 'summary.json'}")


if __name__ == "__main__":
    main()
