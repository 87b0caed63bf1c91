"""Recognition fine-tuning on Fashion-MNIST with PaddleX's PP-ShiTuV2_rec recipe.

    .venv/bin/python examples/fashion_mnist_shitu.py [--output output/fashion_mnist_shitu]

1. fetch Fashion-MNIST (Debian ``dataset-fashion-mnist``, into .assets/) and write a
   ShiTuRecDataset: ``train`` (N images of the 60k training split), ``gallery`` (5,000 other
   training images), ``query`` (all 10,000 t10k test images,
   ``--query_images``); ``viewfinder dataset check`` it;
2. baseline: pretrained MobileNetV2_x1_0 pooled features (1280-d) on 112-px upsampled
   images, cosine kNN: recall@1 / recall@5 / mAP;
3. fine-tune with the recognition recipe (CE + TripletAngularMarginLoss on P x K batches,
   BNNeck + FC head) and evaluate the exported model dir again, plus its own classifier's
   top-1 on the queries (what the embedding knows, next to what nearest-neighbour finds);
4. use the fine-tuned model dir in the PP-ShiTuV2 pipeline (whole-image recognition,
   ``Detection: null``): build an index from the gallery, recognise the queries.

Prints a table of the numbers and wall times and writes ``summary.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fashion_mnist_data as fm  # noqa: E402

from viewfinder import create_model, create_pipeline  # noqa: E402
from viewfinder.datasets import check_dataset  # noqa: E402
from viewfinder.training import TrainConfig, evaluate, train  # noqa: E402


def build_dataset(root: Path, train_images: int, query_images: int) -> None:
    """train / gallery from the 60k training split (disjoint), query from t10k; balanced classes."""
    x_train, y_train = fm.load("train")
    x_test, y_test = fm.load("t10k")
    splits = {
        "train": (x_train, y_train, fm.balanced_indices(y_train, train_images), "tr"),
        "gallery": (x_train, y_train, fm.balanced_indices(y_train, 5000, start=train_images // 10), "tr"),
        "query": (x_test, y_test, fm.balanced_indices(y_test, query_images), "te"),
    }
    for split, (images, labels, indices, prefix) in splits.items():
        paths = fm.write_images(root, prefix, images, indices)
        fm.write_list(root / f"{split}.txt", [f"{path} {labels[i]}" for path, i in zip(paths, indices)])


def pipeline_accuracy(model_dir: Path, root: Path, gallery_per_class: int, queries: int) -> dict[str, float]:
    """The fine-tuned model in PP-ShiTuV2 (whole images): index part of the gallery, recognise queries."""
    pipeline = create_pipeline(config={
        "pipeline_name": "PP-ShiTuV2",
        "rec_threshold": 0.0,
        "SubModules": {"Detection": None,
                       "Recognition": {"module_name": "image_feature", "model_name": None,
                                       "model_dir": str(model_dir), "batch_size": 64}},
    }, device="cpu")
    gallery, taken = [], {}
    for path, label in (line.split() for line in (root / "gallery.txt").read_text().splitlines()):
        if taken.get(label, 0) < gallery_per_class:
            taken[label] = taken.get(label, 0) + 1
            gallery.append((path, label))
    started = time.time()
    index = pipeline.build_index([str(root / path) for path, _ in gallery],
                                 [fm.CLASSES[int(label)] for _, label in gallery],
                                 metric_type="IP", index_type="Flat", show_progress=False)
    build_s = time.time() - started
    query = [line.split() for line in (root / "query.txt").read_text().splitlines()]
    query = query[::max(1, len(query) // queries)][:queries]
    started = time.time()
    correct = 0
    for (path, label), result in zip(query, pipeline.predict([str(root / p) for p, _ in query], index=index)):
        labels = result["boxes"][0]["labels"] if result["boxes"] else []
        correct += int(bool(labels) and labels[0] == fm.CLASSES[int(label)])
    return {"pipeline_top1": correct / len(query), "gallery": len(gallery), "queries": len(query),
            "index_build_s": round(build_s, 1), "predict_s": round(time.time() - started, 1)}


def classifier_top1(model_dir: Path, root: Path) -> float:
    """The fine-tuned model's own classifier (the BNNeck + head folded into it on export) on the
    queries: what the embedding knows about the classes, next to what nearest-neighbour search finds."""
    classifier = create_model(model_dir=str(model_dir), task="image_classification", device="cpu", batch_size=64)
    query = [line.split() for line in (root / "query.txt").read_text().splitlines()]
    results = classifier.predict([str(root / path) for path, _ in query])
    return sum(result["label_names"][0] == label for (_, label), result in zip(query, results)) / len(query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/fashion_mnist_shitu")
    parser.add_argument("--train_images", type=int, default=55000,
                        help="training-split images to train on (55,000: all but the gallery's 5,000)")
    parser.add_argument("--query_images", type=int, default=10000,
                        help="t10k images used as queries (10,000: recall@1 to about +-0.003; 1,000: +-0.009)")
    parser.add_argument("--epochs", type=float, default=2.3,
                        help="passes over the training images (2.3: two and the first 30 %% of a third's batches)")
    parser.add_argument("--input_size", type=int, default=96)
    parser.add_argument("--pad", type=int, default=2,
                        help="pad-crop augmentation: pixels of padding before the random crop (recipe: 10 at 224 px; "
                             "2 scored best here, 6 and 0 lower)")
    parser.add_argument("--freeze_groups", type=int, default=1,
                        help="1: the stem frozen; 4: also the first 3 stages (faster steps, lower plateau)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--triplet_weight", type=float, default=1.0)
    parser.add_argument("--triplet_margin", type=float, default=0.5)
    parser.add_argument("--ema_decay", type=float, default=0.0, help="moving average of the weights (0: off)")
    parser.add_argument("--batch_norm", default="batch", choices=["batch", "folded"],
                        help="folded: BatchNorm statistics fixed on the training images and folded into the "
                             "convolutions (faster steps)")
    parser.add_argument("--head", default="fc", help="fc (PP-ShiTuV2_rec), arcmargin or cosmargin")
    parser.add_argument("--head_margin", type=float, default=0.2)
    parser.add_argument("--head_scale", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0, help="sampling order, augmentation and head initialisation")
    parser.add_argument("--baseline_size", type=int, default=112)
    parser.add_argument("--skip_baseline", action="store_true")
    parser.add_argument("--pipeline_gallery_per_class", type=int, default=100)
    parser.add_argument("--pipeline_queries", type=int, default=250)
    args = parser.parse_args()

    out = Path(args.output)
    data = out / "dataset"
    times: dict[str, float] = {}
    started = time.time()
    build_dataset(data, args.train_images, args.query_images)
    check = check_dataset(data, "ShiTuRecDataset", out / "check")
    times["dataset_s"] = time.time() - started
    print(f"dataset: {check['attributes']['train_samples']} train / {check['attributes']['gallery_samples']} "
          f"gallery / {check['attributes']['query_samples']} query images in {times['dataset_s']:.0f}s")

    baseline = None
    if not args.skip_baseline:
        started = time.time()
        baseline = evaluate(data, "ShiTuRecDataset", model="MobileNetV2_x1_0", output=out / "baseline",
                            input_size=args.baseline_size, device="cpu", batch_size=64)
        times["baseline_s"] = time.time() - started
        print(f"baseline (pretrained, {args.baseline_size} px): {baseline} in {times['baseline_s']:.0f}s")

    started = time.time()
    config = TrainConfig(model="MobileNetV2_x1_0", dataset_dir=str(data), dataset_type="ShiTuRecDataset",
                         output=str(out / "train"), device="cpu", epochs=args.epochs, batch_size=64,
                         learning_rate=args.lr, warmup_epochs=0.2, input_size=args.input_size,
                         freeze_groups=args.freeze_groups, triplet_weight=args.triplet_weight,
                         triplet_margin=args.triplet_margin, head=args.head, head_margin=args.head_margin,
                         head_scale=args.head_scale, ema_decay=args.ema_decay, batch_norm=args.batch_norm,
                         pad=args.pad, rotate_prob=0.0, seed=args.seed,
                         eval_interval=0)  # evaluated once below, from the exported model dir
    result = train(config)
    times["train_s"] = time.time() - started
    started = time.time()
    model_dir = out / "train" / "best_model"
    tuned = evaluate(data, "ShiTuRecDataset", model_dir=model_dir, output=out / "evaluate", device="cpu")
    times["evaluate_s"] = time.time() - started
    print(f"fine-tuned ({args.input_size} px): {tuned} (training {times['train_s']:.0f}s)")
    started = time.time()
    tuned["classifier_top1"] = classifier_top1(model_dir, data)
    times["classifier_s"] = time.time() - started
    print(f"its own classifier on the queries: top-1 {tuned['classifier_top1']:.4f}")

    started = time.time()
    pipeline = pipeline_accuracy(model_dir, data, args.pipeline_gallery_per_class, args.pipeline_queries)
    times["pipeline_s"] = time.time() - started
    print(f"PP-ShiTuV2 pipeline with model_dir={model_dir}: top-1 {pipeline['pipeline_top1']:.3f} "
          f"on {pipeline['queries']} queries against a {pipeline['gallery']}-image index")

    summary = {
        "train_images": args.train_images, "query_images": args.query_images, "epochs": args.epochs,
        "input_size": args.input_size, "pad": args.pad, "seed": args.seed, "freeze_groups": args.freeze_groups,
        "learning_rate": args.lr,
        "head": args.head, "batch_norm": args.batch_norm, "triplet_weight": args.triplet_weight,
        "triplet_margin": args.triplet_margin,
        "baseline_size": args.baseline_size,
        "baseline": baseline, "fine_tuned": tuned, "pipeline": pipeline,
        "train_wall_s": result["wall_time_s"], "times_s": {k: round(v, 1) for k, v in times.items()},
        "total_s": round(sum(times.values()), 1), "cpu_count": os.cpu_count(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n| step | recall@1 | recall@5 | mAP | wall time |\n|---|---|---|---|---|")
    if baseline:
        print(f"| pretrained MobileNetV2_x1_0, {args.baseline_size} px | {baseline['recall1']:.3f} | "
              f"{baseline['recall5']:.3f} | {baseline['mAP']:.3f} | {times['baseline_s']:.0f} s |")
    print(f"| fine-tuned, {args.input_size} px, {args.train_images} images x {args.epochs} epochs | "
          f"{tuned['recall1']:.3f} | {tuned['recall5']:.3f} | {tuned['mAP']:.3f} | "
          f"{times['train_s'] + times['evaluate_s']:.0f} s |")
    print(f"\ntotal {summary['total_s']:.0f} s; summary in {out / 'summary.json'}")


if __name__ == "__main__":
    main()
