"""Generic helpers to map PaddlePaddle ``.pdparams`` state dicts onto torch modules.

A Paddle dynamic-graph checkpoint differs from a torch ``state_dict`` in three
systematic ways, handled here once for every converter:

* BatchNorm running statistics are ``<layer>._mean`` / ``<layer>._variance``
  (torch: ``running_mean`` / ``running_var``);
* ``Linear`` weights are stored ``[in, out]`` (torch: ``[out, in]``);
* layer names follow Paddle's module tree, so a converter is a list of regex renames
  plus patterns of entries that have no counterpart (training heads, constant buffers).

Model-specific converters (see :mod:`.shitu`) are built from :func:`make_converter`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ...errors import WeightsError

#: Paddle BatchNorm statistics -> torch buffer names
BN_RENAMES: tuple[tuple[str, str], ...] = ((r"\._mean$", ".running_mean"), (r"\._variance$", ".running_var"))


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in patterns]


def rename_keys(
    state: dict[str, Any],
    renames: Sequence[tuple[str, str | Callable[[re.Match[str]], str]]],
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
            array = np.asarray(value)
            if array.ndim != 2:
                raise WeightsError(f"{key}: expected a 2-D Linear weight, found shape {list(array.shape)}")
            out[key] = np.ascontiguousarray(array.T)
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
    renames: Sequence[tuple[str, str | Callable[[re.Match[str]], str]]],
    drop: Sequence[str] = (),
    linear: Sequence[str] = (),
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A ``spec.converters["pdparams"]`` function: drop, rename (then BN statistics), transpose Linear weights."""

    def convert(state: dict[str, Any]) -> dict[str, Any]:
        mapped = rename_keys(state, tuple(renames) + BN_RENAMES, drop)
        return transpose_linear(mapped, linear) if linear else mapped

    return convert
