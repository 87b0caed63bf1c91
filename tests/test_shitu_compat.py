"""PaddleX 3.0's PP-ShiTuV2 calls: index_dir, the data_root/index_dir/index_type index methods, old index folders."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import faiss
import numpy as np
import pytest
from click.testing import CliRunner

from viewfinder import IndexData, create_pipeline
from viewfinder.cli import cli
from viewfinder.errors import ConfigError

OPENCV = Path(__file__).resolve().parent.parent / ".assets" / "opencv"
GALLERY = {"aloeL.jpg": "aloe", "box.png": "box", "graf1.png": "graf", "leuvenA.jpg": "leuven"}


@pytest.fixture(scope="module")
def pipeline(mobilenet_v2_weights):
    """No detector (whole images), MobileNetV2 features: fast and deterministic."""
    return create_pipeline("PP-ShiTuV2", device="cpu", config={"SubModules": {
        "Detection": None, "Recognition": {"model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights),
                                           "batch_size": 4}}})


def _gallery(root: Path, names: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_bytes((OPENCV / name).read_bytes())
    (root / "gallery.txt").write_text("".join(f"{n} {label}\n" for n, label in names.items()), encoding="utf-8")
    return root


def _top1(results) -> list[str]:
    return [r["boxes"][0]["labels"][0] if r["boxes"][0]["labels"] else None for r in results]


def test_index_dir_in_create_pipeline_and_predict(pipeline, mobilenet_v2_weights, tmp_path):
    root = _gallery(tmp_path / "g", GALLERY)
    pipeline.build_index(data_root=str(root), index_dir=str(tmp_path / "idx"), index_type="Flat", show_progress=False)
    query = str(OPENCV / "aloeR.jpg")
    assert _top1(pipeline.predict(query, index_dir=str(tmp_path / "idx"), rec_threshold=0.0)) == ["aloe"]
    with pytest.raises(ConfigError, match="give index or index_dir"):
        pipeline.predict(query, index=str(tmp_path / "idx"), index_dir=str(tmp_path / "idx"))
    made = create_pipeline("PP-ShiTuV2", device="cpu", index_dir=str(tmp_path / "idx"), config={
        "rec_threshold": 0.0, "SubModules": {"Detection": None, "Recognition": {
            "model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights)}}})
    assert _top1(made.predict(query)) == ["aloe"]  # the index given at creation
    with pytest.raises(ConfigError, match="give index or index_dir"):
        create_pipeline("PP-ShiTuV2", index="a", index_dir="b", pretrained=False,
                        config={"SubModules": {"Detection": None}})


def test_paddlex_3_0_keyword_forms_change_the_folder_in_place(pipeline, tmp_path):
    first = _gallery(tmp_path / "first", dict(list(GALLERY.items())[:2]))
    more = _gallery(tmp_path / "more", dict(list(GALLERY.items())[2:]))
    index_dir = str(tmp_path / "index_dir")
    pipeline.build_index(data_root=str(first), index_dir=index_dir, index_type="IVF", show_progress=False)
    assert sorted(IndexData.load(index_dir).id_map.values()) == ["aloe", "box"]
    grown = pipeline.append_index(data_root=str(more), index_dir=index_dir, index_type="IVF", show_progress=False)
    on_disk = IndexData.load(index_dir)
    assert sorted(on_disk.id_map.values()) == sorted(GALLERY.values()) == sorted(grown.id_map.values())
    pipeline.remove_index(data_root=str(first), index_dir=index_dir, index_type="IVF")  # removes aloe and box
    assert sorted(IndexData.load(index_dir).id_map.values()) == ["graf", "leuven"]


def test_append_and_remove_keep_the_index_type(pipeline, tmp_path):
    root = _gallery(tmp_path / "g", dict(list(GALLERY.items())[:2]))
    index_dir = str(tmp_path / "idx")
    pipeline.build_index(data_root=str(root), index_dir=index_dir, show_progress=False)  # HNSW32, the default
    before = (tmp_path / "idx" / "id_map.yaml").read_bytes()
    with pytest.raises(ConfigError, match="index_type 'IVF' differs from the index's HNSW32"):
        pipeline.append_index(data_root=str(root), index_dir=index_dir, index_type="IVF", show_progress=False)
    with pytest.raises(ConfigError, match="metric_type 'L2' differs from the index's IP"):
        pipeline.append_index(data_root=str(root), index_dir=index_dir, metric_type="L2", show_progress=False)
    with pytest.raises(ConfigError, match="index_type 'Flat' differs"):
        pipeline.remove_index(data_root=str(root), index_dir=index_dir, index_type="Flat")
    assert (tmp_path / "idx" / "id_map.yaml").read_bytes() == before  # refused before anything changed
    # the 3.x forms still take an index and return it, without saving
    index = pipeline.append_index(str(root), str(root / "gallery.txt"), index_dir, index_type="hnsw32",
                                  show_progress=False)
    assert len(index) == 4 and len(IndexData.load(index_dir)) == 2


def test_keyword_form_mistakes_are_named(pipeline, tmp_path):
    root = _gallery(tmp_path / "g", dict(list(GALLERY.items())[:2]))
    index = pipeline.build_index(data_root=str(root), index_type="Flat", show_progress=False)
    with pytest.raises(ConfigError, match="give index or index_dir"):
        pipeline.append_index(data_root=str(root), index=index, index_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="give gallery_imgs or data_root"):
        pipeline.append_index(str(root), data_root=str(root), index=index)
    with pytest.raises(ConfigError, match="needs an index"):
        pipeline.append_index(data_root=str(root))
    with pytest.raises(ConfigError, match="remove_ids .* or PaddleX 3.0's data_root"):
        pipeline.remove_index(index=index)
    other = _gallery(tmp_path / "other", {"graf1.png": "graf"})
    with pytest.raises(ConfigError, match="no entry of the index has a label"):
        pipeline.remove_index(data_root=str(other), index=index)


def test_a_paddleclas_folder_serves_predict(pipeline, tmp_path):
    """An index folder PaddleClas's build_gallery.py wrote (IndexIDMap2 + pickled gallery lines)."""
    names = list(GALLERY)
    features = pipeline.recognizer.embed([np.asarray(pipeline.decode_input(str(OPENCV / n)).held_pixels) for n in names])
    index = faiss.IndexIDMap2(faiss.index_factory(features.shape[1], "Flat", faiss.METRIC_INNER_PRODUCT))
    index.add_with_ids(features, np.arange(len(names)).astype(np.int64))
    folder = tmp_path / "paddleclas_index"
    folder.mkdir()
    faiss.write_index(index, str(folder / "vector.index"))
    with open(folder / "id_map.pkl", "wb") as fh:
        pickle.dump({np.int64(i): f"gallery/{n}\t{GALLERY[n]}" for i, n in enumerate(names)}, fh)
    assert _top1(pipeline.predict(str(OPENCV / "aloeR.jpg"), index_dir=str(folder), rec_threshold=0.0)) == ["aloe"]
    # and through the CLI, with PaddleX 3.0's flag name
    config = tmp_path / "shitu.yaml"
    config.write_text("Global: {pipeline_name: PP-ShiTuV2}\nPipeline: {rec_model: MobileNetV2_x1_0, "
                      "score_thres: 0.0, device: cpu}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--pipeline", str(config), "--index_dir", str(folder), "--input",
                                      str(OPENCV / "aloeR.jpg"), "--save_path", str(tmp_path / "out"), "--random_init"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "aloeR_res.json").read_text())["boxes"]


