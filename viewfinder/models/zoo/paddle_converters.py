"""Generic helpers to map PaddlePaddle ``.pdparams`` state dicts onto torch modules.

A Paddle dynamic-graph checkpoint differs from a torch ``state_dict`` in three
systematic ways, handled here once for every converter:

* BatchNorm running statistics are ``<layer>._mean`` / ``<layer>._variance``
  (torch: ``running_mean`` / ``running_var``);
* ``Linear`` weights are stored ``[in, out]`` (torch: ``[out, in]``);
* layer names follow Paddle's module tree, so a converter is a list of regex renames
  plus patterns of entries that have no counterpart (training heads, constant buffers).

Model-specific converters are built from these: declaratively with :func:`make_converter`
(:mod:`.shitu`), or step by step with the entry helpers (:mod:`.paddle_classifiers`).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ...errors import WeightsError

Converter = Callable[[dict[str, Any]], dict[str, Any]]
Rename = tuple[str, str | Callable[[re.Match[str]], str]]

#: Paddle BatchNorm statistics -> torch buffer names (the last part of the key)
BN_STATISTICS: dict[str, str] = {"_mean": "running_mean", "_variance": "running_var"}
#: the same as ``(pattern, replacement)`` renames, for :func:`rename_keys`
BN_RENAMES: tuple[tuple[str, str], ...] = tuple(
    (rf"\.{re.escape(paddle)}$", f".{torch_name}") for paddle, torch_name in BN_STATISTICS.items()
)


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in patterns]


def as_array(value: Any) -> np.ndarray:
    """A checkpoint entry (numpy array or torch tensor) as a numpy array."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def bn_rename(key: str) -> str:
    """``<layer>._mean`` / ``<layer>._variance`` -> ``<layer>.running_mean`` / ``.running_var``; other keys unchanged."""
    head, _, last = key.rpartition(".")
    return f"{head}.{BN_STATISTICS[last]}" if last in BN_STATISTICS else key


def linear_to_torch(weight: Any, scale: float = 1.0) -> np.ndarray:
    """A Paddle ``Linear`` weight ([in, out]) as torch's [out, in]; ``scale`` folds a constant input factor."""
    transposed = as_array(weight).T
    return np.ascontiguousarray(transposed * np.float32(scale) if scale != 1.0 else transposed)


def rename_keys(
    state: dict[str, Any],
    renames: Sequence[Rename],
    drop: Sequence[str] = (),
) -> dict[str, Any]:
    """Apply regex ``(pattern, replacement)`` renames in order to every key; keys matching ``drop`` go."""
    compiled = [(re.compile(p), r) for p, r in renames]
    dropped = _compile(drop)
    out: dict[str, Any] = {}
    for key, value in state.items():
        if any(p.search(key) for p in dropped):
            continue
        new = key
        for pattern, replacement in compiled:
            new = pattern.sub(replacement, new)
        if new in out:
            raise WeightsError(f"two .pdparams entries map onto {new!r} (the second is {key!r})")
        out[new] = value
    return out


def transpose_linear(state: dict[str, Any], patterns: Sequence[str]) -> dict[str, Any]:
    """Transpose the 2-D weights whose (renamed) key matches ``patterns``: Paddle [in, out] -> torch [out, in]."""
    compiled = _compile(patterns)
    out = dict(state)
    for key, value in state.items():
        if any(p.search(key) for p in compiled):
            array = as_array(value)
            if array.ndim != 2:
                raise WeightsError(f"{key}: expected a 2-D Linear weight, found shape {list(array.shape)}")
            out[key] = linear_to_torch(array)
    return out


