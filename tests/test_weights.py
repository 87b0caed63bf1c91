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


# --- weight sources: PaddleX's file by default, timm / torchvision by name ------------------

PADDLEX_URL = "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/{}_pretrained.pdparams"


@pytest.fixture(scope="module")
def lcnet_pdparams() -> bytes:
    """A PaddleClas PP-LCNet_x0_25 state dict (the parity fixture's seeded weights) as .pdparams bytes."""
    import sys
    from pathlib import Path

    parity = Path(__file__).resolve().parents[1] / "tools" / "parity"
    sys.path.insert(0, str(parity))
    from seeded import load_fixture

    _, state, _, _ = load_fixture(Path(__file__).parent / "fixtures" / "parity" / "PP-LCNet_x0_25")
    return pickle.dumps(state, protocol=4)


def test_paddlex_file_is_the_default_wherever_a_converter_exists():
    for name in registry.list_models("image_classification"):
        spec = registry.get_spec(name)
        names = [source.name for source in spec.weight_sources]
        if "pdparams" not in spec.converters:
            assert "paddlex" not in names, name
            continue
        first = spec.weight_sources[0]
        assert (first.kind, first.format, first.name) == ("url", "pdparams", "paddlex"), name
        assert first.url == PADDLEX_URL.format(name) and first.filename == f"{name}_pretrained.pdparams", name
        assert first.sha256 is None, name  # not downloadable where the zoo was written: unknown, unchecked
        assert names.count("paddlex") == 1, name


def test_timm_weights_only_where_they_fit_the_network():
    for name in ("PP-LCNet_x1_0", "PP-LCNetV2_base", "PP-HGNet_tiny", "PP-HGNetV2-B0", "ResNet50", "ResNet50_vd"):
        assert [s.name for s in registry.get_spec(name).weight_sources] == ["paddlex", "timm"], name
    # PaddleClas-faithful networks, or timm networks changed to PaddleClas's (MobileNetV1: ReLU)
    for name in ("MobileNetV1_x1_0", "MobileNetV2_x0_5", "MobileNetV3_large_x1_0", "ResNet18", "ResNet34_vd",
                 "ResNet200_vd"):
        assert [s.name for s in registry.get_spec(name).weight_sources] == ["paddlex"], name
    assert [s.name for s in registry.get_spec("MobileNetV2_x1_0").weight_sources] == ["paddlex", "torchvision"]


def _raw(model):
    return model.raw(np.linspace(-2, 2, 3 * 64 * 64, dtype=np.float32).reshape(1, 3, 64, 64))


def test_cached_paddlex_file_is_the_default_and_selectable_by_name(tmp_home, tmp_path, lcnet_pdparams):
    (tmp_home / "weights").mkdir()
    (tmp_home / "weights" / "PP-LCNet_x0_25_pretrained.pdparams").write_bytes(lcnet_pdparams)
    (tmp_path / "own.pdparams").write_bytes(lcnet_pdparams)
    default = _raw(create_model("PP-LCNet_x0_25"))
    np.testing.assert_array_equal(_raw(create_model("PP-LCNet_x0_25", weights="paddlex")), default)
    np.testing.assert_array_equal(_raw(create_model("PP-LCNet_x0_25", weights=tmp_path / "own.pdparams")), default)


def test_paddlex_file_downloads_once(weight_server, tmp_home, monkeypatch, lcnet_pdparams):
    served, base, hits = weight_server
    (served / "PP-LCNet_x0_25_pretrained.pdparams").write_bytes(lcnet_pdparams)
    spec = registry.get_spec("PP-LCNet_x0_25")
    paddlex = dataclasses.replace(spec.weight_sources[0], url=f"{base}/PP-LCNet_x0_25_pretrained.pdparams")
    monkeypatch.setitem(registry._REGISTRY, spec.name, dataclasses.replace(spec, weight_sources=(paddlex,)))
    monkeypatch.setenv("VIEWFINDER_OFFLINE", "0")
    first = _raw(create_model("PP-LCNet_x0_25", weights="paddlex"))  # no sha256 known: not checked
    assert (tmp_home / "weights" / "PP-LCNet_x0_25_pretrained.pdparams").is_file() and len(hits) == 1
    np.testing.assert_array_equal(_raw(create_model("PP-LCNet_x0_25")), first)
    assert len(hits) == 1


