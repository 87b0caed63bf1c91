"""``viewfinder index build|append|remove|info``: manage PP-ShiTuV2 gallery indexes on disk.

build/append embed gallery images with a PP-ShiTuV2 pipeline config (``--pipeline``,
default the built-in PP-ShiTuV2); remove and info need no model. Every change is saved
atomically: an interrupted command leaves the previous index intact. append and remove hold
the folder's writer lock, so they are safe next to a server serving the same folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from .guard import guarded

PIPELINE_HELP = "PP-ShiTuV2 pipeline name or YAML (decides the recognition model)."


def _pipeline(pipeline: str, device: str | None):
    from ..pipelines import create_pipeline
    from ..errors import ConfigError

    runner = create_pipeline(pipeline, device=device)
    if not hasattr(runner, "build_index"):
        raise ConfigError(f"{pipeline} is not a PP-ShiTuV2 pipeline (it has no gallery index)")
    return runner


def _report(runner, index, index_dir: str) -> None:
    for note in runner.last_report.skipped:
        click.echo(f"skipped: {note}", err=True)
    click.echo(f"{runner.last_report.added} images added; index of {len(index)} items saved in {index_dir}")


def register(cli: click.Group) -> None:
    @cli.group("index")
    def index_group() -> None:
        """Build, append to, remove from and inspect gallery indexes."""

    @index_group.command("info")
    @click.argument("index_dir")
    @guarded
    def info(index_dir: str) -> None:
        """Describe an index folder (and check it is consistent)."""
        from ..retrieval import index_info_command

        click.echo(json.dumps(index_info_command(index_dir), indent=2, ensure_ascii=False))

    @index_group.command("build")
    @click.option("--gallery", "gallery", required=True, help="Gallery root folder.")
    @click.option("--label_file", default=None, help="'path label' lines (default: GALLERY/gallery.txt).")
    @click.option("--index_dir", required=True, help="Folder to write vector.index + id_map.yaml into.")
    @click.option("--index_type", default="HNSW32", show_default=True, help="Flat, IVF or HNSW32.")
    @click.option("--metric_type", default="IP", show_default=True, help="IP or L2.")
    @click.option("--pipeline", default="PP-ShiTuV2", show_default=True, help=PIPELINE_HELP)
    @click.option("--device", default=None)
    @guarded
    def build(gallery: str, label_file: str | None, index_dir: str, index_type: str, metric_type: str,
              pipeline: str, device: str | None) -> None:
        """Embed a gallery and write a new index."""
        runner = _pipeline(pipeline, device)
        index = runner.build_index(gallery, label_file or str(Path(gallery) / "gallery.txt"),
                                   metric_type=metric_type, index_type=index_type)
        index.save(index_dir)
        _report(runner, index, index_dir)

    @index_group.command("append")
    @click.option("--gallery", "gallery", required=True, help="Gallery root folder.")
    @click.option("--label_file", default=None, help="'path label' lines (default: GALLERY/gallery.txt).")
    @click.option("--index_dir", required=True, help="Existing index folder (updated in place).")
    @click.option("--index_type", default=None,
                  help="Optional check: the index's type (Flat, IVF, HNSW32); another is an error.")
    @click.option("--pipeline", default="PP-ShiTuV2", show_default=True, help=PIPELINE_HELP)
    @click.option("--device", default=None)
    @guarded
    def append(gallery: str, label_file: str | None, index_dir: str, index_type: str | None, pipeline: str,
               device: str | None) -> None:
        """Add gallery images to an existing index (it keeps its type and metric)."""
        from ..retrieval import writer_lock

        runner = _pipeline(pipeline, device)
        with writer_lock(index_dir):  # a server or another command may change the same folder
            index = runner.append_index(gallery, label_file or str(Path(gallery) / "gallery.txt"), index_dir,
                                        index_type=index_type)
            index.save(index_dir)
        _report(runner, index, index_dir)

    @index_group.command("remove")
    @click.option("--index_dir", required=True, help="Existing index folder (updated in place).")
    @click.option("--ids", default=None, help="Comma-separated ids, e.g. 3,7,8.")
    @click.option("--id_file", default=None, help="File whose lines start with an id.")
    @click.option("--gallery", default=None,
                  help="Remove every item whose label is in GALLERY/gallery.txt (PaddleX 3.0's data_root).")
    @click.option("--label_file", default=None, help="With --gallery: the label file (default: GALLERY/gallery.txt).")
    @click.option("--index_type", default=None,
                  help="Optional check: the index's type (Flat, IVF, HNSW32); another is an error.")
    @guarded
    def remove(index_dir: str, ids: str | None, id_file: str | None, gallery: str | None, label_file: str | None,
               index_type: str | None) -> None:
        """Remove items by id, or by the labels of a gallery (unknown ids are an error; the index is then unchanged)."""
        from ..errors import ConfigError
        from ..pipelines.gallery import read_id_file
        from ..pipelines.index_forms import check_same_kind, ids_for_gallery_labels
        from ..retrieval import IndexData, writer_lock

        if sum(given is not None for given in (ids, id_file, gallery)) != 1:
            raise ConfigError("give exactly one of --ids, --id_file or --gallery")
        if label_file is not None and gallery is None:
            raise ConfigError("--label_file only applies with --gallery")
        try:
            wanted = read_id_file(id_file) if id_file else \
                [int(part) for part in ids.split(",") if part.strip()] if ids is not None else None
        except ValueError:
            raise ConfigError(f"--ids must be comma-separated integers, got {ids!r}") from None
        with writer_lock(index_dir):
            index = IndexData.load(index_dir)
            check_same_kind(index, index_type, None, "index remove")
            if wanted is None:
                wanted = ids_for_gallery_labels(index, gallery, label_file)
            index.remove(wanted)
            index.save(index_dir)
        click.echo(f"removed {len(wanted)} ids; {len(index)} items left in {index_dir}")
