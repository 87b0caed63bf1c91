"""PP-ShiTuV2 pipeline with real weights (MobileNetV2 features) and the real CenterNet detector."""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from viewfinder import IndexData, create_pipeline
from viewfinder.cli import cli
from viewfinder.errors import ConfigError, RetrievalIndexError

ROOT = Path(__file__).resolve().parent.parent
OPENCV = ROOT / ".assets" / "opencv"
OFFLINE_CONFIG = ROOT / "examples" / "configs" / "PP-ShiTuV2_offline.yaml"
PAIRS = (("aloeL.jpg", "aloeR.jpg"), ("leuvenA.jpg", "leuvenB.jpg"), ("graf1.png", "graf3.png"),
         ("box.png", "box_in_scene.png"), ("basketball1.png", "basketball2.png"),
         ("rubberwhale1.png", "rubberwhale2.png"), ("aero1.jpg", "aero3.jpg"),
         ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"), ("ela_original.jpg", "ela_modified.jpg"),
         ("left.jpg", "right.jpg"))
DISTRACTORS = ("apple.jpg", "baboon.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg", "messi5.jpg", "orange.jpg",
               "squirrel_cls.jpg", "starry_night.jpg", "building.jpg")


@pytest.fixture(scope="module")
def opencv_photos() -> Path:
    if not (OPENCV / "aloeL.jpg").is_file():
        pytest.fail(f"{OPENCV} missing: run `make test` (it seeds OpenCV's sample photos)")
    return OPENCV


@pytest.fixture(scope="module")
def whole_image_pipeline(mobilenet_v2_weights):
    """No detector: whole images, MobileNetV2 features (fast, deterministic)."""
    return create_pipeline("PP-ShiTuV2", device="cpu", config={
        "SubModules": {"Detection": None,
                       "Recognition": {"model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights),
                                       "batch_size": 8}}})


@pytest.fixture(scope="module")
def gallery(opencv_photos):
    images = [str(opencv_photos / a) for a, _ in PAIRS] + [str(opencv_photos / d) for d in DISTRACTORS]
    labels = [Path(a).stem for a, _ in PAIRS] + [Path(d).stem for d in DISTRACTORS]
    return images, labels


@pytest.fixture(scope="module")
def built(whole_image_pipeline, gallery):
    return whole_image_pipeline.build_index(*gallery, show_progress=False)


def _top1(results) -> list[str | None]:
    out = []
    for result in results:
        boxes = [b for b in result["boxes"] if b["labels"]]
        out.append(max(boxes, key=lambda b: b["rec_scores"][0])["labels"][0] if boxes else None)
    return out


def test_real_recognition_recall_at_1(whole_image_pipeline, built, opencv_photos):
    queries = [str(opencv_photos / b) for _, b in PAIRS]
    found = _top1(whole_image_pipeline.predict(queries, index=built, rec_threshold=0.0))
    hits = sum(f == Path(a).stem for f, (a, _) in zip(found, PAIRS))
    print(f"recall@1 = {hits}/{len(PAIRS)}")
    assert hits >= 9, found


def test_result_shape_and_thresholds(whole_image_pipeline, built, opencv_photos, tmp_path):
    result = next(whole_image_pipeline.predict(str(opencv_photos / "aloeR.jpg"), index=built, rec_topk=3))
    assert list(result.json["res"]) == ["input_path", "boxes"]
    box = result["boxes"][0]
    assert set(box) == {"labels", "rec_scores", "det_score", "coordinate", "rejected"} and box["rejected"] is False
    assert len(box["labels"]) == 3 and box["rec_scores"] == sorted(box["rec_scores"], reverse=True)
    assert box["det_score"] == 0.0 and box["coordinate"][:2] == [0.0, 0.0]  # whole-image box
    rejected = next(whole_image_pipeline.predict(str(opencv_photos / "aloeR.jpg"), index=built, rec_threshold=0.999))
    assert rejected["boxes"][0]["labels"] == [] and rejected["boxes"][0]["rec_scores"] == []
    assert rejected["boxes"][0]["rejected"] is True
    json.dumps(rejected.json)  # a rejected box serialises
    assert rejected.save_to_img(tmp_path).is_file()
    # `topk` is accepted as PaddleX serving sends it
    assert len(next(whole_image_pipeline.predict(str(opencv_photos / "aloeR.jpg"), index=built, topk=2))
               ["boxes"][0]["labels"]) == 2


