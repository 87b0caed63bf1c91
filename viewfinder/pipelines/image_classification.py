"""``image_classification``: one classification model over any input."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..io import DecodedImage
from ..results import BaseResult
from .base import BasePipeline
from .config import submodule


class ImageClassificationPipeline(BasePipeline):
    name = "image_classification"
    predict_params = ("batch_size", "topk")

    def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        # The YAML's topk and batch_size become the model's own, so predict() needs no copy of them.
        self.model = self._create_submodel(submodule(config, "ImageClassification"))

    @property
    def topk(self) -> int | None:
        """The topk ``predict()`` uses when given none: the YAML's, else the model's default."""
        return self.model.resolve_params({}).get("topk")

    def decode_input(self, source: Any) -> DecodedImage:
        """One input decoded as the model's ``predict()`` decodes it (see ``BasePipeline.decode_input``)."""
        return self.model.decode_input(source)

    def predict(self, input: Any, **params: Any) -> Iterator[BaseResult]:
        """Lazily yield a :class:`~viewfinder.results.TopkResult` per image.

        ``batch_size`` and ``topk`` override the YAML's values, which override the model's.
        """
        self.check_predict_params(params)
        return self.model.predict(input, **params)
