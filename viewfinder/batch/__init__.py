"""Batch jobs on Ray: a pipeline over many images, one Parquet row per input (docs/scale.md).

    from viewfinder import batch
    report = batch.run("image_classification", "photos/", "out.parquet", num_workers=4)

Modules: ``inputs`` (what to read), ``actor`` (one pipeline per Ray worker), ``rows`` (the
output columns), ``output`` (part files and resume), ``gallery`` (``--to_index``),
``cluster`` (Ray itself) and ``job`` (the glue). Importing this package loads neither Ray
nor a model; :func:`run` does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import BatchReport

__all__ = ["run"]


def run(pipeline: str, input: str, output: str, *, ray_address: str | None = None, num_workers: int | None = None,
        device: str | None = None, batch_size: int | None = None, to_index: str | None = None,
        labels: str | None = None, index_type: str = "HNSW32", metric_type: str = "IP",
        predict_kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
        rows_per_file: int = 10_000, show_progress: bool = True) -> "BatchReport":
    """Run ``pipeline`` over ``input`` on Ray and write ``output`` (a folder of Parquet part files).

    ``pipeline``: a pipeline name, a pipeline YAML, or a model name (``PP-ShiTuV2_rec``: one
    ``feature`` per image). ``input``: a folder, a ``.txt`` list of paths, or a glob.
    ``ray_address``: join that cluster; otherwise a local Ray starts (or the one this process
    already runs is used). ``num_workers``: actors, each holding one pipeline (default: one
    per CPU, or one per GPU with ``device="gpu"``). ``batch_size``: images per forward pass.
    Inputs that already have a row in ``output`` are skipped (resume). ``to_index``: embed the
    gallery ``input`` (labels from ``labels``, a ``path label`` file, else from sub-folder
    names) and save the index there, as ``viewfinder index build`` would.
    ``predict_kwargs``: the pipeline's ``predict()`` keywords (``index``, ``topk``, ...);
    ``options``: ``create_pipeline`` / ``create_model`` keywords (``config``, ``weights``,
    ``task``, ``pretrained`` ...). Returns a :class:`~viewfinder.batch.job.BatchReport`.
    """
    from .cluster import require_ray

    require_ray()  # before anything imports pyarrow: a missing extra is one clear line
    from .job import run_job

    return run_job(pipeline, input, output, ray_address=ray_address, num_workers=num_workers, device=device,
                   batch_size=batch_size, to_index=to_index, labels=labels, index_type=index_type,
                   metric_type=metric_type, predict_kwargs=predict_kwargs, options=options,
                   rows_per_file=rows_per_file, show_progress=show_progress)