def test_save_load_identical_and_append_remove_restores(whole_image_pipeline, built, gallery, opencv_photos, tmp_path):
    queries = [str(opencv_photos / b) for _, b in PAIRS[:4]]

    def answers(index):
        return [r.json["res"]["boxes"] for r in whole_image_pipeline.predict(queries, index=index, rec_threshold=0.0)]

    before = answers(built)
    built.save(tmp_path / "idx")
    assert answers(str(tmp_path / "idx")) == before  # a folder path works as the index
    loaded = IndexData.load(tmp_path / "idx")
    extra = [str(opencv_photos / b) for _, b in PAIRS[:2]]
    whole_image_pipeline.append_index(extra, ["aloe-copy", "leuven-copy"], loaded)
    assert len(loaded) == len(built) + 2
    changed = answers(loaded)
    assert changed[0][0]["labels"][0] == "aloe-copy"  # the query itself is now in the gallery
    new_ids = [i for i, label in loaded.id_map.items() if label.endswith("-copy")]
    whole_image_pipeline.remove_index(new_ids, loaded)  # HNSW32 remove, end to end
    assert answers(loaded) == before
    loaded.save(tmp_path / "idx2")
    assert answers(str(tmp_path / "idx2")) == before


def test_l2_metric_threshold_is_a_distance(whole_image_pipeline, gallery, opencv_photos):
    index = whole_image_pipeline.build_index(*gallery, metric_type="L2", index_type="Flat", show_progress=False)
    query = str(opencv_photos / "graf3.png")
    strict = next(whole_image_pipeline.predict(query, index=index, rec_threshold=0.5))
    assert strict["boxes"][0]["labels"][0] == "graf1"  # distance ~0.23 <= 0.5 passes
    assert strict["boxes"][0]["rec_scores"] == sorted(strict["boxes"][0]["rec_scores"])  # ascending distances
    tight = next(whole_image_pipeline.predict(query, index=index, rec_threshold=0.01))
    assert tight["boxes"][0]["labels"] == []


def test_gallery_file_forms_and_bad_lines(whole_image_pipeline, opencv_photos, tmp_path):
    root = tmp_path / "gallery"
    root.mkdir()
    for name in ("aloeL.jpg", "box.png", "graf1.png"):
        (root / name).write_bytes((opencv_photos / name).read_bytes())
    (root / "broken.jpg").write_bytes(b"not an image")
    (root / "gallery.txt").write_text(
        "aloeL.jpg\t芦荟 Aloe vera\nbox.png box\ngraf1.png graf\nbox.png box-again\n"
        "missing.jpg ghost\nbroken.jpg broken\n", encoding="utf-8")
    index = whole_image_pipeline.build_index(str(root), str(root / "gallery.txt"), show_progress=False)
    assert sorted(index.id_map.values()) == ["box", "graf", "芦荟 Aloe vera"]
    report = whole_image_pipeline.last_report
    assert report.added == 3 and len(report.skipped) == 3  # duplicate, missing, broken
    assert any("duplicate" in s for s in report.skipped) and any("missing.jpg" in s for s in report.skipped)
    # older seed-doc form: data_root + gallery.txt, saved into index_dir
    whole_image_pipeline.build_index(data_root=str(root), index_dir=str(tmp_path / "old_form"), show_progress=False)
    assert len(IndexData.load(tmp_path / "old_form")) == 3
    for bad in ("a.jpg red bull can\n", "aloeL.jpg\n", "\tlabel\n"):
        (root / "bad.txt").write_text(bad, encoding="utf-8")
        with pytest.raises(ConfigError, match="line 1"):
            whole_image_pipeline.build_index(str(root), str(root / "bad.txt"), show_progress=False)
    with pytest.raises(ConfigError, match="2 gallery images but 1 labels"):
        whole_image_pipeline.build_index([str(root / "box.png")] * 2, ["x"], show_progress=False)
    with pytest.raises(ConfigError, match="empty"):
        whole_image_pipeline.build_index([str(root / "box.png")], [" "], show_progress=False)


