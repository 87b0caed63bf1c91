"""``viewfinder evaluate``: score a zoo model or a saved model dir on a dataset.

    viewfinder evaluate --model_dir out/best_model --dataset data/ --type ClsDataset --output eval/
    viewfinder evaluate --model MobileNetV2_x1_0 --dataset shitu/ --type ShiTuRecDataset --input_size 112

Writes OUTPUT/evaluate_result.json = {"done_flag": true, "metrics": {...}}.
"""
from __future__ import annotations

import click

from .guard import guarded


def register(cli: click.Group) -> None:
    @cli.command("evaluate")
    @click.option("--model", default=None, help="Zoo model name.")
    @click.option("--model_dir", default=None, help="Saved model dir (e.g. OUTPUT/best_model).")
    @click.option("--weights", default=None,
                  help="Weight file for --model, or a source: paddlex, timm, torchvision.")
    @click.option("--dataset", "dataset_dir", required=True, help="Dataset root.")
    @click.option("--type", "dataset_type", required=True, help="ClsDataset, MLClsDataset or ShiTuRecDataset.")
    @click.option("--output", default="output", show_default=True, help="Folder for evaluate_result.json.")
    @click.option("--device", default=None)
    @click.option("--batch_size", type=int, default=64, show_default=True)
    @click.option("--input_size", type=int, default=None, help="Override the model's input side.")
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    @guarded
    def evaluate_command(model: str | None, model_dir: str | None, weights: str | None, dataset_dir: str,
                         dataset_type: str, output: str, device: str | None, batch_size: int,
                         input_size: int | None, quiet: bool) -> None:
        """Compute top-1/top-5, MultiLabelMAP or recall@1/recall@5/mAP."""
        import json

        from ..errors import ConfigError
        from ..training import evaluate

        if not model and not model_dir:
            raise ConfigError("evaluate needs --model NAME or --model_dir DIR")
        if batch_size < 1:
            raise ConfigError(f"--batch_size must be >= 1, got {batch_size}")
        metrics = evaluate(dataset_dir, dataset_type, model=model, model_dir=model_dir, output=output,
                           device=device, batch_size=batch_size, input_size=input_size, weights=weights,
                           progress=not quiet)
        click.echo(json.dumps(metrics))
