"""Issue 28: gallery crops recorded in the index, readable scores, one answer per photo, dedup default.

Real models throughout: the COCO CenterNet from ../shared/assets as the mainbody detector and
MobileNetV2 (the seeded torchvision weights) as the recogniser, on the seeded sample photos.
"""
from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from viewfinder import IndexData, create_pipeline
from viewfinder.cli import cli
from viewfinder.errors import ConfigError
from viewfinder.pipelines.mainbody import recorded_gallery_crop

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ROOT / "examples" / "configs" / "PP-ShiTuV2_offline.yaml"
GALLERY = ("dog.jpg", "horses.jpg", "giraffe.jpg")
GRAY = np.full((240, 320, 3), 128, dtype=np.uint8)  # nothing to detect: embedded whole


def offline_config(shared_dir: Path, weights: Path, **top: object) -> dict:
    config = yaml.safe_load(OFFLINE.read_text())
    config["SubModules"]["Detection"]["spec"]["onnx"] = str(shared_dir / "assets" / "centernet.onnx")
    config["SubModules"]["Recognition"]["weights"] = str(weights)
    config.update(top)
    return config


@pytest.fixture(scope="module")
def detecting(shared_dir, mobilenet_v2_weights):
    # no dedup: every detected box reaches the results (part 5's test covers dedup)
    return create_pipeline("PP-ShiTuV2", device="cpu", config=offline_config(shared_dir, mobilenet_v2_weights,
                                                                              dedup_threshold=None))


