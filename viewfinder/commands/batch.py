"""``viewfinder batch``: a pipeline over many images on Ray, one Parquet row per input (docs/scale.md).

Ray is imported only when the command runs (viewfinder.batch), never while the CLI starts.
"""
from __future__ import annotations

import click

from .guard import guarded


def register(cli: click.Group) -> None:
    @cli.command("batch")
    @click.option("--pipeline", required=True,
                  help="Pipeline name or YAML, or a model name (e.g. PP-ShiTuV2_rec: one feature per image).")
    @click.option("--input", "input_", required=True, help="Image folder, a .txt list of paths, or a glob.")
    @click.option("--output", required=True, help="OUT.parquet: a folder of Parquet part files; re-running resumes.")
    @click.option("--ray_address", default=None, help="Join this Ray cluster (default: start a local Ray).")
    @click.option("--num_workers", type=int, default=None,
                  help="Ray actors, one pipeline each (default: one per CPU; one per GPU with --device gpu).")
    @click.option("--device", default=None, help="cpu or gpu (each worker gets a GPU share).")
    @click.option("--batch_size", type=int, default=None, help="Images per forward pass.")
    @click.option("--index", "index_dir", default=None, help="PP-ShiTuV2: the gallery index to search.")
    @click.option("--to_index", default=None, metavar="LOCATION",
                  help="Embed the gallery --input and save its index here (as `viewfinder index build`).")
    @click.option("--labels", default=None, help="With --to_index: 'path label' lines (default: sub-folder names).")
    @click.option("--index_type", default="HNSW32", show_default=True, help="With --to_index: Flat, IVF or HNSW32.")
    @click.option("--metric_type", default="IP", show_default=True, help="With --to_index: IP or L2.")
    @guarded
    def batch(pipeline: str, input_: str, output: str, ray_address: str | None, num_workers: int | None,
              device: str | None, batch_size: int | None, index_dir: str | None, to_index: str | None,
              labels: str | None, index_type: str, metric_type: str) -> None:
        """Run a pipeline over many images on Ray; write one Parquet row per input."""
        from ..batch import run

        report = run(pipeline, input_, output, ray_address=ray_address, num_workers=num_workers, device=device,
                     batch_size=batch_size, to_index=to_index, labels=labels, index_type=index_type,
                     metric_type=metric_type, predict_kwargs={"index": index_dir})
        click.echo(f"{report.written} rows written to {report.output} ({report.errors} errors); "
                   f"{report.skipped} of {report.inputs} inputs already done")
        if report.index:
            for note in report.index_skipped:
                click.echo(f"skipped: {note}", err=True)
            click.echo(f"index of {report.index_size} items saved in {report.index}")
