"""Resolve and load pretrained weights.

Order: an explicit ``weights=`` file or source name; then (done by the factory) a saved
``model_dir``; then the model's default sources, in order (PaddleX's ``.pdparams`` first
where a converter exists, then e.g. torchvision's or timm's published weights; a later
one is used only when an earlier one cannot be had, with a warning). A url source's file
already in ``$VIEWFINDER_HOME/weights/`` under its original name is used without any
network, otherwise it is downloaded once (sha256-checked where the digest is known, with a
progress bar). With no network and no cached file the error says which file to put where.
``VIEWFINDER_OFFLINE=1`` forbids any network access. ``weights="paddlex"`` / ``"timm"`` /
``"torchvision"`` picks one source by name (:attr:`WeightSource.name`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import WeightsError, WeightsNotFoundError
from ..paths import weights_dir
from .registry import SOURCE_NAMES, ModelSpec, WeightSource

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30.0


def offline() -> bool:
    return os.environ.get("VIEWFINDER_OFFLINE", "").lower() in ("1", "true", "yes")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_sha(path: Path, expected: str | None, origin: str) -> None:
    if not expected:
        return
    actual = sha256_of(path)
    if not actual.startswith(expected.lower()):
        raise WeightsError(f"{origin}: sha256 {actual[:16]}... does not match the expected {expected}...")


def download(url: str, destination: Path, sha256: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``destination`` atomically (temp file + rename) with a progress bar."""
    from tqdm import tqdm

    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=destination.name + ".", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=None) as bar:
                while block := response.read(1 << 16):
                    out.write(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        _check_sha(temp, sha256, url)
        os.replace(temp, destination)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return destination


def _from_url_source(source: WeightSource) -> Path:
    cached = weights_dir() / str(source.filename)
    if cached.is_file():
        return cached
    if offline():
        raise WeightsNotFoundError("offline (VIEWFINDER_OFFLINE is set)")
    if not source.sha256:
        log.info("%s: no sha256 is known for this file; it is downloaded unchecked", source.url)
    try:
        return download(str(source.url), cached, source.sha256)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WeightsNotFoundError(f"download of {source.url} failed ({getattr(exc, 'reason', exc)})") from None


def resolve_default_weights(spec: ModelSpec, module: nn.Module) -> str:
    """Load the first available default source into ``module``; return its layout (``pdparams``, ``timm`` ...)."""
    if not spec.weight_sources:
        raise WeightsNotFoundError(
            f"no pretrained weights are known for {spec.name}: pass weights=FILE or model_dir=DIR, "
            "or pretrained=False for random initialisation"
        )
    return _load_first_available(spec, module, spec.weight_sources)


def resolve_named_weights(spec: ModelSpec, module: nn.Module, name: str) -> str:
    """Load ``spec``'s source(s) called ``name`` (``paddlex``, ``timm``, ``torchvision``); return the layout."""
    sources = tuple(source for source in spec.weight_sources if source.name == name)
    if not sources:
        known = ", ".join(dict.fromkeys(source.name for source in spec.weight_sources)) or "none"
        fit = f"no {name} weights fit {spec.name}'s network ({spec.arch or spec.name})"
        raise WeightsError(f"{fit}; its weight sources: {known}. Pass one of those, or weights=FILE")
    return _load_first_available(spec, module, sources)


def load_requested_weights(spec: ModelSpec, module: nn.Module, weights: str | Path) -> str:
    """``weights=``: a source name (a ``str``: ``paddlex``, ``timm``, ``torchvision``) or a local file."""
    if isinstance(weights, str) and weights in SOURCE_NAMES.values():
        return resolve_named_weights(spec, module, weights)
    path = Path(weights)
    if not path.exists() and not path.suffix and len(path.parts) == 1:
        raise WeightsNotFoundError(
            f"weights={str(weights)!r} is neither a weight file nor a source name "
            f"({', '.join(sorted(set(SOURCE_NAMES.values())))})"
        )
    return load_weights_file(module, path, spec)


def _load_first_available(spec: ModelSpec, module: nn.Module, sources: tuple[WeightSource, ...]) -> str:
    failures: list[str] = []
    for source in sources:
        try:
            if source.kind == "url":
                layout = load_weights_file(module, _from_url_source(source), spec, fmt=source.format)
            elif source.kind == "timm_hub":
                _load_timm_hub(module, source)
                layout = source.format
            else:
                continue
        except WeightsNotFoundError as exc:
            failures.append(f"{source.describe()}: {exc}")
            continue
        if failures:
            log.warning("%s: %s; using the %s weights %s instead", spec.name, "; ".join(failures), source.name,
                        source.describe())
        return layout
    url_sources = [s for s in sources if s.kind == "url"]
    hint = (
        f"; to use it offline put {url_sources[0].filename} into {weights_dir()}/"
        if url_sources
        else "; on an offline machine pass weights=FILE or model_dir=DIR"
    )
    raise WeightsNotFoundError(f"no weights available for {spec.name} ({'; '.join(failures)}){hint}")


def _load_timm_hub(module: nn.Module, source: WeightSource) -> None:
    if offline():
        raise WeightsNotFoundError("offline (VIEWFINDER_OFFLINE is set)")
    from timm.models import get_pretrained_cfg
    from timm.models._builder import load_pretrained

    cfg = get_pretrained_cfg(str(source.ref), allow_unregistered=False)
    if cfg is None:
        raise WeightsNotFoundError(f"timm has no pretrained config {source.ref!r}")
    try:
        load_pretrained(module, pretrained_cfg=cfg.to_dict(), strict=True)
    except Exception as exc:  # network, hub and file errors all mean "not available here"
        raise WeightsNotFoundError(f"timm hub download failed ({type(exc).__name__}: {exc})") from None


# --- reading weight files ---------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """PaddleX .pdparams are pickles of {name: ndarray}; allow nothing but numpy reconstruction."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"),
        ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weight file")


def read_pdparams(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as handle:
        state = _NumpyOnlyUnpickler(handle).load()
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a PaddlePaddle state dict")
    state.pop("StructuredToParameterName@@", None)
    return state


def read_state_dict(path: Path) -> dict[str, Any]:
    """Read a weight file (.safetensors, .pth/.pt/.bin, .pdparams) into a flat dict."""
    if not path.is_file():
        raise WeightsNotFoundError(f"weight file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if suffix == ".pdparams":
            return read_pdparams(path)
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (WeightsError, WeightsNotFoundError):
        raise
    except Exception as exc:
        raise WeightsError(
            f"{path}: cannot read weight file ({type(exc).__name__}: {exc}); if it is a cached download, "
            "delete it and try again"
        ) from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state_dict, found {type(state).__name__}")
    return state


def _key_set(state: dict[str, Any]) -> set[str]:
    return {key for key in state if not key.endswith("num_batches_tracked")}


def load_weights_file(module: nn.Module, path: Path, spec: ModelSpec | None = None, fmt: str | None = None) -> str:
    """Load ``path`` into ``module``, converting the key layout when the spec knows how; return the layout.

    The layout is the converter's format name (``pdparams``, ``torchvision`` ...) or ``native``.
    """
    state = read_state_dict(Path(path))
    converters = dict(spec.converters) if spec else {}
    if Path(path).suffix.lower() == ".pdparams":
        fmt = "pdparams"
        if "pdparams" not in converters:
            name = spec.name if spec else "this model"
            raise WeightsError(f"{path}: no PaddleX .pdparams converter exists for {name} yet")
    expected = _key_set(module.state_dict())
    candidates: list[tuple[str, Any]] = []
    if fmt and fmt in converters:
        candidates.append((fmt, converters[fmt]))
    candidates.append(("native", None))
    candidates.extend((name, fn) for name, fn in converters.items() if name != fmt)
    best_report = ""
    for name, convert in candidates:
        mapped = convert(state) if convert else state
        keys = _key_set(mapped)
        if keys == expected:
            tensors = {k: torch.as_tensor(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
                       for k, v in mapped.items()}
            try:
                module.load_state_dict(tensors, strict=False)
            except RuntimeError as exc:
                raise WeightsError(f"{path}: weights do not fit the network ({exc})") from None
            return name
        if not best_report:
            missing = sorted(expected - keys)
            unexpected = sorted(keys - expected)
            best_report = (f"{len(missing)} missing (e.g. {missing[:3]}), "
                           f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    model = spec.name if spec else type(module).__name__
    raise WeightsError(f"{path}: key layout does not match {model}: {best_report}")