def block_index_map(src_depths: Sequence[int], dst_depths: Sequence[int]) -> dict[tuple[int, int], tuple[int, int]]:
    """Map (stage, block) positions between two groupings of the same flat block sequence.

    E.g. Paddle's LCNet groups its 13 blocks as (1, 2, 2, 6, 2), timm's as (1, 2, 2, 2, 4, 2).
    """
    if sum(src_depths) != sum(dst_depths):
        raise ValueError(f"block counts differ: {sum(src_depths)} vs {sum(dst_depths)}")
    dst_positions = [(s, b) for s, depth in enumerate(dst_depths) for b in range(depth)]
    src_positions = [(s, b) for s, depth in enumerate(src_depths) for b in range(depth)]
    return dict(zip(src_positions, dst_positions))


def make_converter(
    renames: Sequence[Rename],
    drop: Sequence[str] = (),
    linear: Sequence[str] = (),
) -> Converter:
    """A ``spec.converters["pdparams"]`` function: drop, rename (then BN statistics), transpose Linear weights."""

    def convert(state: dict[str, Any]) -> dict[str, Any]:
        mapped = rename_keys(state, tuple(renames) + BN_RENAMES, drop)
        return transpose_linear(mapped, linear) if linear else mapped

    return convert


# --- entry helpers for converters written step by step ----------------------------------------
# They never raise on a foreign file: an absent entry shows up in the loader's
# missing/unexpected key report, which names the problem better.

def copy_entry(state: dict[str, Any], src: str, out: dict[str, Any], dst: str) -> None:
    """``out[dst] = state[src]`` as an array, when ``src`` is there."""
    if src in state:
        out[dst] = as_array(state[src])


def copy_linear(state: dict[str, Any], src: str, dst: str, out: dict[str, Any], scale: float = 1.0) -> None:
    """Paddle ``Linear`` ``src`` -> torch ``dst`` (weight transposed, see :func:`linear_to_torch`; bias copied)."""
    if f"{src}.weight" in state:
        out[f"{dst}.weight"] = linear_to_torch(state[f"{src}.weight"], scale)
    copy_entry(state, f"{src}.bias", out, f"{dst}.bias")


def take_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Entries under ``prefix.``, with the prefix removed."""
    cut = len(prefix) + 1
    return {key[cut:]: value for key, value in state.items() if key.startswith(prefix + ".")}


def add_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Every entry under ``prefix.``."""
    return {f"{prefix}.{key}": value for key, value in state.items()}


# --- PP-LCNet, shared by the classifiers and PP-ShiTuV2's detector backbone ----------------------

#: PaddleClas/PaddleDetection LCNet groups its 13 blocks as blocks2..blocks6 = (1, 2, 2, 6, 2);
#: timm's ``lcnet_*`` as 6 stages of (1, 2, 2, 2, 4, 2).
LCNET_BLOCKS = block_index_map((1, 2, 2, 6, 2), (1, 2, 2, 2, 4, 2))
#: PaddleClas LCNet block parts -> timm names
LCNET_PARTS: dict[str, str] = {
    "dw_conv.conv": "conv_dw", "dw_conv.bn": "bn1", "pw_conv.conv": "conv_pw", "pw_conv.bn": "bn2",
    "se.conv1": "se.conv_reduce", "se.conv2": "se.conv_expand",
}


def lcnet_renames(prefix: str = "") -> tuple[Rename, ...]:
    """Renames of a PaddleClas LCNet's stem and blocks (keys under ``prefix``) to timm ``lcnet_*`` names."""
    escaped = re.escape(prefix)

    def block(match: re.Match[str]) -> str:
        stage, index = LCNET_BLOCKS[(int(match.group(1)) - 2, int(match.group(2)))]
        return f"{prefix}blocks.{stage}.{index}."

    return (
        (rf"^{escaped}conv1\.conv\.", f"{prefix}conv_stem."),
        (rf"^{escaped}conv1\.bn\.", f"{prefix}bn1."),
        (rf"^{escaped}blocks(\d)\.(\d+)\.", block),
        *((rf"^({escaped}blocks\.\d+\.\d+)\.{re.escape(part)}\.", rf"\1.{timm_part}.")
          for part, timm_part in LCNET_PARTS.items()),
    )
