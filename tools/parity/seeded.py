"""Seeded random weights for parity fixtures, drawn the same way on the Paddle and the viewfinder side.

A parity fixture stores Paddle's output for a network with random weights. Storing the
weights themselves would cost ~4 bytes per parameter (hundreds of MB for the whole zoo),
so a fixture stores only the list of state-dict entries, a seed, the entries that cannot
be redrawn (BatchNorm statistics calibrated on data, integer buffers) and the outputs.
Both sides rebuild every other entry with :func:`seeded_state`, which depends on numpy
alone (no Paddle, no torch), so the fixture generator (``make_fixtures.py``, in the PaddleX
environment) and our tests draw bit-identical arrays.

Scales keep activations near unit size through deep networks: conv / linear weights
~ N(0, 1/fan_in), norm scales ~ U(0.5, 1.5), biases ~ N(0, 0.1), embeddings ~ N(0, 0.5).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

SEEDED = "seeded"
STORED = "stored"
#: Paddle BatchNorm running statistics: calibrated on data, hence stored
BN_STATISTICS = ("._mean", "._variance")
_EMBEDDINGS = ("pos_embed", "position", "cls_token", "token", "relative_position_bias_table", "query_embed",
               "embedding", "class_embedding")
_SCALES = ("weight", "gamma", "scale", "alpha")


def is_seeded(name: str, dtype: str, trainable_or_param: bool = True) -> bool:
    """Whether an entry is redrawn from the seed (float parameters other than BN statistics)."""
    return trainable_or_param and dtype.startswith("float") and not name.endswith(BN_STATISTICS)


def seeded_value(name: str, shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """One entry's value (float32) by its Paddle name and shape."""
    shape = tuple(int(s) for s in shape)
    last = name.rsplit(".", 1)[-1]
    size = int(np.prod(shape)) if shape else 1
    if len(shape) <= 1 or size == max(shape):  # vectors, scalars, [1, C] style affine parameters
        if any(e in name for e in _EMBEDDINGS):
            value = rng.normal(0.0, 0.5, shape)
        elif last in _SCALES or last.endswith(("_scale", "_gamma")):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
    elif any(e in name for e in _EMBEDDINGS):
        value = rng.normal(0.0, 0.5, shape)
    else:
        # Paddle Linear weights are [in, out]; conv weights [out, in/groups, kh, kw]
        fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
        value = rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), shape)
    return value.astype(np.float32)


def seeded_state(entries: Iterable[Sequence], seed: int) -> dict[str, np.ndarray]:
    """``{name: array}`` for the seeded entries of ``entries`` (``[name, shape, dtype, source]`` rows).

    Each entry has its own generator seeded by ``(seed, position)``, so one entry's value
    does not depend on how the others were drawn.
    """
    out: dict[str, np.ndarray] = {}
    for position, (name, shape, _dtype, source) in enumerate(entries):
        if source == SEEDED:
            out[name] = seeded_value(name, shape, np.random.default_rng([seed, position]))
    return out


def seeded_input(shape: Sequence[int], seed: int) -> np.ndarray:
    """The fixture's network input: standard normal, float32."""
    return np.random.default_rng([seed, 1 << 20]).standard_normal(tuple(shape)).astype(np.float32)


def state_digest(state: dict[str, np.ndarray]) -> str:
    """A short hash of the seeded arrays, stored in the fixture to catch a drifting generator."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(state[name]).tobytes())
    return digest.hexdigest()[:16]


def load_fixture(folder: Path) -> tuple[dict, dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """``(meta, paddle_state, input, outputs)`` of one fixture folder, every entry rebuilt or read."""
    meta = json.loads((folder / "meta.json").read_text())
    state = seeded_state(meta["entries"], meta["seed"])
    if state_digest(state) != meta["seeded_digest"]:
        raise RuntimeError(f"{folder}: seeded weights differ from the generator's (numpy RNG changed?)")
    with np.load(folder / "stored.npz") as stored:
        state.update({name: stored[name] for name in stored.files})
    ordered = {row[0]: state[row[0]] for row in meta["entries"]}
    with np.load(folder / "outputs.npz") as saved:
        outputs = {name: saved[name] for name in saved.files}
    return meta, ordered, seeded_input(meta["input_shape"], meta["seed"]), outputs