@pytest.fixture(scope="module")
def whole_images(mobilenet_v2_weights):
    return create_pipeline("PP-ShiTuV2", device="cpu", config={"SubModules": {
        "Detection": None, "Recognition": {"model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights)}}})


@pytest.fixture(scope="module")
def gallery(photos):
    return [str(photos / name) for name in GALLERY] + [GRAY], [Path(n).stem for n in GALLERY] + ["gray"]


@pytest.fixture(scope="module")
def indexes(detecting, gallery):
    return {crop: detecting.build_index(*gallery, index_type="Flat", crop=crop, show_progress=False)
            for crop in ("none", "best", "all")}


def detections(pipeline, source) -> list[tuple[list[float], float]]:
    """The detector's own boxes for one image, as predict() gets them."""
    (found,) = pipeline.detector.detect([source], threshold=pipeline.det_threshold)
    return [(list(map(float, d["coordinate"])), float(d["score"])) for d in found.boxes]


# ------------------------------------------------------------------ part 1: gallery crops
def test_crop_modes_are_recorded_and_give_the_boxes_asked_for(detecting, gallery, indexes):
    per_image = [detections(detecting, source) for source in gallery[0]]
    assert all(per_image[:3]) and per_image[3] == []  # three photos with objects, a gray one without

    none, best, all_ = indexes["none"], indexes["best"], indexes["all"]
    assert [recorded_gallery_crop(i) for i in (none, best, all_)] == ["none", "best", "all"]
    assert none.feature_model["gallery_crop"] == "none" and none.feature_model["model_name"] == "MobileNetV2_x1_0"
    assert len(none) == len(best) == 4 and all("box" not in (m or {}) for m in none.metadata.values())

    # best: the highest-scored box of each photo, kept in the item's metadata; the gray image whole
    for item_id, boxes in zip(range(4), per_image):
        meta = best.get_metadata([item_id])[0] or {}
        if boxes:
            coordinate, score = max(boxes, key=lambda b: b[1])
            assert meta["det_score"] == pytest.approx(score, abs=1e-5)
            assert meta["box"] == pytest.approx(coordinate, abs=1e-2)
        else:
            assert "box" not in meta
    # all: one entry per detected box (same label), the gray image once
    assert len(all_) == sum(max(1, len(b)) for b in per_image)
    labels = list(all_.id_map.values())
    for stem, boxes in zip([Path(n).stem for n in GALLERY], per_image):
        assert labels.count(stem) == len(boxes)
    assert labels.count("gray") == 1


def test_a_cropped_gallery_matches_query_crops(detecting, indexes, photos):
    """The point of part 1: a query's detected box finds the gallery crop it came from (score ~1),
    while against whole-image entries the same box scores lower."""
    query = str(photos / "horses.jpg")
    on_crops = next(detecting.predict(query, index=indexes["best"], single_mainbody=True, rec_threshold=0.0))
    on_whole = next(detecting.predict(query, index=indexes["none"], single_mainbody=True, rec_threshold=0.0))
    (crop_box,), (whole_box,) = on_crops["boxes"], on_whole["boxes"]
    assert crop_box["labels"][0] == "horses" and crop_box["rec_scores"][0] > 0.99
    assert whole_box["rec_scores"][0] < crop_box["rec_scores"][0] - 0.1


def test_the_record_survives_save_load_blob_and_milvus(indexes, tmp_path):
    best = indexes["best"]
    best.save(tmp_path / "idx")
    loaded = IndexData.load(tmp_path / "idx")
    assert loaded.feature_model == best.feature_model and recorded_gallery_crop(loaded) == "best"
    assert loaded.metadata == best.metadata  # boxes kept per item
    assert recorded_gallery_crop(IndexData.from_bytes(best.to_bytes())) == "best"
    assert json.loads(json.dumps(loaded.info()))["feature_model"]["gallery_crop"] == "best"
    pytest.importorskip("pymilvus")
    from viewfinder.retrieval import open_gallery, write_gallery

    location = f"milvus://{tmp_path / 'g.db'}?collection=crops"
    write_gallery(best, location)
    assert recorded_gallery_crop(open_gallery(location)) == "best"
    assert open_gallery(location).get_metadata([0]) == best.get_metadata([0])


def test_old_indexes_read_as_whole_images(indexes):
    old = IndexData.from_bytes(indexes["none"].to_bytes())
    old.feature_model = {k: v for k, v in old.feature_model.items() if k != "gallery_crop"}  # before the record
    assert recorded_gallery_crop(old) == "none"
    raw = IndexData.build(np.eye(3, 1280, dtype=np.float32), ["a", "b", "c"])  # PaddleX / raw vectors
    assert recorded_gallery_crop(raw) == "none"


def test_append_with_another_crop_mode_is_refused(detecting, indexes, photos):
    target = IndexData.from_bytes(indexes["best"].to_bytes())
    before = target.to_bytes()
    with pytest.raises(ConfigError, match=r"gallery_crop=best but these images would be embedded with crop=none"):
        detecting.append_index([str(photos / "kite.jpg")], ["kite"], target, crop="none", show_progress=False)
    whole = detecting.embed_gallery([str(photos / "kite.jpg")], ["kite"], show_progress=False, crop="none")
    with pytest.raises(ConfigError, match="gallery_crop=best"):
        detecting.append_embedding(whole, target)
    assert target.to_bytes() == before  # nothing appended
    # left out, the index's own mode is used
    detecting.append_index([str(photos / "kite.jpg")], ["kite"], target, show_progress=False)
    (new_id,) = [i for i, label in target.id_map.items() if label == "kite"]
    assert "box" in target.get_metadata([new_id])[0]
    # an old index (no record: whole images) refuses crops too
    old = IndexData.from_bytes(indexes["none"].to_bytes())
    old.feature_model = {k: v for k, v in old.feature_model.items() if k != "gallery_crop"}
    with pytest.raises(ConfigError, match="gallery_crop=none but these images would be embedded with crop=all"):
        detecting.append_index([str(photos / "kite.jpg")], ["kite"], old, crop="all", show_progress=False)


def test_predict_warns_when_gallery_and_pipeline_crop_differ(detecting, indexes, photos, shared_dir,
                                                             mobilenet_v2_weights, caplog):
    query = str(photos / "dog.jpg")
    best_index = IndexData.from_bytes(indexes["best"].to_bytes())
    with caplog.at_level(logging.WARNING, logger="viewfinder.pipelines.shitu"):
        list(detecting.predict(query, index=best_index))
        list(detecting.predict(query, index=best_index))  # once per index
        list(detecting.predict(query, index=indexes["none"]))  # the pipeline's own mode: quiet
    warned = [r.getMessage() for r in caplog.records if "gallery_crop" in r.getMessage()]
    assert len(warned) == 1
    assert "embedded with gallery_crop=best but this pipeline's gallery_crop is none" in warned[0]

    cropping = create_pipeline("PP-ShiTuV2", device="cpu", config=offline_config(
        shared_dir, mobilenet_v2_weights, gallery_crop="best"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="viewfinder.pipelines.shitu"):
        list(cropping.predict(query, index=indexes["best"]))
        list(cropping.predict(query, index=indexes["none"]))
    warned = [r.getMessage() for r in caplog.records if "gallery_crop" in r.getMessage()]
    assert len(warned) == 1 and "gallery_crop=none but this pipeline's gallery_crop is best" in warned[0]
    # the config's mode is build_index's default
    assert recorded_gallery_crop(cropping.build_index([query], ["dog"], show_progress=False)) == "best"


def test_crop_settings_are_checked(detecting, whole_images, gallery, mobilenet_v2_weights):
    with pytest.raises(ConfigError, match="crop must be one of none, best, all, got 'biggest'"):
        detecting.build_index(*gallery, crop="biggest", show_progress=False)
    with pytest.raises(ConfigError, match="crop best needs a mainbody detector"):
        whole_images.build_index(gallery[0][:1], gallery[1][:1], crop="best", show_progress=False)
    with pytest.raises(ConfigError, match="gallery_crop: all needs a mainbody detector"):
        create_pipeline("PP-ShiTuV2", device="cpu", config={"gallery_crop": "all", "SubModules": {
            "Detection": None, "Recognition": {"model_name": "MobileNetV2_x1_0",
                                               "weights": str(mobilenet_v2_weights)}}})


def test_cli_build_and_append_take_crop(detecting, photos, tmp_path, shared_dir, mobilenet_v2_weights):
    config = tmp_path / "shitu.yaml"
    config.write_text(yaml.safe_dump(offline_config(shared_dir, mobilenet_v2_weights)))
    root = tmp_path / "g"
    root.mkdir()
    for name in ("dog.jpg", "horses.jpg"):
        (root / name).write_bytes((photos / name).read_bytes())
    (root / "gallery.txt").write_text("dog.jpg dog\nhorses.jpg horses\n")
    runner = CliRunner()
    index_dir = str(tmp_path / "index")
    done = runner.invoke(cli, ["index", "build", "--gallery", str(root), "--index_dir", index_dir,
                               "--pipeline", str(config), "--index_type", "Flat", "--crop", "all"])
    assert done.exit_code == 0, done.output
    info = json.loads(runner.invoke(cli, ["index", "info", index_dir]).stdout)
    assert info["feature_model"]["gallery_crop"] == "all" and info["size"] > 2
    refused = runner.invoke(cli, ["index", "append", "--gallery", str(root), "--index_dir", index_dir,
                                  "--pipeline", str(config), "--crop", "best"])
    assert refused.exit_code != 0 and "gallery_crop=all" in refused.output and "Traceback" not in refused.output
    assert json.loads(runner.invoke(cli, ["index", "info", index_dir]).stdout)["size"] == info["size"]
    bad = runner.invoke(cli, ["index", "build", "--gallery", str(root), "--index_dir", index_dir, "--crop", "x"])
    assert bad.exit_code == 2 and "'x' is not one of 'none', 'best', 'all'" in bad.output


# ------------------------------------------------------------------ part 3: readable scores, explicit rejection
def test_ip_scores_are_cosines_and_l2_scores_squared_distances(whole_images, photos):
    names = ("dog.jpg", "horses.jpg", "giraffe.jpg", "chelsea.png", "coffee.png")
    paths = [str(photos / n) for n in names]
    features = whole_images.embed_gallery(paths, list(names), show_progress=False).features
    query = whole_images.embed_gallery([str(photos / "kite.jpg")], ["q"], show_progress=False).features[0]
    cosine = features @ query / (np.linalg.norm(features, axis=1) * np.linalg.norm(query))
    order = np.argsort(-cosine)
    for metric, expected in (("IP", cosine[order]), ("L2", np.sum((features - query) ** 2, axis=1)[order])):
        index = whole_images.build_index(paths, list(names), metric_type=metric, index_type="Flat",
                                         show_progress=False)
        (box,) = next(whole_images.predict(str(photos / "kite.jpg"), index=index, rec_topk=5,
                                           rec_threshold=-1.0 if metric == "IP" else 4.0))["boxes"]
        assert box["labels"] == [names[i] for i in order]  # the same ranking either way
        np.testing.assert_allclose(box["rec_scores"], expected, atol=2e-5)
    # unit-norm features: squared L2 = 2 - 2 cosine
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def test_a_rejected_box_says_so_in_python_json_and_the_service(whole_images, photos, tmp_path):
    from fastapi.testclient import TestClient

    from viewfinder.serving import ServingConfig, create_app

    query = str(photos / "kite.jpg")
    index = whole_images.build_index([str(photos / "dog.jpg")], ["dog"], index_type="Flat", show_progress=False)
    result = next(whole_images.predict(query, index=index, rec_threshold=0.999))
    (box,) = result["boxes"]
    assert box["rejected"] is True and box["labels"] == [] and box["rec_scores"] == []
    result.save_to_json(tmp_path)
    (saved,) = json.loads((tmp_path / "kite_res.json").read_text())["boxes"]
    assert saved["rejected"] is True and saved["labels"] == [] and saved["rec_scores"] == []
    accepted = next(whole_images.predict(query, index=index, rec_threshold=0.0))["boxes"][0]
    assert accepted["rejected"] is False and accepted["labels"] == ["dog"]

    image = base64.b64encode((photos / "kite.jpg").read_bytes()).decode()
    dog = base64.b64encode((photos / "dog.jpg").read_bytes()).decode()
    with TestClient(create_app(whole_images, ServingConfig(index_storage="memory"))) as client:
        key = client.post("/shitu-index-build", json={"imageLabelPairs": [{"image": dog, "label": "dog"}]}
                          ).json()["result"]["indexKey"]
        strict = client.post("/shitu-infer", json={"image": image, "indexKey": key, "recThreshold": 0.999}).json()
        loose = client.post("/shitu-infer", json={"image": image, "indexKey": key, "recThreshold": 0.0}).json()
        spec = client.get("/openapi.json").json()
        # no detector: the schema offers crop none only, and a crop it cannot do is a schema error
        cannot = client.post("/shitu-index-build", json={"imageLabelPairs": [{"image": dog, "label": "dog"}],
                                                         "crop": "best"})
        whole = client.post("/shitu-index-build", json={"imageLabelPairs": [{"image": dog, "label": "dog"}],
                                                        "crop": "none"})
    assert cannot.status_code == 422 and whole.json()["errorCode"] == 0
    build_body = next(s for name, s in spec["components"]["schemas"].items() if name.startswith("BuildIndexRequest"))
    assert "'none'" in json.dumps(build_body["properties"]["crop"]).replace('"', "'")
    assert "best" not in json.dumps(build_body["properties"]["crop"]["anyOf"])
    (obj,) = strict["result"]["detectedObjects"]
    assert obj["rejected"] is True and obj["recResults"] == []
    (obj,) = loose["result"]["detectedObjects"]
    assert obj["rejected"] is False and obj["recResults"][0]["label"] == "dog"
    documented = spec["components"]["schemas"]["DetectedObject"]
    assert "rejected" in documented["required"] and "recThreshold" in documented["properties"]["rejected"]["description"]


# ------------------------------------------------------------------ part 4: one answer per photo
def test_single_mainbody_returns_one_box(detecting, indexes, photos):
    query = str(photos / "dog.jpg")
    boxes = detections(detecting, query)
    assert len(boxes) >= 3  # car, bicycle, dog ... (+ the whole image this config adds)
    everything = next(detecting.predict(query, index=indexes["none"]))["boxes"]
    assert len(everything) == len(boxes) + 1

    (one,) = next(detecting.predict(query, index=indexes["none"], single_mainbody=True))["boxes"]
    top_score = max(boxes, key=lambda b: b[1])
    assert one["coordinate"] == pytest.approx(top_score[0], abs=1e-2) and one["det_score"] == round(top_score[1], 5)

    def area(box):
        return (box[0][2] - box[0][0]) * (box[0][3] - box[0][1])

    (largest,) = next(detecting.predict(query, index=indexes["none"], single_mainbody=True,
                                        mainbody_order="area"))["boxes"]
    assert largest["coordinate"] == pytest.approx(max(boxes, key=area)[0], abs=1e-2)
    assert len(next(detecting.predict(query, index=indexes["none"], single_mainbody=True,
                                      max_det_results=3))["boxes"]) == 1
    two = next(detecting.predict(query, index=indexes["none"], max_det_results=2))["boxes"]
    assert len(two) == 3 and sorted(b["det_score"] for b in two)[0] == 0.0  # 2 boxes + the whole image
    # nothing detected: the whole image is the one box
    (whole,) = next(detecting.predict(GRAY, index=indexes["none"], single_mainbody=True))["boxes"]
    assert whole["det_score"] == 0.0


def test_single_mainbody_from_yaml_cli_and_service(photos, shared_dir, mobilenet_v2_weights, tmp_path, indexes):
    config = offline_config(shared_dir, mobilenet_v2_weights, single_mainbody=True, dedup_threshold=None)
    one = create_pipeline("PP-ShiTuV2", device="cpu", config=config)
    query = str(photos / "dog.jpg")
    assert len(next(one.predict(query, index=indexes["none"]))["boxes"]) == 1
    # predict() overrides the YAML's pair
    assert len(next(one.predict(query, index=indexes["none"], max_det_results=2))["boxes"]) == 3

    indexes["none"].save(tmp_path / "idx")
    yaml_file = tmp_path / "shitu.yaml"
    yaml_file.write_text(yaml.safe_dump(offline_config(shared_dir, mobilenet_v2_weights)))
    result = CliRunner().invoke(cli, ["--pipeline", str(yaml_file), "--index", str(tmp_path / "idx"), "--input",
                                      query, "--single_mainbody", "--save_path", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "out" / "dog_res.json").read_text())["boxes"]) == 1

    from fastapi.testclient import TestClient

    from viewfinder.serving import ServingConfig, create_app

    two = create_pipeline("PP-ShiTuV2", device="cpu", config=offline_config(shared_dir, mobilenet_v2_weights))
    image = base64.b64encode((photos / "dog.jpg").read_bytes()).decode()
    with TestClient(create_app(two, ServingConfig(index_storage="memory"))) as client:
        key = client.post("/shitu-index-build", json={"imageLabelPairs": [{"image": image, "label": "dog"}],
                                                      "crop": "best"}).json()["result"]["indexKey"]
        single = client.post("/shitu-infer", json={"image": image, "indexKey": key, "singleMainbody": True}).json()
        area = client.post("/shitu-infer", json={"image": image, "indexKey": key, "singleMainbody": True,
                                                 "mainbodyOrder": "area"}).json()
        full = client.post("/shitu-infer", json={"image": image, "indexKey": key}).json()
        bad = [client.post("/shitu-infer", json={"image": image, "indexKey": key, **fields})
               for fields in ({"maxDetResults": 0}, {"mainbodyOrder": "size"}, {"singleMainbody": "yes"})]
        both = client.post("/shitu-infer", json={"image": image, "indexKey": key, "singleMainbody": True,
                                                 "maxDetResults": 3}).json()
    assert len(single["result"]["detectedObjects"]) == 1 and len(area["result"]["detectedObjects"]) == 1
    assert single["result"]["detectedObjects"][0]["bbox"] != area["result"]["detectedObjects"][0]["bbox"]
    assert len(full["result"]["detectedObjects"]) > 2
    assert [r.status_code for r in bad] == [422, 422, 422]
    assert len(both["result"]["detectedObjects"]) == 1  # both cap the boxes: the tighter one holds


@pytest.mark.parametrize("params, message", [
    ({"max_det_results": 0}, "max_det_results must be an integer >= 1"),
    ({"max_det_results": "2"}, "max_det_results must be an integer >= 1"),
    ({"max_det_results": True}, "max_det_results must be an integer >= 1"),
    ({"single_mainbody": "yes"}, "single_mainbody must be true or false"),
    ({"mainbody_order": "size"}, "mainbody_order must be one of score, area"),
])
def test_mainbody_parameters_are_validated(detecting, indexes, photos, params, message):
    with pytest.raises(ConfigError, match=message):
        detecting.predict(str(photos / "dog.jpg"), index=indexes["none"], **params)


# ------------------------------------------------------------------ service: crop field
def test_service_build_and_add_take_crop(photos, shared_dir, mobilenet_v2_weights):
    from fastapi.testclient import TestClient

    from viewfinder.serving import ServingConfig, create_app

    pipeline = create_pipeline("PP-ShiTuV2", device="cpu", config=offline_config(shared_dir, mobilenet_v2_weights))
    dog, kite = (base64.b64encode((photos / n).read_bytes()).decode() for n in ("dog.jpg", "kite.jpg"))
    with TestClient(create_app(pipeline, ServingConfig(index_storage="memory")),
                    raise_server_exceptions=False) as client:
        made = client.post("/shitu-index-build", json={"imageLabelPairs": [{"image": dog, "label": "dog"}],
                                                       "crop": "all"}).json()
        key = made["result"]["indexKey"]
        assert len(made["result"]["idMap"]) == len(detections(pipeline, str(photos / "dog.jpg")))
        bad = client.post("/shitu-index-build", json={"imageLabelPairs": [{"image": dog, "label": "dog"}],
                                                      "crop": "biggest"})
        mixed = client.post("/shitu-index-add", json={"imageLabelPairs": [{"image": kite, "label": "kite"}],
                                                      "indexKey": key, "crop": "none"})
        size = client.get(f"/shitu-index/{key}").json()["result"]["size"]
        same = client.post("/shitu-index-add", json={"imageLabelPairs": [{"image": kite, "label": "kite"}],
                                                     "indexKey": key}).json()
        spec = client.get("/openapi.json").json()
    assert bad.status_code == 422
    assert mixed.status_code == 400 and "gallery_crop=all" in mixed.json()["errorMsg"]
    assert size == len(made["result"]["idMap"])  # the refused add changed nothing
    assert same["errorCode"] == 0 and len(same["result"]["idMap"]) > size  # the index's own mode: every box
    schemas = spec["components"]["schemas"]
    build_body = next(s for name, s in schemas.items() if name.startswith("BuildIndexRequest"))
    assert "crop" in build_body["properties"]
    infer_body = next(s for name, s in schemas.items() if name.startswith("ShiTuInfer") and "Request" in name)
    assert {"singleMainbody", "maxDetResults", "mainbodyOrder"} <= set(infer_body["properties"])


# ------------------------------------------------------------------ part 5: dedup default
def test_dedup_auto_is_the_default_with_the_whole_image(shared_dir, mobilenet_v2_weights, photos, indexes):
    def made(**top):
        config = offline_config(shared_dir, mobilenet_v2_weights, **top)
        if "dedup_threshold" not in top:
            config.pop("dedup_threshold")  # what the shipped YAML says applies
        return create_pipeline("PP-ShiTuV2", device="cpu", config=config)

    auto, off = made(), made(dedup_threshold=None)
    assert auto.dedup_threshold == 0.3 and off.dedup_threshold is None
    assert made(always_add_whole_image=False).dedup_threshold is None
    with pytest.raises(ConfigError, match="dedup_threshold must be an IoU between 0 and 1, auto or null"):
        made(dedup_threshold=2)

    queries = [str(photos / n) for n in ("dog.jpg", "horses.jpg", "giraffe.jpg")]
    with_dedup = list(auto.predict(queries, index=indexes["none"]))
    without = list(off.predict(queries, index=indexes["none"]))

    def labelled(result):
        return [b["labels"][0] for b in result["boxes"] if b["labels"]]

    # dog.jpg / giraffe.jpg: the big crop repeating the whole image's label goes ...
    for before, after in ((without[0], with_dedup[0]), (without[2], with_dedup[2])):
        assert len(after["boxes"]) < len(before["boxes"])
        assert labelled(after).count(labelled(after)[-1]) < labelled(before).count(labelled(before)[-1])
    # ... and distinct objects of one label stay (three horses)
    assert labelled(with_dedup[1]) == labelled(without[1]) and labelled(with_dedup[1]).count("horses") == 4
