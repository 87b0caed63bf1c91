"""PaddleX's published Node.js classification client, unchanged but for its URL, against our service.

The client (../shared/clients/paddlex_image_classification_client.js, see the README there)
hands axios a JSON *string* without a Content-Type, so axios sends it as
``application/x-www-form-urlencoded``. It posts ./demo.jpg and writes the returned picture
to ./out.jpg; on an error it only logs it and still exits 0, so the test checks out.jpg.
Node.js comes from the machine; axios from the npm registry, installed by `make test`
(``npm ci`` in tests/node, from the committed package-lock.json).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from live_server import LiveServer
from serving_apps import classifier_pipeline
from viewfinder.serving import ServingConfig, create_app

NODE_DIR = Path(__file__).resolve().parent / "node"
CLIENT_NAME = "paddlex_image_classification_client.js"
PUBLISHED_URL = "'http://localhost:8080/image-classification'"


def node_setup() -> tuple[str, Path]:
    """``node`` and the folder holding axios; fails (never skips) when either is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed (no `node` on PATH): this test runs PaddleX's published Node.js "
                    "client; install Node.js and npm (e.g. apt-get install nodejs npm), then run `make test`")
    modules = NODE_DIR / "node_modules"
    if not (modules / "axios" / "package.json").is_file():
        pytest.fail(f"axios is not installed in {modules}: run `make test` (it runs `npm ci` in tests/node)")
    return node, modules


def test_paddlex_nodejs_client_runs_unchanged(mobilenet_v2_weights, shared_dir, photos, tmp_path):
    node, modules = node_setup()
    published = (shared_dir / "clients" / CLIENT_NAME).read_text()
    assert published.count(PUBLISHED_URL) == 1, "the published client's API_URL line changed"
    shutil.copyfile(photos / "dog.jpg", tmp_path / "demo.jpg")
    # Serving.visualize is on by default: the answer carries the picture the client saves
    app = create_app(classifier_pipeline(mobilenet_v2_weights), ServingConfig(index_storage="memory", workers=1))
    with LiveServer(app) as server:
        (tmp_path / CLIENT_NAME).write_text(published.replace(PUBLISHED_URL, f"'{server.url}/image-classification'"))
        env = {**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()}, "NODE_PATH": str(modules)}
        run = subprocess.run([node, CLIENT_NAME], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = f"exit {run.returncode}\nstdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    assert run.returncode == 0, output
    assert (tmp_path / "out.jpg").is_file(), output  # the client logs errors and exits 0: out.jpg is the proof
    with Image.open(tmp_path / "out.jpg") as picture:
        picture.load()  # decodes every pixel
        assert picture.format == "JPEG"
        assert picture.size == Image.open(tmp_path / "demo.jpg").size
    assert "Output image saved at ./out.jpg" in run.stdout and "Categories" in run.stdout, output


def test_without_node_the_test_fails_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no node on it
    with pytest.raises(pytest.fail.Exception, match="Node.js is not installed"):
        node_setup()
