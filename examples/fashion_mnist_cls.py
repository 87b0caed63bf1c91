"""Classification fine-tuning on Fashion-MNIST (ClsDataset, CE with label smoothing 0.1).

    .venv/bin/python examples/fashion_mnist_cls.py [--output output/fashion_mnist_cls]

Writes a ClsDataset (``label.txt`` with the 10 class names; ``train.txt``: N balanced images
of the 60k training split; ``val.txt``: the 10,000 t10k test images), checks it, fine-tunes
MobileNetV2_x1_0 from its ImageNet weights, evaluates the exported model dir, classifies a
few test images through ``create_model(model_dir=...)`` and prints the numbers and wall times.
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


def build_dataset(root: Path, train_images: int) -> None:
    x_train, y_train = fm.load("train")
    x_test, y_test = fm.load("t10k")
    fm.write_list(root / "label.txt", [f"{i} {name}" for i, name in enumerate(fm.CLASSES)])
    train_idx = fm.balanced_indices(y_train, train_images)
    paths = fm.write_images(root, "tr", x_train, train_idx)
    fm.write_list(root / "train.txt", [f"{p} {y_train[i]}" for p, i in zip(paths, train_idx)])
    val_idx = np.arange(len(y_test))
    paths = fm.write_images(root, "te", x_test, val_idx)
    fm.write_list(root / "val.txt", [f"{p} {y_test[i]}" for p, i in zip(paths, val_idx)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/fashion_mnist_cls")
    parser.add_argument("--train_images", type=int, default=24000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--input_size", type=int, default=96)
    parser.add_argument("--freeze_groups", type=int, default=4, help="stem + first 3 stages frozen (CPU speed)")
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args()

    out = Path(args.output)
    data = out / "dataset"
    times: dict[str, float] = {}
    started = time.time()
    build_dataset(data, args.train_images)
    check = check_dataset(data, "ClsDataset", out / "check")
    times["dataset_s"] = time.time() - started
    print(f"dataset: {check['attributes']['train_samples']} train / {check['attributes']['val_samples']} val "
          f"images, {check['attributes']['num_classes']} classes ({times['dataset_s']:.0f}s)")

    started = time.time()
    config = TrainConfig(model="MobileNetV2_x1_0", dataset_dir=str(data), dataset_type="ClsDataset",
                         output=str(out / "train"), device="cpu", epochs=args.epochs, batch_size=64,
                         learning_rate=args.lr, warmup_epochs=0.2, input_size=args.input_size,
                         freeze_groups=args.freeze_groups, crop_scale_min=0.6,
                         eval_interval=0)  # evaluated once below, from the exported model dir
    result = train(config)
    times["train_s"] = time.time() - started
    started = time.time()
    model_dir = out / "train" / "best_model"
    metrics = evaluate(data, "ClsDataset", model_dir=model_dir, output=out / "evaluate", device="cpu")
    times["evaluate_s"] = time.time() - started

    model = create_model(model_dir=model_dir, device="cpu", topk=1)
    samples = (data / "val.txt").read_text().splitlines()[:8]
    predictions = [r["label_names"][0] for r in model.predict([str(data / line.split()[0]) for line in samples])]
    truth = [fm.CLASSES[int(line.split()[1])] for line in samples]
    print("create_model(model_dir=...) on 8 test images:", list(zip(truth, predictions)))

    summary = {"train_images": args.train_images, "epochs": args.epochs, "input_size": args.input_size,
               "freeze_groups": args.freeze_groups, "learning_rate": args.lr, "metrics": metrics,
               "train_wall_s": result["wall_time_s"], "times_s": {k: round(v, 1) for k, v in times.items()},
               "total_s": round(sum(times.values()), 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nval.top1 {metrics['val.top1']:.4f}, val.top5 {metrics['val.top5']:.4f} on 10,000 test images; "
          f"training {times['train_s']:.0f}s, total {summary['total_s']:.0f}s; summary in {out / 'summary.json'}")


if __name__ == "__main__":
    main()
