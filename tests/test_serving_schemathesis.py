"""Schemathesis against both pipelines' OpenAPI specs: 0 server errors, 0 spec violations.

Each app runs under a real uvicorn server (tests/live_server.py); schemathesis' CLI runs every
phase (examples, coverage, fuzzing, and stateful through the spec's links from a built index)
with all its checks, a fixed seed and a bounded number of cases per operation. Positive cases
carry real generated images (``format: image``, tests/schemathesis_hooks.py), so successful
answers are checked against the spec as well as the errors. The classification app has an API
key (the spec documents the 401 and the run checks that requests without it are refused); the
PP-ShiTuV2 app has none.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from live_server import LiveServer
from serving_apps import classifier_pipeline, shitu_pipeline
from viewfinder.serving import ServingConfig, create_app

TESTS = Path(__file__).resolve().parent
SEED = 24
MAX_EXAMPLES = 20  # per operation and phase: about 20 s for both apps on 2 cores
API_KEY = "schemathesis-key"


def run_schemathesis(url: str, report: Path, *extra: str, config: str | None = None) -> dict:
    settings = ["--config-file", str(TESTS / config)] if config else []
    command = [sys.executable, "-m", "schemathesis.cli", *settings, "run", f"{url}/openapi.json",
               "--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
               "--continue-on-failure", "--report", "json", "--report-json-path", str(report), *extra]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(command, cwd=report.parent, env=env, capture_output=True, text=True, timeout=300)
    assert report.is_file(), \
        f"schemathesis wrote no report (exit {run.returncode}):\n{run.stdout[-5000:]}{run.stderr[-3000:]}"
    result = json.loads(report.read_text())
    result["output"] = run.stdout[-20000:] + run.stderr[-3000:]
    return result


def assert_clean(result: dict, operations: int) -> None:
    counts = (f"{result['operations']['tested']} operations, {result['test_cases']['generated']} cases, "
              f"{len(result['failures'])} failures, {len(result['errors'])} errors")
    print(f"schemathesis: {counts}")
    assert not result["failures"] and not result["errors"] and result["exit_code"] == 0, \
        f"{counts}\n{result['output']}"
    assert result["operations"]["tested"] == result["operations"]["total"] == operations, result["operations"]
    assert result["phases"]["coverage"]["status"] == result["phases"]["fuzzing"]["status"] == "success"
    assert result["test_cases"]["generated"] >= 10 * operations, counts
    assert not any(result["warnings"].values()), result["warnings"]  # e.g. no operation only ever 404


@pytest.fixture(scope="module")
def classifier(mobilenet_v2_weights):
    return classifier_pipeline(mobilenet_v2_weights)


@pytest.fixture(scope="module")
def shitu(mobilenet_v2_weights):
    return shitu_pipeline(mobilenet_v2_weights)


def test_classification_spec_holds_under_schemathesis(classifier, tmp_path):
    app = create_app(classifier, ServingConfig(index_storage="memory", api_key=API_KEY))
    with LiveServer(app) as server:
        result = run_schemathesis(server.url, tmp_path / "report.json", "--header", f"Authorization: Bearer {API_KEY}")
    assert_clean(result, operations=5)  # /health, /health/live, /health/ready, /metrics, infer


def test_shitu_spec_holds_under_schemathesis(shitu, tmp_path):
    app = create_app(shitu, ServingConfig(data_dir=tmp_path / "indexes"))
    with LiveServer(app) as server:
        result = run_schemathesis(server.url, tmp_path / "report.json", config="schemathesis_shitu.toml")
    assert_clean(result, operations=12)  # /health, /health/live, /health/ready, /metrics + 8 PP-ShiTuV2 operations
    assert result["phases"]["stateful"]["status"] == "success"  # build, then the linked operations on its index
