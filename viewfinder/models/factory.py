"""``create_model``: a name (or saved model dir) -> a ready predictor."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..device import resolve_device
from ..engines.export import weights_hash
from ..engines.select import build_engine
from ..engines.torch_engine import set_cpu_threads
from ..errors import ConfigError, ViewfinderError
from .classification import ClassificationPredictor
from .labels import load_labels
from .model_dir import read_model_dir
from .predictor import BasePredictor
from .preprocess import PreprocessConfig, Preprocessor
from .registry import get_spec
from .weights import load_weights_file, resolve_default_weights

log = logging.getLogger(__name__)

_PREDICTORS: dict[str, type[BasePredictor]] = {
    "image_classification": ClassificationPredictor,
}


def register_predictor(task: str, predictor: type[BasePredictor]) -> None:
    _PREDICTORS[task] = predictor


def create_model(
    model_name: str | None = None,
    model_dir: str | Path | None = None,
    weights: str | Path | None = None,
    pretrained: bool = True,
    device: str | None = None,
    batch_size: int = 1,
    cpu_threads: int | None = None,
    engine: str | None = None,
    fp16: bool = False,
    torch_compile: bool = False,
    task: str | None = None,
    **params: Any,
) -> BasePredictor:
    """Build a predictor for ``model_name`` (a PaddleX model name) or a saved ``model_dir``.

    Weights: ``weights`` (a local file: .safetensors, .pth, .pdparams) wins, then
    ``model_dir``, then the model's default sources (cache, then download);
    ``pretrained=False`` gives random initialisation. Extra keyword arguments are
    inference parameters such as ``topk``.

    Engine: ``engine=None`` means ``$VIEWFINDER_ENGINE`` or ``"auto"``: ONNX Runtime on CPU
    (exported once into ``$VIEWFINDER_HOME/onnx/`` and validated against torch), torch on a
    GPU and for random weights; ``"torch"`` / ``"onnxruntime"`` force one. ``fp16`` (CUDA
    autocast) and ``torch_compile`` apply to the torch engine.

    ``task`` asks for another task's predictor when the model can serve it, e.g.
    ``task="image_feature"`` turns any classifier into a feature extractor (pooled features).
    Without it, a ``model_dir``'s ``config.yaml`` ``task`` (the task it was trained for) is used.
    """
    if model_name is None and model_dir is None:
        raise ConfigError("create_model needs a model_name or a model_dir")
    dir_config = read_model_dir(model_dir) if model_dir is not None else None
    if dir_config is not None and model_name is not None and model_name != dir_config["model_name"]:
        log.info("model_dir %s holds %s; using it for %s", model_dir, dir_config["model_name"], model_name)
    spec = get_spec(dir_config["model_name"] if dir_config else str(model_name))
    torch_device = resolve_device(device)
    set_cpu_threads(cpu_threads)

    num_classes = int(dir_config.get("num_classes", spec.num_classes)) if dir_config else spec.num_classes
    try:
        module = spec.builder(num_classes=num_classes, **spec.build_kwargs)
    except ViewfinderError:
        raise
    except Exception as exc:  # a timm build failure is our bug, but say which model
        raise ViewfinderError(f"building {spec.name} failed: {exc}") from exc

    if weights is not None:
        load_weights_file(module, Path(weights), spec)
    elif dir_config is not None:
        load_weights_file(module, Path(dir_config["weights_path"]), spec)
    elif pretrained:
        resolve_default_weights(spec, module)

    if dir_config and dir_config.get("preprocess"):
        preprocess_config = PreprocessConfig.from_dict(dir_config["preprocess"])
    else:
        preprocess_config = spec.preprocess
    if dir_config and dir_config.get("labels"):
        labels = list(dir_config["labels"])
    else:
        labels = list(load_labels(spec.labels)) if spec.labels else None
    defaults = dict(dir_config.get("postprocess") or {}) if dir_config else {}

    # A fine-tuned model dir records the task it was trained for (a classifier fine-tuned for
    # recognition or multi-label keeps its zoo architecture's name but not its task).
    predictor_task = task or (str(dir_config["task"]) if dir_config and dir_config.get("task") else spec.task)
    predictor_cls = _PREDICTORS.get(predictor_task)
    if predictor_cls is None:
        raise ConfigError(f"{spec.name}: task {predictor_task!r} has no predictor yet")
    adapt = getattr(predictor_cls, "adapt_module", None)
    if adapt is not None:  # e.g. a classifier serving as a feature extractor
        module = adapt(spec, module)
    # Hashed here, before any engine converts or moves the weights, so every engine and
    # device reports the same digest for the same weights; the ONNX cache reuses it.
    digest = weights_hash(module) if hasattr(predictor_cls, "weights_sha256") else None
    inference_engine = build_engine(
        module, torch_device, spec.name, preprocess_config.input_size, engine=engine, cpu_threads=cpu_threads,
        random_weights=weights is None and dir_config is None and not pretrained, fp16=fp16,
        compile=torch_compile, weights_digest=digest,
        identity={"arch": spec.arch, "build_kwargs": spec.build_kwargs, "num_classes": num_classes,
                  **({"task": predictor_task} if predictor_task != spec.task else {})},
    )
    if cpu_threads and "decode_threads" not in params:
        params["decode_threads"] = cpu_threads  # "N threads" caps decoding too, as PaddleX's figure does
    predictor = predictor_cls(
        spec,
        inference_engine,
        Preprocessor(preprocess_config),
        labels,
        batch_size=batch_size,
        **{**defaults, **params},
    )
    predictor.num_classes = num_classes
    predictor.device = torch_device
    if digest is not None:
        predictor.weights_sha256 = digest
    return predictor
