"""``viewfinder -c MODULE.yaml -o Global.mode=MODE ...``: PaddleX's ``python main.py`` entry point.

Each ``Global.mode`` is mapped onto the code behind our own sub-commands, nothing re-done here:

* ``check_dataset``: ``CheckDataset.convert`` / ``split`` then the check (``datasets``);
* ``train``: ``Train.*`` -> :class:`~viewfinder.training.TrainConfig` -> ``training.train``;
* ``evaluate``: ``Evaluate.weight_path`` -> ``training.evaluate``;
* ``export``: ``Export.weight_path`` -> a model dir + ``inference.yml`` (+ ONNX) in ``<output>/inference``;
* ``predict``: ``Predict.model_dir`` / ``input`` -> ``create_model(...).predict`` (print + ``save_all``).

PaddleX's files come out where PaddleX writes them (``check_dataset_result.json``,
``train_result.json``, ``evaluate_result.json``, ``best_model/inference/``); a mode that fails
writes ``<output>/<mode>_result.json`` = ``{"done_flag": false, "err_type", "err_msg"}``.
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, TrainingInterrupted, ViewfinderError
from ..models.model_dir import CONFIG_FILE, WEIGHTS_FILE
from .paddlex_config import MODES, PADDLEX_PRETRAINED, TRAIN_EXTENSIONS, Module, get_dotted, load_config, module_of

#: the files PaddleX writes per mode; a failure writes the same name with done_flag false
RESULT_FILES = {"check_dataset": "check_dataset_result.json", "train": "train_result.json",
                "evaluate": "evaluate_result.json", "export": "export_result.json"}
#: Predict.kernel_option.run_mode values that name one of our engines; PaddleX's own mean "the default"
#: our TrainConfig names -> the PaddleX keys that set them (error messages name the key the user wrote)
PADDLEX_NAMES = {"epochs": "Train.epochs_iters", "warmup_epochs": "Train.warmup_steps",
                 "learning_rate": "Train.learning_rate", "batch_size": "Train.batch_size",
                 "eval_interval": "Train.eval_interval"}
RUN_MODES = {"paddle": None, "auto": "auto", "torch": "torch", "onnxruntime": "onnxruntime"}
#: subfolder of Global.output that export mode writes (PaddleX writes into Global.output itself, where a
#: training run's config.yaml would collide with the model dir's)
EXPORT_DIR = "inference"


def note(message: str) -> None:
    """A key accepted but not (fully) honoured, or a substitution: one line on stderr."""
    click.echo(f"viewfinder: note: {message}", err=True)


@dataclass
class ModuleRun:
    config: dict[str, Any]
    model: str
    module: Module
    mode: str
    output: Path
    device: str | None

    def get(self, key: str, default: Any = None) -> Any:
        return get_dotted(self.config, key, default)


def parse_device(value: Any) -> str | None:
    """PaddleX's ``gpu:0,1,2,3`` -> ``gpu:0`` with a note: viewfinder runs on one device."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    match = re.fullmatch(r"(\w+):(\d+(?:\s*,\s*\d+)+)", text)
    if match:
        first = f"{match.group(1)}:{match.group(2).split(',')[0].strip()}"
        note(f"Global.device {text}: viewfinder runs on one device (no multi-GPU training); using {first}")
        return first
    return text


@dataclass(frozen=True)
class WeightChoice:
    """What a PaddleX weight path means here: the default pretrained weights, none, a file or a model dir."""

    pretrained: bool = True
    weights: str | None = None
    model_dir: str | None = None