def test_cli_index_commands_take_the_3_0_options(mobilenet_v2_weights, tmp_path):
    config = tmp_path / "shitu.yaml"
    config.write_text("pipeline_name: PP-ShiTuV2\nSubModules:\n  Detection: null\n  Recognition:\n"
                      f"    model_name: MobileNetV2_x1_0\n    weights: {mobilenet_v2_weights}\n", encoding="utf-8")
    first = _gallery(tmp_path / "first", dict(list(GALLERY.items())[:2]))
    more = _gallery(tmp_path / "more", dict(list(GALLERY.items())[2:]))
    index_dir = str(tmp_path / "idx")
    runner = CliRunner()
    assert runner.invoke(cli, ["index", "build", "--gallery", str(first), "--index_dir", index_dir,
                               "--pipeline", str(config), "--index_type", "Flat"]).exit_code == 0
    wrong = runner.invoke(cli, ["index", "append", "--gallery", str(more), "--index_dir", index_dir,
                                "--pipeline", str(config), "--index_type", "HNSW32"])
    assert wrong.exit_code != 0 and "differs from the index's Flat" in wrong.stderr
    right = runner.invoke(cli, ["index", "append", "--gallery", str(more), "--index_dir", index_dir,
                                "--pipeline", str(config), "--index_type", "Flat"])
    assert right.exit_code == 0, right.output
    removed = runner.invoke(cli, ["index", "remove", "--index_dir", index_dir, "--gallery", str(first)])
    assert removed.exit_code == 0, removed.output
    assert sorted(IndexData.load(index_dir).id_map.values()) == ["graf", "leuven"]
    both = runner.invoke(cli, ["index", "remove", "--index_dir", index_dir, "--gallery", str(first), "--ids", "1"])
    assert both.exit_code != 0 and "exactly one of --ids, --id_file, --labels or --gallery" in both.stderr


