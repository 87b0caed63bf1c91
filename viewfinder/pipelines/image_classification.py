"""``image_classification``: one classification model over any input."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..results import BaseResult
from .base import BasePipeline
from .config import submodule


class ImageClassificationPipeline(BasePipeline):
    name = "image_classification"

    def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        entry = submodule(config, "ImageClassification")
        self.topk = entry.get("topk", 5)
        self.model = self._create_submodel(entry)

    def predict(self, input: Any, batch_size: int | None = None, topk: int | None = None,
                **kwargs: Any) -> Iterator[BaseResult]:
        return self.model.predict(input, batch_size=batch_size, topk=topk if topk is not None else self.topk)
