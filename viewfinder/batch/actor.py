"""The Ray actor of a batch job: one pipeline (or model) per worker, loaded once, fed batches of paths.

A plain callable class: Ray Data makes it an actor (``map_batches(PipelineActor, ...)``), but
nothing here imports Ray, so it is tested and used without a cluster too.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from . import rows as R

log = logging.getLogger(__name__)


@dataclass
class WorkerSpec:
    """Everything a worker needs to build its pipeline; pickled to every actor."""

    pipeline: str                 # a pipeline name, a YAML path, or a model name (is_model)
    kind: str                     # rows.CLASSES | BOXES | FEATURE | GALLERY
    is_model: bool = False
    device: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # overrides of the pipeline's YAML
    cpu_threads: int | None = None
    predict_kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)   # create_pipeline / create_model keywords
    environment: dict[str, str] = field(default_factory=dict)  # VIEWFINDER_* of the driver


def build_runner(spec: WorkerSpec) -> Any:
    """The pipeline or model a worker runs (a gallery job needs the recogniser only)."""
    import os

    os.environ.update(spec.environment)  # before the first model import reads them
    common: dict[str, Any] = {"device": spec.device, **spec.options}
    if spec.cpu_threads and "cpu_threads" not in spec.options:  # the caller's own choice wins
        common["cpu_threads"] = spec.cpu_threads
    if spec.is_model:
        from ..models import create_model

        return create_model(spec.pipeline, **common)
    from ..pipelines import create_pipeline

    return create_pipeline(spec.pipeline, config=spec.config or None, **common)


class PipelineActor:
    """``__call__(table with input_path [, label]) -> table of rows.SCHEMAS[kind]``, one row per input."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.runner = build_runner(spec)

    def __call__(self, batch: pa.Table) -> pa.Table:
        paths = [str(p) for p in batch.column("input_path").to_pylist()]
        labels = batch.column("label").to_pylist() if "label" in batch.column_names else None
        try:
            rows = self._rows(paths, labels)
        except Exception as exc:  # noqa: BLE001 - one input must not sink its batch: retry them one by one
            log.warning("batch of %d failed (%s); retrying its inputs one by one", len(paths), exc)
            rows = [self._one(path, labels[i] if labels else None) for i, path in enumerate(paths)]
        return R.to_table(self.spec.kind, rows)

    def _one(self, path: str, label: str | None) -> dict[str, Any]:
        try:
            return self._rows([path], [label] if label is not None else None)[0]
        except Exception as exc:  # noqa: BLE001 - becomes this input's error row
            return R.error_row(path, f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))

    def _rows(self, paths: list[str], labels: list[str] | None) -> list[dict[str, Any]]:
        if self.spec.kind == R.GALLERY:
            return self._gallery_rows(paths, labels or [])
        results = list(self.runner.predict(paths, **self.spec.predict_kwargs))
        if len(results) != len(paths):  # a path that expanded to several images: no safe pairing
            raise RuntimeError(f"{len(paths)} inputs gave {len(results)} results")
        return [R.result_row(self.spec.kind, path, result) for path, result in zip(paths, results)]

    def _gallery_rows(self, paths: list[str], labels: list[str]) -> list[dict[str, Any]]:
        # the pipeline's own embed_gallery: the same decode and embedding as `viewfinder index build`
        # crop "none": one feature per row (a crop mode may give several per image, or none); the
        # index this makes records gallery_crop none, so a pipeline expecting crops warns at predict
        embedding = self.runner.embed_gallery(paths, labels, show_progress=False, crop="none")
        model = json.dumps(embedding.feature_model, sort_keys=True)
        done = {meta["path"]: n for n, meta in enumerate(embedding.metadata)}
        notes = iter(embedding.skipped)  # one note per unreadable path, in order
        rows = []
        for path, label in zip(paths, labels):
            if path in done:
                vector = embedding.features[done[path]]
                rows.append({"input_path": path, "error": None, "label": label,
                             "feature": vector.tolist(), "feature_model": model})
            else:
                rows.append({**R.error_row(path, next(notes, "unreadable")), "label": label})
        return rows
