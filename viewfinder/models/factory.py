"""``create_model``: a name (or saved model dir) -> a ready predictor."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..device import resolve_device
from ..engines.export import weights_hash
from ..engines.paddle_options import resolve_runtime
from ..engines.select import build_engine, normalize_engine
from ..engines.torch_engine import set_cpu_threads
from ..errors import ConfigError
from .classification import ClassificationPredictor
from .detection import DetectionPredictor
from .feature import FEATURE_TASK, FeaturePredictor
from .loader import load_network
from .multilabel import MultiLabelPredictor
from .predictor import BasePredictor
from .precision import apply_precision, check_int8_request, normalize_precision
from .preprocess import Preprocessor

#: task -> the predictor that runs it (static, like Ultralytics' task map: the zoo declares
#: specs only, so a new task is one line here plus its predictor module)
PREDICTORS: dict[str, type[BasePredictor]] = {
    "image_classification": ClassificationPredictor,
    "image_multilabel_classification": MultiLabelPredictor,
    FEATURE_TASK: FeaturePredictor,
    "mainbody_detection": DetectionPredictor,
}


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
    use_hpip: bool | None = None,
    enable_hpi: bool | None = None,
    pp_option: Any = None,
    hpi_config: dict[str, Any] | None = None,
    precision: str | None = None,
    calibration: str | Path | list[str | Path] | None = None,
    **params: Any,
) -> BasePredictor:
    """Build a predictor for ``model_name`` (a PaddleX model name) or a saved ``model_dir``.

    Weights: ``weights`` (a local file: .safetensors, .pth, .pdparams; or one of the
    model's sources by name: ``"paddlex"``, ``"timm"``, ``"torchvision"``) wins, then
    ``model_dir``, then the model's default sources (PaddleX's file where a converter
    exists; cache, then download); ``pretrained=False`` gives random initialisation. Extra
    keyword arguments are inference parameters such as ``topk``.

    Engine: ``engine=None`` means ``$VIEWFINDER_ENGINE`` or ``"auto"``: ONNX Runtime on CPU
    (exported once into ``$VIEWFINDER_HOME/onnx/`` and validated against torch), torch on a
    GPU and for random weights; ``"torch"`` / ``"onnxruntime"`` force one. ``fp16`` (CUDA
    autocast) and ``torch_compile`` apply to the torch engine.

    ``precision``: "fp32" (default; None means ``$VIEWFINDER_PRECISION`` or fp32), "int8" or
    "auto" (int8 where the CPU has VNNI/AMX and the int8 model passed its accuracy check against
    fp32); int8 runs on ONNX Runtime on the CPU, calibrated on ``calibration`` (a folder or a list
    of photos; default ``$VIEWFINDER_CALIBRATION`` or ``$VIEWFINDER_HOME/calibration``). See
    :mod:`viewfinder.models.precision`.

    ``task`` asks for another task's predictor when the model can serve it, e.g.
    ``task="image_feature"`` turns any classifier into a feature extractor (pooled features).
    Without it, a ``model_dir``'s ``config.yaml`` ``task`` (the task it was trained for) is used.

    PaddleX's ``use_hpip`` (alias ``enable_hpi``), ``hpi_config`` and ``pp_option`` are mapped onto
    the above, or refused with the reason (:mod:`viewfinder.engines.paddle_options`).
    """
    if model_name is None and model_dir is None:
        raise ConfigError("create_model needs a model_name or a model_dir")
    runtime = resolve_runtime(device=device, engine=engine, cpu_threads=cpu_threads, fp16=fp16, use_hpip=use_hpip,
                              enable_hpi=enable_hpi, pp_option=pp_option, hpi_config=hpi_config)
    device, engine, cpu_threads, fp16 = runtime.device, runtime.engine, runtime.cpu_threads, runtime.fp16
    torch_device = resolve_device(device)
    set_cpu_threads(cpu_threads)
    precision = normalize_precision(precision)
    check_int8_request(precision, normalize_engine(engine), torch_device)
    if precision in ("int8", "bf16") and normalize_engine(engine) == "auto":
        engine = "onnxruntime"  # both start from the ONNX export (auto would pick torch for random weights)
    network = load_network(model_name, model_dir, weights, pretrained)
    spec = network.spec

    predictor_task = task or network.task
    predictor_cls = PREDICTORS.get(predictor_task)
    if predictor_cls is None:
        raise ConfigError(f"{spec.name}: task {predictor_task!r} has no predictor yet")
    module = predictor_cls.adapt_module(spec, network.module)  # e.g. a classifier serving as a feature extractor
    # Hashed here, before any engine converts or moves the weights, so every engine and
    # device reports the same digest for the same weights; the ONNX cache reuses it.
    digest = weights_hash(module) if predictor_cls.records_weights else None
    inference_engine = build_engine(
        module, torch_device, spec.name, network.preprocess.input_size, engine=engine, cpu_threads=cpu_threads,
        random_weights=network.random_weights, fp16=fp16, compile=torch_compile, weights_digest=digest,
        identity={"arch": spec.arch, "build_kwargs": spec.build_kwargs, "num_classes": network.num_classes,
                  **({"task": predictor_task} if predictor_task != spec.task else {})},
    )
    if cpu_threads and "decode_threads" not in params:
        params["decode_threads"] = cpu_threads  # "N threads" caps decoding too, as PaddleX's figure does

    def build(engine_: Any, precision_: str = "fp32", int8_check: dict[str, Any] | None = None) -> BasePredictor:
        return predictor_cls(
            spec,
            engine_,
            Preprocessor(network.preprocess),
            network.labels,
            batch_size=batch_size,
            num_classes=network.num_classes,
            device=torch_device,
            weights_sha256=digest,
            precision=precision_,
            int8_check=int8_check,
            **{**network.postprocess, **params},
        )

    return apply_precision(build(inference_engine), precision, calibration, build)


def create_feature_model(
    model_name: str | None = None,
    model_dir: str | Path | None = None,
    **kwargs: Any,
) -> FeaturePredictor:
    """A feature extractor from any feature or classification model name (same arguments as ``create_model``)."""
    predictor = create_model(model_name, model_dir=model_dir, task=FEATURE_TASK, **kwargs)
    assert isinstance(predictor, FeaturePredictor)
    return predictor
