"""``viewfinder export``: write a model as a standalone ONNX file for deployment elsewhere.

    viewfinder export --model PP-LCNet_x1_0 --output lcnet.onnx
    viewfinder export --model MobileNetV2_x1_0 --weights my.safetensors --output m.onnx --opset 17

The file takes ``x``: float32 [N, 3, H, W], RGB, normalised with the model's mean/std;
the model name, preprocessing and labels are stored in the ONNX metadata. The export is
checked against torch before it is written, as cached exports are.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .guard import guarded


def _embed_metadata(path: Path, metadata: dict[str, str]) -> bool:
    """Store ``metadata`` in the ONNX file's metadata_props (needs the onnx package)."""
    try:
        import onnx
    except ImportError:
        return False
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return True


def export_model(model: str | None, model_dir: str | None, weights: str | None, random_init: bool,
                 output: Path, opset: int, dynamic_batch: bool, cpu_threads: int | None) -> dict[str, Any]:
    """Build the model exactly as ``create_model`` would, export, validate, write; returns the record."""
    import torch

    from ..errors import ExportError
    from ..engines.export import ExportSettings
    from ..engines.onnx_cache import export_validated
    from ..models import create_model

    predictor = create_model(model, model_dir=model_dir, weights=weights, pretrained=not random_init,
                             device="cpu", engine="torch", cpu_threads=cpu_threads)
    module = getattr(predictor.engine, "module", None)
    if module is None:
        raise ExportError(f"{predictor.model_name} has no torch module to export")
    config = predictor.preprocess.config
    settings = ExportSettings(input_size=tuple(config.input_size), opset=opset, dynamic_batch=dynamic_batch)
    _, record = export_validated(module, output, settings, torch.device("cpu"), cpu_threads, predictor.model_name)
    metadata = {
        "model_name": predictor.model_name,
        "task": predictor.spec.task,
        "input": json.dumps({"name": "x", "layout": "NCHW", "color": "RGB",
                             "height": config.input_size[0], "width": config.input_size[1]}),
        "preprocess": json.dumps(config.to_dict()),
    }
    if predictor.labels:
        metadata["labels"] = json.dumps(predictor.labels, ensure_ascii=False)
    record["metadata_embedded"] = _embed_metadata(output, metadata)
    record["model_name"] = predictor.model_name
    return record


def register(cli: click.Group) -> None:
    @cli.command("export")
    @click.option("--model", "model", default=None, help="Model name (see `viewfinder models`).")
    @click.option("--model_dir", default=None, help="A saved model folder instead of --model.")
    @click.option("--weights", default=None,
                  help="Weight file (.safetensors, .pth, .pdparams) or source: paddlex, timm, torchvision.")
    @click.option("--random_init", is_flag=True, help="Random weights (for speed tests).")
    @click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
    @click.option("--output", "output", default=None, help="Output file (default: <model>.onnx).")
    @click.option("--opset", type=int, default=None, help="ONNX opset (default: 17).")
    @click.option("--static_batch", is_flag=True, help="Fix the batch size to 1 instead of a dynamic batch axis.")
    @click.option("--cpu_threads", type=int, default=None, help="Threads for export and validation.")
    @guarded
    def export_command(model: str | None, model_dir: str | None, weights: str | None, random_init: bool,
                       fmt: str, output: str | None, opset: int | None, static_batch: bool,
                       cpu_threads: int | None) -> None:
        """Export a model to ONNX (validated against torch)."""
        from ..engines.export import DEFAULT_OPSET
        from ..errors import ConfigError

        if not model and not model_dir:
            raise ConfigError("export needs --model NAME or --model_dir DIR")
        target = Path(output or f"{model or Path(str(model_dir)).name}.{fmt}")
        if target.is_dir():
            raise ConfigError(f"--output {target} is a folder; give a file name such as {target / 'model.onnx'}")
        record = export_model(model, model_dir, weights, random_init, target, opset or DEFAULT_OPSET,
                              not static_batch, cpu_threads)
        click.echo(f"{record['model_name']}: wrote {target} ({target.stat().st_size / 1e6:.1f} MB, opset "
                   f"{opset or DEFAULT_OPSET}); max abs diff vs torch {record['max_abs_diff']:.3g} "
                   f"(relative {record['max_rel_diff']:.3g})")
