"""``viewfinder index build|append|remove|info|list|delete|migrate|evaluate``: manage PP-ShiTuV2 gallery indexes.

Every command takes an index *location*: a folder (faiss, the default), ``milvus:///ABS/PATH/x.db?
collection=NAME`` (Milvus Lite in a file) or ``milvus://HOST:PORT?collection=NAME`` (a Milvus
server; token from $MILVUS_TOKEN). build/append embed gallery images with a PP-ShiTuV2 pipeline
config (``--pipeline``, default the built-in PP-ShiTuV2); the others need no model.
Folder changes are saved atomically under the folder's writer lock (safe next to a server
serving it); Milvus changes are written through.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from .guard import guarded

PIPELINE_HELP = "PP-ShiTuV2 pipeline name or YAML (decides the recognition model)."
CROP_HELP = ("How gallery images are cut before embedding: none (whole images, PaddleX), best (the best detected "
             "box) or all (every detected box, an item each); recorded in the index.")
LOCATION_HELP = ("Index location: a folder, milvus:///ABS/PATH/x.db?collection=NAME or "
                 "milvus://HOST:PORT?collection=NAME.")


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
    # items, not images: with --crop all one image may give several
    click.echo(f"{runner.last_report.added} items added; index of {len(index)} items saved in {index_dir}")


def register(cli: click.Group) -> None:
    @cli.group("index")
    def index_group() -> None:
        """Build, append to, remove from, inspect and migrate gallery indexes."""

    from .index_evaluate import add_evaluate

    add_evaluate(index_group)  # viewfinder index evaluate (its own module)

    @index_group.command("info")
    @click.argument("index_dir")
    @guarded
    def info(index_dir: str) -> None:
        """Describe an index (a folder is checked for consistency)."""
        from ..retrieval import gallery_info

        click.echo(json.dumps(gallery_info(index_dir), indent=2, ensure_ascii=False))

    @index_group.command("build")
    @click.option("--gallery", "gallery", required=True, help="Gallery root folder.")
    @click.option("--label_file", default=None, help="'path label' lines (default: GALLERY/gallery.txt).")
    @click.option("--index_dir", required=True, help=LOCATION_HELP + " Replaced if it exists.")
    @click.option("--index_type", default="HNSW32", show_default=True, help="Flat, IVF or HNSW32.")
    @click.option("--metric_type", default="IP", show_default=True, help="IP or L2.")
    @click.option("--pipeline", default="PP-ShiTuV2", show_default=True, help=PIPELINE_HELP)
    @click.option("--device", default=None)
    @click.option("--crop", type=click.Choice(["none", "best", "all"]), default=None,
                  help=CROP_HELP + " Default: the pipeline's gallery_crop (none).")
    @click.option("--center/--no_center", default=None,
                  help="Centre features on the gallery mean (learned now, kept for appends and queries). "
                       "Default: the pipeline's index_options.")
    @click.option("--whiten/--no_whiten", default=None,
                  help="Also whiten them (shrinkage PCA learned from the gallery). Default: index_options.")
    @click.option("--query_expansion", type=click.IntRange(0, 100), default=None,
                  help="Query expansion with this many gallery neighbours (0: off). Default: index_options.")
    @guarded
    def build(gallery: str, label_file: str | None, index_dir: str, index_type: str, metric_type: str,
              pipeline: str, device: str | None, crop: str | None, center: bool | None, whiten: bool | None,
              query_expansion: int | None) -> None:
        """Embed a gallery and write a new index (index options: docs/recognition.md)."""
        from ..retrieval import parse_location
        from ..retrieval.transform import given_index_options

        parse_location(index_dir)  # a malformed location fails before the models load
        runner = _pipeline(pipeline, device)
        options = given_index_options(center, whiten, query_expansion)
        index = runner.build_index(gallery, label_file or str(Path(gallery) / "gallery.txt"),
                                   metric_type=metric_type, index_type=index_type, index_dir=index_dir, crop=crop,
                                   **options)
        _report(runner, index, index_dir)

    @index_group.command("append")
    @click.option("--gallery", "gallery", required=True, help="Gallery root folder.")
    @click.option("--label_file", default=None, help="'path label' lines (default: GALLERY/gallery.txt).")
    @click.option("--index_dir", required=True, help=LOCATION_HELP + " Must exist; updated in place.")
    @click.option("--index_type", default=None,
                  help="Optional check: the index's type (Flat, IVF, HNSW32); another is an error.")
    @click.option("--pipeline", default="PP-ShiTuV2", show_default=True, help=PIPELINE_HELP)
    @click.option("--device", default=None)
    @click.option("--crop", type=click.Choice(["none", "best", "all"]), default=None,
                  help=CROP_HELP + " Default: the index's own; another is an error.")
    @guarded
    def append(gallery: str, label_file: str | None, index_dir: str, index_type: str | None, pipeline: str,
               device: str | None, crop: str | None) -> None:
        """Add gallery images to an existing index (it keeps its type and metric)."""
        from ..retrieval import parse_location, update_gallery

        parse_location(index_dir)
        runner = _pipeline(pipeline, device)
        labels = label_file or str(Path(gallery) / "gallery.txt")
        _, index = update_gallery(index_dir, lambda target: runner.append_index(gallery, labels, target,
                                                                                 index_type=index_type, crop=crop))
        _report(runner, index, index_dir)

    @index_group.command("remove")
    @click.option("--index_dir", required=True, help=LOCATION_HELP + " Updated in place.")
    @click.option("--ids", default=None, help="Comma-separated ids, e.g. 3,7,8.")
    @click.option("--id_file", default=None, help="File whose lines start with an id.")
    @click.option("--labels", default=None, help="Comma-separated labels: every item with one of them goes.")
    @click.option("--gallery", default=None,
                  help="Remove every item whose label is in GALLERY/gallery.txt (PaddleX 3.0's data_root).")
    @click.option("--label_file", default=None, help="With --gallery: the label file (default: GALLERY/gallery.txt).")
    @click.option("--index_type", default=None,
                  help="Optional check: the index's type (Flat, IVF, HNSW32); another is an error.")
    @guarded
    def remove(index_dir: str, ids: str | None, id_file: str | None, labels: str | None, gallery: str | None,
               label_file: str | None, index_type: str | None) -> None:
        """Remove items by id, by label or by the labels of a gallery (unknown ids or labels are an error;
        the index is then unchanged)."""
        from ..errors import ConfigError
        from ..pipelines.gallery import read_id_file
        from ..pipelines.index_forms import check_same_kind, ids_for_gallery_labels
        from ..retrieval import update_gallery

        if sum(option is not None for option in (ids, id_file, labels, gallery)) != 1:
            raise ConfigError("give exactly one of --ids, --id_file, --labels or --gallery")
        if label_file is not None and gallery is None:
            raise ConfigError("--label_file only applies with --gallery")
        wanted_labels: list[str] = []
        wanted: list[int] = []
        if labels is not None:
            wanted_labels = [part.strip() for part in labels.split(",") if part.strip()]
            if not wanted_labels:
                raise ConfigError("--labels needs at least one label")
        elif gallery is None:
            try:
                wanted = read_id_file(id_file) if id_file else [int(part) for part in ids.split(",") if part.strip()]
            except ValueError:
                raise ConfigError(f"--ids must be comma-separated integers, got {ids!r}") from None

        def change(target):
            check_same_kind(target, index_type, None, "index remove")
            if wanted_labels:
                return target.remove_labels(wanted_labels)
            return target.remove(ids_for_gallery_labels(target, gallery, label_file) if gallery else wanted)

        removed, index = update_gallery(index_dir, change)
        click.echo(f"removed {len(removed)} ids; {len(index)} items left in {index_dir}")

    @index_group.command("list")
    @click.argument("prefix")
    @guarded
    def list_command(prefix: str) -> None:
        """The galleries under PREFIX: index sub-folders of a folder, or the collections of a Milvus store."""
        from ..retrieval import list_galleries

        for location in list_galleries(prefix):
            click.echo(location)

    @index_group.command("delete")
    @click.argument("index_dir")
    @guarded
    def delete(index_dir: str) -> None:
        """Delete the gallery at INDEX_DIR (a folder's files, or a Milvus collection)."""
        from ..retrieval import delete_gallery

        delete_gallery(index_dir)
        click.echo(f"deleted {index_dir}")

    @index_group.command("migrate")
    @click.argument("source")
    @click.argument("target")
    @click.option("--overwrite", is_flag=True, help="Replace a gallery already at TARGET.")
    @click.option("--index_type", default=None, help="Flat, IVF or HNSW32 for the copy (default: the source's).")
    @guarded
    def migrate(source: str, target: str, overwrite: bool, index_type: str | None) -> None:
        """Copy the gallery at SOURCE to TARGET (any two locations; ids, labels, metadata kept)."""
        from ..retrieval import migrate as copy_gallery

        copied = copy_gallery(source, target, overwrite=overwrite, index_type=index_type)
        click.echo(f"copied {len(copied)} items ({copied.index_type}, {copied.metric_type}, next id "
                   f"{copied.next_id}) from {source} to {target}")
