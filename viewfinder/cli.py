"""The ``viewfinder`` command line, with PaddleX's flags.

    viewfinder --pipeline image_classification --input x.jpg --device cpu --save_path out/ --topk 5
    viewfinder --get_pipeline_config image_classification --save_path configs/
    viewfinder --pipeline my.yaml --input photos/
    viewfinder models [--task image_classification]
    viewfinder -c PP-ShiTuV2_rec.yaml -o Global.mode=train -o Global.dataset_dir=data/   # PaddleX's main.py
    viewfinder --get_module_config PP-ShiTuV2_rec --save_path configs/

User errors print one line on stderr and exit non-zero; never a traceback.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from .commands.guard import EXIT_INPUT_FAILED, EXIT_USAGE, guarded
from .commands.options import hpi_config_from_json
from .errors import ConfigError, ViewfinderError

def _write_pipeline_config(name: str, save_path: str | None) -> None:
    """PaddleX's ``--get_pipeline_config NAME``: ``NAME.yaml`` (the name as asked, an alias too) in ``save_path``."""
    from .pipelines import PIPELINE_NAMES, default_config_text

    if name not in PIPELINE_NAMES:
        raise ViewfinderError(f"unknown pipeline {name!r}; known: {', '.join(sorted(PIPELINE_NAMES))}")
    canonical = PIPELINE_NAMES[name]
    folder = Path(save_path or ".")
    target = folder if folder.suffix.lower() in (".yaml", ".yml") else folder / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(default_config_text(canonical), encoding="utf-8")
    click.echo(f"pipeline config written to {target}")


def _write_module_config(name: str, save_path: str | None) -> None:
    from .commands.paddlex_config import default_config_text

    text = default_config_text(name)  # refuses an unknown model name before anything is written
    folder = Path(save_path or ".")
    target = folder if folder.suffix.lower() in (".yaml", ".yml") else folder / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    click.echo(f"module config written to {target}")


def _run_module(config: str, overrides: tuple[str, ...], pipeline: str | None, inputs: tuple[str, ...]) -> None:
    from .commands.paddlex_module import run_module

    if pipeline or inputs:
        raise ConfigError("-c runs a module config (PaddleX's main.py); it does not combine with --pipeline/--input "
                          "(set Predict.input with -o)")
    if run_module(config, overrides):
        sys.exit(EXIT_INPUT_FAILED)


def _predict_params(pipeline: str, flags: dict[str, Any]) -> dict[str, Any]:
    """The given predict flags (named as the parameters) as ``predict()`` keywords.

    A flag the pipeline does not declare in its ``predict_params`` is refused before any
    model loads, instead of being dropped.
    """
    from .pipelines import pipeline_class

    runner_class = pipeline_class(pipeline)
    taken = set(runner_class.predict_params)
    given = {name: value for name, value in flags.items() if value is not None}
    refused = [f"--{name}" for name in given if name not in taken]
    if refused:
        verb = "does" if len(refused) == 1 else "do"
        its_flags = ", ".join(f"--{name}" for name in sorted(taken & set(flags))) or "none"
        raise ConfigError(f"{', '.join(refused)} {verb} not apply to pipeline {runner_class.name} "
                          f"(its flags: {its_flags})")
    if "threshold" in given:  # a number, or JSON for the dict / list forms
        from .models.multilabel import threshold_from_text

        given["threshold"] = threshold_from_text(given["threshold"])
    return given


def _config_save_path(config_save_path: str | None, save_path: str | None) -> str | None:
    """Where ``--get_pipeline_config`` writes: PaddleX's ``--config_save_path``, or its older ``--save_path``."""
    if config_save_path and save_path and Path(config_save_path) != Path(save_path):
        raise ConfigError(f"--config_save_path {config_save_path} and --save_path {save_path} both say where the "
                          "config goes; give one")
    return config_save_path or save_path


def _default_inputs(pipeline: str) -> tuple[str, ...]:
    """A PaddleX 3.0 config's ``Global.input``, used when no ``--input`` is given (as PaddleX's demos do)."""
    from .pipelines import PIPELINE_NAMES
    from .pipelines.config import load_config

    configured = load_config(pipeline, None, PIPELINE_NAMES).get("input")
    if not configured:
        raise ViewfinderError("--input is required with --pipeline")
    return tuple(configured) if isinstance(configured, list) else (str(configured),)