def _is_model_dir(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def resolve_weight_path(value: Any, model: str, key: str) -> WeightChoice:
    """Map a PaddleX weight path (``Train.pretrain_weight_path``, ``Evaluate/Export.weight_path``).

    * null: no weights (train from scratch);
    * PaddleX's official ``<MODEL>_pretrained.pdparams`` URL: the model's pretrained weights as
      viewfinder resolves them (cache, then download);
    * ``best_model/best_model.pdparams`` (the docs' default) when ``best_model/`` is our model dir:
      that model dir (its weights are ``model.safetensors`` beside ``config.yaml``);
    * a model dir, its ``model.safetensors``, or a weight file (.pdparams, .safetensors, .pth).
    """
    if value is None or str(value).strip() == "":
        return WeightChoice(pretrained=False)
    text = str(value).strip()
    if re.match(r"^https?://", text):
        if text.rsplit("/", 1)[-1] == f"{model}_pretrained.pdparams":
            return WeightChoice()
        raise ConfigError(f"{key} {text}: viewfinder downloads only a model's own pretrained weights "
                          f"({PADDLEX_PRETRAINED}{model}_pretrained.pdparams); download the file and give its path")
    path = Path(text)
    if path.is_dir():
        if not _is_model_dir(path):
            raise ConfigError(f"{key} {text}: the folder is not a viewfinder model dir ({CONFIG_FILE} + {WEIGHTS_FILE})")
        return WeightChoice(model_dir=text)
    if path.is_file():
        if path.name == WEIGHTS_FILE and _is_model_dir(path.parent):
            return WeightChoice(model_dir=str(path.parent))  # with its labels, class count and preprocessing
        return WeightChoice(weights=text)
    if _is_model_dir(path.parent):
        return WeightChoice(model_dir=str(path.parent))  # the docs' output/best_model/best_model.pdparams
    raise ConfigError(f"{key} {text} does not exist (train first: -o Global.mode=train)")


def write_failure(output: Path, mode: str, exc: BaseException) -> None:
    path = output / RESULT_FILES[mode]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"done_flag": False, "err_type": type(exc).__name__, "err_msg": str(exc)},
                               indent=4, ensure_ascii=False), encoding="utf-8")


def _note_intervals(run: ModuleRun, section: str) -> None:
    interval = run.get(f"{section}.log_interval")
    if interval not in (None, 1):
        note(f"{section}.log_interval {interval} is not used: viewfinder shows a progress bar and logs once per epoch")


# ---------------------------------------------------------------------------------- modes


def check_mode(run: ModuleRun) -> int:
    from ..datasets import SPLITS, check_dataset, convert_dataset, split_dataset

    dataset_type = str(run.module.dataset_type)
    dataset_dir = _dataset_dir(run)
    if run.get("CheckDataset.convert.enable"):
        source = run.get("CheckDataset.convert.src_dataset_type")
        if not source:
            raise ConfigError("CheckDataset.convert.enable needs CheckDataset.convert.src_dataset_type "
                              "(LabelMe or COCO)")
        convert_dataset(dataset_dir, dataset_type, source)
        click.echo("Convert dataset successfully !")
    if run.get("CheckDataset.split.enable"):
        splits = SPLITS[dataset_type]
        for key in ("val_percent", "gallery_percent", "query_percent"):
            if key[:-8] not in splits and run.get(f"CheckDataset.split.{key}") is not None:
                note(f"CheckDataset.split.{key} does not apply to {dataset_type} (splits: {', '.join(splits)})")
        split_dataset(dataset_dir, dataset_type, {s: run.get(f"CheckDataset.split.{s}_percent") for s in splits})
        click.echo("Split dataset successfully !")
    check_dataset(dataset_dir, dataset_type, run.output)
    click.echo("Check dataset passed !")
    click.echo(f"results in {run.output / RESULT_FILES['check_dataset']}")
    return 0


def _dataset_dir(run: ModuleRun) -> str:
    dataset_dir = run.get("Global.dataset_dir")
    if not dataset_dir:
        raise ConfigError(f"Global.mode={run.mode} needs Global.dataset_dir")
    return str(dataset_dir)


def _resume_checkpoint(value: Any) -> str | None:
    """``Train.resume_path``: our checkpoint file, or PaddleX's ``epoch_N/epoch_N.pdparams`` -> ``epoch_N/checkpoint.pt``."""
    if value in (None, ""):
        return None
    path = Path(str(value))
    candidates = [path] if path.suffix == ".pt" else []
    folder = path if path.is_dir() else path.parent
    candidates += [folder / "checkpoint.pt", folder / "last_checkpoint.pt"]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(f"Train.resume_path {value}: no viewfinder checkpoint there (epoch_N/checkpoint.pt or "
                      "last_checkpoint.pt in the training output)")


