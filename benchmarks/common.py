"""Shared benchmark helpers: a folder of 640x480 JPEGs made from the seeded real photos."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / ".assets" / "photos"
BENCH_DIR = ROOT / ".assets" / "bench" / "jpeg640x480"


def jpeg_folder(count: int = 32, size: tuple[int, int] = (640, 480)) -> Path:
    """``count`` 640x480 JPEGs (quality 90) cut from the sample photos; made once."""
    folder = BENCH_DIR if size == (640, 480) else BENCH_DIR.with_name(f"jpeg{size[0]}x{size[1]}")
    existing = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if len(existing) >= count:
        return folder
    sources = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not sources:
        raise SystemExit(f"no photos in {PHOTOS}: run `make seed` first")
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        with Image.open(sources[index % len(sources)]) as img:
            img = ImageOps.fit(img.convert("RGB"), size)
            if index >= len(sources):  # vary the copies a little
                img = ImageOps.mirror(img)
            img.save(folder / f"{index:03d}.jpg", quality=90)
    return folder


class Timed:
    """One timed pass: wall ms per image and cores busy (process CPU seconds / wall seconds)."""

    def __init__(self, ms: float, cores: float) -> None:
        self.ms, self.cores = ms, cores


def time_pass(run: Callable[[], int]) -> Timed:
    """Time ``run()``, which returns how many images it processed."""
    start, cpu_start = time.perf_counter(), time.process_time()
    images = run()
    wall = time.perf_counter() - start
    return Timed(wall * 1000.0 / max(1, images), (time.process_time() - cpu_start) / wall)


def median_ms_per_image(run: Callable[[], int], repeats: int = 3) -> float:
    """Median over ``repeats`` of (wall time / images processed) in milliseconds."""
    return statistics.median(time_pass(run).ms for _ in range(repeats))


def medians(samples: dict[str, list[Timed]]) -> tuple[dict[str, float], dict[str, float]]:
    """Per column: the median ms/img and the median cores busy of its passes."""
    return ({key: statistics.median(t.ms for t in runs) for key, runs in samples.items()},
            {key: statistics.median(t.cores for t in runs) for key, runs in samples.items()})


def infer_median_ms(compiled, feed, repeats: int = 15) -> float:
    """Median ms of one OpenVINO compiled model's synchronous runs on ``feed`` (after 3 warm-up runs)."""
    request = compiled.create_infer_request()
    for _ in range(3):
        request.infer({0: feed})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer({0: feed})
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def machine_description() -> str:
    import os
    import platform

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}"