def test_predict_errors_leave_index_untouched(whole_image_pipeline, built, opencv_photos, tmp_path):
    built.save(tmp_path / "idx")
    before = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()}
    with pytest.raises(ConfigError, match="needs an index"):
        list(whole_image_pipeline.predict(str(opencv_photos / "aloeR.jpg")))
    other = IndexData.build(np.eye(4, 8, dtype=np.float32), ["a", "b", "c", "d"])
    with pytest.raises(ConfigError, match="8-d vectors but MobileNetV2_x1_0 gives 1280-d"):
        list(whole_image_pipeline.predict(str(opencv_photos / "aloeR.jpg"), index=other))
    with pytest.raises(RetrievalIndexError):
        list(whole_image_pipeline.predict(str(opencv_photos / "aloeR.jpg"), index=str(tmp_path / "nope")))
    text = tmp_path / "query.jpg"
    text.write_text("hello")
    results = list(whole_image_pipeline.predict([str(text), str(opencv_photos / "aloeR.jpg")],
                                                index=str(tmp_path / "idx")))
    assert not results[0].ok and "not a recognised image" in results[0]["error"] and results[1].ok
    with pytest.raises(RetrievalIndexError):
        whole_image_pipeline.remove_index([99999], str(tmp_path / "idx"))
    with pytest.raises(ConfigError, match="rec_topk"):
        list(whole_image_pipeline.predict(str(opencv_photos / "aloeR.jpg"), index=built, rec_topk=0))
    after = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()}
    assert after == before


