"""Bad situations around engines: each gives a clear error or a clean fallback with a warning."""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from viewfinder import create_model
from viewfinder.engines import EngineUnavailableError
from viewfinder.models.gpu_decode import CudaJpegDecoder
from viewfinder.engines.select import choose_engine
from viewfinder.errors import DeviceError, ViewfinderError
from viewfinder.models import registry
from viewfinder.models.preprocess import PreprocessConfig
from viewfinder.models.registry import ModelSpec

TINY_PREPROCESS = PreprocessConfig(resize_short=40, crop=32)


class _Tiny(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).relu().mean(dim=(2, 3)))


class _FailsToExport(_Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            raise RuntimeError("unsupported operator aten::made_up")
        return super().forward(x)


class _ExportsWrong(_Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out + 1.0 if torch.onnx.is_in_onnx_export() else out  # the traced graph is not the model


@pytest.fixture()
def tiny_model(monkeypatch):
    """Register a tiny classifier whose module class the test chooses."""

    def register(name: str, module_cls: type[nn.Module]) -> str:
        spec = ModelSpec(name=name, task="image_classification", builder=lambda num_classes=10: module_cls(num_classes),
                         preprocess=TINY_PREPROCESS, num_classes=10, arch=module_cls.__name__)
        monkeypatch.setitem(registry._REGISTRY, name, spec)
        return name

    return register


def test_onnxruntime_not_installed(seeded_home, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(EngineUnavailableError, match=r"needs the onnxruntime package.*pip install") as info:
        create_model("MobileNetV2_x1_0", device="cpu", engine="onnxruntime")
    assert isinstance(info.value, ViewfinderError)
    # auto quietly runs torch; nothing was exported
    model = create_model("MobileNetV2_x1_0", device="cpu", engine="auto")
    assert model.engine.name == "torch"
    assert not (seeded_home / "onnx").exists()


def test_model_that_fails_to_export_falls_back_to_torch(tmp_home, tiny_model, photos, caplog):
    name = tiny_model("Tiny-NoExport", _FailsToExport)
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        model = create_model(name, pretrained=False, device="cpu", engine="onnxruntime")
    assert model.engine.name == "torch"
    assert any("cannot run on ONNX Runtime" in r.message and "export failed" in r.message for r in caplog.records)
    assert next(model.predict(str(photos / "dog.jpg"))).ok
    assert not list((tmp_home / "onnx").glob("*.onnx"))  # nothing half-written left behind
    assert not list((tmp_home / "onnx").glob(".*.part"))


def test_export_that_differs_from_torch_is_refused(tmp_home, tiny_model, caplog):
    name = tiny_model("Tiny-WrongExport", _ExportsWrong)
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        model = create_model(name, pretrained=False, device="cpu", engine="onnxruntime")
    assert model.engine.name == "torch"
    assert any("differs from torch" in r.message for r in caplog.records)
    assert not list((tmp_home / "onnx").glob("*.onnx"))


def test_corrupted_cached_export_is_rebuilt(tmp_home, tiny_model, photos, caplog):
    name = tiny_model("Tiny-Cache", _Tiny)
    torch.manual_seed(1)
    first = create_model(name, pretrained=False, device="cpu", engine="onnxruntime")
    (cached,) = (tmp_home / "onnx").glob("Tiny-Cache-*.onnx")
    record = json.loads(cached.with_suffix(".json").read_text())
    expected = next(first.predict(str(photos / "chelsea.png")))

    cached.write_bytes(cached.read_bytes()[: record["onnx_size"] // 2])  # truncated
    torch.manual_seed(1)
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        second = create_model(name, pretrained=False, device="cpu", engine="onnxruntime")
    assert second.engine.name == "onnxruntime"
    assert any("is corrupt" in r.message and "rebuilding" in r.message for r in caplog.records)
    assert cached.stat().st_size == record["onnx_size"]
    got = next(second.predict(str(photos / "chelsea.png")))
    assert got["class_ids"].tolist() == expected["class_ids"].tolist()

    # same size, one byte flipped: the checksum catches it
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    caplog.clear()
    torch.manual_seed(1)
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        third = create_model(name, pretrained=False, device="cpu", engine="onnxruntime")
    assert third.engine.name == "onnxruntime"
    assert any("checksum" in r.message for r in caplog.records)


def test_no_gpu_gives_clear_errors(monkeypatch, caplog):
    # This machine has no GPU; pretend so elsewhere too, so the check means the same everywhere.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("viewfinder.engines.select.cuda_provider_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is available"):
        create_model("PP-LCNet_x0_25", pretrained=False, device="gpu:0")
    with pytest.raises(EngineUnavailableError, match="needs a CUDA GPU"):
        CudaJpegDecoder(TINY_PREPROCESS, torch.device("cuda", 0))
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        assert choose_engine("onnxruntime", torch.device("cuda", 0)) == "torch"
    assert any("onnxruntime-gpu" in r.message for r in caplog.records)


@pytest.mark.parametrize("backend", ["pillow", "cv2"])
def test_gpu_preprocessing_matches_cpu(tmp_path, photos, backend):
    """The CUDA JPEG path's decode/resize/normalise, run here on the CPU, matches the CPU path of either backend."""
    from PIL import Image

    from viewfinder.io import InputItem, decode_image
    from viewfinder.models.preprocess import Preprocessor

    config = PreprocessConfig(resize_short=256, crop=224, backend=backend)
    paths = []
    for index, name in enumerate(("chelsea.png", "coffee.png", "astronaut.png")):
        path = tmp_path / f"{index}.jpg"
        with Image.open(photos / name) as img:
            img.convert("RGB").resize((640, 480) if index < 2 else (500, 700)).save(path, quality=92)
        paths.append(path)
    decoder = CudaJpegDecoder(config, torch.device("cpu"))
    pending = [decoder.read(InputItem(str(p), str(p)), max_pixels=10**8) for p in paths]
    assert all(p is not None for p in pending)
    assert decoder.read(InputItem(str(photos / "chelsea.png"), None), max_pixels=10**8) is None  # PNG: CPU path
    decoded = decoder.decode(pending)
    cpu = Preprocessor(config)
    one_level = 1.0 / 255.0 / min(config.std)
    raw = decoder._decode_all(pending)  # the full-size pixels, before resizing
    for path, pixels, (size, model_input) in zip(paths, raw, decoded):
        reference = decode_image(path)
        assert size == reference.original_size
        rgb = pixels.permute(1, 2, 0).numpy()
        assert np.abs(rgb.astype(int) - reference.rgb.astype(int)).max() <= 2  # libjpeg vs libjpeg-turbo IDCT
        expected = cpu([reference.rgb])[0]
        diff = np.abs(model_input.numpy() - expected)
        assert model_input.shape == expected.shape
        # Pillow and OpenCV interpolate in fixed point, torch in float.
        assert diff.mean() < 0.2 * one_level and diff.max() <= 1.01 * one_level


def test_gpu_path_through_the_predictor(photos, tmp_path, mobilenet_v2_weights):
    """The predictor's GPU-batch code (pending reads, tensor collate, mixed JPEG/PNG) exercised on the CPU."""
    from PIL import Image

    jpeg = tmp_path / "chelsea.jpg"
    with Image.open(photos / "chelsea.png") as img:
        img.convert("RGB").save(jpeg, quality=95)
    model = create_model("MobileNetV2_x1_0", weights=mobilenet_v2_weights, device="cpu", engine="torch")
    inputs = [str(jpeg), str(photos / "coffee.png")]
    reference = list(model.predict(inputs, batch_size=2))
    model._gpu_jpeg = CudaJpegDecoder(model.preprocess.config, torch.device("cpu"))
    results = list(model.predict([*inputs, str(tmp_path / "missing.jpg")], batch_size=2))
    assert [r.ok for r in results] == [True, True, False]
    for ours, ref in zip(results, reference):
        assert ours["class_ids"][0] == ref["class_ids"][0]
        np.testing.assert_allclose(ours["scores"], ref["scores"], atol=0.02)
        # The GPU path drops the decoded pixels; input_img is read again, lazily, on the CPU.
        assert dict.__getitem__(ours, "input_img") is None or ours is results[1]
        np.testing.assert_array_equal(ours["input_img"], ref["input_img"])
        np.testing.assert_array_equal(ours.get("input_img"), ref["input_img"])
    results[0].save_to_img(tmp_path / "vis")
    assert (tmp_path / "vis" / "chelsea_res.jpg").is_file()


def test_unwritable_cache_falls_back_to_torch(tmp_path, monkeypatch, tiny_model, caplog):
    home = tmp_path / "home-is-a-file"
    home.write_text("not a folder")  # $VIEWFINDER_HOME/onnx cannot be created (root ignores chmod)
    monkeypatch.setenv("VIEWFINDER_HOME", str(home))
    name = tiny_model("Tiny-NoCache", _Tiny)
    with caplog.at_level(logging.WARNING, logger="viewfinder"):
        model = create_model(name, pretrained=False, device="cpu", engine="onnxruntime")
    assert model.engine.name == "torch"
    assert any("cannot write the ONNX cache" in r.message for r in caplog.records)


def test_onnx_only_model_on_a_gpu_without_onnxruntime_gpu_runs_on_the_cpu(monkeypatch, caplog):
    """An ONNX file has no torch twin: without onnxruntime-gpu it runs on ORT's CPU provider, with a warning."""
    from viewfinder.engines import onnx_engine

    monkeypatch.setattr(onnx_engine, "cuda_provider_available", lambda: False)
    with caplog.at_level("WARNING"):
        assert onnx_engine.device_for_onnx_file(torch.device("cuda", 0), "centernet.onnx") == torch.device("cpu")
    assert "centernet.onnx runs on the CPU" in caplog.text and "onnxruntime-gpu" in caplog.text
    assert onnx_engine.device_for_onnx_file(torch.device("cpu"), "x.onnx") == torch.device("cpu")
    monkeypatch.setattr(onnx_engine, "cuda_provider_available", lambda: True)
    assert onnx_engine.device_for_onnx_file(torch.device("cuda", 0), "x.onnx") == torch.device("cuda", 0)