def _run_pipeline(pipeline: str, inputs: tuple[str, ...], device: str | None, save_path: str | None,
                  use_hpip: bool | None, predict_flags: dict[str, Any], create_kwargs: dict[str, Any]) -> None:
    from .pipelines import create_pipeline

    predict_kwargs = _predict_params(pipeline, predict_flags)
    inputs = inputs or _default_inputs(pipeline)
    runner = create_pipeline(pipeline, device=device, use_hpip=use_hpip, **create_kwargs)
    source: Any = list(inputs) if len(inputs) > 1 else inputs[0]
    failures = 0
    for result in runner.predict(source, **predict_kwargs):
        if not result.ok:
            failures += 1
            click.echo(f"viewfinder: error: {result['error']}", err=True)
            continue
        result.print()
        if save_path:
            for written in result.save_all(save_path):
                logging.getLogger("viewfinder").info("wrote %s", written)
    if save_path:
        click.echo(f"results saved in {Path(save_path).resolve()}")
    if failures:
        sys.exit(EXIT_INPUT_FAILED)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--pipeline", help="Pipeline name (image_classification, ...) or a pipeline YAML file.")
@click.option("--input", "inputs", multiple=True, help="Image file, folder, URL; repeat for several.")
@click.option("--device", default=None, help="cpu, gpu, gpu:N or cuda:N (default: GPU 0 if available).")
@click.option("--save_path", default=None, help="Folder for <stem>_res.json and <stem>_res.<ext>.")
@click.option("--topk", type=int, default=None, help="Classification: number of classes to return.")
@click.option("--threshold", default=None,
              help='Multi-label: score threshold, a number or JSON ({"default": 0.5, "3": 0.7} or a per-class list).')
@click.option("--index", "--index_dir", "index_dir", default=None,
              help="PP-ShiTuV2: the gallery index folder (--index_dir: PaddleX 3.0's name).")
@click.option("--det_threshold", type=float, default=None, help="PP-ShiTuV2: detection score threshold.")
@click.option("--rec_threshold", type=float, default=None, help="PP-ShiTuV2: recognition score threshold.")
@click.option("--rec_topk", type=int, default=None, help="PP-ShiTuV2: gallery matches per box.")
@click.option("--single_mainbody", is_flag=True, help="PP-ShiTuV2: recognise only the best box of each image.")
@click.option("--max_det_results", type=int, default=None,
              help="PP-ShiTuV2: recognise at most this many detected boxes per image.")
@click.option("--mainbody_order", type=click.Choice(["score", "area"]), default=None,
              help="PP-ShiTuV2: the best box by detection score (default) or by area.")
@click.option("--batch_size", type=int, default=None, help="Images per forward pass.")
@click.option("--use_hpip", "--enable_hpi", "use_hpip", is_flag=True,
              help="High-performance inference (ONNX Runtime on CPU); --enable_hpi: PaddleX 3.0's config name.")
@click.option("--hpi_config", default=None, help='With --use_hpip: PaddleX\'s hpi_config as JSON, e.g. '
                                                 '\'{"backend": "onnxruntime"}\'.')
@click.option("--cpu_threads", type=int, default=None, help="CPU threads for inference.")
@click.option("--precision", type=click.Choice(["fp32", "int8", "bf16", "auto"], case_sensitive=False), default=None,
              help="fp32 (default), int8 (ONNX Runtime on the CPU), bf16 (OpenVINO, on AVX512-BF16/AMX CPUs), "
                   "each checked against fp32, or auto (bf16, else int8 on VNNI/AMX CPUs, where it passed its check).")
@click.option("--get_pipeline_config", default=None, metavar="NAME", help="Write a pipeline's default YAML.")
@click.option("-c", "--config", "module_config", default=None, metavar="MODULE.yaml",
              help="Run a PaddleX module config (python main.py -c ...): Global.mode check_dataset, train, "
                   "evaluate, export or predict.")
@click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="With -c: set a config key, e.g. -o Global.mode=train -o Train.epochs_iters=2 (repeatable).")
@click.option("--get_module_config", default=None, metavar="MODEL",
              help="Write MODEL.yaml, a PaddleX-shaped module config with viewfinder's defaults (--save_path DIR).")
