"""``viewfinder train``: fine-tune a zoo model on a PaddleX-format dataset.

    viewfinder train --model MobileNetV2_x1_0 --dataset data/ --type ClsDataset --output out/ --epochs 5
    viewfinder train ... --resume                 # continue out/last_checkpoint.pt
    viewfinder train --config out/config.yaml     # repeat a run from its recorded settings

The best model is saved as a model directory in OUTPUT/best_model (plus inference.onnx).
"""
from __future__ import annotations

import sys

import click

from .guard import guarded


def register(cli: click.Group) -> None:
    @cli.command("train")
    @click.option("--model", default=None, help="Zoo model to start from (see `viewfinder models`).")
    @click.option("--model_dir", default=None, help="Saved model dir to start from instead.")
    @click.option("--weights", default=None, help="Weight file for --model (.safetensors, .pth, .pdparams).")
    @click.option("--dataset", "dataset_dir", default=None, help="Dataset root.")
    @click.option("--type", "dataset_type", default=None, help="ClsDataset, MLClsDataset or ShiTuRecDataset.")
    @click.option("--output", default=None, help="Output folder (default: output).")
    @click.option("--config", "config_file", default=None, help="A config.yaml from an earlier run; flags override it.")
    @click.option("--epochs", type=float, default=None, help="Passes over the training images (2.5: two and a half).")
    @click.option("--batch_size", type=int, default=None)
    @click.option("--lr", "learning_rate", type=float, default=None, help="Peak learning rate (task default).")
    @click.option("--device", default=None, help="cpu, gpu, gpu:N (default: GPU 0 if available).")
    @click.option("--input_size", type=int, default=None, help="Network input side (default: the model's).")
    @click.option("--optimizer", type=click.Choice(["momentum", "adamw"]), default=None)
    @click.option("--weight_decay", type=float, default=None)
    @click.option("--warmup_epochs", type=float, default=None)
    @click.option("--ema_decay", type=float, default=None,
                  help="Evaluate and export a moving average of the weights (e.g. 0.999; 0: off).")
    @click.option("--rotate_prob", type=float, default=None, help="Random-rotation probability (recognition: 0.5).")
    @click.option("--sample_per_id", type=int, default=None, help="Recognition: images per identity in a batch.")
    @click.option("--freeze_groups", type=int, default=None,
                  help="Freeze the stem and the next N-1 stages (faster on CPU).")
    @click.option("--batch_norm", type=click.Choice(["batch", "folded"]), default=None,
                  help="folded: BatchNorm statistics recalibrated on the training images, then folded into the "
                       "convolutions (faster CPU steps).")
    @click.option("--eval_interval", type=int, default=None, help="Evaluate every N epochs (0: never).")
    @click.option("--num_workers", type=int, default=None, help="Data-loading worker processes.")
    @click.option("--seed", type=int, default=None)
    @click.option("--random_init", is_flag=True, help="Start from random weights instead of pretrained ones.")
    @click.option("--no_onnx", is_flag=True, help="Skip writing best_model/inference.onnx.")
    @click.option("--resume", is_flag=True, help="Continue OUTPUT/last_checkpoint.pt.")
    @click.option("--resume_from", default=None, help="Continue this checkpoint file.")
    @click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Any setting of config.yaml, e.g. -o pad=4 -o Loss.label_smoothing=0.2 (repeatable).")
    @click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines (train.log has them).")
    @guarded
    def train_command(config_file: str | None, resume: bool, resume_from: str | None, random_init: bool,
                      no_onnx: bool, overrides: tuple[str, ...], quiet: bool, **options: object) -> None:
        """Fine-tune (classification, multi-label or recognition); best model in OUTPUT/best_model."""
        import yaml

        from ..errors import ConfigError
        from ..training import TrainConfig, TrainingInterrupted, train

        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"-o expects KEY=VALUE, got {item!r}")
            try:
                options[key.strip().rsplit(".", 1)[-1]] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(f"-o {item!r}: the value is not valid YAML") from None
        if random_init:
            options["pretrained"] = False
        if no_onnx:
            options["export_onnx"] = False
        if config_file:
            config = TrainConfig.load(config_file, **options)
        else:
            config = TrainConfig.from_dict({k: v for k, v in options.items() if v is not None})
        if not config.dataset_dir:
            raise click.UsageError("--dataset is required (or a --config naming dataset_dir)")
        try:
            result = train(config, resume=resume_from or resume or None, progress=not quiet)
        except TrainingInterrupted as exc:
            click.echo(f"viewfinder: {exc}", err=True)
            sys.exit(130)
        best = result["models"]["best"]
        score = "(not evaluated)" if best["score"] is None else f"{best['score']:.4f}"
        click.echo(f"best {result['primary_metric']} {score} at epoch {best['epoch']}; "
                   f"model dir {config.output}/{best['model_dir']}")
