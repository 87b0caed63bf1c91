"""``index evaluate`` (pipeline.evaluate + CLI) with real MobileNetV2 features and real photos, and the
training-free index options (centring, whitening, query expansion) on synthetic and real features."""
from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from viewfinder import IndexData, create_pipeline
from viewfinder.cli import cli
from viewfinder.errors import ConfigError, InputError, RetrievalIndexError
from viewfinder.pipelines.shitu_evaluate import write_rec_threshold
from viewfinder.retrieval import migrate, write_gallery
from viewfinder.retrieval.open_set import RankedQuery, separation
from viewfinder.retrieval.transform import FeatureTransform

ROOT = Path(__file__).resolve().parent.parent
OPENCV = ROOT / ".assets" / "opencv"
PHOTOS = ROOT / ".assets" / "photos"
PAIRS = (("aloeL.jpg", "aloeR.jpg"), ("leuvenA.jpg", "leuvenB.jpg"), ("graf1.png", "graf3.png"),
         ("basketball1.png", "basketball2.png"), ("rubberwhale1.png", "rubberwhale2.png"),
         ("aero1.jpg", "aero3.jpg"))
UNKNOWN = ("dog.jpg", "eagle.jpg", "giraffe.jpg")


# ----------------------------------------------------------------------- synthetic: index options
def _common_component_set(seed: int = 0, n: int = 30, d: int = 64):
    """Gallery items that share a strong common direction (as ImageNet features do), known queries
    near their item, unknown queries elsewhere but sharing the common part."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=d)
    common *= 2.5 / np.linalg.norm(common)
    items = rng.normal(size=(n, d)) / np.sqrt(d) + common
    known = items[:10] + 0.6 * rng.normal(size=(10, d)) / np.sqrt(d)
    unknown = rng.normal(size=(10, d)) / np.sqrt(d) + common
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(items), unit(known), unit(unknown)


def _ranked(index: IndexData, known: np.ndarray, unknown: np.ndarray) -> list[RankedQuery]:
    out = []
    for truth, block in ((True, known), (False, unknown)):
        scores, _, labels = index.search(block, 5)
        for row, (s, lab) in enumerate(zip(scores, labels)):
            out.append(RankedQuery(f"q{row}", f"item{row}" if truth else None, list(lab), s.tolist()))
    return out


def test_centring_learned_from_the_gallery_separates_a_common_component():
    items, known, unknown = _common_component_set()
    labels = [f"item{i}" for i in range(len(items))]
    plain = separation(_ranked(IndexData.build(items, labels, "Flat"), known, unknown))
    centred_index = IndexData.build(items, labels, "Flat", center=True)
    centred = separation(_ranked(centred_index, known, unknown))
    assert centred_index.feature_transform == {"center": True, "whiten": False, "learned_from": 30}
    assert centred["margin"] > 5 * plain["margin"] > 0  # measurably better separated: ~0.40 vs ~0.04
    assert centred["d_prime"] > plain["d_prime"] + 1.0
    whitened = separation(_ranked(IndexData.build(items, labels, "Flat", whiten=True), known, unknown))
    assert whitened["d_prime"] > plain["d_prime"]


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32", "IVF"])
def test_transform_is_recorded_kept_fixed_on_append_and_survives_save_remove_copy(tmp_path, index_type):
    items, known, _ = _common_component_set(1)
    labels = [f"item{i}" for i in range(len(items))]
    index = IndexData.build(items, labels, index_type, center=True, whiten=True,
                            query_expansion={"k": 2, "alpha": 3})
    mean_before = index._feature_transform.mean.copy()
    ids = index.append(known[:2], ["new0", "new1"])
    assert np.array_equal(index._feature_transform.mean, mean_before)  # learned at build, never re-learned
    scores, found, _ = index.search(known[:2], 1)
    assert found[:, 0].tolist() == ids.tolist()  # an appended vector is found by the same query
    index.remove([0, int(ids[0])])
    index.save(tmp_path / "ix")
    loaded = IndexData.load(tmp_path / "ix")
    assert loaded.feature_transform == index.feature_transform and loaded.feature_transform["whiten"]
    assert loaded.query_expansion == {"k": 2, "alpha": 3.0}
    assert loaded.info()["feature_transform"]["center"] is True
    for twin in (loaded, index.copy(), IndexData.from_bytes(index.to_bytes())):
        s2, f2, _ = twin.search(known, 3)
        s1, f1, _ = index.search(known, 3)
        assert np.array_equal(f1, f2) and np.allclose(s1, s2, atol=1e-5)
    # a copy of another kind keeps the transform (its vectors are already transformed)
    other = write_gallery(loaded, tmp_path / "flat", index_type="Flat")
    assert other.feature_transform == loaded.feature_transform
    assert np.array_equal(other.search(known, 1)[1], loaded.search(known, 1)[1])


def test_old_indexes_read_as_no_transform_and_bad_records_are_refused(tmp_path):
    items, known, _ = _common_component_set(2)
    index = IndexData.build(items, [str(i) for i in range(len(items))], "Flat")
    assert index.feature_transform is None and index.query_expansion is None
    index.save(tmp_path / "old")
    text = (tmp_path / "old" / "id_map.yaml").read_text()
    assert "feature_transform" not in text
    assert IndexData.load(tmp_path / "old").feature_transform is None
    centred = IndexData.build(items, [str(i) for i in range(len(items))], "Flat", center=True)
    # a plain index stays format 1 (older builds read it); a transformed one is format 2, so an
    # older build refuses it instead of searching raw queries against centred vectors
    assert index._doc()["format_version"] == 1 and centred._doc()["format_version"] == 2
    assert centred.info()["format_version"] == 2
    doc = centred._doc()
    doc["feature_transform"]["mean"] = "AAAA"  # wrong length
    with pytest.raises(RetrievalIndexError, match="feature_transform.mean"):
        IndexData._from_parts(centred.index, doc, "test")
    # one vector (or copies of one): nothing to learn from; built plain, said in the log
    assert IndexData.build(items[:1], ["a"], "Flat", center=True).feature_transform is None
    assert IndexData.build(np.repeat(items[:1], 3, axis=0), list("abc"), "Flat", whiten=True).feature_transform is None
    with pytest.raises(RetrievalIndexError, match="at least 2"):
        FeatureTransform.learn(items[:1])
    with pytest.raises(RetrievalIndexError, match="center must be"):
        IndexData.build(items, [str(i) for i in range(len(items))], "Flat", center="yes")
    with pytest.raises(RetrievalIndexError, match="query_expansion"):
        index.query_expansion = {"k": -1}
    index.query_expansion = {"k": 3}
    assert index.query_expansion == {"k": 3, "alpha": 3.0}
    index.query_expansion = None
    assert index.query_expansion is None


def test_milvus_refuses_a_transformed_index_clearly(tmp_path):
    pytest.importorskip("pymilvus")
    items, _, _ = _common_component_set(3)
    index = IndexData.build(items, [str(i) for i in range(len(items))], "Flat", center=True)
    with pytest.raises(RetrievalIndexError, match="Milvus gallery cannot hold an index with centring"):
        migrate_target = f"milvus://{tmp_path}/m.db?collection=g"
        write_gallery(index, migrate_target)
    assert not (tmp_path / "m.db").exists()  # refused before connecting
    assert callable(migrate)


# ----------------------------------------------------------------------- real models
@pytest.fixture(scope="module")
def photos_ready() -> None:
    if not (OPENCV / "aloeL.jpg").is_file() or not (PHOTOS / "dog.jpg").is_file():
        pytest.fail("seeded photos missing: run `make test` (it seeds OpenCV's and darknet's photos)")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, mobilenet_v2_weights) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "shitu.yaml"
    path.write_text("pipeline_name: PP-ShiTuV2\n# keep me\nrec_threshold: 0.5   # the default\nrec_topk: 5\n"
                    "SubModules:\n  Detection: null\n  Recognition:\n    model_name: MobileNetV2_x1_0\n"
                    f"    weights: {mobilenet_v2_weights}\n    batch_size: 8\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pipeline(config_file, photos_ready):
    return create_pipeline(str(config_file), device="cpu")


@pytest.fixture(scope="module")
def layout(tmp_path_factory, pipeline) -> dict[str, Path]:
    """A gallery (one photo per pair, one of them missing on disk), queries, unknowns, the index."""
    root = tmp_path_factory.mktemp("eval")
    (root / "gallery.txt").write_text("".join(f"{a}\t{Path(a).stem}\n" for a, _ in PAIRS)
                                      + "no_such_photo.jpg\tghost\n", encoding="utf-8")
    (root / "queries.txt").write_text("".join(f"{b}\t{Path(a).stem}\n" for a, b in PAIRS), encoding="utf-8")
    unknown = root / "unknown"
    unknown.mkdir()
    for name in UNKNOWN:
        (unknown / name).symlink_to(PHOTOS / name)
    index = pipeline.build_index(str(OPENCV), str(root / "gallery.txt"), index_type="Flat", show_progress=False)
    assert any("no_such_photo" in note for note in pipeline.last_report.skipped)  # the missing gallery image
    index.save(root / "index")
    return {"root": root, "unknown": unknown, "index": root / "index"}


def test_evaluate_api_reports_recall_threshold_and_writes_json(pipeline, layout, tmp_path):
    report = pipeline.evaluate(str(OPENCV), str(layout["root"] / "queries.txt"), str(layout["index"]),
                               unknown=str(layout["unknown"]), output=tmp_path / "out", show_progress=False)
    assert report["queries_known"] == len(PAIRS) and report["queries_unknown"] == len(UNKNOWN)
    assert report["recall1"] >= 5 / 6 and report["recall5"] == 1.0 and 0 < report["mAP"] <= 1
    threshold = report["suggested_rec_threshold"]
    assert threshold is not None and -1 <= threshold <= 1
    # the proposed threshold is the F1 optimum of the reported sweep, and applying it does what it says
    assert report["f1"] == max(row["f1"] for row in report["threshold_curve"])
    rejected_unknown = sum(pipeline.predict(str(layout["unknown"] / n), index=str(layout["index"]),
                                            rec_threshold=threshold).__next__()["boxes"][0]["labels"] == []
                           for n in UNKNOWN)
    assert rejected_unknown / len(UNKNOWN) == pytest.approx(report["unknown_recall"])
    saved = json.loads((tmp_path / "out" / "evaluate_result.json").read_text())
    for key in ("recall1", "recall5", "mAP", "suggested_rec_threshold", "unknown_precision", "unknown_recall",
                "per_label_recall", "confusion_pairs", "threshold_curve", "failures", "separation"):
        assert key in saved
    assert set(saved["per_label_recall"]) == {Path(a).stem for a, _ in PAIRS}
    assert (tmp_path / "out" / "evaluate_curves.png").stat().st_size > 1000
    assert (tmp_path / "out" / "evaluate_failures.png").stat().st_size > 1000
    assert saved["failures"][0]["match_path"]  # the gallery image the failure matched, for the sheet
    strict = pipeline.evaluate(str(OPENCV), str(layout["root"] / "queries.txt"), str(layout["index"]),
                               unknown=str(layout["unknown"]), target_precision=1.0, show_progress=False)
    if strict["suggested_rec_threshold"] is None:
        assert "overlap" in strict["threshold_rule"]
    else:
        assert strict["unknown_precision"] == 1.0 and "precision >= 1.0" in strict["threshold_rule"]


def test_empty_unknown_set_and_missing_query_files_do_not_crash(pipeline, layout, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    labels = tmp_path / "q.txt"
    labels.write_text((layout["root"] / "queries.txt").read_text() + "nope.jpg\taloeL\n", encoding="utf-8")
    report = pipeline.evaluate(str(OPENCV), str(labels), str(layout["index"]), unknown=str(empty),
                               output=tmp_path / "out", show_progress=False)
    assert report["queries_unknown"] == 0 and report["suggested_rec_threshold"] is None
    assert "unknown" in report["threshold_rule"] and report["unknown_precision"] is None
    assert any("nope.jpg" in note for note in report["skipped"]) and report["queries_known"] == len(PAIRS)
    assert json.loads((tmp_path / "out" / "evaluate_result.json").read_text())["suggested_rec_threshold"] is None


def test_a_query_label_missing_from_the_gallery_counts_as_a_miss(pipeline, layout, tmp_path):
    labels = tmp_path / "q.txt"
    labels.write_text("aloeR.jpg\taloeL\nbox_in_scene.png\tghost\n", encoding="utf-8")
    report = pipeline.evaluate(str(OPENCV), str(labels), str(layout["index"]), show_progress=False, plots=False)
    assert report["labels_not_in_gallery"] == ["ghost"]
    assert report["per_label_recall"]["ghost"]["recall1"] == 0.0 and report["recall1"] == 0.5


def test_label_file_of_missing_images_and_bad_folders_are_clear_errors(pipeline, layout, tmp_path):
    labels = tmp_path / "q.txt"
    labels.write_text("a.jpg x\nb.jpg y\n", encoding="utf-8")
    with pytest.raises(InputError, match="none of its 2 images exists"):
        pipeline.evaluate(str(OPENCV), str(labels), str(layout["index"]), show_progress=False)
    with pytest.raises(InputError, match="not a folder"):
        pipeline.evaluate(str(OPENCV), str(layout["root"] / "queries.txt"), str(layout["index"]),
                          unknown=str(tmp_path / "nowhere"), show_progress=False)
    with pytest.raises(InputError, match="does not exist"):
        pipeline.evaluate(str(OPENCV), str(tmp_path / "none.txt"), str(layout["index"]), show_progress=False)


def test_cli_evaluate_writes_threshold_into_the_yaml(layout, config_file, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text(config_file.read_text(), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["index", "evaluate", "--pipeline", str(config), "--index", str(layout["index"]),
                                      "--queries", str(OPENCV), "--labels", str(layout["root"] / "queries.txt"),
                                      "--unknown", str(layout["unknown"]), "--output", str(out), "--quiet",
                                      "--write_threshold"])
    assert result.exit_code == 0, result.output
    assert "recall@1" in result.stdout and "suggested rec_threshold" in result.stdout
    report = json.loads((out / "evaluate_result.json").read_text())
    text = config.read_text()
    assert f"rec_threshold: {report['suggested_rec_threshold']:.4f}   # the default" in text
    assert "# keep me" in text and "rec_topk: 5" in text  # the rest of the file is kept
    assert create_pipeline(str(config), device="cpu").rec_threshold == pytest.approx(
        report["suggested_rec_threshold"], abs=1e-4)
    # --write_threshold with a pipeline name, and a label file of missing images: errors, no traceback
    bad = CliRunner().invoke(cli, ["index", "evaluate", "--pipeline", "PP-ShiTuV2", "--index", str(layout["index"]),
                                   "--queries", str(OPENCV), "--labels", str(layout["root"] / "queries.txt"),
                                   "--write_threshold"])
    assert bad.exit_code != 0 and "YAML file" in bad.output and "Traceback" not in bad.output
    labels = tmp_path / "q.txt"
    labels.write_text("a.jpg x\n", encoding="utf-8")
    bad = CliRunner().invoke(cli, ["index", "evaluate", "--pipeline", str(config), "--index", str(layout["index"]),
                                   "--queries", str(OPENCV), "--labels", str(labels)])
    assert bad.exit_code != 0 and "none of its 1 images exists" in bad.output and "Traceback" not in bad.output


def test_without_matplotlib_the_json_is_written_and_plots_are_skipped(pipeline, layout, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    report = pipeline.evaluate(str(OPENCV), str(layout["root"] / "queries.txt"), str(layout["index"]),
                               unknown=str(layout["unknown"]), output=tmp_path / "out", show_progress=False)
    assert report["plots"]["curves"].startswith("skipped: matplotlib is not installed")
    assert not (tmp_path / "out" / "evaluate_curves.png").exists()
    assert (tmp_path / "out" / "evaluate_result.json").is_file()


def test_build_index_takes_index_options_from_the_config(config_file, photos_ready, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(config_file.read_text() + "index_options:\n  center: true\n", encoding="utf-8")
    runner = create_pipeline(str(config), device="cpu")
    images = [str(OPENCV / a) for a, _ in PAIRS]
    index = runner.build_index(images, [Path(a).stem for a, _ in PAIRS], index_type="Flat", show_progress=False)
    assert index.feature_transform["center"] is True
    plain = runner.build_index(images, [Path(a).stem for a, _ in PAIRS], index_type="Flat", show_progress=False,
                               center=False)
    assert plain.feature_transform is None
    with pytest.raises(ConfigError, match="Milvus gallery cannot centre"):
        runner.build_index(images, [Path(a).stem for a, _ in PAIRS], index_dir=f"milvus://{tmp_path}/m.db?collection=x")
    (tmp_path / "bad.yaml").write_text(config_file.read_text() + "index_options:\n  centre: true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key"):
        create_pipeline(str(tmp_path / "bad.yaml"), device="cpu")


def test_write_rec_threshold_appends_when_absent_and_refuses_non_yaml(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("pipeline_name: PP-ShiTuV2\nSubModules: {}\n", encoding="utf-8")
    write_rec_threshold(config, 0.4321)
    assert config.read_text().endswith("rec_threshold: 0.4321\n")
    with pytest.raises(ConfigError, match="YAML"):
        write_rec_threshold(tmp_path / "p.txt", 0.5)


def test_service_build_accepts_index_options_strictly(pipeline, photos_ready, tmp_path):
    import base64

    from fastapi.testclient import TestClient

    from viewfinder.serving import ServingConfig, create_app

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode("ascii")

    pairs = [{"image": b64(OPENCV / a), "label": Path(a).stem} for a, _ in PAIRS[:3]]
    with TestClient(create_app(pipeline, ServingConfig(data_dir=tmp_path / "indexes")),
                    raise_server_exceptions=False) as client:
        response = client.post("/shitu-index-build", json={"imageLabelPairs": pairs, "center": True,
                                                           "queryExpansion": 2})
        assert response.status_code == 200, response.text
        key = response.json()["result"]["indexKey"]
        stored = IndexData.load(tmp_path / "indexes" / key)
        assert stored.feature_transform["center"] is True and stored.query_expansion == {"k": 2, "alpha": 3.0}
        answer = client.post("/shitu-infer", json={"image": b64(OPENCV / PAIRS[0][1]), "indexKey": key,
                                                   "recThreshold": 0.0, "visualize": False}).json()
        assert answer["result"]["detectedObjects"][0]["recResults"][0]["label"] == Path(PAIRS[0][0]).stem
        plain = client.post("/shitu-index-build", json={"imageLabelPairs": pairs}).json()["result"]["indexKey"]
        assert IndexData.load(tmp_path / "indexes" / plain).feature_transform is None
        for bad in ({"center": "yes"}, {"whiten": 1}, {"queryExpansion": 1.5}, {"queryExpansion": -1},
                    {"queryExpansion": "2"}, {"queryExpansion": True}):
            response = client.post("/shitu-index-build", json={"imageLabelPairs": pairs, **bad})
            assert response.status_code == 422, (bad, response.text)
        # 2.0 is an integer in JSON Schema's terms: accepted
        assert client.post("/shitu-index-build", json={"imageLabelPairs": pairs, "queryExpansion": 2.0}
                           ).status_code == 200
        # schema-valid, nothing to learn from: built plain, not refused (schemathesis ST202)
        one = client.post("/shitu-index-build", json={"imageLabelPairs": pairs[:1], "whiten": True})
        assert one.status_code == 200, one.text
        assert IndexData.load(tmp_path / "indexes" / one.json()["result"]["indexKey"]).feature_transform is None


def test_evaluate_follows_the_configs_box_choice(config_file, layout, tmp_path, shared_dir):
    # with the real CenterNet, single_mainbody keeps one box per photo, in evaluate as in predict
    config = tmp_path / "det.yaml"
    config.write_text(config_file.read_text().replace(
        "  Detection: null\n",
        "  Detection:\n    model_name: ONNXDetector\n    spec:\n"
        f"      onnx: {shared_dir / 'assets' / 'centernet.onnx'}\n      decoding: boxes_scores_classes\n"
        "      input_name: \"tower_0/images:0\"\n      output: \"tower_0/detections\"\n      layout: NHWC\n"
        "      size: [512, 512]\n      channel_order: RGB\n      labels: coco80\n      class_agnostic: true\n")
        + "det_threshold: 0.3\nsingle_mainbody: true\n", encoding="utf-8")
    runner = create_pipeline(str(config), device="cpu")
    labels = tmp_path / "q.txt"
    labels.write_text("aloeR.jpg\taloeL\n", encoding="utf-8")
    report = runner.evaluate(str(OPENCV), str(labels), str(layout["index"]), unknown=str(layout["unknown"]),
                             show_progress=False, plots=False)
    assert report["queries_known"] == 1 and report["queries_unknown"] == len(UNKNOWN)
    dog = next(f for f in report["failures"] if f["query"].endswith("dog.jpg"))
    answer = next(runner.predict(str(PHOTOS / "dog.jpg"), index=str(layout["index"]), rec_threshold=-1.0))
    assert len(answer["boxes"]) == 1  # one box: the best detection, no whole image
    assert dog["box"] == pytest.approx(answer["boxes"][0]["coordinate"], abs=0.01)
    assert dog["score"] == pytest.approx(answer["boxes"][0]["rec_scores"][0], abs=1e-4)


def test_cli_index_build_takes_the_index_options(config_file, photos_ready, tmp_path):
    root = tmp_path / "g"
    root.mkdir()
    (root / "gallery.txt").write_text("".join(f"{OPENCV / a}\t{Path(a).stem}\n" for a, _ in PAIRS[:3]))
    runner = CliRunner()
    result = runner.invoke(cli, ["index", "build", "--gallery", str(root), "--index_dir", str(tmp_path / "ix"),
                                 "--pipeline", str(config_file), "--index_type", "Flat", "--center",
                                 "--query_expansion", "2"])
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(cli, ["index", "info", str(tmp_path / "ix")]).stdout)
    assert info["feature_transform"]["center"] is True and info["query_expansion"] == {"k": 2, "alpha": 3.0}
    result = runner.invoke(cli, ["index", "build", "--gallery", str(root), "--index_dir", str(tmp_path / "plain"),
                                 "--pipeline", str(config_file), "--index_type", "Flat"])
    assert result.exit_code == 0, result.output
    assert json.loads(runner.invoke(cli, ["index", "info", str(tmp_path / "plain")]).stdout)["feature_transform"] is None
    bad = runner.invoke(cli, ["index", "build", "--gallery", str(root), "--index_dir", str(tmp_path / "bad"),
                              "--pipeline", str(config_file), "--query_expansion", "-1"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
