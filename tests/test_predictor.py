"""The predict loop's decode pool: the predicting thread decodes what the pool has not started."""
from __future__ import annotations

import threading
import time

import numpy as np

from viewfinder import create_model


def test_predicting_thread_takes_over_decodes_the_pool_has_not_started(photos, tmp_path):
    model = create_model("PP-LCNet_x0_25", pretrained=False, device="cpu", engine="torch", decode_threads=1)
    inputs = [str(photos / name) for name in ("chelsea.png", "coffee.png", "astronaut.png")]
    inputs.insert(2, str(tmp_path / "missing.jpg"))
    reference = list(model.predict(inputs, batch_size=4))

    decode = model._decode_cpu
    threads: dict[str, str] = {}

    def slow_in_pool(item):
        name = threading.current_thread().name
        threads[item.input_path] = name
        if name.startswith("viewfinder-decode"):
            time.sleep(0.3)  # the one pool thread is slow: the predicting thread should not wait on it
        return decode(item)

    model._decode_cpu = slow_in_pool
    results = list(model.predict(inputs, batch_size=4))

    # The pool started the first image; the predicting thread decoded the rest, from the back.
    assert threads[inputs[0]].startswith("viewfinder-decode")
    assert {threads[p] for p in (inputs[1], inputs[3])} == {threading.current_thread().name}
    # Same results, same order, the unreadable input still an error in its place.
    assert [r.ok for r in results] == [True, True, False, True]
    for ours, ref in zip(results, reference):
        assert ours["input_path"] == ref["input_path"]
        if ours.ok:
            assert list(ours["class_ids"]) == list(ref["class_ids"])
            np.testing.assert_allclose(ours["scores"], ref["scores"], rtol=1e-6)