def test_timm_by_name_uses_only_timms_weights(tmp_home):
    (tmp_home / "weights").mkdir()
    with pytest.raises(WeightsNotFoundError) as info:
        create_model("PP-LCNet_x1_0", weights="timm")
    assert "timm hub weights 'lcnet_100'" in str(info.value) and "pdparams" not in str(info.value)


@pytest.mark.parametrize("name", ["MobileNetV3_small_x0_35", "MobileNetV2_x1_0", "ResNet18", "MobileNetV1_x1_0"])
def test_timm_is_refused_where_its_weights_do_not_fit(name):
    with pytest.raises(WeightsError, match=rf"no timm weights fit {name}'s network .*weight sources: paddlex"):
        create_model(name, weights="timm")


def test_mobilenet_v2_sources_by_name_and_the_cached_fallback(seeded_home, caplog):
    with pytest.raises(WeightsNotFoundError, match="MobileNetV2_x1_0_pretrained.pdparams"):
        create_model("MobileNetV2_x1_0", weights="paddlex")  # offline, not cached
    named = create_model("MobileNetV2_x1_0", weights="torchvision")
    # torchvision's file keeps torchvision's recipe (Pillow), PaddleX's the zoo default (cv2)
    assert named.preprocess.config.backend == "pillow"
    with caplog.at_level("WARNING", logger="viewfinder.models.weights"):
        default = create_model("MobileNetV2_x1_0")  # PaddleX's file is not there: the cached torchvision one
    assert "using the torchvision weights" in caplog.text
    np.testing.assert_array_equal(_raw(default), _raw(named))
    assert default.preprocess.config.backend == "pillow"


def test_a_word_that_is_neither_file_nor_source_is_a_clear_error():
    with pytest.raises(WeightsNotFoundError, match="neither a weight file nor a source name .*paddlex, timm, torchvision"):
        create_model("PP-LCNet_x0_25", weights="paddle")


def test_source_names_work_from_yaml_and_cli(seeded_home, photos, tmp_path):
    from click.testing import CliRunner

    from viewfinder import create_pipeline
    from viewfinder.cli import cli

    pipeline = create_pipeline("image_classification", device="cpu", config={"SubModules": {"ImageClassification": {
        "model_name": "MobileNetV2_x1_0", "weights": "torchvision", "engine": "torch"}}})
    assert list(pipeline.predict(str(photos / "coffee.png"), topk=1))[0]["label_names"] == ["espresso"]
    result = CliRunner().invoke(cli, ["export", "--model", "ResNet18", "--weights", "timm", "--output",
                                      str(tmp_path / "r.onnx")])
    assert result.exit_code != 0 and "no timm weights fit ResNet18" in result.output


@pytest.mark.parametrize("name, arch", [("MobileNetV2_x1_0", "mobilenetv2_100"), ("ResNet18", "resnet18"),
                                        ("ResNet34_vd", "resnet34d")])
def test_weights_saved_from_timms_network_still_load_exactly(name, arch, tmp_path):
    """These names built timm's network before; such files (model dirs) load into PaddleClas's exactly."""
    import timm

    torch.manual_seed(0)
    old = timm.create_model(arch, pretrained=False, num_classes=7).eval()
    for module in old.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    from safetensors.torch import save_file

    save_file(old.state_dict(), str(tmp_path / "old.safetensors"))
    spec = registry.get_spec(name)
    module = spec.builder(num_classes=7).eval()
    from viewfinder.models.weights import load_weights_file

    assert load_weights_file(module, tmp_path / "old.safetensors", spec) == "timm"
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        np.testing.assert_allclose(module(x).numpy(), old(x).numpy(), rtol=1e-5, atol=1e-5)
