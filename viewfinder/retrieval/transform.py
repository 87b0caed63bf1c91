"""Training-free feature remedies for a gallery: centring, whitening, query expansion.

Off-the-shelf embeddings (ImageNet features) share a large common component: every photo looks a
bit like every other, so unrelated photos score high and known/unknown separate poorly.

* **Centring** subtracts the gallery's mean feature and L2-normalises again; **whitening** also
  rescales the gallery's principal directions (shrinkage PCA whitening: the top ``components``
  directions get ``1/sqrt(var + s)``, the rest ``1/sqrt(s)``, with ``s`` the mean variance of the
  kept directions, so the vector keeps its dimension). Both are learned from the gallery's own
  features when the index is *built* and then kept fixed: vectors appended later and every query
  go through the same transform (re-learning on append would silently change the vectors already
  stored). Rebuild the index to re-learn them.
* **Query expansion** (alpha-QE, Radenovic et al.): the query is replaced by the normalised sum of
  itself and its ``k`` nearest gallery vectors weighted by ``max(score, 0) ** alpha``, and searched
  again. It needs no learning and can be switched on or off on an existing index.

The learned arrays are stored in the index document as base64 float32 (a few kB to a few hundred kB).
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from viewfinder.errors import RetrievalIndexError

#: whitening keeps at most this many principal directions (the record stays small)
WHITEN_COMPONENTS = 64
_EPS = 1e-12


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    if not isinstance(text, str):
        raise RetrievalIndexError(f"feature_transform.{name} must be a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise RetrievalIndexError(f"feature_transform.{name} is not valid base64") from None
    want = int(np.prod(shape)) * 4
    if len(raw) != want:
        raise RetrievalIndexError(f"feature_transform.{name} holds {len(raw)} bytes, expected {want} for {shape}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, _EPS), dtype=np.float32)


@dataclass
class FeatureTransform:
    """``x -> normalise(W (x - mean))``, learned once from gallery features."""

    center: bool
    whiten: bool
    mean: np.ndarray  # [d] (zeros without centring)
    basis: np.ndarray | None = None  # [d, r] orthonormal principal directions (whitening)
    scale: np.ndarray | None = None  # [r] factor per direction
    rest: float = 1.0  # factor for everything outside the basis
    learned_from: int = 0

    @classmethod
    def learn(cls, features: np.ndarray, *, center: bool = True, whiten: bool = False,
              components: int = WHITEN_COMPONENTS) -> "FeatureTransform":
        x = np.asarray(features, dtype=np.float64)
        n, d = x.shape
        if n < 2:
            raise RetrievalIndexError(f"centring/whitening is learned from the gallery and needs at least 2 "
                                      f"gallery vectors, got {n}")
        mean = x.mean(axis=0) if (center or whiten) else np.zeros(d)
        self = cls(center=bool(center or whiten), whiten=bool(whiten), mean=mean.astype(np.float32), learned_from=n)
        if whiten:
            _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
            var = s ** 2 / n
            r = int(min(components, int((var > _EPS * max(var.max(), _EPS)).sum())))
            if r == 0:
                raise RetrievalIndexError("whitening: the gallery vectors are all the same")
            shrink = float(var[:r].mean())  # regulariser: few samples make the smallest variances noise
            self.basis = vt[:r].T.astype(np.float32)
            self.scale = (1.0 / np.sqrt(var[:r] + shrink)).astype(np.float32)
            self.rest = float(1.0 / math.sqrt(shrink))
        return self

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Transformed, L2-normalised rows (float32)."""
        y = np.asarray(x, dtype=np.float32) - self.mean
        if self.basis is not None and self.scale is not None:
            proj = y @ self.basis
            y = self.rest * y + (proj * (self.scale - self.rest)) @ self.basis.T
        return normalize_rows(y)

    def describe(self) -> dict[str, Any]:
        """The flags (what ``index info`` shows)."""
        out: dict[str, Any] = {"center": self.center, "whiten": self.whiten, "learned_from": self.learned_from}
        if self.basis is not None:
            out["components"] = int(self.basis.shape[1])
        return out

    def to_record(self) -> dict[str, Any]:
        record = {**self.describe(), "mean": _encode(self.mean)}
        if self.basis is not None and self.scale is not None:
            record.update(basis=_encode(self.basis), scale=_encode(self.scale), rest=self.rest)
        return record

    @classmethod
    def from_record(cls, record: Any, dim: int) -> "FeatureTransform":
        if not isinstance(record, dict):
            raise RetrievalIndexError(f"feature_transform must be a mapping, got {type(record).__name__}")
        center, whiten = record.get("center"), record.get("whiten", False)
        if not isinstance(center, bool) or not isinstance(whiten, bool):
            raise RetrievalIndexError("feature_transform.center and .whiten must be true or false")
        self = cls(center=center, whiten=whiten, mean=_decode(record.get("mean"), (dim,), "mean"),
                   learned_from=int(record.get("learned_from") or 0))
        if whiten:
            r = record.get("components")
            if isinstance(r, bool) or not isinstance(r, int) or r < 1:
                raise RetrievalIndexError("feature_transform.components must be a positive integer")
            self.basis = _decode(record.get("basis"), (dim, r), "basis")
            self.scale = _decode(record.get("scale"), (r,), "scale")
            rest = record.get("rest")
            if isinstance(rest, bool) or not isinstance(rest, (int, float)) or not math.isfinite(rest):
                raise RetrievalIndexError("feature_transform.rest must be a finite number")
            self.rest = float(rest)
        return self