def train_config(run: ModuleRun) -> Any:
    """The :class:`TrainConfig` a module config asks for (PaddleX keys mapped, extensions passed through)."""
    from ..training import TrainConfig

    values: dict[str, Any] = {"model": run.model, "dataset_dir": _dataset_dir(run),
                              "dataset_type": run.module.dataset_type, "output": str(run.output), "device": run.device}
    for ours, theirs in PADDLEX_NAMES.items():
        value = run.get(theirs)
        if value is not None:
            values[ours] = value  # PaddleX's warmup_steps are epochs for its classification recipes
    if "Train" in run.config and "pretrain_weight_path" in (run.config["Train"] or {}):
        choice = resolve_weight_path(run.get("Train.pretrain_weight_path"), run.model, "Train.pretrain_weight_path")
        values.update(pretrained=choice.pretrained, weights=choice.weights, model_dir=choice.model_dir)
    for key in TRAIN_EXTENSIONS:
        value = run.get(key)
        if value is not None:
            values[key.split(".", 1)[1]] = value
    try:
        config = TrainConfig.from_dict(values)
        config.resolved()  # checks values now, before any dataset or model loads
    except ViewfinderError as exc:
        message = str(exc)
        for ours, theirs in PADDLEX_NAMES.items():  # name the key the user wrote
            message = re.sub(rf"\b{ours}\b", theirs, message)
        raise ConfigError(message) from None
    return config


def _note_num_classes(run: ModuleRun) -> None:
    """PaddleX sizes the head from Train.num_classes; we size it from the dataset, and say so when they differ."""
    from ..datasets import REC, load_dataset

    given = run.get("Train.num_classes")
    if given is None:
        return
    dataset = load_dataset(_dataset_dir(run), str(run.module.dataset_type))
    actual = (len({s.label for s in dataset.splits["train"]}) if dataset.dataset_type == REC
              else dataset.num_classes)
    if given != actual:
        note(f"Train.num_classes {given} is not used: the head is sized from the dataset ({actual} "
             f"{'identities in train.txt' if dataset.dataset_type == REC else 'classes in label.txt'})")


def train_mode(run: ModuleRun) -> int:
    from ..training import train

    config = train_config(run)
    resume = _resume_checkpoint(run.get("Train.resume_path"))
    _note_num_classes(run)
    _note_intervals(run, "Train")
    save_interval = run.get("Train.save_interval")
    if save_interval not in (None, 1):
        note(f"Train.save_interval {save_interval} is not used: a checkpoint is written after every epoch "
             f"(the last {config.keep_checkpoints} kept; -o Train.keep_checkpoints=N)")
    result = train(config, resume=resume)
    best = result["models"]["best"]
    score = "(not evaluated)" if best["score"] is None else f"{best['score']:.5f}"
    click.echo(f"best {result['primary_metric']} {score} at epoch {best['epoch']}; "
               f"weights {run.output / best['model_dir']}, inference model {run.output / best['inference_dir']}")
    return 0


def evaluate_mode(run: ModuleRun) -> int:
    from ..training import evaluate

    _note_intervals(run, "Evaluate")
    key = "Evaluate.weight_path"
    choice = resolve_weight_path(run.get(key), run.model, key)
    if not choice.pretrained:
        raise ConfigError(f"Global.mode=evaluate needs {key} (e.g. output/best_model/best_model.pdparams)")
    metrics = evaluate(_dataset_dir(run), str(run.module.dataset_type), model=None if choice.model_dir else run.model,
                       model_dir=choice.model_dir, weights=choice.weights, output=run.output, device=run.device)
    # PaddleX reads its metrics from this log line of PaddleClas's evaluation
    click.echo("[Eval][Epoch 0][Avg] " + ", ".join(f"{name}: {value:.5f}" for name, value in metrics.items()))
    click.echo(f"results in {run.output / RESULT_FILES['evaluate']}")
    return 0


