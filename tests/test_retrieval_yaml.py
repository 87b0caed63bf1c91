"""id_map.yaml: our fast writer/reader agree with PyYAML on every label, and PaddleX can read it."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from viewfinder.retrieval import IndexData, idmap_yaml

TRICKY = ["coke", "雪碧 330ml", "a: b", "yes", "No", "on", "123", "-5", "1.5", "1e3", ".inf", "null", "~", "",
          " lead", "trail ", "tab\there", "emoji😀", 'q"uote', "back\\slash", "line\nbreak", "cr\rx",
          "\u2028sep", "\x85nel", "\ufeffbom", "#hash", "a #b", "- dash", "? q", "[x]", "{y}", "7-up",
          "O'Reilly", "'single", "2001-01-01", "0x1F", "0o17", "=", "<<", "*alias", "&anchor", "!tag",
          "|pipe", ">fold", "%pct", "@at", "`tick", "ok/path/a.jpg", "C:\\path\\x.png", "\x00nul", "\x7f"]


def test_tricky_labels_round_trip_and_match_pyyaml():
    doc = {"format": "viewfinder-index", "index_type": "Flat", "metric_type": "IP", "dim": 4,
           "params": {"nlist": None}, "deleted_ids": [3, 9],
           "metadata": {i: lab for i, lab in enumerate(TRICKY)}, "metadata_json": {},
           "id_map": {i: lab for i, lab in enumerate(TRICKY)}}
    text = idmap_yaml.dump(doc)
    assert idmap_yaml._fast_load(text) == doc
    assert yaml.load(text, Loader=yaml.SafeLoader) == doc  # any YAML reader (PaddleX) sees the same


def test_hand_edited_file_falls_back_to_pyyaml():
    doc = {"format": "viewfinder-index", "index_type": "Flat", "metric_type": "IP", "id_map": {0: "a", 1: "b"}}
    text = idmap_yaml.dump(doc)
    edited = text.replace("  1: b\n", "  1: b   # a comment\n  2: [not, a, string]\n")
    out = idmap_yaml.load(edited)
    assert out["id_map"] == {0: "a", 1: "b", 2: ["not", "a", "string"]}  # parsed as YAML, not guessed


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32"])
def test_labels_and_metadata_survive_save_and_load(tmp_path, index_type):
    n = len(TRICKY)
    x = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)
    meta = [{"path": lab, "n": i} if i % 2 else lab for i, lab in enumerate(TRICKY)]
    idx = IndexData.build(x, TRICKY, index_type=index_type, metadata=meta)
    idx.save(tmp_path)
    back = IndexData.load(tmp_path)
    assert back.id_map == dict(enumerate(TRICKY))
    assert back.get_metadata(range(n)) == meta
    assert IndexData.from_bytes(idx.to_bytes()).get_metadata(range(n)) == meta
    plain = yaml.load((tmp_path / "id_map.yaml").read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    assert plain["id_map"] == dict(enumerate(TRICKY))  # what PaddleX's loader would see
