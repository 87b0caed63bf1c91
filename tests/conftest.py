"""Shared fixtures. Tests never touch the network: VIEWFINDER_OFFLINE=1 unless a test serves files itself."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / ".assets" / "photos"
SEEDED_WEIGHTS_HOME = Path(os.environ.get("VIEWFINDER_HOME", Path.home() / ".cache" / "viewfinder"))
MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"

os.environ["VIEWFINDER_OFFLINE"] = "1"
# The default engine ("auto") exports each model to ONNX on first use (10-60 s each): the
# suite runs torch unless a test asks for an engine; tests/test_engines*.py cover ONNX Runtime.
os.environ.setdefault("VIEWFINDER_ENGINE", "torch")


@pytest.fixture(scope="module", autouse=True)
def _stop_embedded_milvus():
    """After a module that used Milvus Lite in this process: stop its servers and their background
    threads (compaction), so that they cannot disturb later modules (e.g. page-fault counts)."""
    yield
    client = sys.modules.get("viewfinder.retrieval.milvus_client")
    if client is not None:
        client.close_all()


@pytest.fixture(scope="session")
def photos() -> Path:
    if not (PHOTOS / "chelsea.png").is_file():
        pytest.fail(f"sample photos missing in {PHOTOS}: run `make test` (it seeds them) or tools/seed_assets.py")
    return PHOTOS


@pytest.fixture(scope="session")
def mobilenet_v2_weights() -> Path:
    path = SEEDED_WEIGHTS_HOME / "weights" / MOBILENET_V2_FILE
    if not path.is_file():
        pytest.fail(f"{path} missing: run `make test` (it seeds the real MobileNetV2 weights)")
    return path


@pytest.fixture()
def tmp_home(tmp_path, monkeypatch) -> Path:
    """An empty VIEWFINDER_HOME for tests that exercise the cache."""
    home = tmp_path / "vf-home"
    home.mkdir()
    monkeypatch.setenv("VIEWFINDER_HOME", str(home))
    return home


@pytest.fixture()
def seeded_home(tmp_home, mobilenet_v2_weights) -> Path:
    """A temporary VIEWFINDER_HOME holding the real MobileNetV2 weights."""
    (tmp_home / "weights").mkdir()
    shutil.copyfile(mobilenet_v2_weights, tmp_home / "weights" / MOBILENET_V2_FILE)
    return tmp_home


@pytest.fixture(scope="session")
def mobilenet_v2(mobilenet_v2_weights):
    from viewfinder import create_model

    return create_model("MobileNetV2_x1_0", weights=mobilenet_v2_weights, device="cpu")


SHARED = Path(os.environ.get("VIEWFINDER_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (CI clones main with shared/ beside it)."""
    if not (SHARED / "parity").is_dir():
        pytest.fail(f"{SHARED} missing: the parity fixtures and ONNX assets live in ../shared")
    return SHARED
