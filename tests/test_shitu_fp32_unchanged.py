"""PP-ShiTuV2 fp32 results stay what main's code gave (issue 30 reworked predict: overlapped
detection and recognition, crops of several images in one recogniser call, the Pillow decode
route). Expectations: tests/fixtures/shitu_fp32/expected.json, written by make_expected.py there
from the code before the change."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from shitu_fp32_cases import CASES, build

EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "shitu_fp32" / "expected.json").read_text())
SCORE_TOL = 2e-4  # printed with 5 decimals
COORD_TOL = 1e-2


def assert_same(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for result, want in zip(got, expected):
        assert Path(str(result.get("input_path"))).name == want["input_path"]
        assert ("error" in result) == ("error" in want)
        if "error" in want:
            continue
        assert len(result["boxes"]) == len(want["boxes"]), result["input_path"]
        for box, wbox in zip(result["boxes"], want["boxes"]):
            assert box["coordinate"] == pytest.approx(wbox["coordinate"], abs=COORD_TOL)
            assert box["det_score"] == pytest.approx(wbox["det_score"], abs=SCORE_TOL)
            assert box["rec_scores"] == pytest.approx(wbox["rec_scores"], abs=SCORE_TOL)
            # labels in score order; neighbours whose scores tie within the tolerance may swap
            scores = wbox["rec_scores"]
            for i, (label, wlabel) in enumerate(zip(box["labels"], wbox["labels"])):
                tied = any(abs(scores[i] - scores[j]) <= SCORE_TOL for j in (i - 1, i + 1) if 0 <= j < len(scores))
                assert label == wlabel or tied


@pytest.mark.parametrize("name", CASES)
def test_fp32_results_unchanged(name, photos, shared_dir, mobilenet_v2_weights):
    pipeline, index, inputs, params = build(name)
    assert_same(list(pipeline.predict(inputs, index=index, **params)), EXPECTED[name])
    # one input at a time (what the service does) gives the same answers
    single = [next(iter(pipeline.predict(i, index=index, **params)), None) for i in inputs if Path(i).exists()]
    assert_same(single, [w for w in EXPECTED[name] if "error" not in w])