def test_centernet_as_mainbody_detector(photos, shared_dir, opencv_photos, mobilenet_v2_weights):
    pipeline = create_pipeline(str(OFFLINE_CONFIG), device="cpu", config={
        "SubModules": {"Detection": {"spec": {"onnx": str(shared_dir / "assets" / "centernet.onnx")}},
                       "Recognition": {"weights": str(mobilenet_v2_weights)}}})
    index = pipeline.build_index([str(opencv_photos / "aloeL.jpg"), str(photos / "dog.jpg")], ["aloe", "dog"],
                                 show_progress=False)
    result = next(pipeline.predict(str(photos / "dog.jpg"), index=index, rec_threshold=0.0))
    detected = [b for b in result["boxes"] if b["det_score"] > 0]
    assert len(detected) >= 2  # dog, bicycle, car ...
    width, height = 768, 576
    for box in result["boxes"]:
        x1, y1, x2, y2 = box["coordinate"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    # the whole image (always added in this config) finds itself
    whole = [b for b in result["boxes"] if b["det_score"] == 0.0][0]
    assert whole["labels"][0] == "dog" and whole["rec_scores"][0] > 0.99


def test_cli_index_commands_and_predict(whole_image_pipeline, opencv_photos, tmp_path, mobilenet_v2_weights):
    config = tmp_path / "shitu.yaml"
    config.write_text(
        "pipeline_name: PP-ShiTuV2\nrec_threshold: 0.0\nSubModules:\n  Detection: null\n  Recognition:\n"
        f"    model_name: MobileNetV2_x1_0\n    weights: {mobilenet_v2_weights}\n", encoding="utf-8")
    root = tmp_path / "g"
    root.mkdir()
    for name in ("aloeL.jpg", "box.png"):
        (root / name).write_bytes((opencv_photos / name).read_bytes())
    (root / "gallery.txt").write_text("aloeL.jpg aloe\nbox.png box\n")
    runner = CliRunner()
    index_dir = str(tmp_path / "index")
    result = runner.invoke(cli, ["index", "build", "--gallery", str(root), "--index_dir", index_dir,
                                 "--pipeline", str(config), "--index_type", "Flat"])
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(cli, ["index", "info", index_dir]).stdout)
    assert info["size"] == 2 and info["index_type"] == "Flat"
    result = runner.invoke(cli, ["--pipeline", str(config), "--index", index_dir, "--input",
                                 str(opencv_photos / "aloeR.jpg"), "--save_path", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "aloeR_res.json").read_text())
    assert saved["boxes"][0]["labels"][0] == "aloe"
    assert runner.invoke(cli, ["index", "remove", "--index_dir", index_dir, "--ids", "1"]).exit_code == 0
    assert json.loads(runner.invoke(cli, ["index", "info", index_dir]).stdout)["size"] == 1
    bad = runner.invoke(cli, ["index", "remove", "--index_dir", index_dir, "--ids", "7"])
    assert bad.exit_code != 0 and bad.stderr.startswith("viewfinder: error:") and "Traceback" not in bad.output
    missing = runner.invoke(cli, ["index", "info", str(tmp_path / "nothing")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_index_records_its_feature_model_and_refuses_another(whole_image_pipeline, built, opencv_photos, tmp_path,
                                                             mobilenet_v2_weights):
    # Two networks with the same feature size make vectors that cannot be compared: an index
    # remembers which model built it, through save/load and the blob form.
    record = built.feature_model
    assert record["model_name"] == "MobileNetV2_x1_0" and record["feature_dim"] == 1280
    assert record["weights_sha256"] == whole_image_pipeline.recognizer.weights_sha256[:16]
    built.save(tmp_path / "idx")
    loaded = IndexData.load(tmp_path / "idx")
    assert loaded.feature_model == built.feature_model and loaded.info()["feature_model"] == built.feature_model
    assert IndexData.from_bytes(built.to_bytes()).feature_model == built.feature_model
    query = str(opencv_photos / "aloeR.jpg")
    assert _top1(whole_image_pipeline.predict(query, index=loaded)) == ["aloeL"]

    # The same weights on another engine are the same vectors: accepted.
    torch_pipeline = create_pipeline("PP-ShiTuV2", device="cpu", engine="torch", config={
        "SubModules": {"Detection": None,
                       "Recognition": {"model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights)}}})
    assert _top1(torch_pipeline.predict(query, index=loaded)) == ["aloeL"]
    # Other weights of the same architecture (a fine-tuned model dir, say): refused.
    loaded.feature_model = {**record, "weights_sha256": "0123456789abcdef"}
    with pytest.raises(ConfigError, match="built with other MobileNetV2_x1_0 weights"):
        list(whole_image_pipeline.predict(query, index=loaded))
    loaded.feature_model = {"model_name": "EfficientNet_B0", "feature_dim": 1280}
    with pytest.raises(ConfigError, match="built with EfficientNet_B0 features but this pipeline recognises "
                                          "with MobileNetV2_x1_0"):
        list(whole_image_pipeline.predict(query, index=loaded))
    with pytest.raises(ConfigError, match="built with EfficientNet_B0"):
        whole_image_pipeline.append_index([query], ["x"], loaded, show_progress=False)
    assert len(loaded) == len(built)

    # Indexes from raw vectors (or PaddleX) record nothing and are not refused for it.
    raw = IndexData.build(np.random.default_rng(0).random((3, 1280), dtype=np.float32), ["a", "b", "c"])
    assert raw.feature_model is None
    assert len(list(whole_image_pipeline.predict(query, index=raw))) == 1
    with pytest.raises(RetrievalIndexError, match="JSON-serialisable"):
        raw.feature_model = {"model_name": object()}


def test_a_malformed_feature_model_record_is_refused_on_load(built, tmp_path):
    built.save(tmp_path / "idx")
    yaml_file = tmp_path / "idx" / "id_map.yaml"
    text = yaml_file.read_text(encoding="utf-8")
    block = re.search(r"^feature_model:\n(  .*\n)+", text, re.M)
    assert block and "model_name: MobileNetV2_x1_0" in block.group(0)
    yaml_file.write_text(text.replace(block.group(0), "feature_model: oops\n"), encoding="utf-8")
    with pytest.raises(RetrievalIndexError, match="feature_model must be a mapping"):
        IndexData.load(tmp_path / "idx")


def test_embed_gallery_then_append_embedding_equals_append_index(whole_image_pipeline, built, opencv_photos):
    """The two halves of append_index (a service embeds outside its index lock) give the same index."""
    extra = [str(opencv_photos / b) for _, b in PAIRS[:2]] + [str(opencv_photos / "no_such.jpg")]
    whole = IndexData.from_bytes(built.to_bytes())
    whole_image_pipeline.append_index(extra, ["a", "b", "c"], whole, show_progress=False)

    halves = IndexData.from_bytes(built.to_bytes())
    embedding = whole_image_pipeline.embed_gallery(extra, ["a", "b", "c"], show_progress=False)
    assert embedding.features.shape == (2, 1280) and embedding.labels == ["a", "b"]
    assert len(embedding.skipped) == 1 and "no_such.jpg" in embedding.skipped[0]  # reported, not fatal
    assert len(halves) == len(built)  # embedding touched no index
    returned = whole_image_pipeline.append_embedding(embedding, halves)
    assert returned is halves and whole_image_pipeline.last_report.added == 2
    assert halves.to_bytes() == whole.to_bytes()

    foreign = dataclasses.replace(embedding, feature_model={"model_name": "EfficientNet_B0", "feature_dim": 1280})
    with pytest.raises(ConfigError, match="come from EfficientNet_B0"):
        whole_image_pipeline.append_embedding(foreign, halves)
    other = IndexData.from_bytes(built.to_bytes())
    other.feature_model = {"model_name": "EfficientNet_B0", "feature_dim": 1280}
    with pytest.raises(ConfigError, match="built with EfficientNet_B0"):
        whole_image_pipeline.append_embedding(embedding, other)
    assert len(other) == len(built) and len(halves) == len(built) + 2


def test_crops_of_several_images_share_a_recogniser_call(whole_image_pipeline, built, opencv_photos, monkeypatch):
    """predict() recognises whatever images are ready in one embed call (issue 30); answers keep order."""
    queries = [str(opencv_photos / b) for _, b in PAIRS]
    expected = _top1(whole_image_pipeline.predict(queries, index=built))
    recognizer = whole_image_pipeline.recognizer
    real_embed = recognizer.embed
    calls: list[int] = []

    def slow_embed(images, *args, **kwargs):
        calls.append(len(images))
        time.sleep(0.2)  # the decoding stage runs ahead meanwhile
        return real_embed(images, *args, **kwargs)

    monkeypatch.setattr(recognizer, "embed", slow_embed)
    results = list(whole_image_pipeline.predict(queries[:6] + ["missing.jpg"] + queries[6:], index=built))
    assert [r.get("error") is not None for r in results] == [False] * 6 + [True] + [False] * 4
    assert _top1([r for r in results if r.ok]) == expected
    assert sum(calls) == len(queries) and max(calls) > 1 and max(calls) <= recognizer.batch_size
    # leaving early does not wait for the rest
    first = next(iter(whole_image_pipeline.predict(queries, index=built)))
    assert first["boxes"]
