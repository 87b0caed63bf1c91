"""viewfinder batch on a real local Ray (2 CPUs, started once for the module): the rows equal in-process
predict(), a corrupt file is an error row, resume recomputes nothing, --to_index equals `index build`.

Jobs use real MobileNetV2 weights through pipeline YAMLs (the seeded file), 2 workers.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from viewfinder import IndexData, batch, create_model, create_pipeline
from viewfinder.cli import cli
from viewfinder.retrieval import faiss_factory

ROOT = Path(__file__).resolve().parent.parent
OPENCV = ROOT / ".assets" / "opencv"
PHOTOS = ("chelsea.png", "coffee.png", "dog.jpg", "rocket.jpg", "camera.png", "eagle.jpg")
GALLERY = {"aloe": ("aloeL.jpg", "aloeR.jpg"), "box": ("box.png",), "graf": ("graf1.png", "graf3.png")}


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        pytest.fail('Ray is missing: install the extra (pip install -e ".[ray]"; `make test` does)')
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def configs(tmp_path_factory, mobilenet_v2_weights) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("configs")
    recognition = f"    model_name: MobileNetV2_x1_0\n    weights: {mobilenet_v2_weights}\n    batch_size: 2\n"
    files = {
        "cls": "pipeline_name: image_classification\nSubModules:\n  ImageClassification:\n" + recognition
               + "    topk: 3\n",
        "shitu": "pipeline_name: PP-ShiTuV2\nrec_threshold: 0.0\nSubModules:\n  Detection: null\n  Recognition:\n"
                 + recognition,
    }
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return {name: folder / f"{name}.yaml" for name in files}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, photos) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    for name in PHOTOS:
        shutil.copyfile(photos / name, folder / name)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    return folder


@pytest.fixture(scope="module")
def first_job(ray_cluster, configs, inputs, tmp_path_factory) -> tuple[Path, str]:
    """The CLI over 4 photos + the corrupt file (a .txt list); the resume test adds the other photos."""
    listing = tmp_path_factory.mktemp("lists") / "first.txt"
    listing.write_text("\n".join([*PHOTOS[:4], "corrupt.jpg"]) + "\n", encoding="utf-8")
    shutil.copyfile(listing, inputs / "first.txt")
    output = tmp_path_factory.mktemp("out") / "first.parquet"
    result = CliRunner().invoke(cli, ["batch", "--pipeline", str(configs["cls"]), "--input", str(inputs / "first.txt"),
                                      "--output", str(output), "--num_workers", "2", "--batch_size", "2"])
    assert result.exit_code == 0, result.output
    assert "5 rows written" in result.stdout and "(1 errors)" in result.stdout
    return output, result.stdout


def _rows(output: Path) -> dict[str, dict]:
    return {row["input_path"]: row for row in pq.read_table(output).to_pylist()}


def test_cli_rows_equal_in_process_predict_and_a_corrupt_file_is_an_error_row(first_job, configs, inputs):
    output, _ = first_job
    rows = _rows(output)
    assert set(rows) == {str(inputs / name) for name in [*PHOTOS[:4], "corrupt.jpg"]}
    bad = rows.pop(str(inputs / "corrupt.jpg"))
    assert bad["error"] and "corrupt.jpg" in bad["error"] and bad["class_ids"] is None
    expected = {r["input_path"]: r for r in create_pipeline(str(configs["cls"]), device="cpu").predict(list(rows))}
    for path, row in rows.items():
        assert row["error"] is None
        assert row["label_names"] == list(expected[path]["label_names"])
        assert row["class_ids"] == [int(i) for i in expected[path]["class_ids"]]
        np.testing.assert_allclose(row["scores"], expected[path]["scores"], atol=1e-5)


def test_resume_computes_only_the_new_inputs(first_job, configs, inputs, tmp_path):
    output = tmp_path / "resumed.parquet"
    shutil.copytree(first_job[0], output)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    report = batch.run(str(configs["cls"]), str(inputs), str(output), num_workers=1, show_progress=False)
    # the folder holds the 5 done inputs + 2 new photos; only the 2 new ones are computed
    assert (report.inputs, report.skipped, report.written, report.errors) == (7, 5, 2, 0)
    after = {p.name: p for p in output.iterdir()}
    assert all(after[name].read_bytes() == data for name, data in before.items())  # old parts untouched
    new_parts = [p for name, p in after.items() if name not in before]
    assert len(new_parts) == 1
    assert sorted(pq.read_table(new_parts[0]).column("input_path").to_pylist()) == \
        sorted(str(inputs / name) for name in PHOTOS[4:])
    assert len(_rows(output)) == 7 and pq.read_table(output).num_rows == 7  # one row per input, no repeats
    # nothing left: no part file, no worker started
    again = batch.run(str(configs["cls"]), str(inputs), str(output), num_workers=2, show_progress=False)
    assert (again.skipped, again.written, again.workers) == (7, 0, 0)
    assert len(list(output.iterdir())) == len(after)


@pytest.fixture(scope="module")
def gallery_root(tmp_path_factory) -> Path:
    if not (OPENCV / "aloeL.jpg").is_file():
        pytest.fail(f"{OPENCV} missing: run `make test` (it seeds OpenCV's sample photos)")
    root = tmp_path_factory.mktemp("gallery")
    lines = []
    for label, names in GALLERY.items():
        (root / label).mkdir()
        for name in names:
            shutil.copyfile(OPENCV / name, root / label / name)
            lines.append(f"{label}/{name} {label}")
    (root / "gallery.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _index_parts(index: IndexData) -> tuple[np.ndarray, np.ndarray]:
    vectors, ids = faiss_factory.extract(index.index)
    return vectors[np.argsort(ids)], np.sort(ids)


def test_to_index_equals_index_build(ray_cluster, configs, gallery_root, tmp_path):
    runner = CliRunner()
    built = tmp_path / "built"
    result = runner.invoke(cli, ["index", "build", "--gallery", str(gallery_root), "--index_dir", str(built),
                                 "--pipeline", str(configs["shitu"])])
    assert result.exit_code == 0, result.output
    output, from_ray = tmp_path / "gallery.parquet", tmp_path / "from_ray"
    result = runner.invoke(cli, ["batch", "--pipeline", str(configs["shitu"]), "--input", str(gallery_root),
                                 "--output", str(output), "--to_index", str(from_ray),
                                 "--labels", str(gallery_root / "gallery.txt"), "--num_workers", "2"])
    assert result.exit_code == 0, result.output
    assert "index of 5 items saved" in result.stdout
    expected, got = IndexData.load(built), IndexData.load(from_ray)
    assert got.id_map == expected.id_map and got.metadata == expected.metadata
    assert got.feature_model == expected.feature_model
    assert (got.index_type, got.metric_type, got.dim) == (expected.index_type, expected.metric_type, expected.dim)
    (v_got, ids_got), (v_exp, ids_exp) = _index_parts(got), _index_parts(expected)
    assert (ids_got == ids_exp).all()
    np.testing.assert_allclose(v_got, v_exp, atol=1e-5)

    # labels from sub-folder names; the same output: every feature is reused (resume), none recomputed
    by_folder = batch.run(str(configs["shitu"]), str(gallery_root), str(output), to_index=str(tmp_path / "folders"),
                          show_progress=False)
    assert (by_folder.written, by_folder.skipped, by_folder.index_size) == (0, 5, 5)
    assert IndexData.load(tmp_path / "folders").id_map == expected.id_map

    # PP-ShiTuV2 rows: the boxes, as JSON, equal predict()'s on the built index
    queries = tmp_path / "queries.txt"
    queries.write_text(f"{OPENCV / 'aloeR.jpg'}\n{OPENCV / 'graf3.png'}\n", encoding="utf-8")
    report = batch.run(str(configs["shitu"]), str(queries), str(tmp_path / "shitu.parquet"), num_workers=1,
                       predict_kwargs={"index": str(from_ray)}, show_progress=False)
    assert (report.written, report.errors) == (2, 0)
    pipeline = create_pipeline(str(configs["shitu"]), device="cpu")
    found = {}
    for row in pq.read_table(tmp_path / "shitu.parquet").to_pylist():
        boxes = json.loads(row["boxes"])
        expected_boxes = next(pipeline.predict(row["input_path"], index=str(from_ray)))["boxes"]
        assert [b["labels"] for b in boxes] == [b["labels"] for b in expected_boxes]
        np.testing.assert_allclose([b["rec_scores"] for b in boxes], [b["rec_scores"] for b in expected_boxes],
                                   atol=1e-4)
        found[Path(row["input_path"]).name] = boxes[0]["labels"][0]
    assert found == {"aloeR.jpg": "aloe", "graf3.png": "graf"}


def test_feature_model_rows_are_float32_vectors(ray_cluster, mobilenet_v2_weights, inputs, tmp_path):
    options = {"task": "image_feature", "weights": str(mobilenet_v2_weights)}
    report = batch.run("MobileNetV2_x1_0", str(inputs / "*.png"), str(tmp_path / "f.parquet"), num_workers=1,
                       options=options, show_progress=False)
    table = pq.read_table(tmp_path / "f.parquet")
    assert report.written == table.num_rows == 3 and str(table.schema.field("feature").type) == "list<element: float>"
    model = create_model("MobileNetV2_x1_0", device="cpu", **options)
    for row in table.to_pylist():
        expected = next(model.predict(row["input_path"]))["feature"]
        np.testing.assert_allclose(row["feature"], expected, atol=1e-5)
