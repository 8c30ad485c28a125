"""Coding-rate (MCR²) core-set selection (DESIGN §7, Auto-Rubric).

For embeddings Z (one unit column per criterion, d × n), the coding rate is

    R(Z) = ½ · logdet(I_n + d / (n · ε²) · ZᵀZ)

computed exactly with ``slogdet`` on the n × n Gram matrix. Greedy selection adds, at each step, the candidate with
the largest marginal gain R(S ∪ {i}) − R(S), and stops when the size cap is reached or the best gain stays below
``min_gain`` for ``patience`` consecutive steps (the steps below the threshold are not kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Selection", "coding_rate", "greedy_coding_rate"]


def coding_rate(Z: Any, epsilon: float = 0.3) -> float:
    """R(Z) for ``Z`` of shape (n, d) — rows are embeddings — as DESIGN §7 writes it (0 for no rows)."""
    import numpy as np

    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] == 0:
        return 0.0
    n, d = Z.shape
    gram = Z @ Z.T
    sign, logdet = np.linalg.slogdet(np.eye(n) + (d / (n * epsilon ** 2)) * gram)
    if sign <= 0:  # cannot happen for a PSD Gram matrix; guard against round-off
        raise ValueError("coding rate: matrix is not positive definite")
    return 0.5 * float(logdet)


@dataclass
class Selection:
    """The outcome of a greedy selection."""

    selected: list[int]
    """Indices of the chosen rows, in the order chosen."""
    gains: list[float]
    """Marginal gain of each chosen row."""
    rate: float
    """R of the chosen set."""
    stopped: str
    """Why it stopped: ``cap``, ``gain`` (below ``min_gain`` ``patience`` times) or ``exhausted``."""
    rejected_gains: list[tuple[int, float]] = field(default_factory=list)
    """Best candidates of the final below-threshold steps, with their gains (not kept)."""


def greedy_coding_rate(Z: Any, *, epsilon: float = 0.3, max_size: int | None = None, min_gain: float = 0.002,
                       patience: int = 2, initial: Sequence[int] = ()) -> Selection:
    """Greedily select rows of ``Z`` (n, d) maximising the coding rate (exact marginal gains).

    ``initial`` rows are kept first (an existing core set being extended with a new batch).
    """
    import numpy as np

    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0] if Z.ndim == 2 else 0
    selected = [int(i) for i in initial]
    rate = coding_rate(Z[selected], epsilon) if selected else 0.0
    gains: list[float] = []
    rates = [rate]
    below: list[tuple[int, float]] = []  # trailing picks whose gain was below min_gain (tentative)
    cap = n if max_size is None else min(max_size, n)
    remaining = [i for i in range(n) if i not in set(selected)]
    while len(selected) < cap and remaining:
        best, best_rate = -1, -np.inf
        trial = selected + [0]
        for i in remaining:
            trial[-1] = i
            value = coding_rate(Z[trial], epsilon)
            if value > best_rate:
                best, best_rate = i, value
        gain = float(best_rate - rate)
        below = below + [(best, gain)] if gain < min_gain else []
        if len(below) >= patience:
            keep = len(selected) - (len(below) - 1)
            del selected[keep:], gains[keep - len(initial):]
            return Selection(selected, gains, rates[keep - len(initial)], "gain", below)
        selected.append(best)
        gains.append(gain)
        rate = float(best_rate)
        rates.append(rate)
        remaining.remove(best)
    reason = "cap" if len(selected) >= cap else "exhausted"
    if below:  # ended on tentative picks: they are not kept
        keep = len(selected) - len(below)
        del selected[keep:], gains[keep - len(initial):]
        rate = rates[keep - len(initial)]
    return Selection(selected, gains, rate, reason, below)
