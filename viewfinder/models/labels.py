"""Label lists shipped with the package (ImageNet-1k, COCO-80)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def load_labels(name: str) -> tuple[str, ...]:
    """``imagenet1k`` -> the 1000 standard names in class-index order ("tench, Tinca tinca", ...)."""
    text = (resources.files("viewfinder.models") / "labels" / f"{name}.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)
