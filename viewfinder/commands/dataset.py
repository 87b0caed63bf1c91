"""``viewfinder dataset check|convert|split``: PaddleX's ``Global.mode=check_dataset`` steps.

    viewfinder dataset check data/ --type ClsDataset --output out/
    viewfinder dataset convert data/ --type ClsDataset --src_type LabelMe
    viewfinder dataset split data/ --type ClsDataset --train_percent 80 --val_percent 20
    viewfinder dataset split data/ --type ShiTuRecDataset --train_percent 50 --gallery_percent 30 --query_percent 20
"""
from __future__ import annotations

import click

from .guard import guarded

TYPE_HELP = "ClsDataset, MLClsDataset or ShiTuRecDataset."


def register(cli: click.Group) -> None:
    @cli.group("dataset")
    def dataset_group() -> None:
        """Check, convert and split datasets in PaddleX's formats."""

    @dataset_group.command("check")
    @click.argument("dataset_dir")
    @click.option("--type", "dataset_type", required=True, help=TYPE_HELP)
    @click.option("--output", default="output", show_default=True,
                  help="Folder for check_dataset_result.json and check_dataset/.")
    @click.option("--sample_num", type=int, default=10, show_default=True, help="Demo images per split.")
    @guarded
    def check_command(dataset_dir: str, dataset_type: str, output: str, sample_num: int) -> None:
        """Validate a dataset; write check_dataset_result.json, demo images and a histogram."""
        from pathlib import Path

        from ..datasets import check_dataset

        result = check_dataset(dataset_dir, dataset_type, output, sample_num=sample_num)
        attributes = result["attributes"]
        counts = ", ".join(f"{k[:-8]} {v}" for k, v in attributes.items() if k.endswith("_samples"))
        classes = f", {attributes['num_classes']} classes" if "num_classes" in attributes else ""
        click.echo(f"{result['dataset_type']} check passed: {counts}{classes}; "
                   f"results in {Path(output) / 'check_dataset_result.json'}")
        if attributes.get("unreadable_images_count"):
            click.echo(f"warning: {attributes['unreadable_images_count']} unreadable image(s), e.g. "
                       f"{attributes['unreadable_images'][0]} (training skips them)", err=True)

    @dataset_group.command("convert")
    @click.argument("dataset_dir")
    @click.option("--type", "dataset_type", required=True, help="Target type: " + TYPE_HELP)
    @click.option("--src_type", "src_dataset_type", required=True,
                  help="LabelMe (to ClsDataset or ShiTuRecDataset) or COCO (to MLClsDataset).")
    @guarded
    def convert_command(dataset_dir: str, dataset_type: str, src_dataset_type: str) -> None:
        """Convert a LabelMe or COCO dataset in place."""
        from ..datasets import convert_dataset

        counts = convert_dataset(dataset_dir, dataset_type, src_dataset_type)
        click.echo(f"converted {dataset_dir} to {dataset_type}: "
                   + ", ".join(f"{split} {n}" for split, n in counts.items()))

    @dataset_group.command("split")
    @click.argument("dataset_dir")
    @click.option("--type", "dataset_type", required=True, help=TYPE_HELP)
    @click.option("--train_percent", type=int, default=None)
    @click.option("--val_percent", type=int, default=None, help="ClsDataset / MLClsDataset.")
    @click.option("--gallery_percent", type=int, default=None, help="ShiTuRecDataset.")
    @click.option("--query_percent", type=int, default=None, help="ShiTuRecDataset.")
    @click.option("--seed", type=int, default=None, help="Shuffle seed (default: unseeded, as PaddleX).")
    @guarded
    def split_command(dataset_dir: str, dataset_type: str, train_percent: int | None, val_percent: int | None,
                      gallery_percent: int | None, query_percent: int | None, seed: int | None) -> None:
        """Re-split all samples by percentages; the old list files are kept as *.txt.bak."""
        from ..datasets import split_dataset

        given = {"train": train_percent, "val": val_percent, "gallery": gallery_percent, "query": query_percent}
        counts = split_dataset(dataset_dir, dataset_type, {k: v for k, v in given.items() if v is not None}, seed)
        click.echo(f"split {dataset_dir}: " + ", ".join(f"{split} {n}" for split, n in counts.items()))