def export_mode(run: ModuleRun) -> int:
    from ..models import create_model
    from ..models.model_dir import write_model_dir
    from ..training.export import try_export_onnx
    from ..training.inference_dir import write_inference_dir

    key = "Export.weight_path"
    choice = resolve_weight_path(run.get(key), run.model, key)
    if not choice.pretrained:
        raise ConfigError(f"Global.mode=export needs {key} (e.g. output/best_model/best_model.pdparams)")
    target = run.output / EXPORT_DIR
    if choice.model_dir and Path(choice.model_dir).resolve() == target.resolve():
        raise ConfigError(f"{key} {choice.model_dir} is the export folder itself; set another -o Global.output")
    if target.exists():
        shutil.rmtree(target)  # files of an earlier export (another model's ONNX) must not survive
    if choice.model_dir:
        write_inference_dir(choice.model_dir, target)
    else:
        write_model_dir(create_model(run.model, weights=choice.weights, device="cpu", engine="torch"), target)
        write_inference_dir(target, target)
    if not (target / "inference.onnx").is_file():
        try_export_onnx(target)
    click.echo(f"exported {run.model} to {target} (inference.yml, config.yaml, model.safetensors"
               f"{', inference.onnx' if (target / 'inference.onnx').is_file() else ''}); "
               f"predict with -o Predict.model_dir={target}")
    return 0


def predict_mode(run: ModuleRun) -> int:
    from ..models import create_model

    source = run.get("Predict.input")
    if source is None:
        raise ConfigError("Global.mode=predict needs Predict.input (an image, folder or URL)")
    model_dir = run.get("Predict.model_dir")
    if model_dir is not None and not Path(str(model_dir)).is_dir():
        raise ConfigError(f"Predict.model_dir {model_dir} does not exist (train first, or "
                          f"-o Predict.model_dir=null for {run.model}'s pretrained weights)")
    run_mode = run.get("Predict.kernel_option.run_mode")
    engine = RUN_MODES.get(str(run_mode)) if run_mode is not None else None
    if run_mode is not None and str(run_mode) not in RUN_MODES:
        note(f"Predict.kernel_option.run_mode {run_mode} is Paddle Inference's; using viewfinder's default engine")
    batch_size = run.get("Predict.batch_size", 1)
    predictor = create_model(None if model_dir else run.model, model_dir=model_dir, device=run.device,
                             batch_size=int(batch_size), engine=engine)
    failures = 0
    for result in predictor.predict(source):
        if not result.ok:
            failures += 1
            click.echo(f"viewfinder: error: {result['error']}", err=True)
            continue
        result.print(json_format=False)  # what PaddleX's main.py predict prints
        result.save_all(run.output)
    return failures


RUNNERS: dict[str, Callable[[ModuleRun], int]] = {
    "check_dataset": check_mode, "train": train_mode, "evaluate": evaluate_mode, "export": export_mode,
    "predict": predict_mode,
}


def run_module(config_path: str, overrides: Sequence[str]) -> int:
    """Run the module config at ``config_path`` (with ``-o`` overrides); returns the number of failed inputs."""
    config, notes = load_config(config_path, overrides)
    for message in notes:
        note(message)
    model = get_dotted(config, "Global.model")
    if not model:
        raise ConfigError("Global.model is required (a model name such as PP-ShiTuV2_rec)")
    module = module_of(str(model))
    mode = get_dotted(config, "Global.mode")
    if mode not in MODES:
        raise ConfigError(f"Global.mode must be one of {', '.join(MODES)}, got {mode!r}")
    if module.dataset_type is None and mode != "predict":
        raise ConfigError(f"Global.mode={mode}: viewfinder cannot check datasets for, train, evaluate or export "
                          f"{module.name} models ({model}); only Global.mode=predict runs for this module")
    run = ModuleRun(config, str(model), module, str(mode), Path(str(get_dotted(config, "Global.output", "output"))),
                    parse_device(get_dotted(config, "Global.device")))
    try:
        return RUNNERS[run.mode](run)
    except TrainingInterrupted:
        raise  # train_result.json keeps the interrupted run's state; --resume-style continuation needs it
    except ViewfinderError as exc:
        if run.mode in RESULT_FILES:
            write_failure(run.output, run.mode, exc)
        raise