def check_query_expansion(value: Any) -> dict[str, Any] | None:
    """``None``/``{}``/``{"k": 0}`` (off) or ``{"k": int >= 1, "alpha": float >= 0}``, validated."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"k": value}
    if not isinstance(value, dict):
        raise RetrievalIndexError(f"query_expansion must be a mapping {{k, alpha}}, a neighbour count or "
                                  f"null, got {value!r}")
    unknown = set(value) - {"k", "alpha"}
    if unknown:
        raise RetrievalIndexError(f"query_expansion: unknown key(s) {sorted(unknown)} (use k and alpha)")
    k, alpha = value.get("k", 2), value.get("alpha", 3.0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise RetrievalIndexError(f"query_expansion.k must be a non-negative integer, got {k!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < 100:
        raise RetrievalIndexError(f"query_expansion.alpha must be a number in [0, 100), got {alpha!r}")
    return None if k == 0 else {"k": k, "alpha": float(alpha)}


def given_index_options(center: bool | None = None, whiten: bool | None = None,
                        query_expansion: int | None = None) -> dict[str, Any]:
    """``build_index`` keywords from the CLI's flags or the service's fields: only those given (None
    leaves the pipeline config's ``index_options``); ``query_expansion`` is a neighbour count."""
    given = {"center": center, "whiten": whiten,
             "query_expansion": None if query_expansion is None else {"k": query_expansion}}
    return {name: value for name, value in given.items() if value is not None}


def expand_queries(queries: np.ndarray, scores: np.ndarray, neighbours: np.ndarray, alpha: float,
                   higher_is_better: bool = True) -> np.ndarray:
    """alpha-QE: ``normalise(q + sum_i w_i x_i)``; ``neighbours`` [n, k, d] (rows of zeros for empty slots).

    Weights: ``max(score, 0) ** alpha`` for similarities; for L2 distances of unit vectors the
    similarity ``1 - d / 2`` is used.
    """
    sims = np.asarray(scores, dtype=np.float32)
    if not higher_is_better:
        sims = 1.0 - sims / 2.0
    sims = np.where(np.isfinite(sims), np.clip(sims, 0.0, None), 0.0)
    weights = sims ** alpha if alpha > 0 else (sims > 0).astype(np.float32)
    expanded = queries + np.einsum("nk,nkd->nd", weights, neighbours)
    return normalize_rows(expanded)
