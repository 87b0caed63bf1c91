#!/usr/bin/env python3
"""Ways to share two cores between PP-ShiTuV2's two networks (issue 30). One-crop workload
(random PP-ShiTuV2_det/_rec, the exports ``benchmarks/shitu.py`` runs), 16 JPEGs twice per pass,
median ms/img [cores busy]:

* ``predict, cpu_lanes 1``: one image at a time at 2 threads (detector in its own thread, the
  recogniser overlapping), what predict did before lanes;
* ``predict, cpu_lanes auto``: predict as it is: two lanes where the engines have them (ONNX
  Runtime: fp32, int8), else as above (OpenVINO: bf16);
* ``two 1-thread pipelines``: two pipelines at 1 thread, each taking every other image through
  decode, detection, crops and embedding in turn (lanes built from separate models, any engine);
* ``serial``: one image at a time through the same steps at 2 threads, nothing overlapping;
* ``one network at a time``: ``cpu_lanes 1`` with the two networks behind one lock (both threads
  for whichever runs; decoding and cropping still overlap);
* each step's CPU time per image, one image at a time at 1 thread;
* and the detector network alone in OpenVINO: one request on 2 threads against 2 streams of 1
  thread with two requests in flight (bf16 only).

    .venv/bin/python benchmarks/shitu_schedules.py [--precision bf16|fp32|int8] [--passes 4]
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Timed, jpeg_folder, machine_description, medians, time_pass  # noqa: E402
from benchmarks.shitu import ONE_CROP, calibration_photos, make_pipeline, workloads  # noqa: E402


class OneAtATime:
    """An engine that runs only while holding ``lock`` (shared with the pipeline's other network)."""

    def __init__(self, inner, lock: threading.Lock) -> None:
        self.inner, self.lock = inner, lock

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        with self.lock:
            return self.inner(*args, **kwargs)


STAGES = ("decode + detector resize", "detector network", "NMS", "crops", "recogniser preprocessing",
          "recogniser network", "search")


def in_turn(pipeline, images: list[str], index, stages: dict[str, float] | None = None) -> None:
    """Each image decoded, detected, cropped, embedded and searched before the next one starts;
    ``stages`` (when given) adds up each step's CPU seconds."""
    from viewfinder.models.detection import Detections
    from viewfinder.models.predictor import expand_inputs
    from viewfinder.pipelines.shitu import _detected_boxes, _whole_image_box

    detector, recognizer = pipeline.detector, pipeline.recognizer
    params = detector.resolve_params({"threshold": pipeline.det_threshold})
    clock = time.thread_time

    def step(name: str, run):
        start = clock()
        value = run()
        if stages is not None:
            stages[name] = stages.get(name, 0.0) + clock() - start
        return value

    for item in expand_inputs(images):
        image = step(STAGES[0], lambda: detector._decode_cpu(item))
        outputs = step(STAGES[1], lambda: detector.engine(detector._collate([image])))
        boxes = step(STAGES[2], lambda: detector._boxes(outputs, [image], params)[0])
        if stages is None:
            pipeline._recognise([Detections(image, boxes)], index, pipeline.rec_threshold, pipeline.rec_topk)
            continue
        # _recognise's steps one at a time: the detected boxes, else the whole image (one-crop: always)
        found = Detections(image, boxes)
        searched = _detected_boxes(found) or [_whole_image_box(found)]
        crops = step(STAGES[3], lambda: pipeline._crops(image, [coordinate for coordinate, _ in searched]))
        batch = step(STAGES[4], lambda: recognizer.preprocess(crops))
        features = step(STAGES[5], lambda: recognizer._to_features(recognizer.engine(batch), len(crops)))
        step(STAGES[6], lambda: index.search(features, pipeline.rec_topk))


def detector_streams(path: Path, passes: int) -> str:
    import numpy as np
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    feed = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    base = {"INFERENCE_PRECISION_HINT": "bf16", "ENABLE_CPU_PINNING": False, "INFERENCE_NUM_THREADS": 2}
    results = {}
    for label, config, workers in (("one request, 2 threads", {"PERFORMANCE_HINT": "LATENCY"}, 1),
                                   ("2 streams x 1 thread, 2 in flight", {"NUM_STREAMS": 2}, 2)):
        compiled = core.compile_model(model, "CPU", {**base, **config})
        requests = [compiled.create_infer_request() for _ in range(workers)]
        for request in requests:
            request.infer({0: feed})
        runs = 8 * passes

        def work(request, n=runs // workers):
            for _ in range(n):
                request.infer({0: feed})

        def all_requests(threads=[threading.Thread(target=work, args=(r,)) for r in requests]) -> int:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return runs

        results[label] = time_pass(all_requests).ms
    return "; ".join(f"{label}: {ms:.1f} ms/img" for label, ms in results.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32", "int8"])
    parser.add_argument("--passes", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    override = workloads("onnxruntime")[ONE_CROP]
    photos = calibration_photos()
    two = make_pipeline(ONE_CROP, override, 2, args.precision, photos)
    lanes = [make_pipeline(ONE_CROP, override, 1, args.precision, photos) for _ in range(2)]
    images = sorted(str(p) for p in jpeg_folder(16).glob("*.jpg"))[:16] * 2
    index = two.build_index(images[:16], [f"item{i}" for i in range(16)], show_progress=False)
    engines = (two.detector.engine, two.recognizer.engine)
    lock = threading.Lock()

    def predict(cpu_lanes: int | str = "auto") -> None:
        two.cpu_lanes = cpu_lanes
        list(two.predict(images, index=index))

    def one_network_at_a_time() -> None:
        two.detector.engine, two.recognizer.engine = (OneAtATime(e, lock) for e in engines)
        try:
            predict(1)
        finally:
            two.detector.engine, two.recognizer.engine = engines

    def two_lanes() -> None:
        threads = [threading.Thread(target=in_turn, args=(p, images[i::2], index)) for i, p in enumerate(lanes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    variants = {"predict, cpu_lanes 1": lambda: predict(1), "predict, cpu_lanes auto (as it is)": predict,
                "two 1-thread pipelines": two_lanes,
                "serial, 2 threads": lambda: in_turn(two, images, index),
                "one network at a time": one_network_at_a_time}
    samples: dict[str, list[Timed]] = {name: [] for name in variants}
    for run in variants.values():
        run()  # warm-up
    for _ in range(args.passes):
        for name, run in variants.items():  # interleaved, so a change in load hits all alike
            samples[name].append(time_pass(lambda run=run: (run(), len(images))[1]))
    ms, cores = medians(samples)
    print(f"machine: {machine_description()}; precision {args.precision} (ran: det {two.detector.precision}, "
          f"rec {two.recognizer.precision}); {len(images)} images per pass, median of {args.passes} passes\n")
    print("| schedule | ms/img [cores busy] | every pass |\n|---|---|---|")
    for name, runs in samples.items():
        print(f"| {name} | {ms[name]:.1f} [{cores[name]:.2f}] | {', '.join(f'{t.ms:.1f}' for t in runs)} |")
    stages: dict[str, float] = {}
    for _ in range(args.passes):
        in_turn(lanes[0], images, index, stages)
    per_image = {name: 1000.0 * seconds / (args.passes * len(images)) for name, seconds in stages.items()}
    print(f"\neach step's CPU ms per image, one image at a time at 1 thread ({sum(per_image.values()):.1f} in all):")
    print("| " + " | ".join(STAGES) + " |\n" + "|---" * len(STAGES) + "|")
    print("| " + " | ".join(f"{per_image[name]:.2f}" for name in STAGES) + " |")
    if two.detector.precision == "bf16":
        print(f"\ndetector network alone (OpenVINO bf16): {detector_streams(Path(engines[0].path), args.passes)}")


if __name__ == "__main__":
    main()
