"""One batch job: check everything on the driver, then Ray Data maps the pending paths through the actors.

    paths (listed here) -> ray.data.from_items -> map_batches(PipelineActor, ActorPoolStrategy)
        -> iter_batches on the driver -> PartWriter (OUT.parquet/part-*.parquet)

The driver writes the Parquet part files from the streamed result batches rather than
``Dataset.write_parquet``: part files appear whole (dot-name, then rename), so a killed job
resumes from its last part; the output needs no file system shared with the workers; and
write tasks do not wait for CPUs the actors hold (with actors on every CPU, Ray Data held
its write tasks back until the whole map had finished).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelNotFoundError
from . import rows as R
from .actor import PipelineActor, WorkerSpec
from .cluster import connected, plan_workers, quiet_data_context, require_ray, worker_error
from .inputs import Listing, list_gallery, list_inputs
from .output import PartWriter, check_output, clean_unfinished, done_inputs

log = logging.getLogger(__name__)

#: forward passes an actor runs per call: enough to amortise a call, few enough to spread the work
PASSES_PER_CALL = 4
DEFAULT_FORWARD_BATCH = 8


@dataclass
class BatchReport:
    """What a job did; ``written`` rows this run, ``skipped`` inputs that already had a row."""

    output: str
    inputs: int
    skipped: int
    written: int
    errors: int
    workers: int = 0
    index: str | None = None
    index_size: int | None = None
    index_skipped: list[str] = field(default_factory=list)


def _resolve(pipeline: str, options: dict[str, Any]) -> tuple[str, bool, tuple[str, ...]]:
    """(kind, is_model, the predict() keywords it declares), without loading a model."""
    from ..pipelines import PIPELINE_NAMES, pipeline_class

    text = str(pipeline)
    if text in PIPELINE_NAMES or Path(text).suffix.lower() in (".yaml", ".yml"):
        runner_class = pipeline_class(text)  # ConfigError for a missing or malformed YAML
        return R.kind_of_pipeline(runner_class.name), False, tuple(runner_class.predict_params)
    from ..models import PREDICTORS, get_spec

    try:
        spec = get_spec(text)
    except ModelNotFoundError:
        raise ConfigError(f"unknown pipeline or model {text!r}: give a pipeline name "
                          f"({', '.join(sorted(set(PIPELINE_NAMES.values())))}), a pipeline YAML, or a model name "
                          "(`viewfinder models` lists them)") from None
    task = options.get("task") or spec.task
    kind = R.kind_of_task(task)
    return kind, True, ("batch_size", *PREDICTORS[task].postprocess_params)


def _check_predict_kwargs(pipeline: str, declared: tuple[str, ...], given: dict[str, Any]) -> None:
    # here, not in the workers, where it would turn every row into the same error
    refused = sorted(set(given) - set(declared))
    if refused:
        raise ConfigError(f"{', '.join(refused)}: not a predict() parameter of {pipeline} "
                          f"(it takes {', '.join(declared) or 'none'})")


def _needs_index(pipeline: str, config: dict[str, Any], predict_kwargs: dict[str, Any]) -> None:
    """PP-ShiTuV2 searches a gallery: refuse the job before it starts if it has none."""
    from ..pipelines import PIPELINE_NAMES
    from ..pipelines.config import load_config

    if predict_kwargs.get("index") not in (None, ""):
        return
    configured = load_config(pipeline, config or None, PIPELINE_NAMES).get("index")
    if configured in (None, "", "None", "none", "null"):
        raise ConfigError("PP-ShiTuV2 batch jobs search a gallery: give --index INDEX_DIR "
                          "(or build one from a gallery with --to_index)")


def plan(pipeline: str, input: str, output: str, *, device: str | None = None, batch_size: int | None = None,
         num_workers: int | None = None, to_index: str | None = None, labels: str | None = None,
         predict_kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
         ) -> tuple[WorkerSpec, Listing, Path]:
    """Every check that needs no model and no cluster: bad jobs fail here, in a second."""
    options = dict(options or {})
    config = options.pop("config", None) or {}
    predict_kwargs = {k: v for k, v in (predict_kwargs or {}).items() if v is not None}
    for name, value in (("--num_workers", num_workers), ("--batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    folder = check_output(output)
    kind, is_model, declared = _resolve(pipeline, options)
    if config and is_model:
        raise ConfigError("config overrides apply to pipelines, not to a model name")
    if labels is not None and to_index is None:
        raise ConfigError("--labels goes with --to_index (the labels of the gallery to index)")
    if to_index is not None:
        if kind != R.BOXES or is_model:
            raise ConfigError(f"--to_index needs a PP-ShiTuV2 pipeline (name or YAML; it decides the recognition "
                              f"model), not {pipeline}")
        if predict_kwargs:
            raise ConfigError(f"--to_index embeds a gallery; {', '.join(sorted(predict_kwargs))}: not used")
        kind, config = R.GALLERY, _gallery_config(config, batch_size)
        listing = list_gallery(input, labels)
    else:
        _check_predict_kwargs(pipeline, declared, predict_kwargs)
        if kind == R.BOXES and not is_model:
            _needs_index(pipeline, config, predict_kwargs)
        if batch_size is not None and "batch_size" in declared:
            predict_kwargs["batch_size"] = batch_size
        listing = list_inputs(input)
    # workers on other machines do not inherit the driver's environment (offline mode, engine, home)
    environment = {k: v for k, v in os.environ.items() if k.startswith("VIEWFINDER_")}
    spec = WorkerSpec(pipeline=str(pipeline), kind=kind, is_model=is_model, device=device, config=config,
                      predict_kwargs=predict_kwargs, options=options, environment=environment)
    return spec, listing, folder


def _gallery_config(config: dict[str, Any], batch_size: int | None) -> dict[str, Any]:
    """Whole images (`Detection: null`, as `index build` embeds a gallery); --batch_size is the recogniser's."""
    modules = dict(config.get("SubModules") or {})
    modules["Detection"] = None  # and no detector to load in every worker
    if batch_size is not None:
        modules["Recognition"] = {**(modules.get("Recognition") or {}), "batch_size": batch_size}
    return {**config, "SubModules": modules}


