"""The fixed PP-ShiTuV2 runs whose fp32 results tests/fixtures/shitu_fp32/expected.json stores."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / ".assets" / "photos"
OPENCV = ROOT / ".assets" / "opencv"
SHARED = Path(os.environ.get("VIEWFINDER_SHARED", ROOT.parent / "shared"))
WEIGHTS = Path(os.environ.get("VIEWFINDER_HOME", Path.home() / ".cache" / "viewfinder")) / "weights"

QUERIES = ("dog.jpg", "horses.jpg", "person.jpg", "missing.jpg", "astronaut.png", "kite.jpg", "china.jpg",
           "grace_hopper.jpg")
GALLERY = ("dog.jpg", "horses.jpg", "astronaut.png", "chelsea.png", "coffee.png", "giraffe.jpg")
CASES = ("centernet_mobilenet", "parity_shitu")


def build(name: str) -> tuple[Any, Any, list[str], dict[str, Any]]:
    """(pipeline, index, inputs, predict params) of one stored case."""
    from viewfinder import create_pipeline

    inputs = [str(PHOTOS / q) for q in QUERIES]
    if name == "centernet_mobilenet":
        pipeline = create_pipeline(str(ROOT / "examples" / "configs" / "PP-ShiTuV2_offline.yaml"), device="cpu",
                                   config={"SubModules": {
                                       "Detection": {"spec": {"onnx": str(SHARED / "assets" / "centernet.onnx")}},
                                       "Recognition": {"weights": str(WEIGHTS / "mobilenet_v2-b0353104.pth"),
                                                       "batch_size": 4}}})
        params: dict[str, Any] = {"rec_threshold": 0.3}
    elif name == "parity_shitu":
        parity = SHARED / "parity"
        pipeline = create_pipeline("PP-ShiTuV2", device="cpu", config={"SubModules": {
            "Detection": {"model_name": "PP-ShiTuV2_det", "weights": str(parity / "PP-ShiTuV2_det" / "model.pdparams")},
            "Recognition": {"model_name": "PP-ShiTuV2_rec", "batch_size": 3,
                            "weights": str(parity / "PP-ShiTuV2_rec" / "model.pdparams")}}})
        params = {"det_threshold": 1.0, "rec_threshold": 0.0, "rec_topk": 3}
        inputs = inputs[:5]
    else:
        raise KeyError(name)
    index = pipeline.build_index([str(PHOTOS / g) for g in GALLERY], [Path(g).stem for g in GALLERY],
                                 show_progress=False)
    return pipeline, index, inputs, params
