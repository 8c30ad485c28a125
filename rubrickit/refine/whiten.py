"""Whitened-uniform weights (RRD): w ∝ Σ^{-1/2}·1 from a response × criterion satisfaction matrix.

Σ is the covariance of the criteria's satisfaction over the responses plus a ridge λ·I (so duplicated or
constant criteria keep Σ invertible); the inverse square root comes from the eigendecomposition. Correlated
criteria share weight (each of two identical copies gets 1/√2 of what one alone would, so the pair gets √2×,
not 2×); negatives are clipped
to 0 and the weights normalised to sum to 1 (uniform when everything clips).
"""

from __future__ import annotations

from typing import Any

__all__ = ["whitened_weights"]


def whitened_weights(satisfaction: Any, *, ridge: float = 0.1, clip: bool = True) -> Any:
    """Weights (a numpy vector over the criteria, summing to 1) from ``satisfaction`` of shape (responses,
    criteria), values in [0, 1] (verdicts as 0/1, or p_met). ``ridge`` is added to Σ's diagonal."""
    import numpy as np

    X = np.asarray(satisfaction, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError("satisfaction must be a 2-D matrix with at least one criterion column")
    k = X.shape[1]
    if X.shape[0] < 2:
        return np.full(k, 1.0 / k)
    sigma = np.cov(X, rowvar=False, bias=False).reshape(k, k) + ridge * np.eye(k)
    values, vectors = np.linalg.eigh(sigma)
    inv_sqrt = vectors @ np.diag(1.0 / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T
    w = inv_sqrt @ np.ones(k)
    if clip:
        w = np.maximum(w, 0.0)
    total = w.sum()
    if not np.isfinite(total) or total <= 0:
        return np.full(k, 1.0 / k)
    return w / total