def _rows_per_call(pending: int, workers: int, batch_size: int | None) -> int:
    most = PASSES_PER_CALL * (batch_size or DEFAULT_FORWARD_BATCH)
    return max(1, min(most, math.ceil(pending / (PASSES_PER_CALL * workers))))


def _execute(spec: WorkerSpec, listing: Listing, pending: list[int], writer: PartWriter, *,
             ray_address: str | None, num_workers: int | None, batch_size: int | None,
             show_progress: bool) -> tuple[int, int, int]:
    """Run the pending inputs through the actors; (rows written, error rows, actors)."""
    from tqdm import tqdm

    use_gpu = spec.device is not None and str(spec.device).lower().startswith(("gpu", "cuda"))
    with connected(ray_address, num_workers) as ray, quiet_data_context(ray):
        workers = plan_workers(ray, num_workers, use_gpu, len(pending))
        spec.cpu_threads = workers.cpus
        if use_gpu:
            spec.device = "gpu"  # Ray gives each actor its GPU(s) through CUDA_VISIBLE_DEVICES
        items = [{"input_path": listing.paths[i], **({"label": listing.labels[i]} if listing.labels else {})}
                 for i in pending]
        dataset = ray.data.from_items(items).map_batches(
            PipelineActor, fn_constructor_kwargs={"spec": spec}, batch_format="pyarrow",
            batch_size=_rows_per_call(len(items), workers.count, batch_size),
            compute=ray.data.ActorPoolStrategy(size=workers.count),
            num_cpus=workers.cpus, num_gpus=workers.gpus or None)
        written = errors = 0
        try:
            with tqdm(total=len(items), unit="img", desc="batch", disable=not show_progress) as bar:
                for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
                    writer.add(table)
                    written += table.num_rows
                    errors += table.num_rows - table.column("error").null_count
                    bar.update(table.num_rows)
        except Exception as exc:
            own = worker_error(exc)
            if own is None:
                raise
            raise own from None
        writer.flush()
    return written, errors, workers.count


def run_job(pipeline: str, input: str, output: str, *, ray_address: str | None = None,
            num_workers: int | None = None, device: str | None = None, batch_size: int | None = None,
            to_index: str | None = None, labels: str | None = None, index_type: str = "HNSW32",
            metric_type: str = "IP", predict_kwargs: dict[str, Any] | None = None,
            options: dict[str, Any] | None = None, rows_per_file: int = 10_000,
            show_progress: bool = True) -> BatchReport:
    require_ray()
    spec, listing, folder = plan(pipeline, input, output, device=device, batch_size=batch_size,
                                 num_workers=num_workers, to_index=to_index, labels=labels,
                                 predict_kwargs=predict_kwargs, options=options)
    clean_unfinished(folder)
    done = done_inputs(folder, R.SCHEMAS[spec.kind])
    pending = [i for i, path in enumerate(listing.paths) if path not in done]
    report = BatchReport(output=str(folder), inputs=len(listing.paths), skipped=len(listing.paths) - len(pending),
                         written=0, errors=0)
    if pending:
        with PartWriter(folder, R.SCHEMAS[spec.kind], rows_per_file=rows_per_file) as writer:
            report.written, report.errors, report.workers = _execute(
                spec, listing, pending, writer, ray_address=ray_address, num_workers=num_workers,
                batch_size=batch_size, show_progress=show_progress)
    if to_index is not None:
        from .gallery import write_gallery

        index, notes = write_gallery(folder, listing, to_index, index_type=index_type, metric_type=metric_type)
        report.index, report.index_size, report.index_skipped = to_index, len(index), notes
    return report
