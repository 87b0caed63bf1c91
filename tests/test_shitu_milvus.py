"""PP-ShiTuV2 on a Milvus gallery (Milvus Lite in a tmp file) against the same gallery in faiss:
the same top-1 labels, scores within 1e-5, through the Python API, YAML ``index:`` and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from test_shitu_pipeline import DISTRACTORS, PAIRS, _top1, gallery, opencv_photos, whole_image_pipeline  # noqa: F401
from viewfinder import create_pipeline
from viewfinder.cli import cli
from viewfinder.errors import ConfigError
from viewfinder.retrieval import IndexData, open_gallery


@pytest.fixture(scope="module")
def lite(tmp_path_factory) -> str:
    return f"milvus://{tmp_path_factory.mktemp('milvus') / 'shitu.db'}"


def boxes(results) -> list[tuple[list[str], list[float]]]:
    return [(box["labels"], box["rec_scores"]) for result in results for box in result["boxes"]]


def test_pipeline_gives_the_same_answers_on_faiss_flat_and_milvus_flat(whole_image_pipeline, gallery, lite,  # noqa: F811
                                                                       opencv_photos, tmp_path):  # noqa: F811
    location = f"{lite}?collection=parity"
    on_faiss = whole_image_pipeline.build_index(*gallery, index_type="Flat", show_progress=False)
    whole_image_pipeline.build_index(*gallery, index_type="Flat", index_dir=location, show_progress=False)
    on_milvus = open_gallery(location)
    assert on_milvus.id_map == on_faiss.id_map and on_milvus.feature_model == on_faiss.feature_model
    queries = [str(opencv_photos / b) for _, b in PAIRS] + [str(opencv_photos / d) for d in DISTRACTORS[:3]]
    first = list(whole_image_pipeline.predict(queries, index=on_faiss, rec_threshold=0.0, rec_topk=3))
    second = list(whole_image_pipeline.predict(queries, index=location, rec_threshold=0.0, rec_topk=3))
    assert _top1(first) == _top1(second)
    assert sum(f == Path(a).stem for f, (a, _) in zip(_top1(second), PAIRS)) >= 9
    for (labels_a, scores_a), (labels_b, scores_b) in zip(boxes(first), boxes(second)):
        assert labels_a[0] == labels_b[0]
        assert np.abs(np.array(scores_a[:1]) - np.array(scores_b[:1])).max() < 1e-5

    # changes through the pipeline land in Milvus at once (no save step)
    whole_image_pipeline.append_index([str(opencv_photos / "box_in_scene.png")], ["scene"], location,
                                      show_progress=False)
    assert open_gallery(location).get_labels([20]) == ["scene"]
    whole_image_pipeline.remove_index([20], location)
    assert 20 not in open_gallery(location).id_map


def test_yaml_index_location_and_model_refusal(whole_image_pipeline, gallery, lite, opencv_photos,  # noqa: F811
                                               mobilenet_v2_weights, tmp_path):
    location = f"{lite}?collection=from_yaml"
    whole_image_pipeline.build_index(*gallery, index_type="HNSW32", index_dir=location, show_progress=False)
    config = tmp_path / "shitu.yaml"
    config.write_text(yaml.safe_dump({"pipeline_name": "PP-ShiTuV2", "index": location, "rec_threshold": 0.0,
                                      "SubModules": {"Detection": None, "Recognition": {
                                          "model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights)}}}))
    runner = create_pipeline(str(config), device="cpu")
    (result,) = runner.predict(str(opencv_photos / "aloeR.jpg"))
    assert result["boxes"][0]["labels"][0] == "aloeL"
    # a gallery made by another model is refused before any search
    other = IndexData.build(np.eye(4, 1280, dtype=np.float32), list("abcd"), index_type="Flat")
    other.feature_model = {"model_name": "PP-LCNetV2_base", "feature_dim": 1280}
    refused = f"{lite}?collection=other_model"
    from viewfinder.retrieval import write_gallery

    write_gallery(other, refused)
    with pytest.raises(ConfigError, match="built with PP-LCNetV2_base features"):
        runner.predict(str(opencv_photos / "aloeR.jpg"), index=refused)


def test_cli_on_milvus_matches_faiss(opencv_photos, tmp_path, mobilenet_v2_weights, lite):  # noqa: F811
    config = tmp_path / "shitu.yaml"
    config.write_text(
        "pipeline_name: PP-ShiTuV2\nrec_threshold: 0.0\nSubModules:\n  Detection: null\n  Recognition:\n"
        f"    model_name: MobileNetV2_x1_0\n    weights: {mobilenet_v2_weights}\n", encoding="utf-8")
    root = tmp_path / "g"
    root.mkdir()
    for name in ("aloeL.jpg", "box.png", "graf1.png"):
        (root / name).write_bytes((opencv_photos / name).read_bytes())
    (root / "gallery.txt").write_text("aloeL.jpg aloe\nbox.png box\ngraf1.png graf\n")
    runner = CliRunner()
    folder, milvus = str(tmp_path / "index"), f"{lite}?collection=cli"
    answers = {}
    for where in (folder, milvus):
        built = runner.invoke(cli, ["index", "build", "--gallery", str(root), "--index_dir", where,
                                    "--pipeline", str(config), "--index_type", "Flat"])
        assert built.exit_code == 0, built.output
        out = tmp_path / ("out_milvus" if where == milvus else "out_faiss")
        predicted = runner.invoke(cli, ["--pipeline", str(config), "--index", where, "--input",
                                        str(opencv_photos / "aloeR.jpg"), "--save_path", str(out)])
        assert predicted.exit_code == 0, predicted.output
        answers[where] = json.loads((out / "aloeR_res.json").read_text())["boxes"][0]
    assert answers[folder]["labels"][0] == answers[milvus]["labels"][0] == "aloe"
    assert abs(answers[folder]["rec_scores"][0] - answers[milvus]["rec_scores"][0]) < 1e-5

    info = json.loads(runner.invoke(cli, ["index", "info", milvus]).stdout)
    assert (info["backend"], info["size"], info["index_type"], info["milvus_index"]["index_type"]) == \
        ("milvus", 3, "Flat", "FLAT")
    appended = runner.invoke(cli, ["index", "append", "--gallery", str(root), "--index_dir", milvus,
                                   "--pipeline", str(config)])
    assert appended.exit_code == 0 and "index of 6 items" in appended.output, appended.output
    removed = runner.invoke(cli, ["index", "remove", "--index_dir", milvus, "--labels", "box"])
    assert removed.exit_code == 0 and "removed 2 ids; 4 items left" in removed.output, removed.output
    assert runner.invoke(cli, ["index", "remove", "--index_dir", milvus, "--ids", "0,5"]).exit_code == 0
    bad = runner.invoke(cli, ["index", "remove", "--index_dir", milvus, "--ids", "0"])
    assert bad.exit_code == 2 and bad.stderr.startswith("viewfinder: error:") and "nothing was removed" in bad.stderr
    assert runner.invoke(cli, ["index", "remove", "--index_dir", milvus, "--labels", "nope"]).exit_code == 2

    copied = tmp_path / "copied"
    migrated = runner.invoke(cli, ["index", "migrate", milvus, str(copied)])
    assert migrated.exit_code == 0 and "copied 2 items" in migrated.output, migrated.output
    assert IndexData.load(copied).id_map == {2: "graf", 3: "aloe"} and IndexData.load(copied).next_id == 6
    again = runner.invoke(cli, ["index", "migrate", milvus, str(copied)])
    assert again.exit_code == 2 and "already holds a gallery" in again.stderr
    back = runner.invoke(cli, ["index", "migrate", str(copied), f"{lite}?collection=back"])
    assert back.exit_code == 0 and open_gallery(f"{lite}?collection=back").next_id == 6
    listed = runner.invoke(cli, ["index", "list", lite]).stdout.split()
    assert f"{lite}?collection=cli" in listed and f"{lite}?collection=back" in listed
    assert runner.invoke(cli, ["index", "delete", f"{lite}?collection=back"]).exit_code == 0
    gone = runner.invoke(cli, ["index", "info", f"{lite}?collection=back"])
    assert gone.exit_code == 2 and "does not exist" in gone.stderr
    malformed = runner.invoke(cli, ["index", "info", "milvus://h:1"])
    assert malformed.exit_code == 2 and "must name its collection" in malformed.stderr
