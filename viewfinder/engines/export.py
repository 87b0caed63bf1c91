"""Export a torch module to ONNX and check the export against torch.

Re-parameterisable blocks (PP-LCNetV2's multi-branch depthwise convs, anything timm's
``reparameterize_model`` knows) are folded first, so ONNX Runtime runs the deploy-time
graph. The export uses torch's TorchScript-based exporter: it needs no extra package
(the dynamo exporter needs onnxscript) and handles every timm network in the zoo.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import ExportError

log = logging.getLogger(__name__)

#: bump when the export recipe changes, so cached files from an older recipe are not reused
EXPORT_RECIPE_VERSION = 2  # 2: PicoDet's box decode without the slow MatMul (issue 30)
DEFAULT_OPSET = 17
#: an export is refused when max|onnx - torch| > RELATIVE_TOLERANCE * max|torch| on any output
RELATIVE_TOLERANCE = 1e-3
INPUT_NAME = "x"


@dataclass(frozen=True)
class ExportSettings:
    """What the ONNX file depends on besides the weights."""

    input_size: tuple[int, int] = (224, 224)  # (height, width)
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = True
    reparameterize: bool = True

    def key(self) -> str:
        """A short digest of these settings and the export recipe, for cache file names."""
        data = {**asdict(self), "recipe": EXPORT_RECIPE_VERSION}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class OutputLayout:
    """How the module's outputs map onto ONNX output names ("tensor": one array; "dict": named arrays)."""

    kind: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class ValidationReport:
    max_abs_diff: float
    max_rel_diff: float

    @property
    def ok(self) -> bool:
        return self.max_rel_diff <= RELATIVE_TOLERANCE


def weights_hash(module: nn.Module) -> str:
    """sha256 over the state_dict: names, dtypes, shapes and raw bytes of every tensor."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        if not isinstance(tensor, torch.Tensor):  # extra state some modules keep
            digest.update(f"{name}|{tensor!r}|".encode())
            continue
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sample_input(batch: int, settings: ExportSettings, seed: int = 0) -> torch.Tensor:
    """A fixed, normalised-image-like input (standard normal), the same on every run."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *settings.input_size, generator=generator)


def flatten_outputs(output: Any) -> tuple[OutputLayout, list[torch.Tensor]]:
    """The torch engine's convention: a tensor stays one output; tuples become output_i; dicts keep keys."""
    if isinstance(output, torch.Tensor):
        return OutputLayout("tensor", ("output",)), [output]
    if isinstance(output, dict) and all(isinstance(v, torch.Tensor) for v in output.values()):
        return OutputLayout("dict", tuple(str(k) for k in output)), list(output.values())
    if isinstance(output, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in output):
        return OutputLayout("dict", tuple(f"output_{i}" for i in range(len(output)))), list(output)
    raise ExportError(f"cannot export outputs of type {type(output).__name__}: expected a tensor, "
                      "a tuple of tensors or a dict of tensors")


class _FlatOutputs(nn.Module):
    """Returns the wrapped module's outputs as a flat tuple in layout order (what the exporter expects)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flatten_outputs(self.module(x))[1])


def prepare_for_export(module: nn.Module, reparameterize: bool = True) -> nn.Module:
    """A CPU fp32 eval-mode copy of ``module``, re-parameterised where timm knows how."""
    prepared = copy.deepcopy(module).to("cpu", torch.float32).eval()
    if not reparameterize:
        return prepared
    from timm.utils import reparameterize_model

    try:
        return reparameterize_model(prepared, inplace=True).eval()
    except Exception as exc:  # a block timm cannot fold: export it as trained (still correct, slower)
        log.info("re-parameterisation failed (%s); exporting without it", exc)
        return copy.deepcopy(module).to("cpu", torch.float32).eval()


def _export_call(module: nn.Module, sample: torch.Tensor, path: Path, settings: ExportSettings,
                 layout: OutputLayout) -> None:
    kwargs: dict[str, Any] = {
        "opset_version": settings.opset,
        "input_names": [INPUT_NAME],
        "output_names": list(layout.names),
        "do_constant_folding": True,
    }
    if settings.dynamic_batch:
        kwargs["dynamic_axes"] = {name: {0: "batch"} for name in (INPUT_NAME, *layout.names)}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the dynamo exporter needs onnxscript, which is not a dependency
    with warnings.catch_warnings():
        # The TorchScript exporter's deprecation notice and tracer warnings are not actionable
        # for users; a graph that traced wrongly is caught by validation instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (sample,), str(path), **kwargs)


def export_onnx(module: nn.Module, path: str | Path, settings: ExportSettings = ExportSettings()) -> OutputLayout:
    """Write ``module`` (re-parameterised when asked) as an ONNX file at ``path``; return its output layout."""
    path = Path(path)
    prepared = prepare_for_export(module, settings.reparameterize)
    # Trace with batch 2 so a batch size baked into the graph shows up when validating at 1 and 3.
    sample = sample_input(2 if settings.dynamic_batch else 1, settings)
    try:
        with torch.no_grad():
            layout, _ = flatten_outputs(prepared(sample))
            _export_call(_FlatOutputs(prepared), sample, path, settings, layout)
    except ExportError:
        raise
    except Exception as exc:  # exporter failures come in many types; all mean "cannot export"
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from None
    return layout


def validate_export(module: nn.Module, engine: Any, settings: ExportSettings) -> ValidationReport:
    """Compare ``engine`` (an ONNX engine) with the original torch ``module`` on fixed inputs."""
    reference_module = copy.deepcopy(module).to("cpu", torch.float32).eval()
    worst_abs, worst_rel = 0.0, 0.0
    for batch in ((1, 3) if settings.dynamic_batch else (1,)):
        sample = sample_input(batch, settings, seed=batch)
        with torch.no_grad():
            _, expected = flatten_outputs(reference_module(sample))
        got = engine(sample.numpy())
        got_list = [got] if isinstance(got, np.ndarray) else list(got.values())
        if len(got_list) != len(expected):
            raise ExportError(f"the export has {len(got_list)} outputs, the torch model {len(expected)}")
        for ours, reference in zip(got_list, expected):
            reference_array = reference.float().numpy()
            if ours.shape != reference_array.shape:
                raise ExportError(f"export output shape {ours.shape} differs from torch {reference_array.shape} "
                                  f"at batch {batch}")
            diff = float(np.max(np.abs(ours.astype(np.float64) - reference_array)))
            scale = float(np.max(np.abs(reference_array)))
            worst_abs = max(worst_abs, diff)
            worst_rel = max(worst_rel, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")))
    return ValidationReport(worst_abs, worst_rel)