def test_service_serves_an_old_yaml_with_a_paddleclas_index(tmp_path):
    """`viewfinder serve --pipeline old.yaml`: the YAML's index_dir (a PaddleClas folder) answers /shitu-infer."""
    import base64

    from fastapi.testclient import TestClient

    from viewfinder.pipelines import PIPELINE_NAMES
    from viewfinder.pipelines.config import load_config
    from viewfinder.serving import create_app
    from viewfinder.serving.server import build_config, load_pipeline

    config_path = tmp_path / "PP-ShiTuV2.yaml"
    config_path.write_text("Global:\n  pipeline_name: PP-ShiTuV2\nPipeline:\n  det_model: PP-ShiTuV2_det\n"
                           "  rec_model: PP-ShiTuV2_rec\n  device: cpu\n  index_dir: ./drink_index\n"
                           "  score_thres: -1.0\n  return_k: 2\n", encoding="utf-8")
    config = build_config(load_config(str(config_path), None, PIPELINE_NAMES), data_dir=tmp_path / "keys")
    runner = load_pipeline(str(config_path), config, pretrained=False)
    names = list(GALLERY)[:2]
    features = runner.recognizer.embed([runner.decode_input(str(OPENCV / n)) for n in names])
    index = faiss.IndexIDMap2(faiss.index_factory(features.shape[1], "Flat", faiss.METRIC_INNER_PRODUCT))
    index.add_with_ids(features, np.arange(len(names)).astype(np.int64))
    (tmp_path / "drink_index").mkdir()
    faiss.write_index(index, str(tmp_path / "drink_index" / "vector.index"))
    (tmp_path / "drink_index" / "id_map.pkl").write_bytes(pickle.dumps({i: GALLERY[n] for i, n in enumerate(names)}))
    with TestClient(create_app(runner, config)) as client:
        image = base64.b64encode((OPENCV / "box.png").read_bytes()).decode()
        body = client.post("/shitu-infer", json={"image": image, "visualize": False}).json()  # no indexKey
    assert body["errorCode"] == 0, body
    objects = body["result"]["detectedObjects"]
    assert objects and all(len(o["recResults"]) == 2 for o in objects)  # return_k: 2
    assert {r["label"] for o in objects for r in o["recResults"]} <= {"aloe", "box"}
