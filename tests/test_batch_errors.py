"""viewfinder batch: a bad job fails on the driver, before Ray starts, with one clear error; without Ray
installed, one line naming the extra; and no default path imports Ray.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from viewfinder import batch
from viewfinder.cli import cli
from viewfinder.errors import ConfigError, EngineUnavailableError, InputError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def job(tmp_path, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "dog.jpg").write_bytes((photos / "dog.jpg").read_bytes())
    return {"pipeline": "image_classification", "input": str(folder), "output": str(tmp_path / "out.parquet")}


@pytest.mark.parametrize("change, error, message", [
    ({"input": "/nonexistent/photos"}, InputError, "no such file or folder"),
    ({"input": "EMPTY"}, InputError, "contains no images"),
    ({"input": "/nonexistent/*.jpg"}, InputError, "matches no images"),
    ({"output": "out.csv"}, ConfigError, "must end in .parquet"),
    ({"pipeline": "no_such_pipeline"}, ConfigError, "unknown pipeline or model 'no_such_pipeline'"),
    ({"pipeline": "missing.yaml"}, ConfigError, "does not exist"),
    ({"pipeline": "PP-ShiTuV2"}, ConfigError, "give --index"),
    ({"labels": "gallery.txt"}, ConfigError, "--labels goes with --to_index"),
    ({"to_index": "idx"}, ConfigError, "--to_index needs a PP-ShiTuV2 pipeline"),
    ({"num_workers": 0}, ConfigError, "--num_workers must be a positive integer"),
    ({"predict_kwargs": {"threshold": 0.3}}, ConfigError, "not a predict() parameter"),
])
def test_bad_jobs_fail_before_ray_starts(job, tmp_path, change, error, message):
    import ray

    if change.get("input") == "EMPTY":
        (tmp_path / "empty").mkdir()
        change = {"input": str(tmp_path / "empty")}
    with pytest.raises(error, match=re.escape(message)):
        batch.run(**{**job, **change}, show_progress=False)
    assert not ray.is_initialized()
    assert not Path(job["output"]).exists()


def test_output_that_is_a_file_is_refused(job, tmp_path):
    (tmp_path / "out.parquet").write_bytes(b"PAR1")
    with pytest.raises(ConfigError, match="is a file"):
        batch.run(**job, show_progress=False)


@pytest.mark.parametrize("args, message", [
    (["--input", "/nonexistent", "--output", "o.parquet"], "no such file or folder"),
    (["--output", "o.txt"], "must end in .parquet"),
    (["--pipeline", "nope", "--output", "o.parquet"], "unknown pipeline or model 'nope'"),
])
def test_cli_bad_jobs_exit_2_with_one_line(job, tmp_path, args, message):
    given = dict(zip(args[::2], args[1::2]))
    argv = ["batch", "--pipeline", given.get("--pipeline", job["pipeline"]),
            "--input", given.get("--input", job["input"]), "--output", str(tmp_path / given["--output"])]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert result.stderr.startswith("viewfinder: error:") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_without_ray_one_line_names_the_extra(job, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    with pytest.raises(EngineUnavailableError, match=r'pip install "viewfinder\[ray\]"'):
        batch.run(**job, show_progress=False)
    result = CliRunner().invoke(cli, ["batch", "--pipeline", job["pipeline"], "--input", job["input"],
                                      "--output", job["output"]])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert 'pip install "viewfinder[ray]"' in result.stderr


def test_default_paths_never_import_ray(photos, mobilenet_v2_weights):
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import viewfinder.batch, viewfinder.commands.batch\n"
        "from viewfinder.cli import cli\n"
        "from viewfinder import create_model\n"
        "assert CliRunner().invoke(cli, ['batch', '--help']).exit_code == 0\n"
        f"model = create_model('MobileNetV2_x1_0', weights={str(mobilenet_v2_weights)!r}, device='cpu')\n"
        f"assert next(model.predict({str(photos / 'dog.jpg')!r})).ok\n"
        "loaded = sorted(m for m in ('ray', 'pyarrow') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_worker_that_cannot_load_its_model_is_one_line():
    """Ray reports a constructor's exception as ActorDiedError with the remote traceback as text."""
    from viewfinder.batch.cluster import worker_error
    from viewfinder.errors import WeightsNotFoundError

    class ActorDiedError(Exception):
        error_msg = ("The actor died because of an error raised in its creation task, \x1b[36mray::W()\x1b[39m\n"
                     "Traceback (most recent call last):\n  File \"loader.py\", line 82\n"
                     "viewfinder.errors.WeightsNotFoundError: no weights available for PP-LCNet_x0_5 (offline)\n")

    found = worker_error(ActorDiedError("died"))
    assert isinstance(found, WeightsNotFoundError)
    assert str(found) == "a batch worker failed: no weights available for PP-LCNet_x0_5 (offline)"
    assert worker_error(RuntimeError("object store full")) is None  # Ray's own failures stay as they are


