"""Batch jobs on Ray vs in-process predict(): images/s at 1 and 2 workers, Ray's overhead, a projection.

    .venv/bin/python benchmarks/batch_scale.py [--images 256] [--repeats 2] [--project 4,8,16,32]

Same photos (640x480 JPEGs), same pipeline (image_classification on the seeded MobileNetV2),
one torch thread per worker and in-process, batch 8, on a local Ray started once. Each figure
is the best of ``--repeats`` runs (other load on the machine only ever adds time). Rows:

* ``in-process``: ``create_pipeline(...).predict(paths)``, the model already loaded.
* ``ray_init``: starting the local Ray (paid once per `viewfinder batch` without --ray_address).
* ``ray_startup``: ``viewfinder.batch.run`` over one image per worker: actor start, model load,
  Ray Data's planning, writing: the fixed cost of a job.
* ``ray``, ``workers`` 1 and 2: ``viewfinder.batch.run`` over all images, end to end.
* ``ray_overhead``: what Ray adds per image at 1 worker: ``(T1 - startup1) / (n - 1)`` minus
  in-process seconds per image.
* ``projection``: Amdahl's law with the measured serial part: ``T(N) = S + p * images / N``,
  S = the 1-worker startup (what more workers cannot shrink), p = the 1-worker seconds per image
  after startup; for N workers on N free cores and ``--project_images`` images. The 2-worker run
  checks it: ``predicted_2`` vs the measured 2-worker time (they differ when 2 workers do not
  get 2 free cores, or the per-worker startups do not overlap).

``run(args) -> list[dict]`` is for other scripts (benchmarks/scale.py); ``main`` prints a table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import jpeg_folder, machine_description  # noqa: E402
from viewfinder.batch.cluster import machine_cpus  # noqa: E402

THREADS_PER_WORKER = 1  # in-process and per actor: workers, not threads, are what the job scales
WEIGHTS = Path(os.environ.get("VIEWFINDER_HOME", Path.home() / ".cache" / "viewfinder")) / "weights" \
    / "mobilenet_v2-b0353104.pth"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=256, help="640x480 JPEGs per job (default 256)")
    ap.add_argument("--batch_size", type=int, default=8, help="images per forward pass")
    ap.add_argument("--repeats", type=int, default=2, help="runs per figure; the best is kept")
    ap.add_argument("--pipeline", default=None,
                    help="pipeline name or YAML (default: image_classification on the seeded MobileNetV2)")
    ap.add_argument("--project", default="4,8,16,32", help="worker counts to project to")
    ap.add_argument("--project_images", type=int, default=100_000, help="job size of the projection")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    return ap.parse_args(argv)


def _default_pipeline(folder: Path) -> str:
    if not WEIGHTS.is_file():
        raise SystemExit(f"{WEIGHTS} missing: run `make seed` first (or pass --pipeline)")
    config = folder / "mobilenet_v2.yaml"
    config.write_text("pipeline_name: image_classification\nSubModules:\n  ImageClassification:\n"
                      f"    model_name: MobileNetV2_x1_0\n    weights: {WEIGHTS}\n", encoding="utf-8")
    return str(config)


def _list_file(folder: Path, paths: list[Path], name: str) -> str:
    listing = folder / f"{name}.txt"
    listing.write_text("\n".join(str(p) for p in paths) + "\n", encoding="utf-8")
    return str(listing)


def _best(repeats: int, measure: Callable[[int], float]) -> float:
    return min(measure(attempt) for attempt in range(max(1, repeats)))


def _ray_job(pipeline: str, listing: str, output: Path, workers: int, batch_size: int) -> float:
    from viewfinder import batch

    start = time.perf_counter()
    report = batch.run(pipeline, listing, str(output), num_workers=workers, batch_size=batch_size,
                       options={"cpu_threads": THREADS_PER_WORKER}, show_progress=False)
    elapsed = time.perf_counter() - start
    if report.errors or report.skipped:
        raise SystemExit(f"{output}: {report.errors} errors, {report.skipped} skipped")
    return elapsed


def run(args: argparse.Namespace | None = None) -> list[dict[str, Any]]:
    """Measure; one dict per row: mode, workers, images, seconds, images_per_s, and what each row adds."""
    args = args or parse_args([])
    os.environ.setdefault("VIEWFINDER_OFFLINE", "1")
    os.environ.setdefault("VIEWFINDER_ENGINE", "torch")
    import ray

    from viewfinder import create_pipeline

    photos = sorted(jpeg_folder(args.images).glob("*.jpg"))[: args.images]
    paths = [str(p) for p in photos]
    n = len(photos)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="batch_scale-") as temp:
        work = Path(temp)
        pipeline = args.pipeline or _default_pipeline(work)
        everything = _list_file(work, photos, "all")

        runner = create_pipeline(pipeline, device="cpu", cpu_threads=THREADS_PER_WORKER)
        list(runner.predict(paths[:1], batch_size=args.batch_size))  # warm-up

        def in_process(_: int) -> float:
            start = time.perf_counter()
            assert all(r.ok for r in runner.predict(paths, batch_size=args.batch_size))
            return time.perf_counter() - start

        local = _best(args.repeats, in_process)
        rows.append({"mode": "in-process", "workers": 1, "images": n, "seconds": local, "images_per_s": n / local})

        started_here = not ray.is_initialized()
        start = time.perf_counter()
        if started_here:
            ray.init(num_cpus=max(2, machine_cpus()), include_dashboard=False, logging_level=logging.CRITICAL,
                     log_to_driver=False)
        rows.append({"mode": "ray_init", "workers": 0, "images": 0, "seconds": time.perf_counter() - start,
                     "images_per_s": None})
        totals: dict[int, float] = {}
        startups: dict[int, float] = {}
        try:
            for workers in (1, 2):
                few = _list_file(work, photos[:workers], f"startup{workers}")
                startups[workers] = _best(args.repeats, lambda k: _ray_job(
                    pipeline, few, work / f"startup{workers}-{k}.parquet", workers, args.batch_size))
                rows.append({"mode": "ray_startup", "workers": workers, "images": workers,
                             "seconds": startups[workers], "images_per_s": None})
                totals[workers] = _best(args.repeats, lambda k: _ray_job(
                    pipeline, everything, work / f"all{workers}-{k}.parquet", workers, args.batch_size))
                after = max(1e-9, totals[workers] - startups[workers])
                rows.append({"mode": "ray", "workers": workers, "images": n, "seconds": totals[workers],
                             "images_per_s": n / totals[workers], "after_startup_images_per_s": (n - workers) / after})
        finally:
            if started_here:
                ray.shutdown()
        per_image = max(0.0, totals[1] - startups[1]) / max(1, n - 1)
        rows.append({"mode": "ray_overhead", "workers": 1, "images": n, "seconds": None, "images_per_s": None,
                     "ms_per_image": 1000.0 * (per_image - local / n), "in_process_ms_per_image": 1000.0 * local / n})
        serial = startups[1]
        predicted_2 = serial + per_image * n / 2
        for workers in (int(w) for w in args.project.split(",") if w.strip()):
            projected = serial + per_image * args.project_images / workers
            rows.append({"mode": "projection", "workers": workers, "images": args.project_images,
                         "seconds": projected, "images_per_s": args.project_images / projected,
                         "serial_s": serial, "ms_per_image_per_worker": 1000.0 * per_image,
                         "predicted_2_s": predicted_2, "measured_2_s": totals[2]})
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = [f"{'mode':14s} {'workers':>7s} {'images':>7s} {'seconds':>9s} {'img/s':>8s}  notes"]
    for row in rows:
        notes = {k: v for k, v in row.items() if k not in ("mode", "workers", "images", "seconds", "images_per_s")}
        text = ", ".join(f"{k}={cell(v, 3)}" for k, v in notes.items())
        lines.append(f"{row['mode']:14s} {row['workers']:>7d} {row['images']:>7d} {cell(row['seconds']):>9s} "
                     f"{cell(row['images_per_s'], 1):>8s}  {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = run(args)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"# {machine_description()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(_table(rows))


if __name__ == "__main__":
    main()
