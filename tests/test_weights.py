"""Weight resolution: explicit file, model_dir, cache, download (from a server on 127.0.0.1)."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import pickle
import threading

import numpy as np
import pytest
import torch

from viewfinder import create_model
from viewfinder.errors import WeightsError, WeightsNotFoundError
from viewfinder.models import registry
from viewfinder.models.model_dir import write_model_dir
from viewfinder.models.registry import WeightSource
from viewfinder.models.weights import read_pdparams


@pytest.fixture()
def weight_server(tmp_path):
    """Serve tmp_path/served over HTTP on 127.0.0.1; counts requests."""
    served = tmp_path / "served"
    served.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.fixture()
def served_spec(monkeypatch, mobilenet_v2_weights, weight_server):
    """MobileNetV2_x1_0 with its URL source pointed at the local server."""
    served, base, hits = weight_server
    data = mobilenet_v2_weights.read_bytes()
    (served / "mnv2.pth").write_bytes(data)
    spec = registry.get_spec("MobileNetV2_x1_0")

    def with_source(sha: str) -> None:
        source = WeightSource(kind="url", format="torchvision", url=f"{base}/mnv2.pth", filename="mnv2.pth", sha256=sha)
        monkeypatch.setitem(registry._REGISTRY, spec.name, dataclasses.replace(spec, weight_sources=(source,)))

    return with_source, hashlib.sha256(data).hexdigest(), hits


def test_download_once_then_cache(served_spec, tmp_home, monkeypatch, photos):
    with_source, sha, hits = served_spec
    with_source(sha)
    monkeypatch.setenv("VIEWFINDER_OFFLINE", "0")
    model = create_model("MobileNetV2_x1_0")
    assert (tmp_home / "weights" / "mnv2.pth").is_file() and len(hits) == 1
    assert list(model.predict(str(photos / "coffee.png"), topk=1))[0]["label_names"] == ["espresso"]
    create_model("MobileNetV2_x1_0")  # cached: no second request
    assert len(hits) == 1
    assert not list((tmp_home / "weights").glob("*.part"))


def test_checksum_mismatch_leaves_no_file(served_spec, tmp_home, monkeypatch):
    with_source, _, _ = served_spec
    with_source("0123456789abcdef")
    monkeypatch.setenv("VIEWFINDER_OFFLINE", "0")
    with pytest.raises(WeightsError, match="sha256"):
        create_model("MobileNetV2_x1_0")
    assert list((tmp_home / "weights").iterdir()) == []


def test_no_network_no_cache_says_what_to_put_where(tmp_home):
    with pytest.raises(WeightsNotFoundError) as info:
        create_model("MobileNetV2_x1_0")
    message = str(info.value)
    assert "mobilenet_v2-b0353104.pth" in message and str(tmp_home / "weights") in message


def test_unreachable_server_is_a_clear_error(served_spec, tmp_home, monkeypatch):
    spec = registry.get_spec("MobileNetV2_x1_0")
    source = WeightSource(kind="url", format="torchvision", url="http://127.0.0.1:9/none.pth", filename="none.pth")
    monkeypatch.setitem(registry._REGISTRY, spec.name, dataclasses.replace(spec, weight_sources=(source,)))
    monkeypatch.setenv("VIEWFINDER_OFFLINE", "0")
    with pytest.raises(WeightsNotFoundError, match="download of http://127.0.0.1:9/none.pth failed"):
        create_model("MobileNetV2_x1_0")


def test_seeded_cache_file_is_used_offline(seeded_home, photos):
    model = create_model("MobileNetV2_x1_0")
    assert list(model.predict(str(photos / "chelsea.png"), topk=1))[0]["label_names"][0] == "Egyptian cat"


def test_explicit_weights_file_and_model_dir_roundtrip(mobilenet_v2, tmp_path, photos):
    folder = write_model_dir(mobilenet_v2, tmp_path / "exported")
    assert (folder / "model.safetensors").is_file() and (folder / "config.yaml").is_file()
    reloaded = create_model(model_dir=folder)
    batch = mobilenet_v2.preprocess([np.zeros((64, 64, 3), np.uint8) + 127])
    np.testing.assert_array_equal(reloaded.raw(batch), mobilenet_v2.raw(batch))
    direct = create_model("MobileNetV2_x1_0", weights=folder / "model.safetensors")
    np.testing.assert_array_equal(direct.raw(batch), mobilenet_v2.raw(batch))


def test_corrupt_and_mismatched_weight_files(tmp_path):
    truncated = tmp_path / "broken.pth"
    truncated.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="cannot read weight file"):
        create_model("PP-LCNet_x0_25", weights=truncated)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="key layout does not match PP-LCNet_x0_25"):
        create_model("PP-LCNet_x0_25", weights=other)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_model("PP-LCNet_x0_25", weights=tmp_path / "absent.pth")
    with pytest.raises(WeightsNotFoundError, match="model_dir"):
        create_model(model_dir=tmp_path / "absent_dir")


def test_pdparams_reader_refuses_code(tmp_path):
    good = tmp_path / "ok.pdparams"
    good.write_bytes(pickle.dumps({"a": np.ones(3, np.float32), "StructuredToParameterName@@": {"a": "x"}}))
    assert list(read_pdparams(good)) == ["a"]
    evil = tmp_path / "evil.pdparams"

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    evil.write_bytes(pickle.dumps({"a": Exploit()}))
    with pytest.raises(Exception, match="refusing to load builtins.print"):
        read_pdparams(evil)


def test_random_init_needs_no_weights(tmp_home):
    model = create_model("ResNet18", pretrained=False)
    assert model.raw(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 1000)
