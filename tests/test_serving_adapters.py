"""PipelineAdapter.answer_each: the per-item answer loop every adapter's batch runs through."""
from __future__ import annotations

from types import SimpleNamespace

from viewfinder.errors import InputError
from viewfinder.results import ErrorResult
from viewfinder.serving.adapters.base import PipelineAdapter


class _Result(dict):
    ok = True

    def __init__(self, data, drawing):
        super().__init__(data)
        self.img = {"res": drawing}


class _Runtime:
    def __init__(self):
        self.drawn = []

    def encode_image(self, image):
        self.drawn.append(dict(image))
        return f"jpeg:{image['label']}"


def _adapter():
    return PipelineAdapter(SimpleNamespace(predict=lambda inputs: iter(())), _Runtime())


def test_each_item_gets_its_answer_or_its_own_error():
    adapter = _adapter()
    drawing = {"label": "cat"}
    results = [_Result({"label": "cat"}, drawing), ErrorResult({"input_path": None, "error": "not an image"}),
               _Result({"label": "boom"}, {}), _Result({"label": "dog"}, {"label": "dog"})]

    def convert(result, suffix):
        if result["label"] == "boom":
            raise ValueError("conversion failed")
        drawing["label"] = result["label"] + suffix  # changed before the drawing is encoded
        return SimpleNamespace(label=result["label"] + suffix, image=None)

    outcomes = adapter.answer_each(results, [True, True, False, False], convert, ["!", "?", "#", "."])
    assert [type(o).__name__ for o in outcomes] == ["SimpleNamespace", "InputError", "ValueError", "SimpleNamespace"]
    assert outcomes[0].label == "cat!" and outcomes[0].image == "jpeg:cat!"  # drawn after convert
    assert isinstance(outcomes[1], InputError) and str(outcomes[1]) == "not an image"
    assert outcomes[3].label == "dog." and outcomes[3].image is None  # not asked to visualize
    assert adapter.runtime.drawn == [{"label": "cat!"}]
