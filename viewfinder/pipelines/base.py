"""What every pipeline shares: config, device and the predict entry points."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..engines.paddle_options import hpip_switch, resolve_runtime
from ..io import DecodedImage, decode_image
from ..models import create_model
from ..models.predictor import BasePredictor
from ..predict_params import reject_unknown_params
from ..results import BaseResult

#: ``create_pipeline`` keywords every pipeline takes (besides ``device``, ``use_hpip`` and
#: PaddleX's ``enable_hpi`` / ``pp_option`` / ``hpi_config``); they reach every model
MODEL_OPTIONS = ("pretrained", "cpu_threads", "engine", "fp16", "precision", "calibration")
#: PaddleX's runtime options, as ``create_pipeline`` keywords or top-level config keys
RUNTIME_OPTIONS = ("enable_hpi", "pp_option", "hpi_config")


class BasePipeline:
    """A thin composition of models built from a PaddleX-shaped config."""

    name: str = ""
    #: The keyword parameters ``predict()`` takes; any other raises ConfigError. The CLI
    #: derives which of its flags apply to the pipeline from it.
    predict_params: tuple[str, ...] = ()
    #: ``create_pipeline`` keywords of this pipeline beyond ``MODEL_OPTIONS`` (PP-ShiTuV2: ``index_dir``)
    create_params: tuple[str, ...] = ()

    def __init__(self, config: dict[str, Any], device: str | None = None, use_hpip: bool | None = None,
                 **kwargs: Any) -> None:
        # An unknown keyword would otherwise be dropped without a word (PaddleX passes **kwargs on).
        reject_unknown_params(f"create_pipeline({self.name!r})", kwargs,
                              (*MODEL_OPTIONS, *RUNTIME_OPTIONS, *self.create_params))
        self.config = config
        # Arguments win over the config's top-level keys (PaddleX's precedence).
        hpip = hpip_switch(use_hpip, kwargs.pop("enable_hpi", None), "create_pipeline")
        if hpip is None:
            hpip = hpip_switch(config.get("use_hpip"), config.get("enable_hpi"), "pipeline config")
        pp_option = kwargs.pop("pp_option", None)
        hpi_config = kwargs.pop("hpi_config", None)
        runtime = resolve_runtime(
            device=device if device is not None else config.get("device"),
            engine=kwargs.get("engine"), cpu_threads=kwargs.get("cpu_threads"), fp16=bool(kwargs.get("fp16")),
            use_hpip=hpip, pp_option=pp_option if pp_option is not None else config.get("pp_option"),
            hpi_config=hpi_config if hpi_config is not None else config.get("hpi_config"),
        )
        self.device = runtime.device
        self.use_hpip = runtime.use_hpip
        self.options = {**kwargs, "engine": runtime.engine, "cpu_threads": runtime.cpu_threads,
                        "fp16": runtime.fp16 or None}
        self.options = {k: v for k, v in self.options.items() if v is not None}

    def _create_submodel(self, entry: dict[str, Any], **params: Any) -> BasePredictor:
        values = {k: v for k, v in entry.items() if k not in ("module_name", "spec") and v is not None}
        values.update({k: v for k, v in params.items() if v is not None})
        for key in MODEL_OPTIONS:
            if key in self.options and key not in values:
                values[key] = self.options[key]
        if "calibration" in values:
            values["calibration"] = self.config_path(values["calibration"])
        if self.use_hpip:  # PaddleX's high-performance inference (ONNX Runtime unless hpi_config says otherwise)
            values["engine"] = self.options["engine"]
        return create_model(device=self.device, **values)

    def config_path(self, value: Any) -> Any:
        """A relative path from a YAML file, resolved against the file's folder when it exists there."""
        if isinstance(value, str) and self.config.get("_config_dir") and not Path(value).is_absolute():
            candidate = Path(self.config["_config_dir"]) / value
            if candidate.exists() and not Path(value).exists():
                return str(candidate)
        return value

    def predict(self, input: Any, **params: Any) -> Iterator[BaseResult]:
        raise NotImplementedError

    def decode_input(self, source: Any) -> DecodedImage:
        """Decode one image input (bytes, a file path, a PIL image or an array) as ``predict()`` would.

        ``predict()`` takes the result as an input without decoding it again, so a caller (the
        service) can decode, and refuse an undecodable image, before queueing it for inference.
        Raises :class:`~viewfinder.errors.InputError` for a bad image.
        """
        return decode_image(source)

    def check_predict_params(self, params: dict[str, Any]) -> None:
        """Refuse a ``predict()`` keyword the pipeline does not declare in ``predict_params``."""
        reject_unknown_params(f"{self.name}.predict()", params, self.predict_params)

    def __call__(self, input: Any, **kwargs: Any) -> Iterator[BaseResult]:
        return self.predict(input, **kwargs)
