"""Batch jobs on Ray vs in-process predict(): images/s at 1 and 2 workers, Ray's overhead, a projection.

    .venv/bin/python benchmarks/batch_scale.py [--images 64] [--batch_size 8] [--project 4,8,16,32]

Same photos (640x480 JPEGs), same pipeline (image_classification on the seeded MobileNetV2),
same machine. Rows:

* ``in-process``: ``create_pipeline(...).predict(paths)`` with the model already loaded.
* ``ray_init``: starting the local Ray (paid once per `viewfinder batch` without --ray_address).
* ``ray``, ``workers`` 1 and 2: ``viewfinder.batch.run`` end to end on a running Ray (actors
  start and load the model, rows are written), and the same job over ``workers`` images only
  (``startup_s``: actor start + model load + Ray Data's planning, nearly all fixed cost).
* ``ray_overhead``: what Ray adds per image at 1 worker, ``(T1(n) - T1(startup)) / (n - 1) -
  in-process s/img`` (the 1 worker runs as many threads as in-process predict).
* ``projection``: Amdahl's law from the two measured runs: ``T(w) = S + P / w`` gives
  ``P = 2 (T1 - T2)`` and ``S = T1 - P``; for N workers on N free CPUs (a cluster) and
  ``--project_images`` images, ``T(N) = S + P * (images / n) / N``. Valid while the parallel part
  scales (one worker per free core, the input store keeps up); S is what a bigger cluster
  cannot shrink. On a machine with fewer free cores than 2 workers, P is underestimated.

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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import jpeg_folder, machine_description  # noqa: E402

WEIGHTS = Path(os.environ.get("VIEWFINDER_HOME", Path.home() / ".cache" / "viewfinder")) / "weights" \
    / "mobilenet_v2-b0353104.pth"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64, help="640x480 JPEGs per job (default 64)")
    ap.add_argument("--batch_size", type=int, default=8, help="images per forward pass")
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


def _ray_job(pipeline: str, listing: str, output: Path, workers: int, batch_size: int) -> float:
    from viewfinder import batch

    start = time.perf_counter()
    report = batch.run(pipeline, listing, str(output), num_workers=workers, batch_size=batch_size,
                       show_progress=False)
    elapsed = time.perf_counter() - start
    if report.errors:
        raise SystemExit(f"{report.errors} inputs failed in {output}")
    return elapsed


def run(args: argparse.Namespace | None = None) -> list[dict[str, Any]]:
    """Measure; one dict per row (mode, workers, images, seconds, images_per_s, and what each row adds)."""
    args = args or parse_args([])
    os.environ.setdefault("VIEWFINDER_OFFLINE", "1")
    os.environ.setdefault("VIEWFINDER_ENGINE", "torch")
    import ray

    from viewfinder import create_pipeline
    from viewfinder.batch.cluster import machine_cpus

    photos = sorted(jpeg_folder(args.images).glob("*.jpg"))[: args.images]
    n = len(photos)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="batch_scale-") as temp:
        work = Path(temp)
        pipeline = args.pipeline or _default_pipeline(work)
        everything = _list_file(work, photos, "all")

        # as many threads as the 1-worker actor gets (all CPUs), whatever OMP_NUM_THREADS says
        runner = create_pipeline(pipeline, device="cpu", cpu_threads=machine_cpus())
        list(runner.predict([str(photos[0])], batch_size=args.batch_size))  # warm-up, as actors do on load
        start = time.perf_counter()
        results = list(runner.predict([str(p) for p in photos], batch_size=args.batch_size))
        in_process = time.perf_counter() - start
        assert all(r.ok for r in results)
        del runner
        rows.append({"mode": "in-process", "workers": 1, "images": n, "seconds": in_process,
                     "images_per_s": n / in_process})

        started_here = not ray.is_initialized()
        start = time.perf_counter()
        if started_here:
            ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        rows.append({"mode": "ray_init", "workers": 0, "images": 0, "seconds": time.perf_counter() - start,
                     "images_per_s": None})
        try:
            totals: dict[int, float] = {}
            startups: dict[int, float] = {}
            for workers in (1, 2):
                first = _list_file(work, photos[:workers], f"startup{workers}")
                startup = _ray_job(pipeline, first, work / f"startup{workers}.parquet", workers, args.batch_size)
                total = _ray_job(pipeline, everything, work / f"all{workers}.parquet", workers, args.batch_size)
                totals[workers], startups[workers] = total, startup
                rows.append({"mode": "ray", "workers": workers, "images": n, "seconds": total,
                             "images_per_s": n / total, "startup_s": startup,
                             "steady_images_per_s": (n - workers) / max(1e-9, total - startup)})
        finally:
            if started_here:
                ray.shutdown()
        steady = (totals[1] - startups[1]) / max(1, n - 1)
        rows.append({"mode": "ray_overhead", "workers": 1, "images": n, "seconds": None, "images_per_s": None,
                     "ms_per_image": 1000.0 * (steady - in_process / n), "startup_s": startups[1]})
        parallel = max(0.0, 2.0 * (totals[1] - totals[2]))
        serial = totals[1] - parallel
        for workers in (int(w) for w in args.project.split(",") if w.strip()):
            projected = serial + parallel * (args.project_images / n) / workers
            rows.append({"mode": "projection", "workers": workers, "images": args.project_images,
                         "seconds": projected, "images_per_s": args.project_images / projected,
                         "serial_s": serial, "parallel_s_per_image": parallel / n})
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
