#!/usr/bin/env python3
"""GPU benchmark: end-to-end and raw img/s for classification on CUDA (torch engine).

For each model (random weights unless ``--weights``), precision (fp32, fp16 autocast) and
batch size, it times

* **e2e**: ``predict()`` over a list of 640x480 JPEG files, from file bytes to top-5
  results (nvJPEG decode + resize + normalise on the GPU, network, top-5, results that
  carry the decoded image like PaddleX's ``input_img``);
* **e2e-cpu-decode**: the same with ``VIEWFINDER_GPU_DECODE=0`` (Pillow decode in the
  decode pool, the path other formats take), at the largest batch only;
* **raw**: the engine alone on a batch already on the GPU (what the network can do).

Also a correctness check (``--check``): with real MobileNetV2 weights, the GPU fp32 and
fp16 top-1 classes equal the CPU ones on the sample photos, and the top-1 scores agree.

    python benchmarks/gpu.py [--models PP-LCNet_x1_0 ResNet50] [--batches 1 8 64 256]

Target (issue 3): PP-LCNet_x1_0 end to end >= 10 k img/s at batch 256 on an H100-class GPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PHOTOS, jpeg_folder, machine_description  # noqa: E402

MODELS = ("PP-LCNet_x1_0", "MobileNetV2_x1_0", "PP-HGNetV2-B0", "ResNet50")
E2E_TARGET = 10_000  # img/s, PP-LCNet_x1_0 at batch 256


def images_per_second(run: Callable[[], int], repeats: int) -> tuple[float, float]:
    """(median, best) img/s over ``repeats`` runs after one warm-up run."""
    import torch

    run()
    torch.cuda.synchronize()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        images = run()
        torch.cuda.synchronize()
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates), max(rates)


def e2e_runner(model: Any, files: list[str], batch_size: int) -> Callable[[], int]:
    def run() -> int:
        return sum(1 for result in model.predict(files, batch_size=batch_size) if result.ok)

    return run


def raw_runner(model: Any, batch_size: int, images: int) -> Callable[[], int]:
    import torch

    height, width = model.preprocess.config.input_size
    batch = torch.randn(batch_size, 3, height, width, device=model.engine.device)

    def run() -> int:
        done = 0
        while done < images:
            model.engine(batch)
            done += batch_size
        return done

    return run


def decode_rates(files: list[str], batch_size: int = 256) -> dict[str, float]:
    """JPEG decode alone: Pillow in a 16-thread pool vs batched nvJPEG (img/s)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import torch
    import torchvision.io as tv_io
    from PIL import Image

    def pil(path: str) -> int:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB")).shape[0]

    rates = {}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(pil, files[:64]))
        start = time.perf_counter()
        list(pool.map(pil, files))
        rates["Pillow, 16 threads"] = len(files) / (time.perf_counter() - start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = [tv_io.read_file(f) for f in files]
        tv_io.decode_jpeg(data[:batch_size], device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(data), batch_size):
            tv_io.decode_jpeg(data[i:i + batch_size], device="cuda")
        torch.cuda.synchronize()
        rates[f"nvJPEG, batches of {batch_size}"] = len(files) / (time.perf_counter() - start)
    return rates


def stage_breakdown(model: Any, files: list[str], batch_size: int) -> None:
    """Where an e2e batch's time goes, each stage timed alone (synchronised, in series), in us per image.

    In ``predict()`` the first three stages run in worker threads, overlapping the last two."""
    from collections import defaultdict

    import torch

    from viewfinder.io import iter_inputs, max_image_pixels
    from viewfinder.models.predictor import PreparedImage

    decoder = model._gpu_jpeg
    if decoder is None:
        print("- stages: the GPU JPEG path is off")
        return
    items = [item for f in files for item in iter_inputs(f)]
    seconds: dict[str, float] = defaultdict(float)

    def timed(stage: str, step: Callable[[], Any]) -> Any:
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = step()
        torch.cuda.synchronize()
        seconds[stage] += time.perf_counter() - start
        return out

    limit = max_image_pixels()
    for first in range(0, len(items), batch_size):  # the stages of one batch, as the predictor runs them
        chunk = items[first:first + batch_size]
        pending = timed("read files + header scan (one worker)", lambda: [decoder.read(item, limit) for item in chunk])
        decoded = timed("nvJPEG decode", lambda: decoder._decode_all(pending))
        batch = timed("stack + resize + normalise",
                      lambda: decoder.normalize(decoder.resize(torch.stack(decoded))))
        outputs = timed("network + logits to host", lambda: model.engine(batch))
        images = [PreparedImage(None, p.size, p.item.input_path, None) for p in pending]
        timed("top-5 + result objects", lambda: model._postprocess(outputs, images, model.params))
    total = sum(seconds.values())
    for stage, value in seconds.items():
        print(f"- stage {stage}: {value / len(items) * 1e6:.0f} us/img ({value / total:.0%})")
    print(f"- stages in series: {len(items) / total:,.0f} img/s")


def check_against_cpu(weights: str, files: list[Path]) -> None:
    """Real weights: GPU (nvJPEG path, fp32 and fp16) vs CPU top-1 on the sample photos."""
    from viewfinder import create_model

    cpu = create_model("MobileNetV2_x1_0", weights=weights, device="cpu", engine="torch")
    reference = {r["input_path"]: r for r in cpu.predict([str(f) for f in files], batch_size=8)}
    for fp16 in (False, True):
        gpu = create_model("MobileNetV2_x1_0", weights=weights, device="gpu:0", fp16=fp16)
        agree, worst = 0, 0.0
        for result in gpu.predict([str(f) for f in files], batch_size=8):
            ref = reference[result["input_path"]]
            agree += int(result["class_ids"][0] == ref["class_ids"][0])
            worst = max(worst, abs(result["scores"][0] - ref["scores"][0]))
        print(f"- check, MobileNetV2_x1_0 real weights, GPU {'fp16' if fp16 else 'fp32'} vs CPU: top-1 equal on "
              f"{agree}/{len(files)} photos; max top-1 score difference {worst:.2g}"
              f" (engine {gpu.engine.name}, GPU JPEG decode {'on' if gpu._gpu_jpeg else 'off'})")
        gpu.close()
    cpu.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64, 256])
    parser.add_argument("--images", type=int, default=4096, help="JPEG files per e2e run at batch >= 64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches_ahead", type=int, default=None,
                        help="batches read and decoded ahead on the GPU path (library default: GPU_BATCHES_AHEAD)")
    parser.add_argument("--stages", action="store_true", help="time each e2e stage alone (first model, fp16)")
    parser.add_argument("--check", default=None, help="real MobileNetV2 weights file: check GPU vs CPU top-1")
    args = parser.parse_args()

    os.environ.setdefault("VIEWFINDER_HOME", tempfile.mkdtemp(prefix="vf-gpu-home-"))
    import torch
    import torchvision

    from viewfinder import create_model

    if args.batches_ahead:
        from viewfinder.models import predictor

        predictor.GPU_BATCHES_AHEAD = args.batches_ahead
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark needs one")
    unique = sorted(jpeg_folder(256).glob("*.jpg"))[:256]
    files = [str(f) for f in unique] * (-(-args.images // len(unique)))
    print(f"machine: {machine_description()}; GPU {torch.cuda.get_device_name(0)}; torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}")
    print(f"{len(unique)} distinct 640x480 JPEGs (page cache warm), {args.images} per run at batch >= 64 "
          f"(batch 1: {args.images // 16}, batch 8: {args.images // 4}); img/s: median of {args.repeats} runs after "
          "a warm-up (best in brackets)\n")
    for name, rate in decode_rates(files[:2048]).items():
        print(f"- JPEG decode alone, {name}: {rate:,.0f} img/s")
    if args.check:
        check_against_cpu(args.check, sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".png")))
    if args.stages:
        staged = create_model(args.models[0], pretrained=False, device="gpu:0", engine="torch", fp16=True)
        print(f"\nstages, {args.models[0]} fp16, batch {max(args.batches)}:")
        stage_breakdown(staged, files[:args.images], max(args.batches))
        stage_breakdown(staged, files[:args.images], max(args.batches))  # the second pass is warm
        import cProfile
        import pstats

        profile = cProfile.Profile()  # the predict loop's own thread (decode workers are not in it)
        profile.runcall(lambda: sum(1 for _ in staged.predict(files[:args.images], batch_size=max(args.batches))))
        print("main-thread profile of predict():")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(12)
        staged.close()
    print("\n| model | precision | batch | e2e img/s | e2e, CPU decode | raw img/s | e2e / raw |")
    print("|---|---|---|---|---|---|---|")
    for model_name in args.models:
        for fp16 in (False, True):
            torch.manual_seed(0)
            try:
                model = create_model(model_name, pretrained=False, device="gpu:0", engine="torch", fp16=fp16)
            except Exception as exc:  # keep measuring the other models
                print(f"<!-- {model_name}: {type(exc).__name__}: {exc} -->")
                continue
            for batch_size in args.batches:
                count = args.images if batch_size >= 64 else args.images // (16 if batch_size == 1 else 4)
                try:
                    e2e = images_per_second(e2e_runner(model, files[:count], batch_size), args.repeats)
                    raw = images_per_second(raw_runner(model, batch_size, count), args.repeats)
                    cpu_decode = "-"
                    if batch_size == max(args.batches):
                        os.environ["VIEWFINDER_GPU_DECODE"] = "0"
                        plain = create_model(model_name, pretrained=False, device="gpu:0", engine="torch", fp16=fp16,
                                             decode_threads=16)
                        median, best = images_per_second(e2e_runner(plain, files[:count // 4], batch_size), 1)
                        cpu_decode = f"{median:,.0f}"
                        plain.close()
                        del os.environ["VIEWFINDER_GPU_DECODE"]
                except Exception as exc:
                    print(f"<!-- {model_name} bs {batch_size}: {type(exc).__name__}: {exc} -->", flush=True)
                    continue
                print(f"| {model_name} | {'fp16' if fp16 else 'fp32'} | {batch_size} | {e2e[0]:,.0f} ({e2e[1]:,.0f}) | "
                      f"{cpu_decode} | {raw[0]:,.0f} ({raw[1]:,.0f}) | {e2e[0] / raw[0]:.0%} |", flush=True)
            model.close()
    print(f"\ntarget: PP-LCNet_x1_0 e2e >= {E2E_TARGET:,} img/s at batch 256")


if __name__ == "__main__":
    main()
