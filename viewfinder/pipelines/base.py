"""What every pipeline shares: config, device and the predict entry points."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..io import DecodedImage, decode_image
from ..models import create_model
from ..models.predictor import BasePredictor
from ..predict_params import reject_unknown_params
from ..results import BaseResult


class BasePipeline:
    """A thin composition of models built from a PaddleX-shaped config."""

    name: str = ""
    #: The keyword parameters ``predict()`` takes; any other raises ConfigError. The CLI
    #: derives which of its flags apply to the pipeline from it.
    predict_params: tuple[str, ...] = ()

    def __init__(self, config: dict[str, Any], device: str | None = None, use_hpip: bool = False,
                 **kwargs: Any) -> None:
        self.config = config
        self.device = device
        self.use_hpip = use_hpip
        self.options = kwargs

    def _create_submodel(self, entry: dict[str, Any], **params: Any) -> BasePredictor:
        values = {k: v for k, v in entry.items() if k not in ("module_name", "spec") and v is not None}
        values.update({k: v for k, v in params.items() if v is not None})
        for key in ("pretrained", "cpu_threads", "engine", "precision", "calibration"):
            if key in self.options and key not in values:
                values[key] = self.options[key]
        if "calibration" in values:
            values["calibration"] = self.config_path(values["calibration"])
        if self.use_hpip:  # PaddleX's high-performance inference: ONNX Runtime here
            values["engine"] = "onnxruntime"
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
