"""PaddleX's CLI spellings: --get_pipeline_config with --config_save_path, --hpi_config, --enable_hpi."""
from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from viewfinder.cli import cli


@pytest.mark.parametrize("name, canonical", [
    ("multi_label_image_classification", "image_multilabel_classification"),
    ("image_multilabel_classification", "image_multilabel_classification"),
    ("image_classification", "image_classification"),
    ("PP-ShiTuV2", "PP-ShiTuV2"),
])
def test_get_pipeline_config_writes_the_name_asked_for(tmp_path, name, canonical):
    result = CliRunner().invoke(cli, ["--get_pipeline_config", name, "--config_save_path", str(tmp_path / "my_path")])
    assert result.exit_code == 0, result.output
    written = tmp_path / "my_path" / f"{name}.yaml"
    assert [p.name for p in (tmp_path / "my_path").iterdir()] == [f"{name}.yaml"]
    assert yaml.safe_load(written.read_text())["pipeline_name"] == canonical


def test_config_save_path_to_a_file_and_the_older_save_path(tmp_path):
    runner = CliRunner()
    target = tmp_path / "cfg" / "mine.yaml"
    assert runner.invoke(cli, ["--get_pipeline_config", "image_classification",
                               "--config_save_path", str(target)]).exit_code == 0
    assert target.is_file()
    assert runner.invoke(cli, ["--get_pipeline_config", "image_classification",
                               "--save_path", str(tmp_path / "old")]).exit_code == 0  # PaddleX 3.0-beta's flag
    assert (tmp_path / "old" / "image_classification.yaml").is_file()


def test_config_save_path_misuse_is_one_line(tmp_path):
    runner = CliRunner()
    both = runner.invoke(cli, ["--get_pipeline_config", "image_classification", "--config_save_path",
                               str(tmp_path / "a"), "--save_path", str(tmp_path / "b")])
    assert both.exit_code != 0 and "give one" in both.stderr and "Traceback" not in both.output
    alone = runner.invoke(cli, ["--pipeline", "image_classification", "--input", "x.jpg",
                                "--config_save_path", str(tmp_path / "a")])
    assert alone.exit_code != 0 and "only applies with --get_pipeline_config" in alone.stderr


def test_hpi_flags(tmp_path, photos):
    runner = CliRunner()
    bad = runner.invoke(cli, ["--pipeline", "image_classification", "--input", str(photos / "coffee.png"),
                              "--random_init", "--hpi_config", "{backend: onnxruntime"])
    assert bad.exit_code != 0 and "--hpi_config must be a JSON object" in bad.stderr
    refused = runner.invoke(cli, ["--pipeline", "image_classification", "--input", str(photos / "coffee.png"),
                                  "--random_init", "--enable_hpi", "--hpi_config", '{"backend": "tensorrt"}'])
    assert refused.exit_code != 0 and "not available in viewfinder" in refused.stderr
    unused = runner.invoke(cli, ["--pipeline", "image_classification", "--input", str(photos / "coffee.png"),
                                 "--random_init", "--hpi_config", '{"backend": "paddle"}'])
    assert unused.exit_code != 0 and "only applies with high-performance inference" in unused.stderr
    honoured = runner.invoke(cli, ["--pipeline", "image_classification", "--input", str(photos / "coffee.png"),
                                   "--random_init", "--device", "cpu", "--enable_hpi",
                                   "--hpi_config", '{"backend": "paddle"}'])  # paddle backend: torch, no export
    assert honoured.exit_code == 0, honoured.output


def test_serve_refuses_bad_hpi_config_before_loading():
    result = CliRunner().invoke(cli, ["serve", "--pipeline", "image_classification", "--hpi_config", "[1]"])
    assert result.exit_code != 0 and "--hpi_config must be a JSON object" in result.stderr
