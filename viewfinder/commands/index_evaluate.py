"""``viewfinder index evaluate``: open-set evaluation of a gallery on the user's labelled queries.

    viewfinder index evaluate --pipeline my.yaml --index gallery_index --queries photos/ \
        --labels photos/labels.txt --unknown others/ --output eval/ [--write_threshold]

Prints a summary and writes OUTPUT/evaluate_result.json (+ evaluate_curves.png with the ``[plots]``
extra, evaluate_failures.png). ``--write_threshold`` stores the proposed rec_threshold in the
pipeline YAML (the rest of the file is kept).
"""
from __future__ import annotations

import json

import click

from .guard import guarded


def _summary(report: dict) -> list[str]:
    def pct(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [f"queries: {report['queries_known']} known, {report['queries_unknown']} unknown "
             f"(index of {report['index_size']} items, {report['metric_type']})",
             f"recall@1 {pct(report['recall1'])}  recall@5 {pct(report['recall5'])}  mAP {pct(report['mAP'])}"]
    if report["suggested_rec_threshold"] is None:
        lines.append(f"suggested rec_threshold: none ({report['threshold_rule']})")
    else:
        lines.append(f"suggested rec_threshold: {report['suggested_rec_threshold']:.4f} ({report['threshold_rule']}): "
                     f"unknown precision {pct(report['unknown_precision'])}, recall {pct(report['unknown_recall'])}, "
                     f"F1 {pct(report['f1'])}; known queries accepted {pct(report['known_accepted'])}")
    held = report.get("held_out")
    if held:
        lines.append(f"held out ({held['folds']}-fold, threshold fitted on the other folds): unknown precision "
                     f"{pct(held['unknown_precision'])}, recall {pct(held['unknown_recall'])}, F1 {pct(held['f1'])}")
    sep = report.get("separation") or {}
    if sep.get("margin") is not None:
        lines.append(f"separation: margin {sep['margin']:+.3f} (lowest correct known - highest unknown), "
                     f"d' {pct(sep.get('d_prime'))}")
    for pair in report["confusion_pairs"][:5]:
        lines.append(f"confused: {pair['label']} -> {pair['confused_with']} ({pair['count']}x)")
    if report["labels_not_in_gallery"]:
        lines.append(f"labels with no gallery item: {', '.join(report['labels_not_in_gallery'][:10])}")
    return lines


def add_evaluate(index_group: click.Group) -> None:
    @index_group.command("evaluate")
    @click.option("--pipeline", default="PP-ShiTuV2", show_default=True,
                  help="PP-ShiTuV2 pipeline name or YAML (its models, det_threshold and rec_topk are used).")
    @click.option("--index", "--index_dir", "index", default=None,
                  help="Index location (a folder or a Milvus location); default: the pipeline's `index:`.")
    @click.option("--queries", required=True, help="Folder of labelled query images.")
    @click.option("--labels", "labels", required=True,
                  help="'path label' lines (paths relative to --queries), as in gallery label files.")
    @click.option("--unknown", default=None, help="Folder of images of objects that are NOT in the gallery.")
    @click.option("--output", default=None, help="Folder for evaluate_result.json and the PNGs.")
    @click.option("--target_precision", "--target-precision", type=float, default=None,
                  help="Propose the threshold rejecting unknowns with at least this precision (default: max F1).")
    @click.option("--write_threshold", "--write-threshold", is_flag=True,
                  help="Write the proposed rec_threshold into the --pipeline YAML file.")
    @click.option("--no_plots", "--no-plots", is_flag=True, help="Do not draw the PNGs.")
    @click.option("--device", default=None)
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @guarded
    def evaluate(pipeline: str, index: str | None, queries: str, labels: str, unknown: str | None,
                 output: str | None, target_precision: float | None, write_threshold: bool, no_plots: bool,
                 device: str | None, quiet: bool) -> None:
        """Recall@1/5, mAP and the rec_threshold separating known from unknown objects."""
        from pathlib import Path

        from ..errors import ConfigError
        from ..pipelines import create_pipeline
        from ..pipelines.shitu_evaluate import RESULT_FILE, write_rec_threshold
        from ..retrieval import parse_location

        if write_threshold and not (Path(pipeline).suffix.lower() in (".yaml", ".yml") and Path(pipeline).is_file()):
            raise ConfigError(f"--write_threshold needs --pipeline to be a YAML file, got {pipeline!r}")
        if index is not None:
            parse_location(index)
        runner = create_pipeline(pipeline, device=device)
        if not hasattr(runner, "evaluate") or not hasattr(runner, "build_index"):
            raise ConfigError(f"{pipeline} is not a PP-ShiTuV2 pipeline (it has no gallery index to evaluate)")
        report = runner.evaluate(queries, labels, index, unknown=unknown, output=output,
                                 target_precision=target_precision, show_progress=not quiet, plots=not no_plots)
        for note in report["skipped"]:
            click.echo(f"skipped: {note}", err=True)
        for line in _summary(report):
            click.echo(line)
        if output is not None:
            click.echo(f"report: {Path(output) / RESULT_FILE}")
            for what, where in (report.get("plots") or {}).items() if isinstance(report.get("plots"), dict) else ():
                click.echo(f"{what}: {where}")
        if write_threshold:
            value = report["suggested_rec_threshold"]
            if value is None:
                raise ConfigError(f"no threshold to write: {report['threshold_rule']}")
            write_rec_threshold(pipeline, value)
            click.echo(f"rec_threshold: {value:.4f} written to {pipeline}")
        if output is None and quiet:
            click.echo(json.dumps({k: report[k] for k in ("recall1", "recall5", "mAP", "suggested_rec_threshold",
                                                          "unknown_precision", "unknown_recall")}))
