"""PP-ShiTuV2's lanes (pipelines/lanes.py): several images at once, one CPU thread each, for inputs
that name several images; the same answers as one image at a time, errors in place."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from shitu_fp32_cases import PHOTOS, QUERIES, ROOT, SHARED, WEIGHTS
from test_int8 import tiny  # noqa: F401  (fixture)

from viewfinder import create_pipeline
from viewfinder.engines.openvino_engine import OpenVinoEngine, OpenVinoLanes
from viewfinder.errors import ConfigError
from viewfinder.pipelines import lanes as lanes_module
from viewfinder.pipelines import shitu as shitu_module
from viewfinder.pipelines.lanes import check_lanes, lane_twin, ordered_map, several_images

GALLERY = ("dog.jpg", "horses.jpg", "astronaut.png", "chelsea.png", "coffee.png", "giraffe.jpg")


def test_ordered_map_keeps_input_order_with_uneven_work() -> None:
    def slow_first(n: int) -> int:
        time.sleep(0.05 if n % 3 == 0 else 0.0)
        return n * n

    assert list(ordered_map(slow_first, range(10), workers=3, ahead=4)) == [n * n for n in range(10)]


def test_ordered_map_raises_an_error_after_the_results_before_it() -> None:
    def items():
        yield from (1, 2, 3)
        raise ValueError("input 4 is unreadable")

    got = []
    with pytest.raises(ValueError, match="input 4"):
        for value in ordered_map(lambda n: n + 100, items(), workers=2, ahead=4):
            got.append(value)
    assert got == [101, 102, 103]

    def fails_on_two(n: int) -> int:
        if n == 2:
            raise RuntimeError("lane failed on 2")
        return n

    got = []
    with pytest.raises(RuntimeError, match="on 2"):
        for value in ordered_map(fails_on_two, range(5), workers=2, ahead=2):
            got.append(value)
    assert got == [0, 1]


def test_ordered_map_closed_early_starts_no_more_work() -> None:
    started = []
    lock = threading.Lock()

    def work(n: int) -> int:
        with lock:
            started.append(n)
        time.sleep(0.02)
        return n

    results = ordered_map(work, range(100), workers=2, ahead=4)
    assert next(results) == 0
    results.close()  # shuts the pool down: waits for what runs, cancels what waits
    assert len(started) <= 5  # the first item and at most `ahead` more were ever submitted


def test_cpu_lanes_setting_is_checked() -> None:
    assert check_lanes(None) == "auto" and check_lanes("Auto") == "auto"
    assert check_lanes(1) == 1 and check_lanes(3) == 3
    for bad in (0, -2, "two", True, 1.5):
        with pytest.raises(ConfigError, match="cpu_lanes"):
            check_lanes(bad)


def test_several_images_reads_nothing(tmp_path: Path) -> None:
    assert several_images(["a.jpg", "b.jpg"]) and several_images({"a": 1, "b": 2})
    assert not several_images(["a.jpg"]) and not several_images("a.jpg")
    assert several_images(tmp_path) and several_images(str(tmp_path))
    assert not several_images(iter(["a.jpg", "b.jpg"]))  # a generator is not read ahead to count it


def _side_by_side(engine, batches: list) -> list:
    """``engine`` called from one thread per batch, all at once."""
    results: list = [None] * len(batches)
    start = threading.Barrier(len(batches))

    def call(i: int) -> None:
        start.wait()
        results[i] = engine(batches[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_engines_for_lanes_run_one_thread_each_and_answer_alike(tiny):  # noqa: F811
    predictor, _ = tiny
    engine = predictor.engine  # ONNX Runtime, 2 threads or whatever the machine gives
    batches = [np.random.default_rng(i).random((1, 3, 64, 64), dtype=np.float32) for i in range(2)]
    expected = [engine(b) for b in batches]
    ort_lanes = engine.for_lanes(2)
    assert ort_lanes.cpu_threads == 1 and ort_lanes.path == engine.path
    for got, want in zip(_side_by_side(ort_lanes, batches), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    openvino = OpenVinoEngine.like(engine, "fp32").for_lanes(2)
    assert isinstance(openvino, OpenVinoLanes) and len(openvino.engines) == 2
    assert all(e.cpu_threads == 1 for e in openvino.engines) and openvino.output_names == engine.output_names
    for got, want in zip(_side_by_side(openvino, batches), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert openvino._free.qsize() == 2  # every engine handed back


def test_an_engine_without_lanes_gives_no_twin() -> None:
    class Model:
        engine = object()  # torch, or an engine on a GPU: no for_lanes

    assert lane_twin(Model(), 2) is None


@pytest.fixture(scope="module")
def offline_pipeline():
    """The offline example (real CenterNet + real MobileNetV2) at 2 CPU threads, ONNX Runtime fp32."""
    if not (SHARED / "assets" / "centernet.onnx").is_file() or not (WEIGHTS / "mobilenet_v2-b0353104.pth").is_file():
        pytest.fail("../shared/assets/centernet.onnx or the seeded MobileNetV2 weights missing: run `make test`")
    pipeline = create_pipeline(str(ROOT / "examples" / "configs" / "PP-ShiTuV2_offline.yaml"), device="cpu",
                               cpu_threads=2, engine="onnxruntime", config={"SubModules": {
                                   "Detection": {"spec": {"onnx": str(SHARED / "assets" / "centernet.onnx")}},
                                   "Recognition": {"weights": str(WEIGHTS / "mobilenet_v2-b0353104.pth"),
                                                   "batch_size": 4}}})
    index = pipeline.build_index([str(PHOTOS / g) for g in GALLERY], [Path(g).stem for g in GALLERY],
                                 show_progress=False)
    return pipeline, index


def _answers(results) -> list:
    return [r["error"] if "error" in r else
            [(b["labels"], [round(s, 3) for s in b["rec_scores"]], [round(c) for c in b["coordinate"]])
             for b in r["boxes"]] for r in results]


def test_lanes_answer_as_one_image_at_a_time(offline_pipeline, monkeypatch) -> None:
    pipeline, index = offline_pipeline
    inputs = [str(PHOTOS / q) for q in QUERIES]  # missing.jpg among them: an error in its place
    calls = []
    real_map = lanes_module.ordered_map

    def counting_map(*args, **kwargs):
        calls.append(kwargs.get("ahead"))
        return real_map(*args, **kwargs)

    monkeypatch.setattr(shitu_module, "ordered_map", counting_map)
    monkeypatch.setattr(pipeline, "cpu_lanes", "auto")
    in_lanes = list(pipeline.predict(inputs, index=index, rec_threshold=0.3))
    assert calls == [4], "several images at 2 threads go through two lanes"
    lanes, detector, recognizer = pipeline._lane_models
    assert lanes == 2 and detector.engine.cpu_threads == 1 and recognizer.engine.cpu_threads == 1
    assert pipeline.detector.engine.cpu_threads == 2  # the pipeline's own models keep both threads

    monkeypatch.setattr(pipeline, "cpu_lanes", 1)
    one_at_a_time = list(pipeline.predict(inputs, index=index, rec_threshold=0.3))
    assert calls == [4], "cpu_lanes: 1 never uses lanes"
    assert _answers(in_lanes) == _answers(one_at_a_time)
    assert [Path(r["input_path"]).name for r in in_lanes] == [Path(i).name for i in inputs]
    assert "no such file" in str(in_lanes[QUERIES.index("missing.jpg")]["error"])
    assert any(b["labels"] for r in in_lanes if "boxes" in r for b in r["boxes"])  # something was recognised

    monkeypatch.setattr(pipeline, "cpu_lanes", "auto")
    single = list(pipeline.predict(inputs[0], index=index, rec_threshold=0.3))
    assert calls == [4], "one image keeps both threads (no lanes)"
    assert _answers(single) == _answers(one_at_a_time[:1])


def test_cpu_lanes_in_the_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="cpu_lanes"):
        create_pipeline("PP-ShiTuV2", device="cpu", pretrained=False, config={"cpu_lanes": 0})