@click.option("--config_save_path", default=None,
              help="With --get_pipeline_config: the folder (or .yaml file) to write it to (default: ./).")
@click.option("--random_init", is_flag=True, help="Random weights (for speed tests without weight files).")
@click.option("--serve", is_flag=True, help="Serve --pipeline over HTTP (PaddleX's spelling of `viewfinder serve`).")
@click.option("--host", default=None, help="With --serve: address to listen on (default 0.0.0.0).")
@click.option("--port", type=int, default=None, help="With --serve: port (default 8080).")
@click.option("--api_key", default=None, help="With --serve: require this API key (or $VIEWFINDER_API_KEY).")
@click.option("--data_dir", default=None, help="With --serve: folder for PP-ShiTuV2 indexes (default ./.index).")
@click.version_option(package_name="viewfinder")
@click.pass_context
@guarded
def cli(ctx: click.Context, pipeline: str | None, inputs: tuple[str, ...], device: str | None,
        save_path: str | None, topk: int | None, threshold: str | None, index_dir: str | None,
        det_threshold: float | None, rec_threshold: float | None, rec_topk: int | None,
        single_mainbody: bool, max_det_results: int | None, mainbody_order: str | None, batch_size: int | None, use_hpip: bool, hpi_config: str | None,
        cpu_threads: int | None, precision: str | None, get_pipeline_config: str | None, config_save_path: str | None,
        module_config: str | None, overrides: tuple[str, ...], get_module_config: str | None, random_init: bool,
        **serve_options: Any) -> None:
    """viewfinder: image classification, multi-label tagging and image recognition."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand is not None:
        return
    if get_pipeline_config:
        _write_pipeline_config(get_pipeline_config, _config_save_path(config_save_path, save_path))
        return
    if config_save_path:
        raise ConfigError("--config_save_path only applies with --get_pipeline_config")
    if get_module_config:
        _write_module_config(get_module_config, save_path)
        return
    if module_config:
        _run_module(module_config, overrides, pipeline, inputs)
        return
    if overrides:
        raise ConfigError("-o KEY=VALUE needs -c MODULE.yaml (a PaddleX module config)")
    hpi = hpi_config_from_json(hpi_config)
    if serve_options.pop("serve"):
        from .commands.serve import run_server

        run_server(pipeline, device=device, use_hpip=use_hpip, random_init=random_init, hpi_config=hpi,
                   **{key: serve_options[key] for key in ("host", "port", "api_key", "data_dir")})
        return
    if not pipeline:
        click.echo(ctx.get_help())
        sys.exit(EXIT_USAGE)
    create_kwargs: dict[str, Any] = {}
    if cpu_threads:
        create_kwargs["cpu_threads"] = cpu_threads
    if precision:
        create_kwargs["precision"] = precision.lower()
    if random_init:
        create_kwargs["pretrained"] = False
    if hpi is not None:
        create_kwargs["hpi_config"] = hpi
    # keyed by flag name, which is the predict() parameter's name; an absent --use_hpip leaves the YAML's
    _run_pipeline(pipeline, inputs, device, save_path, use_hpip or None,
                  {"topk": topk, "threshold": threshold, "batch_size": batch_size, "index": index_dir,
                   "det_threshold": det_threshold, "rec_threshold": rec_threshold, "rec_topk": rec_topk,
                   # an absent flag leaves the YAML's value (and is not "given" to other pipelines)
                   "single_mainbody": single_mainbody or None, "max_det_results": max_det_results,
                   "mainbody_order": mainbody_order},
                  create_kwargs)


@cli.command("models")
@click.option("--task", default=None, help="Only models of this task (image_classification, ...).")
@guarded
def models_command(task: str | None) -> None:
    """List the registered model names."""
    from .models import get_spec, list_models

    for name in list_models(task):
        spec = get_spec(name)
        click.echo(f"{name:42s} {spec.task:32s} {spec.arch}")


from .commands import register_all  # noqa: E402

register_all(cli)


def main() -> None:
    cli(prog_name="viewfinder")


if __name__ == "__main__":
    main()