def test_workers_per_cpu_or_a_gpu_share_never_more_than_inputs():
    from viewfinder.batch.cluster import Workers, plan_workers
    from viewfinder.errors import DeviceError

    class Cluster:
        def __init__(self, **resources: float) -> None:
            self.resources = resources

        def cluster_resources(self) -> dict[str, float]:
            return self.resources

    assert plan_workers(Cluster(CPU=8), None, False, 100) == Workers(8, 1, 0.0)
    assert plan_workers(Cluster(CPU=8), 2, False, 100) == Workers(2, 4, 0.0)  # threads = CPUs / workers
    assert plan_workers(Cluster(CPU=8), 4, False, 3) == Workers(3, 2, 0.0)
    assert plan_workers(Cluster(CPU=16, GPU=2), None, True, 100) == Workers(2, 1, 1.0)
    assert plan_workers(Cluster(CPU=16, GPU=2), 8, True, 100) == Workers(8, 1, 0.25)
    with pytest.raises(DeviceError, match="no GPU"):
        plan_workers(Cluster(CPU=4), None, True, 10)


def test_an_input_that_sinks_its_batch_is_retried_alone():
    """The actor without Ray: a batch that raises is run again input by input; only the culprit fails."""
    import pyarrow as pa

    from viewfinder.batch import rows
    from viewfinder.batch.actor import PipelineActor, WorkerSpec
    from viewfinder.results import TopkResult

    class Runner:
        def predict(self, paths, **_):
            if "boom.jpg" in paths:
                raise RuntimeError("decoder crashed")
            return iter([TopkResult({"input_path": p, "class_ids": [1], "scores": [0.5], "label_names": ["x"]})
                         for p in paths])

    actor = PipelineActor.__new__(PipelineActor)
    actor.spec, actor.runner = WorkerSpec("image_classification", rows.CLASSES), Runner()
    table = actor(pa.table({"input_path": ["a.jpg", "boom.jpg", "b.jpg"]}))
    assert table.schema == rows.SCHEMAS[rows.CLASSES]
    assert table.column("error").to_pylist() == [None, "decoder crashed", None]
    assert table.column("label_names").to_pylist() == [["x"], None, ["x"]]


def test_resume_reads_whole_part_files_only_and_refuses_another_kind_of_job(tmp_path):
    from viewfinder.batch import rows
    from viewfinder.batch.output import PartWriter, clean_unfinished, done_inputs

    folder = tmp_path / "o.parquet"
    with PartWriter(folder, rows.SCHEMAS[rows.FEATURE], rows_per_file=2) as writer:
        writer.add(rows.to_table(rows.FEATURE, [{"input_path": "a", "error": None, "feature": [1.0]},
                                                rows.error_row("b", "unreadable")]))  # 2 rows: a part file
        writer.add(rows.to_table(rows.FEATURE, [{"input_path": "c", "error": None, "feature": [2.0]}]))
    assert len(writer.written) == 2  # the second at exit
    (folder / ".part-killed-00000.parquet.tmp").write_bytes(b"PAR1 half a file")  # a run killed mid-write
    clean_unfinished(folder)
    assert not list(folder.glob(".*"))
    assert done_inputs(folder, rows.SCHEMAS[rows.FEATURE]) == {"a", "b", "c"}
    with pytest.raises(ConfigError, match="another kind of job"):
        done_inputs(folder, rows.SCHEMAS[rows.CLASSES])
